"""`make demo`: the closed loop, headless, on the shipped weights in a held-out scene.

Starts the simulator (a procedural scene the world model never trained on), the mirage node
(watching the simulated camera: every paired frame goes into its latent memory) and the demo
planner (every second it sends a fan of candidate arcs to ScorePaths, the node imagines each arc
from its memory and scores it with its critics, the planner sends the best arc to the simulator)
with the bare-machine launcher, the same graph as ``ros2 launch mirage_ros sim_demo.launch.py``.
This process only watches: it prints each decision as the node publishes it, and writes the
pictures a person would look at:

* ``out/demo_map.png``: the top-down view RViz would show at one decision: the memory's voxels
  (coloured from their latents), the scored candidate arcs (red = worst, green = best), the path
  driven so far, the robot and the goal;
* ``out/demo_previews.png``: the node's preview grid of that decision (the imagined view at the
  end of the best arcs) over what the simulator really shows there.

It exits on its own: when the planner arrives or gives up, or after ``--seconds``.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Bool, String
from visualization_msgs.msg import Marker, MarkerArray

from mirage_ros.geometry import yaw_from_quat_xyzw
from mirage_ros.ros.conversions import points_from_cloud
from mirage_ros.ros.graph import sim_demo_graph
from mirage_ros.ros.image_bridge import imgmsg_to_rgb8
from mirage_ros.ros.launcher import launch_graph

HELD_OUT_SCENE = 7  # train.episodes.split_of_seed(7) == "test": never trained on


def pick_start_and_goal(seed: int, min_distance: float = 2.5, max_distance: float = 4.0,
                        min_clearance: float | None = 0.45):
    """A start and a goal in the scene: the goal is a place a collision-free tour reaches,
    ``min_distance``-``max_distance`` from the start, by default along a straight line that keeps
    ``min_clearance`` from every obstacle (the demo planner is greedy: it follows the best arc
    toward the goal, it does not search a graph). ``min_clearance=None`` drops that condition:
    the goal may then lie behind furniture or round a corner."""
    from mirage_ros.sim.scene import procedural_scene
    from mirage_ros.sim.tour import tour

    scene = procedural_scene(seed)
    obstacles = scene.obstacles()
    for tour_seed in range(20):
        traj = tour(scene, 160, dt=0.5, seed=tour_seed)
        x0, y0, yaw0 = (float(v) for v in traj.states[0])
        for x, y, _ in traj.states[1:]:
            d = math.hypot(x - x0, y - y0)
            if not min_distance <= d <= max_distance:
                continue
            line = np.linspace([x0, y0], [x, y], 40)
            if min_clearance is None or float(obstacles.distance(line).min()) >= min_clearance:
                heading = math.atan2(y - y0, x - x0)
                return (x0, y0, yaw0), (float(x), float(y), heading)
    line = "" if min_clearance is None else " with a clear straight line"
    raise RuntimeError(f"no start/goal pair {min_distance}-{max_distance} m apart{line} in "
                       f"scene {seed}")


@dataclass
class Watch:
    """What this process saw of the run."""

    driven: list[tuple[float, float]] = field(default_factory=list)
    decisions: list[tuple[float, MarkerArray]] = field(default_factory=list)
    previews: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    cloud: PointCloud2 | None = None
    status: str = ""
    collisions: int = 0
    latencies: list[float] = field(default_factory=list)
    pose: tuple[float, float, float] | None = None
    poses_at: dict[tuple[int, int], tuple[float, float, float]] = field(default_factory=dict)


class Watcher(Node):
    def __init__(self, watch: Watch) -> None:
        super().__init__("mirage_demo_watcher")
        self.w = watch
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(Odometry, "/mirage_sim/odom", self._odom,
                                 qos_profile_sensor_data)
        self.create_subscription(MarkerArray, "/mirage/candidates", self._markers, 10)
        self.create_subscription(Image, "/mirage/previews", self._previews, 10)
        self.create_subscription(PointCloud2, "/mirage/memory_cloud", self._cloud, 1)
        self.create_subscription(String, "/demo_planner/status", self._status, latched)
        self.create_subscription(Bool, "/mirage_sim/collision", self._collision, 10)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics, 10)
        self._blocked = False

    def _odom(self, msg: Odometry) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        yaw = float(yaw_from_quat_xyzw([q.x, q.y, q.z, q.w]))
        self.w.pose = (p.x, p.y, yaw)
        if not self.w.driven or math.dist(self.w.driven[-1], (p.x, p.y)) > 0.02:
            self.w.driven.append((p.x, p.y))

    def _markers(self, msg: MarkerArray) -> None:
        strips = [m for m in msg.markers if m.type == Marker.LINE_STRIP]
        if not strips:
            return
        stamp = strips[0].header.stamp
        key = (stamp.sec, stamp.nanosec)
        self.w.decisions.append((time.monotonic(), msg))
        if self.w.pose is not None:
            self.w.poses_at[key] = self.w.pose

    def _previews(self, msg: Image) -> None:
        self.w.previews[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = imgmsg_to_rgb8(msg)

    def _cloud(self, msg: PointCloud2) -> None:
        self.w.cloud = msg

    def _status(self, msg: String) -> None:
        self.w.status = msg.data

    def _collision(self, msg: Bool) -> None:
        if msg.data and not self._blocked:
            self.w.collisions += 1
        self._blocked = msg.data

    def _diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("mirage"):
                values = {kv.key: kv.value for kv in status.values}
                text = values.get("last ScorePaths latency (s)", "n/a")
                if text != "n/a":
                    self.w.latencies.append(float(text))


def write_pictures(w: Watch, scene_seed: int, goal, out_dir: Path) -> list[Path]:
    """The top-down map and the preview grid (with the simulator's truth) of one decision."""
    from mirage_ros.geometry import CameraRig
    from mirage_ros.rollout import CandidatePath, resample_path
    from mirage_ros.rollout.figures import preview_grid, save_png, top_down_map
    from mirage_ros.sim.render import Renderer
    from mirage_ros.sim.scene import procedural_scene

    written = []
    with_previews = [d for d in w.decisions
                     if _key(d[1]) in w.previews and _key(d[1]) in w.poses_at]
    if not with_previews:
        print("[demo] no decision with previews was received; no pictures", file=sys.stderr)
        return written
    _, msg = with_previews[len(with_previews) // 3]  # early on: the fan still has choices
    key = _key(msg)
    strips = [m for m in msg.markers if m.type == Marker.LINE_STRIP]
    paths = [np.array([[p.x, p.y, p.z] for p in m.points]) for m in strips]
    scores = np.array([float(m.text) for m in strips])
    xyz, rgb = points_from_cloud(w.cloud) if w.cloud is not None else (None, None)
    # Where the fan starts is where the robot was when the planner asked (it keeps moving
    # while the node imagines): the first pose of the middle arc, heading along it.
    mid = paths[len(paths) // 2]
    robot = (float(mid[0, 0]), float(mid[0, 1]),
             float(np.arctan2(mid[1, 1] - mid[0, 1], mid[1, 0] - mid[0, 0])))
    img = top_down_map(xyz, colors=rgb, paths=paths, scores=scores,
                       driven=np.array(w.driven) if len(w.driven) > 1 else None,
                       robot=robot, goal=goal[:2],
                       title=f"mirage demo, held-out scene {scene_seed}")
    written.append(save_png(out_dir / "demo_map.png", img))

    # Truth under each preview: render the simulator where the best arcs' imagination ends.
    order = np.argsort(-scores, kind="stable")
    grid = w.previews[key]
    tiles = grid.shape[1] // 256 if grid.shape[1] >= 256 else 1
    k = min(len(order), max(1, tiles))
    rig = CameraRig.create()
    truth = []
    with Renderer(procedural_scene(scene_seed), rig.camera) as renderer:
        for i in order[:k]:
            p = paths[i]
            yaw = np.arctan2(np.gradient(p[:, 1]), np.gradient(p[:, 0]))
            q = np.stack([np.zeros_like(yaw), np.zeros_like(yaw), np.sin(yaw / 2),
                          np.cos(yaw / 2)], 1)
            path = CandidatePath("map", p, q, np.zeros(len(p)))
            end = resample_path(path, 8, 0.25, 0.35)[-1]
            truth.append(renderer.render(rig.cam_to_map(end))[0])
    labels = [f"#{int(i)} truth" for i in order[:k]]
    written.append(save_png(out_dir / "demo_previews.png",
                            np.concatenate([grid, _pad_to(preview_grid(
                                np.stack(truth), labels), grid.shape[1])], 0)))
    return written


def _pad_to(img: np.ndarray, width: int) -> np.ndarray:
    if img.shape[1] >= width:
        return img[:, :width]
    pad = np.zeros((img.shape[0], width - img.shape[1], 3), dtype=np.uint8)
    return np.concatenate([img, pad], 1)


def _key(msg: MarkerArray) -> tuple[int, int]:
    stamp = next(m.header.stamp for m in msg.markers if m.type == Marker.LINE_STRIP)
    return stamp.sec, stamp.nanosec


def run(seconds: float, scene_seed: int, out_dir: Path, goal_distance=(2.5, 4.0),
        clear_line: bool = True) -> int:
    start, goal = pick_start_and_goal(scene_seed, *goal_distance,
                                      min_clearance=0.45 if clear_line else None)
    print(f"[demo] held-out scene {scene_seed}: start ({start[0]:.2f}, {start[1]:.2f}), goal "
          f"({goal[0]:.2f}, {goal[1]:.2f}), {math.dist(start[:2], goal[:2]):.2f} m apart",
          flush=True)
    specs = sim_demo_graph(scene_seed=scene_seed, start_pose=start, goal=goal)
    specs = [s.with_parameters(timeout=float(seconds)) if s.name == "demo_planner" else s
             for s in specs]
    watch = Watch()
    rclpy.init()
    watcher = Watcher(watch)
    executor = SingleThreadedExecutor()
    executor.add_node(watcher)
    started = time.monotonic()
    # The planner logs every decision (best path, critic costs, ScorePaths time); the other
    # nodes only warnings.
    graph = launch_graph(specs, log_level={"demo_planner": "info", "*": "warn"})
    try:
        while time.monotonic() - started < seconds + 30.0:
            executor.spin_once(timeout_sec=0.1)
            if watch.status.startswith(("arrived", "gave_up", "error")):
                break
            if graph.first_exit() is not None:
                break
        # A last memory cloud for the map: it is published only while someone listens.
        n_clouds = watch.cloud
        deadline = time.monotonic() + 5.0
        while watch.cloud is n_clouds and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
    finally:
        codes = graph.stop()
        elapsed = time.monotonic() - started
    final = watch.pose
    print(f"\n[demo] planner status: {watch.status or 'none received'} after {elapsed:.0f} s")
    if final is not None:
        print(f"[demo] robot ended {math.dist(final[:2], goal[:2]):.2f} m from the goal; "
              f"{len(watch.decisions)} decisions; collisions: {watch.collisions}")
    if watch.latencies:
        lat = np.array(watch.latencies) * 1e3
        sizes = sorted({len(m.markers) - 1 for _, m in watch.decisions}) or [0]
        fans = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
        print(f"[demo] ScorePaths latency in the node (sampled by /diagnostics): median "
              f"{statistics.median(lat):.0f} ms, max {lat.max():.0f} ms ({fans} paths x 8 "
              "steps, 2 sampler steps)")
    for path in write_pictures(watch, scene_seed, goal, out_dir):
        print(f"[demo] wrote {path}")
    executor.shutdown()
    watcher.destroy_node()
    rclpy.try_shutdown()
    bad = {k: v for k, v in codes.items() if v not in (0, None, -2)}
    if bad:
        print(f"[demo] nodes exited with {bad}", file=sys.stderr)
    return 0 if watch.status.startswith("arrived") and not bad else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=150.0,
                        help="give up after this long (the planner's timeout)")
    parser.add_argument("--scene-seed", type=int, default=HELD_OUT_SCENE)
    parser.add_argument("--out", type=Path, default=Path("out"))
    parser.add_argument("--goal-distance", type=float, nargs=2, default=(2.5, 4.0),
                        metavar=("MIN", "MAX"), help="metres from the start to the goal")
    parser.add_argument("--any-line", action="store_true",
                        help="do not require a clear straight line from start to goal")
    args = parser.parse_args(argv)
    if not 0 < args.goal_distance[0] <= args.goal_distance[1]:
        parser.error("--goal-distance needs 0 < MIN <= MAX")
    # Stay off other ROS graphs on this machine unless the user chose a domain.
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
    return run(args.seconds, args.scene_seed, args.out, tuple(args.goal_distance),
               not args.any_line)


if __name__ == "__main__":
    raise SystemExit(main())
