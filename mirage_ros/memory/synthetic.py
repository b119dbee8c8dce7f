"""A tiny analytic scene for tests and benchmarks: a box room with box obstacles, ray-cast.

Depth comes from exact ray / box intersections (z along the optical axis), latents are a fixed
smooth function of the surface point, so two views of one surface carry the same latent there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

Box = tuple[Sequence[float], Sequence[float]]


@dataclass(frozen=True)
class Room:
    lo: tuple[float, float, float] = (-3.0, -2.5, 0.0)
    hi: tuple[float, float, float] = (3.0, 2.5, 2.5)
    obstacles: tuple[Box, ...] = field(
        default_factory=lambda: (
            ((1.2, 0.8, 0.0), (1.8, 1.4, 0.9)),
            ((-2.0, -1.5, 0.0), (-1.2, -0.9, 1.2)),
        )
    )


def pinhole(f: float, h: int, w: int) -> torch.Tensor:
    """A centred pinhole K (cx = w / 2, cy = h / 2), float64."""
    return torch.tensor([[f, 0.0, w / 2], [0.0, f, h / 2], [0.0, 0.0, 1.0]], dtype=torch.float64)


def look_pose(
    position: Sequence[float], forward: Sequence[float], up=(0.0, 0.0, 1.0)
) -> torch.Tensor:
    """Camera-to-map pose of an optical frame at ``position`` looking along ``forward``."""
    p = torch.as_tensor(position, dtype=torch.float64)
    z = torch.as_tensor(forward, dtype=torch.float64)
    z = z / z.norm()
    x = torch.linalg.cross(z, torch.as_tensor(up, dtype=torch.float64))
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, y, z, p
    return pose


def circle_trajectory(
    frames_per_loop: int,
    loops: int = 1,
    *,
    radius: float = 0.8,
    height: float = 1.0,
    pitch_deg: float = -15.0,
    jitter: float = 0.0,
    seed: int = 0,
) -> torch.Tensor:
    """Poses ``[loops * frames_per_loop, 4, 4]`` circling the origin, looking outwards.

    ``jitter`` adds a per-loop random offset (metres, and jitter * 10 degrees of yaw) to mimic a
    robot that never drives exactly the same loop twice.
    """
    gen = torch.Generator().manual_seed(seed)
    poses = []
    pitch = math.radians(pitch_deg)
    for loop in range(loops):
        off = (
            (torch.rand(3, generator=gen, dtype=torch.float64) * 2 - 1) * jitter if loop else None
        )
        yaw_off = float(torch.rand(1, generator=gen, dtype=torch.float64) * 2 - 1) * jitter * 0.17
        for i in range(frames_per_loop):
            a = 2 * math.pi * i / frames_per_loop + (yaw_off if loop else 0.0)
            pos = [radius * math.cos(a), radius * math.sin(a), height]
            if off is not None:
                pos = [p + float(o) for p, o in zip(pos, off, strict=True)]
            fwd = [math.cos(a) * math.cos(pitch), math.sin(a) * math.cos(pitch), math.sin(pitch)]
            poses.append(look_pose(pos, fwd))
    return torch.stack(poses)


def ray_depth(
    cam_to_map: torch.Tensor, K: torch.Tensor, hw: tuple[int, int], room: Room
) -> torch.Tensor:
    """z-depth ``[B,h,w]`` float32 through the pixel centres of an h x w camera; 0 = no hit."""
    h, w = hw
    poses = cam_to_map.to(torch.float64)
    k = K.to(torch.float64)
    u = (torch.arange(w, dtype=torch.float64) + 0.5 - k[0, 2]) / k[0, 0]
    v = (torch.arange(h, dtype=torch.float64) + 0.5 - k[1, 2]) / k[1, 1]
    rays = torch.stack(
        torch.broadcast_tensors(u[None, :], v[:, None], torch.ones(h, w, dtype=torch.float64)), -1
    )
    d = torch.einsum(
        "bij,hwj->bhwi", poses[:, :3, :3], rays
    )  # camera z component is 1: t == depth
    o = poses[:, None, None, :3, 3]
    safe = torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
    lo = torch.tensor(room.lo, dtype=torch.float64)
    hi = torch.tensor(room.hi, dtype=torch.float64)
    t_exit = torch.where(d > 0, (hi - o) / safe, (lo - o) / safe).amin(-1)
    best = t_exit
    for blo, bhi in room.obstacles:
        t1 = (torch.tensor(blo, dtype=torch.float64) - o) / safe
        t2 = (torch.tensor(bhi, dtype=torch.float64) - o) / safe
        t_near = torch.minimum(t1, t2).amax(-1)
        t_far = torch.maximum(t1, t2).amin(-1)
        hit = (t_near <= t_far) & (t_near > 0)
        best = torch.where(hit & (t_near < best), t_near, best)
    best = torch.where(torch.isfinite(best) & (best > 0), best, torch.zeros_like(best))
    return best.to(torch.float32)


def surface_latent(points: torch.Tensor, channels: int, seed: int = 0) -> torch.Tensor:
    """A smooth, fixed feature field: ``[..., 3]`` map points -> ``[..., channels]`` float32."""
    gen = torch.Generator().manual_seed(seed)
    freq = torch.randn(3, channels, generator=gen, dtype=torch.float64) * 2.0
    phase = torch.rand(channels, generator=gen, dtype=torch.float64) * 2 * math.pi
    return torch.sin(points.to(torch.float64) @ freq + phase).to(torch.float32)


def latent_frames(
    cam_to_map: torch.Tensor,
    K_latent: torch.Tensor,
    hw: tuple[int, int],
    channels: int,
    room: Room,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents ``[B,C,h,w]`` (the feature field at each cell centre's surface point) and the
    latent-resolution depth ``[B,h,w]`` of the same rays."""
    h, w = hw
    depth = ray_depth(cam_to_map, K_latent, hw, room)
    k = K_latent.to(torch.float64)
    u = (torch.arange(w, dtype=torch.float64) + 0.5 - k[0, 2]) / k[0, 0]
    v = (torch.arange(h, dtype=torch.float64) + 0.5 - k[1, 2]) / k[1, 1]
    z = depth.to(torch.float64)
    cam = torch.stack([u[None, None, :] * z, v[None, :, None] * z, z], -1)
    poses = cam_to_map.to(torch.float64)
    pts = torch.einsum("bij,bhwj->bhwi", poses[:, :3, :3], cam) + poses[:, None, None, :3, 3]
    lat = surface_latent(pts, channels).permute(0, 3, 1, 2).contiguous()
    return lat, depth
