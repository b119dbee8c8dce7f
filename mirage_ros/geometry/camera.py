"""Pinhole camera intrinsics at pixel and latent resolution.

Pixel convention (used everywhere in mirage_ros)
------------------------------------------------
Continuous image coordinates are ``(u, v)``: ``u`` grows to the right (columns), ``v`` grows
downwards (rows). Cell ``(u, v)`` of an ``h x w`` grid covers ``[u, u+1) x [v, v+1)``; its centre
is ``(u + 0.5, v + 0.5)``; a continuous coordinate falls in cell ``floor(u), floor(v)``. The
image spans ``[0, w] x [0, h]``, so a centred camera has ``cx = w / 2`` and ``cy = h / 2``.

Because the grid edges (not the cell centres) are anchored at 0 and ``w``, resizing an image from
``w x h`` to ``w' x h'`` maps coordinates by a pure scale: ``fx, cx`` are multiplied by ``w'/w``
and ``fy, cy`` by ``h'/h``. That is how a 128x128 camera becomes its 16x16 latent grid (f = 8).

ROS ``sensor_msgs/CameraInfo`` and OpenCV put pixel *centres* at integer coordinates instead
(pixel ``i`` covers ``[i - 0.5, i + 0.5)``), so ``cx_ours = cx_ros + 0.5`` and
``cy_ours = cy_ros + 0.5``; focal lengths and skew are the same in both. Convert with
:func:`k_from_ros` / :func:`k_to_ros` or :meth:`PinholeCamera.from_ros_k` /
:meth:`PinholeCamera.ros_k` at the boundary and never mix the two conventions inside.

Camera points are in the camera *optical* frame (REP-103: x right, y down, z forward) and "depth"
is the z coordinate along the optical axis, not the distance along the ray.

Array functions take ``K`` as ``[..., 3, 3]`` and broadcast its leading dimensions against the
leading dimensions of the point arrays, so one call can serve a batch of cameras.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "PinholeCamera",
    "cell_index",
    "intrinsics_matrix",
    "k_from_ros",
    "k_to_ros",
    "pixel_centers",
    "project",
    "scale_intrinsics",
    "unproject",
]

# Half a pixel: the offset between our grid-edge convention and ROS/OpenCV's centre convention.
_ROS_CENTRE_OFFSET = 0.5


def intrinsics_matrix(fx: ArrayLike, fy: ArrayLike, cx: ArrayLike, cy: ArrayLike) -> NDArray:
    """``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``; array arguments give ``[..., 3, 3]``."""
    fx, fy, cx, cy = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.float64) for a in (fx, fy, cx, cy))
    )
    K = np.zeros(fx.shape + (3, 3))
    K[..., 0, 0] = fx
    K[..., 0, 2] = cx
    K[..., 1, 1] = fy
    K[..., 1, 2] = cy
    K[..., 2, 2] = 1.0
    return K


def _as_k(K: ArrayLike) -> NDArray:
    K = np.asarray(K, dtype=np.float64)
    if K.shape[-2:] != (3, 3):
        raise ValueError(f"K must have shape [..., 3, 3], got {K.shape}")
    return K


def scale_intrinsics(
    K: ArrayLike, size: tuple[int, int], new_size: tuple[int, int]
) -> NDArray:
    """Rescale ``K`` ([..., 3, 3]) from an ``(h, w)`` image to ``(h_new, w_new)``.

    Under the grid-edge convention this is exact: row 0 (fx, skew, cx) is multiplied by
    ``w_new / w`` and row 1 (fy, cy) by ``h_new / h``.
    """
    (h, w), (h_new, w_new) = size, new_size
    if min(h, w, h_new, w_new) <= 0:
        raise ValueError(f"image sizes must be positive, got {size} -> {new_size}")
    K = _as_k(K).copy()
    K[..., 0, :] *= w_new / w
    K[..., 1, :] *= h_new / h
    return K


def k_from_ros(k_ros: ArrayLike) -> NDArray:
    """Convert a ROS/OpenCV K (3x3, or the 9 row-major values of ``CameraInfo.k``) to ours.

    Adds half a pixel to the principal point; see the module docstring.
    """
    K = np.asarray(k_ros, dtype=np.float64)
    if K.shape[-1:] == (9,):
        K = K.reshape(K.shape[:-1] + (3, 3))
    K = _as_k(K).copy()
    K[..., 0, 2] += _ROS_CENTRE_OFFSET
    K[..., 1, 2] += _ROS_CENTRE_OFFSET
    return K


def k_to_ros(K: ArrayLike) -> NDArray:
    """Convert our K ([..., 3, 3]) to the ROS/OpenCV convention (principal point - 0.5 px)."""
    K = _as_k(K).copy()
    K[..., 0, 2] -= _ROS_CENTRE_OFFSET
    K[..., 1, 2] -= _ROS_CENTRE_OFFSET
    return K


def pixel_centers(height: int, width: int) -> NDArray:
    """Cell centres of an ``height x width`` grid as ``[height, width, 2]`` holding ``(u, v)``.

    ``pixel_centers(h, w)[v, u] == (u + 0.5, v + 0.5)``.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"grid size must be positive, got {height}x{width}")
    u = np.arange(width, dtype=np.float64) + 0.5
    v = np.arange(height, dtype=np.float64) + 0.5
    uu, vv = np.meshgrid(u, v, indexing="xy")
    return np.stack([uu, vv], axis=-1)


def cell_index(uv: ArrayLike) -> NDArray:
    """Integer cell ``(u, v)`` containing each continuous coordinate: ``floor`` of each.

    Bounds are not checked; cells outside ``[0, w) x [0, h)`` are the caller's to mask.
    """
    return np.floor(np.asarray(uv, dtype=np.float64)).astype(np.int64)


def project(K: ArrayLike, points: ArrayLike) -> NDArray:
    """Project optical-frame points ``[..., N, 3]`` to pixel coordinates ``[..., N, 2]``.

    ``K`` is ``[..., 3, 3]`` and broadcasts over the leading dimensions. Points with ``z <= 0``
    (on or behind the camera plane) have no image and come back as NaN, so that they can never
    be mistaken for a valid pixel; depth is simply ``points[..., 2]``.
    """
    K = _as_k(K)
    p = np.asarray(points, dtype=np.float64)
    if p.shape[-1] != 3:
        raise ValueError(f"points must have shape [..., N, 3], got {p.shape}")
    z = p[..., 2:3]
    in_front = z > 0
    # Divide only where it is defined; the rest is overwritten with NaN below.
    xy = np.divide(p[..., :2], z, out=np.zeros_like(p[..., :2]), where=in_front)
    homogeneous = np.concatenate([xy, np.ones_like(z)], axis=-1)
    uv = (homogeneous @ np.swapaxes(K, -1, -2))[..., :2]
    return np.where(in_front, uv, np.nan)


def unproject(K: ArrayLike, uv: ArrayLike, depth: ArrayLike) -> NDArray:
    """Lift pixel coordinates ``[..., N, 2]`` with depth ``[..., N]`` to optical-frame points.

    ``depth`` is z along the optical axis (not the range along the ray). Returns ``[..., N, 3]``;
    ``K`` ([..., 3, 3]) broadcasts over the leading dimensions.
    """
    K_inv = np.linalg.inv(_as_k(K))
    uv = np.asarray(uv, dtype=np.float64)
    if uv.shape[-1] != 2:
        raise ValueError(f"uv must have shape [..., N, 2], got {uv.shape}")
    homogeneous = np.concatenate([uv, np.ones_like(uv[..., :1])], axis=-1)
    rays = homogeneous @ np.swapaxes(K_inv, -1, -2)  # z component is exactly 1
    return rays * np.asarray(depth, dtype=np.float64)[..., None]


@dataclass(frozen=True)
class PinholeCamera:
    """Pinhole intrinsics of an ``height x width`` image in the grid-edge convention.

    Zero skew and no distortion: images are expected rectified (ROS ``image_rect``), so
    ``CameraInfo.d`` is not used.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        if not (self.width > 0 and self.height > 0):
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        values = (self.fx, self.fy, self.cx, self.cy)
        if not all(math.isfinite(x) for x in values):
            raise ValueError(f"intrinsics must be finite, got fx, fy, cx, cy = {values}")
        if not (self.fx > 0 and self.fy > 0):
            raise ValueError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")

    @classmethod
    def from_hfov(cls, hfov: float, width: int, height: int) -> PinholeCamera:
        """Centred camera with square pixels and horizontal field of view ``hfov`` (radians)."""
        if not 0.0 < hfov < math.pi:
            raise ValueError(f"hfov must be in (0, pi) radians, got {hfov}")
        f = (width / 2.0) / math.tan(hfov / 2.0)
        return cls(fx=f, fy=f, cx=width / 2.0, cy=height / 2.0, width=width, height=height)

    @classmethod
    def from_k(cls, K: ArrayLike, width: int, height: int) -> PinholeCamera:
        """From a 3x3 K already in our convention; rejects skew, which this class cannot hold."""
        K = _as_k(K)
        if K.shape != (3, 3):
            raise ValueError(f"expected a single 3x3 K, got {K.shape}")
        if K[0, 1] != 0.0 or K[1, 0] != 0.0 or not np.array_equal(K[2], [0.0, 0.0, 1.0]):
            raise ValueError(f"K must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], got {K.tolist()}")
        return cls(
            fx=float(K[0, 0]), fy=float(K[1, 1]), cx=float(K[0, 2]), cy=float(K[1, 2]),
            width=int(width), height=int(height),
        )

    @classmethod
    def from_ros_k(cls, k: Sequence[float] | ArrayLike, width: int, height: int) -> PinholeCamera:
        """From ROS ``CameraInfo.k`` (9 row-major values) or an OpenCV 3x3 camera matrix."""
        return cls.from_k(k_from_ros(k), width, height)

    @property
    def K(self) -> NDArray:
        """3x3 intrinsics matrix in our convention."""
        return intrinsics_matrix(self.fx, self.fy, self.cx, self.cy)

    def ros_k(self) -> NDArray:
        """3x3 intrinsics in the ROS/OpenCV convention; ``.ravel()`` gives ``CameraInfo.k``."""
        return k_to_ros(self.K)

    def scaled(self, height: int, width: int) -> PinholeCamera:
        """The same camera resampled to ``height x width`` (e.g. its latent grid)."""
        K = scale_intrinsics(self.K, (self.height, self.width), (height, width))
        return PinholeCamera.from_k(K, width, height)

    def project(self, points: ArrayLike) -> NDArray:
        """See :func:`project`."""
        return project(self.K, points)

    def unproject(self, uv: ArrayLike, depth: ArrayLike) -> NDArray:
        """See :func:`unproject`."""
        return unproject(self.K, uv, depth)

    def pixel_centers(self) -> NDArray:
        """See :func:`pixel_centers`."""
        return pixel_centers(self.height, self.width)
