"""Parity of the Triton kernels with the torch reference (which defines correct).

Runs on a CUDA machine with Triton, or on CPU under ``TRITON_INTERPRET=1`` (Triton's
interpreter; slow, small sizes). Skips cleanly everywhere else. The kernels repeat the
reference's float32 operations one for one, so parity is asserted bit-exact, not within a
tolerance; the max abs errors are printed for the record.
"""

from __future__ import annotations

import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
if not (HAS_CUDA or INTERPRET):
    pytest.skip("Triton kernels need CUDA (or TRITON_INTERPRET=1)", allow_module_level=True)
pytest.importorskip("triton", reason="Triton is not installed")

from kernels import memory_read, memory_write  # noqa: E402
from mirage_ros.memory import LatentMemory, frames, voxel_hash, zbuffer  # noqa: E402
from mirage_ros.memory.camera import frustum_planes, rows_map_to_cam  # noqa: E402
from mirage_ros.memory.synthetic import (  # noqa: E402
    Room,
    circle_trajectory,
    latent_frames,
    pinhole,
)

DEVICE = torch.device("cuda" if HAS_CUDA else "cpu")
H = W = 16
K16 = pinhole(8.0, H, W)
SCALE = 1 if HAS_CUDA else 0  # the interpreter is ~1000x slower: keep its sizes tiny
KERNEL_VARIANTS = [
    {},
    {"aggregate": 2, "cull": 1},
    {"aggregate": 4, "prefilter": False},
    {"block": 512, "num_warps": 8, "view_split": 1},
    {"block": 128, "cull": 0, "view_split": 16},
]


def _report(name: str, a: torch.Tensor, b: torch.Tensor) -> float:
    err = float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
    print(f"{name}: max abs error {err:.3g}")
    return err


def _state(mem: LatentMemory) -> dict[str, torch.Tensor]:
    return {
        "keys": mem.keys.cpu(),
        "positions": mem.positions.cpu(),
        "latents": mem.latents.cpu(),
        "weights": mem.weights.cpu(),
        "stamps": mem.stamps.cpu(),
    }


def _room_memories(frames_per_loop: int, loops: int, channels: int = 16):
    room = Room()
    mems = {
        "cpu-torch": LatentMemory(channels=channels, device="cpu", use_kernels=False),
        "dev-torch": LatentMemory(channels=channels, device=DEVICE, use_kernels=False),
        "dev-triton": LatentMemory(channels=channels, device=DEVICE, use_kernels=True),
    }
    assert mems["dev-triton"].backend == "triton"
    poses = circle_trajectory(frames_per_loop, loops, jitter=0.02, seed=5)
    for loop in range(loops):
        p = poses[loop * frames_per_loop : (loop + 1) * frames_per_loop]
        lat, depth = latent_frames(p, K16, (H, W), channels, room)
        for mem in mems.values():
            mem.write(lat, depth, K16, p, float(loop))
    return mems


def test_write_parity_room():
    mems = _room_memories(24 if SCALE else 6, 3 if SCALE else 2)
    ref = _state(mems["cpu-torch"])
    assert len(mems["cpu-torch"]) > 100
    for name in ("dev-torch", "dev-triton"):
        got = _state(mems[name])
        for key, value in ref.items():
            _report(f"write {name} {key}", got[key], value)
            assert torch.equal(got[key], value), (name, key)


def test_read_parity_room():
    mems = _room_memories(24 if SCALE else 6, 2)
    views = circle_trajectory(64 if SCALE else 4, 1, radius=0.5, pitch_deg=5.0)
    ref = mems["cpu-torch"].read(views, K16, (H, W))
    assert bool(ref.mask.any())
    for name in ("dev-torch", "dev-triton"):
        got = mems[name].read(views, K16, (H, W))
        _report(f"read {name} latent", got.latent.cpu(), ref.latent)
        _report(f"read {name} depth", got.depth.cpu(), ref.depth)
        assert torch.equal(got.latent.cpu(), ref.latent)
        assert torch.equal(got.depth.cpu(), ref.depth)
        assert torch.equal(got.mask.cpu(), ref.mask)


def test_overlay_parity():
    mems = _room_memories(12 if SCALE else 4, 1, channels=8)
    n = 6 if SCALE else 2
    views = circle_trajectory(n, 1, radius=0.3)
    lat, depth = latent_frames(views, K16, (H, W), 8, Room())
    outs = {}
    for name, mem in mems.items():
        ov = mem.overlay(n)
        ov.write(lat + 1.0, depth * 0.8, K16, views, 9.0)
        ov.write(lat - 1.0, depth * 0.7, K16, views, 10.0)
        many = views[:, None].expand(n, 3, 4, 4).clone()
        many[:, 1, 0, 3] += 0.1
        many[:, 2, 1, 3] -= 0.1
        outs[name] = (ov.read(many, K16, (H, W)), {k: v.cpu() for k, v in ov.entries().items()})
    ref_view, ref_entries = outs["cpu-torch"]
    assert bool(ref_view.mask.any())
    for name in ("dev-torch", "dev-triton"):
        view, entries = outs[name]
        for key, value in ref_entries.items():
            assert torch.equal(entries[key], value), (name, key)
        _report(f"overlay read {name} latent", view.latent.cpu(), ref_view.latent)
        assert torch.equal(view.latent.cpu(), ref_view.latent)
        assert torch.equal(view.depth.cpu(), ref_view.depth)
        assert torch.equal(view.mask.cpu(), ref_view.mask)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_splat_and_gather_kernels_on_random_clouds(seed):
    # Random clouds on a coarse lattice produce many exact depth ties (tie-break path), random
    # intrinsics and poses exercise the frustum culling, and near/far clip some voxels.
    g = torch.Generator().manual_seed(seed)
    n = 20000 if SCALE else 700
    pos = (torch.randint(-40, 40, (n, 3), generator=g).float() / 10).to(DEVICE)
    order = torch.argsort(voxel_hash.morton_encode(torch.floor(pos * 20).long().cpu()))
    pos = pos[order.to(DEVICE)].contiguous()  # Morton order, as in a table
    lat = torch.randn(n, 5, generator=g).to(DEVICE)
    v = 150 if SCALE else 3  # > 128: several chunks of the culling pre-pass on CUDA
    poses = circle_trajectory(v, 1, radius=0.5, pitch_deg=float(seed * 10 - 10)).to(DEVICE)
    h, w = 12, 20
    fx = 4.0 + 6.0 * torch.rand(v, generator=g, dtype=torch.float64)
    intr = torch.stack([fx, fx * 1.1, torch.full_like(fx, w / 2), torch.full_like(fx, h / 2)], 1)
    intr = intr.float().to(DEVICE)
    w2c = rows_map_to_cam(poses)
    near, far = 0.25, 3.5
    planes = frustum_planes(w2c, intr, h, w, near, far)
    bounds = voxel_hash.block_bounds(pos)
    z_ref = zbuffer.new_zbuffer(v, h, w, DEVICE)
    zbuffer.splat_bank_reference(pos, bounds, planes, w2c, intr, h, w, near, far, z_ref, 0)
    assert int((z_ref != zbuffer.SENTINEL).sum()) > 0
    # Every tuning knob must leave the result bit-identical.
    for knobs in KERNEL_VARIANTS:
        z_ker = zbuffer.new_zbuffer(v, h, w, DEVICE)
        memory_read.splat_bank(pos, bounds, planes, w2c, intr, h, w, near, far, z_ker, 0, **knobs)
        assert torch.equal(z_ker, z_ref), knobs
    # Overlay entries on top, then the gather.
    m = 300 if SCALE else 50
    paths = torch.randint(0, v, (m,), generator=g).sort().values.to(DEVICE)
    epos = (torch.rand(m, 3, generator=g) * 2 - 1).to(DEVICE)
    elat = torch.randn(m, 5, generator=g).to(DEVICE)
    zbuffer.splat_entries_reference(epos, paths, w2c, intr, 1, h, w, near, far, z_ref, n)
    memory_read.splat_entries(epos, paths, w2c, intr, 1, h, w, near, far, z_ker, n)
    assert torch.equal(z_ker, z_ref)
    ref = zbuffer.gather_reference(z_ref, lat, elat, v, h, w)
    got = memory_read.gather(z_ker, lat, elat, v, h, w)
    for a, b in zip(got, ref, strict=True):
        assert torch.equal(a, b)


def test_write_kernels_on_random_frames():
    g = torch.Generator().manual_seed(3)
    b, h, w, c = (8, 16, 16, 16) if SCALE else (2, 6, 5, 3)
    depth = (0.5 + 4 * torch.rand(b, h, w, generator=g)).to(DEVICE)
    valid = (torch.rand(b, h, w, generator=g) > 0.2).to(DEVICE)
    intr = torch.tensor([[6.0, 7.0, w / 2, h / 2]]).expand(b, 4).contiguous().to(DEVICE)
    poses = circle_trajectory(b, 1, radius=1.5).to(DEVICE)
    from mirage_ros.memory.camera import rows_cam_to_map

    c2m = rows_cam_to_map(poses)
    inv = voxel_hash.inverse_voxel(0.05, DEVICE)
    p_ref, k_ref = frames.unproject_keys_reference(depth, valid, intr, c2m, inv)
    p_ker, k_ker = memory_write.unproject_keys(depth, valid, intr, c2m, inv)
    assert torch.equal(k_ker, k_ref)
    sel = k_ref >= 0
    assert torch.equal(p_ker[sel], p_ref[sel])
    # Coarse keys so groups have many points, then the per-group sums.
    keys = torch.randint(0, 50, (b * h * w,), generator=g).to(DEVICE)
    groups = voxel_hash.group_by_key(keys)
    lat = torch.randn(b * h * w, c, generator=g).to(DEVICE)
    wts = (0.5 + torch.rand(b * h * w, generator=g)).to(DEVICE)
    ref = voxel_hash.segment_sums_reference(groups.order, groups.starts, p_ref, lat, wts)
    got = memory_write.segment_sums(groups.order, groups.starts, p_ref, lat, wts)
    for a, r in zip(got, ref, strict=True):
        _report("segment sums", a, r)
        assert torch.equal(a, r)
