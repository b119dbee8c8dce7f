"""Batched pinhole camera math for the memory, in torch.

The memory keeps its own small camera layer instead of using ``mirage_ros.geometry`` (numpy, one
camera at a time) because every operation here is batched over frames, views and voxels and must
run on the memory's device.

Conventions (shared with the Triton kernels, which repeat these formulas operation for operation
so that both produce the same float32 bits):

* camera optical frame: x right, y down, z forward; ``cam_to_map`` maps camera to map coordinates.
* cell (u, v) of an h x w grid covers [u, u+1) x [v, v+1); its centre is (u + 0.5, v + 0.5).
* a camera point (x, y, z) lands in cell (floor(x / z * fx + cx), floor(y / z * fy + cy)).
* rigid transforms are applied as ``((r0 * x + r1 * y) + r2 * z) + t`` in float32, each product
  and sum rounded on its own (no fused multiply-add), so that the reference and the kernels agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

# A rotation read from a ROS quaternion in float32 is orthonormal to about 1e-6; anything worse
# than 1e-3 is a caller bug (a scaled or sheared matrix) and would warp the map silently.
_ORTHONORMAL_TOL = 1e-3
_LAST_ROW_TOL = 1e-6


def to_float_tensor(value: object, name: str, device: torch.device) -> torch.Tensor:
    """Accept a torch tensor or anything numpy can read; reject integer and bool inputs."""
    if isinstance(value, torch.Tensor):
        tensor = value
    else:
        try:
            tensor = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{name} must be a tensor or array, got {type(value).__name__}"
            ) from exc
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must have a floating-point dtype, got {tensor.dtype}")
    return tensor.to(device)


_CPU = torch.device("cpu")


def validate_poses(
    cam_to_map: object, name: str, batch_ndim: int | Sequence[int]
) -> torch.Tensor:
    """Check a batch of rigid transforms and return it as float64 ``[..., 4, 4]`` on the CPU.

    ``batch_ndim`` lists the accepted numbers of leading batch dimensions. Poses, intrinsics and
    stamps are a few numbers per view: they are checked on the CPU (one copy, no chain of tiny
    device kernels and syncs) and the callers move what they need to the memory's device.
    """
    poses = to_float_tensor(cam_to_map, name, _CPU)
    allowed = (batch_ndim,) if isinstance(batch_ndim, int) else tuple(batch_ndim)
    if poses.ndim - 2 not in allowed or poses.shape[-2:] != (4, 4):
        shapes = " or ".join("[" + ",".join(["N"] * k + ["4", "4"]) + "]" for k in allowed)
        raise ValueError(f"{name} must have shape {shapes}, got {list(poses.shape)}")
    poses = poses.to(torch.float64)
    if poses.numel() == 0:
        return poses
    if not bool(torch.isfinite(poses).all()):
        raise ValueError(f"{name} contains NaN or inf")
    last = poses[..., 3, :]
    expected = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64, device=poses.device)
    if float((last - expected).abs().max()) > _LAST_ROW_TOL:
        raise ValueError(f"{name} must have last row [0, 0, 0, 1]")
    rot = poses[..., :3, :3]
    eye = torch.eye(3, dtype=torch.float64, device=poses.device)
    ortho = (rot @ rot.transpose(-1, -2) - eye).abs().amax()
    # Determinant by the triple product: linalg.det runs a batched LU (milliseconds for 512
    # poses), this is a handful of elementwise ops.
    det = (torch.linalg.cross(rot[..., 0, :], rot[..., 1, :], dim=-1) * rot[..., 2, :]).sum(-1)
    if float(ortho) > _ORTHONORMAL_TOL or bool((det <= 0).any()):
        raise ValueError(f"{name} rotation part is not a proper rotation (orthonormal, det +1)")
    return poses


def validate_intrinsics(K: object, batch_shape: tuple[int, ...], name: str) -> torch.Tensor:
    """Check pinhole intrinsics; return CPU float64 ``[*batch_shape, 4]`` as (fx, fy, cx, cy).

    ``K`` is one ``[3, 3]`` matrix shared by the batch or one per batch element.
    """
    k = to_float_tensor(K, name, _CPU).to(torch.float64)
    if k.shape == (3, 3):
        k = k.expand(*batch_shape, 3, 3)
    elif tuple(k.shape) != (*batch_shape, 3, 3):
        want = "[3,3] or [" + ",".join(str(s) for s in (*batch_shape, 3, 3)) + "]"
        raise ValueError(f"{name} must have shape {want}, got {list(k.shape)}")
    if k.numel() == 0:
        return k.new_zeros(*batch_shape, 4)
    if not bool(torch.isfinite(k).all()):
        raise ValueError(f"{name} contains NaN or inf")
    fx, fy = k[..., 0, 0], k[..., 1, 1]
    if bool((fx <= 0).any()) or bool((fy <= 0).any()):
        raise ValueError(f"{name} focal lengths fx, fy must be > 0")
    zero_terms = torch.stack([k[..., 0, 1], k[..., 1, 0], k[..., 2, 0], k[..., 2, 1]], dim=-1)
    if bool((zero_terms != 0).any()) or bool((k[..., 2, 2] != 1).any()):
        raise ValueError(
            f"{name} must be a pinhole matrix [[fx,0,cx],[0,fy,cy],[0,0,1]] (no skew)"
        )
    return torch.stack([fx, fy, k[..., 0, 2], k[..., 1, 2]], dim=-1)


def validate_hw(hw: object) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in hw)  # type: ignore[union-attr]
        ok = all(int(x) == x for x in hw)  # type: ignore[union-attr]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"hw must be a pair of positive ints, got {hw!r}") from exc
    if not ok or h <= 0 or w <= 0:
        raise ValueError(f"hw must be a pair of positive ints, got {hw!r}")
    return h, w


def validate_stamps(stamp: object, batch: int) -> torch.Tensor:
    """A scalar stamp (seconds) for the whole batch or one per frame -> CPU f64 ``[batch]``."""
    if isinstance(stamp, torch.Tensor):
        s = stamp.detach().to(device=_CPU, dtype=torch.float64)
    else:
        try:
            s = torch.as_tensor(np.asarray(stamp, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"stamp must be a number or [B] numbers, got {stamp!r}") from exc
    if s.ndim == 0:
        s = s.expand(batch)
    if s.shape != (batch,):
        raise ValueError(f"stamp must be a scalar or have shape [{batch}], got {list(s.shape)}")
    if batch and not bool(torch.isfinite(s).all()):
        raise ValueError("stamp contains NaN or inf")
    return s.contiguous()


def rows_cam_to_map(poses: torch.Tensor) -> torch.Tensor:
    """float64 ``[..., 4, 4]`` -> float32 ``[..., 12]``: the 3x4 camera-to-map block, row-major."""
    return poses[..., :3, :].reshape(*poses.shape[:-2], 12).to(torch.float32).contiguous()


def rows_map_to_cam(poses: torch.Tensor) -> torch.Tensor:
    """float64 ``[..., 4, 4]`` -> float32 ``[..., 12]``: the inverse 3x4 block, row-major.

    Inverted in float64 and rounded once, with explicit elementwise products and sums (no
    matmul), so every device computes the same bits.
    """
    r = poses[..., :3, :3]
    t = poses[..., :3, 3]
    rows = []
    for i in range(3):  # row i of R^T is column i of R
        c0, c1, c2 = r[..., 0, i], r[..., 1, i], r[..., 2, i]
        rows += [c0, c1, c2, -(c0 * t[..., 0] + c1 * t[..., 1] + c2 * t[..., 2])]
    return torch.stack(rows, dim=-1).to(torch.float32).contiguous()


def apply_rows(rows: torch.Tensor, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor):
    """Apply 3x4 transforms (``[..., 12]``, broadcast against x, y, z) in the shared op order."""
    r = rows.unbind(-1)
    ox = r[0] * x + r[1] * y + r[2] * z + r[3]
    oy = r[4] * x + r[5] * y + r[6] * z + r[7]
    oz = r[8] * x + r[9] * y + r[10] * z + r[11]
    return ox, oy, oz


def unproject_cells(depth: torch.Tensor, intr: torch.Tensor):
    """Camera-frame points of the cell centres: depth ``[B,h,w]`` f32, intr ``[B,4]`` f32."""
    _, h, w = depth.shape
    dev = depth.device
    uc = torch.arange(w, device=dev, dtype=torch.float32) + 0.5
    vc = torch.arange(h, device=dev, dtype=torch.float32) + 0.5
    fx, fy, cx, cy = (t[:, None, None] for t in intr.unbind(-1))
    x = (uc[None, None, :] - cx) / fx * depth
    y = (vc[None, :, None] - cy) / fy * depth
    return x, y, depth


def frustum_planes(
    w2c: torch.Tensor, intr: torch.Tensor, h: int, w: int, near: float, far: float
) -> torch.Tensor:
    """Map-frame half-spaces ``a . p + d >= 0`` bounding each view's visible volume: ``[V,6,4]``.

    Used only to cull whole blocks of voxels, never to decide a single voxel, so float rounding
    here cannot change a read (the block test keeps a margin; see ``zbuffer.visible_blocks``).
    """
    v = w2c.shape[0]
    rows = w2c.to(torch.float64).reshape(v, 3, 4)  # camera x, y, z as affine maps of p
    fx, fy, cx, cy = intr.to(torch.float64).unbind(-1)
    # Each plane is alpha * x_cam + beta * y_cam + gamma * z_cam + delta, in the order
    # z >= near, z <= far, u >= 0, u < w, v >= 0, v < h.
    coef = torch.zeros(v, 6, 3, dtype=torch.float64, device=rows.device)
    coef[:, 0, 2] = 1.0
    coef[:, 1, 2] = -1.0
    coef[:, 2, 0], coef[:, 2, 2] = fx, cx
    coef[:, 3, 0], coef[:, 3, 2] = -fx, w - cx
    coef[:, 4, 1], coef[:, 4, 2] = fy, cy
    coef[:, 5, 1], coef[:, 5, 2] = -fy, h - cy
    # Three broadcast products rather than bmm: float64 bmm on small batches is slow on CPU.
    planes = (
        coef[..., 0:1] * rows[:, None, 0] + coef[..., 1:2] * rows[:, None, 1]
    ) + coef[..., 2:3] * rows[:, None, 2]  # [V,6,4]
    planes[:, 0, 3] -= near
    planes[:, 1, 3] += far
    return planes.to(torch.float32)


def incidence_cosine(max_incidence_deg: float) -> float:
    if not 0.0 < max_incidence_deg <= 90.0:
        raise ValueError("max_incidence_deg must be in (0, 90]")
    return math.cos(math.radians(max_incidence_deg))
