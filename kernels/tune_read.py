"""Time variants of the memory kernels on the target case; run on a CUDA machine.

    PYTHONPATH=. python3 -m kernels.tune_read [--voxels 1000000 --views 512 --hw 16 16]

Every variant's z-buffer is checked bit-exact against the torch reference before it is timed.
Times are medians of ``triton.testing.do_bench`` (CUDA events); each includes the z-buffer
reset, as a read does.
"""

from __future__ import annotations

import argparse
import statistics

import torch
import triton
from triton.testing import do_bench as triton_bench

from kernels import memory_read, memory_write
from mirage_ros.bench.memory import bank_points
from mirage_ros.memory import LatentMemory, voxel_hash, zbuffer
from mirage_ros.memory.camera import frustum_planes, rows_cam_to_map, rows_map_to_cam
from mirage_ros.memory.frames import unproject_keys_reference
from mirage_ros.memory.synthetic import Room, circle_trajectory, latent_frames, pinhole


def _wall_clock(fn, warmup: int = 1, rep: int = 1, return_mode: str = "median") -> float:
    """Stand-in for do_bench off CUDA (interpreter smoke runs): one timed call, in ms."""
    import time

    fn()
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--voxels", type=int, default=1_000_000)
    parser.add_argument("--views", type=int, default=512)
    parser.add_argument("--hw", type=int, nargs=2, default=(16, 16))
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--device", default="cuda", help="cpu only for interpreter smoke tests")
    args = parser.parse_args()
    dev = torch.device(args.device)
    do_bench = triton_bench if dev.type == "cuda" else _wall_clock
    h, w = args.hw
    room = Room()
    pts, voxel = bank_points(args.voxels, room)
    lat = torch.randn(pts.shape[0], args.channels, generator=torch.Generator().manual_seed(0))
    mem = LatentMemory(args.channels, voxel, 2 * args.voxels, dev, use_kernels=True)
    mem.insert_points(pts.to(dev), lat.to(dev), 0.0)
    table = mem._table
    views = circle_trajectory(args.views, 1, radius=0.6, pitch_deg=-5.0)
    views[:, 2, 3] += torch.linspace(-0.2, 0.2, args.views, dtype=torch.float64)
    K = pinhole(w / 2, h, w)
    k_row = [float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])]
    intr_cpu = torch.tensor([k_row], dtype=torch.float32).expand(args.views, 4)
    w2c_cpu = rows_map_to_cam(views)
    near, far = mem.config.near, mem.config.far
    planes = frustum_planes(w2c_cpu, intr_cpu, h, w, near, far).to(dev)
    w2c, intr = w2c_cpu.to(dev), intr_cpu.contiguous().to(dev)
    pos, bounds = table.position, table.bounds()
    n = pos.shape[0]
    vis = zbuffer.visible_blocks(bounds, planes)
    print(
        f"bank {n} voxels ({voxel * 100:.2f} cm), {args.views} views {h}x{w}; "
        f"block-view pairs kept by culling: {float(vis.float().mean()) * 100:.1f} %"
    )

    ref = zbuffer.new_zbuffer(args.views, h, w, dev)
    _sync(dev)
    t_ref = do_bench(
        lambda: (
            ref.fill_(zbuffer.SENTINEL),
            zbuffer.splat_bank_reference(pos, bounds, planes, w2c, intr, h, w, near, far, ref),
        ),
        warmup=1,
        rep=1,
        return_mode="median",
    )
    print(f"torch reference splat (on GPU): {t_ref:.2f} ms")
    filled = int((ref != zbuffer.SENTINEL).sum())
    print(f"cells filled: {filled} / {ref.numel()}")

    zbuf = zbuffer.new_zbuffer(args.views, h, w, dev)
    variants = [
        dict(),
        dict(num_warps=4),
        dict(num_warps=8),
        dict(view_split=1),
        dict(view_split=2),
        dict(view_split=8),
        dict(view_split=16),
        dict(block=128),
        dict(block=512, num_warps=4),
        dict(prefilter=False),
        dict(aggregate=1),
        dict(aggregate=2),
        dict(cull=1),
        dict(cull=1, num_warps=4, aggregate=2),
        dict(cull=0),
    ]
    rows = []
    for kw in variants:
        kb = kw.get("block", voxel_hash.CULL_BLOCK)
        bnds = bounds if kb == voxel_hash.CULL_BLOCK else voxel_hash.block_bounds(pos, kb)

        def run(kw=kw, bnds=bnds):
            zbuf.fill_(zbuffer.SENTINEL)
            memory_read.splat_bank(pos, bnds, planes, w2c, intr, h, w, near, far, zbuf, **kw)

        run()
        _sync(dev)
        same = torch.equal(zbuf, ref)
        t = do_bench(run, warmup=25, rep=200, return_mode="median")
        t2 = do_bench(run, warmup=5, rep=200, return_mode="median")
        rows.append((kw, t, t2, same))
        print(f"splat {kw!s:45s} {t:8.3f} ms  (again {t2:8.3f})  exact={same}")

    out = memory_read.gather(ref, table.latent, None, args.views, h, w)
    t_g = do_bench(
        lambda: memory_read.gather(ref, table.latent, None, args.views, h, w), return_mode="median"
    )
    t_gr = do_bench(
        lambda: zbuffer.gather_reference(ref, table.latent, None, args.views, h, w),
        return_mode="median",
    )
    same_g = all(
        torch.equal(a, b)
        for a, b in zip(
            out, zbuffer.gather_reference(ref, table.latent, None, args.views, h, w), strict=True
        )
    )
    print(f"gather kernel {t_g:.3f} ms, torch {t_gr:.3f} ms, exact={same_g}")
    k_lat = K.to(dev)
    views_d = views.to(dev)
    t_read = do_bench(lambda: mem.read(views_d, k_lat, (h, w)), return_mode="median")
    t_read_cpu_in = do_bench(lambda: mem.read(views, K, (h, w)), return_mode="median")
    poses64 = views.to(torch.float64)
    t_render = do_bench(
        lambda: mem._render(poses64, intr_cpu.contiguous(), h, w, near, far, None),
        return_mode="median",
    )
    print(
        f"full mem.read (validation + tables + splat + gather): {t_read:.3f} ms "
        f"(poses given on GPU), {t_read_cpu_in:.3f} ms (poses given on CPU); "
        f"without validation {t_render:.3f} ms"
    )
    if dev.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        mem.read(views, K, (h, w))
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                mem.read(views, K, (h, w))
            torch.cuda.synchronize()
        print("profile of 5 reads (poses on CPU):")
        table = prof.key_averages().table(sort_by="cpu_time_total", row_limit=14)
        print(table)

    # Write hot path in isolation: 64 frames of 16x16.
    b = 64
    frames = circle_trajectory(b, 1, radius=0.7)
    fl, fd = latent_frames(frames, K, (h, w), args.channels, room)
    fd, fl = fd.to(dev), fl.to(dev)
    valid = fd > 0
    intr_b = torch.tensor([k_row], dtype=torch.float32).expand(b, 4).contiguous().to(dev)
    c2m = rows_cam_to_map(frames).to(dev)
    inv = voxel_hash.inverse_voxel(voxel, dev)
    t_uk = do_bench(lambda: memory_write.unproject_keys(fd, valid, intr_b, c2m, inv))
    t_ur = do_bench(lambda: unproject_keys_reference(fd, valid, intr_b, c2m, inv))
    p, keys = memory_write.unproject_keys(fd, valid, intr_b, c2m, inv)
    sel = keys >= 0
    groups = voxel_hash.group_by_key(keys[sel])
    latf = fl.permute(0, 2, 3, 1).reshape(-1, args.channels)[sel]
    wts = torch.ones(int(sel.sum()), device=dev)
    ps = p[sel]
    t_sk = do_bench(lambda: memory_write.segment_sums(groups.order, groups.starts, ps, latf, wts))
    t_sr = do_bench(
        lambda: voxel_hash.segment_sums_reference(groups.order, groups.starts, ps, latf, wts)
    )
    print(
        f"write hot path ({b} frames): unproject+keys kernel {t_uk:.3f} ms vs torch {t_ur:.3f} ms;"
        f" segment sums kernel {t_sk:.3f} ms vs torch {t_sr:.3f} ms "
        f"(max group {int(groups.counts.max())})"
    )
    if dev.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        fk = k_lat
        fposes = frames.to(dev)
        mem.write(fl, fd, fk, fposes, 2.0)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                mem.write(fl, fd, fk, fposes, 2.0)
            torch.cuda.synchronize()
        print("profile of 3 writes of 64 frames into the bank:")
        table = prof.key_averages().table(sort_by="cpu_time_total", row_limit=16)
        print(table)
    best = min((r for r in rows if r[3]), key=lambda r: statistics.median([r[1], r[2]]))
    print(f"best splat variant: {best[0]} {best[1]:.3f} ms; triton {triton.__version__}")


if __name__ == "__main__":
    main()
