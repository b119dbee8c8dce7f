"""The pixel-space baseline (bench.pixel_memory) and the latent-vs-pixel benchmark CLI."""

from __future__ import annotations

import re

import pytest
import torch

from mirage_ros.bench import latent_vs_pixel
from mirage_ros.bench.memory import _pixel_cloud
from mirage_ros.bench.pixel_imagination import imagine_paths_pixel, model_for_size
from mirage_ros.bench.pixel_memory import PixelCloud, room_frames
from mirage_ros.memory import LatentMemory
from mirage_ros.memory.synthetic import circle_trajectory, pinhole
from mirage_ros.model import WorldModel
from mirage_ros.rollout.imagination import imagine_paths

H = W = 16
K = pinhole(8.0, H, W)
EYE = torch.eye(4, dtype=torch.float64)[None]


def _flat(depth: float, color: tuple[int, int, int], cols: slice = slice(None)):
    """A frame seen from the identity pose: a fronto-parallel plane at ``depth`` over the
    columns ``cols`` (no return elsewhere), one colour."""
    d = torch.zeros(1, H, W)
    d[:, :, cols] = depth
    rgb = torch.tensor(color, dtype=torch.uint8)[None, :, None, None].expand(1, 3, H, W)
    return rgb.contiguous(), d


@pytest.mark.parametrize("near_first", [True, False])
def test_zbuffer_keeps_the_nearest_point_per_pixel(near_first):
    far = _flat(2.0, (255, 0, 0))
    near = _flat(1.0, (0, 0, 255), slice(0, W // 2))
    cloud = PixelCloud()
    for rgb, d in ((near, far) if near_first else (far, near)):
        cloud.write(rgb, d, K, EYE)
    view = cloud.render(EYE, K, (H, W))
    assert view.mask.all()
    left, right = slice(0, W // 2), slice(W // 2, W)
    assert torch.allclose(view.depth[0, :, left], torch.tensor(1.0))
    assert torch.allclose(view.depth[0, :, right], torch.tensor(2.0))
    assert (view.rgb[0, :, :, left] == torch.tensor([0, 0, 255], dtype=torch.uint8)[:, None,
                                                                                       None]).all()
    assert (view.rgb[0, :, :, right] == torch.tensor([255, 0, 0], dtype=torch.uint8)[:, None,
                                                                                        None]).all()


def test_overlay_points_reach_only_their_own_path_and_the_nearest_wins():
    bank = PixelCloud()
    bank.write(*_flat(2.0, (255, 0, 0)), K, EYE)
    paths = bank.overlay(2)
    near = _flat(1.0, (0, 255, 0))
    behind = _flat(3.0, (0, 0, 255))
    paths.write(torch.cat([near[0], behind[0]]), torch.cat([near[1], behind[1]]), K,
                EYE.expand(2, 4, 4))
    view = paths.render(EYE.expand(2, 4, 4), K, (H, W))
    assert torch.allclose(view.depth[0], torch.tensor(1.0))  # path 0: its own nearer plane
    assert (view.rgb[0, 1] == 255).all() and (view.rgb[0, 0] == 0).all()
    assert torch.allclose(view.depth[1], torch.tensor(2.0))  # path 1: the bank in front
    assert (view.rgb[1, 0] == 255).all()
    assert len(bank) == H * W  # imagined points never enter the bank


def test_render_of_a_lifted_frame_at_its_own_pose_reproduces_it():
    hw = (32, 32)
    k = pinhole(16.0, *hw)
    pose = circle_trajectory(8)[3:4]
    rgb, depth = room_frames(pose, k, hw)
    cloud = PixelCloud()
    cloud.write(rgb.permute(0, 3, 1, 2), depth, k, pose)
    view = cloud.render(pose, k, hw)
    valid = depth > 0
    assert valid.float().mean() > 0.9
    assert torch.equal(view.mask, valid)
    assert torch.equal(view.rgb.permute(0, 2, 3, 1)[valid], rgb[valid])
    assert torch.allclose(view.depth[valid], depth[valid], rtol=1e-5)
    # A voxelised cloud keeps the surfaces: covered pixels lie within a voxel of the frame.
    bounded = PixelCloud(voxel_size=0.05)
    bounded.write(rgb.permute(0, 3, 1, 2), depth, k, pose)
    view = bounded.render(pose, k, hw)
    assert view.mask.any() and bool((view.mask <= valid).all())
    err = (view.depth - depth)[view.mask].abs()
    assert float(err.max()) < 0.1


def test_bounded_cloud_fuses_revisits_and_respects_capacity():
    hw = (32, 32)
    k = pinhole(16.0, *hw)
    poses = circle_trajectory(16, 2, jitter=0.01, seed=1)
    rgb, depth = room_frames(poses, k, hw)
    rgb = rgb.permute(0, 3, 1, 2)
    free = PixelCloud(voxel_size=0.05)
    for i in range(16):
        free.write(rgb[i:i + 1], depth[i:i + 1], k, poses[i:i + 1], float(i))
    after_one_loop = len(free)
    for i in range(16, 32):
        free.write(rgb[i:i + 1], depth[i:i + 1], k, poses[i:i + 1], float(i))
    assert len(free) < 1.1 * after_one_loop  # revisiting updates voxels
    assert free.nbytes == len(free) * (12 + 3 + 8 + 4 + 8)
    keys = free._cols["keys"]
    assert bool((keys[1:] > keys[:-1]).all())  # sorted, one point per voxel
    capped = PixelCloud(voxel_size=0.05, capacity=500)
    for i in range(8):
        capped.write(rgb[i:i + 1], depth[i:i + 1], k, poses[i:i + 1], float(i))
        assert len(capped) <= 500
    assert len(capped) == 500
    unbounded = PixelCloud()
    unbounded.write(rgb, depth, k, poses)
    assert len(unbounded) == int((depth > 0).sum())
    assert unbounded.nbytes == 15 * len(unbounded)
    xyz, colors = _pixel_cloud(poses, k, depth)  # bench.memory's cloud is the same cloud
    assert xyz.shape[0] == len(unbounded) and torch.equal(colors, unbounded.colors)


@pytest.fixture(scope="module")
def model64() -> WorldModel:
    return model_for_size(WorldModel.default("cpu"), 64)


def test_model_for_size_shares_the_weights(model64):
    base = WorldModel.default("cpu")
    assert model64.dit.cfg.grid == 8 and base.dit.cfg.grid == 16
    assert torch.equal(model64.dit.blocks[0].qkv.weight, base.dit.blocks[0].qkv.weight)
    assert model_for_size(base, 128) is base
    with pytest.raises(ValueError):
        model_for_size(base, 72)


def test_both_loops_give_the_dit_identical_inputs_where_the_memories_agree(model64):
    """With both memories empty, step 1 conditions on nothing but the previous latent and the
    motion: the same seed must then give the same latent bit for bit."""
    gen = torch.Generator().manual_seed(3)
    start = torch.randn(1, model64.latent_channels, 8, 8, generator=gen)
    poses = circle_trajectory(3)[None].expand(2, 3, 4, 4).clone()
    poses[1, 1:, 0, 3] += 0.1
    k_lat, k_px = pinhole(4.0, 8, 8), pinhole(32.0, 64, 64)
    lat = imagine_paths(model64, LatentMemory(model64.latent_channels), start, k_lat, poses,
                        seed=0)
    pix = imagine_paths_pixel(model64, PixelCloud(), start, k_lat, k_px, poses,
                              seed=0)
    assert torch.equal(lat.latents[:, 0], pix.latents[:, 0])
    assert not pix.mask[:, 0].any() and not lat.mask[:, 0].any()
    assert pix.latents.shape == lat.latents.shape
    assert len(pix.clouds) == 2 * 2 * 64 * 64  # every imagined pixel lifted, per path


def test_cli_runs_end_to_end_and_ends_with_the_summary(capsys):
    rc = latent_vs_pixel.main(["--paths", "2", "--steps", "2", "--size", "64", "--loops", "1",
                               "--frames-per-loop", "8", "--repeats", "1"])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    m = re.fullmatch(r"latent vs pixel: (\d+\.\d+)x faster per imagined step, (\d+\.\d+)x "
                     r"faster memory path, (\d+\.\d+)x smaller cache after (\d+) steps", lines[-1])
    assert m, lines[-1]
    assert int(m.group(4)) == 8
    assert all(float(m.group(i)) > 0 for i in (1, 2, 3))
    text = "\n".join(lines)
    for phase in ("memory read / render", "encode render", "decode latent to RGB",
                  "overlay write / lift", "total per step", "memory path"):
        assert phase in text


def test_camera_mount_matches_the_trajectory():
    pose = circle_trajectory(4)[1]
    base = pose @ torch.linalg.inv(latent_vs_pixel.camera_mount())
    assert torch.allclose(base[2, :3], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64),
                          atol=1e-9)  # the base is level: a ground robot
    assert abs(float(base[2, 3])) < 1e-9


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cli_refuses_cuda_without_it(capsys):
    with pytest.raises(SystemExit) as exc:
        latent_vs_pixel.main(["--device", "cuda", "--size", "64"])
    assert exc.value.code == 2
    assert "CUDA is not available" in capsys.readouterr().err
