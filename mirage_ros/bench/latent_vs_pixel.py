"""Latent memory vs the pixel-space baseline, in one process on the same inputs.

    python -m mirage_ros.bench.latent_vs_pixel [--device cpu|cuda] [--size 128 [256 ...]]
        [--paths 16] [--steps 8] [--loops 4] [--frames-per-loop 64] [--sampler-steps 2]
        [--repeats 3] [--cloud both|bounded|unbounded]

Both memories see the frames of ``bench.memory``'s revisiting trajectory (a camera circling the
synthetic room ``loops`` times, 1 cm of pose noise per loop; RGB is a fixed colour field on the
room's surfaces, depth is ray-cast, so no MuJoCo is needed): the latent memory through
``RolloutEngine.observe`` (encode, fuse), the RGB point clouds of ``bench.pixel_memory`` by
lifting every pixel. Then the same fan of candidate arcs from the last frame is imagined with
the same model, start latent, camera poses and noise seed, ``steps`` steps ahead:

* latent: ``RolloutEngine.imagine`` (the product loop): memory read, conditioning, DiT, depth
  head (latent cells), overlay write;
* pixel: ``imagine_paths_pixel``: render the cloud, encode the render, the same conditioning
  and DiT, decode, depth head (pixels), lift; for a bounded cloud (voxelised like the memory)
  and an unbounded one (every pixel appended, as Spatia / Voyager / GEN3C keep it).

Per imagined step (one batched step of all paths) it prints the phases (medians of
``repeats`` rollouts after a warm-up, the loops taking turns; on CUDA synchronised around every
phase, and the totals from separate rollouts without those synchronisations), the total, the
memory path (everything but the conditioning and the DiT, which both share), the ratios
pixel / latent, and the cache bytes after the trajectory and after the rollout. The last line
compares with the unbounded cloud (the bounded one when only it runs):

    latent vs pixel: <x>x faster per imagined step, <m>x faster memory path, <y>x smaller cache
    after <k> steps

where k is the number of trajectory frames and the cache is what each memory holds after them.
Sizes other than 128 run the shipped weights on another grid (see ``model_for_size``): timings
only, the imagined content is not validated there.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch

from mirage_ros.bench.memory import _fmt_bytes
from mirage_ros.bench.pixel_imagination import imagine_paths_pixel, model_for_size
from mirage_ros.bench.pixel_memory import PixelCloud, room_frames
from mirage_ros.memory import LatentMemory
from mirage_ros.memory.synthetic import circle_trajectory, look_pose, pinhole
from mirage_ros.model import WorldModel
from mirage_ros.rollout import arc_fan
from mirage_ros.rollout.engine import EngineConfig, RolloutEngine

HEIGHT, PITCH_DEG = 1.0, -15.0  # circle_trajectory's camera: 1 m up, 15 degrees down
SHARED = ("conditioning", "DiT sampling")  # the denoiser both loops share
LATENT_PHASES = ("memory read", "conditioning", "DiT sampling", "depth head", "overlay write")
PIXEL_PHASES = ("render", "encode", "conditioning", "DiT sampling", "decode", "depth head",
                "lift")
ROWS = (  # label, latent phase, pixel phase
    ("memory read / render", "memory read", "render"),
    ("encode render (+ depth, mask to grid)", None, "encode"),
    ("conditioning (rays)", "conditioning", "conditioning"),
    ("DiT sampling", "DiT sampling", "DiT sampling"),
    ("decode latent to RGB", None, "decode"),
    ("depth head (cells / pixels)", "depth head", "depth head"),
    ("overlay write / lift", "overlay write", "lift"),
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def camera_mount() -> torch.Tensor:
    """cam_to_base of ``circle_trajectory``'s camera on a ground robot heading along +x."""
    p = math.radians(PITCH_DEG)
    return look_pose([0.0, 0.0, HEIGHT], [math.cos(p), 0.0, math.sin(p)])


class Setup:
    """Both memories after the trajectory, the start of imagination and the candidate paths."""

    def __init__(self, model: WorldModel, device: torch.device, size: int, args) -> None:
        self.model, self.device, self.size = model, device, size
        memory = LatentMemory(model.latent_channels, device=device)
        self.engine = RolloutEngine(model, memory, camera_mount(), [],
                                    EngineConfig(sampler_steps=args.sampler_steps,
                                                 precision=args.precision))
        if self.engine.image_hw != (size, size):
            raise ValueError(f"the model's images are {self.engine.image_hw}, not {size}")
        self.K_px = pinhole(size / 2, size, size)  # 90 degree field of view, like bench.memory
        self.frames = circle_trajectory(args.frames_per_loop, args.loops, jitter=0.01, seed=1)
        mount_inv = torch.linalg.inv(self.engine.cam_to_base)
        kinds = {"both": ("bounded", "unbounded")}.get(args.cloud, (args.cloud,))
        self.clouds = {k: PixelCloud.like(self.engine.memory, bounded=(k == "bounded"))
                       for k in kinds}
        self.observe_s = {"latent": 0.0, **{k: 0.0 for k in kinds}}
        batch = args.frames_per_loop
        for start in range(0, len(self.frames), batch):
            cams = self.frames[start:start + batch]
            rgb, depth = room_frames(cams, self.K_px, (size, size))
            for i in range(cams.shape[0]):  # the node observes one frame at a time
                t0 = time.perf_counter()
                self.engine.observe(rgb[i], depth[i], self.K_px, cams[i] @ mount_inv,
                                    float(start + i))
                _sync(device)
                self.observe_s["latent"] += time.perf_counter() - t0
            rgb_d = rgb.permute(0, 3, 1, 2).to(device)
            depth_d = depth.to(device)
            stamps = torch.arange(start, start + cams.shape[0], dtype=torch.float64)
            for kind, cloud in self.clouds.items():
                t0 = time.perf_counter()
                if cloud.bounded:  # fused frame by frame, like the memory
                    for i in range(cams.shape[0]):
                        cloud.write(rgb_d[i:i + 1], depth_d[i:i + 1], self.K_px,
                                    cams[i:i + 1], stamps[i])
                else:  # appending in batches gives the same cloud, faster
                    cloud.write(rgb_d, depth_d, self.K_px, cams, stamps)
                _sync(device)
                self.observe_s[kind] += time.perf_counter() - t0
        self.k = len(self.frames)
        last = self.engine.last_view
        self.start_latent, self.K_latent = last.latent, last.K_latent
        base = (last.cam_to_map @ mount_inv).numpy()
        yaw = math.atan2(base[1, 0], base[0, 0])
        fan = arc_fan(args.paths, length=self.engine.config.step_length * args.steps,
                      poses=args.steps + 1, start_xy=(base[0, 3], base[1, 3]), start_yaw=yaw)
        self.cams = self.engine.camera_poses(fan, args.steps, last.cam_to_map)[1]
        self.seed = self.engine.config.seed

    def run_latent(self, timings=None):
        return self.engine.imagine(self.cams, self.start_latent, self.K_latent,
                                   seed=self.seed, timings=timings)

    def run_pixel(self, kind: str, timings=None):
        return imagine_paths_pixel(self.model, self.clouds[kind], self.start_latent,
                                   self.K_latent, self.K_px, self.cams,
                                   sampler_steps=self.engine.config.sampler_steps,
                                   seed=self.seed, sampler=self.engine.sampler(),
                                   timings=timings)

    def latent_cache(self, imagined) -> tuple[int, int]:
        """Bytes of the bank, and of the bank plus the rollout's overlay. The loop keeps its
        overlay to itself; writing the imagined frames again, in the same order, rebuilds it
        exactly (writes are deterministic)."""
        bank = self.engine.memory
        overlay = bank.overlay(self.cams.shape[0])
        for s in range(1, self.cams.shape[1]):
            overlay.write(imagined.latents[:, s - 1], imagined.depth[:, s - 1], self.K_latent,
                          self.cams[:, s], float(s))
        return bank.nbytes, bank.nbytes + overlay.nbytes


def measure(setup: Setup, names: list[str], repeats: int, steps: int):
    """Per name: (median seconds per step of each phase, median total per step, last result).

    Rollouts of the loops alternate (latent, pixel, latent, ...) so that load from other work
    on the machine falls on all of them alike."""
    runs = {n: (setup.run_latent if n == "latent" else
                (lambda timings=None, n=n: setup.run_pixel(n, timings))) for n in names}
    cuda = setup.device.type == "cuda"
    results = {n: run() for n, run in runs.items()}  # warm-up (allocator, CUDA autotuning)
    phases: dict[str, list] = {n: [] for n in names}
    totals: dict[str, list] = {n: [] for n in names}
    for _ in range(repeats):
        for n, run in runs.items():
            timings: dict[str, float] = {}
            _sync(setup.device)
            t0 = time.perf_counter()
            results[n] = run(timings)
            _sync(setup.device)
            timed_total = time.perf_counter() - t0
            timings["other"] = max(0.0, timed_total - sum(timings.values()))
            phases[n].append(timings)
            if cuda:  # the total without the per-phase synchronisations
                t0 = time.perf_counter()
                run()
                _sync(setup.device)
                totals[n].append(time.perf_counter() - t0)
            else:
                totals[n].append(timed_total)
    return {n: ({k: statistics.median(p.get(k, 0.0) for p in phases[n]) / steps
                 for k in phases[n][0]}, statistics.median(totals[n]) / steps, results[n])
            for n in names}


def _ratio(a: float, b: float) -> str:
    return f"{b / a:.1f}x" if a > 0 else "-"


def bench_size(model: WorldModel, device: torch.device, size: int, args) -> None:
    model = model_for_size(model, size)
    h = size // model.downsampling
    t0 = time.perf_counter()
    setup = Setup(model, device, size, args)
    kinds = list(setup.clouds)
    print(f"\n== {size}x{size} images, latent {model.latent_channels}x{h}x{h}, {args.paths} paths "
          f"x {args.steps} steps, {args.sampler_steps} sampler steps, device {device}"
          f"{f' ({torch.get_num_threads()} threads)' if device.type == 'cpu' else ''}")
    print(f"trajectory: {setup.k} frames ({args.loops} loops x {args.frames_per_loop}, 1 cm pose "
          f"noise) of the synthetic room, built in {time.perf_counter() - t0:.1f} s; observe "
          "per frame: " + ", ".join(
              f"{k} {1e3 * v / setup.k:.1f} ms" for k, v in setup.observe_s.items())
          + " (latent: encode + fuse; pixel: lift + fuse / append)")
    stats = measure(setup, ["latent", *kinds], args.repeats, args.steps)

    names = ["latent", *[f"pixel {k}" for k in kinds]]
    head = f"  {'ms per imagined step (all paths)':40s}" + "".join(f"{n:>17s}" for n in names)
    head += "".join(f"{'ratio ' + k:>17s}" for k in kinds)
    print(f"per imagined step, median of {args.repeats} after a warm-up:")
    print(head)

    def row(label, values):
        lat = values[0]
        cells = "".join(f"{'-' if v is None else f'{1e3 * v:.1f}':>17s}" for v in values)
        ratios = "".join(f"{(_ratio(lat, v) if (lat and v is not None) else '-'):>17s}"
                         for v in values[1:])
        print(f"  {label:40s}{cells}{ratios}")

    for label, lp, pp in ROWS:
        row(label, [stats["latent"][0].get(lp) if lp else None,
                    *[stats[k][0].get(pp) for k in kinds]])
    row("other (untimed: stacking, Python)", [stats[n][0]["other"] for n in ["latent", *kinds]])
    totals = {n: stats[n][1] for n in ["latent", *kinds]}
    memory_path = {n: totals[n] - sum(stats[n][0].get(p, 0.0) for p in SHARED) for n in totals}
    row("total per step", [totals[n] for n in ["latent", *kinds]])
    row("memory path (total - conditioning - DiT)", [memory_path[n] for n in ["latent", *kinds]])
    if device.type == "cuda":
        print("  (totals from rollouts without per-phase synchronisation; memory path = that "
              "total minus the shared phases)")

    lat_imag = stats["latent"][2]
    bank_bytes, lat_total = setup.latent_cache(lat_imag)
    print(f"cache after {setup.k} trajectory frames: latent memory {_fmt_bytes(bank_bytes)} "
          f"({len(setup.engine.memory)} voxels)" + "".join(
              f"; {k} cloud {_fmt_bytes(setup.clouds[k].nbytes)} ({len(setup.clouds[k])} "
              f"points, {setup.clouds[k].nbytes / bank_bytes:.1f}x)" for k in kinds))
    print(f"cache after the rollout (+ {args.paths} paths x {args.steps} imagined steps): latent "
          f"{_fmt_bytes(lat_total)}" + "".join(
              f"; {k} {_fmt_bytes(setup.clouds[k].nbytes + stats[k][2].clouds.nbytes)} "
              f"({(setup.clouds[k].nbytes + stats[k][2].clouds.nbytes) / lat_total:.1f}x)"
              for k in kinds))
    print(f"coverage of the conditioning: latent read {100 * float(lat_imag.coverage.mean()):.1f}"
          "% of cells" + "".join(
              f"; {k} render {100 * float(stats[k][2].pixel_coverage.mean()):.1f}% of pixels, "
              f"{100 * float(stats[k][2].mask.float().mean()):.1f}% of cells" for k in kinds))
    if len(kinds) > 1:
        print("(the last line compares with the unbounded cloud, as Spatia / Voyager / GEN3C "
              "keep it; the bounded one:)")
    order = sorted(kinds, key=lambda k: k == "unbounded")  # unbounded last
    for kind in order:
        prefix = "latent vs pixel" if kind == order[-1] else f"latent vs pixel ({kind} cloud)"
        print(f"{prefix}: {totals[kind] / totals['latent']:.1f}x faster per imagined step, "
              f"{memory_path[kind] / memory_path['latent']:.1f}x faster memory path, "
              f"{setup.clouds[kind].nbytes / bank_bytes:.1f}x smaller cache after "
              f"{setup.k} steps")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--size", type=int, nargs="+", default=[128], help="image side(s)")
    p.add_argument("--paths", type=int, default=16)
    p.add_argument("--steps", type=int, default=8, help="imagined steps (horizon)")
    p.add_argument("--loops", type=int, default=4, help="trajectory loops around the room")
    p.add_argument("--frames-per-loop", type=int, default=64)
    p.add_argument("--sampler-steps", type=int, default=2)
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="of the model calls, the same for both loops (see model.sampler)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cloud", choices=("both", "bounded", "unbounded"), default="both")
    p.add_argument("--checkpoint", help="default: the weights shipped in the package")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available here")
    torch.manual_seed(0)
    np.random.seed(0)
    model = (WorldModel.load(args.checkpoint, device) if args.checkpoint
             else WorldModel.default(device))
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    for size in args.size:
        bench_size(model, device, size, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
