"""The batched imagination loop: N candidate paths x T steps, never leaving latent space.

Per step, for all paths at once: one memory read of every path's next camera pose (shared bank
merged with each path's own overlay), one DiT sample conditioned on that read, the previous latent
and the relative camera motion, one depth-head call, and one overlay write, so later steps see
what earlier steps imagined. The shared bank is never written. Decoding to RGB is left to the
caller (previews only).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mirage_ros.memory import LatentMemory
from mirage_ros.model import WorldModel
from mirage_ros.model.world_model import relative_rays


@dataclass(frozen=True)
class Imagined:
    latents: torch.Tensor  # [N,T,C,h,w] raw latents of steps 1..T
    depth: torch.Tensor  # [N,T,h,w] metres, from the depth head
    coverage: torch.Tensor  # [N,T] share of each step's view the memory (bank + overlay) filled


@torch.no_grad()
def imagine_paths(
    model: WorldModel,
    bank: LatentMemory,
    start_latent: torch.Tensor,
    K_latent: np.ndarray,
    cam_to_map: np.ndarray,
    *,
    sampler_steps: int = 2,
    generator: torch.Generator | None = None,
    timings: dict[str, float] | None = None,
) -> Imagined:
    """Imagine every path's views.

    start_latent: [1,C,h,w] or [N,C,h,w], the latest observed frame; K_latent: [3,3] at latent
    resolution; cam_to_map: [N,T+1,4,4] camera poses, index 0 being the pose of start_latent.
    `timings`, when given, accumulates seconds per phase (synchronising CUDA around each).
    """
    device = start_latent.device
    n, t1 = cam_to_map.shape[:2]
    h, w = start_latent.shape[-2:]
    K = torch.from_numpy(np.asarray(K_latent)).float().to(device)
    poses = torch.from_numpy(np.asarray(cam_to_map)).float().to(device)
    overlay = bank.overlay(n)
    prev = start_latent.expand(n, -1, -1, -1)
    timed = _timer(device, timings)
    latents, depths, coverage = [], [], []
    for s in range(1, t1):
        view = timed("memory read", lambda s=s: overlay.read(poses[:, s], K, (h, w)))
        rays = timed("conditioning", lambda s=s: relative_rays(
            K_latent, cam_to_map[:, s - 1], cam_to_map[:, s], (h, w)).to(device))
        cond = model.condition(view.latent, view.depth, view.mask, prev, rays)
        prev = timed("DiT sampling", lambda c=cond: model.imagine(c, sampler_steps, generator))
        depth = timed("depth head", lambda p=prev: model.depth(p)[0])
        timed("overlay write", lambda s=s, p=prev, d=depth: overlay.write(
            p, d, K, poses[:, s], float(s)))
        latents.append(prev)
        depths.append(depth)
        coverage.append(view.coverage())
    return Imagined(torch.stack(latents, 1), torch.stack(depths, 1), torch.stack(coverage, 1))


def _timer(device: torch.device, timings: dict[str, float] | None) -> Callable:
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
