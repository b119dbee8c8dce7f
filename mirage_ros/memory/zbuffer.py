"""The read's torch reference: project voxels into views and keep the nearest, deterministically.

This file defines what a read returns; the Triton kernels in ``kernels/`` must match it.

Z-buffer key. For each (view, cell) we keep the minimum of a packed int64
``(float32 bits of depth) << 32 | voxel index``. Depths are > 0 (the near plane is > 0), and the
IEEE bits of positive floats order like the floats, so the minimum key is the nearest voxel and,
among voxels at exactly the same depth, the one with the smallest index. ``scatter_reduce`` with
``amin`` on integers gives the same answer in any order of arrival, and so does ``atomic_min`` in
the kernel: nothing depends on which write lands last. The key also carries the winner's depth
bits, so the gather needs no second look at the voxel.

Indices: bank voxels use their table index; overlay entries use ``n_bank + entry index``, so a
bank voxel wins an exact depth tie against an overlay entry (observed content is preferred).

Visibility of a voxel in a view: ``near <= z <= far`` and its projection lies in the image,
``0 <= x / z * fx + cx < w`` and ``0 <= y / z * fy + cy < h``; the cell is the floor of both.

Culling. Voxels are stored in Morton order, so each run of ``CULL_BLOCK`` consecutive voxels is
compact in space. A block whose bounding box lies entirely outside one of a view's six frustum
half-spaces cannot contribute to that view and is skipped, so the work scales with what is
visible rather than with bank size x views. The box test keeps a relative margin of 1e-4 so that
float rounding in it can never drop a block holding a visible voxel: culling changes speed, never
the result (tested).

Holes: a voxel is a point and lands in one cell. Seen from closer than about
``voxel_size * fx`` (0.4 m for 5 cm voxels and fx = 8 at latent resolution) neighbouring voxels
project more than a cell apart and leave empty cells between them. That is accepted: the mask
reports them and the model fills them.
"""

from __future__ import annotations

import torch

from .camera import apply_rows
from .voxel_hash import CULL_BLOCK

SENTINEL = torch.iinfo(torch.int64).max
INDEX_MASK = 0xFFFFFFFF
_MAX_PAIRS = 1 << 20  # (view, voxel) pairs per chunk: bounds the reference's working memory
_CULL_MARGIN = 1e-4


def new_zbuffer(n_views: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    return torch.full((n_views * h * w,), SENTINEL, dtype=torch.int64, device=device)


def visible_blocks(bounds: torch.Tensor, planes: torch.Tensor) -> torch.Tensor:
    """bool ``[V, NB]``: may block b hold a voxel visible in view v (conservative)."""
    lo, hi = bounds[:, :3], bounds[:, 3:]
    centre = (lo + hi) * 0.5
    extent = (hi - lo) * 0.5
    out = []
    for start in range(0, planes.shape[0], 32):  # a few views at a time: [v, 6, NB] temporaries
        p = planes[start : start + 32]
        a = p[..., :3, None]  # [v,6,3,1]
        d = p[..., 3, None]  # [v,6,1]
        c = centre.t()[None, None]  # [1,1,3,NB]
        e = extent.t()[None, None]
        # Max of a . x + d over the box, and the magnitude of its terms for the margin.
        peak = (a * c + a.abs() * e).sum(dim=2) + d
        scale = (a.abs() * (c.abs() + e)).sum(dim=2) + d.abs()
        outside = (peak < -_CULL_MARGIN * scale).any(dim=1)
        out.append(~outside)
    if not out:
        return torch.zeros(0, bounds.shape[0], dtype=torch.bool, device=bounds.device)
    return torch.cat(out, dim=0)


def project(px: torch.Tensor, py: torch.Tensor, pz: torch.Tensor, w2c: torch.Tensor,
            intr: torch.Tensor, h: int, w: int, near: float, far: float,
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Camera depth, image coordinates and visibility of map points (the rule above): rows
    ``w2c [..., 12]`` and ``intr [..., 4]`` broadcast against the points. Returns ``zc``,
    ``fu``, ``fv`` and ``vis``; NaN points are never visible. Every splat of a read uses it."""
    xc, yc, zc = apply_rows(w2c, px, py, pz)
    fx, fy, cx, cy = intr.unbind(-1)
    fu = xc / zc * fx + cx
    fv = yc / zc * fy + cy
    vis = (zc >= near) & (zc <= far) & (fu >= 0) & (fu < w) & (fv >= 0) & (fv < h)
    return zc, fu, fv, vis


def splat_pairs(
    pos: torch.Tensor,
    pidx: torch.Tensor,
    vidx: torch.Tensor,
    w2c: torch.Tensor,
    intr: torch.Tensor,
    h: int,
    w: int,
    near: float,
    far: float,
    zbuf: torch.Tensor,
    index_offset: int,
) -> None:
    """Project voxel ``pidx[i]`` into view ``vidx[i]`` and min-reduce its key into ``zbuf``."""
    px, py, pz = pos[pidx].unbind(-1)
    zc, fu, fv, vis = project(px, py, pz, w2c[vidx], intr[vidx], h, w, near, far)
    if not bool(vis.any()):
        return
    u = fu[vis].floor().to(torch.int64)
    v = fv[vis].floor().to(torch.int64)
    cell = vidx[vis] * (h * w) + v * w + u
    depth_bits = zc[vis].view(torch.int32).to(torch.int64)
    key = (depth_bits << 32) | (pidx[vis] + index_offset)
    zbuf.scatter_reduce_(0, cell, key, reduce="amin")


def splat_bank_reference(
    pos: torch.Tensor,
    bounds: torch.Tensor,
    planes: torch.Tensor,
    w2c: torch.Tensor,
    intr: torch.Tensor,
    h: int,
    w: int,
    near: float,
    far: float,
    zbuf: torch.Tensor,
    index_offset: int = 0,
) -> None:
    """Every voxel into every view (blocks culled per view)."""
    n = pos.shape[0]
    if n == 0 or w2c.shape[0] == 0:
        return
    pairs = visible_blocks(bounds, planes).nonzero()  # (view, block), row-major: deterministic
    lane = torch.arange(CULL_BLOCK, device=pos.device)
    step = max(1, _MAX_PAIRS // CULL_BLOCK)
    for start in range(0, pairs.shape[0], step):
        chunk = pairs[start : start + step]
        pidx = (chunk[:, 1, None] * CULL_BLOCK + lane).reshape(-1)
        vidx = chunk[:, 0, None].expand(-1, CULL_BLOCK).reshape(-1)
        keep = pidx < n
        splat_pairs(pos, pidx[keep], vidx[keep], w2c, intr, h, w, near, far, zbuf, index_offset)


def splat_entries_reference(
    pos: torch.Tensor,
    path: torch.Tensor,
    w2c: torch.Tensor,
    intr: torch.Tensor,
    views_per_path: int,
    h: int,
    w: int,
    near: float,
    far: float,
    zbuf: torch.Tensor,
    index_offset: int,
) -> None:
    """Overlay entries: entry j only into the views of its own path,
    ``path[j] * views_per_path + r`` for r in [0, views_per_path)."""
    m = pos.shape[0]
    if m == 0 or views_per_path == 0:
        return
    r = torch.arange(views_per_path, device=pos.device)
    step = max(1, _MAX_PAIRS // views_per_path)
    for start in range(0, m, step):
        idx = torch.arange(start, min(m, start + step), device=pos.device)
        pidx = idx.repeat_interleave(views_per_path)
        vidx = (path[idx, None] * views_per_path + r).reshape(-1)
        splat_pairs(pos, pidx, vidx, w2c, intr, h, w, near, far, zbuf, index_offset)


def gather_reference(
    zbuf: torch.Tensor,
    bank_latent: torch.Tensor,
    overlay_latent: torch.Tensor | None,
    n_views: int,
    h: int,
    w: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decode the z-buffer: (latent ``[V,C,h,w]``, depth ``[V,h,w]``, mask ``[V,h,w]``);
    exactly 0 / False where nothing projected. Shapes never depend on the data (no boolean
    indexing), so on a GPU it never waits on the host."""
    n_bank, channels = bank_latent.shape
    hit = zbuf != SENTINEL
    idx = torch.where(hit, zbuf & INDEX_MASK, torch.zeros_like(zbuf))
    depth = (zbuf >> 32).to(torch.int32).view(torch.float32)
    depth = torch.where(hit, depth, torch.zeros_like(depth))
    lat = torch.zeros(zbuf.numel(), channels, dtype=torch.float32, device=zbuf.device)
    if n_bank:
        from_bank = hit & (idx < n_bank)
        lat = torch.where(from_bank[:, None], bank_latent[idx.clamp(max=n_bank - 1)], lat)
    if overlay_latent is not None and overlay_latent.shape[0]:
        from_overlay = hit & (idx >= n_bank)
        row = (idx - n_bank).clamp(0, overlay_latent.shape[0] - 1)
        lat = torch.where(from_overlay[:, None], overlay_latent[row], lat)
    latent = lat.reshape(n_views, h, w, channels).permute(0, 3, 1, 2).contiguous()
    return latent, depth.reshape(n_views, h, w), hit.reshape(n_views, h, w)
