"""A synthetic RGB-D camera on a moving robot, published over ROS for the benchmarks.

:class:`SyntheticCamera` publishes ``/camera/image_raw``, ``/camera/depth``,
``/camera/camera_info`` and ``/odom`` (one stamp for all four) at ``rate`` Hz from a timer of the
rclpy node it is given. The scene is the analytic room of :mod:`mirage_ros.memory.synthetic`:
depth is ray-cast exactly, the image is the depth shaded grey. No MuJoCo, so it runs anywhere.

The robot's pose is a function of the frame number (``tick / rate`` seconds of trajectory
time), so the pose sequence does not depend on timer jitter:

- :func:`circle`: a 0.3 m circle around the room's centre, turning 1.5 rad/s (the view keeps
  coming back to the same ground: what ``bench.action`` uses).
- :func:`patrol`: the same circle, but its centre glides at 0.1 m/s around a loop through the
  free part of the room (clear of both obstacles), so the camera keeps reaching ground it has
  not seen for a while (for a soak that fills a bounded memory and keeps it evicting).
"""

from __future__ import annotations

import math
from collections.abc import Callable, MutableSequence

import numpy as np

# The loop the patrol's circle centre follows (map metres). The centre stays >= 0.6 m from both
# obstacles of the default Room (0.3 m circle + 0.3 m margin) and >= 0.8 m from the walls.
PATROL_LOOP = ((-2.2, 1.4), (0.3, 1.4), (0.3, -1.6), (2.2, -1.6), (2.2, -0.05), (-2.2, -0.05))
CIRCLE_RADIUS = 0.3
TURN_RATE = 1.5  # rad/s around the circle
PATROL_SPEED = 0.1  # m/s of the circle's centre

Trajectory = Callable[[float], tuple[float, float, float]]  # seconds -> (x, y, yaw)


def circle(t: float, centre: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float, float]:
    """The robot on a 0.3 m circle around ``centre`` at time ``t`` (heading = angle on the
    circle, as the original benchmark drove it: it looks outwards)."""
    yaw = TURN_RATE * t
    return (centre[0] + CIRCLE_RADIUS * math.cos(yaw),
            centre[1] + CIRCLE_RADIUS * math.sin(yaw), yaw)


def loop_point(s: float, loop=PATROL_LOOP) -> tuple[float, float]:
    """The point ``s`` metres along the closed polyline ``loop`` (wrapping round)."""
    pts = np.asarray(loop, dtype=np.float64)
    seg = np.roll(pts, -1, axis=0) - pts
    lengths = np.linalg.norm(seg, axis=1)
    s = s % float(lengths.sum())
    for p, d, n in zip(pts, seg, lengths, strict=True):
        if s <= n:
            q = p + d * (s / n)
            return float(q[0]), float(q[1])
        s -= n
    return float(pts[0, 0]), float(pts[0, 1])


def patrol(t: float) -> tuple[float, float, float]:
    """The circle of :func:`circle` with its centre moving along :data:`PATROL_LOOP`."""
    return circle(t, loop_point(PATROL_SPEED * t))


TRAJECTORIES: dict[str, Trajectory] = {"circle": circle, "patrol": patrol}


class SyntheticCamera:
    """Publishes ``camera/*`` and ``odom`` of a robot moving along ``trajectory`` (a name of
    :data:`TRAJECTORIES` or a function of time) in the analytic room, ``rate`` frames a second.

    ``odom``, if given, receives every Odometry message published (the robot's latest pose).
    ``frames`` counts the frames published; ``publish_seconds`` sums the time spent making and
    publishing them (the publisher's own cost)."""

    def __init__(
        self,
        node,
        odom: MutableSequence | None = None,
        size: int = 128,
        rate: float = 10.0,
        trajectory: str | Trajectory = "circle",
    ) -> None:
        import torch
        from nav_msgs.msg import Odometry
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image

        from mirage_ros.geometry import CameraRig
        from mirage_ros.memory.synthetic import Room

        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.node, self.odom, self.size, self.rate = node, odom, size, float(rate)
        self.trajectory = TRAJECTORIES[trajectory] if isinstance(trajectory, str) else trajectory
        self.rig = CameraRig.create(size, size)
        self.K = torch.from_numpy(self.rig.camera.K)
        self.room = Room()
        qos = qos_profile_sensor_data
        self.image = node.create_publisher(Image, "/camera/image_raw", qos)
        self.depth = node.create_publisher(Image, "/camera/depth", qos)
        self.info = node.create_publisher(CameraInfo, "/camera/camera_info", qos)
        self.pose = node.create_publisher(Odometry, "/odom", qos)
        self.tick = 0
        self.frames = 0
        self.publish_seconds = 0.0
        self.timer = node.create_timer(1.0 / self.rate, self.publish)

    def publish(self) -> None:
        import time

        import torch
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import CameraInfo
        from std_msgs.msg import Header

        from mirage_ros.geometry import matrix_to_quat_xyzw, planar_pose
        from mirage_ros.memory.synthetic import ray_depth
        from mirage_ros.ros.image_bridge import numpy_to_imgmsg

        started = time.perf_counter()
        self.tick += 1
        x, y, yaw = self.trajectory(self.tick / self.rate)
        base = planar_pose(x, y, yaw)
        cam = torch.from_numpy(self.rig.cam_to_map(base))
        depth = ray_depth(cam[None], self.K, (self.size, self.size), self.room)[0].numpy()
        grey = (255 * np.exp(-depth / 4.0)).clip(0, 255).astype(np.uint8)
        stamp = self.node.get_clock().now().to_msg()
        header = Header(stamp=stamp, frame_id="camera_optical_frame")
        self.image.publish(numpy_to_imgmsg(np.repeat(grey[..., None], 3, 2), "rgb8", header))
        self.depth.publish(numpy_to_imgmsg(depth.astype(np.float32), "32FC1", header))
        info = CameraInfo(header=header, width=self.size, height=self.size)
        info.k = [float(v) for v in self.rig.camera.ros_k().ravel()]
        self.info.publish(info)
        msg = Odometry()
        msg.header.stamp, msg.header.frame_id, msg.child_frame_id = stamp, "map", "base_link"
        p, o = msg.pose.pose.position, msg.pose.pose.orientation
        p.x, p.y = float(base[0, 3]), float(base[1, 3])
        o.x, o.y, o.z, o.w = (float(v) for v in matrix_to_quat_xyzw(base))
        self.pose.publish(msg)
        if self.odom is not None:
            self.odom.append(msg)
        self.frames += 1
        self.publish_seconds += time.perf_counter() - started


def fan_goal(odometry, paths: int, horizon: int, step_length: float = 0.25):
    """A ScorePaths goal of ``paths`` arcs from the robot's pose in an ``Odometry`` message
    (the benchmarks' query): arcs of ``horizon`` steps of ``step_length`` m, in ``map``."""
    from mirage_ros.action import ScorePaths
    from mirage_ros.geometry import yaw_from_quat_xyzw
    from mirage_ros.rollout import arc_fan
    from mirage_ros.ros.conversions import paths_to_msgs

    pose = odometry.pose.pose
    q = pose.orientation
    fan = arc_fan(paths, length=step_length * horizon, poses=horizon + 1,
                  start_xy=(pose.position.x, pose.position.y),
                  start_yaw=float(yaw_from_quat_xyzw([q.x, q.y, q.z, q.w])))
    goal = ScorePaths.Goal(paths=paths_to_msgs(fan), horizon=horizon)
    goal.header.frame_id = "map"
    return goal
