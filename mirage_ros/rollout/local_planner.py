"""The greedy local planner's rules: which candidate paths to offer, when it has arrived, when
it is stuck. Pure functions of poses, no ROS.

One planner decision: from the robot's pose, a fan of constant-curvature arcs ahead (and, when
the goal lies behind or the robot is stuck, arcs to turn round with) is scored by the engine
and the best one is followed until the next decision. When the best arc is predicted to
collide and the fan had no arcs to turn round with, the fan is scored again with them. The
demo planner node (``ros.demo_planner``) and the planning benchmark (``bench.navigation``) both
decide this way, with these functions, so the benchmark measures the planner users run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mirage_ros.geometry import wrap_angle
from mirage_ros.rollout.paths import CandidatePath, arc_fan

__all__ = [
    "bearing",
    "candidate_fan",
    "distance",
    "predicted_collision",
    "reached",
    "stuck",
    "turning_curvatures",
]


def bearing(pose: Sequence[float], goal_xy: Sequence[float]) -> float:
    """Angle (rad, left positive) from the heading of ``pose`` (x, y, yaw) to the goal."""
    x, y, yaw = pose
    return wrap_angle(math.atan2(goal_xy[1] - y, goal_xy[0] - x) - yaw)


def distance(pose: Sequence[float], goal_xy: Sequence[float]) -> float:
    return math.hypot(goal_xy[0] - pose[0], goal_xy[1] - pose[1])


def reached(pose: Sequence[float], goal_xy: Sequence[float], tolerance: float) -> bool:
    """Whether the position of ``pose`` is within ``tolerance`` of the goal (yaw is ignored)."""
    return distance(pose, goal_xy) <= tolerance


def turning_curvatures(length: float, max_curvature: float) -> tuple[float, float]:
    """Two curvatures beyond the fan's for turning round: the tighter one turns at least half a
    circle within ``length`` (and at least twice ``max_curvature``), the other is in between."""
    tight = max(2.0 * max_curvature, math.pi / length)
    return 0.5 * (max_curvature + tight), tight


def candidate_fan(
    pose: Sequence[float],
    goal_xy: Sequence[float] | None,
    *,
    num_paths: int,
    length: float,
    poses: int,
    max_curvature: float,
    frame_id: str,
    turn_round: bool = False,
) -> tuple[list[CandidatePath], list[str]]:
    """The candidate paths from ``pose`` (x, y, yaw) and a short label for each.

    Always the fan of ``num_paths`` arcs ahead. When the goal lies behind the robot (bearing
    beyond 90 degrees), its position is unknown (``goal_xy`` None: a goal given as an image
    only), or ``turn_round`` asks for it (the robot is stuck), also four tighter arcs (two each
    way) and three arcs that start facing backwards: the robot's path follower turns on the
    spot towards a path behind it, then drives it.
    """
    x, y, yaw = (float(v) for v in pose)
    common = dict(length=length, poses=poses, start_xy=(x, y), frame_id=frame_id)
    paths = arc_fan(num_paths, max_curvature=max_curvature, start_yaw=yaw, **common)
    ks = np.linspace(-max_curvature, max_curvature, num_paths) if num_paths > 1 else [0.0]
    labels = [f"arc {k:+.2f} 1/m" for k in ks]
    if turn_round or goal_xy is None or abs(bearing((x, y, yaw), goal_xy)) > 0.5 * math.pi:
        for k in turning_curvatures(length, max_curvature):
            paths += arc_fan(2, max_curvature=k, start_yaw=yaw, **common)
            labels += [f"tight arc {-k:+.2f} 1/m", f"tight arc {k:+.2f} 1/m"]
        back = wrap_angle(yaw + math.pi)
        paths += arc_fan(3, max_curvature=max_curvature, start_yaw=back, **common)
        labels += [f"turn round, arc {k:+.2f} 1/m" for k in (-max_curvature, 0.0, max_curvature)]
    return paths, labels


def stuck(before: Sequence[float], now: Sequence[float], *, distance_m: float = 0.05,
          angle: float = 0.1) -> bool:
    """Whether a robot at pose ``now`` (x, y, yaw) has hardly moved or turned since ``before``."""
    return (math.hypot(now[0] - before[0], now[1] - before[1]) < distance_m
            and abs(wrap_angle(now[2] - before[2])) < angle)


def predicted_collision(names: Sequence[str], costs: Sequence[float]) -> bool:
    """Whether a scored candidate is predicted to collide: its ``clearance`` cost (critic
    names ``names``, unweighted ``costs``) is above the ramp's 1, i.e. it is the critic's
    ``collision_cost``. Then the planner should not drive it: with a fan that holds only arcs
    ahead it asks again with the arcs that turn round (``candidate_fan(turn_round=True)``), since
    a robot that faces a wall has every arc ahead blocked while its goal is still in front."""
    if len(names) != len(costs):
        raise ValueError(f"{len(names)} critic names for {len(costs)} costs")
    for name, cost in zip(names, costs, strict=True):
        if name == "clearance":
            return float(cost) > 1.0
    return False
