"""Time imagination the way the node runs it: ``RolloutEngine.score`` on N paths x T steps.

    python -m mirage_ros.bench.imagination [--checkpoint CKPT] [--paths 16] [--horizon 8]
        [--sampler-steps 1 2] [--device cpu] [--repeats 3]

A memory is built through ``RolloutEngine.observe`` from a short simulated tour (real encoder,
true depth); then a fan of candidate arcs from the tour's end is scored with the node's default
critics: camera poses, one batched imagination (per step: one memory read of every path's next
view, one DiT call per sampler step, one depth-head call, one overlay write), the critics. Prints
the median wall time of ``score`` and of the loop's phases. Nothing is decoded (no previews).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from mirage_ros.geometry import CameraRig
from mirage_ros.memory import LatentMemory
from mirage_ros.model import WorldModel
from mirage_ros.rollout import Goal, make_critic
from mirage_ros.rollout.engine import EngineConfig, RolloutEngine

CRITICS = (("goal_pose", 1.0), ("clearance", 2.0), ("exploration", 0.0), ("path_length", 0.1),
           ("path_turning", 0.1))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _engine(model: WorldModel, device: torch.device, sampler_steps: int) -> RolloutEngine:
    memory = LatentMemory(channels=model.latent_channels, device=device)
    return RolloutEngine(model, memory, CameraRig.create().cam_to_base,
                         [(make_critic(n), w) for n, w in CRITICS],
                         EngineConfig(sampler_steps=sampler_steps))


def build_synthetic(model: WorldModel, device: torch.device, frames: int, sampler_steps: int):
    """The same engine on the analytic box room of ``memory.synthetic`` (ray-cast depth, shaded
    grey images): no MuJoCo needed, for machines without it (the GPU hosts)."""
    from mirage_ros.geometry import planar_pose
    from mirage_ros.memory.synthetic import Room, pinhole, ray_depth

    engine = _engine(model, device, sampler_steps)
    room = Room()
    K = pinhole(64.0, 128, 128)
    yaw = 0.0
    for i in range(frames):
        yaw = 2 * np.pi * i / frames
        base = planar_pose(0.6 * np.cos(yaw), 0.6 * np.sin(yaw), yaw)
        cam = torch.from_numpy(base) @ engine.cam_to_base
        depth = ray_depth(cam[None], K, (128, 128), room)[0]
        shade = (255 * torch.exp(-depth / 4.0)).clamp(0, 255).to(torch.uint8)
        engine.observe(shade[..., None].expand(-1, -1, 3).contiguous(), depth, K,
                       torch.from_numpy(base), float(i))
    return engine, (0.6 * np.cos(yaw), 0.6 * np.sin(yaw), yaw)


def build_engine(model: WorldModel, device: torch.device, frames: int, sampler_steps: int):
    """An engine whose memory holds a simulated tour; returns it with the tour's last state."""
    from mirage_ros.sim.render import Renderer
    from mirage_ros.sim.scene import procedural_scene
    from mirage_ros.sim.tour import tour

    scene = procedural_scene(3)
    rig = CameraRig.create()
    traj = tour(scene, frames, dt=0.5, seed=0)
    engine = _engine(model, device, sampler_steps)
    with Renderer(scene, rig.camera) as renderer:
        for base, stamp in zip(traj.base_to_map(), traj.stamps, strict=True):
            rgb, depth = renderer.render(rig.cam_to_map(base))
            engine.observe(torch.from_numpy(rgb), torch.from_numpy(depth), rig.camera.K,
                           torch.from_numpy(base), float(stamp))
    return engine, traj.states[-1]


def main(argv: list[str] | None = None) -> int:
    from mirage_ros.geometry import planar_pose
    from mirage_ros.rollout import arc_fan

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="default: the weights shipped in the package")
    p.add_argument("--paths", type=int, default=16)
    p.add_argument("--horizon", type=int, default=8)
    p.add_argument("--sampler-steps", type=int, nargs="+", default=[2])
    p.add_argument("--memory-frames", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--scene", choices=("sim", "synthetic"), default="sim",
                   help="sim: a MuJoCo tour (default); synthetic: an analytic room, no MuJoCo")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), nargs="+", default=["auto"],
                   help="of the DiT and depth head; several are timed side by side")
    p.add_argument("--no-graphs", action="store_true", help="no CUDA graphs (GPU only)")
    p.add_argument("--overlay", choices=("auto", "slots", "reference"), default="auto",
                   help="where imagined frames go (auto: slots on a GPU; see memory)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = (WorldModel.load(args.checkpoint, device) if args.checkpoint
             else WorldModel.default(device))
    build = build_engine if args.scene == "sim" else build_synthetic
    engine, (x, y, yaw) = build(model, device, args.memory_frames, args.sampler_steps[0])
    fan = arc_fan(args.paths, length=0.25 * args.horizon, poses=args.horizon + 1,
                  start_xy=(x, y), start_yaw=yaw)
    goal = Goal(pose=torch.from_numpy(planar_pose(x + 3.0, y, 0.0)))
    print(f"device {device} ({torch.get_num_threads()} threads), bank {len(engine.memory)} "
          f"voxels, {args.paths} paths x {args.horizon} steps, latent {engine.latent_hw}")
    runs = [(steps, prec) for steps in args.sampler_steps for prec in args.precision]
    for steps, prec in runs:
        engine.config = EngineConfig(sampler_steps=steps, precision=prec,
                                     cuda_graphs=not args.no_graphs,
                                     slot_overlay={"auto": None, "slots": True,
                                                   "reference": False}[args.overlay])
        engine.score(fan, args.horizon, goal)  # warm-up (captures the graphs on a GPU)
        totals, parts = [], []
        for _ in range(args.repeats):
            _sync(device)
            t0 = time.perf_counter()
            engine.score(fan, args.horizon, goal)
            _sync(device)
            totals.append(time.perf_counter() - t0)
            last = engine.last_view
            _, cams = engine.camera_poses(fan, args.horizon, last.cam_to_map)
            timings: dict[str, float] = {}
            engine.imagine(cams, last.latent, last.K_latent, timings=timings)
            parts.append(timings)
        median = statistics.median(totals)
        detail = ", ".join(f"{k} {statistics.median(t[k] for t in parts):.3f}"
                           for k in parts[0])
        print(f"sampler steps {steps}, precision {engine.sampler().precision}"
              f"{'' if device.type != 'cuda' else ', graphs ' + str(not args.no_graphs)}, "
              f"overlay {args.overlay}: "
              f"score {median:.3f} s per call (median of "
              f"{args.repeats}); loop phases, timed separately with syncs: {detail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
