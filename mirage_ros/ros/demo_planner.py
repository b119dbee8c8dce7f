"""The demo planner ``demo_planner``: drives a robot to a goal pose by asking ScorePaths.

It closes the loop between the robot and the imagination node. Every ``replan_period`` seconds
it takes the robot's latest pose from ``odom`` and builds a fan of constant-curvature arcs from
there (:func:`mirage_ros.rollout.arc_fan`). When the goal lies behind the robot, or the robot has
neither moved nor turned since its last path (blocked), tighter arcs and arcs that start facing
backwards (the follower turns on the spot, then drives) are added so that it can turn round;
when the node predicts that the best arc of a fan without them collides (its clearance cost is
the collision cost), it asks again at once with them. It sends the candidates, with the goal
as ``goal_pose``, to the ScorePaths action ``score_paths``, and publishes the path the node
rated best (``best_index``) on ``follow_path`` for the robot to drive, and on ``~/plan`` for
RViz. The whole path is followed; the next replan decides again. One request is in flight at
a time: a replan that comes while the previous request is still open is skipped, not queued.

Once the robot is within ``goal_tolerance`` of the goal position it stops the robot (a path of
just its current pose: the simulator's follower is then done and brakes) and reports
``arrived``. It gives up (and stops the robot) after ``timeout`` seconds, or after
``max_failures`` failed periods in a row: a ScorePaths error, a goal the server refused, no
answer within ``request_timeout``, or no odometry / no server. During the first ``warmup``
seconds a missing odometry or server and NO_MEMORY (the imagination node has not observed
anything yet) are logged but not counted. With ``exit_after_finish`` >= 0 the node exits (code 0)
that many seconds after arriving or giving up; by default it stays up, its status latched.

Topics (names relative, so a namespace or a remap moves them):

* ``odom`` (nav_msgs/Odometry, sensor-data QoS, in): the robot's pose in ``map_frame``;
* ``score_paths`` (mirage_ros/action/ScorePaths, client);
* ``follow_path`` (nav_msgs/Path, out): the chosen path, stamped, in ``map_frame``;
* ``~/plan`` (nav_msgs/Path, out): the same path;
* ``~/status`` (std_msgs/String, transient local, out): ``planning``, ``arrived``,
  ``gave_up: <reason>`` or ``error: <code name>: <message>``, published when it changes.

Wiring to the simulator and the imagination node (the sim must run with ``mode: path``)::

    python -m mirage_ros.ros.demo_planner --ros-args -p goal:="[6.5, 1.0, 0.0]" \\
        -r odom:=/mirage_sim/odom -r score_paths:=/mirage/score_paths \\
        -r follow_path:=/mirage_sim/follow_path

Out of scope here: a goal given as an image (ScorePaths' ``goal_image``); this node sends only a
goal pose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry, Path
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.action import ActionClient
from rclpy.action.client import ClientGoalHandle
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from rclpy.task import Future
from rclpy.time import Time
from std_msgs.msg import String

from mirage_ros.action import ScorePaths
from mirage_ros.geometry import yaw_from_quat_xyzw
from mirage_ros.rollout import CandidatePath
from mirage_ros.rollout.local_planner import (  # noqa: F401 - re-exported for users and tests
    bearing,
    candidate_fan,
    distance,
    predicted_collision,
    reached,
    stuck,
    turning_curvatures,
)
from mirage_ros.ros.action_client import prune_leaked_futures
from mirage_ros.ros.conversions import error_code_name, paths_to_msgs, seconds
from mirage_ros.ros.qos import action_qos_kwargs
from mirage_ros.ros.spin import run_node

Result = ScorePaths.Result

# Parameter defaults and descriptions. All are read at start and fixed.
DEFAULTS: dict[str, object] = {
    "goal": [6.5, 1.0, 0.0],
    "map_frame": "map",
    "goal_tolerance": 0.3,
    "replan_period": 1.0,
    "num_paths": 9,
    "path_length": 1.5,
    "poses_per_path": 9,
    "max_curvature": 1.2,
    "horizon": 0,
    "num_previews": 4,
    "timeout": 120.0,
    "max_failures": 5,
    "warmup": 10.0,
    "request_timeout": 30.0,
    "exit_after_finish": -1.0,
}

DESCRIPTIONS: dict[str, str] = {
    "goal": "[x, y, yaw] to drive to, in map_frame (metres, radians); the default suits "
            "procedural scene 0 from the start [1.5, 1.0, 0.0]",
    "map_frame": "frame of the odometry, the goal and the paths",
    "goal_tolerance": "metres: arrived when the robot is this close to the goal position",
    "replan_period": "seconds between ScorePaths requests",
    "num_paths": "arcs in the candidate fan",
    "path_length": "metres, length of every candidate arc",
    "poses_per_path": "poses per candidate arc",
    "max_curvature": "1/m, the fan spreads curvatures over [-max_curvature, max_curvature]",
    "horizon": "imagined steps per path asked of ScorePaths; 0: the server's default",
    "num_previews": "decoded preview images asked of ScorePaths per request",
    "timeout": "seconds: give up when the goal is not reached by then",
    "max_failures": "failed periods in a row (errors, no answer, no odometry) before giving up",
    "warmup": "seconds at the start when no odometry, no server and NO_MEMORY are not failures",
    "request_timeout": "seconds a ScorePaths request may stay unanswered (then it is a failure)",
    "exit_after_finish": "seconds after arriving or giving up before the node exits; "
                         "negative: keep running",
}


# ------------------------------------------------------------------------- pure logic (no ROS)
# The fan, arrival and stuck rules live in rollout.local_planner (the benchmark shares them).


@dataclass
class Budget:
    """How long and how often the planner may fail before it gives up.

    ``elapsed`` is seconds since planning began. A failed period counts unless it is a
    warm-up failure (no odometry, no server, NO_MEMORY) within the first ``warmup`` seconds;
    a success resets the count.
    """

    timeout: float
    max_failures: int
    warmup: float
    failures: int = 0

    def success(self) -> None:
        self.failures = 0

    def failure(self, reason: str, elapsed: float, *, warmup_excused: bool = False) -> str | None:
        """Record a failed period; the reason to give up, or None to carry on."""
        if warmup_excused and elapsed < self.warmup:
            return None
        self.failures += 1
        if self.failures >= self.max_failures:
            return f"{self.failures} failures in a row, the last: {reason}"
        return None

    def expired(self, elapsed: float) -> str | None:
        if elapsed >= self.timeout:
            return f"goal not reached within {self.timeout:g} s"
        return None


def yaw_of(q) -> float:
    """Yaw (rad) of a geometry_msgs/Quaternion."""
    return float(yaw_from_quat_xyzw([q.x, q.y, q.z, q.w]))


def check_parameters(values: dict[str, object]) -> str | None:
    """A description of the first invalid parameter value, or None."""
    goal = values["goal"]
    if (not isinstance(goal, (list, tuple)) or len(goal) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                       and math.isfinite(v) for v in goal)):
        return f"goal must be [x, y, yaw], got {goal!r}"
    for name in ("goal_tolerance", "replan_period", "path_length", "timeout",
                 "request_timeout"):
        value = values[name]
        if not isinstance(value, float) or not math.isfinite(value) or value <= 0.0:
            return f"{name} must be a positive float, got {value!r}"
    for name in ("max_curvature", "warmup", "exit_after_finish"):
        value = values[name]
        if not isinstance(value, float) or not math.isfinite(value):
            return f"{name} must be a finite float, got {value!r}"
    if values["max_curvature"] < 0.0 or values["warmup"] < 0.0:
        return "max_curvature and warmup must not be negative"
    for name, low in (("num_paths", 1), ("poses_per_path", 2), ("max_failures", 1),
                      ("horizon", 0), ("num_previews", 0)):
        value = values[name]
        if not isinstance(value, int) or value < low:
            return f"{name} must be an integer >= {low}, got {value!r}"
    if not values["map_frame"]:
        return "map_frame must not be empty"
    return None


# ------------------------------------------------------------------------- the node


@dataclass
class _Request:
    """The ScorePaths request in flight."""

    paths: list[CandidatePath]
    labels: list[str]
    sent: Time
    pose: tuple[float, float, float]
    handle: ClientGoalHandle | None = None


class DemoPlanner(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("demo_planner", **kwargs)
        # rclpy destroys a node that failed half-way through __init__ at shutdown, too.
        self._score_client: ActionClient | None = None
        for name, default in DEFAULTS.items():
            descriptor = ParameterDescriptor(
                description=DESCRIPTIONS[name], read_only=True,
                dynamic_typing=name == "goal")  # [6, 1, 0] arrives as an integer array
            self.declare_parameter(name, default, descriptor)
        values = {n: self.get_parameter(n).value for n in DEFAULTS}
        problem = check_parameters(values)
        if problem:
            raise ValueError(f"invalid parameter: {problem}")
        self._goal = tuple(float(v) for v in values["goal"])
        self._frame = str(values["map_frame"])
        self._tolerance = float(values["goal_tolerance"])
        self._fan = dict(num_paths=int(values["num_paths"]),
                         length=float(values["path_length"]),
                         poses=int(values["poses_per_path"]),
                         max_curvature=float(values["max_curvature"]),
                         frame_id=self._frame)
        self._horizon = int(values["horizon"])
        self._num_previews = int(values["num_previews"])
        self._request_timeout = float(values["request_timeout"])
        self._exit_after = float(values["exit_after_finish"])
        self._budget = Budget(float(values["timeout"]), int(values["max_failures"]),
                              float(values["warmup"]))

        self._pose: tuple[float, float, float] | None = None
        # Where the robot was when it was last sent a path to follow.
        self._followed_at: tuple[float, float, float] | None = None
        self._started: Time | None = None
        self._request: _Request | None = None
        self._finished = False
        self._status = ""

        self._score_client = ActionClient(self, ScorePaths, "score_paths",
                                          **action_qos_kwargs())
        self.create_subscription(Odometry, "odom", self._on_odom, qos_profile_sensor_data)
        self._follow_pub = self.create_publisher(Path, "follow_path", 10)
        self._plan_pub = self.create_publisher(Path, "~/plan", 10)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._status_pub = self.create_publisher(String, "~/status", latched)
        self._timer = self.create_timer(float(values["replan_period"]), self._on_timer)
        self._exit_timer = None
        self._names = {what: self.resolve_topic_name(name) for what, name in
                       (("odom", "odom"), ("score_paths", "score_paths"),
                        ("follow_path", "follow_path"))}
        gx, gy, gyaw = self._goal
        self.get_logger().info(
            f"goal ({gx:.2f}, {gy:.2f}, yaw {gyaw:.2f}) in '{self._frame}'; odometry from "
            f"{self._names['odom']}, scoring by {self._names['score_paths']}, paths to "
            f"{self._names['follow_path']}")
        self._set_status("planning")

    # ---------------------------------------------------------------- callbacks (dispatch only)

    def _on_odom(self, msg: Odometry) -> None:
        self._update_pose(msg)

    def _on_timer(self) -> None:
        self._replan()

    def _on_goal_response(self, request: _Request, future: Future) -> None:
        self._goal_answered(request, future)

    def _on_result(self, request: _Request, future: Future) -> None:
        prune_leaked_futures(self._score_client)  # ros2/rclpy#1532: one future leaks a goal
        self._result_arrived(request, future)

    def _on_exit_timer(self) -> None:
        self._exit()

    # ---------------------------------------------------------------- work

    def _elapsed(self) -> float:
        if self._started is None:
            return 0.0
        return (self.get_clock().now() - self._started).nanoseconds * 1e-9

    def _update_pose(self, msg: Odometry) -> None:
        if msg.header.frame_id and msg.header.frame_id != self._frame:
            self.get_logger().warning(
                f"odometry ignored: frame '{msg.header.frame_id}' is not '{self._frame}'",
                throttle_duration_sec=5.0)
            return
        p = msg.pose.pose.position
        pose = (float(p.x), float(p.y), yaw_of(msg.pose.pose.orientation))
        if not all(math.isfinite(v) for v in pose):
            return
        self._pose = pose
        if not self._finished and reached(pose, self._goal, self._tolerance):
            self._finish("arrived", f"arrived: {distance(pose, self._goal):.2f} m from the goal")

    def _replan(self) -> None:
        if self._finished:
            return
        if self._started is None:
            self._started = self.get_clock().now()
        elapsed = self._elapsed()
        reason = self._budget.expired(elapsed)
        if reason:
            self._give_up(reason)
            return
        if self._request is not None:
            waited = (self.get_clock().now() - self._request.sent).nanoseconds * 1e-9
            if waited < self._request_timeout:
                self.get_logger().debug("previous ScorePaths request still open: replan skipped")
                return
            if self._request.handle is not None:
                self._request.handle.cancel_goal_async()
            self._request = None
            self._failed(f"no ScorePaths result within {self._request_timeout:g} s")
            return
        if self._pose is None:
            self._failed(f"no odometry on {self._names['odom']} yet", warmup_excused=True)
            return
        if not self._score_client.server_is_ready():
            self._failed(f"ScorePaths server {self._names['score_paths']} not available",
                         warmup_excused=True)
            return
        self._send(self._pose)

    def _send(self, pose: tuple[float, float, float], *, turn_round: bool = False) -> None:
        paths, labels = candidate_fan(pose, self._goal,
                                      turn_round=turn_round or self._stuck(pose), **self._fan)
        goal = ScorePaths.Goal(paths=paths_to_msgs(paths), horizon=self._horizon,
                               num_previews=self._num_previews)
        now = self.get_clock().now()
        goal.header.stamp = now.to_msg()
        goal.header.frame_id = self._frame
        goal.goal_pose = self._pose_msg(self._goal, now)
        request = _Request(paths, labels, now, pose)
        self._request = request
        future = self._score_client.send_goal_async(goal)
        future.add_done_callback(partial(self._on_goal_response, request))

    def _goal_answered(self, request: _Request, future: Future) -> None:
        try:
            handle = future.result()
        except Exception as err:  # noqa: BLE001 - a transport error is a failed period
            handle, error = None, f"ScorePaths request failed: {err!r}"
        else:
            error = "the ScorePaths server refused the goal"
        if request is not self._request:
            # Given up on (a request timeout, arrival, giving up): the answer is not wanted.
            if handle is not None and handle.accepted:
                handle.cancel_goal_async()
            return
        if handle is None or not handle.accepted:
            self._request = None
            self._failed(error)
            return
        request.handle = handle
        handle.get_result_async().add_done_callback(partial(self._on_result, request))

    def _result_arrived(self, request: _Request, future: Future) -> None:
        if request is not self._request:
            return  # answered after a request timeout, arrival or giving up: not wanted
        self._request = None
        try:
            response = future.result()
        except Exception as err:  # noqa: BLE001
            self._failed(f"ScorePaths result failed: {err!r}")
            return
        result = response.result if response is not None else None
        if result is None:
            self._failed("ScorePaths gave no result")
            return
        if result.error_code != Result.SUCCESS:
            name = error_code_name(result.error_code)
            self._set_status(f"error: {name}: {result.error_msg}")
            self._failed(f"ScorePaths: {name}: {result.error_msg}",
                         warmup_excused=result.error_code == Result.NO_MEMORY)
            return
        best = int(result.best_index)
        if not 0 <= best < len(request.paths) or len(result.scores) != len(request.paths):
            self._failed(f"malformed ScorePaths result: best_index {best}, "
                         f"{len(result.scores)} scores for {len(request.paths)} paths")
            return
        self._budget.success()
        self._set_status("planning")
        c = result.critics[best] if best < len(result.critics) else None
        if (c is not None and len(request.paths) == self._fan["num_paths"]
                and predicted_collision(list(c.names), list(c.costs))):
            # Every arc ahead is predicted to collide: ask again at once, with the arcs that
            # turn round, rather than drive into what the robot faces.
            self.get_logger().info("best arc ahead predicted to collide: stopping and asking "
                                   "again with arcs that turn round")
            pose = self._pose or request.pose
            self._stop(pose)  # do not keep driving the last path while the answer comes
            self._send(pose, turn_round=True)
            return
        self._follow(request.paths[best])
        pose = self._pose or request.pose
        self._followed_at = pose
        costs = ""
        if c is not None:
            costs = ", " + " ".join(f"{n}={v:.3g}" for n, v in zip(c.names, c.costs, strict=False))
        took = seconds(result.planning_time)
        self.get_logger().info(
            f"best path {best} of {len(request.paths)} ({request.labels[best]}, score "
            f"{result.scores[best]:.3f}{costs}); "
            f"{distance(pose, self._goal):.2f} m to the goal; ScorePaths took "
            f"{took * 1e3:.0f} ms in the node")

    def _stuck(self, pose: tuple[float, float, float]) -> bool:
        """Whether the robot has neither moved nor turned since it was last sent a path (it is
        blocked, or the path led nowhere): then the candidates include turning round."""
        last = self._followed_at
        return last is not None and stuck(last, pose)

    def _failed(self, reason: str, *, warmup_excused: bool = False) -> None:
        give_up = self._budget.failure(reason, self._elapsed(), warmup_excused=warmup_excused)
        self.get_logger().warning(reason, throttle_duration_sec=5.0)
        if give_up:
            self._give_up(give_up)

    def _give_up(self, reason: str) -> None:
        self._finish(f"gave_up: {reason}", f"giving up: {reason}", error=True)

    def _finish(self, status: str, message: str, *, error: bool = False) -> None:
        self._finished = True
        if self._request is not None and self._request.handle is not None:
            self._request.handle.cancel_goal_async()
        self._request = None
        self._timer.cancel()
        if self._pose is not None:
            self._stop(self._pose)
        (self.get_logger().error if error else self.get_logger().info)(message)
        self._set_status(status)
        if self._exit_after >= 0.0:
            self._exit_timer = self.create_timer(self._exit_after, self._on_exit_timer)

    def _exit(self) -> None:
        self.get_logger().info("done: exiting")
        self.context.try_shutdown()

    def _stop(self, pose: tuple[float, float, float]) -> None:
        """A path of just the current pose: the follower is done at once and brakes."""
        stop = CandidatePath(self._frame, np.array([[pose[0], pose[1], 0.0]]),
                             np.array([[0.0, 0.0, math.sin(pose[2] / 2), math.cos(pose[2] / 2)]]),
                             np.zeros(1))
        self._follow(stop)

    def _follow(self, path: CandidatePath) -> None:
        msg = paths_to_msgs([path])[0]
        stamp = self.get_clock().now().to_msg()
        msg.header.stamp = stamp
        for pose in msg.poses:
            pose.header.stamp = stamp
        self._follow_pub.publish(msg)
        self._plan_pub.publish(msg)

    def _pose_msg(self, pose: Sequence[float], stamp: Time) -> PoseStamped:
        msg = PoseStamped()
        msg.header.stamp = stamp.to_msg()
        msg.header.frame_id = self._frame
        msg.pose.position.x, msg.pose.position.y = float(pose[0]), float(pose[1])
        msg.pose.orientation.z = math.sin(0.5 * pose[2])
        msg.pose.orientation.w = math.cos(0.5 * pose[2])
        return msg

    def _set_status(self, status: str) -> None:
        if status != self._status:
            self._status = status
            self._status_pub.publish(String(data=status))

    def destroy_node(self) -> None:
        # Called twice when the node ends itself: by the context's shutdown, then by run_node.
        if self._score_client is not None:
            self._score_client.destroy()
            self._score_client = None
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(DemoPlanner, lambda: SingleThreadedExecutor(), "demo_planner", args)


if __name__ == "__main__":
    raise SystemExit(main())
