"""Benchmarks of the latent memory. Prints numbers; asserts nothing about time.

    python -m mirage_ros.bench.memory                      # both sections, sizes for the device
    python -m mirage_ros.bench.memory --section ratio      # (a) bytes vs an RGB point cloud
    python -m mirage_ros.bench.memory --section timing --device cuda --voxels 1000000 --views 512

(a) For the frames of a trajectory that revisits places (a synthetic room, the camera circling it
    several times with pose noise, 128 x 128 depth, 16 x 16 x C latents), the memory's bytes
    (the voxels, ``mem.nbytes``, and the keyframes kept beside them, ``mem.keyframes.nbytes``)
    against what a pixel-space memory keeps: an RGB point cloud of every valid
    pixel of every frame (xyz float32 + rgb uint8 = 15 bytes a pixel), built for real.
(b) Read (project + z-buffer + gather into V views) and write (B frames fused into the bank)
    times for the torch reference and the Triton kernels side by side, on a bank of N voxels
    laid on the room's surfaces, with the parity between the two. On CUDA: CUDA events, warm-up,
    median of the repeats; on CPU: perf_counter, median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

from mirage_ros.bench.pixel_memory import lift_pixels, surface_colors
from mirage_ros.memory.backend import kernel_ops
from mirage_ros.memory.latent_memory import LatentMemory
from mirage_ros.memory.synthetic import (
    Room,
    circle_trajectory,
    latent_frames,
    pinhole,
    ray_depth,
)


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _pixel_cloud(poses: torch.Tensor, K: torch.Tensor, depth: torch.Tensor):
    """xyz float32 and rgb uint8 of every valid pixel (what a pixel-space memory keeps; the
    unbounded ``PixelCloud`` of ``bench.pixel_memory`` holds exactly these)."""
    xyz, _, _ = lift_pixels(depth, K, poses)
    return xyz, surface_colors(xyz)


def bench_ratio(args: argparse.Namespace) -> None:
    room = Room()
    hw_px = (args.pixels, args.pixels)
    hw_lat = (args.pixels // 8, args.pixels // 8)
    k_px = pinhole(args.pixels / 2, *hw_px)  # 90 degree field of view
    k_lat = pinhole(args.pixels / 16, *hw_lat)
    poses = circle_trajectory(args.frames_per_loop, args.loops, jitter=0.01, seed=1)
    print(
        f"(a) memory vs RGB point cloud: {args.loops} loops x {args.frames_per_loop} frames, "
        f"{hw_px[0]}x{hw_px[1]} depth, latent {args.channels}x{hw_lat[0]}x{hw_lat[1]} float32"
    )
    for voxel in args.ratio_voxels:
        mem = LatentMemory(channels=args.channels, voxel_size=voxel, capacity=10_000_000)
        cloud_bytes = 0
        rows = []
        for loop in range(args.loops):
            p = poses[loop * args.frames_per_loop : (loop + 1) * args.frames_per_loop]
            depth = ray_depth(p, k_px, hw_px, room)
            lat, _ = latent_frames(p, k_lat, hw_lat, args.channels, room)
            mem.write(lat, depth, k_lat, p, float(loop))
            xyz, rgb = _pixel_cloud(p, k_px, depth)
            cloud_bytes += xyz.numel() * xyz.element_size() + rgb.numel() * rgb.element_size()
            rows.append((loop + 1, len(mem), mem.nbytes, len(mem.keyframes),
                         mem.keyframes.nbytes, cloud_bytes))
        print(f"  voxel {voxel:.2f} m")
        print("    loops  frames  voxels     voxel bytes  keyframes  kf bytes     RGB cloud"
              "    cloud/voxels  cloud/(voxels+kf)")
        for loops, voxels, nbytes, kfs, kbytes, cbytes in rows:
            print(
                f"    {loops:5d}  {loops * args.frames_per_loop:6d}  {voxels:7d}  "
                f"{_fmt_bytes(nbytes):>11}  {kfs:9d}  {_fmt_bytes(kbytes):>11}  "
                f"{_fmt_bytes(cbytes):>11}  {cbytes / nbytes:12.1f}x  "
                f"{cbytes / (nbytes + kbytes):16.1f}x"
            )


def bank_points(n: int, room: Room) -> tuple[torch.Tensor, float]:
    """About n points on a voxel grid covering the room's six faces, and the voxel size."""
    lo = torch.tensor(room.lo, dtype=torch.float64)
    hi = torch.tensor(room.hi, dtype=torch.float64)
    ext = hi - lo
    area = 2 * (ext[0] * ext[1] + ext[1] * ext[2] + ext[0] * ext[2])
    voxel = float(torch.sqrt(area / n))
    faces = []
    for axis in range(3):
        a, b = [i for i in range(3) if i != axis]
        ga = torch.arange(float(lo[a]) + voxel / 2, float(hi[a]), voxel, dtype=torch.float64)
        gb = torch.arange(float(lo[b]) + voxel / 2, float(hi[b]), voxel, dtype=torch.float64)
        ma, mb = torch.meshgrid(ga, gb, indexing="ij")
        for side in (lo[axis] + voxel / 2, hi[axis] - voxel / 2):
            pts = torch.empty(ma.numel(), 3, dtype=torch.float64)
            pts[:, a], pts[:, b], pts[:, axis] = ma.reshape(-1), mb.reshape(-1), float(side)
            faces.append(pts)
    return torch.cat(faces).to(torch.float32), voxel


def _timer(device: torch.device) -> Callable[[Callable[[], object], int, int], list[float]]:
    def run(fn: Callable[[], object], warmup: int, repeat: int) -> list[float]:
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeat):
            if device.type == "cuda":
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
        return times

    return run


def bench_timing(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    n = args.voxels or (1_000_000 if cuda else 200_000)
    n_views = args.views or (512 if cuda else 64)
    h, w = args.hw
    room = Room()
    pts, voxel = bank_points(n, room)
    gen = torch.Generator().manual_seed(0)
    lat = torch.randn(pts.shape[0], args.channels, generator=gen)
    backends = ["torch"]
    # Kernels run on CUDA; under TRITON_INTERPRET=1 also on CPU (a slow smoke test).
    runnable = cuda or os.environ.get("TRITON_INTERPRET") == "1"
    ops, err = kernel_ops() if runnable else (None, "not on CUDA")
    if ops is not None:
        backends.append("triton")
    elif cuda:
        print(f"  Triton kernels unavailable: {err}")
    print(
        f"(b) timing on {device}: bank of about {pts.shape[0]} voxels ({voxel * 100:.2f} cm), "
        f"{n_views} views of {h}x{w}, write of {args.write_frames} frames, "
        f"{args.channels} channels; median of {args.repeat} after {args.warmup} warm-up"
    )
    mems = {}
    for name in backends:
        mem = LatentMemory(
            channels=args.channels,
            voxel_size=voxel,
            capacity=max(2 * n, 1000),
            device=device,
            use_kernels=(name == "triton"),
        )
        mem.insert_points(pts.to(device), lat.to(device), 0.0)
        mems[name] = mem
    print(f"  bank holds {len(mems['torch'])} voxels, {mems['torch'].nbytes / 2**20:.1f} MiB")
    views = circle_trajectory(n_views, 1, radius=0.6, pitch_deg=-5.0, jitter=0.0)
    views[:, 2, 3] += torch.linspace(-0.2, 0.2, n_views, dtype=torch.float64)
    k_lat = pinhole(w / 2, h, w)
    frames = circle_trajectory(args.write_frames, 1, radius=0.7)
    fl, fd = latent_frames(frames, k_lat, (h, w), args.channels, room)
    views_d, k_d, frames_d, fl_d, fd_d = (t.to(device) for t in (views, k_lat, frames, fl, fd))
    timer = _timer(device)
    results = {}
    for name, mem in mems.items():
        reps = args.repeat if (name != "torch" or not cuda or n * n_views <= 2**28) else 3
        read_ms = timer(lambda m=mem: m.read(views_d, k_d, (h, w)), args.warmup, reps)
        write_ms = timer(
            lambda m=mem: m.write(fl_d, fd_d, k_d, frames_d, 1.0), args.warmup, args.repeat
        )
        results[name] = (statistics.median(read_ms), statistics.median(write_ms))
        print(
            f"  {name:6s}  read {results[name][0]:10.3f} ms   write {results[name][1]:10.3f} ms"
            f"   (read runs: {', '.join(f'{t:.3f}' for t in read_ms[:5])})"
        )
    # Rollout-shaped overlay use: one imagined frame per path written, then 8 views per path
    # read through bank + own overlay in one call.
    paths = args.write_frames
    many = frames_d[:, None].expand(paths, 8, 4, 4).clone()
    many[:, :, 0, 3] += torch.linspace(0.0, 0.3, 8, dtype=torch.float64, device=device)
    for name, mem in mems.items():
        ov = mem.overlay(paths)
        ow = timer(lambda o=ov: o.write(fl_d, fd_d * 0.9, k_d, frames_d, 2.0), 1, args.repeat)
        orr = timer(lambda o=ov: o.read(many, k_d, (h, w)), 1, args.repeat)
        print(
            f"  {name:6s}  overlay of {paths} paths: write {statistics.median(ow):8.3f} ms, "
            f"read {paths}x8 views {statistics.median(orr):8.3f} ms ({len(ov)} entries)"
        )
    view_ref = mems["torch"].read(views_d, k_d, (h, w))
    cover = float(view_ref.mask.float().mean())
    print(f"  views filled: {cover * 100:.1f} % of cells")
    if "triton" in mems:
        view_k = mems["triton"].read(views_d, k_d, (h, w))
        lat_err = float((view_k.latent - view_ref.latent).abs().max())
        dep_err = float((view_k.depth - view_ref.depth).abs().max())
        mask_diff = int((view_k.mask != view_ref.mask).sum())
        same_state = all(
            torch.equal(getattr(mems["torch"], a), getattr(mems["triton"], a))
            for a in ("keys", "positions", "latents", "weights", "stamps")
        )
        print(
            f"  parity triton vs torch: read latent max abs err {lat_err:.3g}, depth "
            f"{dep_err:.3g}, mask mismatches {mask_diff}; banks identical after writes: "
            f"{same_state}"
        )
        tr, tw = results["torch"]
        kr, kw = results["triton"]
        print(f"  speed-up: read {tr / kr:.1f}x, write {tw / kw:.1f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--section", choices=("ratio", "timing", "all"), default="all")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--pixels", type=int, default=128, help="RGB-D frame side (ratio)")
    parser.add_argument("--loops", type=int, default=10)
    parser.add_argument("--frames-per-loop", type=int, default=64)
    parser.add_argument("--ratio-voxels", type=float, nargs="+", default=[0.05, 0.1])
    parser.add_argument("--voxels", type=int, default=0, help="bank size (0 = by device)")
    parser.add_argument("--views", type=int, default=0, help="views per read (0 = by device)")
    parser.add_argument("--hw", type=int, nargs=2, default=(16, 16))
    parser.add_argument("--write-frames", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.section in ("ratio", "all"):
        bench_ratio(args)
    if args.section in ("timing", "all"):
        bench_timing(args)


if __name__ == "__main__":
    main()
