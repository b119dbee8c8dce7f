"""How imagination scales: latency and peak GPU memory against paths and horizon, the split
across GPUs, and the memory read against bank size. Prints tables, writes JSON and a PNG.

    python -m mirage_ros.bench.scaling --device cuda [--out DIR]
    python -m mirage_ros.bench.scaling --device cpu --paths 1 4 16 --horizons 4 8 --banks 10000

(a) ``RolloutEngine.score`` (shipped weights, 2 sampler steps, the default critics, no
    previews) on the analytic room of ``memory.synthetic``, for every path count at horizon
    8 and every horizon at ``--horizon-paths``, in two modes side by side: ``fast`` (the
    engine's defaults: bf16 where native; on a GPU, CUDA graphs and the slot overlay) and
    ``reference`` (float32, no graphs, the reference overlay). Wall time from the call to the
    answer on the host (what a planner waits for), median of ``--repeats`` after a warm-up call
    (which captures the graphs); peak GPU memory allocated during the timed calls.
(b) With several GPUs: the same engine with its paths split across all of them
    (``split_devices``) against one GPU, at ``--split-paths``.
(c) ``LatentMemory.read`` of ``--views`` views from banks of ``--banks`` voxels laid on the
    room's surfaces (the kernels on CUDA, the torch reference on a CPU).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from mirage_ros.bench.imagination import CRITICS
from mirage_ros.bench.memory import bank_points
from mirage_ros.geometry import CameraRig, planar_pose
from mirage_ros.memory import LatentMemory
from mirage_ros.memory.synthetic import Room, pinhole, ray_depth
from mirage_ros.model import WorldModel
from mirage_ros.rollout import Goal, arc_fan, make_critic
from mirage_ros.rollout.engine import EngineConfig, RolloutEngine
from mirage_ros.train.plot import Panel, Series, panels, save_png

MODES = {"fast": {},
         "reference": {"precision": "fp32", "cuda_graphs": False, "slot_overlay": False}}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        for i in range(torch.cuda.device_count()):
            torch.cuda.synchronize(i)


def observed_engine(model: WorldModel, device: torch.device, frames: int,
                    split: list[torch.device]) -> tuple[RolloutEngine, tuple[float, float, float]]:
    """An engine that has observed ``frames`` views of the analytic room from a small circle."""
    engine = RolloutEngine(model, LatentMemory(model.latent_channels, device=device),
                           CameraRig.create().cam_to_base,
                           [(make_critic(n), w) for n, w in CRITICS], split_devices=split)
    room, K = Room(), pinhole(64.0, 128, 128)
    x = y = yaw = 0.0
    for i in range(frames):
        yaw = 2 * math.pi * i / frames
        x, y = 0.6 * math.cos(yaw), 0.6 * math.sin(yaw)
        base = planar_pose(x, y, yaw)
        cam = torch.from_numpy(base) @ engine.cam_to_base
        depth = ray_depth(cam[None], K, (128, 128), room)[0]
        shade = (255 * torch.exp(-depth / 4.0)).clamp(0, 255).to(torch.uint8)
        engine.observe(shade[..., None].expand(-1, -1, 3).contiguous(), depth, K,
                       torch.from_numpy(base), float(i))
    return engine, (x, y, yaw)


def time_score(engine: RolloutEngine, start, paths: int, horizon: int, repeats: int) -> dict:
    x, y, yaw = start
    fan = arc_fan(paths, length=engine.config.step_length * horizon, poses=horizon + 1,
                  start_xy=(x, y), start_yaw=yaw)
    goal = Goal(pose=torch.from_numpy(planar_pose(x + 3.0, y, 0.0)))
    device = engine.device
    engine.score(fan, horizon, goal)  # warm-up: graphs are captured here
    _sync(device)
    if device.type == "cuda":
        for i in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(i)
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        engine.score(fan, horizon, goal)
        _sync(device)
        times.append(time.perf_counter() - t0)
    peak = (sum(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count()))
            if device.type == "cuda" else float("nan"))
    return {"paths": paths, "horizon": horizon, "ms": 1e3 * statistics.median(times),
            "min_ms": 1e3 * min(times), "peak_mib": peak / 2**20}


def time_reads(device: torch.device, banks: list[int], views: int, repeats: int,
               channels: int) -> list[dict]:
    room, out = Room(), []
    K = pinhole(8.0, 16, 16)
    yaws = torch.linspace(0, 2 * math.pi, views + 1)[:-1]
    poses = torch.stack([torch.from_numpy(planar_pose(0.3 * math.cos(a), 0.3 * math.sin(a), a))
                         for a in yaws.tolist()]) @ CameraRig.create().cam_to_base
    for n in banks:
        pts, voxel = bank_points(n, room)
        mem = LatentMemory(channels, voxel_size=voxel, capacity=max(n * 2, 1000), device=device,
                           merge_radius=0.0)
        lat = torch.randn(pts.shape[0], channels, generator=torch.Generator().manual_seed(0))
        mem.insert_points(pts.to(device), lat.to(device), 0.0)
        mem.read(poses, K, (16, 16))
        _sync(device)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            mem.read(poses, K, (16, 16))
            _sync(device)
            times.append(time.perf_counter() - t0)
        out.append({"voxels": len(mem), "views": views, "backend": mem.backend,
                    "ms": 1e3 * statistics.median(times)})
        print(f"  read {len(mem):>9,} voxels into {views} views ({mem.backend}): "
              f"{out[-1]['ms']:.2f} ms", flush=True)
    return out


def plot(results: dict, path: Path) -> None:
    colors = {"fast": (30, 110, 200), "reference": (200, 80, 40), "split": (40, 160, 80)}
    by_paths = [Series(f"{m}, horizon 8", [math.log2(r["paths"]) for r in rows],
                       [r["ms"] for r in rows], colors[m])
                for m, rows in results["paths"].items()]
    if results.get("split"):
        by_paths.append(Series("fast, split over all GPUs",
                               [math.log2(r["paths"]) for r in results["split"]],
                               [r["ms"] for r in results["split"]], colors["split"], True))
    charts = [Panel("ScorePaths engine latency vs paths (x: log2 paths)", by_paths, "ms")]
    if any(math.isfinite(r["peak_mib"]) for rows in results["paths"].values() for r in rows):
        charts.append(Panel("peak GPU memory vs paths (x: log2 paths)", [
            Series(m, [math.log2(r["paths"]) for r in rows], [r["peak_mib"] for r in rows],
                   colors[m]) for m, rows in results["paths"].items()], "MiB"))
    img = panels(charts, x_label="log2(paths)", title=results["title"])
    if results["horizon"]:
        series = []
        palette = [(30, 110, 200), (200, 80, 40), (40, 160, 80), (120, 60, 160)]
        for i, (label, rows) in enumerate(results["horizon"].items()):
            series.append(Series(label, [r["horizon"] for r in rows], [r["ms"] for r in rows],
                                 palette[i % 4]))
        img2 = panels([Panel("latency vs horizon (x: imagined steps)", series, "ms")],
                      x_label="horizon")
        img = np.concatenate([img, img2], axis=0)
    if results["reads"]:
        reads = results["reads"]
        img3 = panels([Panel(f"memory read into {reads[0]['views']} views vs bank size "
                             "(x: log10 voxels)",
                             [Series(reads[0]["backend"], [math.log10(r["voxels"]) for r in reads],
                                     [r["ms"] for r in reads], (30, 110, 200))], "ms")],
                      x_label="log10(voxels)")
        img = np.concatenate([img, img3], axis=0)
    save_png(path, img)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--paths", type=int, nargs="+", default=[1, 4, 16, 64, 256, 1024, 4096])
    p.add_argument("--horizons", type=int, nargs="+", default=[4, 8, 16])
    p.add_argument("--horizon-paths", type=int, nargs="+", default=[64, 256])
    p.add_argument("--split-paths", type=int, nargs="+", default=[256, 1024, 4096])
    p.add_argument("--banks", type=int, nargs="+",
                   default=[10_000, 100_000, 1_000_000, 4_000_000])
    p.add_argument("--views", type=int, default=512)
    p.add_argument("--modes", nargs="+", choices=tuple(MODES), default=list(MODES))
    p.add_argument("--memory-frames", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("out/scaling"))
    args = p.parse_args(argv)
    device = torch.device(args.device)
    model = WorldModel.default(device)
    engine, start = observed_engine(model, device, args.memory_frames, [])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    title = (f"{name}, {torch.cuda.device_count() if device.type == 'cuda' else 1} device(s), "
             f"bank {len(engine.memory)} voxels")
    print(f"scaling on {title}", flush=True)
    results: dict = {"title": title, "paths": {}, "horizon": {}, "split": [], "reads": []}
    for mode in args.modes:
        engine.config = EngineConfig(**MODES[mode])
        rows = results["paths"].setdefault(mode, [])
        for n in args.paths:
            rows.append(time_score(engine, start, n, 8, args.repeats))
            print(f"  {mode:9s} {n:>5} paths x 8: {rows[-1]['ms']:8.1f} ms, peak "
                  f"{rows[-1]['peak_mib']:.0f} MiB", flush=True)
        for n in args.horizon_paths:
            label = f"{mode}, {n} paths"
            for t in args.horizons:
                r = time_score(engine, start, n, t, args.repeats)
                results["horizon"].setdefault(label, []).append(r)
                print(f"  {mode:9s} {n:>5} paths x {t:>2}: {r['ms']:8.1f} ms", flush=True)
    if device.type == "cuda" and torch.cuda.device_count() > 1:
        others = [torch.device("cuda", i) for i in range(torch.cuda.device_count())
                  if i != (device.index or 0)]
        split_engine, start2 = observed_engine(model, device, args.memory_frames, others)
        split_engine.config = EngineConfig(min_paths_per_device=1)  # split every size shown
        one = {r["paths"]: r["ms"] for r in results["paths"].get("fast", [])}
        for n in args.split_paths:
            r = time_score(split_engine, start2, n, 8, args.repeats)
            results["split"].append(r)
            ratio = one.get(n, float("nan")) / r["ms"]
            print(f"  split over {1 + len(others)} GPUs {n:>5} paths x 8: {r['ms']:8.1f} ms "
                  f"({ratio:.2f}x one GPU)", flush=True)
    if args.banks:
        results["reads"] = time_reads(device, args.banks, args.views, args.repeats,
                                      model.latent_channels)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling.json").write_text(json.dumps(results, indent=1))
    plot(results, args.out / "scaling.png")
    print(f"wrote {args.out / 'scaling.json'} and {args.out / 'scaling.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
