"""Keyframes: whole observed frames kept beside the voxel map, warped into reads (CPU)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mirage_ros.memory import LatentMemory, MemoryFormatError, keyframes
from mirage_ros.memory.camera import rows_map_to_cam
from mirage_ros.memory.synthetic import Room, circle_trajectory, look_pose, pinhole, ray_depth

H = W = 16
K16 = pinhole(8.0, H, W)
C = 8
ROOM = Room()


def view_latents(n: int, seed: int) -> torch.Tensor:
    """Latents that depend on the view, as a real encoder's do: every frame its own noise."""
    return torch.randn(n, C, H, W, generator=torch.Generator().manual_seed(seed))


def tour(n: int = 24, seed: int = 0):
    poses = circle_trajectory(n, 1)
    depth = ray_depth(poses, K16, (H, W), ROOM)
    return poses, view_latents(n, seed), depth


def written(poses, lat, depth, **options) -> LatentMemory:
    mem = LatentMemory(channels=C, **options)
    for i in range(0, len(poses), 5):
        mem.write(lat[i:i + 5], depth[i:i + 5], K16, poses[i:i + 5],
                  torch.arange(i, min(i + 5, len(poses)), dtype=torch.float64))
    return mem


def test_a_seen_pose_reads_back_its_own_frame_exactly():
    poses, lat, depth = tour()
    mem = written(poses, lat, depth)
    fused = written(poses, lat, depth, keyframe_capacity=0)
    for i in (0, 7, 23):
        view = mem.read(poses[i:i + 1], K16, (H, W))
        assert bool(view.mask.all())
        assert torch.equal(view.latent[0], lat[i])
        torch.testing.assert_close(view.depth[0], depth[i], rtol=1e-5, atol=1e-5)
        # the fused map alone blends the neighbours' latents: far from the frame
        blend = fused.read(poses[i:i + 1], K16, (H, W)).latent[0]
        assert float((blend - lat[i]).abs().mean()) > 0.3


def test_near_a_seen_pose_the_nearest_frame_is_warped_in():
    poses, lat, depth = tour()
    mem = written(poses, lat, depth)
    moved = poses[5:6].clone()
    moved[0, :3, 3] += torch.tensor([0.0, 0.0, 0.04], dtype=torch.float64)
    view = mem.read(moved, K16, (H, W))
    # Every cell that the warp of frame 5 reaches holds one of frame 5's latents.
    ref = keyframes.warp(
        mem.keyframes.points, mem.keyframes.latent.flatten(2).transpose(1, 2),
        torch.tensor([5]), rows_map_to_cam(moved), torch.tensor([[8.0, 8.0, 8.0, 8.0]]), H, W,
        mem.config.near, mem.config.far)
    hit = ref[2][0]
    assert float(hit.float().mean()) > 0.8
    assert torch.equal(view.latent[0][:, hit], ref[0][0][:, hit])
    pool = lat[5].flatten(1).t()
    for cell in view.latent[0][:, hit].t()[:20]:
        assert bool((pool == cell).all(dim=1).any())


def test_a_surface_the_map_holds_nearer_is_not_hidden_by_the_warp():
    # A wall frame, then a box in front of it seen only from a second pose: the box must stay
    # in a read from the first pose, where the wall's keyframe would otherwise cover it.
    wall = torch.full((1, H, W), 3.0)
    mem = LatentMemory(channels=C)
    mem.write(view_latents(1, 1), wall, K16, torch.eye(4, dtype=torch.float64)[None], 0.0)
    box = torch.zeros(1, H, W)
    box[0, 6:10, 6:10] = 1.0
    side = look_pose((0.0, 0.0, -0.5), (0.0, 0.0, 1.0), up=(0.0, -1.0, 0.0))
    box_lat = view_latents(1, 2)
    mem.write(box_lat, box, K16, side[None], 1.0)
    view = mem.read(torch.eye(4, dtype=torch.float64)[None], K16, (H, W))
    near = view.depth[0] < 2.0
    assert int(near.sum()) >= 4
    assert float(view.depth[0][~near].min()) > 2.9
    # the wall keyframe is still used wherever the map holds nothing nearer
    assert torch.equal(view.latent[0][:, ~near][:, :5], view_latents(1, 1)[0][:, ~near][:, :5])


def test_cells_without_depth_are_not_warped_and_edge_cells_are():
    lat = view_latents(1, 3)
    cells = torch.full((1, H, W), 2.0)
    cells[0, :, :4] = 0.0  # no depth at cell resolution: unknown
    mem = LatentMemory(channels=C, keyframe_capacity=4)
    mem.write(lat, cells, K16, torch.eye(4, dtype=torch.float64)[None], 0.0)
    assert bool(torch.isnan(mem.keyframes.points[0].reshape(H, W, 3)[:, :4]).all())
    # Full resolution with a depth step inside every block of column 8: the memory's rule
    # keeps the near side where it covers a quarter; the keyframe keeps every such cell.
    full = torch.full((1, 4 * H, 4 * W), 2.0)
    full[0, :, 8 * 4 + 1:8 * 4 + 4] = 4.0  # 3 of 4 columns far: the near side is a quarter
    full[0, :, 12 * 4:12 * 4 + 4:2] = 0.0  # half the pixels invalid
    mem2 = LatentMemory(channels=C, keyframe_capacity=4)
    mem2.write(lat, full, K16, torch.eye(4, dtype=torch.float64)[None], 0.0)
    pts = mem2.keyframes.points[0].reshape(H, W, 3)
    assert bool(torch.isfinite(pts).all())
    view = mem2.read(torch.eye(4, dtype=torch.float64)[None], K16, (H, W))
    assert torch.equal(view.latent[0], lat[0])


def test_store_keeps_the_first_of_near_twins_adds_new_places_and_drops_the_oldest():
    depth = torch.full((1, H, W), 2.0)
    mem = LatentMemory(channels=C, keyframe_capacity=3)

    def at(x, yaw_deg=0.0):
        a = math.radians(yaw_deg)
        return look_pose((x, 0.0, 0.0), (math.sin(a), 0.0, math.cos(a)), up=(0.0, -1.0, 0.0))

    mem.write(view_latents(1, 0), depth, K16, at(0.0)[None], 0.0)
    mem.write(view_latents(1, 1), depth, K16, at(0.05)[None], 1.0)  # a twin: not kept
    assert len(mem.keyframes) == 1 and float(mem.keyframes.stamp[0]) == 0.0
    mem.write(view_latents(1, 2), depth, K16, at(0.05, 30.0)[None], 2.0)  # turned: new
    mem.write(view_latents(1, 3), depth, K16, at(0.5)[None], 3.0)  # moved: new
    assert len(mem.keyframes) == 3
    mem.write(view_latents(1, 4), depth, K16, at(1.0)[None], 4.0)  # over capacity: oldest goes
    assert sorted(mem.keyframes.stamp.tolist()) == [2.0, 3.0, 4.0]
    # a frame with a damaged latent fuses its good cells but is never kept whole
    bad = view_latents(1, 5)
    bad[0, 0, 0, 0] = float("nan")
    stats = mem.write(bad, depth, K16, at(2.0)[None], 5.0)
    assert stats.rejected_latent == 1 and stats.fused == H * W - 1
    assert sorted(mem.keyframes.stamp.tolist()) == [2.0, 3.0, 4.0]


def test_no_frame_within_max_score_reads_the_map_alone():
    poses, lat, depth = tour()
    mem = written(poses[:1], lat[:1], depth[:1], keyframe_max_score=0.2)
    fused = written(poses[:1], lat[:1], depth[:1], keyframe_capacity=0)
    far = poses[1:2]  # 15 degrees round the circle: score about 0.2 m + 0.26 rad
    a, b = mem.read(far, K16, (H, W)), fused.read(far, K16, (H, W))
    assert torch.equal(a.latent, b.latent) and torch.equal(a.mask, b.mask)


def test_reads_are_deterministic_and_snapshots_keep_their_keyframes():
    poses, lat, depth = tour()
    a = written(poses, lat, depth)
    b = written(poses, lat, depth)
    views = circle_trajectory(7, 1, radius=0.6)
    ra, rb = a.read(views, K16, (H, W)), b.read(views, K16, (H, W))
    assert torch.equal(ra.latent, rb.latent) and torch.equal(ra.depth, rb.depth)
    snap = a.snapshot()
    there = look_pose((0.0, 0.0, 1.5), (0.0, -1.0, 0.0))  # a place the tour never stood at
    a.write(view_latents(1, 99), ray_depth(there[None], K16, (H, W), ROOM), K16, there[None],
            100.0)
    assert len(snap.keyframes) == len(a.keyframes) - 1
    assert torch.equal(snap.read(poses[:1], K16, (H, W)).latent[0], lat[0])
    assert torch.equal(a.read(there[None], K16, (H, W)).latent[0], view_latents(1, 99)[0])
    assert not torch.equal(snap.read(there[None], K16, (H, W)).latent[0],
                           view_latents(1, 99)[0])
    assert a.rebase_time(0.0) == -100.0
    assert float(a.keyframes.stamp.max()) == 0.0
    a.clear()
    assert len(a.keyframes) == 0


def test_a_failed_write_leaves_the_keyframes_alone():
    poses, lat, depth = tour(4)
    mem = written(poses, lat, depth)
    before = {k: v.clone() for k, v in mem.keyframes.columns().items()}
    with pytest.raises(ValueError):
        mem.write(lat[:2], depth[:2], K16, poses[:1], 9.0)  # two frames, one pose
    for k, v in mem.keyframes.columns().items():
        assert torch.equal(v, before[k]), k


def test_save_and_load_keep_the_keyframes_bit_for_bit(tmp_path):
    poses, lat, depth = tour()
    mem = written(poses, lat, depth)
    path = tmp_path / "map.safetensors"
    mem.save(path)
    back = LatentMemory.load(path)
    for k, v in mem.keyframes.columns().items():
        assert torch.equal(getattr(back.keyframes, k), v), k
    view = circle_trajectory(5, 1, radius=0.7)
    assert torch.equal(back.read(view, K16, (H, W)).latent, mem.read(view, K16, (H, W)).latent)
    into = LatentMemory(channels=C)
    into.load_into(path)
    assert len(into.keyframes) == len(mem.keyframes)
    # a map without keyframes (saved with none) loads with none
    bare = written(poses, lat, depth, keyframe_capacity=0)
    bare.save(tmp_path / "bare.safetensors")
    assert len(LatentMemory.load(tmp_path / "bare.safetensors").keyframes) == 0
    # a memory of smaller keyframe capacity refuses the map, naming the counts, and is unchanged
    small = LatentMemory(channels=C, keyframe_capacity=2)
    with pytest.raises(MemoryFormatError, match="keyframe capacity 2"):
        small.load_into(path, keep_capacity=True)
    assert len(small) == 0 and len(small.keyframes) == 0


def test_a_damaged_keyframe_tensor_is_refused(tmp_path):
    poses, lat, depth = tour(6)
    mem = written(poses, lat, depth)
    path = tmp_path / "map.safetensors"
    mem.save(path)
    data = bytearray(path.read_bytes())
    # flip a bit in the middle of the keyframe latents
    header = int.from_bytes(data[:8], "little")
    spans = json.loads(data[8:8 + header])
    lo, hi = spans["kf_latent"]["data_offsets"]
    data[8 + header + (lo + hi) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(MemoryFormatError, match="checksum"):
        LatentMemory.load(path)


def test_training_conditions_read_the_target_frame_back_at_lag_zero():
    from mirage_ros.train.world_model import Frames, build_conditions

    poses, lat, _ = tour(12)
    full = ray_depth(poses, pinhole(32.0, 4 * H, 4 * W), (4 * H, 4 * W), ROOM)
    frames = Frames(rgb=torch.zeros(1, 12, 4 * H, 4 * W, 3, dtype=torch.uint8), depth=full[None],
                    cam_to_map=poses.numpy()[None], K=pinhole(32.0, 4 * H, 4 * W).numpy())
    cond = build_conditions(frames, lat[None], lags=(0,), log=lambda *_: None)
    for i in (0, 6, 11):
        assert bool(cond.mem_mask[0, i].all())
        assert torch.equal(cond.mem_latent[0, i], lat[i])
    later = build_conditions(frames, lat[None], lags=(2,), log=lambda *_: None)
    # two frames behind: frame i-2 warped in, never frame i itself
    assert not torch.equal(later.mem_latent[0, 6], lat[6])
    assert np.isclose(float(later.mem_mask[0, 0].float().mean()), 0.0)


def test_imagination_returns_what_was_seen_from_the_view_itself():
    """The copy rule (EngineConfig.copy_offset): cells a kept frame taken from the imagined
    pose supplied come back as observed; with the rule off the DiT's sample is used."""
    from mirage_ros.model import WorldModel
    from mirage_ros.model.autoencoder import AutoencoderConfig
    from mirage_ros.model.depth_head import DepthHeadConfig
    from mirage_ros.model.dit import DiTConfig
    from mirage_ros.rollout.imagination import imagine_paths

    torch.manual_seed(0)
    model = WorldModel(
        AutoencoderConfig(latent_channels=4, widths=(8, 8, 8), bottleneck=8),
        DepthHeadConfig(latent_channels=4, width=8, blocks=1, upsample_widths=(8, 8, 8)),
        DiTConfig(latent_channels=4, hidden=32, depth=2, heads=2),
    ).eval()
    with torch.no_grad():
        for p in model.dit.parameters():
            p.add_(0.05 * torch.randn_like(p))
    poses = circle_trajectory(12, 1)
    depth = ray_depth(poses, K16, (H, W), ROOM)
    lat = torch.randn(12, 4, H, W, generator=torch.Generator().manual_seed(5))
    mem = LatentMemory(channels=4)
    mem.write(lat, depth, K16, poses, torch.arange(12, dtype=torch.float64))
    # a path from frame 3 back over frames 4 and 5: both poses were seen
    cams = poses[3:6][None]
    on = imagine_paths(model, mem, lat[3:4], K16.float(), cams, copy_offset=0.02)
    off = imagine_paths(model, mem, lat[3:4], K16.float(), cams, copy_offset=-1.0)
    for s, frame in ((0, 4), (1, 5)):
        same_on = (on.latents[0, s] == lat[frame]).all(dim=0).float().mean()
        same_off = (off.latents[0, s] == lat[frame]).all(dim=0).float().mean()
        # All but the cells where the fused read holds a surface over 25% nearer come back as
        # seen: at step 2 that read includes step 1's frame in the path's overlay, placed at
        # this untrained depth head's (random) depths.
        assert float(same_on) > (0.99 if s == 0 else 0.8) and float(same_off) == 0.0
    # a pose nobody stood at is imagined as before
    moved = cams.clone()
    moved[0, 2, :3, 3] += torch.tensor([0.0, 0.0, 0.2], dtype=torch.float64)
    a = imagine_paths(model, mem, lat[3:4], K16.float(), moved, copy_offset=0.02)
    assert torch.equal(a.latents[0, 0], lat[4])
    assert not torch.equal(a.latents[0, 1], lat[5])
    # 20 cm off frame 5's pose: over the copy offset, so imagined, not copied
    assert float((a.latents[0, 1] == lat[5]).all(dim=0).float().mean()) < 0.5


def test_the_warp_is_the_memorys_zbuffer_rule_without_host_waits():
    """``keyframes.warp`` keys every (view, cell) pair at once; it must give exactly what the
    memory's reference z-buffer (``zbuffer.splat_pairs`` + ``gather_reference``) gives for the
    same points, including views with no frame and cells with no depth."""
    from mirage_ros.memory import zbuffer as zb

    poses, lat, depth = tour(10)
    depth[3, :4] = 0.0  # cells without depth
    mem = written(poses, lat, depth)
    kf = mem.keyframes
    views = torch.cat([circle_trajectory(9, 1, radius=0.5, pitch_deg=5.0), poses[:3]])
    w2c = rows_map_to_cam(views)
    intr = torch.tensor([8.0, 8.0, 8.0, 8.0]).expand(len(views), 4)
    frame = torch.randint(-1, len(kf), (len(views),), generator=torch.Generator().manual_seed(1))
    frame[0] = -1
    flat_lat = kf.latent.flatten(2).transpose(1, 2)
    got = keyframes.warp(kf.points, flat_lat, frame, w2c, intr, H, W, 0.05, 50.0)
    zbuf = zb.new_zbuffer(len(views), H, W, torch.device("cpu"))
    p = H * W
    for v in range(len(views)):
        if frame[v] < 0:
            continue
        pidx = frame[v] * p + torch.arange(p)
        ok = torch.isfinite(kf.points.reshape(-1, 3)[pidx]).all(dim=1)
        zb.splat_pairs(kf.points.reshape(-1, 3), pidx[ok], torch.full((int(ok.sum()),), v),
                       w2c, intr, H, W, 0.05, 50.0, zbuf, 0)
    want = zb.gather_reference(zbuf, flat_lat.reshape(-1, C), None, len(views), H, W)
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)
    assert not bool(got[2][0].any()) and bool(got[2][1:].any())


def test_turning_on_the_spot_in_small_steps_keeps_a_frame_every_ten_degrees():
    """The twin rule must not chain: each 6 degree step is a twin of the frame before it, yet
    a quarter turn has to leave its places in the store, not only the last frame."""
    mem = LatentMemory(channels=C)
    poses = [look_pose((0.0, 0.0, 1.0), (math.cos(math.radians(a)), math.sin(math.radians(a)),
                                         0.0)) for a in range(0, 91, 6)]
    for i, p in enumerate(poses):
        mem.write(view_latents(1, 10 + i), ray_depth(p[None], K16, (H, W), ROOM), K16, p[None],
                  float(i))
    assert sorted(mem.keyframes.stamp.tolist()) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0]
    # At the first pose its own frame comes back wherever it supplied the cell (offset 0):
    # all cells but the few where another view's voxels lie over 25 % nearer (box edges).
    view = mem.read(poses[0][None], K16, (H, W))
    own = view.offset[0] == 0
    assert float(own.float().mean()) > 0.9
    assert torch.equal(view.latent[0][:, own], view_latents(1, 10)[0][:, own])
