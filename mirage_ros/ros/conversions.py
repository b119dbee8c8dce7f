"""ROS messages <-> the core's plain arrays. Nothing here knows about scoring or models."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Duration
from nav_msgs.msg import Path

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
