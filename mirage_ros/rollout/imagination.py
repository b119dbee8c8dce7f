"""The batched imagination loop: N candidate paths x T steps, never leaving latent space.

Per step, for all paths at once: one memory read of every path's next camera pose (shared bank
merged with each path's own overlay), one DiT sample conditioned on that read, the previous latent
and the relative camera motion (Plücker rays computed in torch on the model's device), one
depth-head call, and one overlay write, so later steps see what earlier steps imagined. The
shared bank is never written. Decoding to RGB is left to the caller (previews only).

This is the only imagination loop in the package: the engine, the evaluation and the
benchmarks all run it through ``RolloutEngine``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mirage_ros.memory import LatentMemory
from mirage_ros.model import WorldModel
from mirage_ros.model.world_model import relative_rays


class RolloutInterrupted(Exception):
    """Raised when the caller asks to stop (cancel, preempt): between steps by ``on_step``,
    within a step by ``should_stop``."""


@dataclass(frozen=True)
class Imagined:
    latents: torch.Tensor  # [N,T,C,h,w] raw latents of steps 1..T
    depth: torch.Tensor  # [N,T,h,w] metres, from the depth head
    memory_depth: torch.Tensor  # [N,T,h,w] metres of what the read filled (0 elsewhere)
    mask: torch.Tensor  # [N,T,h,w] bool, cells the read filled (bank + overlay)
    coverage: torch.Tensor  # [N,T] share of each step's view the read filled

    def merged_depth(self) -> torch.Tensor:
        """Memory depth where the read filled a cell (measured or fused), the head's elsewhere."""
        return torch.where(self.mask, self.memory_depth, self.depth)


@torch.no_grad()
def imagine_paths(
    model: WorldModel,
    bank: LatentMemory,
    start_latent: torch.Tensor,
    K_latent: torch.Tensor,
    cam_to_map: torch.Tensor,
    *,
    sampler_steps: int = 2,
    generator: torch.Generator | None = None,
    timings: dict[str, float] | None = None,
    on_step: Callable[[int, int], bool] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Imagined:
    """Imagine every path's views.

    start_latent: [1,C,h,w] or [N,C,h,w], the latest observed frame; K_latent: [3,3] at latent
    resolution; cam_to_map: [N,T+1,4,4] camera poses (float64 preferred), index 0 being the pose
    of start_latent. ``timings``, when given, accumulates seconds per phase (synchronising CUDA
    around each). ``on_step(done, total)`` runs after every step; returning False stops the
    rollout with ``RolloutInterrupted``. ``should_stop()`` is polled much more often, before
    every phase and between the DiT's and the depth head's blocks, and True stops the rollout the
    same way: one step of a large batch takes hundreds of milliseconds on a CPU, too long for a
    planner waiting on a cancel. It must be cheap (it runs ~30 times a step).
    """
    device = start_latent.device
    poses = torch.as_tensor(cam_to_map).to(device)
    if poses.dtype != torch.float64 and device.type != "mps":
        poses = poses.double()
    n, t1 = poses.shape[:2]
    h, w = start_latent.shape[-2:]
    K = torch.as_tensor(K_latent).to(device=device, dtype=torch.float32)
    overlay = bank.overlay(n)
    prev = start_latent.expand(n, -1, -1, -1)
    timed = phase_timer(device, timings)
    latents, depths, mem_depths, masks = [], [], [], []
    step = 0

    def check() -> None:
        if should_stop is not None and should_stop():
            raise RolloutInterrupted(f"stopped during step {step} of {t1 - 1}")

    poll = None if should_stop is None else check
    for s in range(1, t1):
        step = s
        check()
        view = timed("memory read", lambda s=s: overlay.read(poses[:, s], K, (h, w)))
        rays = timed("conditioning", lambda s=s: relative_rays(
            K, poses[:, s - 1], poses[:, s], (h, w)))
        cond = model.condition(view.latent, view.depth, view.mask, prev, rays)
        prev = timed("DiT sampling", lambda c=cond: model.imagine(c, sampler_steps, generator,
                                                                  poll))
        depth = timed("depth head", lambda p=prev: model.depth(p, check=poll)[0])
        check()
        timed("overlay write", lambda s=s, p=prev, d=depth: overlay.write(
            p, d, K, poses[:, s], float(s)))
        latents.append(prev)
        depths.append(depth)
        mem_depths.append(view.depth)
        masks.append(view.mask)
        if on_step is not None and on_step(s, t1 - 1) is False:
            raise RolloutInterrupted(f"stopped after step {s} of {t1 - 1}")
    mask = torch.stack(masks, 1)
    return Imagined(
        latents=torch.stack(latents, 1),
        depth=torch.stack(depths, 1),
        memory_depth=torch.stack(mem_depths, 1),
        mask=mask,
        coverage=mask.flatten(-2).float().mean(-1),
    )


def phase_timer(device: torch.device, timings: dict[str, float] | None) -> Callable:
    def timed(name: str, fn: Callable):
        if timings is None:
            return fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
        return out

    return timed
