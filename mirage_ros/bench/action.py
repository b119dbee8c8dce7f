"""ScorePaths latency through the action, next to the node's own planning time.

    python -m mirage_ros.bench.action [--paths 16] [--horizon 8] [--goals 10]
        [--source sim|synthetic] [--scene-seed 7] [--device auto]

Starts the mirage node with the bare-machine launcher and feeds it a camera: the MuJoCo
simulator on its scripted tour (``--source sim``), or a child process publishing frames of the
analytic room of ``memory.synthetic`` while the robot drives a 0.3 m circle at 10 Hz
(``--source synthetic``: no MuJoCo, for the GPU hosts; in its own process, its rendering does
not hold up the client being timed). It waits until the node has a memory, then sends
``--goals`` ScorePaths goals of a ``--paths`` arc fan from the robot's pose, one after the
other, and prints the median and maximum client round trip and the node-side
``planning_time``; the difference is the ROS overhead (messages, executor, feedback).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import time
from collections import deque

import rclpy
from nav_msgs.msg import Odometry
from rclpy.action import ActionClient
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data

from mirage_ros.action import ScorePaths
from mirage_ros.bench.camera import SyntheticCamera, fan_goal
from mirage_ros.ros.conversions import seconds
from mirage_ros.ros.graph import mirage_graph, sim_graph
from mirage_ros.ros.launcher import launch_graph
from mirage_ros.ros.qos import action_qos_kwargs


def _wait(node: Node, future, timeout: float = 120.0):
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    if not future.done():
        raise TimeoutError("no answer within the timeout")
    return future.result()


def _camera() -> None:
    """The synthetic camera's process (``--source synthetic``): publishes until terminated."""
    rclpy.init()
    node = Node("mirage_bench_camera")
    SyntheticCamera(node)  # its timer (held by the node) keeps it publishing
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paths", type=int, default=16)
    p.add_argument("--horizon", type=int, default=8)
    p.add_argument("--goals", type=int, default=10)
    p.add_argument("--scene-seed", type=int, default=7)
    p.add_argument("--source", choices=("sim", "synthetic"), default="sim")
    p.add_argument("--device", default="auto", help="the node's device parameter")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="the node's precision parameter")
    p.add_argument("--one-gpu", action="store_true", help="split_gpus off (several GPUs)")
    p.add_argument("--keyframes", type=int, default=None,
                   help="the node's memory.keyframes (default: its own; 0: the fused map alone)")
    p.add_argument("--critics", nargs="+", default=None,
                   help="the node's critics (default: its own); geometry-only critics "
                        "(path_length path_turning goal_pose) measure the ROS overhead alone")
    args = p.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
    rclpy.init()
    node = Node("mirage_bench_action")
    odom: deque[Odometry] = deque(maxlen=100)
    client = ActionClient(node, ScorePaths, "/mirage/score_paths", **action_qos_kwargs())
    camera = None
    if args.source == "sim":
        # A lambda, not the bound method: rclpy inspects a callback's signature, and a
        # builtin's (deque.append) has none.
        node.create_subscription(Odometry, "/mirage_sim/odom", lambda m: odom.append(m),
                                 qos_profile_sensor_data)
        specs = sim_graph(scene_seed=args.scene_seed)
    else:
        # The camera renders in a process of its own: in this one its 10 Hz ray casting held
        # the client's executor and added to every round trip it was measuring.
        camera = multiprocessing.get_context("spawn").Process(target=_camera, daemon=True)
        camera.start()
        node.create_subscription(Odometry, "/odom", lambda m: odom.append(m),
                                 qos_profile_sensor_data)
        specs = mirage_graph()
    extra = {} if args.critics is None else {"critics": args.critics}
    if args.keyframes is not None:
        extra["memory.keyframes"] = args.keyframes
    specs = [s.with_parameters(device=args.device, precision=args.precision,
                               split_gpus=not args.one_gpu, **extra)
             if s.name == "mirage" else s for s in specs]
    with launch_graph(specs, log_level="warn"):
        if not client.wait_for_server(timeout_sec=120.0):
            raise SystemExit("the mirage node did not come up")
        rtts, node_times = [], []
        while len(rtts) < args.goals + 1:  # the first successful one is a warm-up
            rclpy.spin_once(node, timeout_sec=0.05)
            if not odom:
                continue
            goal = fan_goal(odom[-1], args.paths, args.horizon)
            t0 = time.perf_counter()
            handle = _wait(node, client.send_goal_async(goal))
            result = _wait(node, handle.get_result_async()).result
            rtt = time.perf_counter() - t0
            if result.error_code == ScorePaths.Result.NO_MEMORY:
                time.sleep(0.2)  # while the first frames arrive
                continue
            if result.error_code != ScorePaths.Result.SUCCESS:
                raise SystemExit(f"ScorePaths failed: {result.error_msg}")
            rtts.append(rtt)
            node_times.append(seconds(result.planning_time))
    node.destroy_node()
    rclpy.try_shutdown()
    if camera is not None:
        camera.terminate()
        camera.join(10.0)
    rtts, node_times = rtts[1:], node_times[1:]
    print(f"ScorePaths {args.paths} paths x {args.horizon} steps, {len(rtts)} goals: client "
          f"round trip median {statistics.median(rtts) * 1e3:.0f} ms (max "
          f"{max(rtts) * 1e3:.0f}); node planning_time median "
          f"{statistics.median(node_times) * 1e3:.0f} ms (max {max(node_times) * 1e3:.0f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
