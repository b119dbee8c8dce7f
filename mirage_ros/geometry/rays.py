"""Plücker ray maps: one ray per grid cell, the pose conditioning of the diffusion model.

For each cell centre ``(u + 0.5, v + 0.5)`` (see :mod:`mirage_ros.geometry.camera`) the ray leaves
the camera centre ``o`` along the unit direction ``d``, both written in a reference frame (the map,
or the frame of a reference camera). Its Plücker coordinates are ``(d, m)`` with moment
``m = o x d``; they do not depend on where along the ray ``o`` is taken, and ``d . m = 0``.

Channel order of the ``[6, h, w]`` map: ``(d_x, d_y, d_z, m_x, m_y, m_z)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    import torch

__all__ = ["floor_rays_torch", "plucker_rays", "plucker_rays_torch"]


def _cell_rays(K, height: int, width: int):
    """``(x, y)`` ``[..., height, width]``: the optical-frame ray through each cell centre at
    depth 1 (``K^-1 [u + 0.5, v + 0.5, 1]``), on K's device and dtype."""
    import torch

    u = torch.arange(width, dtype=K.dtype, device=K.device) + 0.5
    v = torch.arange(height, dtype=K.dtype, device=K.device) + 0.5
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    fx, fy = K[..., 0, 0, None, None], K[..., 1, 1, None, None]
    cx, cy = K[..., 0, 2, None, None], K[..., 1, 2, None, None]
    skew = K[..., 0, 1, None, None]
    y = (vv - cy) / fy
    x = (uu - cx - skew * y) / fx
    return x, y


def plucker_rays_torch(K: torch.Tensor, cam_to_ref: torch.Tensor, height: int,
                       width: int) -> torch.Tensor:  # noqa: F821 (torch is imported lazily)
    """Plücker map ``[..., 6, height, width]`` computed in torch on the inputs' device and dtype.

    ``K`` ([3, 3] or [..., 3, 3]) describes the ``height x width`` grid itself; ``cam_to_ref``
    ([..., 4, 4]) maps camera optical coordinates to the reference frame; leading dimensions
    broadcast. The rollout calls this on the model's device every step, so no host round trip.
    torch is imported here, not at module level: geometry stays cheap to import (the sensors
    and the bag importer use it without torch).
    """
    import torch

    if cam_to_ref.shape[-2:] != (4, 4):
        raise ValueError(f"cam_to_ref must have shape [..., 4, 4], got {tuple(cam_to_ref.shape)}")
    T = cam_to_ref
    # Depth 1 gives the ray through each cell centre; its scale is irrelevant once normalised.
    x, y = _cell_rays(K.to(T), height, width)
    x, y = torch.broadcast_tensors(x, y)
    dirs = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # [..., h, w, 3]
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    R = T[..., None, None, :3, :3]
    d = (R @ dirs[..., None])[..., 0]
    o = T[..., None, None, :3, 3].expand_as(d)
    m = torch.linalg.cross(o, d, dim=-1)
    return torch.cat([d, m], dim=-1).movedim(-1, -3).contiguous()


def plucker_rays(K: ArrayLike, cam_to_ref: ArrayLike, height: int, width: int) -> NDArray:
    """Plücker map ``[..., 6, height, width]`` of cameras with intrinsics ``K`` at ``cam_to_ref``.

    ``K`` ([..., 3, 3]) must describe the ``height x width`` grid itself: for latent-resolution
    rays scale it first (``PinholeCamera.scaled`` or ``scale_intrinsics``). ``cam_to_ref``
    ([..., 4, 4]) maps camera optical coordinates to the reference frame. The leading dimensions
    of ``K`` and ``cam_to_ref`` broadcast, e.g. one K for a batch of poses. The numpy face of
    :func:`plucker_rays_torch` (float64 on the CPU): one implementation of the algorithm.
    """
    T = np.asarray(cam_to_ref, dtype=np.float64)
    if T.shape[-2:] != (4, 4):
        raise ValueError(f"cam_to_ref must have shape [..., 4, 4], got {T.shape}")
    import torch

    K = np.asarray(K, dtype=np.float64)
    lead = np.broadcast_shapes(K.shape[:-2], T.shape[:-2])
    K = torch.from_numpy(np.array(np.broadcast_to(K, lead + (3, 3))))  # copies: writable
    T = torch.from_numpy(np.array(np.broadcast_to(T, lead + (4, 4))))
    return plucker_rays_torch(K, T, height, width).numpy()


MIN_CAMERA_HEIGHT = 0.05  # metres: a camera lower than this is treated as this high


def floor_rays_torch(K: torch.Tensor, cam_to_map: torch.Tensor, height: int,
                     width: int) -> torch.Tensor:  # noqa: F821 (torch is imported lazily)
    """Where the floor is, per cell: ``[..., 2, height, width]`` float32.

    For the ray through each cell centre at optical depth 1 (``K^-1 [u+0.5, v+0.5, 1]``), ``s``
    is how far it descends towards the floor (its dot product with the map's down vector in the
    camera frame) and ``s / H`` the inverse optical depth at which it meets the floor, ``H``
    being the camera's height above the map's ``z = 0`` plane (REP-103: z up; a ground robot's
    floor). Channels: ``[s / H, s]``; both are smooth, and zero at the horizon. A single latent
    holds no metric scale: a depth head given these knows how high and how tilted the camera
    is, so one head serves cameras at any height and pitch.
    """
    import torch

    if cam_to_map.shape[-2:] != (4, 4):
        raise ValueError(f"cam_to_map must have shape [..., 4, 4], got {tuple(cam_to_map.shape)}")
    T = cam_to_map
    x, y = _cell_rays(K.to(T), height, width)
    # The map's down vector (0, 0, -1) in camera coordinates is minus the third row of R.
    down = -T[..., 2, :3]
    s = (x * down[..., 0, None, None] + y * down[..., 1, None, None]
         + down[..., 2, None, None])
    h = T[..., 2, 3].clamp_min(MIN_CAMERA_HEIGHT)[..., None, None]
    return torch.stack([s / h, s], dim=-3).float()
