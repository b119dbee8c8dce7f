"""ScorePaths latency through the action, next to the node's own planning time.

    python -m mirage_ros.bench.action [--paths 16] [--horizon 8] [--goals 10] [--scene-seed 7]

Starts the simulator (scripted tour) and the mirage node with the bare-machine launcher, waits
until the node has a memory, then sends ``--goals`` ScorePaths goals of a ``--paths`` arc fan
from the robot's pose, one after the other, and prints the median and maximum client round
trip and the node-side ``planning_time``; the difference is the ROS overhead.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import time

import rclpy
from nav_msgs.msg import Odometry
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data

from mirage_ros.action import ScorePaths
from mirage_ros.rollout import arc_fan
from mirage_ros.ros.conversions import paths_to_msgs
from mirage_ros.ros.graph import sim_graph
from mirage_ros.ros.launcher import launch_graph


def _wait(node: Node, future, timeout: float = 120.0):
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    if not future.done():
        raise TimeoutError("no answer within the timeout")
    return future.result()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paths", type=int, default=16)
    p.add_argument("--horizon", type=int, default=8)
    p.add_argument("--goals", type=int, default=10)
    p.add_argument("--scene-seed", type=int, default=7)
    args = p.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
    rclpy.init()
    node = Node("mirage_bench_action")
    odom: list[Odometry] = []
    node.create_subscription(Odometry, "/mirage_sim/odom", odom.append, qos_profile_sensor_data)
    client = ActionClient(node, ScorePaths, "/mirage/score_paths")
    with launch_graph(sim_graph(scene_seed=args.scene_seed), log_level="warn"):
        if not client.wait_for_server(timeout_sec=120.0):
            raise SystemExit("the mirage node did not come up")
        rtts, node_times = [], []
        while len(rtts) < args.goals + 1:  # the first successful one is a warm-up
            rclpy.spin_once(node, timeout_sec=0.05)
            if not odom:
                continue
            pose = odom[-1].pose.pose
            q = pose.orientation
            yaw = math.atan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y ** 2 + q.z ** 2))
            fan = arc_fan(args.paths, length=0.25 * args.horizon, poses=args.horizon + 1,
                          start_xy=(pose.position.x, pose.position.y), start_yaw=yaw)
            goal = ScorePaths.Goal(paths=paths_to_msgs(fan), horizon=args.horizon)
            goal.header.frame_id = "map"
            t0 = time.perf_counter()
            handle = _wait(node, client.send_goal_async(goal))
            result = _wait(node, handle.get_result_async()).result
            rtt = time.perf_counter() - t0
            if result.error_code != ScorePaths.Result.SUCCESS:
                time.sleep(0.2)  # NO_MEMORY while the first frames arrive
                continue
            rtts.append(rtt)
            node_times.append(result.planning_time.sec + result.planning_time.nanosec * 1e-9)
    node.destroy_node()
    rclpy.try_shutdown()
    rtts, node_times = rtts[1:], node_times[1:]
    print(f"ScorePaths {args.paths} paths x {args.horizon} steps, {len(rtts)} goals: client "
          f"round trip median {statistics.median(rtts) * 1e3:.0f} ms (max "
          f"{max(rtts) * 1e3:.0f}); node planning_time median "
          f"{statistics.median(node_times) * 1e3:.0f} ms (max {max(node_times) * 1e3:.0f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
