"""CPU tests of the latent spatial memory (torch reference path)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mirage_ros.memory import LatentMemory, MemoryFormatError, MemoryView, reduce_depth
from mirage_ros.memory import zbuffer as zb
from mirage_ros.memory.synthetic import Room, circle_trajectory, latent_frames, pinhole
from mirage_ros.memory.voxel_hash import (
    eviction_scores,
    keep_mask_after_eviction,
    morton_decode,
    morton_encode,
)

H = W = 16
K16 = pinhole(8.0, H, W)  # 90 degree field of view, cx = cy = 8
C = 8


def pose(x: float = 0.0, y: float = 0.0, z: float = 0.0) -> torch.Tensor:
    p = torch.eye(4, dtype=torch.float64)
    p[:3, 3] = torch.tensor([x, y, z], dtype=torch.float64)
    return p


def plane(depth: float, seed: int = 0, channels: int = C) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lat = torch.randn(1, channels, H, W, generator=gen)
    return lat, torch.full((1, H, W), depth)


def snapshot(mem: LatentMemory) -> dict[str, torch.Tensor]:
    return {
        "keys": mem.keys.clone(),
        "positions": mem.positions.clone(),
        "latents": mem.latents.clone(),
        "weights": mem.weights.clone(),
        "stamps": mem.stamps.clone(),
    }


def assert_same_state(mem: LatentMemory, snap: dict[str, torch.Tensor]) -> None:
    for name, value in snap.items():
        assert torch.equal(getattr(mem, name), value), name


def assert_same_view(a: MemoryView, b: MemoryView) -> None:
    assert torch.equal(a.latent, b.latent)
    assert torch.equal(a.depth, b.depth)
    assert torch.equal(a.mask, b.mask)


# ----------------------------------------------------------------------------- read geometry
def test_plane_reads_back_at_expected_cells_from_shifted_pose():
    # Plane z = 2 m seen by an identity camera (f = 8): cell u's centre unprojects to
    # x = ((u + 0.5) - 8) / 8 * 2 = (u - 7.5) * 0.25. A camera moved +0.5 m along x sees it at
    # u' = (x - 0.5) / 2 * 8 + 8 = u - 1.5, i.e. the centre of cell u - 2.
    mem = LatentMemory(channels=C)
    lat, depth = plane(2.0)
    stats = mem.write(lat, depth, K16, pose()[None], 1.0)
    assert stats.fused == H * W and len(mem) == H * W

    view = mem.read(pose(x=0.5)[None], K16, (H, W))
    assert view.latent.shape == (1, C, H, W) and view.depth.shape == view.mask.shape == (1, H, W)
    expected_mask = torch.zeros(H, W, dtype=torch.bool)
    expected_mask[:, : W - 2] = True
    assert torch.equal(view.mask[0], expected_mask)
    assert torch.equal(view.latent[0, :, :, : W - 2], lat[0, :, :, 2:])
    assert torch.equal(view.depth[0, :, : W - 2], torch.full((H, W - 2), 2.0))
    # Unknown cells are exactly zero.
    assert torch.count_nonzero(view.latent[0, :, :, W - 2 :]) == 0
    assert torch.count_nonzero(view.depth[0, :, W - 2 :]) == 0


def test_plane_from_further_away_uses_min_depth_then_lowest_index():
    # Camera 2 m further back: the plane is at z = 4 and u' = 0.5 u + 4.25, so cells 4..11 each
    # receive 2 x 2 points at exactly the same depth. The tie goes to the lowest voxel index,
    # i.e. the smallest Morton key: the point with the smallest map x (u) and y (v).
    mem = LatentMemory(channels=C)
    lat, depth = plane(2.0, seed=1)
    mem.write(lat, depth, K16, pose()[None], 1.0)
    view = mem.read(pose(z=-2.0)[None], K16, (H, W))
    expected_mask = torch.zeros(H, W, dtype=torch.bool)
    expected_mask[4:12, 4:12] = True
    assert torch.equal(view.mask[0], expected_mask)
    assert torch.equal(view.depth[0][expected_mask], torch.full((64,), 4.0))
    winners = lat[0][:, 0:16:2, 0:16:2]  # v = 2 (v' - 4), u = 2 (u' - 4)
    assert torch.equal(view.latent[0, :, 4:12, 4:12], winners)


def test_occluder_in_front_wins():
    mem = LatentMemory(channels=C)
    wall_lat, wall_depth = plane(3.0, seed=2)
    occ_lat, _ = plane(1.5, seed=3)
    occ_depth = torch.zeros(1, H, W)
    occ_depth[0, 4:12, 4:12] = 1.5  # an 8 x 8 box in the middle, nothing around it
    mem.write(
        torch.cat([wall_lat, occ_lat]),
        torch.cat([wall_depth, occ_depth]),
        K16,
        pose()[None].expand(2, 4, 4),
        1.0,
    )
    view = mem.read(pose()[None], K16, (H, W))
    assert bool(view.mask.all())
    inner = torch.zeros(H, W, dtype=torch.bool)
    inner[4:12, 4:12] = True
    assert torch.equal(view.depth[0][inner], torch.full((64,), 1.5))
    assert torch.equal(view.depth[0][~inner], torch.full((H * W - 64,), 3.0))
    assert torch.equal(view.latent[0][:, inner], occ_lat[0][:, inner])
    assert torch.equal(view.latent[0][:, ~inner], wall_lat[0][:, ~inner])
    # Written in the other order, the nearest surface still wins (no last-write-wins).
    mem2 = LatentMemory(channels=C)
    mem2.write(occ_lat, occ_depth, K16, pose()[None], 1.0)
    mem2.write(wall_lat, wall_depth, K16, pose()[None], 2.0)
    view2 = mem2.read(pose()[None], K16, (H, W))
    assert torch.equal(view2.latent[0][:, inner], occ_lat[0][:, inner])


def _random_pose(rng: np.random.Generator, spread: float = 1.0) -> torch.Tensor:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    rot = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    p = np.eye(4)
    p[:3, :3] = rot
    p[:3, 3] = rng.uniform(-spread, spread, size=3)
    return torch.from_numpy(p)


def _bruteforce_read(
    mem: LatentMemory,
    poses: torch.Tensor,
    K: torch.Tensor,
    h: int,
    w: int,
    near: float,
    far: float,
):
    """Independent numpy float32 re-implementation of the read's definition (no culling)."""
    pos = mem.positions.numpy()
    lat = mem.latents.numpy()
    n = pos.shape[0]
    k = K.numpy().astype(np.float32)
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    best = np.full((poses.shape[0], h * w), np.iinfo(np.int64).max, dtype=np.int64)
    for i, p in enumerate(poses.numpy()):
        rt = p[:3, :3].T
        inv = np.concatenate([rt, -(rt @ p[:3, 3:4])], axis=1).astype(np.float32).reshape(12)
        px, py, pz = pos[:, 0], pos[:, 1], pos[:, 2]
        xc = inv[0] * px + inv[1] * py + inv[2] * pz + inv[3]
        yc = inv[4] * px + inv[5] * py + inv[6] * pz + inv[7]
        zc = inv[8] * px + inv[9] * py + inv[10] * pz + inv[11]
        with np.errstate(divide="ignore", invalid="ignore"):
            fu = xc / zc * fx + cx
            fv = yc / zc * fy + cy
        vis = (zc >= np.float32(near)) & (zc <= np.float32(far))
        vis &= (fu >= 0) & (fu < w) & (fv >= 0) & (fv < h)
        cell = np.floor(fv[vis]).astype(np.int64) * w + np.floor(fu[vis]).astype(np.int64)
        key = (zc[vis].view(np.int32).astype(np.int64) << 32) | np.arange(n)[vis]
        np.minimum.at(best[i], cell, key)
    hit = best != np.iinfo(np.int64).max
    idx = best & 0xFFFFFFFF
    depth = np.where(hit, (best >> 32).astype(np.int32).view(np.float32), 0)
    latent = np.where(hit[..., None], lat[np.where(hit, idx, 0)], 0)
    v = poses.shape[0]
    return (
        latent.reshape(v, h, w, -1).transpose(0, 3, 1, 2),
        depth.reshape(v, h, w),
        hit.reshape(v, h, w),
    )


@settings(max_examples=12, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**31 - 1))
def test_read_matches_bruteforce_projection(seed):
    # The mask is True exactly where some voxel projects; depth is the minimum; ties go to
    # the lowest index. Voxels are snapped onto a coarse grid so exact depth ties happen.
    rng = np.random.default_rng(seed)
    mem = LatentMemory(channels=4, voxel_size=0.05, merge_radius=0.0)
    pts = np.round(rng.uniform(-3, 3, size=(3000, 3)) * 4) / 4 + 0.01
    lat = rng.normal(size=(3000, 4))
    mem.insert_points(torch.from_numpy(pts).float(), torch.from_numpy(lat).float(), 0.0)
    poses = torch.stack([_random_pose(rng, 0.5) for _ in range(5)])
    K = pinhole(float(rng.uniform(3, 12)), 12, 10)
    view = mem.read(poses, K, (12, 10), near=0.2, far=4.0)
    latent, depth, mask = _bruteforce_read(mem, poses, K, 12, 10, 0.2, 4.0)
    assert mask.any()
    assert np.array_equal(view.mask.numpy(), mask)
    assert np.array_equal(view.depth.numpy(), depth)
    assert np.array_equal(view.latent.numpy(), latent)


def test_block_culling_never_changes_a_read(monkeypatch):
    room = Room()
    mem = LatentMemory(channels=4)
    poses = circle_trajectory(24, 1)
    lat, d = latent_frames(poses, K16, (H, W), 4, room)
    mem.write(lat, d, K16, poses, 0.0)
    views = circle_trajectory(7, 1, radius=0.4, pitch_deg=10.0)
    culled = mem.read(views, K16, (H, W))
    blocks = mem.positions.shape[0] // 256 + 1
    assert bool((~zb.visible_blocks(mem._table.bounds(), _planes(mem, views))).any()), blocks
    monkeypatch.setattr(
        zb, "visible_blocks", lambda b, p: torch.ones(p.shape[0], b.shape[0], dtype=torch.bool)
    )
    assert_same_view(culled, mem.read(views, K16, (H, W)))


def _planes(mem: LatentMemory, views: torch.Tensor) -> torch.Tensor:
    from mirage_ros.memory.camera import frustum_planes, rows_map_to_cam

    intr = torch.tensor([[8.0, 8.0, 8.0, 8.0]]).expand(views.shape[0], 4)
    return frustum_planes(rows_map_to_cam(views), intr, H, W, mem.config.near, mem.config.far)


# ----------------------------------------------------------------------------- fusion
def mem_latents_of(lat: torch.Tensor) -> torch.Tensor:
    """A plane frame's latents in the order of the voxels it writes (one per cell, in Morton
    order): the order a fresh memory stores them in."""
    probe = LatentMemory(channels=C, keyframe_capacity=0)
    probe.write(lat, plane(2.0, seed=4)[1], K16, pose()[None], 1.0)
    return probe.latents


def test_two_views_of_one_surface_fuse_into_the_same_voxels():
    mem = LatentMemory(channels=C)
    lat1, depth = plane(2.0, seed=4)
    lat2, _ = plane(2.0, seed=5)
    mem.write(lat1, depth, K16, pose()[None], 1.0)
    assert len(mem) == 256
    # Same surface from the same pose: every voxel is updated, none added; latents average.
    stats = mem.write(lat2, depth, K16, pose()[None], 2.0)
    assert (stats.voxels_new, stats.voxels_updated, len(mem)) == (0, 256, 256)
    torch.testing.assert_close(mem.latents, (mem_latents_of(lat1) + mem_latents_of(lat2)) / 2,
                               rtol=0, atol=1e-6)
    # A read at that pose returns the first frame whole (the second, its twin, was not kept as
    # a keyframe; see memory.keyframes)...
    view = mem.read(pose()[None], K16, (H, W))
    assert len(mem.keyframes) == 1
    assert torch.equal(view.latent[0], lat1[0])
    # ... and without keyframes it is the fused average.
    fused = LatentMemory(channels=C, keyframe_capacity=0)
    fused.write(lat1, depth, K16, pose()[None], 1.0)
    fused.write(lat2, depth, K16, pose()[None], 2.0)
    view = fused.read(pose()[None], K16, (H, W))
    torch.testing.assert_close(view.latent[0], (lat1[0] + lat2[0]) / 2, rtol=0, atol=1e-6)
    assert torch.equal(mem.weights, torch.full((256,), 2.0))
    assert float(mem.stamps.min()) == 2.0
    # Moved one cell footprint (0.25 m) sideways: 15 of 16 columns are the same points; only
    # the newly seen column adds voxels.
    stats = mem.write(lat2, depth, K16, pose(x=0.25)[None], 3.0)
    assert (stats.voxels_new, stats.voxels_updated, len(mem)) == (16, 240, 272)


def test_ten_loops_through_a_room_grow_memory_by_at_most_5_percent():
    room = Room()
    mem = LatentMemory(channels=C, voxel_size=0.05)
    frames = 36
    # 1 cm and 0.1 degree of pose noise per loop: a robot never drives the same loop twice.
    poses = circle_trajectory(frames, 10, jitter=0.01, seed=3)
    counts = []
    for loop in range(10):
        p = poses[loop * frames : (loop + 1) * frames]
        lat, d = latent_frames(p, K16, (H, W), C, room)
        mem.write(lat, d, K16, p, float(loop))
        counts.append(len(mem))
    assert counts[0] > 3000
    assert counts[-1] <= 1.05 * counts[0], counts
    # An append-only memory would hold every fused point.
    assert counts[-1] < 0.2 * 10 * frames * H * W


def test_weight_cap_keeps_memory_adaptive():
    mem = LatentMemory(channels=1, max_weight=4.0)
    for i in range(10):
        mem.write(torch.zeros(1, 1, H, W), torch.full((1, H, W), 2.0), K16, pose()[None], i)
    assert torch.equal(mem.weights, torch.full((256,), 4.0))
    mem.write(torch.ones(1, 1, H, W), torch.full((1, H, W), 2.0), K16, pose()[None], 11)
    torch.testing.assert_close(mem.latents, torch.full((256, 1), 0.2))  # 1 / (4 + 1)


def test_reads_and_state_are_bit_identical_across_runs():
    room = Room()
    poses = circle_trajectory(20, 2, jitter=0.02)
    views = circle_trajectory(9, 1, radius=0.3)

    def run() -> tuple[dict[str, torch.Tensor], MemoryView]:
        mem = LatentMemory(channels=C, capacity=2500)
        for i in range(4):
            p = poses[i * 10 : (i + 1) * 10]
            lat, d = latent_frames(p, K16, (H, W), C, room)
            mem.write(lat, d, K16, p, float(i))
        return snapshot(mem), mem.read(views, K16, (H, W))

    (s1, v1), (s2, v2) = run(), run()
    for name in s1:
        assert torch.equal(s1[name], s2[name]), name
    assert_same_view(v1, v2)


# ----------------------------------------------------------------------------- capacity
def test_capacity_evicts_far_and_stale_voxels_first():
    mem = LatentMemory(channels=C, capacity=300)
    lat_a, depth = plane(2.0, seed=6)
    lat_b, _ = plane(2.0, seed=7)
    mem.write(lat_a, depth, K16, pose()[None], 0.0)  # old place, at the origin
    stats = mem.write(lat_b, depth, K16, pose(x=20.0)[None], 10.0)  # new place, 20 m away
    assert len(mem) == 300 and stats.voxels_evicted == 212
    near_new = mem.positions[:, 0] > 15.0
    assert int(near_new.sum()) == 256  # everything just seen is kept
    # Of the old plane (columns at x = (u - 7.5) * 0.25), the 44 voxels closest to the camera
    # survive: the two columns nearest to it and the 12 most central cells of the third.
    old_x = mem.positions[~near_new, 0]
    assert [int((old_x == x).sum()) for x in (1.875, 1.625, 1.375)] == [16, 16, 12]
    assert int((old_x < 1.375).sum()) == 0


def test_eviction_score_combines_distance_and_staleness():
    pos = torch.tensor([[1.0, 0, 0], [10.0, 0, 0], [1.0, 0, 0], [0.0, 0, 0]])
    stamp = torch.tensor([100.0, 100.0, 40.0, 100.0], dtype=torch.float64)
    anchor = torch.zeros(3, dtype=torch.float64)
    s = eviction_scores(pos, stamp, anchor, 100.0, 5.0, 60.0)
    torch.testing.assert_close(s, torch.tensor([0.2, 2.0, 1.2, 0.0], dtype=torch.float64))
    assert keep_mask_after_eviction(s, 2).tolist() == [True, False, False, True]
    # Ties: the lower index is evicted first.
    assert keep_mask_after_eviction(torch.zeros(3, dtype=torch.float64), 1).tolist() == [
        False,
        True,
        True,
    ]


# ----------------------------------------------------------------------------- overlays
def test_overlay_never_touches_the_bank_and_paths_are_isolated():
    mem = LatentMemory(channels=C)
    wall_lat, wall_depth = plane(3.0, seed=8)
    mem.write(wall_lat, wall_depth, K16, pose()[None], 1.0)
    before = snapshot(mem)
    bank_view = mem.read(pose()[None], K16, (H, W))

    ov = mem.overlay(3)
    lat = torch.stack(
        [plane(1.0, seed=9)[0][0], plane(2.0, seed=10)[0][0], plane(5.0, seed=11)[0][0]]
    )
    depth = torch.zeros(3, H, W)
    depth[0, 2:8, 2:8] = 1.0  # path 0 imagines something near, top-left
    depth[1, 8:14, 8:14] = 2.0  # path 1 something near, bottom-right
    depth[2] = 5.0  # path 2 imagines a wall behind the real one
    stats = ov.write(lat, depth, K16, pose()[None].expand(3, 4, 4), 2.0)
    assert stats.voxels_new == len(ov) == 36 + 36 + 256
    assert ov.counts().tolist() == [36, 36, 256]
    assert_same_state(mem, before)
    assert_same_view(bank_view, mem.read(pose()[None], K16, (H, W)))

    view = ov.read(pose()[None].expand(3, 4, 4), K16, (H, W))
    assert view.latent.shape == (3, C, H, W)
    a = torch.zeros(H, W, dtype=torch.bool)
    a[2:8, 2:8] = True
    b = torch.zeros(H, W, dtype=torch.bool)
    b[8:14, 8:14] = True
    assert torch.equal(view.latent[0][:, a], lat[0][:, a])
    assert torch.equal(view.latent[0][:, ~a], wall_lat[0][:, ~a])  # path 0 never sees path 1
    assert torch.equal(view.latent[1][:, b], lat[1][:, b])
    assert torch.equal(view.latent[1][:, ~b], wall_lat[0][:, ~b])
    assert_same_view(MemoryView(view.latent[2:], view.depth[2:], view.mask[2:]), bank_view)
    assert torch.equal(view.depth[0][a], torch.ones(36))

    # Several views per path, one call; path i's views only see path i.
    many = ov.read(pose()[None, None].expand(3, 2, 4, 4), K16, (H, W))
    assert many.latent.shape == (3, 2, C, H, W)
    assert torch.equal(many.latent[:, 0], view.latent) and torch.equal(
        many.latent[:, 1], view.latent
    )
    # Fusing again into the same path updates, does not duplicate.
    ov.write(lat, depth, K16, pose()[None].expand(3, 4, 4), 3.0)
    assert ov.counts().tolist() == [36, 36, 256]
    assert_same_state(mem, before)


def test_overlay_select_copies_paths():
    mem = LatentMemory(channels=C)
    ov = mem.overlay(2)
    lat = torch.randn(2, C, H, W)
    depth = torch.zeros(2, H, W)
    depth[0, :4, :4] = 1.0
    depth[1] = 2.0
    ov.write(lat, depth, K16, pose()[None].expand(2, 4, 4), 0.0)
    sel = ov.select([1, 0, 1])
    assert sel.n_paths == 3 and sel.counts().tolist() == [256, 16, 256]
    v_old = ov.read(pose()[None].expand(2, 4, 4), K16, (H, W))
    v_new = sel.read(pose()[None].expand(3, 4, 4), K16, (H, W))
    assert torch.equal(v_new.latent[0], v_old.latent[1]) and torch.equal(
        v_new.latent[1], v_old.latent[0]
    )
    with pytest.raises(ValueError):
        ov.select([2])


# ----------------------------------------------------------------------------- invalid input
def test_nan_and_inf_depth_are_invalid_cells():
    mem = LatentMemory(channels=C)
    lat, depth = plane(2.0)
    depth[0, 0, :] = float("nan")
    depth[0, 1, :] = float("inf")
    depth[0, 2, :] = 0.0
    depth[0, 3, :] = -1.0
    stats = mem.write(lat, depth, K16, pose()[None], 1.0)
    assert stats.rejected_depth == 64 and stats.fused == 192 and len(mem) == 192
    assert bool(torch.isfinite(mem.positions).all() and torch.isfinite(mem.latents).all())
    total = (
        stats.fused
        + stats.rejected_depth
        + stats.rejected_edge
        + stats.rejected_grazing
        + stats.rejected_latent
        + stats.rejected_range
    )
    assert total == stats.cells


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_pose_raises_and_leaves_bank_untouched(bad):
    mem = LatentMemory(channels=C)
    lat, depth = plane(2.0)
    mem.write(lat, depth, K16, pose()[None], 1.0)
    before = snapshot(mem)
    p = pose()[None].clone()
    p[0, 1, 3] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        mem.write(lat, depth, K16, p, 2.0)
    with pytest.raises(ValueError, match="NaN or inf"):
        mem.read(p, K16, (H, W))
    with pytest.raises(ValueError):
        mem.write(lat, depth, K16, pose()[None], bad)  # stamp
    assert_same_state(mem, before)


def test_non_finite_latents_are_dropped():
    mem = LatentMemory(channels=C)
    lat, depth = plane(2.0)
    lat[0, 3, 5, 5] = float("nan")
    stats = mem.write(lat, depth, K16, pose()[None], 1.0)
    assert stats.rejected_latent == 1 and len(mem) == 255
    assert bool(torch.isfinite(mem.latents).all())


def test_input_validation_errors():
    mem = LatentMemory(channels=C)
    lat, depth = plane(2.0)
    eye = pose()[None]
    cases = [
        (lambda: mem.write(lat[0], depth, K16, eye, 0.0), "latents must have shape"),
        (lambda: mem.write(lat[:, :3], depth, K16, eye, 0.0), "channels"),
        (lambda: mem.write(lat, depth[:, :5], K16, eye, 0.0), "multiple"),
        (lambda: mem.write(lat, depth.int(), K16, eye, 0.0), "floating-point"),
        (lambda: mem.write(lat, depth, K16, eye[0], 0.0), "shape"),
        (lambda: mem.write(lat, depth, K16, eye.expand(2, 4, 4), 0.0), "2 poses for 1 frames"),
        (lambda: mem.write(lat, depth, K16 * 2, eye, 0.0), "pinhole"),
        (lambda: mem.write(lat, depth, -K16.abs(), eye, 0.0), "focal"),
        (lambda: mem.write(lat, depth, torch.eye(3)[:2], eye, 0.0), "K must have shape"),
        (lambda: mem.write(lat, depth, K16, eye * 2, 0.0), "last row"),
        (lambda: mem.read(eye, K16, (0, 4)), "hw"),
        (lambda: mem.read(eye, K16, (H, W), near=2.0, far=1.0), "near"),
    ]
    skew = K16.clone()
    skew[0, 1] = 0.5
    cases.append((lambda: mem.read(eye, skew, (H, W)), "skew"))
    scaled = pose()[None].clone()
    scaled[0, :3, :3] *= 1.5
    cases.append((lambda: mem.read(scaled, K16, (H, W)), "rotation"))
    mirror = pose()[None].clone()
    mirror[0, 0, 0] = -1.0
    cases.append((lambda: mem.read(mirror, K16, (H, W)), "rotation"))
    for fn, match in cases:
        with pytest.raises(ValueError, match=match):
            fn()
    assert len(mem) == 0
    with pytest.raises(ValueError):
        LatentMemory(channels=0)
    with pytest.raises(ValueError):
        LatentMemory(channels=4, voxel_size=float("nan"))
    with pytest.raises(ValueError):
        LatentMemory(channels=4, capacity=0)


# ----------------------------------------------------------------------------- depth rules
def test_reduce_depth_median_gaps_and_invalid_pixels():
    d = torch.full((1, 32, 32), 2.0)
    d[0, :8, :8] = torch.linspace(1.0, 1.5, 64).reshape(8, 8)  # tilted: small gaps, kept
    d[0, :8, 8:16] = 1.0
    d[0, :4, 8:16] = 3.0  # a step inside the block: its near half (1 m) is a real surface
    d[0, :8, 16:24] = 3.0
    d[0, 7, 16:24] = 1.0  # a step whose near side covers 1/8 of the block: invalid
    d[0, 8:16, :8] = float("nan")
    d[0, 8, :8] = 2.5  # 8 valid of 64: too few
    d[0, 8:16, 8:16] = float("inf")
    d[0, 8:16, 8:12] = 1.25  # half valid: kept, the median of what was measured
    d[0, 16:24, 16:24] = 0.0
    out = reduce_depth(d, 4, 4)
    assert out.shape == (1, 4, 4)
    assert float(out[0, 0, 0]) == float(torch.linspace(1.0, 1.5, 64)[31])  # lower median
    assert float(out[0, 0, 1]) == 1.0
    assert float(out[0, 0, 2]) == 0.0
    assert float(out[0, 1, 0]) == 0.0
    assert float(out[0, 1, 1]) == 1.25
    assert float(out[0, 2, 2]) == 0.0
    assert float(out[0, 3, 3]) == 2.0
    with pytest.raises(ValueError):
        reduce_depth(d, 5, 4)


def test_full_resolution_depth_is_reduced_like_reduce_depth():
    room = Room()
    poses = circle_trajectory(6, 1)
    Kp = pinhole(64.0, 128, 128)
    from mirage_ros.memory.synthetic import ray_depth

    depth = ray_depth(poses, Kp, (128, 128), room)
    lat, _ = latent_frames(poses, K16, (H, W), C, room)
    a, b = LatentMemory(channels=C), LatentMemory(channels=C)
    a.write(lat, depth, K16, poses, 0.0)
    b.write(lat, reduce_depth(depth, H, W), K16, poses, 0.0)
    assert_same_state(a, snapshot(b))


def test_flying_points_and_grazing_surfaces_are_rejected():
    mem = LatentMemory(channels=1)
    depth = torch.full((1, H, W), 2.0)
    depth[0, :, 8:] = 4.0  # a vertical depth step between columns 7 and 8
    stats = mem.write(torch.zeros(1, 1, H, W), depth, K16, pose()[None], 0.0)
    assert stats.rejected_edge == H  # the far side of the step; the near side is a real surface
    assert stats.rejected_grazing == 0
    xs = mem.positions[:, 0]
    # Column 7 (near side, z = 2) unprojects to x = -0.125, column 8 (far side, z = 4) to 0.25.
    assert int(((xs + 0.125).abs() < 0.01).sum()) == H
    assert bool(((xs < -0.1) | (xs > 0.6)).all())
    # A floor 1 m below a camera looking level: the rows just under the horizon see it at
    # grazing incidence. The normal (0, 1, 0) against the ray (xn, yn, 1) gives the expectation.
    mem2 = LatentMemory(channels=1)
    xn = (torch.arange(W, dtype=torch.float64) + 0.5 - 8) / 8
    yn = (torch.arange(H, dtype=torch.float64) + 0.5 - 8) / 8
    yy, xx = torch.meshgrid(yn, xn, indexing="ij")
    floor = torch.where(yy > 0, 1.0 / yy, torch.zeros_like(yy))
    cos = yy / torch.sqrt(xx * xx + yy * yy + 1)
    expected = (yy > 0) & (cos < math.cos(math.radians(75.0)))
    assert float((cos - math.cos(math.radians(75.0))).abs().min()) > 1e-3  # no borderline cell
    stats2 = mem2.write(torch.zeros(1, 1, H, W), floor[None].float(), K16, pose()[None], 0.0)
    assert stats2.rejected_grazing == int(expected.sum()) > 0
    assert stats2.fused == int(((yy > 0) & ~expected).sum())


# ----------------------------------------------------------------------------- persistence
def _filled_memory() -> LatentMemory:
    mem = LatentMemory(channels=C, capacity=5000, voxel_size=0.07)
    room = Room()
    poses = circle_trajectory(12, 1)
    lat, d = latent_frames(poses, K16, (H, W), C, room)
    mem.write(lat, d, K16, poses, 12.5)
    return mem


def test_save_load_round_trip_is_exact(tmp_path: Path):
    mem = _filled_memory()
    path = tmp_path / "mem.safetensors"
    mem.save(path)
    loaded = LatentMemory.load(path)
    assert_same_state(loaded, snapshot(mem))
    assert loaded.config == mem.config
    assert loaded.latest_stamp == mem.latest_stamp
    assert torch.equal(loaded.latest_camera_position, mem.latest_camera_position)
    views = circle_trajectory(5, 1, radius=0.2)
    assert_same_view(loaded.read(views, K16, (H, W)), mem.read(views, K16, (H, W)))
    # Empty memories round-trip too.
    empty = LatentMemory(channels=3)
    empty.save(tmp_path / "empty.safetensors")
    back = LatentMemory.load(tmp_path / "empty.safetensors")
    assert len(back) == 0 and back.channels == 3 and back.latest_stamp is None
    assert sorted(os.listdir(tmp_path)) == ["empty.safetensors", "mem.safetensors"]


def _rewrite_metadata(data: bytes, **changes: str) -> bytes:
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    header["__metadata__"].update(changes)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + data[8 + n :]


def _corruptions(data: bytes) -> dict[str, bytes]:
    flipped = bytearray(data)
    flipped[-100] ^= 0x01
    return {
        "flipped bit": bytes(flipped),
        "truncated": data[: len(data) // 2],
        "truncated header": data[:20],
        "empty": b"",
        "garbage": b"\x00" * 64,
        "wrong version": _rewrite_metadata(data, version="2"),
        "tampered channels": _rewrite_metadata(data, channels="4"),
        "tampered voxel size": _rewrite_metadata(data, voxel_size="0.1"),
        "tampered checksum": _rewrite_metadata(data, checksum="sha256:" + "0" * 64),
        "wrong format": _rewrite_metadata(data, format="something.else"),
    }


def test_corrupt_truncated_or_tampered_files_are_rejected(tmp_path: Path):
    source = _filled_memory()
    good = tmp_path / "good.safetensors"
    source.save(good)
    data = good.read_bytes()
    target = LatentMemory(channels=C)
    lat, depth = plane(2.0)
    target.write(lat, depth, K16, pose()[None], 1.0)
    before = snapshot(target)
    before_cfg = target.config
    for name, blob in _corruptions(data).items():
        bad = tmp_path / f"{name.replace(' ', '_')}.safetensors"
        bad.write_bytes(blob)
        with pytest.raises(MemoryFormatError):
            LatentMemory.load(bad)
        with pytest.raises(MemoryFormatError):
            target.load_into(bad)
        assert_same_state(target, before)
        assert target.config == before_cfg
    assert issubclass(MemoryFormatError, ValueError)
    # A valid file of another channel count is refused by load_into, too.
    other = LatentMemory(channels=3)
    other.save(tmp_path / "other.safetensors")
    with pytest.raises(MemoryFormatError, match="channels"):
        target.load_into(tmp_path / "other.safetensors")
    assert_same_state(target, before)
    # And a good file replaces the contents.
    target.load_into(good)
    assert_same_state(target, snapshot(source))


def test_save_is_atomic(tmp_path: Path, monkeypatch):
    path = tmp_path / "mem.safetensors"
    mem = _filled_memory()
    mem.save(path)
    original = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    mem.write(*plane(2.0), K16, pose()[None], 99.0)
    with pytest.raises(OSError):
        mem.save(path)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["mem.safetensors"]


# ----------------------------------------------------------------------------- misc
def test_morton_keys_round_trip_and_are_monotone_per_axis():
    g = torch.Generator().manual_seed(0)
    q = torch.randint(-(2**20), 2**20, (5000, 3), generator=g)
    k = morton_encode(q)
    assert bool((k >= 0).all())
    assert torch.equal(morton_decode(k), q)
    for axis in range(3):
        q2 = q.clone()
        q2[:, axis] += 1
        ok = q2[:, axis] < 2**20
        assert bool((morton_encode(q2[ok]) > k[ok]).all())


def test_insert_points_clear_len_and_nbytes():
    mem = LatentMemory(channels=2, voxel_size=0.1)
    pts = torch.tensor(
        [
            [0.01, 0.01, 0.01],
            [0.02, 0.02, 0.02],
            [1.0, 1.0, 1.0],
            [float("nan"), 0, 0],
            [1e9, 0, 0],
        ]
    )
    lat = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0], [1.0, 1.0], [1.0, 1.0]])
    stats = mem.insert_points(pts, lat, 1.0, camera_position=torch.zeros(3))
    assert (stats.fused, stats.rejected_depth, stats.rejected_range, len(mem)) == (3, 1, 1, 2)
    torch.testing.assert_close(mem.latents[0], torch.tensor([2.0, 1.0]))
    assert mem.nbytes == 2 * (8 + 12 + 8 + 4 + 8)
    mem.clear()
    assert len(mem) == 0 and mem.nbytes == 0 and mem.latest_stamp is None


def test_use_kernels_true_without_cuda_is_a_clear_error():
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("the Triton interpreter makes kernels available on CPU")
    with pytest.raises(RuntimeError, match="use_kernels"):
        LatentMemory(channels=2, use_kernels=True)
    assert LatentMemory(channels=2).backend == "torch"


# ----------------------------------------------------------------------------- properties
@st.composite
def plane_scene(draw):
    h = draw(st.sampled_from([8, 12, 16]))
    w = draw(st.sampled_from([8, 12, 16]))
    fx = draw(st.floats(3.0, 25.0))
    fy = draw(st.floats(3.0, 25.0))
    cx = draw(st.floats(0.3 * w, 0.7 * w))
    cy = draw(st.floats(0.3 * h, 0.7 * h))
    quat = draw(st.lists(st.floats(-1, 1), min_size=4, max_size=4))
    assume(sum(q * q for q in quat) > 0.05)
    trans = draw(st.lists(st.floats(-3, 3), min_size=3, max_size=3))
    z0 = draw(st.floats(0.3, 8.0))
    alpha = draw(st.floats(-0.5, 0.5))
    beta = draw(st.floats(-0.5, 0.5))
    return h, w, (fx, fy, cx, cy), quat, trans, z0, alpha, beta


def _plane_depth(z0, alpha, beta, xn, yn):
    # Camera-frame plane z = z0 + alpha x + beta y, along the ray (xn, yn, 1).
    return z0 / (1.0 - alpha * xn - beta * yn)


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.filter_too_much],
)
@given(plane_scene())
def test_random_plane_reads_back_from_its_pose(scene):
    h, w, (fx, fy, cx, cy), quat, trans, z0, alpha, beta = scene
    K = torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=torch.float64)
    # The plane must stay in front of the camera over the whole image (cell corners).
    xc = (np.arange(w + 1) - cx) / fx
    yc = (np.arange(h + 1) - cy) / fy
    denom = 1.0 - alpha * xc[None, :] - beta * yc[:, None]
    assume(denom.min() > 0.2)
    q = np.array(quat) / np.linalg.norm(quat)
    p = _random_pose(np.random.default_rng(0), 0.0)
    qw, qx, qy, qz = q
    p[:3, :3] = torch.tensor(
        [
            [1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qz * qw), 2 * (qx * qz + qy * qw)],
            [2 * (qx * qy + qz * qw), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qx * qw)],
            [2 * (qx * qz - qy * qw), 2 * (qy * qz + qx * qw), 1 - 2 * (qx * qx + qy * qy)],
        ]
    )
    p[:3, 3] = torch.tensor(trans)
    xn = (np.arange(w) + 0.5 - cx) / fx
    yn = (np.arange(h) + 0.5 - cy) / fy
    depth = _plane_depth(z0, alpha, beta, xn[None, :], yn[:, None])
    mem = LatentMemory(channels=3)
    lat = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(1))
    stats = mem.write(lat, torch.from_numpy(depth)[None].float(), K, p[None], 0.0)
    view = mem.read(p[None], K, (h, w))
    again = mem.read(p[None], K, (h, w))
    assert_same_view(view, again)
    if stats.fused:
        assert bool(view.mask.any())
    mask = view.mask[0].numpy()
    got = view.depth[0].numpy()
    # Every voxel lies on the plane (a mean of points on it) and projects into its cell, so its
    # depth lies within the plane's depth range over that cell.
    corners = _plane_depth(z0, alpha, beta, xc[None, :], yc[:, None])
    quad = np.stack([corners[:-1, :-1], corners[:-1, 1:], corners[1:, :-1], corners[1:, 1:]])
    lo, hi = quad.min(0), quad.max(0)
    tol = 1e-4 * hi + 1e-5
    assert np.all(got[mask] >= lo[mask] - tol[mask])
    assert np.all(got[mask] <= hi[mask] + tol[mask])
    assert np.all(got[mask] >= mem.config.near)
    assert np.all(got[~mask] == 0) and not view.latent[0][:, torch.from_numpy(~mask)].any()


def test_read_with_no_voxels_or_no_views():
    mem = LatentMemory(channels=2)
    view = mem.read(pose()[None], K16, (4, 5))
    assert view.latent.shape == (1, 2, 4, 5) and not view.mask.any()
    assert view.coverage().tolist() == [0.0]
    empty = mem.read(torch.zeros(0, 4, 4), K16, (4, 5))
    assert empty.latent.shape == (0, 2, 4, 5)


def test_angles_document_grazing_threshold():
    # The documented 75 degree default corresponds to the cosine used in the test.
    assert math.isclose(
        math.cos(math.radians(LatentMemory(channels=1).config.max_incidence_deg)),
        0.2588,
        abs_tol=1e-4,
    )


def test_rebase_time_keeps_ages_so_frames_after_a_clock_jump_back_are_not_evicted_first():
    def points(x0: float, n: int = 10) -> torch.Tensor:
        return torch.stack([x0 + 0.2 * torch.arange(n, dtype=torch.float32),
                            torch.zeros(n), torch.zeros(n)], 1)

    def run(rebase: bool) -> torch.Tensor:
        mem = LatentMemory(channels=2, capacity=15)
        here = torch.zeros(3)
        mem.insert_points(points(0.0), torch.ones(10, 2), 1000.0, camera_position=here)
        snap = mem.snapshot()
        if rebase:  # the simulation restarts: the clock now reads 5 s
            assert mem.rebase_time(5.0) == pytest.approx(-995.0)
            assert mem.latest_stamp == 5.0
            assert torch.equal(snap.stamps, torch.full((10,), 1000.0, dtype=torch.float64))
            assert torch.equal(mem.stamps, torch.full((10,), 5.0, dtype=torch.float64))
        # New frames, 5 min after the old ones, as far from the camera (mirrored): 5 must go.
        mem.insert_points(-points(0.1), torch.full((10, 2), 2.0), 305.0, camera_position=here)
        return mem.latents[:, 0]

    assert int((run(rebase=True) == 2.0).sum()) == 10  # the new frames all stay, the map ages
    assert int((run(rebase=False) == 2.0).sum()) < 10  # without: they look 695 s old


def test_rebase_time_on_an_empty_memory_or_with_a_bad_time():
    mem = LatentMemory(channels=2)
    assert mem.rebase_time(3.0) == 0.0 and mem.latest_stamp is None
    with pytest.raises(ValueError, match="finite"):
        mem.rebase_time(float("nan"))
