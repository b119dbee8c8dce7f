"""Regression tests for what fuzzing the node's inputs found (test_fuzz_node.py fuzzes the
running node; these pin each fix down where it lives, most of them without ROS)."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from mirage_ros.rollout import CandidatePath, InvalidPathError, validate_path
from mirage_ros.sensors import (
    MAX_POSITION,
    ObservationPairer,
    check_depth_units,
    check_pose,
    decode_depth,
)

K_ROS = np.array([[100.0, 0.0, 63.5], [0.0, 100.0, 63.5], [0.0, 0.0, 1.0]])

# --- depth in the wrong unit -----------------------------------------------------------------


def test_metres_stored_as_millimetres_are_refused_by_plausibility():
    metres = np.full((4, 5), 2, dtype=np.uint16)  # a wall 2 m away, written as "2" in 16UC1
    metres[0, 0] = 0  # invalid pixels do not count
    with pytest.raises(ValueError, match=r"median of its valid pixels is 0.002 m.*16UC1 depth "
                                         r"must be millimetres; are these metres\?"):
        check_depth_units(decode_depth(metres, "16UC1"), "16UC1")


def test_millimetres_stored_as_metres_are_refused_by_plausibility():
    mm = np.full((4, 5), 2000.0, dtype=np.float32)
    mm[1, :] = np.nan
    with pytest.raises(ValueError, match=r"2000 m.*32FC1 depth must be metres; are these "
                                         r"millimetres\?"):
        check_depth_units(decode_depth(mm, "32FC1"), "32FC1")


def test_denormal_metres_are_refused():
    tiny = np.full((3, 3), 1e-40, dtype=np.float32)
    with pytest.raises(ValueError, match="nearer than any depth camera measures"):
        check_depth_units(decode_depth(tiny, "32FC1"), "32FC1")


@pytest.mark.parametrize("encoding, raw", [
    ("16UC1", np.array([[0, 150, 4000], [65535, 800, 0]], dtype=np.uint16)),  # 0.15..65 m
    ("32FC1", np.array([[np.nan, 0.3, 2.5], [60.0, np.inf, 0.0]], dtype=np.float32)),
    ("32FC1", np.full((2, 2), np.nan, dtype=np.float32)),  # nothing seen: nothing to judge
])
def test_plausible_depth_passes(encoding, raw):
    check_depth_units(decode_depth(raw, encoding), encoding)


def test_depth_plausibility_of_a_large_image_is_cheap():
    depth = np.full((2000, 3000), 1.5, dtype=np.float32)
    started = time.perf_counter()
    check_depth_units(depth, "32FC1")
    assert time.perf_counter() - started < 0.1


# --- camera info -------------------------------------------------------------------------------


@pytest.mark.parametrize("index, value, message", [
    (0, 1e-310, "fx = 1e-310 px gives a 180 degree field of view"),
    (4, 1e300, "fy = 1e\\+300 px gives a 7.334e-297 degree field of view"),
    (0, 0.2, "fx = 0.2 px"),  # a focal length in metres
    (2, 1e12, "principal point cx = 1e\\+12 px lies more than one image size"),
    (5, -500.0, "principal point cy = -500 px"),
])
def test_implausible_intrinsics_are_refused_and_the_previous_kept(index, value, message):
    pairer = ObservationPairer()
    pairer.set_camera_info(K_ROS, 128, 128)
    k = K_ROS.copy().ravel()
    k[index] = value
    with pytest.raises(ValueError, match=message):
        pairer.set_camera_info(k, 128, 128)
    np.testing.assert_array_equal(pairer.camera_info[0][0], [100.0, 0.0, 64.0])


def test_a_fisheye_wide_pinhole_and_a_telephoto_pass():
    pairer = ObservationPairer()
    pairer.set_camera_info(np.diag([5.0, 5.0, 1.0]) + [[0, 0, 63.5], [0, 0, 63.5], [0, 0, 0]],
                           128, 128)  # 170 degrees
    pairer.set_camera_info(np.diag([30000.0, 30000.0, 1.0]), 128, 128)  # 0.24 degrees


# --- positions beyond any map --------------------------------------------------------------------


def test_poses_beyond_max_position_are_refused():
    pose = np.eye(4)
    pose[1, 3] = MAX_POSITION
    check_pose(pose)
    pose[1, 3] = -1e300
    with pytest.raises(ValueError, match="within 1e\\+07 m of the origin"):
        check_pose(pose)
    pairer = ObservationPairer()
    with pytest.raises(ValueError):
        pairer.add_pose(0.0, pose)
    assert len(pairer.poses) == 0


def test_paths_beyond_max_position_name_the_path_and_pose():
    # A path at 1e300 m used to reach the engine: INTERNAL_ERROR (NaN camera poses, overflowing
    # path length); at 1e30 m it lost all precision and scored as the best path.
    n = 4
    positions = np.zeros((n, 3))
    positions[2, 0] = 1e30
    quats = np.tile([0.0, 0.0, 0.0, 1.0], (n, 1))
    with pytest.raises(InvalidPathError, match="path 3, pose 2: position .* farther than 1e\\+07"):
        validate_path(CandidatePath("map", positions, quats, np.zeros(n)), 3, max_poses=10,
                      quaternion_tolerance=0.01)


# --- the node's callbacks, in-process -----------------------------------------------------------


@pytest.fixture(scope="module")
def node():
    import rclpy

    from mirage_ros.ros.mirage_node import MirageNode

    context = rclpy.Context()
    rclpy.init(context=context, args=["--ros-args", "-r", "__node:=mirage_checks", "-p",
                                      "critics:=[path_length,path_turning]"])
    node = MirageNode(context=context)
    try:
        yield node
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def stamp_at(seconds: float):
    from builtin_interfaces.msg import Time

    return Time(sec=int(seconds), nanosec=int((seconds % 1) * 1e9))


def odometry(stamp: float, x: float = 0.0):
    from nav_msgs.msg import Odometry

    msg = Odometry()
    msg.header.frame_id, msg.header.stamp = "map", stamp_at(stamp)
    msg.pose.pose.position.x, msg.pose.pose.orientation.w = x, 1.0
    return msg


def bad_path_message():
    from mirage_ros.msg import CandidatePaths
    from mirage_ros.rollout import arc_fan
    from mirage_ros.ros.conversions import paths_to_msgs

    msg = CandidatePaths(paths=paths_to_msgs(arc_fan(2)))
    msg.header.frame_id = "map"
    msg.paths[1].poses[0].pose.position.y = math.nan
    return msg


def test_candidate_paths_are_validated_and_counted_even_while_scoring(node):
    # Malformed ~/candidate_paths messages used to be stored as "pending" unvalidated and
    # checked only when scored: one superseded while another was scored was never counted, and
    # none was ever counted in /diagnostics.
    before = node._bad_inputs.get("candidate_paths", 0)
    with node._busy["stream"]:  # a stream being scored on another thread
        for _ in range(3):
            node._on_candidate_paths(bad_path_message())
    assert node._bad_inputs["candidate_paths"] == before + 3
    assert node._stream_pending is None


def test_stamps_far_ahead_of_the_clock_are_dropped_and_past_ones_accepted(node):
    now = node.get_clock().now().nanoseconds * 1e-9
    before = dict(node._bad_inputs)
    node._on_odom(odometry(now + 3600.0))
    assert node._bad_inputs["odom"] == before.get("odom", 0) + 1
    assert node._pairer.poses.newest_stamp is None or node._pairer.poses.newest_stamp < now + 1
    node._on_odom(odometry(now))
    node._on_odom(odometry(now - 86400.0))  # a bag replayed without /clock: a clock restart
    assert node._bad_inputs.get("odom", 0) == before.get("odom", 0) + 1
    assert node._pairer.poses.newest_stamp == pytest.approx(now - 86400.0)
    assert node._pairer.resets >= 1


def test_odometry_beyond_any_map_is_dropped(node):
    before = node._bad_inputs.get("odom", 0)
    node._on_odom(odometry(node.get_clock().now().nanoseconds * 1e-9, x=1e300))
    assert node._bad_inputs["odom"] == before + 1


def test_each_kind_of_input_gets_its_own_throttled_warning(node, capfd):
    # The four sensor callbacks shared one throttled call site: a flood of bad images hid every
    # warning about bad depth, camera info and odometry for the next 5 seconds.
    from sensor_msgs.msg import CameraInfo, Image

    capfd.readouterr()
    node._on_image(Image(encoding="rgba16", width=2, height=2, step=16))
    depth = Image(encoding="rgb8", width=2, height=2, step=6)
    depth.data = bytes(12)
    node._on_depth(depth)
    node._on_camera_info(CameraInfo(width=4, height=4))
    node._on_image(Image(encoding="rgba16", width=2, height=2, step=16))
    err = capfd.readouterr().err
    assert "dropped a image message: " in err
    assert "dropped a depth message: unsupported depth encoding 'rgb8'" in err
    assert "dropped a camera_info message: " in err
    assert err.count("dropped a image message") == 1  # still throttled per kind


def test_goal_checks_name_the_field(node):
    from mirage_ros.action import ScorePaths
    from mirage_ros.ros.mirage_node import GoalError

    goal = ScorePaths.Goal()
    goal.goal_image.height, goal.goal_image.encoding = 4, "rgb8"
    goal.goal_image.data = bytes(12)  # width 0 used to mean "no goal image", data or not
    with pytest.raises(GoalError, match="goal_image: zero size .* 12 bytes of data"):
        node._parse_goal(goal)
    goal = ScorePaths.Goal()
    goal.goal_pose.header.frame_id = "map"
    goal.goal_pose.pose.position.z, goal.goal_pose.pose.orientation.w = -1e300, 1.0
    with pytest.raises(GoalError, match="goal_pose: position .* farther than 1e\\+07 m"):
        node._parse_goal(goal)


def test_drop_counts_are_exact_under_concurrent_callbacks(node):
    before = node._bad_inputs.get("odom", 0)
    bad = odometry(0.0)
    bad.header.frame_id = "odom"
    threads = [threading.Thread(target=lambda: [node._on_odom(bad) for _ in range(200)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert node._bad_inputs["odom"] == before + 800
