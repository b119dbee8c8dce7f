"""Depth at latent resolution, and which latent cells are trustworthy enough to enter the memory.

Two stages, both deterministic and batched:

``reduce_depth`` turns a metric H x W depth image into h x w latent depth. Each latent cell sees
a (H/h) x (W/w) block of pixels. We sort the block's valid depths (finite and > 0) and

* mark the cell invalid when fewer than ``min_valid_fraction`` of the pixels are valid;
* otherwise, when no two consecutive sorted depths differ by more than ``max_relative_gap``
  times the median, take the lower median of the valid depths. A tilted plane spreads its depths
  evenly over the block (small gaps even when the total spread is large), so it counts as one
  surface: with 8 x 8 blocks a plane stays gap-free up to roughly 80 degrees of incidence at the
  default 0.1, while a 10 % step is caught at any angle. A median never averages across an edge:
  it is always a depth that some pixel really measured;
* a block with such a gap holds a depth edge (a mixed block). Its *near cluster* is the run of
  sorted depths before the first gap that exceeds ``max_relative_gap`` times the lower median of
  the depths up to that gap (those prefix medians never exceed the block's median, so a mixed
  block always has such a cut, and the near cluster has no gap of its own by that rule). When the
  near cluster holds at least ``min_near_fraction`` of the block's pixels (default 0.25: a pole
  or table leg covering a quarter of the block), the cell takes its lower median; otherwise the
  cell is invalid. The near side of an edge is a real surface the robot can hit, often thinner
  than a cell; the latent there mixes surfaces, but for collision checking the near depth is the
  safe one. The far surface and the pixels between the two are never chosen.
  ``min_near_fraction=1`` restores the older rule that rejects every mixed block.

``cell_validity`` then looks at the latent grid itself and rejects

* depths outside ``[min_depth, max_depth]``;
* flying points and far sides at depth discontinuities: for a plane the inverse depth of a
  pinhole camera is an affine function of the cell coordinates, so along each axis with both
  4-neighbours valid the dimensionless second difference ``|z / z_prev - 2 + z / z_next|`` is zero
  on any plane, however tilted. Above ``edge_threshold`` (default 0.1) the cell sits on a step or
  a sharp crease. It is still kept when it is the near side of that step, i.e. no farther than
  ``(1 + edge_threshold)`` times its nearer neighbour on that axis: the front of an obstacle is a
  real surface (a 4 x 4-cell box in front of a wall keeps all 16 cells, a pole one cell wide is
  kept). The tolerance lets the receding border of a mildly tilted obstacle count as near side;
  for a flat far surface it rejects exactly the cells the second difference flags (there the
  second difference equals ``z / z_prev - 1``). Rejected are the far side of a step (the wall
  cells next to the box) and flying points whose depth lies between the two surfaces, more than
  ``edge_threshold`` behind the nearer neighbour (e.g. 1.5 m between 1 m and 2 m);
* grazing views: the surface normal is the cross product of one horizontal and one vertical
  tangent between neighbouring unprojected cell centres (on each axis the neighbour with the
  smaller depth change, so a cell next to an edge still gets the normal of its own surface). A
  cell more than ``edge_threshold`` in front of both neighbours on an axis (a ridge: a pole one
  cell wide) has no neighbour on its own surface there, and takes the fronto-parallel tangent
  along that axis (the step to the next cell centre at its own depth). The cell is rejected when
  the angle between that normal and the viewing ray exceeds ``max_incidence_deg`` (default 75
  degrees; at 16 x 16 latent cells over a 90 degree field of view one cell then spans a depth
  change of about 50 %) or when no tangent can be formed on an axis (an isolated cell cannot be
  checked, so it is not trusted).

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
    min_near_fraction: float = 0.25,
) -> torch.Tensor:
    """Robust per-block depth: ``[B,H,W]`` metres -> ``[B,h,w]`` float32, 0 where invalid.

    ``H`` and ``W`` must be multiples of ``h`` and ``w``. Pixels that are NaN, inf, zero or
    negative are invalid. See the module docstring for the rule; ``min_near_fraction=1`` gives
    the older rule that rejects every block with a depth edge.
    """
    if not isinstance(depth_hw, torch.Tensor):
        raise ValueError("depth_hw must be a torch tensor")
    if depth_hw.ndim != 3:
        raise ValueError(f"depth_hw must have shape [B,H,W], got {list(depth_hw.shape)}")
    if not depth_hw.is_floating_point():
        raise ValueError(f"depth_hw must have a floating-point dtype, got {depth_hw.dtype}")
    if not 0.0 < min_valid_fraction <= 1.0:
        raise ValueError("min_valid_fraction must be in (0, 1]")
    if not max_relative_gap > 0.0:
        raise ValueError("max_relative_gap must be > 0")
    if not 0.0 < min_near_fraction <= 1.0:
        raise ValueError(f"min_near_fraction must be in (0, 1], got {min_near_fraction!r}")
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
    enough = count >= min_count
    ok = enough & (max_gap <= max_relative_gap * median)
    # Mixed blocks: cut the sorted depths at the first gap i (between ordered[i] and
    # ordered[i + 1]) that exceeds max_relative_gap times the lower median ordered[i // 2] of the
    # prefix ordered[0..i]. The prefix medians never exceed the block median, so every block that
    # fails the gap test above has such a cut; no gap inside the near cluster exceeds the bound
    # for its own median, which is ordered[cut // 2].
    idx = torch.arange(kh * kw - 1, device=d.device)
    prefix_median = ordered[..., idx // 2]
    is_cut = in_valid_run & (gaps > max_relative_gap * prefix_median)
    cut = torch.where(is_cut, idx, torch.full_like(idx, kh * kw)).amin(dim=-1)
    near_median = ordered.gather(-1, (cut.clamp(max=kh * kw - 1) // 2)[..., None])[..., 0]
    min_near = max(1, math.ceil(min_near_fraction * kh * kw - 1e-9))
    near_ok = enough & ~ok & (cut + 1 >= min_near) & (cut < kh * kw)
    out = torch.where(near_ok, near_median, torch.zeros_like(median))
    return torch.where(ok, median, out)


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
    ridge = {}
    for axis in (1, 2):  # v then u
        prev_ok, next_ok = _shifted(depth_ok, axis, False)
        prev_z, next_z = _shifted(z, axis, 1.0)
        both = depth_ok & prev_ok & next_ok
        curvature = (z / prev_z - 2.0 + z / next_z).abs()
        nearest = torch.minimum(prev_z, next_z)
        near_side = z <= nearest * (1.0 + edge_threshold)
        edge_ok &= ~(both & (curvature > edge_threshold) & ~near_side)
        # In front of both neighbours (a pole one cell wide): no neighbour on its own surface.
        ridge[axis] = both & (z * (1.0 + edge_threshold) < nearest)

    tangents = []
    for axis in (2, 1):  # u (horizontal) then v (vertical)
        prev_ok, next_ok = _shifted(depth_ok, axis, False)
        prev_p, next_p = _shifted(pts, axis, 0.0)
        fwd = next_p - pts
        bwd = pts - prev_p
        has_fwd = depth_ok & next_ok
        has_bwd = depth_ok & prev_ok
        use_fwd = has_fwd & (~has_bwd | (fwd[..., 2].abs() <= bwd[..., 2].abs()))
        tangent = torch.where(use_fwd[..., None], fwd, bwd)
        # A ridge cell takes the fronto-parallel tangent: the step along the image axis at its
        # own depth (both tangents to the surfaces behind it say nothing about its own normal).
        focal = intr[:, 0 if axis == 2 else 1, None, None]
        step = z / focal
        zero = torch.zeros_like(step)
        flat = torch.stack([step, zero, zero] if axis == 2 else [zero, step, zero], dim=-1)
        tangent = torch.where(ridge[axis][..., None], flat, tangent)
        tangents.append((tangent, has_fwd | has_bwd))
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
