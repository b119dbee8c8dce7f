"""ROS messages <-> the core's plain arrays. Nothing here knows about scoring or models."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from nav_msgs.msg import Path
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from mirage_ros.action import ScorePaths
from mirage_ros.msg import PathCritics
from mirage_ros.rollout import CandidatePath, ScoreTable

ERROR_CODES = (
    "SUCCESS", "INVALID_INPUT", "NO_MEMORY", "TRANSFORM_ERROR", "CANCELED", "PREEMPTED",
    "INTERNAL_ERROR",
)


def error_code_name(code: int) -> str:
    """ScorePaths result code -> its constant's name, for logs and CLIs."""
    for name in ERROR_CODES:
        if getattr(ScorePaths.Result, name) == code:
            return name
    return f"UNKNOWN({code})"


def path_from_msg(msg: Path, default_frame: str) -> CandidatePath:
    """Flatten a nav_msgs/Path into arrays.

    A path whose header.frame_id is empty inherits `default_frame` (the goal's header). Per-pose
    headers are ignored on purpose: nav_msgs/Path defines the path frame by the outer header.
    """
    n = len(msg.poses)
    positions = np.empty((n, 3), dtype=np.float64)
    quats = np.empty((n, 4), dtype=np.float64)
    stamps = np.empty(n, dtype=np.float64)
    for i, ps in enumerate(msg.poses):
        p, q = ps.pose.position, ps.pose.orientation
        positions[i] = (p.x, p.y, p.z)
        quats[i] = (q.x, q.y, q.z, q.w)
        stamps[i] = ps.header.stamp.sec + 1e-9 * ps.header.stamp.nanosec
    return CandidatePath(
        frame_id=msg.header.frame_id or default_frame,
        positions=positions,
        quaternions_xyzw=quats,
        stamps=stamps,
    )


def critics_to_msgs(table: ScoreTable) -> list[PathCritics]:
    names = list(table.names)
    return [PathCritics(names=names, costs=[float(c) for c in row]) for row in table.costs]


def scores_to_list(table: ScoreTable) -> list[float]:
    # float32 on the wire; clip so a huge cost cannot become inf and break a planner's argmax.
    lim = float(np.finfo(np.float32).max)
    return [float(s) for s in np.clip(table.scores, -lim, lim)]


def duration_from_seconds(seconds: float) -> Duration:
    """A non-negative duration, rounded to the nanosecond (1.9999999999 s is 2 s, not 1 s)."""
    total = max(0, int(round(seconds * 1e9)))
    return Duration(sec=total // 1_000_000_000, nanosec=total % 1_000_000_000)


def time_from_seconds(seconds: float) -> Time:
    """A stamp (builtin_interfaces/Time) from seconds >= 0, rounded to the nanosecond."""
    d = duration_from_seconds(seconds)
    return Time(sec=d.sec, nanosec=d.nanosec)


def seconds(stamp: Time | Duration) -> float:
    """Seconds of a builtin_interfaces Time or Duration."""
    return stamp.sec + stamp.nanosec * 1e-9


# PointCloud2 layout of the memory cloud: x, y, z float32 and rgb packed as 0x00RRGGBB uint32
# (what RViz's RGB8 colour transformer reads).
_CLOUD = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4")])


def cloud_from_points(xyz: np.ndarray, rgb: np.ndarray, header: Header) -> PointCloud2:
    """PointCloud2 of points ``[M,3]`` with colours ``[M,3]`` uint8."""
    rgb = np.asarray(rgb).astype(np.uint32)
    data = np.empty(len(xyz), dtype=_CLOUD)
    data["x"], data["y"], data["z"] = (np.asarray(xyz)[:, i] for i in range(3))
    data["rgb"] = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    fields = [PointField(name=name, offset=_CLOUD.fields[name][1], count=1,
                         datatype=PointField.UINT32 if name == "rgb" else PointField.FLOAT32)
              for name in _CLOUD.names]
    msg = PointCloud2(header=header, height=1, width=len(xyz), fields=fields,
                      is_bigendian=False, point_step=_CLOUD.itemsize,
                      row_step=_CLOUD.itemsize * len(xyz), is_dense=True)
    msg.data = data.tobytes()
    return msg


def points_from_cloud(msg: PointCloud2) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`cloud_from_points`: points ``[M,3]`` float64, colours ``[M,3]`` uint8."""
    data = np.frombuffer(bytes(msg.data), dtype=_CLOUD)
    xyz = np.stack([data["x"], data["y"], data["z"]], 1).astype(np.float64)
    rgb = np.stack([(data["rgb"] >> 16) & 255, (data["rgb"] >> 8) & 255, data["rgb"] & 255], 1)
    return xyz, rgb.astype(np.uint8)


def paths_to_msgs(paths: Sequence[CandidatePath]) -> list[Path]:
    """Inverse of path_from_msg (stamps are kept); used by the demo and the tests."""
    from geometry_msgs.msg import PoseStamped

    out = []
    for p in paths:
        msg = Path()
        msg.header.frame_id = p.frame_id
        for (x, y, z), (qx, qy, qz, qw), t in zip(
            p.positions, p.quaternions_xyzw, p.stamps, strict=True
        ):
            ps = PoseStamped()
            ps.header.frame_id = p.frame_id
            ps.header.stamp.sec = int(t)
            ps.header.stamp.nanosec = int(round((t - int(t)) * 1e9)) % 1_000_000_000
            ps.pose.position.x, ps.pose.position.y, ps.pose.position.z = map(float, (x, y, z))
            o = ps.pose.orientation
            o.x, o.y, o.z, o.w = map(float, (qx, qy, qz, qw))
            msg.poses.append(ps)
        out.append(msg)
    return out
