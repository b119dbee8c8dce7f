"""Time imagination the way the rollout runs it: N paths x T steps, all paths batched.

    python -m mirage_ros.model.bench [--checkpoint CKPT] [--paths 16] [--horizon 4]
        [--sampler-steps 1 2] [--device cpu] [--repeats 3]

A memory is built from a short simulated tour (real encoder, true depth); then, for each step,
one batched memory read of every path's next camera pose (bank + per-path overlay), one DiT call
per sampler step, one depth-head call and one overlay write. Prints the median wall time of the
whole rollout and its parts. Nothing is decoded: previews are not part of the loop.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from mirage_ros.memory import LatentMemory
from mirage_ros.model import WorldModel
from mirage_ros.rollout.imagination import imagine_paths


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def build_scene(model: WorldModel, device: torch.device, frames: int, paths: int, horizon: int):
    """Memory of a simulated tour, and `paths` candidate arcs of camera poses from its end."""
    from mirage_ros.sim.render import Renderer
    from mirage_ros.sim.rig import CameraRig
    from mirage_ros.sim.scene import procedural_scene
    from mirage_ros.sim.tour import tour
    from mirage_ros.sim.truth import candidate_fan, path_base_poses

    scene = procedural_scene(3)
    rig = CameraRig.create()
    traj = tour(scene, frames, dt=0.5, seed=0)
    cams = rig.cam_to_map(traj.base_to_map())
    with Renderer(scene, rig.camera) as renderer:
        rgb, depth = zip(*(renderer.render(c) for c in cams), strict=True)
    down = model.downsampling
    h, w = rig.camera.height // down, rig.camera.width // down
    K = rig.camera.scaled(h, w).K
    latents = model.encode(torch.from_numpy(np.stack(rgb)).to(device))
    bank = LatentMemory(channels=model.latent_channels, device=device)
    bank.write(latents, torch.from_numpy(np.stack(depth)).to(device), torch.from_numpy(K).float(),
               torch.from_numpy(cams).float(), torch.arange(frames, dtype=torch.float64))
    x, y, yaw = traj.states[-1]
    fan = candidate_fan(x, y, yaw, paths, length=0.25 * horizon, poses=horizon + 1)
    path_cams = np.stack([rig.cam_to_map(path_base_poses(p)) for p in fan])  # [N,T+1,4,4]
    return bank, latents[-1:], K, (h, w), path_cams


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="default: the weights shipped in the package")
    p.add_argument("--paths", type=int, default=16)
    p.add_argument("--horizon", type=int, default=4)
    p.add_argument("--sampler-steps", type=int, nargs="+", default=[1, 2])
    p.add_argument("--memory-frames", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    model = (WorldModel.load(args.checkpoint, device) if args.checkpoint
             else WorldModel.default(device))
    bank, last, K, hw, cams = build_scene(model, device, args.memory_frames, args.paths,
                                          args.horizon)

    def rollout(steps: int, timings: dict[str, float] | None) -> None:
        imagine_paths(model, bank, last, K, cams, sampler_steps=steps, generator=gen,
                      timings=timings)

    print(f"device {device} ({torch.get_num_threads()} threads), bank {len(bank)} voxels, "
          f"{args.paths} paths x {args.horizon} steps, latent {hw}")
    gen = torch.Generator(device=device).manual_seed(0)
    for steps in args.sampler_steps:
        rollout(steps, None)  # warm-up
        totals, parts = [], []
        for _ in range(args.repeats):
            timings: dict[str, float] = {}
            _sync(device)
            t0 = time.perf_counter()
            rollout(steps, timings)
            _sync(device)
            totals.append(time.perf_counter() - t0)
            parts.append(timings)
        median = statistics.median(totals)
        detail = ", ".join(f"{k} {statistics.median(t[k] for t in parts):.3f}"
                           for k in parts[0])
        print(f"sampler steps {steps}: {median:.3f} s per rollout (median of {args.repeats}; "
              f"{detail})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
