"""The splat fit's own Adam (pipeline/splats/adam.py) must move parameters exactly as torch.optim.Adam does."""

from __future__ import annotations

import pytest
import torch

from pipeline.splats.adam import Adam


def _trajectory(optimizer_class, steps: int = 25) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    means = torch.nn.Parameter(torch.randn(50, 3, generator=generator))
    scales = torch.nn.Parameter(torch.randn(50, 3, generator=generator))
    frozen = torch.nn.Parameter(torch.randn(4, generator=generator))  # never gets a gradient
    optimizer = optimizer_class(
        [
            {"params": [means], "lr": 1.6e-4, "name": "means"},
            {"params": [scales], "lr": 5e-3, "name": "scales"},
            {"params": [frozen], "lr": 1.0, "name": "frozen"},
        ],
        eps=1e-15,
    )
    target = torch.randn(50, 3, generator=generator)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = ((means * scales.exp() - target) ** 2).sum() + (means**3).mean()
        loss.backward()
        optimizer.step()
    return [means.detach().clone(), scales.detach().clone(), frozen.detach().clone()]


def test_adam_matches_torch_optim_bit_for_bit():
    ours, theirs = _trajectory(Adam), _trajectory(torch.optim.Adam)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    assert not torch.equal(ours[0], _trajectory(Adam, steps=0)[0])  # it did move


def test_adam_keeps_state_layout_that_strategies_edit():
    p = torch.nn.Parameter(torch.ones(3))
    optimizer = Adam([{"params": [p], "lr": 0.1, "name": "p"}])
    p.grad = torch.tensor([1.0, -1.0, 0.0])
    optimizer.step()
    state = optimizer.state[p]
    assert set(state) >= {"exp_avg", "exp_avg_sq", "step"} and state["step"] == 1
    assert optimizer.param_groups[0]["name"] == "p" and optimizer.param_groups[0]["params"][0] is p
    assert torch.allclose(p.detach(), torch.tensor([0.9, 1.1, 1.0]))
    optimizer.zero_grad()
    assert p.grad is None


def test_adam_rejects_bad_settings():
    with pytest.raises(ValueError, match="at least one"):
        Adam([])
    with pytest.raises(ValueError, match="betas"):
        Adam([torch.nn.Parameter(torch.ones(1))], betas=(0.9, 1.0))
