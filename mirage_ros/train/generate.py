"""Generate a simulated RGB-D dataset: ``python -m mirage_ros.train.generate --out DIR ...``.

Each scene seed gives one shard, ``DIR/<split>/scene-<seed>.npz``, holding that scene's
episodes (robot tours, see :mod:`mirage_ros.sim.tour`); the split comes from the seed
(:func:`mirage_ros.train.episodes.split_of_seed`). ``DIR/index.json`` is written at the end.
Scenes are independent, so ``--workers N`` renders N of them at once, each worker with its own
OpenGL context (EGL: Mesa on a CPU, the NVIDIA driver on a GPU machine; nothing here assumes
either). ``--resume`` skips scenes whose shard already exists. The run ends by printing the
frames per second of the whole generation (tours, rendering, compression, writing).

``--style NAME`` gives every region of every procedural scene one style (``aisles``,
``pillar_hall``, ``cluttered``, or one of the furnished-room styles; see
:data:`mirage_ros.sim.procedural.STYLES`), e.g. to make a test set of one kind of scene.
``--camera-height-range LO,HI`` and ``--camera-pitch-range LO,HI`` (degrees, down positive)
give each scene seed its own camera height and pitch, drawn from the seed alone, so a robot's
camera is not always where the fixed ``--camera-height`` / ``--camera-pitch-deg`` put it. The
values drawn and the scene's styles are in each episode's metadata. A range that starts with a
minus sign needs the ``=`` form: ``--camera-pitch-range=-5,20``. ``--open-roof P`` leaves the
ceiling off each procedural scene with probability P (open to the sky, as many user scenes
are).

It lives in ``train``, not ``sim``, because it writes the training data format
(:mod:`mirage_ros.train.episodes`): ``train`` may drive the simulator, the simulator never
imports ``train`` (the layers in ``pyproject.toml``).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mirage_ros.geometry import CameraRig
from mirage_ros.sim.motion import Limits
from mirage_ros.sim.procedural import STYLES
from mirage_ros.sim.render import Renderer
from mirage_ros.sim.scene import scene_from_config
from mirage_ros.sim.tour import tour
from mirage_ros.sim.truth import render_path
from mirage_ros.train.episodes import Episode, split_of_seed, write_index, write_shard

__all__ = ["GenerateConfig", "camera_of_seed", "generate", "generate_scene_shard", "main"]

# Mixed into a scene seed to draw its camera: a stream of its own, apart from scene and tours.
_CAMERA_STREAM = 0xCA3E7A


@dataclass(frozen=True)
class GenerateConfig:
    out: str
    scenes: int = 10
    first_seed: int = 0
    episodes_per_scene: int = 1
    frames_per_episode: int = 200
    frame_dt: float = 0.2
    width: int = 128
    height: int = 128
    hfov_deg: float = 90.0
    camera_height: float = 0.5
    camera_pitch_deg: float = 10.0
    # (low, high): each seed draws its own height (m) / pitch (degrees) in it; None: fixed
    camera_height_range: tuple[float, float] | None = None
    camera_pitch_range: tuple[float, float] | None = None
    style: str | None = None
    # Chance (0-1) that a procedural scene has no ceiling (sim.procedural.generate_scene).
    open_roof: float = 0.0
    robot_radius: float = 0.25
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    shadows: bool = False
    mjcf: str = ""
    workers: int = 1
    resume: bool = False

    def shard_path(self, seed: int) -> Path:
        return Path(self.out) / split_of_seed(seed, self.split_fractions) / f"scene-{seed:06d}.npz"


@dataclass(frozen=True)
class ShardResult:
    seed: int
    frames: int
    render_seconds: float
    skipped: bool


def camera_of_seed(config: GenerateConfig, seed: int) -> tuple[float, float]:
    """``(height m, pitch deg)`` of the camera in scene ``seed``: the fixed values, or draws
    from the configured ranges that depend on the seed only."""
    height, pitch = config.camera_height, config.camera_pitch_deg
    if config.camera_height_range is None and config.camera_pitch_range is None:
        return height, pitch
    rng = np.random.default_rng(np.random.SeedSequence([_CAMERA_STREAM, seed]))
    draw_h, draw_p = rng.random(), rng.random()  # both drawn always: ranges stay independent
    if config.camera_height_range is not None:
        lo, hi = config.camera_height_range
        height = round(lo + (hi - lo) * draw_h, 4)
    if config.camera_pitch_range is not None:
        lo, hi = config.camera_pitch_range
        pitch = round(lo + (hi - lo) * draw_p, 3)
    return height, pitch


def generate_scene_shard(config: GenerateConfig, seed: int) -> ShardResult:
    """Render every episode of scene ``seed`` and write its shard."""
    path = config.shard_path(seed)
    frames = config.episodes_per_scene * config.frames_per_episode
    if config.resume and path.exists():
        return ShardResult(seed, frames, 0.0, skipped=True)
    scene = scene_from_config(seed, config.mjcf, config.style or None, config.open_roof)
    styles = scene.styles
    camera_height, camera_pitch = camera_of_seed(config, seed)
    rig = CameraRig.create(config.width, config.height, config.hfov_deg, camera_height,
                           camera_pitch)
    split = split_of_seed(seed, config.split_fractions)
    episodes = []
    render_seconds = 0.0
    with Renderer(scene, rig.camera, shadows=config.shadows) as renderer:
        for k in range(config.episodes_per_scene):
            # Each episode has its own tour seed and its own pace: slow and careful or brisk.
            tour_seed = int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
            rng = np.random.default_rng(tour_seed)
            limits = Limits(max_speed=float(rng.uniform(0.3, 0.6)),
                            max_yaw_rate=float(rng.uniform(0.6, 1.0)))
            trajectory = tour(scene, config.frames_per_episode, dt=config.frame_dt,
                              seed=tour_seed, robot_radius=config.robot_radius, limits=limits)
            start = time.perf_counter()
            frames_k = render_path(renderer, rig, trajectory.base_to_map())
            render_seconds += time.perf_counter() - start
            episodes.append(Episode(
                frames_k.rgb, frames_k.depth, frames_k.cam_to_map, frames_k.base_to_map,
                frames_k.K, trajectory.stamps,
                {"scene_seed": seed, "scene": scene.name, "episode": k, "tour_seed": tour_seed,
                 "split": split, "source": "mirage_ros.sim", "frame_dt": config.frame_dt,
                 "camera_height": camera_height, "camera_pitch_deg": camera_pitch,
                 "scene_styles": list(styles), "style": config.style,
                 "open_roof": scene.open_roof,
                 "robot_radius": config.robot_radius, "max_speed": limits.max_speed,
                 "max_yaw_rate": limits.max_yaw_rate}))
    write_shard(path, episodes)
    return ShardResult(seed, frames, render_seconds, skipped=False)


def _work(job: tuple[GenerateConfig, int]) -> ShardResult:
    return generate_scene_shard(*job)


def generate(config: GenerateConfig, progress: bool = True) -> dict[str, float]:
    """Generate the whole dataset; returns timing: frames, seconds, fps, render_fps."""
    seeds = range(config.first_seed, config.first_seed + config.scenes)
    jobs = [(config, seed) for seed in seeds]
    total = config.scenes * config.episodes_per_scene * config.frames_per_episode
    start = time.perf_counter()
    made, render_seconds = 0, 0.0
    bar = tqdm(total=total, unit="frame", disable=not progress, smoothing=0.1)
    if config.workers > 1:
        # spawn: every worker starts clean and creates its own OpenGL context.
        context = multiprocessing.get_context("spawn")
        with context.Pool(config.workers) as pool:
            results = list(_consume(pool.imap_unordered(_work, jobs), bar))
    else:
        results = list(_consume(map(_work, jobs), bar))
    bar.close()
    for result in results:
        if not result.skipped:
            made += result.frames
            render_seconds += result.render_seconds
    seconds = time.perf_counter() - start
    timing = {
        "frames": float(made),
        "seconds": seconds,
        "fps": made / seconds if seconds > 0 else math.nan,
        "render_fps": made / render_seconds if render_seconds > 0 else math.nan,
    }
    write_index(config.out, {"generator": "mirage_ros.train.generate",
                             "config": _jsonable(asdict(config)),
                             "timing": timing})
    return timing


def _consume(results: Iterable[ShardResult], bar: tqdm) -> Iterator[ShardResult]:
    for result in results:
        bar.update(result.frames)
        yield result


def _jsonable(config: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


def _range(text: str) -> tuple[float, float]:
    parts = tuple(float(v) for v in text.split(","))
    if len(parts) != 2 or not parts[0] <= parts[1]:
        raise argparse.ArgumentTypeError("expected LOW,HIGH with LOW <= HIGH")
    return parts  # type: ignore[return-value]


def _fractions(text: str) -> tuple[float, float, float]:
    parts = tuple(float(v) for v in text.split(","))
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("expected three comma-separated fractions")
    return parts  # type: ignore[return-value]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mirage_ros.train.generate",
        description="Render robot tours through procedural indoor scenes into episode shards.")
    parser.add_argument("--out", required=True, help="dataset folder")
    parser.add_argument("--scenes", type=int, default=10, help="number of scene seeds")
    parser.add_argument("--first-seed", type=int, default=0, help="first scene seed")
    parser.add_argument("--episodes-per-scene", type=int, default=1)
    parser.add_argument("--frames-per-episode", type=int, default=200)
    parser.add_argument("--frame-dt", type=float, default=0.2, help="seconds between frames")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--hfov-deg", type=float, default=90.0)
    parser.add_argument("--camera-height", type=float, default=0.5, help="metres above base")
    parser.add_argument("--camera-pitch-deg", type=float, default=10.0, help="down positive")
    parser.add_argument("--camera-height-range", type=_range, default=None, metavar="LO,HI",
                        help="draw each scene's camera height (m) from this range, per seed "
                             "(e.g. 0.25,1.0); overrides --camera-height")
    parser.add_argument("--camera-pitch-range", type=_range, default=None, metavar="LO,HI",
                        help="draw each scene's camera pitch (degrees, down positive) from this "
                             "range, per seed (e.g. --camera-pitch-range=-5,20); overrides "
                             "--camera-pitch-deg")
    parser.add_argument("--style", choices=STYLES, default=None,
                        help="give every region of every scene this style (default: mixed)")
    parser.add_argument("--open-roof", type=float, default=0.0, metavar="P",
                        help="chance that a procedural scene has no ceiling (default 0)")
    parser.add_argument("--robot-radius", type=float, default=0.25)
    parser.add_argument("--split-fractions", type=_fractions, default=(0.8, 0.1, 0.1),
                        help="train,validation,test fractions of scene seeds")
    parser.add_argument("--shadows", action="store_true",
                        help="render shadows (about 3x slower on a CPU; cheap on a GPU)")
    parser.add_argument("--mjcf", default="",
                        help="use this MJCF scene for every seed (seeds then vary the tours)")
    parser.add_argument("--workers", type=int, default=1, help="scenes rendered in parallel")
    parser.add_argument("--resume", action="store_true", help="skip scenes already written")
    args = parser.parse_args(argv)
    if args.scenes < 1 or args.episodes_per_scene < 1 or args.frames_per_episode < 1:
        parser.error("--scenes, --episodes-per-scene and --frames-per-episode must be >= 1")
    if not 0.0 <= args.open_roof <= 1.0:
        parser.error(f"--open-roof is a probability in [0, 1], got {args.open_roof}")
    config = GenerateConfig(**vars(args))
    timing = generate(config)
    print(f"generated {int(timing['frames'])} frames in {timing['seconds']:.1f} s: "
          f"{timing['fps']:.1f} frames/s overall, {timing['render_fps']:.1f} frames/s "
          f"rendering only ({config.workers} worker(s)); index: {Path(config.out) / 'index.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
