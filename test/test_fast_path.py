"""The fast path against the reference: per-path noise, bf16, CUDA graphs, batched path
resampling, and splitting a goal's paths across devices. GPU-only checks skip without CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mirage_ros.geometry import CameraRig, planar_pose
from mirage_ros.memory import LatentMemory
from mirage_ros.memory.synthetic import Room, pinhole, ray_depth
from mirage_ros.model import WorldModel
from mirage_ros.model.noise import path_noise
from mirage_ros.model.sampler import FrameSampler, resolve_precision
from mirage_ros.rollout import arc_fan
from mirage_ros.rollout.engine import EngineConfig, RolloutEngine
from mirage_ros.rollout.imagination import (
    Replica,
    RolloutInterrupted,
    imagine_paths,
    imagine_split,
    split_sizes,
)
from mirage_ros.rollout.paths import CandidatePath, resample_path, resample_paths

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(2)
    return WorldModel.default()


@pytest.fixture(scope="module")
def scene(model):
    """An engine whose memory holds two frames of the analytic room, and 6 camera paths."""
    engine = RolloutEngine(model, LatentMemory(model.latent_channels),
                           CameraRig.create().cam_to_base, [], EngineConfig(precision="fp32"))
    room, K = Room(), pinhole(64.0, 128, 128)
    for i, yaw in enumerate((0.0, 0.5)):
        base = planar_pose(0.0, 0.0, yaw)
        cam = torch.from_numpy(base) @ engine.cam_to_base
        depth = ray_depth(cam[None], K, (128, 128), room)[0]
        shade = (255 * torch.exp(-depth / 4.0)).clamp(0, 255).to(torch.uint8)
        engine.observe(shade[..., None].expand(-1, -1, 3).contiguous(), depth, K,
                       torch.from_numpy(base), float(i))
    last = engine.last_view
    fan = arc_fan(6, length=0.75, poses=4, start_yaw=0.5)
    cams = engine.camera_poses(fan, 3, last.cam_to_map)[1]
    return engine, cams


# ---------------------------------------------------------------------------- noise


def test_path_noise_is_standard_normal_and_belongs_to_its_path():
    z = path_noise(5, torch.arange(512), 3, (8, 16, 16))
    assert z.shape == (512, 8, 16, 16) and z.dtype == torch.float32
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1.0) < 0.01
    assert abs(float((z**4).mean()) - 3.0) < 0.05  # Gaussian tails, not uniform ones
    # A path's noise does not depend on the batch around it, nor on its position there.
    sub = path_noise(5, torch.tensor([300, 7]), 3, (8, 16, 16))
    assert torch.equal(sub[0], z[300]) and torch.equal(sub[1], z[7])
    # Other paths, steps and seeds draw independent noise.
    flat = z.flatten(1)
    for other in (path_noise(5, torch.arange(1, 513), 3, (8, 16, 16)),
                  path_noise(5, torch.arange(512), 4, (8, 16, 16)),
                  path_noise(6, torch.arange(512), 3, (8, 16, 16))):
        corr = torch.corrcoef(torch.stack([flat.flatten(), other.flatten()]))[0, 1]
        assert abs(float(corr)) < 0.005
    # Keys that differ by a small even number once drew the same numbers, permuted: no two
    # (path, step) pairs may share their sorted values.
    rows = torch.cat([path_noise(0, torch.arange(4096), s, (2048,)).sort(dim=1).values
                      for s in (3, 4)])
    assert torch.unique(rows, dim=0).shape[0] == rows.shape[0]
    with pytest.raises(ValueError, match="seed"):
        path_noise(-1, torch.arange(2), 0, (4,))
    with pytest.raises(ValueError, match="step"):
        path_noise(0, torch.arange(2), 2**32, (4,))


@cuda
def test_path_noise_is_the_same_on_the_gpu():
    ids = torch.arange(64)
    cpu = path_noise(9, ids, 2, (8, 16, 16))
    gpu = path_noise(9, ids.cuda(), 2, (8, 16, 16)).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------- precision


def test_precision_names_resolve_and_bad_ones_are_refused():
    assert resolve_precision("fp32", "cpu") == torch.float32
    assert resolve_precision("bf16", "cpu") == torch.bfloat16
    assert resolve_precision("auto", "cpu") in (torch.float32, torch.bfloat16)
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="precision"):
        EngineConfig(precision="half")


def _floor(model, batch: int, height: float = 0.5):
    """The depth head's floor geometry for ``batch`` cameras of the default rig, raised to
    ``height`` metres."""
    cam = torch.from_numpy(CameraRig.create(height_m=height).cam_to_base)
    K = torch.tensor([[8.0, 0, 8.0], [0, 8.0, 8.0], [0, 0, 1]])
    return model.depth_geometry(K, cam.expand(batch, 4, 4), (16, 16))


def test_fp32_sampler_is_the_reference_and_bf16_stays_close(model):
    gen = torch.Generator().manual_seed(0)
    cond = torch.randn(4, model.dit.cfg.cond_channels, 16, 16, generator=gen)
    noise = torch.randn(4, model.latent_channels, 16, 16, generator=gen)
    ref = model.sample(cond, noise, 2)
    fp32 = FrameSampler(model, "fp32")
    assert torch.equal(fp32.sample(cond, noise, 2), ref)
    g = _floor(model, 4)
    assert torch.equal(fp32.depth(ref, geometry=g), model.depth(ref, geometry=g)[0])
    bf16 = FrameSampler(model, "bf16")
    z = bf16.sample(cond, noise, 2)
    assert z.dtype == torch.float32
    # bf16 keeps 8 bits of mantissa: the sampled latent moves by about 1% of its spread.
    rel = float((z - ref).pow(2).mean().sqrt() / ref.std())
    assert rel < 0.05, rel
    d_ref, d = model.depth(ref, geometry=g)[0], bf16.depth(ref, geometry=g)
    assert d.dtype == torch.float32
    assert float(((d - d_ref).abs() / d_ref).median()) < 0.03


# ---------------------------------------------------------------------------- batching


def test_a_path_imagines_the_same_whatever_else_is_in_the_batch(model, scene):
    engine, cams = scene
    memory, last = engine.snapshot()
    full = imagine_paths(model, memory, last.latent, last.K_latent, cams, seed=4)
    sub = [4, 1]
    part = imagine_paths(model, memory, last.latent, last.K_latent, cams[sub], seed=4,
                         path_ids=torch.tensor(sub))
    torch.testing.assert_close(part.latents, full.latents[sub], rtol=0, atol=1e-4)
    torch.testing.assert_close(part.depth, full.depth[sub], rtol=0, atol=1e-4)


def test_split_across_replicas_returns_what_one_device_gives(model, scene):
    engine, cams = scene
    memory, last = engine.snapshot()
    one = imagine_paths(model, memory, last.latent, last.K_latent, cams, seed=2)
    sampler = FrameSampler(model, "fp32")
    replicas = [Replica(sampler, memory.to("cpu")) for _ in range(3)]
    steps = []
    split = imagine_split(replicas, [3, 2, 1], last.latent, last.K_latent, cams, seed=2,
                          on_step=lambda d, t: steps.append((d, t)))
    assert steps == [(1, 3), (2, 3), (3, 3)]
    for name in ("latents", "depth", "memory_depth", "coverage"):
        torch.testing.assert_close(getattr(split, name), getattr(one, name), rtol=0, atol=1e-4)
    assert torch.equal(split.mask, one.mask)
    # a stop from any side stops every replica; a real error wins over the stops it caused
    with pytest.raises(RolloutInterrupted):
        imagine_split(replicas, [3, 2, 1], last.latent, last.K_latent, cams,
                      should_stop=lambda: True)
    with pytest.raises(RolloutInterrupted, match="after step 1"):
        imagine_split(replicas, [3, 2, 1], last.latent, last.K_latent, cams,
                      on_step=lambda d, t: False)
    class Failing(FrameSampler):
        def sample(self, *args, **kwargs):
            raise RuntimeError("replica failed")

    broken = [replicas[0], Replica(Failing(model, "fp32"), memory)]
    with pytest.raises(RuntimeError, match="replica failed"):
        imagine_split(broken, [3, 3], last.latent, last.K_latent, cams)
    with pytest.raises(ValueError, match="share"):
        imagine_split(replicas, [3, 2], last.latent, last.K_latent, cams)


def test_split_sizes_are_even_and_never_below_the_minimum():
    assert split_sizes(10, 1, 1) == [10]
    assert split_sizes(10, 3, 1) == [4, 3, 3]
    assert split_sizes(255, 2, 128) == [255]  # too few for two devices
    assert split_sizes(256, 2, 128) == [128, 128]
    assert split_sizes(4096, 2, 128) == [2048, 2048]
    assert split_sizes(5, 4, 1000) == [5]


def test_batched_resampling_equals_each_path_alone():
    rng = np.random.default_rng(3)
    paths = arc_fan(5, start_yaw=0.2)
    for t in (1, 2, 7, 9):
        for _ in range(3):
            pos = np.cumsum(rng.normal(size=(t, 3)) * 0.2, axis=0)
            q = rng.normal(size=(t, 4))
            paths.append(CandidatePath("map", pos, q / np.linalg.norm(q, axis=1, keepdims=True),
                                       np.zeros(t)))
    rng.shuffle(paths)
    batch = resample_paths(paths, 6, 0.2, 0.4)
    assert batch.shape == (len(paths), 7, 4, 4)
    for i, p in enumerate(paths):
        np.testing.assert_array_equal(batch[i], resample_path(p, 6, 0.2, 0.4))
        np.testing.assert_array_equal(batch[i], resample_paths([p], 6, 0.2, 0.4)[0])


# ---------------------------------------------------------------------------- GPU


@cuda
def test_cuda_graphs_replay_what_the_eager_pass_computes(model):
    gpu = WorldModel.default("cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    for precision in ("fp32", "bf16"):
        eager = FrameSampler(gpu, precision, cuda_graphs=False)
        graphs = FrameSampler(gpu, precision, cuda_graphs=True)
        for b in (3, 64, 3):  # a second batch size, then the first graph again
            cond = torch.randn(b, gpu.dit.cfg.cond_channels, 16, 16, device="cuda",
                               generator=gen)
            noise = torch.randn(b, gpu.latent_channels, 16, 16, device="cuda", generator=gen)
            z = eager.sample(cond, noise, 2)
            torch.testing.assert_close(graphs.sample(cond, noise, 2), z, rtol=1e-3, atol=1e-3)
            g = _floor(gpu, b, height=0.3 + 0.01 * b)  # the camera is an input of the graph
            torch.testing.assert_close(graphs.depth(z, geometry=g), eager.depth(z, geometry=g),
                                       rtol=1e-3, atol=1e-3)


@cuda
def test_the_gpu_fast_path_scores_like_the_cpu_reference(model, scene):
    """Same memory, same paths: CPU float32 (the reference) against the GPU engine in bf16
    with graphs (and split across GPUs when there are several)."""
    engine, cams = scene
    memory, last = engine.snapshot()
    ref = imagine_paths(model, memory, last.latent, last.K_latent, cams, seed=1)
    gpu_model = WorldModel.default("cuda")
    devices = [f"cuda:{i}" for i in range(1, torch.cuda.device_count())]
    gpu = RolloutEngine(gpu_model, memory.to("cuda"), engine.cam_to_base, [],
                        EngineConfig(precision="bf16", min_paths_per_device=1),
                        split_devices=devices)
    fast = gpu.imagine(cams.cuda(), last.latent.cuda(), last.K_latent.cuda(), seed=1)
    rel = float((fast.latents.cpu() - ref.latents).pow(2).mean().sqrt() / ref.latents.std())
    assert rel < 0.1, rel
    depth_rel = ((fast.depth.cpu() - ref.depth).abs() / ref.depth).median()
    assert float(depth_rel) < 0.05


# ---------------------------------------------------------------------------- slot overlay


def _overlay_case(n=3, steps=4, h=12, w=16, channels=5):
    """A bank holding one frame of the analytic room and, per path and step, a frame to write:
    depth rendered at the step's pose (some cells made invalid), random latents (one cell
    non-finite), and a path that comes back to an earlier pose (its entries fuse)."""
    from mirage_ros.memory.synthetic import circle_trajectory

    room, K = Room(), pinhole(8.0, h, w)
    base = circle_trajectory(n * steps + 1, jitter=0.0)
    bank = LatentMemory(channels, voxel_size=0.1)
    gen = torch.Generator().manual_seed(5)
    bank.write(torch.randn(1, channels, h, w, generator=gen),
               ray_depth(base[:1], K, (h, w), room), K, base[:1], 0.0)
    poses = base[1:].reshape(n, steps, 4, 4).clone()
    poses[0, 2] = poses[0, 0]  # a revisit within a path
    depth = ray_depth(poses.reshape(-1, 4, 4), K, (h, w), room).reshape(n, steps, h, w)
    depth[1, 1, :3] = 0.0  # no return
    depth[2, 0, 5, 5] = 1e4  # out of range
    lat = torch.randn(n, steps, channels, h, w, generator=gen)
    lat[1, 2, :, 4, 4] = float("nan")
    return bank, poses, K, depth, lat


def test_slot_overlay_holds_what_the_reference_overlay_holds():
    from mirage_ros.memory.slot_overlay import SlotOverlay

    bank, poses, K, depth, lat = _overlay_case()
    n, steps = poses.shape[:2]
    ref = bank.overlay(n)
    slots = SlotOverlay(bank, poses, K, depth.shape[-2:])
    for s in range(steps):
        ref.write(lat[:, s], depth[:, s], K, poses[:, s], float(s + 1))
        slots.write(lat[:, s], depth[:, s], s)
        a, b = ref.entries(), slots.entries()
        assert torch.equal(a["keys"], b["keys"]) and torch.equal(a["path"], b["path"])
        torch.testing.assert_close(b["position"], a["position"], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(b["latent"], a["latent"], rtol=1e-6, atol=1e-6)
        assert torch.equal(a["weight"], b["weight"]) and torch.equal(a["stamp"], b["stamp"])
        assert torch.equal(ref.counts(), slots.counts())
        for r in range(steps):  # every step's view sees the same bank + overlay
            va = ref.read(poses[:, r], K, depth.shape[-2:])
            vb = slots.read(r)
            # sums in another order move a fused point by float32 rounding at most
            assert torch.equal(va.mask, vb.mask)
            torch.testing.assert_close(vb.depth, va.depth, rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(vb.latent, va.latent, rtol=1e-6, atol=1e-6)
    assert bool((slots.entries()["weight"] > 1).any())  # the revisit fused, not appended
    assert len(bank) == len(bank.snapshot())  # the bank was never written


def test_slot_overlay_rollout_matches_the_reference_rollout(model, scene):
    engine, cams = scene
    memory, last = engine.snapshot()
    ref = imagine_paths(model, memory, last.latent, last.K_latent, cams, seed=6)
    fast = imagine_paths(model, memory, last.latent, last.K_latent, cams, seed=6,
                         slot_overlay=True)
    # A fused point may move by float32 rounding: a cell exactly on an edge could flip.
    assert float((fast.mask != ref.mask).float().mean()) <= 0.005
    same = (fast.mask == ref.mask)[:, :, None]
    torch.testing.assert_close(fast.latents, ref.latents, rtol=0, atol=1e-4)
    torch.testing.assert_close(fast.depth, ref.depth, rtol=0, atol=1e-4)
    torch.testing.assert_close(fast.memory_depth * same[:, :, 0], ref.memory_depth * same[:, :, 0],
                               rtol=0, atol=1e-4)


def test_slot_overlay_refuses_a_second_write_of_a_step_and_bad_steps():
    from mirage_ros.memory.slot_overlay import SlotOverlay

    bank, poses, K, depth, lat = _overlay_case()
    slots = SlotOverlay(bank, poses, K, depth.shape[-2:])
    slots.write(lat[:, 0], depth[:, 0], 0)
    before = {k: v.clone() for k, v in slots.entries().items()}
    for step, match in ((0, "written already"), (poses.shape[1], "step must be"),
                        (-1, "step must be")):
        with pytest.raises(ValueError, match=match):
            slots.write(lat[:, 1], depth[:, 1], step)
    with pytest.raises(ValueError, match="expected latents"):
        slots.write(lat[:2, 1], depth[:2, 1], 1)
    after = slots.entries()
    assert all(torch.equal(before[k], after[k]) for k in before)  # refused: nothing written


def test_split_gives_each_replica_its_share_of_per_path_start_latents(model, scene):
    engine, cams = scene
    memory, last = engine.snapshot()
    starts = last.latent.expand(cams.shape[0], -1, -1, -1) \
        + 0.1 * torch.arange(cams.shape[0]).float()[:, None, None, None]
    one = imagine_paths(model, memory, starts, last.K_latent, cams, seed=3)
    sampler = FrameSampler(model, "fp32")
    replicas = [Replica(sampler, memory) for _ in range(2)]
    split = imagine_split(replicas, [4, 2], starts, last.K_latent, cams, seed=3)
    torch.testing.assert_close(split.latents, one.latents, rtol=0, atol=1e-4)
