"""`make demo`: start the mirage node, act as a planner for a moment, print what comes back.

What it shows today:
1. the node graph on a machine with no ROS install (ROS 2 from PyPI wheels): a ScorePaths round
   trip over a fan of candidate arcs scored by the path critics, and a malformed goal answered
   with INVALID_INPUT and a reason while the node keeps serving;
2. imagination with the shipped world model (no ROS involved yet; the node's imagination critics
   come next): a latent memory built from a simulated tour, five candidate paths imagined four
   steps ahead in one batch, compared with what the simulator renders there, and saved as a PNG.
It exits on its own.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
from pathlib import Path

import rclpy
from rclpy.action import ActionClient
from rclpy.node import Node

from mirage_ros.action import ScorePaths
from mirage_ros.rollout import arc_fan
from mirage_ros.ros.conversions import error_code_name, paths_to_msgs
from mirage_ros.ros.launcher import NodeProcess

Result = ScorePaths.Result


def _params_file() -> str:
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "config" / "mirage.yaml",
                      Path(sys.prefix) / "share" / "mirage_ros" / "config" / "mirage.yaml"):
        if candidate.exists():
            return str(candidate)
    raise FileNotFoundError("config/mirage.yaml not found in the checkout or the install")


def _call(node: Node, client: ActionClient, goal: ScorePaths.Goal) -> ScorePaths.Result:
    future = client.send_goal_async(goal)
    rclpy.spin_until_future_complete(node, future, timeout_sec=30.0)
    handle = future.result()
    if handle is None or not handle.accepted:
        raise RuntimeError("the node did not accept the goal")
    future = handle.get_result_async()
    rclpy.spin_until_future_complete(node, future, timeout_sec=60.0)
    if future.result() is None:
        raise RuntimeError("no result within 60 s")
    return future.result().result


def run_demo(num_paths: int) -> int:
    curvatures = [-1.0 + 2.0 * i / (num_paths - 1) for i in range(num_paths)]
    fan = arc_fan(num_paths, length=2.0, poses=9, max_curvature=1.0)
    node_proc = NodeProcess("mirage_ros.ros.mirage_node", ["--params-file", _params_file()])
    rclpy.init()
    node = Node("mirage_demo_planner")
    try:
        client = ActionClient(node, ScorePaths, "/mirage/score_paths")
        print("waiting for /mirage/score_paths ...", flush=True)
        if not client.wait_for_server(timeout_sec=30.0):
            print("the mirage node did not come up within 30 s", file=sys.stderr)
            return 1

        goal = ScorePaths.Goal(paths=paths_to_msgs(fan))
        goal.header.frame_id = "map"
        result = _call(node, client, goal)
        if result.error_code != Result.SUCCESS:
            print(f"ScorePaths failed: {error_code_name(result.error_code)}: {result.error_msg}")
            return 1
        ms = result.planning_time.sec * 1e3 + result.planning_time.nanosec * 1e-6
        print(f"\nScorePaths: {len(fan)} candidate arcs of 2 m, scored in {ms:.1f} ms")
        print(f"{'path':>4} {'curvature':>9} {'length m':>9} {'turn rad':>9} {'score':>8}")
        for i, (k, crit, score) in enumerate(
                zip(curvatures, result.critics, result.scores, strict=True)):
            costs = dict(zip(crit.names, crit.costs, strict=True))
            best = "  <- best" if i == result.best_index else ""
            print(f"{i:>4} {k:>9.2f} {costs['path_length']:>9.3f} "
                  f"{costs['path_turning']:>9.3f} {score:>8.3f}{best}")

        bad = ScorePaths.Goal(paths=paths_to_msgs(fan[:3]))
        bad.header.frame_id = "map"
        bad.paths[1].poses[4].pose.position.y = math.nan
        result = _call(node, client, bad)
        print("\nA goal with a NaN in it: "
              f"{error_code_name(result.error_code)}: {result.error_msg}")
        alive = node_proc.alive()
        print(f"node still serving: {alive}")
        return 0 if alive and result.error_code == Result.INVALID_INPUT else 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        code = node_proc.stop()
        print(f"mirage node stopped (exit code {code})")


def run_imagination(out_png: Path, paths: int = 5, horizon: int = 4) -> None:
    """Memory from a simulated tour -> imagine `paths` arcs -> compare with rendered truth."""
    import time

    import numpy as np
    import torch

    from mirage_ros.memory import LatentMemory
    from mirage_ros.model import WorldModel
    from mirage_ros.model.autoencoder import psnr
    from mirage_ros.rollout.imagination import imagine_paths
    from mirage_ros.sim.render import Renderer
    from mirage_ros.sim.rig import CameraRig
    from mirage_ros.sim.scene import procedural_scene
    from mirage_ros.sim.tour import tour
    from mirage_ros.sim.truth import candidate_fan, path_base_poses

    model = WorldModel.default()
    scene = procedural_scene(7)  # a held-out scene: the model never trained on it
    rig = CameraRig.create()
    traj = tour(scene, 40, dt=0.5, seed=1)
    cams = rig.cam_to_map(traj.base_to_map())
    x, y, yaw = traj.states[-1]
    fan = candidate_fan(x, y, yaw, paths, length=0.3 * horizon, poses=horizon + 1,
                        max_curvature=0.8)
    fan_cams = np.stack([rig.cam_to_map(path_base_poses(p)) for p in fan])
    with Renderer(scene, rig.camera) as renderer:
        observed = [renderer.render(c) for c in cams]
        truth = [renderer.render(c)[0] for c in fan_cams[:, -1]]
    started = time.monotonic()
    rgb = torch.from_numpy(np.stack([o[0] for o in observed]))
    latents = model.encode(rgb)
    memory = LatentMemory(channels=model.latent_channels)
    h, w = latents.shape[-2:]
    K = rig.camera.scaled(h, w).K
    memory.write(latents, torch.from_numpy(np.stack([o[1] for o in observed])),
                 torch.from_numpy(K).float(), torch.from_numpy(cams).float(),
                 torch.from_numpy(traj.stamps))
    observe_s = time.monotonic() - started
    started = time.monotonic()
    imagined = imagine_paths(model, memory, latents[-1:], K, fan_cams, sampler_steps=2,
                             generator=torch.Generator().manual_seed(0))
    imagine_s = time.monotonic() - started
    final = model.decode(imagined.latents[:, -1])
    truth_t = torch.from_numpy(np.stack(truth)).permute(0, 3, 1, 2).float() / 255.0
    scores = psnr(final, truth_t)
    print(f"\nImagination (world model: {model.notes.get('device', '?')}-trained, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters)")
    print(f"memory: {len(memory)} voxels from {len(cams)} simulated frames "
          f"({memory.nbytes / 1e6:.2f} MB), built in {observe_s:.2f} s")
    print(f"imagined {paths} paths x {horizon} steps in {imagine_s:.2f} s "
          f"(2 sampler steps, CPU, nothing decoded inside the loop)")
    print(f"{'path':>4} {'curvature':>9} {'memory coverage':>16} {'final-view PSNR':>16}")
    for i in range(paths):
        k = -0.8 + 1.6 * i / (paths - 1)
        print(f"{i:>4} {k:>9.2f} {float(imagined.coverage[i].mean()):>16.2f} "
              f"{float(scores[i]):>13.1f} dB")
    grid = torch.cat([torch.cat(list(truth_t), 2), torch.cat(list(final), 2)], 1)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    import cv2

    img = (grid.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()[:, :, ::-1]
    cv2.imwrite(str(out_png), np.ascontiguousarray(img))
    print(f"preview (top: simulator truth at each path's last pose, bottom: imagined): {out_png}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=7, help="number of candidate arcs (>= 2)")
    parser.add_argument("--preview", type=Path, default=Path("out/demo_imagination.png"),
                        help="where to save the imagination preview")
    args = parser.parse_args(argv)
    if args.paths < 2:
        parser.error("--paths must be at least 2")
    # Stay off other ROS graphs on this machine unless the user chose a domain.
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
    code = run_demo(args.paths)
    if code == 0:
        run_imagination(args.preview)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
