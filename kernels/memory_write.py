"""Triton kernels for the latent memory write: unproject + voxel key, and the per-voxel fuse sums.

Same signatures and results as the torch reference (``unproject_keys_reference`` in
``mirage_ros/memory/frames.py``, ``segment_sums_reference`` in ``voxel_hash.py``); operation
order, ``div_rn`` and ``enable_fp_fusion=False`` keep the float32 bits identical.

``_unproject_keys_kernel``: one lane per latent cell: unproject the cell centre with its depth,
move it to the map frame, quantise by the float32 inverse voxel size, interleave the three 21-bit
coordinates into the Morton key (-1 for rejected cells).

``_segment_sum_kernel``: one lane per voxel group (the write's points sorted by key, grouped),
summing w, w * p and w * latent over its points strictly in sorted order. No atomics: each
group's sum has one fixed order, so the fuse is deterministic on the GPU. The sort, the grouping
and the sorted merge into the bank stay in torch (sort and searchsorted are deterministic there).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from mirage_ros.memory.voxel_hash import KEY_HALF_RANGE


@triton.jit
def _spread_bits(v):
    v = v & 0x1FFFFF
    v = (v | (v << 32)) & 0x001F00000000FFFF
    v = (v | (v << 16)) & 0x001F0000FF0000FF
    v = (v | (v << 8)) & 0x100F00F00F00F00F
    v = (v | (v << 4)) & 0x10C30C30C30C30C3
    v = (v | (v << 2)) & 0x1249249249249249
    return v


@triton.jit
def _unproject_keys_kernel(
    depth_ptr,
    valid_ptr,
    intr_ptr,
    c2m_ptr,
    inv_voxel,
    pts_ptr,
    keys_ptr,
    n_cells,
    h,
    w,
    HALF: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n_cells
    hw = h * w
    b = offs // hw
    rem = offs - b * hw
    v = rem // w
    u = rem - v * w
    ok = m & (tl.load(valid_ptr + offs, mask=m, other=0) != 0)
    z = tl.load(depth_ptr + offs, mask=m, other=1.0)
    z = tl.where(ok, z, 1.0)
    fx = tl.load(intr_ptr + b * 4 + 0, mask=m, other=1.0)
    fy = tl.load(intr_ptr + b * 4 + 1, mask=m, other=1.0)
    cx = tl.load(intr_ptr + b * 4 + 2, mask=m, other=0.0)
    cy = tl.load(intr_ptr + b * 4 + 3, mask=m, other=0.0)
    x = tl.math.div_rn(u.to(tl.float32) + 0.5 - cx, fx) * z
    y = tl.math.div_rn(v.to(tl.float32) + 0.5 - cy, fy) * z
    rb = c2m_ptr + b * 12
    r0 = tl.load(rb + 0, mask=m, other=0.0)
    r1 = tl.load(rb + 1, mask=m, other=0.0)
    r2 = tl.load(rb + 2, mask=m, other=0.0)
    r3 = tl.load(rb + 3, mask=m, other=0.0)
    r4 = tl.load(rb + 4, mask=m, other=0.0)
    r5 = tl.load(rb + 5, mask=m, other=0.0)
    r6 = tl.load(rb + 6, mask=m, other=0.0)
    r7 = tl.load(rb + 7, mask=m, other=0.0)
    r8 = tl.load(rb + 8, mask=m, other=0.0)
    r9 = tl.load(rb + 9, mask=m, other=0.0)
    r10 = tl.load(rb + 10, mask=m, other=0.0)
    r11 = tl.load(rb + 11, mask=m, other=0.0)
    px = r0 * x + r1 * y + r2 * z + r3
    py = r4 * x + r5 * y + r6 * z + r7
    pz = r8 * x + r9 * y + r10 * z + r11
    tl.store(pts_ptr + offs * 3 + 0, px, mask=m)
    tl.store(pts_ptr + offs * 3 + 1, py, mask=m)
    tl.store(pts_ptr + offs * 3 + 2, pz, mask=m)
    sx = px * inv_voxel
    sy = py * inv_voxel
    sz = pz * inv_voxel
    in_range = (sx >= -HALF) & (sx < HALF) & (sy >= -HALF) & (sy < HALF)
    in_range = in_range & (sz >= -HALF) & (sz < HALF)
    qx = tl.where(in_range, tl.floor(sx), 0.0).to(tl.int64) + HALF
    qy = tl.where(in_range, tl.floor(sy), 0.0).to(tl.int64) + HALF
    qz = tl.where(in_range, tl.floor(sz), 0.0).to(tl.int64) + HALF
    key = _spread_bits(qx) | (_spread_bits(qy) << 1) | (_spread_bits(qz) << 2)
    key = tl.where(ok & in_range, key, -1)
    tl.store(keys_ptr + offs, key, mask=m)


@triton.jit
def _segment_sum_kernel(
    order_ptr,
    starts_ptr,
    n_groups,
    max_count,
    pts_ptr,
    lat_ptr,
    w_ptr,
    wsum_ptr,
    psum_ptr,
    lsum_ptr,
    channels,
    BLOCK: tl.constexpr,
    CP: tl.constexpr,
):
    # Everything is a [BLOCK, 1] or [BLOCK, CP] tile: one 2-D layout for the whole loop (mixing
    # 1-D group vectors with 2-D latent tiles trips Triton 3.6's layout pass on sm_90).
    g = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)[:, None]
    gm = g < n_groups
    start = tl.load(starts_ptr + g, mask=gm, other=0)
    count = tl.load(starts_ptr + g + 1, mask=gm, other=0) - start
    c = tl.arange(0, CP)[None, :]
    cm = c < channels
    aw = tl.zeros([BLOCK, 1], tl.float32)
    ax = tl.zeros([BLOCK, 1], tl.float32)
    ay = tl.zeros([BLOCK, 1], tl.float32)
    az = tl.zeros([BLOCK, 1], tl.float32)
    al = tl.zeros([BLOCK, CP], tl.float32)
    for rank in range(0, max_count):
        act = gm & (rank < count)
        i = tl.load(order_ptr + start + rank, mask=act, other=0)
        wv = tl.load(w_ptr + i, mask=act, other=0.0)
        px = tl.load(pts_ptr + i * 3 + 0, mask=act, other=0.0)
        py = tl.load(pts_ptr + i * 3 + 1, mask=act, other=0.0)
        pz = tl.load(pts_ptr + i * 3 + 2, mask=act, other=0.0)
        lv = tl.load(lat_ptr + i * channels + c, mask=act & cm, other=0.0)
        aw = tl.where(act, aw + wv, aw)
        ax = tl.where(act, ax + wv * px, ax)
        ay = tl.where(act, ay + wv * py, ay)
        az = tl.where(act, az + wv * pz, az)
        al = tl.where(act, al + wv * lv, al)
    tl.store(wsum_ptr + g, aw, mask=gm)
    tl.store(psum_ptr + g * 3 + 0, ax, mask=gm)
    tl.store(psum_ptr + g * 3 + 1, ay, mask=gm)
    tl.store(psum_ptr + g * 3 + 2, az, mask=gm)
    tl.store(lsum_ptr + g * channels + c, al, mask=gm & cm)


def unproject_keys(
    depth: torch.Tensor,
    valid: torch.Tensor,
    intr: torch.Tensor,
    c2m: torch.Tensor,
    inv_voxel: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    b, h, w = depth.shape
    n = b * h * w
    dev = depth.device
    pts = torch.empty(n, 3, dtype=torch.float32, device=dev)
    keys = torch.empty(n, dtype=torch.int64, device=dev)
    if n == 0:
        return pts, keys
    block = 256
    _unproject_keys_kernel[(triton.cdiv(n, block),)](
        depth.contiguous(),
        valid.to(torch.uint8).contiguous(),
        intr.to(torch.float32).contiguous(),
        c2m.to(torch.float32).contiguous(),
        float(inv_voxel),
        pts,
        keys,
        n,
        h,
        w,
        HALF=KEY_HALF_RANGE,
        BLOCK=block,
        num_warps=4,
        enable_fp_fusion=False,
    )
    return pts, keys


def segment_sums(
    order: torch.Tensor,
    starts: torch.Tensor,
    points: torch.Tensor,
    latents: torch.Tensor,
    weights: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n_groups = starts.numel() - 1
    channels = latents.shape[1]
    dev = points.device
    wsum = torch.empty(n_groups, dtype=torch.float32, device=dev)
    psum = torch.empty(n_groups, 3, dtype=torch.float32, device=dev)
    lsum = torch.empty(n_groups, channels, dtype=torch.float32, device=dev)
    if n_groups == 0:
        return wsum, psum, lsum
    max_count = int((starts[1:] - starts[:-1]).max())
    block = 64
    _segment_sum_kernel[(triton.cdiv(n_groups, block),)](
        order.contiguous(),
        starts.contiguous(),
        n_groups,
        max_count,
        points.contiguous(),
        latents.contiguous(),
        weights.contiguous(),
        wsum,
        psum,
        lsum,
        channels,
        BLOCK=block,
        CP=triton.next_power_of_2(channels),
        num_warps=4,
        enable_fp_fusion=False,
    )
    return wsum, psum, lsum
