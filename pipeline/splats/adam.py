"""Adam for the splat fit, without ``torch.optim``'s start-up cost.

``torch.optim.Optimizer.__init__`` is wrapped by ``torch._disable_dynamo``, whose first call in a process imports
``torch._dynamo`` (and sympy with it): measured 1.0–1.5 s on the 2-core development machine (``python -c "import
torch, time; p = torch.nn.Parameter(torch.zeros(1)); t = time.time(); torch.optim.Adam([p]);
print(time.time() - t)"``), paid by every CLI run, benchmark child and first app job. The offline ``single`` run
of the room example at 512×384 took 7.32 / 6.98 s with ``torch.optim.Adam`` and 4.10 / 4.15 s with this class,
alternating in one period (load 2.3–3.3; the fit itself 6.1 / 5.7 → 3.0 / 3.0 s).

The update is ``torch.optim.Adam``'s with its defaults (no weight decay, no AMSGrad, single-tensor path) written
with the same operations in the same order, so the trajectories are bit-identical (tested). ``param_groups`` and
``state`` (``exp_avg``, ``exp_avg_sq`` per parameter) have ``torch.optim``'s layout, which
:class:`pipeline.splats.strategy.SplatParams` edits when splats are pruned or added.
"""

from __future__ import annotations

import torch
from torch import Tensor


class Adam:
    """Adam over parameter groups (``{"params": [tensor, ...], "lr": float, ...}``; extra keys are kept).

    Args:
        groups: the parameter groups, or one list of tensors.
        lr: learning rate of groups that name none.
        betas: decay of the first and second moment estimates.
        eps: added to the root of the second moment.

    Example:
        >>> p = torch.nn.Parameter(torch.tensor([1.0]))
        >>> optimizer = Adam([p], lr=0.1)
        >>> p.grad = torch.tensor([2.0])
        >>> optimizer.step()
        >>> round(float(p.detach()), 4)  # the first step moves by lr, whatever the gradient's size
        0.9
    """

    def __init__(
        self,
        groups: list[dict] | list[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        if not groups:
            raise ValueError("Adam needs at least one parameter")
        if not isinstance(groups[0], dict):
            groups = [{"params": list(groups)}]
        if not (lr >= 0 and eps >= 0 and all(0 <= beta < 1 for beta in betas)):
            raise ValueError(f"invalid Adam settings: lr={lr}, betas={betas}, eps={eps}")
        self.param_groups = [{"lr": lr, "betas": betas, "eps": eps, **group} for group in groups]
        for group in self.param_groups:
            group["params"] = list(group["params"])
        self.state: dict[Tensor, dict] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if set_to_none:
                    param.grad = None
                else:
                    param.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                state = self.state.get(param)
                if not state:
                    state = {"step": 0, "exp_avg": torch.zeros_like(param), "exp_avg_sq": torch.zeros_like(param)}
                    self.state[param] = state
                state["step"] += 1
                exp_avg, exp_avg_sq, step = state["exp_avg"], state["exp_avg_sq"], state["step"]
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step_size = group["lr"] / (1 - beta1**step)
                denom = (exp_avg_sq.sqrt() / (1 - beta2**step) ** 0.5).add_(group["eps"])
                param.addcdiv_(exp_avg, denom, value=-step_size)
