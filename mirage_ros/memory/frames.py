"""From a batch of latent frames to map-frame points ready to fuse (bank and overlays)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .camera import (
    apply_rows,
    rows_cam_to_map,
    to_float_tensor,
    unproject_cells,
    validate_intrinsics,
    validate_poses,
    validate_stamps,
)
from .depth import cell_validity, reduce_depth
from .voxel_hash import morton_encode, quantise


@dataclass(frozen=True)
class WriteOptions:
    """The write-side knobs of a memory (see ``depth`` for what each threshold means)."""

    min_depth: float
    max_depth: float
    edge_threshold: float
    max_incidence_deg: float
    depth_min_valid_fraction: float
    depth_max_relative_gap: float
    depth_min_near_fraction: float


@dataclass(frozen=True)
class WriteStats:
    """What one write did with its cells. Every cell is counted in exactly one bucket:
    ``cells == fused + rejected_depth + rejected_edge + rejected_grazing + rejected_latent
    + rejected_range``."""

    cells: int
    fused: int
    rejected_depth: int  # invalid, or outside [min_depth, max_depth]
    rejected_edge: int  # flying point at a depth discontinuity
    rejected_grazing: int  # surface seen at more than max_incidence_deg
    rejected_latent: int  # latent vector with NaN / inf
    rejected_range: int  # map coordinates outside the key range
    voxels_new: int = 0
    voxels_updated: int = 0
    voxels_evicted: int = 0


@dataclass(frozen=True)
class PreparedPoints:
    keys: torch.Tensor  # [P] int64
    points: torch.Tensor  # [P,3] f32, map frame
    latents: torch.Tensor  # [P,C] f32
    weights: torch.Tensor  # [P] f32
    stamps: torch.Tensor  # [P] f64
    frame: torch.Tensor  # [P] int64, index of the source frame in the batch
    camera_position: torch.Tensor  # [B,3] f64
    frame_stamps: torch.Tensor  # [B] f64
    stats: WriteStats
    # The validated frames, for what keeps them whole (memory.keyframes); None for points.
    intr: torch.Tensor | None = None  # [B,4] f32 fx, fy, cx, cy, on the device
    cam_to_map: torch.Tensor | None = None  # [B,4,4] f64, CPU


def unproject_keys_reference(
    depth: torch.Tensor,
    valid: torch.Tensor,
    intr: torch.Tensor,
    c2m: torch.Tensor,
    inv_voxel: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Map points of all cell centres ``[B*h*w,3]`` and their voxel keys ``[B*h*w]``
    (-1 where the cell is not valid or outside the key range)."""
    z = torch.where(valid, depth, torch.ones_like(depth))
    x, y, z = unproject_cells(z, intr)
    px, py, pz = apply_rows(c2m[:, None, None, :], x, y, z)
    pts = torch.stack([px, py, pz], dim=-1).reshape(-1, 3)
    q, in_range = quantise(pts, inv_voxel)
    keys = morton_encode(q)
    keys = torch.where(valid.reshape(-1) & in_range, keys, torch.full_like(keys, -1))
    return pts, keys


def prepare_frames(
    latents: object,
    depth: object,
    K: object,
    cam_to_map: object,
    stamp: object,
    *,
    channels: int,
    opts: WriteOptions,
    inv_voxel: torch.Tensor,
    device: torch.device,
    unproject_keys=unproject_keys_reference,
    expected_batch: int | None = None,
) -> PreparedPoints:
    lat = to_float_tensor(latents, "latents", device)
    if lat.ndim != 4:
        raise ValueError(f"latents must have shape [B,C,h,w], got {list(lat.shape)}")
    b, c, h, w = lat.shape
    if c != channels:
        raise ValueError(f"latents have {c} channels, the memory has {channels}")
    if expected_batch is not None and b != expected_batch:
        raise ValueError(f"expected a batch of {expected_batch} frames (one per path), got {b}")
    if h == 0 or w == 0:
        raise ValueError("latents must have a non-empty h x w grid")
    poses = validate_poses(cam_to_map, "cam_to_map", 1)
    if poses.shape[0] != b:
        raise ValueError(f"cam_to_map has {poses.shape[0]} poses for {b} frames")
    intr = validate_intrinsics(K, (b,), "K").to(device, torch.float32)
    stamps = validate_stamps(stamp, b).to(device)

    d = to_float_tensor(depth, "depth", device)
    if d.ndim != 3 or d.shape[0] != b:
        raise ValueError(f"depth must have shape [B,h,w] with B={b}, got {list(d.shape)}")
    if tuple(d.shape[1:]) != (h, w):
        big_h, big_w = d.shape[1:]
        if big_h % h or big_w % w:
            raise ValueError(
                f"depth is {big_h}x{big_w}: give it at latent resolution {h}x{w} or at a multiple"
            )
        d = reduce_depth(
            d,
            h,
            w,
            min_valid_fraction=opts.depth_min_valid_fraction,
            max_relative_gap=opts.depth_max_relative_gap,
            min_near_fraction=opts.depth_min_near_fraction,
        )
    d = d.to(torch.float32).contiguous()

    masks = cell_validity(
        d,
        intr,
        min_depth=opts.min_depth,
        max_depth=opts.max_depth,
        edge_threshold=opts.edge_threshold,
        max_incidence_deg=opts.max_incidence_deg,
    )
    lat_hw = lat.to(torch.float32).permute(0, 2, 3, 1).reshape(-1, c)
    lat_ok = torch.isfinite(lat_hw).all(dim=-1).reshape(b, h, w)
    geo_ok = masks.valid
    valid = geo_ok & lat_ok
    pts, keys = unproject_keys(d, valid, intr, rows_cam_to_map(poses).to(device), inv_voxel)
    sel = (keys >= 0).nonzero()[:, 0]

    counts = torch.stack(
        [
            (~masks.depth_ok).sum(),
            (masks.depth_ok & ~masks.edge_ok).sum(),
            (masks.depth_ok & masks.edge_ok & ~masks.grazing_ok).sum(),
            (geo_ok & ~lat_ok).sum(),
            (valid.reshape(-1) & (keys < 0)).sum(),
        ]
    ).tolist()
    stats = WriteStats(
        cells=b * h * w,
        fused=int(sel.numel()),
        rejected_depth=counts[0],
        rejected_edge=counts[1],
        rejected_grazing=counts[2],
        rejected_latent=counts[3],
        rejected_range=counts[4],
    )
    frame = sel // (h * w)
    return PreparedPoints(
        keys=keys[sel],
        points=pts[sel],
        latents=lat_hw[sel],
        weights=torch.ones(sel.numel(), dtype=torch.float32, device=device),
        stamps=stamps[frame],
        frame=frame,
        camera_position=poses[:, :3, 3].to(device),
        frame_stamps=stamps,
        stats=stats,
        intr=intr,
        cam_to_map=poses,
    )
