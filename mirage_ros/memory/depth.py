"""Depth at latent resolution, and which latent cells are trustworthy enough to enter the memory.

Two stages, both deterministic and batched:

``reduce_depth`` turns a metric H x W depth image into h x w latent depth. Each latent cell sees
a (H/h) x (W/w) block of pixels. We sort the block's valid depths (finite and > 0) and

* mark the cell invalid when fewer than ``min_valid_fraction`` of the pixels are valid;
* mark it invalid when two consecutive sorted depths differ by more than ``max_relative_gap``
  times the median: that is a depth edge inside the block, and the latent there mixes two
  surfaces. A tilted plane spreads its depths evenly over the block (small gaps even when the
  total spread is large), so it survives: with 8 x 8 blocks a plane stays valid up to roughly
  80 degrees of incidence at the default 0.1, while a 10 % step is caught at any angle;
* otherwise take the lower median of the valid depths. A median never averages across an edge:
  it is always a depth that some pixel really measured.

``cell_validity`` then looks at the latent grid itself and rejects

* depths outside ``[min_depth, max_depth]``;
* flying points at depth discontinuities: for a plane the inverse depth of a pinhole camera is an
  affine function of the cell coordinates, so along each axis with both 4-neighbours valid the
  dimensionless second difference ``|z / z_prev - 2 + z / z_next|`` is zero on any plane, however
  tilted. Above ``edge_threshold`` (default 0.1) the cell sits on a step or a sharp crease and is
  rejected; both sides of a step are rejected, because the encoder's receptive field mixes them;
* grazing views: the surface normal is the cross product of one horizontal and one vertical
  tangent between neighbouring unprojected cell centres (on each axis the neighbour with the
  smaller depth change, so a cell next to an edge still gets the normal of its own surface). The
  cell is rejected when the angle between that normal and the viewing ray exceeds
  ``max_incidence_deg`` (default 75 degrees; at 16 x 16 latent cells over a 90 degree field of
  view one cell then spans a depth change of about 50 %) or when no tangent can be formed on an
  axis (an isolated cell cannot be checked, so it is not trusted).

Cells on the image border have only one neighbour on that axis: the step test is skipped there
and the normal uses the one-sided tangent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .camera import incidence_cosine, unproject_cells


def reduce_depth(
    depth_hw: torch.Tensor,
    h: int,
    w: int,
    *,
    min_valid_fraction: float = 0.5,
    max_relative_gap: float = 0.1,
) -> torch.Tensor:
    """Robust per-block depth: ``[B,H,W]`` metres -> ``[B,h,w]`` float32, 0 where invalid.

    ``H`` and ``W`` must be multiples of ``h`` and ``w``. Pixels that are NaN, inf, zero or
    negative are invalid. See the module docstring for the rule.
    """
    if not isinstance(depth_hw, torch.Tensor):
        raise ValueError("depth_hw must be a torch tensor")
    if depth_hw.ndim != 3:
        raise ValueError(f"depth_hw must have shape [B,H,W], got {list(depth_hw.shape)}")
    if not depth_hw.is_floating_point():
        raise ValueError(f"depth_hw must have a floating-point dtype, got {depth_hw.dtype}")
    if not 0.0 < min_valid_fraction <= 1.0:
        raise ValueError("min_valid_fraction must be in (0, 1]")
    if max_relative_gap <= 0.0:
        raise ValueError("max_relative_gap must be > 0")
    b, big_h, big_w = depth_hw.shape
    if h <= 0 or w <= 0 or big_h % h or big_w % w:
        raise ValueError(f"depth size {big_h}x{big_w} is not a multiple of the latent {h}x{w}")
    kh, kw = big_h // h, big_w // w
    d = depth_hw.to(torch.float32)
    valid = torch.isfinite(d) & (d > 0)
    d = torch.where(valid, d, torch.full_like(d, float("inf")))
    blocks = d.reshape(b, h, kh, w, kw).permute(0, 1, 3, 2, 4).reshape(b, h, w, kh * kw)
    ordered = blocks.sort(dim=-1).values  # invalid (+inf) entries sort last
    count = valid.reshape(b, h, kh, w, kw).sum(dim=(2, 4))
    median_idx = ((count - 1).clamp(min=0) // 2)[..., None]
    median = ordered.gather(-1, median_idx)[..., 0]
    gaps = ordered[..., 1:] - ordered[..., :-1]
    in_valid_run = torch.arange(1, kh * kw, device=d.device) < count[..., None]
    max_gap = torch.where(in_valid_run, gaps, torch.zeros_like(gaps)).amax(dim=-1)
    min_count = max(1, math.ceil(min_valid_fraction * kh * kw - 1e-9))
    ok = (count >= min_count) & (max_gap <= max_relative_gap * median)
    return torch.where(ok, median, torch.zeros_like(median))


@dataclass(frozen=True)
class CellMasks:
    """Per-cell verdicts at latent resolution, each ``[B,h,w]`` bool."""

    depth_ok: torch.Tensor  # finite and within [min_depth, max_depth]
    edge_ok: torch.Tensor  # not on a depth step (only meaningful where depth_ok)
    grazing_ok: torch.Tensor  # normal within max_incidence of the ray (only where depth_ok)

    @property
    def valid(self) -> torch.Tensor:
        return self.depth_ok & self.edge_ok & self.grazing_ok


def cell_validity(
    depth: torch.Tensor,
    intr: torch.Tensor,
    *,
    min_depth: float,
    max_depth: float,
    edge_threshold: float,
    max_incidence_deg: float,
) -> CellMasks:
    """Judge every latent cell: ``depth`` ``[B,h,w]`` f32 metres, ``intr`` ``[B,4]`` f32."""
    depth_ok = torch.isfinite(depth) & (depth >= min_depth) & (depth <= max_depth)
    z = torch.where(depth_ok, depth, torch.ones_like(depth))
    x, y, _ = unproject_cells(z, intr)
    pts = torch.stack([x, y, z], dim=-1)  # [B,h,w,3]

    edge_ok = torch.ones_like(depth_ok)
    for axis in (1, 2):  # v then u
        prev_ok, next_ok = _shifted(depth_ok, axis, False)
        prev_z, next_z = _shifted(z, axis, 1.0)
        both = depth_ok & prev_ok & next_ok
        curvature = (z / prev_z - 2.0 + z / next_z).abs()
        edge_ok &= ~(both & (curvature > edge_threshold))

    tangents = []
    for axis in (2, 1):  # u (horizontal) then v (vertical)
        prev_ok, next_ok = _shifted(depth_ok, axis, False)
        prev_p, next_p = _shifted(pts, axis, 0.0)
        fwd = next_p - pts
        bwd = pts - prev_p
        has_fwd = depth_ok & next_ok
        has_bwd = depth_ok & prev_ok
        use_fwd = has_fwd & (~has_bwd | (fwd[..., 2].abs() <= bwd[..., 2].abs()))
        tangents.append((torch.where(use_fwd[..., None], fwd, bwd), has_fwd | has_bwd))
    (tu, has_u), (tv, has_v) = tangents
    # Written out component by component: reductions may sum in a different order on another
    # device, and these values feed a threshold.
    nx = tu[..., 1] * tv[..., 2] - tu[..., 2] * tv[..., 1]
    ny = tu[..., 2] * tv[..., 0] - tu[..., 0] * tv[..., 2]
    nz = tu[..., 0] * tv[..., 1] - tu[..., 1] * tv[..., 0]
    n_norm = torch.sqrt(nx * nx + ny * ny + nz * nz)
    p_norm = torch.sqrt(x * x + y * y + z * z)
    dot = nx * x + ny * y + nz * z
    cos_inc = dot.abs() / (n_norm * p_norm).clamp_min(1e-30)
    grazing_ok = has_u & has_v & (n_norm > 0) & (cos_inc >= incidence_cosine(max_incidence_deg))
    return CellMasks(depth_ok=depth_ok, edge_ok=edge_ok, grazing_ok=grazing_ok)


def _shifted(t: torch.Tensor, axis: int, fill: float | bool):
    """Values of the previous and next cell along ``axis`` (1 = rows, 2 = columns), padded."""
    n = t.shape[axis]
    pad_shape = list(t.shape)
    pad_shape[axis] = 1
    pad = torch.full(pad_shape, fill, dtype=t.dtype, device=t.device)
    prev = torch.cat([pad, t.narrow(axis, 0, n - 1)], dim=axis)
    nxt = torch.cat([t.narrow(axis, 1, n - 1), pad], dim=axis)
    return prev, nxt
