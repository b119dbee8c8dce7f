"""The sim node over a real ROS 2 graph: it runs in another process, this test subscribes and
drives it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped, Twist
from nav_msgs.msg import Odometry, Path
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import qos_profile_sensor_data
from ros_harness import node_process, ros_client
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Bool

from mirage_ros.ros.image_bridge import imgmsg_to_numpy

pytestmark = pytest.mark.ros

ROOM = """<mujoco><worldbody>
<light pos="0 0 3" dir="0 0 -1"/>
<geom type="box" size="3 2 0.05" pos="0 0 -0.05"/>
<geom type="box" size="3 0.05 1" pos="0 2.05 1"/>
<geom type="box" size="3 0.05 1" pos="0 -2.05 1"/>
<geom type="box" size="0.05 2.1 1" pos="3.05 0 1"/>
<geom type="box" size="0.05 2.1 1" pos="-3.05 0 1"/>
<geom type="box" size="0.5 1 0.5" pos="0 0 0.5"/>
</worldbody></mujoco>"""

# A closed corridor (8 x 1.4 m inside, no door): there is more free space around it than in it.
CORRIDOR = """<mujoco><worldbody>
<light pos="0 0 3" dir="0 0 -1"/>
<geom type="box" size="4.1 0.8 0.05" pos="0 0 -0.05"/>
<geom type="box" size="4.1 0.05 0.5" pos="0 0.75 0.5"/>
<geom type="box" size="4.1 0.05 0.5" pos="0 -0.75 0.5"/>
<geom type="box" size="0.05 0.7 0.5" pos="4.05 0 0.5"/>
<geom type="box" size="0.05 0.7 0.5" pos="-4.05 0 0.5"/>
</worldbody></mujoco>"""


def _subscribe(client, prefix: str) -> dict[str, list]:
    got: dict[str, list] = {name: [] for name in
                            ("image", "depth", "info", "odom", "clock", "collision")}
    node = client.node
    sensor = qos_profile_sensor_data
    node.create_subscription(Image, f"{prefix}/camera/image_raw", got["image"].append, sensor)
    node.create_subscription(Image, f"{prefix}/camera/depth", got["depth"].append, sensor)
    node.create_subscription(CameraInfo, f"{prefix}/camera/camera_info", got["info"].append,
                             sensor)
    node.create_subscription(Odometry, f"{prefix}/odom", got["odom"].append, sensor)
    node.create_subscription(Clock, "/clock", got["clock"].append, sensor)
    node.create_subscription(Bool, f"{prefix}/collision", got["collision"].append, 10)
    return got


def _path(points) -> Path:
    msg = Path()
    msg.header.frame_id = "map"
    for x, y in points:
        pose = PoseStamped()
        pose.pose.position.x, pose.pose.position.y = float(x), float(y)
        pose.pose.orientation.w = 1.0
        msg.poses.append(pose)
    return msg


def test_publishes_camera_depth_info_odometry_and_clock():
    args = ["-p", "rate_hz:=20.0", "-p", "camera.width:=64", "-p", "camera.height:=48",
            "-p", "scene_seed:=3"]
    with node_process("mirage_ros.ros.sim_node", args) as proc:
        with ros_client("sim_watcher") as client:
            got = _subscribe(client, "/mirage_sim")
            client.spin_until(lambda: all(len(v) >= 5 for v in got.values()), 60.0,
                              "five messages on every sim topic")
            image = got["image"][-1]
            assert (image.encoding, image.width, image.height) == ("rgb8", 64, 48)
            assert image.header.frame_id == "camera_optical_frame"
            assert imgmsg_to_numpy(image).std() > 0  # a scene, not a blank frame
            depth = imgmsg_to_numpy(got["depth"][-1])
            assert got["depth"][-1].encoding == "32FC1" and depth.shape == (48, 64)
            assert np.isfinite(depth).mean() > 0.9 and np.nanmin(depth) > 0.0
            info = got["info"][-1]
            f = 32.0 / math.tan(math.radians(45.0))
            # ROS K convention: the principal point of a centred camera is at w/2 - 0.5.
            np.testing.assert_allclose(info.k, [f, 0, 31.5, 0, f, 23.5, 0, 0, 1])
            assert (info.width, info.height) == (64, 48)
            odom = got["odom"][-1]
            assert (odom.header.frame_id, odom.child_frame_id) == ("map", "base_link")
            # Every tick stamps all its messages with the same simulated time...
            image_stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in got["image"]}
            odom_stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in got["odom"]}
            assert image_stamps & odom_stamps
            # ...and /clock advances by 1 / rate_hz per tick.
            clock = [m.clock.sec + 1e-9 * m.clock.nanosec for m in got["clock"]]
            steps = np.diff(clock)
            assert np.all(steps > 0) and np.isclose(np.median(steps), 0.05)
            assert not any(m.data for m in got["collision"])
        assert proc.stop() == 0, proc.log()
        assert "Traceback" not in proc.log()


def test_follows_paths_stops_at_walls_and_takes_velocity_commands(tmp_path):
    scene = tmp_path / "room.xml"
    scene.write_text(ROOM)
    args = ["-p", f"mjcf_path:={scene}", "-p", "mode:=path", "-p", "rate_hz:=20.0",
            "-p", "max_speed:=2.0", "-p", "camera.width:=32", "-p", "camera.height:=32",
            "-p", "start_pose:=[-2.0, -1.5, 0.0]", "-p", "robot_radius:=0.25"]
    with node_process("mirage_ros.ros.sim_node", args) as proc:
        with ros_client("sim_driver") as client:
            got = _subscribe(client, "/mirage_sim")
            paths = client.node.create_publisher(Path, "/mirage_sim/follow_path", 10)
            twists = client.node.create_publisher(Twist, "/mirage_sim/cmd_vel", 10)
            client.spin_until(lambda: paths.get_subscription_count() > 0
                              and twists.get_subscription_count() > 0 and got["odom"],
                              60.0, "discovery of the sim node")

            def position():
                p = got["odom"][-1].pose.pose.position
                return p.x, p.y

            bad = _path([(-2.0, -1.5), (0.0, -1.5)])
            bad.poses[1].pose.position.x = math.nan
            paths.publish(bad)
            client.spin_until(lambda: "~/follow_path ignored" in proc.log(), 30.0,
                              "the malformed path to be refused")
            assert proc.alive() and "pose 1" in proc.log()
            assert position() == pytest.approx((-2.0, -1.5))

            paths.publish(_path([(-2.0, -1.5), (0.0, -1.5), (2.0, -1.5)]))
            client.spin_until(lambda: position()[0] > 1.9, 30.0, "the robot to reach x = 2")
            assert not any(m.data for m in got["collision"])

            # Straight into the wall at x = 3: it must stop a radius short of it and say so.
            paths.publish(_path([(2.0, -1.5), (4.0, -1.5)]))
            client.spin_until(lambda: any(m.data for m in got["collision"]), 30.0,
                              "a collision report")
            assert 2.5 < position()[0] < 3.0 - 0.25 + 1e-6
            assert "collision: stopped" in proc.log()

            params = AsyncParameterClient(client.node, "mirage_sim")
            assert params.wait_for_services(timeout_sec=30.0)
            future = params.set_parameters([Parameter("mode", value="cmd_vel")])
            assert client.result(future).results[0].successful

            def yaw():
                q = got["odom"][-1].pose.pose.orientation
                return 2.0 * math.atan2(q.z, q.w)

            turn = Twist()
            turn.angular.z = 1.0

            def turning():
                twists.publish(turn)
                return yaw() > 0.5

            client.spin_until(turning, 30.0, "the robot to turn on ~/cmd_vel")
            assert proc.alive()


def test_bad_parameters_stop_the_node_with_a_message():
    with node_process("mirage_ros.ros.sim_node", ["-p", "mode:=fly"]) as proc:
        proc.proc.wait(timeout=30)
        assert proc.proc.returncode == 2
        assert "mode must be one of tour, path, cmd_vel" in proc.log()
        assert "Traceback" not in proc.log()


def test_tours_from_its_start_pose_inside_a_closed_building(tmp_path):
    scene = tmp_path / "corridor.xml"
    scene.write_text(CORRIDOR)
    common = ["-p", f"mjcf_path:={scene}", "-p", "rate_hz:=20.0", "-p", "camera.width:=32",
              "-p", "camera.height:=32", "-p", "max_speed:=1.0"]
    # Integers are fine for a pose ([-3, 0, 0] arrives as an integer array).
    with node_process("mirage_ros.ros.sim_node",
                      [*common, "-p", "mode:=tour", "-p", "start_pose:=[-3, 0, 0]"]) as proc:
        with ros_client("sim_tour_watcher") as client:
            got = _subscribe(client, "/mirage_sim")

            def xy() -> np.ndarray:
                return np.array([(m.pose.pose.position.x, m.pose.pose.position.y)
                                 for m in got["odom"]])

            client.spin_until(lambda: len(got["odom"]) > 0 and np.linalg.norm(
                xy() - (-3.0, 0.0), axis=1).max() > 1.0, 60.0, "the tour to get going")
            # (The first messages went out before discovery; the log says where it began.)
            assert "robot at (-3.00, 0.00, yaw 0.00), mode tour" in proc.log()
            assert "not walled in" not in proc.log()
            assert (np.abs(xy()[:, 0]) < 4.0).all() and (np.abs(xy()[:, 1]) < 0.7).all()
        assert proc.stop() == 0, proc.log()
    with node_process("mirage_ros.ros.sim_node",
                      [*common, "-p", "mode:=path", "-p", "start_pose:=[0.0, 0.75, 0.0]"]) as proc:
        proc.proc.wait(timeout=30)
        assert proc.proc.returncode == 2
        assert "start (0.00, 0.75) is not in free space" in proc.log()
        assert "Traceback" not in proc.log()
