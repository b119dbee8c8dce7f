"""Triton kernels for the latent memory read: project + z-buffer, then gather.

Same signatures and results as the torch reference in ``mirage_ros/memory/zbuffer.py``, which
defines correct. Every float operation mirrors the reference one for one (``div_rn`` for IEEE
division, launches with ``enable_fp_fusion=False`` so no multiply-add is contracted), so the
kernels reproduce the reference's float32 bits rather than approximating them.

Project + z-buffer (``_splat_bank_kernel``). One program owns one culling block of 256
consecutive voxels (Morton order, so the block is compact in space) and loads their positions
once. It then walks all V views: a scalar test of the block's bounding box against the view's six
frustum half-spaces skips views the block cannot reach; otherwise each lane projects its voxel
and min-reduces the packed key ``depth_bits << 32 | index`` into the view's z-buffer with one
64-bit ``atomic_min``. The minimum is unique whatever order the atomics land in, so the result is
deterministic, and the key carries the tie-break. Before the atomic, a plain load of the current
value filters out fragments that already lose (the buffer only decreases, so a stale value can
only let through a fragment the atomic then rejects): most fragments never reach the atomic unit.

Gather (``_gather_kernel``). One lane per (view, cell): decode the winner's index and depth from
the key and copy its latent row into the ``[V, C, h, w]`` output, zeros where nothing landed.

Overlays (``_splat_entries_kernel``). Entry j only projects into the views of its own path; the
per-lane view parameters are gathered, which is fine for the small overlay banks.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from mirage_ros.memory.voxel_hash import CULL_BLOCK, block_bounds
from mirage_ros.memory.zbuffer import _CULL_MARGIN, SENTINEL

_NO_CELL: tl.constexpr = tl.constexpr(2**62)  # above any z-buffer cell index
_NO_KEY: tl.constexpr = tl.constexpr(2**63 - 1)  # the empty key, above any packed key
# Per view, 40 float32: 6 frustum planes x 4, world->camera 3x4 row-major, (fx, fy, cx, cy).


@triton.jit
def _project_key(
    px, py, pz, idx, m,
    r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, fx, fy, cx, cy,
    cell_base, h, w, near, far,
):  # fmt: skip
    """Shared projection, operation for operation the reference's ``splat_pairs``.

    Returns (visible mask, flat z-buffer cell, packed key)."""
    xc = r0 * px + r1 * py + r2 * pz + r3
    yc = r4 * px + r5 * py + r6 * pz + r7
    zc = r8 * px + r9 * py + r10 * pz + r11
    fu = tl.math.div_rn(xc, zc) * fx + cx
    fv = tl.math.div_rn(yc, zc) * fy + cy
    vis = m & (zc >= near) & (zc <= far) & (fu >= 0.0) & (fu < w) & (fv >= 0.0) & (fv < h)
    u = tl.where(vis, tl.floor(fu), 0.0).to(tl.int64)
    v = tl.where(vis, tl.floor(fv), 0.0).to(tl.int64)
    cell = cell_base + v * w + u
    zsafe = tl.where(vis, zc, 1.0)
    key = (zsafe.to(tl.int32, bitcast=True).to(tl.int64) << 32) | idx
    return vis, cell, key


@triton.jit
def _box_inside(vp, cbx, cby, cbz, ebx, eby, ebz, vm, MARGIN: tl.constexpr):
    """May the box (centre, half-extent) touch the view whose parameter row is ``vp``?
    Conservative: false only when the box lies wholly outside one of the six half-spaces."""
    inside = vm
    for k in tl.static_range(6):
        a0 = tl.load(vp + 4 * k + 0, mask=vm, other=0.0)
        a1 = tl.load(vp + 4 * k + 1, mask=vm, other=0.0)
        a2 = tl.load(vp + 4 * k + 2, mask=vm, other=0.0)
        d = tl.load(vp + 4 * k + 3, mask=vm, other=0.0)
        peak = a0 * cbx + tl.abs(a0) * ebx + a1 * cby + tl.abs(a1) * eby
        peak = peak + a2 * cbz + tl.abs(a2) * ebz + d
        scale = tl.abs(a0) * (tl.abs(cbx) + ebx) + tl.abs(a1) * (tl.abs(cby) + eby)
        scale = scale + tl.abs(a2) * (tl.abs(cbz) + ebz) + tl.abs(d)
        inside = inside & (peak >= -MARGIN * scale)
    return inside


@triton.jit
def _cull_kernel(
    bounds_ptr,
    views_ptr,
    list_ptr,
    count_ptr,
    n_views,
    MARGIN: tl.constexpr,
    VB: tl.constexpr,
):
    """Per voxel block: the compact, increasing list of views its box may touch, and its length.

    One lane per view, so the frustum test runs once per (block, view) instead of once per warp
    inside the splat loop (where it cost more than the projections themselves)."""
    blk = tl.program_id(0)
    bb = bounds_ptr + blk * 6
    lox = tl.load(bb + 0)
    loy = tl.load(bb + 1)
    loz = tl.load(bb + 2)
    hix = tl.load(bb + 3)
    hiy = tl.load(bb + 4)
    hiz = tl.load(bb + 5)
    cbx = (lox + hix) * 0.5
    cby = (loy + hiy) * 0.5
    cbz = (loz + hiz) * 0.5
    ebx = (hix - lox) * 0.5
    eby = (hiy - loy) * 0.5
    ebz = (hiz - loz) * 0.5
    total = tl.zeros([], tl.int32)
    for v0 in range(0, n_views, VB):
        vv = v0 + tl.arange(0, VB)
        vm = vv < n_views
        inside = _box_inside(views_ptr + vv * 40, cbx, cby, cbz, ebx, eby, ebz, vm, MARGIN)
        inc = inside.to(tl.int32)
        slot = total + tl.cumsum(inc, axis=0) - inc
        tl.store(list_ptr + blk.to(tl.int64) * n_views + slot, vv, mask=inside)
        total = total + tl.sum(inc, axis=0)
    tl.store(count_ptr + blk, total)


@triton.jit
def _splat_bank_kernel(
    pos_ptr,
    n_points,
    bounds_ptr,
    list_ptr,
    count_ptr,
    views_ptr,
    zbuf_ptr,
    n_views,
    h,
    w,
    near,
    far,
    index_offset,
    MARGIN: tl.constexpr,
    BLOCK: tl.constexpr,
    VIEW_SPLIT: tl.constexpr,
    PREFILTER: tl.constexpr,
    CULL: tl.constexpr,
    AGG: tl.constexpr,
):
    blk = tl.program_id(0)
    split = tl.program_id(1)
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    m = offs < n_points
    px = tl.load(pos_ptr + offs * 3 + 0, mask=m, other=0.0)
    py = tl.load(pos_ptr + offs * 3 + 1, mask=m, other=0.0)
    pz = tl.load(pos_ptr + offs * 3 + 2, mask=m, other=0.0)
    idx = offs.to(tl.int64) + index_offset
    bb = bounds_ptr + blk * 6
    lox = tl.load(bb + 0)
    loy = tl.load(bb + 1)
    loz = tl.load(bb + 2)
    hix = tl.load(bb + 3)
    hiy = tl.load(bb + 4)
    hiz = tl.load(bb + 5)
    cbx = (lox + hix) * 0.5
    cby = (loy + hiy) * 0.5
    cbz = (loz + hiz) * 0.5
    ebx = (hix - lox) * 0.5
    eby = (hiy - loy) * 0.5
    ebz = (hiz - loz) * 0.5
    hw64 = (h * w).to(tl.int64)
    # Views are dealt round-robin over VIEW_SPLIT programs per block, which balances the work
    # when some blocks are visible in many views and others in few. CULL = 2 walks the block's
    # list from _cull_kernel; CULL = 1 tests every view here; CULL = 0 projects into all.
    if CULL == 2:
        n_iter = tl.load(count_ptr + blk)
    else:
        n_iter = n_views
    for j in range(split, n_iter, VIEW_SPLIT):
        if CULL == 2:
            view = tl.load(list_ptr + blk.to(tl.int64) * n_views + j)
        else:
            view = j
        vp = views_ptr + view * 40
        inside = blk >= 0
        if CULL == 1:
            inside = _box_inside(vp, cbx, cby, cbz, ebx, eby, ebz, inside, MARGIN)
        if inside:
            vis, cell, key = _project_key(
                px, py, pz, idx, m,
                tl.load(vp + 24), tl.load(vp + 25), tl.load(vp + 26), tl.load(vp + 27),
                tl.load(vp + 28), tl.load(vp + 29), tl.load(vp + 30), tl.load(vp + 31),
                tl.load(vp + 32), tl.load(vp + 33), tl.load(vp + 34), tl.load(vp + 35),
                tl.load(vp + 36), tl.load(vp + 37), tl.load(vp + 38), tl.load(vp + 39),
                view * hw64, h, w, near, far,
            )  # fmt: skip
            # A compact block lands on few cells of a view: reduce the block's fragments of its
            # first AGG distinct cells to one key each (one atomic per cell instead of one per
            # lane on the same address), then send what is left through per-lane atomics.
            for _ in tl.static_range(AGG):
                c0 = tl.min(tl.where(vis, cell, _NO_CELL), axis=0)
                on_c0 = vis & (cell == c0)
                k0 = tl.min(tl.where(on_c0, key, _NO_KEY), axis=0)
                any_c0 = c0 != _NO_CELL
                c0 = tl.where(any_c0, c0, 0)
                if PREFILTER:
                    any_c0 = any_c0 & (k0 < tl.load(zbuf_ptr + c0, mask=any_c0, other=0))
                tl.atomic_min(zbuf_ptr + c0, k0, mask=any_c0, sem="relaxed")
                vis = vis & (cell != c0)
            if PREFILTER:
                cur = tl.load(zbuf_ptr + cell, mask=vis, other=0)
                vis = vis & (key < cur)
            tl.atomic_min(zbuf_ptr + cell, key, mask=vis, sem="relaxed")


@triton.jit
def _splat_entries_kernel(
    pos_ptr,
    path_ptr,
    n_entries,
    views_ptr,
    zbuf_ptr,
    views_per_path,
    h,
    w,
    near,
    far,
    index_offset,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n_entries
    px = tl.load(pos_ptr + offs * 3 + 0, mask=m, other=0.0)
    py = tl.load(pos_ptr + offs * 3 + 1, mask=m, other=0.0)
    pz = tl.load(pos_ptr + offs * 3 + 2, mask=m, other=0.0)
    path = tl.load(path_ptr + offs, mask=m, other=0)
    idx = offs.to(tl.int64) + index_offset
    hw64 = (h * w).to(tl.int64)
    for r in range(0, views_per_path):
        view = path * views_per_path + r
        vp = views_ptr + view * 40
        vis, cell, key = _project_key(
            px, py, pz, idx, m,
            tl.load(vp + 24, mask=m, other=0.0), tl.load(vp + 25, mask=m, other=0.0),
            tl.load(vp + 26, mask=m, other=0.0), tl.load(vp + 27, mask=m, other=0.0),
            tl.load(vp + 28, mask=m, other=0.0), tl.load(vp + 29, mask=m, other=0.0),
            tl.load(vp + 30, mask=m, other=0.0), tl.load(vp + 31, mask=m, other=0.0),
            tl.load(vp + 32, mask=m, other=0.0), tl.load(vp + 33, mask=m, other=0.0),
            tl.load(vp + 34, mask=m, other=1.0), tl.load(vp + 35, mask=m, other=0.0),
            tl.load(vp + 36, mask=m, other=1.0), tl.load(vp + 37, mask=m, other=1.0),
            tl.load(vp + 38, mask=m, other=0.0), tl.load(vp + 39, mask=m, other=0.0),
            view * hw64, h, w, near, far,
        )  # fmt: skip
        cur = tl.load(zbuf_ptr + cell, mask=vis, other=0)
        better = vis & (key < cur)
        tl.atomic_min(zbuf_ptr + cell, key, mask=better, sem="relaxed")


@triton.jit
def _gather_kernel(
    zbuf_ptr,
    n_cells,
    hw,
    bank_ptr,
    n_bank,
    overlay_ptr,
    channels,
    latent_ptr,
    depth_ptr,
    mask_ptr,
    sentinel,
    BLOCK: tl.constexpr,
    CP: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n_cells
    key = tl.load(zbuf_ptr + offs, mask=m, other=sentinel)
    hit = m & (key != sentinel)
    high = key >> 32
    idx = key - (high << 32)
    depth = high.to(tl.int32).to(tl.float32, bitcast=True)
    depth = tl.where(hit, depth, 0.0)
    tl.store(depth_ptr + offs, depth, mask=m)
    tl.store(mask_ptr + offs, hit.to(tl.uint8), mask=m)
    view = offs // hw
    cell = offs - view * hw
    c = tl.arange(0, CP)
    cm = c < channels
    in_bank = hit & (idx < n_bank)
    in_overlay = hit & (idx >= n_bank)
    row_b = tl.where(in_bank, idx, 0)
    row_o = tl.where(in_overlay, idx - n_bank, 0)
    lat_b = tl.load(
        bank_ptr + row_b[:, None] * channels + c[None, :],
        mask=in_bank[:, None] & cm[None, :],
        other=0.0,
    )
    lat_o = tl.load(
        overlay_ptr + row_o[:, None] * channels + c[None, :],
        mask=in_overlay[:, None] & cm[None, :],
        other=0.0,
    )
    lat = tl.where(in_bank[:, None], lat_b, lat_o)
    out = latent_ptr + view[:, None] * (channels * hw) + c[None, :] * hw + cell[:, None]
    tl.store(out, lat, mask=m[:, None] & cm[None, :])


def _view_params(planes: torch.Tensor, w2c: torch.Tensor, intr: torch.Tensor) -> torch.Tensor:
    v = w2c.shape[0]
    return torch.cat([planes.reshape(v, 24), w2c, intr], dim=1).to(torch.float32).contiguous()


def splat_bank(
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
    *,
    block: int = CULL_BLOCK,
    num_warps: int = 4,
    view_split: int = 4,
    prefilter: bool = True,
    cull: int = 2,
    aggregate: int = 0,
) -> None:
    """Min-reduce every voxel's key into every view's z-buffer (``zbuf`` is updated in place).

    ``bounds`` are the table's per-``CULL_BLOCK`` boxes; the keyword knobs exist for tuning
    (``kernels/tune_read.py``) and change speed only, never the result: ``cull`` 2 = culling
    pre-pass (default), 1 = test inside the splat loop, 0 = none; ``aggregate`` = number of
    per-block min-reductions before the per-lane atomics (measured slower on H100: default 0)."""
    n = pos.shape[0]
    n_views = w2c.shape[0]
    if n == 0 or n_views == 0:
        return
    if bounds.shape[0] != triton.cdiv(n, block):  # boxes must match the program blocks
        bounds = block_bounds(pos, block)
    views = _view_params(planes, w2c, intr)
    split = max(1, min(view_split, n_views))
    n_blocks = triton.cdiv(n, block)
    bounds = bounds.contiguous()
    counts = torch.empty(n_blocks, dtype=torch.int32, device=pos.device)
    if cull == 2:
        lists = torch.empty(n_blocks * n_views, dtype=torch.int32, device=pos.device)
        _cull_kernel[(n_blocks,)](
            bounds, views, lists, counts, n_views, MARGIN=_CULL_MARGIN, VB=128, num_warps=4
        )
    else:
        lists = counts  # unused
    _splat_bank_kernel[(n_blocks, split)](
        pos.contiguous(),
        n,
        bounds,
        lists,
        counts,
        views,
        zbuf,
        n_views,
        h,
        w,
        near,
        far,
        index_offset,
        MARGIN=_CULL_MARGIN,
        BLOCK=block,
        VIEW_SPLIT=split,
        PREFILTER=prefilter,
        CULL=int(cull),
        AGG=aggregate,
        num_warps=num_warps,
        enable_fp_fusion=False,
    )


def splat_entries(
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
    m = pos.shape[0]
    if m == 0 or views_per_path == 0:
        return
    planes = torch.zeros(w2c.shape[0], 6, 4, dtype=torch.float32, device=w2c.device)
    views = _view_params(planes, w2c, intr)
    block = 128
    _splat_entries_kernel[(triton.cdiv(m, block),)](
        pos.contiguous(),
        path.contiguous(),
        m,
        views,
        zbuf,
        views_per_path,
        h,
        w,
        near,
        far,
        index_offset,
        BLOCK=block,
        num_warps=4,
        enable_fp_fusion=False,
    )


def gather(
    zbuf: torch.Tensor,
    bank_latent: torch.Tensor,
    overlay_latent: torch.Tensor | None,
    n_views: int,
    h: int,
    w: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n_bank, channels = bank_latent.shape
    dev = zbuf.device
    latent = torch.empty(n_views, channels, h, w, dtype=torch.float32, device=dev)
    depth = torch.empty(n_views, h, w, dtype=torch.float32, device=dev)
    mask = torch.empty(n_views, h, w, dtype=torch.uint8, device=dev)
    n_cells = zbuf.numel()
    if n_cells == 0:
        return latent, depth, mask.bool()
    # Pointers must be valid even where every load is masked off.
    dummy = torch.zeros(1, channels, dtype=torch.float32, device=dev)
    bank = bank_latent.contiguous() if n_bank else dummy
    overlay = overlay_latent.contiguous() if overlay_latent is not None else dummy
    if overlay.numel() == 0:
        overlay = dummy
    block = 128
    _gather_kernel[(triton.cdiv(n_cells, block),)](
        zbuf,
        n_cells,
        h * w,
        bank,
        n_bank,
        overlay,
        channels,
        latent,
        depth,
        mask,
        SENTINEL,
        BLOCK=block,
        CP=triton.next_power_of_2(channels),
        num_warps=4,
    )
    return latent, depth, mask.view(torch.bool)
