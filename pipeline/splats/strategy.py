"""Densify/prune strategies: small objects with hooks, called by the fit loop (gsplat's strategy pattern).

The trainable tensors and their Adam state live in :class:`SplatParams`; a strategy edits the set of splats only
through ``keep`` and ``append``, which keep the optimiser's moments aligned with the new rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from pipeline.splats.adam import Adam
from pipeline.splats.model import Splats
from renderers.gaussians import GaussianRender, quat_to_rotmat


class SplatParams:
    """Trainable tensors plus their Adam optimiser; strategies edit the set through ``keep`` and ``append``."""

    NAMES = ("means", "scales", "quats", "opacities", "sh0", "shN")

    def __init__(self, splats: Splats, lrs: dict[str, float]):
        self.params = {
            name: torch.nn.Parameter(getattr(splats, name).detach().clone(), requires_grad=lrs[name] > 0)
            for name in self.NAMES
        }
        self.lrs = lrs
        self.version = 0  # bumped whenever the set of splats changes (caches keyed on it)
        self.optimizer = Adam(  # torch.optim.Adam's update without its ~1 s first-use import (see adam.py)
            [{"params": [p], "lr": lrs[n], "name": n} for n, p in self.params.items() if lrs[n] > 0], eps=1e-15
        )

    def splats(self) -> Splats:
        return Splats(**self.params)

    def __len__(self) -> int:
        return self.params["means"].shape[0]

    @torch.no_grad()
    def keep(self, mask: Tensor) -> None:  # [N] bool
        self._edit(lambda t: t[mask], lambda s: s[mask])

    @torch.no_grad()
    def append(self, new: Splats) -> None:
        def grow_param(name: str) -> Callable[[Tensor], Tensor]:
            return lambda t: torch.cat([t, getattr(new, name).to(t)])

        for name in self.NAMES:
            self._edit_one(
                name, grow_param(name), lambda s, n=len(new): torch.cat([s, s.new_zeros((n,) + s.shape[1:])])
            )

    def _edit(self, fn_param, fn_state) -> None:
        for name in self.NAMES:
            self._edit_one(name, fn_param, fn_state)

    def _edit_one(self, name: str, fn_param, fn_state) -> None:
        self.version += 1
        old = self.params[name]
        new = torch.nn.Parameter(fn_param(old.data), requires_grad=old.requires_grad)
        self.params[name] = new
        for group in self.optimizer.param_groups:
            if group["params"][0] is old:
                state = self.optimizer.state.pop(old, {})
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in state:
                        state[key] = fn_state(state[key])
                group["params"][0] = new
                self.optimizer.state[new] = state


@dataclass
class StrategyState:
    """Per-fit statistics a strategy accumulates (one object per fit, so presets stay shareable)."""

    grad_sum: Tensor | None = None  # [N] Σ screen-space position-gradient norms
    count: Tensor | None = None  # [N] views in which each splat was drawn


class SplatStrategy(Protocol):
    """Densification/pruning hooks (gsplat's strategy pattern, with a typed state)."""

    def step_post_backward(
        self, params: SplatParams, state: StrategyState, step: int, render: GaussianRender, total_steps: int
    ) -> None:
        """Called after ``loss.backward()`` and before ``optimizer.step()``."""
        ...


@dataclass(frozen=True)
class PruneStrategy:
    """Light pruning and splitting for short fits (a few hundred steps, positions mostly frozen).

    Every ``every`` steps between ``start_fraction`` and ``stop_fraction`` of the fit: split splats whose
    screen-space position gradient is large and whose extent is large into two smaller ones along their longest axis
    (they cover detail a single blob cannot), then remove splats that became nearly transparent or grew huge.
    """

    every: int = 50
    """Steps between refinements."""
    start_fraction: float = 0.2
    """No refinement in the first part of the fit (gradients are noisy while colours settle)."""
    stop_fraction: float = 0.8
    """No refinement in the last part (new splats need steps to settle)."""
    prune_opacity: float = 0.01
    """Splats with opacity below this are removed."""
    prune_scale_factor: float = 50.0
    """Splats larger than this many times the median splat size are removed (floaters, smears)."""
    split_grad: float = 0.0002
    """Mean screen-space gradient norm (NDC-like units, as 3DGS's densify_grad_threshold) above which a splat
    splits."""
    split_scale_factor: float = 3.0
    """Only splats larger than this many times the median size split (small ones are already detailed)."""
    max_splats: int = 2_000_000
    """Splitting stops at this count."""

    def step_post_backward(
        self, params: SplatParams, state: StrategyState, step: int, render: GaussianRender, total_steps: int
    ) -> None:
        n = len(params)
        device = params.params["means"].device
        if state.grad_sum is None or state.grad_sum.shape[0] != n:
            state.grad_sum = torch.zeros(n, device=device)
            state.count = torch.zeros(n, device=device)
        means2d = render.means2d
        if means2d.grad is not None:
            height, width = render.rgb.shape[:2]
            to_ndc = torch.tensor([0.5 * width, 0.5 * height], dtype=means2d.dtype, device=means2d.device)
            g = (means2d.grad.detach().reshape(-1, 2) * to_ndc).norm(dim=-1).to(device)
            seen = render.radii.to(device) > 0
            state.grad_sum[seen] += g[seen].float()
            state.count[seen] += 1
        lo, hi = int(self.start_fraction * total_steps), int(self.stop_fraction * total_steps)
        if not (lo <= step < hi and step % self.every == 0 and step > 0):
            return
        with torch.no_grad():
            p = params.params
            size = torch.exp(p["scales"]).max(dim=-1).values
            mean_grad = state.grad_sum / state.count.clamp_min(1)
            split = (mean_grad > self.split_grad) & (size > self.split_scale_factor * size.median())
            budget = max(0, self.max_splats - n)
            split &= torch.cumsum(split.long(), 0) <= budget // 2
            if bool(split.any()):
                params.append(_split_children(params.splats().select(split)))
                extra = torch.ones(2 * int(split.sum()), dtype=torch.bool, device=device)
                params.keep(torch.cat([~split, extra]))
            p = params.params
            opacity = torch.sigmoid(p["opacities"])
            size = torch.exp(p["scales"]).max(dim=-1).values
            keep = (opacity >= self.prune_opacity) & (size <= self.prune_scale_factor * size.median())
            if not bool(keep.all()):
                params.keep(keep)
        state.grad_sum = None
        state.count = None


def _split_children(parent: Splats) -> Splats:
    """Two children per parent at ±1σ along its longest axis, at 1/1.6 the size (the 3DGS split factor)."""
    sigma = torch.exp(parent.scales)
    axis = sigma.argmax(dim=-1)
    rot = quat_to_rotmat(parent.quats)
    direction = rot[torch.arange(len(parent)), :, axis] * sigma.gather(1, axis[:, None])
    children = []
    for sign in (1.0, -1.0):
        children.append(
            Splats(
                parent.means + sign * direction,
                parent.scales - math.log(1.6),
                parent.quats,
                parent.opacities,
                parent.sh0,
                parent.shN,
            )
        )
    return Splats(*(torch.cat(pair) for pair in zip(children[0].tensors(), children[1].tensors())))


@dataclass(frozen=True)
class NoStrategy:
    """Keep the set of splats fixed (Invisible Stitch's setting)."""

    def step_post_backward(
        self, params: SplatParams, state: StrategyState, step: int, render: GaussianRender, total_steps: int
    ) -> None:
        return None
