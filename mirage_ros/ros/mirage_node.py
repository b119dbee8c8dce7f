"""The imagination node: serves ScorePaths on ~/score_paths and scores ~/candidate_paths.

At this stage it scores with the path-geometry critics only; the memory and imagination critics
join as the latent memory and the world model land. Every goal is validated first, and a bad
goal is answered with INVALID_INPUT (or TRANSFORM_ERROR) and a message naming the path and pose:
the node never crashes on what a planner sends.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

from mirage_ros.action import ScorePaths
from mirage_ros.msg import CandidatePaths, PathScores
from mirage_ros.rollout import (
    CandidatePath,
    InvalidPathError,
    PathLengthCritic,
    PathTurningCritic,
    ScoreTable,
    score_paths,
    validate_path,
)
from mirage_ros.ros.conversions import (
    critics_to_msgs,
    duration_from_seconds,
    path_from_msg,
    scores_to_list,
)
from mirage_ros.ros.image_bridge import imgmsg_to_numpy
from mirage_ros.ros.spin import run_node

Result = ScorePaths.Result

# Parameter defaults; config/mirage.yaml repeats them (a test keeps the two in step).
DEFAULTS: dict[str, object] = {
    "map_frame": "map",
    "horizon": 8,
    "max_horizon": 64,
    "max_paths": 1024,
    "max_poses_per_path": 10000,
    "quaternion_tolerance": 0.01,
    "critics.path_length.weight": 1.0,
    "critics.path_turning.weight": 0.5,
}

DESCRIPTIONS: dict[str, str] = {
    "map_frame": "frame of the latent memory; paths must be given in it (tf lookups come later)",
    "horizon": "imagined steps per path when a goal asks for 0",
    "max_horizon": "largest horizon a goal may ask for",
    "max_paths": "largest number of candidate paths in one goal",
    "max_poses_per_path": "largest number of poses in one candidate path",
    "quaternion_tolerance": "allowed | |q| - 1 | before an orientation is refused",
    "critics.path_length.weight": "weight of the path length critic (cost: metres)",
    "critics.path_turning.weight": "weight of the path turning critic (cost: radians)",
}

CRITICS = (PathLengthCritic(), PathTurningCritic())


class GoalError(Exception):
    """A goal that cannot be served; carries the ScorePaths result code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _ActiveGoal:
    handle: ServerGoalHandle
    preempted: threading.Event


class MirageNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("mirage", **kwargs)
        for name, default in DEFAULTS.items():
            descriptor = ParameterDescriptor(description=DESCRIPTIONS[name])
            self.declare_parameter(name, default, descriptor)
        problem = _check_parameters({n: self.get_parameter(n).value for n in DEFAULTS})
        if problem:
            raise ValueError(f"invalid parameter: {problem}")
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._lock = threading.Lock()
        self._active: _ActiveGoal | None = None

        self._score_server = ActionServer(
            self,
            ScorePaths,
            "~/score_paths",
            execute_callback=self._execute,
            goal_callback=self._on_goal,
            handle_accepted_callback=self._on_accepted,
            cancel_callback=self._on_cancel,
            callback_group=ReentrantCallbackGroup(),
        )
        self._scores_pub = self.create_publisher(PathScores, "~/path_scores", 10)
        self._paths_sub = self.create_subscription(
            CandidatePaths,
            "~/candidate_paths",
            self._on_candidate_paths,
            10,
            callback_group=MutuallyExclusiveCallbackGroup(),
        )
        self.get_logger().info(
            f"serving {self.resolve_topic_name('~/score_paths', only_expand=True)} "
            f"in frame '{self._param('map_frame')}'")

    # ---------------------------------------------------------------- callbacks (dispatch only)

    def _on_goal(self, goal: ScorePaths.Goal) -> GoalResponse:
        # Malformed goals are accepted and answered with INVALID_INPUT: a rejection carries no
        # reason, and the planner deserves to know which path was wrong.
        return GoalResponse.ACCEPT

    def _on_accepted(self, handle: ServerGoalHandle) -> None:
        # One goal at a time, newest wins: a planner that sends a new query no longer needs the
        # old one (Nav2's preemption semantics).
        with self._lock:
            if self._active is not None:
                self._active.preempted.set()
            self._active = _ActiveGoal(handle, threading.Event())
        handle.execute()

    def _on_cancel(self, handle: ServerGoalHandle) -> CancelResponse:
        return CancelResponse.ACCEPT

    def _on_candidate_paths(self, msg: CandidatePaths) -> None:
        try:
            table = self._score(self._parse_paths(msg.paths, msg.header.frame_id))
        except GoalError as err:
            self.get_logger().warning(
                f"~/candidate_paths: {err}", throttle_duration_sec=5.0)
            return
        self._scores_pub.publish(PathScores(
            header=msg.header,
            scores=scores_to_list(table),
            best_index=table.best_index,
            critics=critics_to_msgs(table),
        ))

    def _on_set_parameters(self, params: Sequence[Parameter]) -> SetParametersResult:
        values = {n: self.get_parameter(n).value for n in DEFAULTS}
        values.update({p.name: p.value for p in params if p.name in DEFAULTS})
        problem = _check_parameters(values)
        return SetParametersResult(successful=problem is None, reason=problem or "")

    # ---------------------------------------------------------------- goal execution

    def _execute(self, handle: ServerGoalHandle) -> ScorePaths.Result:
        started = time.monotonic()
        with self._lock:
            active = self._active if self._active and self._active.handle is handle else None
        preempted = active.preempted if active else threading.Event()
        try:
            result = self._serve(handle, handle.request, preempted)
        except GoalError as err:
            result = Result(error_code=err.code, error_msg=str(err))
        except Exception as err:  # noqa: BLE001 - a bug must not take the node down
            self.get_logger().error(f"ScorePaths failed: {err!r}")
            result = Result(error_code=Result.INTERNAL_ERROR, error_msg=f"internal error: {err!r}")
        finally:
            with self._lock:
                if self._active is not None and self._active.handle is handle:
                    self._active = None
        result.planning_time = duration_from_seconds(time.monotonic() - started)
        if result.error_code == Result.SUCCESS:
            handle.succeed()
        elif result.error_code == Result.CANCELED and handle.is_cancel_requested:
            handle.canceled()
        else:
            handle.abort()
        return result

    def _serve(
        self, handle: ServerGoalHandle, goal: ScorePaths.Goal, preempted: threading.Event
    ) -> ScorePaths.Result:
        paths = self._parse_paths(goal.paths, goal.header.frame_id)
        horizon = goal.horizon or int(self._param("horizon"))
        if horizon > int(self._param("max_horizon")):
            raise GoalError(
                Result.INVALID_INPUT,
                f"horizon {horizon} exceeds max_horizon {self._param('max_horizon')}")
        self._check_goal_extras(goal)

        steps_total = len(paths) * horizon
        self._check_interrupt(handle, preempted)
        table = self._score(paths)
        self._check_interrupt(handle, preempted)
        handle.publish_feedback(
            ScorePaths.Feedback(steps_done=steps_total, steps_total=steps_total))
        return Result(
            error_code=Result.SUCCESS,
            scores=scores_to_list(table),
            best_index=table.best_index,
            critics=critics_to_msgs(table),
        )

    def _check_interrupt(self, handle: ServerGoalHandle, preempted: threading.Event) -> None:
        if handle.is_cancel_requested:
            raise GoalError(Result.CANCELED, "canceled by the client")
        if preempted.is_set():
            raise GoalError(Result.PREEMPTED, "preempted by a newer ScorePaths goal")

    # ---------------------------------------------------------------- validation and scoring

    def _parse_paths(self, msgs: Sequence, goal_frame: str) -> list[CandidatePath]:
        if len(msgs) == 0:
            raise GoalError(Result.INVALID_INPUT, "goal has no paths")
        max_paths = int(self._param("max_paths"))
        if len(msgs) > max_paths:
            raise GoalError(
                Result.INVALID_INPUT, f"goal has {len(msgs)} paths; max_paths is {max_paths}")
        map_frame = str(self._param("map_frame"))
        paths = []
        for i, msg in enumerate(msgs):
            try:
                path = validate_path(
                    path_from_msg(msg, goal_frame),
                    i,
                    max_poses=int(self._param("max_poses_per_path")),
                    quaternion_tolerance=float(self._param("quaternion_tolerance")),
                )
            except InvalidPathError as err:
                raise GoalError(Result.INVALID_INPUT, str(err)) from None
            if path.frame_id != map_frame:
                raise GoalError(
                    Result.TRANSFORM_ERROR,
                    f"path {i}: frame '{path.frame_id}' cannot be resolved to '{map_frame}' "
                    f"(this node has no tf lookup yet; send paths in '{map_frame}')")
            paths.append(path)
        return paths

    def _check_goal_extras(self, goal: ScorePaths.Goal) -> None:
        img = goal.goal_image
        if img.width or img.height or len(img.data):
            try:
                imgmsg_to_numpy(img)
            except ValueError as err:
                raise GoalError(Result.INVALID_INPUT, f"goal_image: {err}") from None
        if goal.goal_pose.header.frame_id:
            p, q = goal.goal_pose.pose.position, goal.goal_pose.pose.orientation
            values = (p.x, p.y, p.z, q.x, q.y, q.z, q.w)
            if not all(math.isfinite(v) for v in values):
                raise GoalError(Result.INVALID_INPUT, "goal_pose: NaN or infinite value")

    def _score(self, paths: Sequence[CandidatePath]) -> ScoreTable:
        weights = [float(self._param(f"critics.{c.name}.weight")) for c in CRITICS]
        return score_paths(paths, list(zip(CRITICS, weights, strict=True)))

    def _param(self, name: str) -> object:
        return self.get_parameter(name).value


def _check_parameters(values: dict[str, object]) -> str | None:
    """Return a description of the first invalid parameter value, or None."""
    for name in ("horizon", "max_horizon", "max_paths", "max_poses_per_path"):
        if not isinstance(values[name], int) or values[name] < 1:
            return f"{name} must be a positive integer, got {values[name]!r}"
    if values["horizon"] > values["max_horizon"]:
        return f"horizon {values['horizon']} exceeds max_horizon {values['max_horizon']}"
    tol = values["quaternion_tolerance"]
    if not isinstance(tol, float) or not 0.0 < tol < 1.0:
        return f"quaternion_tolerance must be in (0, 1), got {tol!r}"
    for name, value in values.items():
        if name.endswith(".weight") and (not isinstance(value, float) or not value >= 0.0
                                         or not math.isfinite(value)):
            return f"{name} must be a finite float >= 0, got {value!r}"
    if not values["map_frame"]:
        return "map_frame must not be empty"
    return None


def main(args: list[str] | None = None) -> int:
    return run_node(MirageNode, lambda: MultiThreadedExecutor(num_threads=4), "mirage_node", args)


if __name__ == "__main__":
    raise SystemExit(main())
