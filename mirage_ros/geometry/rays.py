"""Plücker ray maps: one ray per grid cell, the pose conditioning of the diffusion model.

For each cell centre ``(u + 0.5, v + 0.5)`` (see :mod:`mirage_ros.geometry.camera`) the ray leaves
the camera centre ``o`` along the unit direction ``d``, both written in a reference frame (the map,
or the frame of a reference camera). Its Plücker coordinates are ``(d, m)`` with moment
``m = o x d``; they do not depend on where along the ray ``o`` is taken, and ``d . m = 0``.

Channel order of the ``[6, h, w]`` map: ``(d_x, d_y, d_z, m_x, m_y, m_z)``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mirage_ros.geometry.camera import pixel_centers, unproject
from mirage_ros.geometry.se3 import rotate_vectors

__all__ = ["plucker_rays"]


def plucker_rays(K: ArrayLike, cam_to_ref: ArrayLike, height: int, width: int) -> NDArray:
    """Plücker map ``[..., 6, height, width]`` of cameras with intrinsics ``K`` at ``cam_to_ref``.

    ``K`` ([..., 3, 3]) must describe the ``height x width`` grid itself: for latent-resolution
    rays scale it first (``PinholeCamera.scaled`` or ``scale_intrinsics``). ``cam_to_ref``
    ([..., 4, 4]) maps camera optical coordinates to the reference frame. The leading dimensions
    of ``K`` and ``cam_to_ref`` broadcast, e.g. one K for a batch of poses.
    """
    T = np.asarray(cam_to_ref, dtype=np.float64)
    if T.shape[-2:] != (4, 4):
        raise ValueError(f"cam_to_ref must have shape [..., 4, 4], got {T.shape}")
    centres = pixel_centers(height, width).reshape(-1, 2)
    # Depth 1 gives the ray through each centre; its scale is irrelevant once normalised.
    directions = unproject(K, centres, np.ones(len(centres)))
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    d = rotate_vectors(T, directions)
    m = np.cross(T[..., None, :3, 3], d)
    rays = np.concatenate([d, m], axis=-1)
    rays = rays.reshape(rays.shape[:-2] + (height, width, 6))
    return np.ascontiguousarray(np.moveaxis(rays, -1, -3))
