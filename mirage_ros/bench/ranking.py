"""Do the critics rank candidate paths like the simulator's truth? Collisions and clearance.

    python -m mirage_ros.bench.ranking [--seeds 7 11 20 32 42 43 49] [--decisions 6]
        [--depth sensor|head|both] [--paths 9] [--device cpu]

For each held-out scene the robot drives a scripted tour; ``RolloutEngine.observe`` writes
every other frame into the memory (sensor depth, or the latent depth head's estimate with
``--depth head``). At ``--decisions`` points along the tour a fan of arcs from the robot's pose
is scored with the node's default critics and compared with the exact clearance from the scene
geometry: the share of (colliding, free) pairs where the colliding arc scores lower, the
clearance critic's own pair accuracy, and Spearman's rho between the predicted and the true
clearance of each fan. Same engine and critics as the node; no ROS.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mirage_ros.geometry import CameraRig
from mirage_ros.memory import LatentMemory
from mirage_ros.model import WorldModel
from mirage_ros.rollout import make_critic
from mirage_ros.rollout.engine import RolloutEngine

CRITICS = (("goal_pose", 1.0), ("goal_image", 1.0), ("clearance", 2.0), ("exploration", 0.0),
           ("path_length", 0.1), ("path_turning", 0.1))


def _ordered(high: float, low: float) -> float:
    """1 when ``high > low``, 0.5 on a tie, else 0."""
    return 1.0 if high > low else 0.5 if high == low else 0.0


def ranks(a: np.ndarray) -> np.ndarray:
    """Ranks with ties sharing their average rank (clearances beyond range tie at the cap)."""
    order = np.argsort(a, kind="stable")
    ranks = np.empty(len(a))
    ranks[order] = np.arange(len(a), dtype=np.float64)
    for value in np.unique(a):
        tied = a == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = ranks(np.asarray(a, np.float64)), ranks(np.asarray(b, np.float64))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def run_scene(model: WorldModel, seed: int, decisions: int, paths: int, use_depth: bool,
              robot_radius: float = 0.25) -> dict[str, float]:
    from mirage_ros.sim.render import Renderer
    from mirage_ros.sim.scene import procedural_scene
    from mirage_ros.sim.tour import tour
    from mirage_ros.sim.truth import candidate_fan, fan_truth

    scene = procedural_scene(seed)
    rig = CameraRig.create()
    frames = 24 + 8 * decisions
    traj = tour(scene, frames, dt=0.5, seed=seed)
    device = next(model.parameters()).device
    engine = RolloutEngine(model, LatentMemory(channels=model.latent_channels, device=device),
                           rig.cam_to_base, [(make_critic(n), w) for n, w in CRITICS])
    clearance = engine.critics[2][0]
    good = pairs = clear_good = geometry_good = 0.0
    rhos, seconds = [], []
    with Renderer(scene, rig.camera) as renderer:
        for i, (base, stamp) in enumerate(zip(traj.base_to_map(), traj.stamps, strict=True)):
            if i % 2 == 0:
                rgb, depth = renderer.render(rig.cam_to_map(base))
                engine.observe(torch.from_numpy(rgb),
                               torch.from_numpy(depth) if use_depth else None,
                               rig.camera.K, torch.from_numpy(base), float(stamp))
            if i < 24 or (i - 24) % 8 != 0:
                continue
            x, y, yaw = traj.states[i]
            fan = candidate_fan(x, y, yaw, paths, length=2.0, poses=9, max_curvature=1.2)
            t0 = time.perf_counter()
            out = engine.score(fan, 8)
            seconds.append(time.perf_counter() - t0)
            truth = fan_truth(scene, fan, robot_radius)
            names = out.table.names
            scores = out.table.scores
            costs = out.table.costs[:, names.index("clearance")]
            # the geometry-only planner's score: the same path-length and turning terms
            geometry = -(0.1 * out.table.costs[:, names.index("path_length")]
                         + 0.1 * out.table.costs[:, names.index("path_turning")])
            for a in range(paths):
                for b in range(paths):
                    if truth.collides[a] and not truth.collides[b]:
                        pairs += 1  # ties count half: a coin flip would
                        good += _ordered(scores[b], scores[a])
                        clear_good += _ordered(costs[a], costs[b])
                        geometry_good += _ordered(geometry[b], geometry[a])
            predicted = clearance.clearance(out.batch).numpy()
            rhos.append(spearman(np.minimum(predicted, 5.0), truth.min_clearance))
    return {"good": good, "pairs": pairs, "clear_good": clear_good, "geometry": geometry_good,
            "rho": float(np.nanmean(rhos)) if rhos else float("nan"),
            "seconds": float(np.median(seconds)) if seconds else float("nan")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 20, 32, 42, 43, 49],
                   help="held out: train.episodes.split_of_seed gives 'test' for the defaults")
    p.add_argument("--decisions", type=int, default=6)
    p.add_argument("--paths", type=int, default=9)
    p.add_argument("--depth", choices=("sensor", "head", "both"), default="both")
    p.add_argument("--device", default="cpu")
    p.add_argument("--checkpoint", help="default: the weights shipped in the package")
    args = p.parse_args(argv)
    model = (WorldModel.load(args.checkpoint, args.device) if args.checkpoint
             else WorldModel.default(args.device))
    modes = {"sensor": [True], "head": [False], "both": [True, False]}[args.depth]
    for use_depth in modes:
        label = "sensor depth" if use_depth else "depth head (no depth camera)"
        total = {"good": 0.0, "pairs": 0, "clear_good": 0.0, "geometry": 0.0}
        rhos = []
        for seed in args.seeds:
            r = run_scene(model, seed, args.decisions, args.paths, use_depth)
            for k in total:
                total[k] += r[k]
            rhos.append(r["rho"])
            print(f"{label}, seed {seed}: of {r['pairs']} (colliding, free) pairs, "
                  f"{r['good']:g} ordered by the score, {r['clear_good']:g} by the clearance "
                  f"cost, {r['geometry']:g} by geometry only; clearance Spearman rho "
                  f"{r['rho']:.2f}; score {r['seconds']:.2f} s", flush=True)
        n = max(total["pairs"], 1)
        print(f"{label}: {total['pairs']} (colliding, free) pairs ordered correctly: score "
              f"{total['good'] / n:.2f}, clearance alone {total['clear_good'] / n:.2f}, "
              f"geometry only {total['geometry'] / n:.2f} (ties count half); mean Spearman "
              f"rho {np.nanmean(rhos):.2f}; {len(args.seeds)} scenes x {args.decisions} "
              "decisions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
