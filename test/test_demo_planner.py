"""The demo planner: its candidate fan and bookkeeping as plain functions, the node against a
scripted ScorePaths server in this process, and the whole loop (simulator, mirage node, planner)
over a real ROS 2 graph."""

from __future__ import annotations

import math
import time
from collections import deque

import numpy as np
import pytest
from nav_msgs.msg import Odometry, Path
from rclpy.action import ActionServer
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from ros_harness import REPO, node_process, ros_client
from std_msgs.msg import String

from mirage_ros.action import ScorePaths
from mirage_ros.rollout import arc_fan
from mirage_ros.ros.demo_planner import (
    Budget,
    DemoPlanner,
    bearing,
    candidate_fan,
    check_parameters,
    reached,
    stuck,
    turning_curvatures,
)

Result = ScorePaths.Result
# Depth 10: statuses can follow each other quickly; transient local: the last one is latched.
LATCHED = QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL)
FAN = dict(num_paths=5, length=1.5, poses=9, max_curvature=1.2, frame_id="map")


# ------------------------------------------------------------------------- plain functions


def test_the_fan_starts_at_the_robot_and_adds_ways_to_turn_round_when_the_goal_is_behind():
    pose = (1.0, 2.0, 0.5)
    ahead = (1.0 + 3 * math.cos(0.5), 2.0 + 3 * math.sin(0.5))
    paths, labels = candidate_fan(pose, ahead, **FAN)
    assert labels == [f"arc {k:+.2f} 1/m" for k in (-1.2, -0.6, 0.0, 0.6, 1.2)]
    for p in paths:
        assert p.frame_id == "map" and len(p) == 9
        np.testing.assert_allclose(p.positions[0], (1.0, 2.0, 0.0), atol=1e-12)
        steps = np.linalg.norm(np.diff(p.positions, axis=0), axis=1)
        assert steps.sum() == pytest.approx(1.5, rel=0.02)  # chords of an arc of 1.5 m
    # The middle path is straight ahead, towards the goal.
    np.testing.assert_allclose(paths[2].positions[-1, :2],
                               (1.0 + 1.5 * math.cos(0.5), 2.0 + 1.5 * math.sin(0.5)))
    fan = arc_fan(5, length=1.5, poses=9, max_curvature=1.2, start_xy=(1.0, 2.0), start_yaw=0.5)
    np.testing.assert_allclose(paths[0].positions, fan[0].positions)

    def end_yaw(p) -> float:
        q = p.quaternions_xyzw[-1]
        return 2 * math.atan2(q[2], q[3])

    behind = (1.0 - 3 * math.cos(0.5), 2.0 - 3 * math.sin(0.5))
    assert abs(bearing(pose, behind)) == pytest.approx(math.pi)
    paths, labels = candidate_fan(pose, behind, **FAN)
    assert len(paths) == len(labels) == 5 + 4 + 3
    tight = turning_curvatures(1.5, 1.2)
    assert tight[1] >= math.pi / 1.5 and 1.2 < tight[0] < tight[1]  # the tightest turns round
    assert labels[5:9] == [f"tight arc {s * k:+.2f} 1/m" for k in tight for s in (-1, 1)]
    for p, k in zip(paths[5:9], [s * k for k in tight for s in (-1, 1)], strict=True):
        assert math.remainder(end_yaw(p) - 0.5 - k * 1.5, 2 * math.pi) == pytest.approx(0.0)
    # Turning round on the spot: arcs that start where the robot is, facing backwards.
    assert labels[9:] == ["turn round, arc -1.20 1/m", "turn round, arc +0.00 1/m",
                          "turn round, arc +1.20 1/m"]
    straight_back = paths[10]
    np.testing.assert_allclose(straight_back.positions[0, :2], (1.0, 2.0), atol=1e-12)
    np.testing.assert_allclose(straight_back.positions[-1, :2],
                               (1.0 - 1.5 * math.cos(0.5), 2.0 - 1.5 * math.sin(0.5)))
    assert math.remainder(end_yaw(straight_back) - 0.5 - math.pi, 2 * math.pi) == \
        pytest.approx(0.0, abs=1e-9)
    # A goal off to the side (80 degrees) is not "behind"; a stuck robot gets the options anyway.
    side = (1.0 + math.cos(0.5 + math.radians(80)), 2.0 + math.sin(0.5 + math.radians(80)))
    assert len(candidate_fan(pose, side, **FAN)[0]) == 5
    assert len(candidate_fan(pose, side, turn_round=True, **FAN)[0]) == 12


def test_a_robot_that_neither_moved_nor_turned_is_stuck():
    assert stuck((1.0, 1.0, 0.0), (1.02, 1.0, 0.05))
    assert not stuck((1.0, 1.0, 0.0), (1.2, 1.0, 0.0))  # drove
    assert not stuck((1.0, 1.0, 3.1), (1.0, 1.0, -3.0))  # turned on the spot (across +-pi)


def test_arrival_is_a_distance_to_the_goal_position():
    assert reached((1.0, 1.0, 3.0), (1.2, 1.2), 0.3)
    assert not reached((1.0, 1.0, 0.0), (1.3, 1.3), 0.3)


def test_the_budget_excuses_warmup_and_counts_failures_in_a_row():
    budget = Budget(timeout=60.0, max_failures=3, warmup=10.0)
    for t in range(5):  # NO_MEMORY while the node warms up
        assert budget.failure("NO_MEMORY", float(t), warmup_excused=True) is None
    assert budget.failures == 0
    assert budget.failure("INTERNAL_ERROR", 5.0) is None  # not excused, even in warmup
    assert budget.failure("NO_MEMORY", 11.0, warmup_excused=True) is None  # counts after warmup
    budget.success()
    assert budget.failures == 0
    assert budget.failure("a", 12.0) is None and budget.failure("b", 13.0) is None
    reason = budget.failure("NO_MEMORY: nothing observed", 14.0, warmup_excused=True)
    assert reason == "3 failures in a row, the last: NO_MEMORY: nothing observed"
    assert budget.expired(59.9) is None
    assert budget.expired(60.0) == "goal not reached within 60 s"


def test_parameters_are_checked():
    from mirage_ros.ros.demo_planner import DEFAULTS

    assert check_parameters(dict(DEFAULTS)) is None
    assert "goal" in check_parameters({**DEFAULTS, "goal": [1.0, 2.0]})
    assert "goal" in check_parameters({**DEFAULTS, "goal": [1.0, math.nan, 0.0]})
    assert check_parameters({**DEFAULTS, "goal": [1, 2, 0]}) is None
    assert "replan_period" in check_parameters({**DEFAULTS, "replan_period": 0.0})
    assert "poses_per_path" in check_parameters({**DEFAULTS, "poses_per_path": 1})


# ------------------------------------------------------------------------- node, in process


class ScriptedServer:
    """A ScorePaths server that answers with the next scripted result (the last one repeats)."""

    def __init__(self, node, results: list[tuple[int, str, int]]) -> None:
        self.results = deque(results)
        self.goals: list[ScorePaths.Goal] = []
        self.server = ActionServer(node, ScorePaths, "/score_paths", self._execute)

    def _execute(self, handle) -> ScorePaths.Result:
        goal = handle.request
        self.goals.append(goal)
        code, message, best = self.results[0] if len(self.results) == 1 \
            else self.results.popleft()
        if code != Result.SUCCESS:
            handle.abort()
            return Result(error_code=code, error_msg=message)
        handle.succeed()
        n = len(goal.paths)
        return Result(error_code=code, scores=[-1.0] * n, best_index=best)


def _odom(x: float, y: float, yaw: float) -> Odometry:
    msg = Odometry()
    msg.header.frame_id = "map"
    msg.pose.pose.position.x, msg.pose.pose.position.y = x, y
    msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
    return msg


def _planner(client, **params) -> DemoPlanner:
    planner = DemoPlanner(context=client.context, parameter_overrides=[
        Parameter(name, value=value) for name, value in params.items()])
    client.executor.add_node(planner)
    return planner


def _watch(client) -> dict[str, list]:
    got: dict[str, list] = {"follow": [], "plan": [], "status": []}
    node = client.node
    node.create_subscription(Path, "/follow_path", got["follow"].append, 10)
    node.create_subscription(Path, "/demo_planner/plan", got["plan"].append, 10)
    node.create_subscription(String, "/demo_planner/status",
                             lambda m: got["status"].append(m.data), LATCHED)
    return got


@pytest.mark.ros
def test_planner_sends_the_fan_follows_the_best_path_and_stops_at_the_goal():
    with ros_client("scripted_world") as client:
        server = ScriptedServer(client.node, [
            (Result.NO_MEMORY, "nothing observed yet", 0),
            (Result.NO_MEMORY, "nothing observed yet", 0),
            (Result.SUCCESS, "", 3)])
        odom = client.node.create_publisher(Odometry, "/odom", qos_profile_sensor_data)
        got = _watch(client)
        planner = _planner(client, goal=[5.0, 0.0, 0.0], replan_period=0.1, warmup=30.0,
                           max_failures=2, num_paths=5, num_previews=2)
        try:
            def follow_path_after_odometry() -> bool:
                odom.publish(_odom(0.0, 0.0, 0.0))
                return len(got["follow"]) > 0

            client.spin_until(follow_path_after_odometry, 20.0, "a path to follow")
            client.spin_until(lambda: len(got["status"]) >= 3, 5.0, "three statuses")
            # Two NO_MEMORY answers during warmup did not count against max_failures = 2.
            assert got["status"][:3] == [
                "planning", "error: NO_MEMORY: nothing observed yet", "planning"]
            goal = server.goals[-1]
            assert len(goal.paths) == 5 and goal.num_previews == 2 and goal.horizon == 0
            assert goal.header.frame_id == "map" and goal.goal_pose.header.frame_id == "map"
            assert goal.goal_pose.pose.position.x == 5.0 and goal.goal_pose.pose.orientation.w == 1
            path = got["follow"][0]
            assert path.header.frame_id == "map" and path.header.stamp.sec > 0
            expected = arc_fan(5, length=1.5, poses=9, max_curvature=1.2)[3].positions
            xy = np.array([(p.pose.position.x, p.pose.position.y) for p in path.poses])
            np.testing.assert_allclose(xy, expected[:, :2], atol=1e-9)
            client.spin_until(lambda: len(got["plan"]) > 0, 5.0, "the same path on ~/plan")
            assert got["plan"][0].poses == path.poses

            # Within goal_tolerance: stop where it stands and say so.
            def stopping() -> bool:
                odom.publish(_odom(4.8, 0.1, 0.2))
                return "arrived" in got["status"]

            client.spin_until(stopping, 10.0, "arrival")
            stop = got["follow"][-1]
            assert len(stop.poses) == 1
            assert (stop.poses[0].pose.position.x, stop.poses[0].pose.position.y) == (4.8, 0.1)
            sent = len(server.goals)
            deadline = time.monotonic() + 0.5
            client.spin_until(lambda: time.monotonic() > deadline, 2.0, "a quiet moment")
            assert len(server.goals) == sent  # no planning after arrival
        finally:
            client.executor.remove_node(planner)
            planner.destroy_node()


@pytest.mark.ros
def test_planner_stops_and_asks_again_with_turning_arcs_when_the_best_arc_would_collide():
    from mirage_ros.msg import PathCritics

    class BlockedAhead(ScriptedServer):
        """Every arc of a fan without turning arcs collides; with them, path 0 is free."""

        def _execute(self, handle) -> ScorePaths.Result:
            goal = handle.request
            self.goals.append(goal)
            n = len(goal.paths)
            blocked = n == 5
            handle.succeed()
            critics = [PathCritics(names=["goal_pose", "clearance"],
                                   costs=[1.0, 10.0 if blocked else 0.0]) for _ in range(n)]
            return Result(error_code=Result.SUCCESS, scores=[-1.0] * n,
                          best_index=2 if blocked else 0, critics=critics)

    with ros_client("blocked_world") as client:
        server = BlockedAhead(client.node, [])
        odom = client.node.create_publisher(Odometry, "/odom", qos_profile_sensor_data)
        got = _watch(client)
        planner = _planner(client, goal=[5.0, 0.0, 0.0], replan_period=5.0, warmup=30.0,
                           num_paths=5)
        try:
            def followed() -> bool:
                odom.publish(_odom(1.0, 2.0, 0.0))
                return any(len(p.poses) > 1 for p in got["follow"])

            client.spin_until(followed, 20.0, "a path after asking again")
            # One replan period (5 s) has not passed: the second request came from the rule.
            assert [len(g.paths) for g in server.goals] == [5, 12]
            assert len(got["follow"][0].poses) == 1  # stopped first, where it stood
            assert (got["follow"][0].poses[0].pose.position.x,
                    got["follow"][0].poses[0].pose.position.y) == (1.0, 2.0)
            fan, _ = candidate_fan((1.0, 2.0, 0.0), (5.0, 0.0), turn_round=True, **FAN)
            driven = next(p for p in got["follow"] if len(p.poses) > 1)
            xy = np.array([(p.pose.position.x, p.pose.position.y) for p in driven.poses])
            np.testing.assert_allclose(xy, fan[0].positions[:, :2], atol=1e-9)
        finally:
            client.executor.remove_node(planner)
            planner.destroy_node()


@pytest.mark.ros
def test_planner_gives_up_after_max_failures_and_stops_the_robot():
    with ros_client("failing_world") as client:
        ScriptedServer(client.node, [(Result.INTERNAL_ERROR, "boom", 0)])
        odom = client.node.create_publisher(Odometry, "/odom", qos_profile_sensor_data)
        got = _watch(client)
        planner = _planner(client, goal=[5.0, 0.0, 0.0], replan_period=0.05, warmup=0.0,
                           max_failures=3)
        try:
            def giving_up() -> bool:
                odom.publish(_odom(1.0, 0.0, math.pi))
                return any(s.startswith("gave_up") for s in got["status"])

            client.spin_until(giving_up, 20.0, "the planner to give up")
            assert got["status"][-1] == \
                "gave_up: 3 failures in a row, the last: ScorePaths: INTERNAL_ERROR: boom"
            assert "error: INTERNAL_ERROR: boom" in got["status"]
            assert len(got["follow"][-1].poses) == 1  # the stop
            # A late subscriber still gets the final status (transient local).
            late: list[str] = []
            client.node.create_subscription(String, "/demo_planner/status",
                                            lambda m: late.append(m.data), LATCHED)
            client.spin_until(lambda: late, 10.0, "the latched status")
            assert late[-1].startswith("gave_up: 3 failures")
        finally:
            client.executor.remove_node(planner)
            planner.destroy_node()


@pytest.mark.ros
def test_planner_gives_up_at_its_timeout_without_odometry():
    with ros_client("empty_world") as client:
        got = _watch(client)
        planner = _planner(client, replan_period=0.05, timeout=0.3)
        try:
            client.spin_until(lambda: any(s.startswith("gave_up") for s in got["status"]), 10.0,
                              "the timeout")
            assert got["status"][-1] == "gave_up: goal not reached within 0.3 s"
            assert got["follow"] == []  # no pose known: nothing to stop
        finally:
            client.executor.remove_node(planner)
            planner.destroy_node()


# ------------------------------------------------------------------------- the whole loop


@pytest.mark.ros
def test_closes_the_loop_with_the_simulator_and_the_mirage_node():
    sim_args = ["-p", "mode:=path", "-p", "start_pose:=[1.5, 1.0, 0.0]", "-p", "rate_hz:=10.0"]
    camera = ("camera/image_raw", "camera/depth", "camera/camera_info", "odom")
    mirage_args = ["--params-file", str(REPO / "config" / "mirage.yaml")]
    for topic in camera:
        mirage_args += ["-r", f"{topic}:=/mirage_sim/{topic}"]
    planner_args = ["-p", "goal:=[6.5, 1.0, 0.0]", "-p", "replan_period:=0.5",
                    "-r", "odom:=/mirage_sim/odom", "-r", "score_paths:=/mirage/score_paths",
                    "-r", "follow_path:=/mirage_sim/follow_path"]
    with node_process("mirage_ros.ros.sim_node", sim_args) as sim, \
            node_process("mirage_ros.ros.mirage_node", mirage_args) as mirage, \
            node_process("mirage_ros.ros.demo_planner", planner_args) as planner, \
            ros_client("loop_watcher") as client:
        plans: list[Path] = []
        status: list[str] = []
        odom: list[Odometry] = []
        client.node.create_subscription(Path, "/demo_planner/plan", plans.append, 10)
        client.node.create_subscription(String, "/demo_planner/status",
                                        lambda m: status.append(m.data), LATCHED)
        client.node.create_subscription(Odometry, "/mirage_sim/odom", odom.append,
                                        qos_profile_sensor_data)

        def moved() -> float:
            p = odom[-1].pose.pose.position if odom else None
            return math.hypot(p.x - 1.5, p.y - 1.0) if p else 0.0

        client.spin_until(lambda: len(plans) >= 2 and moved() > 0.3, 60.0,
                          "two plans and the robot moving")
        assert "planning" in status
        assert all(p.header.frame_id == "map" and len(p.poses) >= 1 for p in plans)
        log = planner.log()
        assert "best path" in log and "m to the goal" in log
        assert "following a path" in sim.log()
        for proc in (planner, mirage, sim):
            assert proc.stop() == 0, proc.log()
            assert "Traceback" not in proc.log()


@pytest.mark.ros
def test_exits_on_its_own_after_finishing_when_asked_to():
    args = ["-p", "timeout:=0.5", "-p", "replan_period:=0.1", "-p", "exit_after_finish:=0.2"]
    with node_process("mirage_ros.ros.demo_planner", args) as planner:
        planner.proc.wait(timeout=30)
        assert planner.proc.returncode == 0, planner.log()
        log = planner.log()
        assert "giving up: goal not reached within 0.5 s" in log and "done: exiting" in log
        assert "Traceback" not in log
    with node_process("mirage_ros.ros.demo_planner", ["-p", "goal:=[1.0, 2.0]"]) as planner:
        planner.proc.wait(timeout=30)
        assert planner.proc.returncode == 2
        assert "goal must be [x, y, yaw]" in planner.log()
        assert "Traceback" not in planner.log()
