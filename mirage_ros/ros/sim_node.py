"""The simulator node ``mirage_sim``: a robot with an RGB-D camera in a MuJoCo scene.

Every ``1 / rate_hz`` seconds of wall time it advances the simulation by the same amount and
publishes, all stamped with the simulated time:

* ``~/camera/image_raw`` (sensor_msgs/Image, rgb8), ``~/camera/depth`` (32FC1 metres along the
  optical axis; +inf where nothing is in range, REP-117), ``~/camera/camera_info`` (ROS K
  convention: ``cx = width / 2 - 0.5`` for a centred camera), all in the camera's optical frame;
* ``~/odom`` (nav_msgs/Odometry, ``map`` -> ``base_link``), with sensor-data QoS like the camera;
* ``/clock`` (rosgraph_msgs/Clock), so that other nodes can run with ``use_sim_time``;
* ``~/collision`` (std_msgs/Bool): true while the robot is blocked by an obstacle.

The robot drives a scripted tour (``mode: tour``), follows the last nav_msgs/Path received on
``~/follow_path`` (``mode: path``) or obeys geometry_msgs/Twist on ``~/cmd_vel`` (``mode:
cmd_vel``, unicycle: linear.x and angular.z). ``mode`` may be changed at run time; every other
parameter is read-only. A malformed path or command is logged and ignored. The node's own timer
runs on the steady clock, so it keeps ticking even when started with ``use_sim_time``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry, Path
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Bool, Header

from mirage_ros.geometry import CameraRig, PinholeCamera, matrix_to_quat_xyzw
from mirage_ros.rollout import InvalidPathError, validate_path
from mirage_ros.ros.conversions import path_from_msg, time_from_seconds
from mirage_ros.ros.image_bridge import numpy_to_imgmsg
from mirage_ros.ros.spin import run_node
from mirage_ros.sim.motion import Limits, RobotState
from mirage_ros.sim.render import Renderer
from mirage_ros.sim.robot import MODES, SimRobot
from mirage_ros.sim.scene import scene_from_config

# Parameter defaults and descriptions.
DEFAULTS: dict[str, object] = {
    "scene_seed": 0,
    "mjcf_path": "",
    "rate_hz": 10.0,
    "mode": "tour",
    "robot_radius": 0.25,
    "max_speed": 0.5,
    "max_yaw_rate": 1.0,
    "cmd_vel_timeout": 0.5,
    "tour_seed": 0,
    "start_pose": [0.0],
    "map_frame": "map",
    "base_frame": "base_link",
    "camera_frame": "camera_optical_frame",
    "shadows": False,
    "camera.width": 128,
    "camera.height": 128,
    "camera.hfov_deg": 90.0,
    "camera.height_m": 0.5,
    "camera.pitch_deg": 10.0,
}

DESCRIPTIONS: dict[str, str] = {
    "scene_seed": "seed of the procedural scene (ignored when mjcf_path is set)",
    "mjcf_path": "MJCF file of the scene; empty: the procedural scene of scene_seed",
    "rate_hz": "frames per second, of wall time and of simulated time alike",
    "mode": "what drives the robot: tour, path (~/follow_path) or cmd_vel (~/cmd_vel)",
    "robot_radius": "metres; the robot stops rather than come closer to an obstacle",
    "max_speed": "m/s",
    "max_yaw_rate": "rad/s",
    "cmd_vel_timeout": "seconds a ~/cmd_vel command stays in force",
    "tour_seed": "seed of the scripted tour (and of the random start pose)",
    "start_pose": "[x, y, yaw] in the map frame, in free space; the robot (and a tour) stays in "
                  "the free region around it. [0.0] (one value): a random spot of an enclosed "
                  "free region (inside a building, not around it)",
    "map_frame": "frame of odometry and paths",
    "base_frame": "child frame of the odometry",
    "camera_frame": "frame_id of the camera topics (an optical frame, REP-103)",
    "shadows": "render shadows (slow on a CPU, cheap on a GPU)",
    "camera.width": "pixels",
    "camera.height": "pixels",
    "camera.hfov_deg": "horizontal field of view, degrees",
    "camera.height_m": "camera above base_link, metres",
    "camera.pitch_deg": "camera pitch, degrees, positive looks down",
}


def _check_parameters(values: dict[str, object]) -> str | None:
    """A description of the first invalid parameter value, or None."""
    if values["mode"] not in MODES:
        return f"mode must be one of {', '.join(MODES)}, got {values['mode']!r}"
    for name in ("rate_hz", "robot_radius", "max_speed", "max_yaw_rate", "cmd_vel_timeout",
                 "camera.hfov_deg"):
        value = values[name]
        if not isinstance(value, float) or not math.isfinite(value) or value <= 0.0:
            return f"{name} must be a positive float, got {value!r}"
    if values["camera.hfov_deg"] >= 180.0:
        return f"camera.hfov_deg must be below 180, got {values['camera.hfov_deg']}"
    for name in ("camera.width", "camera.height"):
        if not isinstance(values[name], int) or not 8 <= values[name] <= 4096:
            return f"{name} must be an integer in [8, 4096], got {values[name]!r}"
    start = list(values["start_pose"])
    if len(start) not in (1, 3) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in start):
        return f"start_pose must be [x, y, yaw] or [0.0], got {start!r}"
    if values["scene_seed"] < 0:
        return f"scene_seed must be >= 0, got {values['scene_seed']}"
    return None


class SimNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("mirage_sim", **kwargs)
        # rclpy destroys a node that failed half-way through __init__ at shutdown, too.
        self._renderer: Renderer | None = None
        for name, default in DEFAULTS.items():
            # start_pose takes integers too ([1, 2, 0] is read as an integer array).
            descriptor = ParameterDescriptor(description=DESCRIPTIONS[name],
                                             read_only=name != "mode",
                                             dynamic_typing=name == "start_pose")
            self.declare_parameter(name, default, descriptor)
        values = {n: self.get_parameter(n).value for n in DEFAULTS}
        problem = _check_parameters(values)
        if problem:
            raise ValueError(f"invalid parameter: {problem}")
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._scene = scene_from_config(int(values["scene_seed"]), str(values["mjcf_path"]))
        self._rig = CameraRig.create(int(values["camera.width"]), int(values["camera.height"]),
                                     float(values["camera.hfov_deg"]),
                                     float(values["camera.height_m"]),
                                     float(values["camera.pitch_deg"]))
        self._renderer = Renderer(self._scene, self._rig.camera, shadows=bool(values["shadows"]))
        start = [float(v) for v in values["start_pose"]]
        self._robot = SimRobot(
            self._scene,
            robot_radius=float(values["robot_radius"]),
            limits=Limits(max_speed=float(values["max_speed"]),
                          max_yaw_rate=float(values["max_yaw_rate"])),
            seed=int(values["tour_seed"]),
            start=(start[0], start[1], start[2]) if len(start) == 3 else None,
            cmd_timeout=float(values["cmd_vel_timeout"]),
        )
        self._robot.set_mode(str(values["mode"]))
        self._dt = 1.0 / float(values["rate_hz"])
        self._time = 0.0
        self._blocked = False
        self._map_frame = str(values["map_frame"])
        self._base_frame = str(values["base_frame"])
        self._camera_frame = str(values["camera_frame"])
        self._camera_info = self._make_camera_info(self._rig.camera)

        sensor = qos_profile_sensor_data
        self._image_pub = self.create_publisher(Image, "~/camera/image_raw", sensor)
        self._depth_pub = self.create_publisher(Image, "~/camera/depth", sensor)
        self._info_pub = self.create_publisher(CameraInfo, "~/camera/camera_info", sensor)
        self._odom_pub = self.create_publisher(Odometry, "~/odom", sensor)
        # Reliable: it also serves subscribers that ask for best effort (rclpy's TimeSource).
        self._clock_pub = self.create_publisher(ClockMsg, "/clock", QoSProfile(depth=10))
        self._collision_pub = self.create_publisher(Bool, "~/collision", QoSProfile(depth=10))
        self.create_subscription(Path, "~/follow_path", self._on_path, 10)
        self.create_subscription(Twist, "~/cmd_vel", self._on_cmd_vel, 10)
        self._timer = self.create_timer(self._dt, self._on_tick,
                                        clock=Clock(clock_type=ClockType.STEADY_TIME))
        s = self._robot.state
        self.get_logger().info(
            f"scene {self._scene.name}, robot at ({s.x:.2f}, {s.y:.2f}, yaw {s.yaw:.2f}), "
            f"mode {self._robot.mode}, {self._rig.camera.width}x{self._rig.camera.height} "
            f"at {1.0 / self._dt:g} Hz")
        if not self._robot.region_enclosed:
            self.get_logger().warning(
                "the robot's free region is not walled in: it reaches the edge of the scene "
                "(an open scene, or a start outside the building)")

    # ---------------------------------------------------------------- callbacks (dispatch only)

    def _on_tick(self) -> None:
        self._step()

    def _on_path(self, msg: Path) -> None:
        self._follow(msg)

    def _on_cmd_vel(self, msg: Twist) -> None:
        self._command(msg)

    def _on_set_parameters(self, params: Sequence[Parameter]) -> SetParametersResult:
        for p in params:
            if p.name == "mode" and p.value not in MODES:
                return SetParametersResult(
                    successful=False, reason=f"mode must be one of {', '.join(MODES)}")
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------- work

    def _follow(self, msg: Path) -> None:
        if self._robot.mode != "path":
            self.get_logger().warning(
                f"~/follow_path ignored: mode is {self._robot.mode}, not path",
                throttle_duration_sec=5.0)
            return
        try:
            path = validate_path(path_from_msg(msg, self._map_frame), 0,
                                 max_poses=100_000, quaternion_tolerance=0.01)
        except InvalidPathError as err:
            self.get_logger().warning(f"~/follow_path ignored: {err}")
            return
        if path.frame_id != self._map_frame:
            self.get_logger().warning(
                f"~/follow_path ignored: frame '{path.frame_id}' is not '{self._map_frame}'")
            return
        self._robot.follow(path.positions[:, :2])
        self.get_logger().info(f"following a path of {len(path)} poses")

    def _command(self, msg: Twist) -> None:
        try:
            self._robot.command_velocity(float(msg.linear.x), float(msg.angular.z), self._time)
        except ValueError as err:
            self.get_logger().warning(f"~/cmd_vel ignored: {err}", throttle_duration_sec=5.0)

    def _step(self) -> None:
        mode = self.get_parameter("mode").value
        if mode != self._robot.mode:
            self._robot.set_mode(str(mode))
            self.get_logger().info(f"mode is now {mode}")
        self._time += self._dt
        result = self._robot.step(self._dt, self._time)
        if result.collided and not self._blocked:
            s = result.state
            self.get_logger().warning(
                f"collision: stopped at ({s.x:.2f}, {s.y:.2f}); clearance "
                f"{result.clearance:.2f} m, robot radius {self._robot.radius:.2f} m")
        self._blocked = result.collided
        self._publish(result.state, Header(stamp=time_from_seconds(self._time),
                                           frame_id=self._camera_frame))

    def _publish(self, state: RobotState, header: Header) -> None:
        stamp = header.stamp
        self._clock_pub.publish(ClockMsg(clock=stamp))
        base_to_map = state.base_to_map()
        rgb, depth = self._renderer.render(self._rig.cam_to_map(base_to_map))
        depth = np.where(depth > 0.0, depth, np.inf).astype(np.float32)
        self._image_pub.publish(numpy_to_imgmsg(rgb, "rgb8", header))
        self._depth_pub.publish(numpy_to_imgmsg(depth, "32FC1", header))
        self._camera_info.header = header
        self._info_pub.publish(self._camera_info)

        odom = Odometry()
        odom.header.stamp = stamp
        odom.header.frame_id = self._map_frame
        odom.child_frame_id = self._base_frame
        p, o = odom.pose.pose.position, odom.pose.pose.orientation
        p.x, p.y, p.z = float(state.x), float(state.y), 0.0
        o.x, o.y, o.z, o.w = (float(v) for v in matrix_to_quat_xyzw(base_to_map))
        odom.twist.twist.linear.x = float(state.v)
        odom.twist.twist.angular.z = float(state.w)
        self._odom_pub.publish(odom)
        self._collision_pub.publish(Bool(data=self._blocked))

    @staticmethod
    def _make_camera_info(camera: PinholeCamera) -> CameraInfo:
        k = camera.ros_k()
        info = CameraInfo(width=camera.width, height=camera.height,
                          distortion_model="plumb_bob")
        info.k = [float(v) for v in k.ravel()]
        info.d = [0.0] * 5
        info.r = [float(v) for v in np.eye(3).ravel()]
        info.p = [float(v) for v in np.concatenate([k, np.zeros((3, 1))], axis=1).ravel()]
        return info

    def destroy_node(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(SimNode, lambda: SingleThreadedExecutor(), "sim_node", args)


if __name__ == "__main__":
    raise SystemExit(main())
