"""Rectified flow matching: the training loss and the few-step Euler sampler.

Path between data and noise: x_t = (1 - t) * x_0 + t * eps, t in [0, 1]; the model predicts the
velocity v = eps - x_0. Sampling integrates from t = 1 (noise) to t = 0 with a handful of Euler
steps. With a strong conditioning signal (the memory read and the previous frame) few steps
suffice; the evaluation reports 1, 2 and 4.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t) -> v


def sample_t(batch: int, device: torch.device, generator: torch.Generator | None = None):
    """Logit-normal noise levels: most training signal at mid t, where few-step sampling errs."""
    u = torch.randn(batch, device=device, generator=generator)
    return torch.sigmoid(u)


def flow_loss(model: Velocity, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor):
    x_t = (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * noise
    return (model(x_t, t) - (noise - x0)).pow(2).mean()


@torch.no_grad()
def euler_sample(model: Velocity, noise: torch.Tensor, steps: int,
                 check: Callable[[], None] | None = None) -> torch.Tensor:
    """Integrate dx/dt = v from t = 1 to 0 in `steps` equal Euler steps. ``check`` runs before
    every step and may raise to abandon the sample (a cancelled rollout)."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    x = noise
    ts = torch.linspace(1.0, 0.0, steps + 1, device=noise.device)
    for i in range(steps):
        if check is not None:
            check()
        t = ts[i].expand(x.shape[0])
        x = x - (ts[i] - ts[i + 1]) * model(x, t)
    return x
