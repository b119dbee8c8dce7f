"""A ground robot's motion: unicycle kinematics and a pure-pursuit path follower.

The robot drives forward and turns like a differential-drive base: speed ``v`` along its heading,
yaw rate ``w``, both limited, with bounded acceleration. Pure pursuit steers towards a point a
fixed distance ahead on the path; when that point lies far off the heading the robot turns in
place first, as real bases do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mirage_ros.geometry import planar_pose, wrap_angle

__all__ = ["Limits", "PurePursuit", "RobotState", "integrate"]


@dataclass(frozen=True)
class RobotState:
    """Planar pose and current velocities of the base (map frame, REP-103: yaw CCW from +x)."""

    x: float
    y: float
    yaw: float
    v: float = 0.0
    w: float = 0.0

    @property
    def xy(self) -> NDArray:
        return np.array([self.x, self.y])

    def base_to_map(self) -> NDArray:
        return planar_pose(self.x, self.y, self.yaw)


@dataclass(frozen=True)
class Limits:
    max_speed: float = 0.5  # m/s
    max_yaw_rate: float = 1.0  # rad/s
    max_accel: float = 1.0  # m/s^2
    max_yaw_accel: float = 3.0  # rad/s^2


def integrate(state: RobotState, v: float, w: float, dt: float, limits: Limits) -> RobotState:
    """Advance by ``dt`` seconds towards commanded ``(v, w)``, within the limits.

    Accelerations are clipped first, then the motion is integrated exactly along the arc.
    """
    dv = float(np.clip(v - state.v, -limits.max_accel * dt, limits.max_accel * dt))
    dw = float(np.clip(w - state.w, -limits.max_yaw_accel * dt, limits.max_yaw_accel * dt))
    v_new = float(np.clip(state.v + dv, -limits.max_speed, limits.max_speed))
    w_new = float(np.clip(state.w + dw, -limits.max_yaw_rate, limits.max_yaw_rate))
    dyaw = w_new * dt
    if abs(dyaw) < 1e-9:
        dx, dy = v_new * dt * math.cos(state.yaw), v_new * dt * math.sin(state.yaw)
    else:
        r = v_new / w_new
        dx = r * (math.sin(state.yaw + dyaw) - math.sin(state.yaw))
        dy = r * (math.cos(state.yaw) - math.cos(state.yaw + dyaw))
    return RobotState(state.x + dx, state.y + dy, wrap_angle(state.yaw + dyaw), v_new, w_new)


class PurePursuit:
    """Follows a polyline ``[K, 2]``; ``command(state)`` gives ``(v, w)``, ``done`` says when
    the robot is within ``tolerance`` of the end."""

    def __init__(
        self,
        path_xy: ArrayLike,
        limits: Limits,
        *,
        lookahead: float = 0.4,
        tolerance: float = 0.08,
        turn_in_place: float = math.radians(60.0),
    ) -> None:
        pts = np.asarray(path_xy, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 1 or not np.isfinite(pts).all():
            raise ValueError(f"path must be a finite [K, 2] array, got shape {pts.shape}")
        self.points = pts
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        self.s = np.concatenate([[0.0], np.cumsum(seg)])
        self.limits = limits
        self.lookahead = lookahead
        self.tolerance = tolerance
        self.turn_in_place = turn_in_place
        self._progress = 0.0
        self.done = False

    def _point_at(self, s: float) -> NDArray:
        s = min(max(s, 0.0), float(self.s[-1]))
        return np.array([np.interp(s, self.s, self.points[:, 0]),
                         np.interp(s, self.s, self.points[:, 1])])

    def _project(self, xy: NDArray) -> float:
        """Arc length of the closest path point, searched just ahead of the last progress so
        that a path crossing itself is followed in order."""
        lo = self._progress
        hi = lo + 2.0 * self.lookahead + 0.5
        segments = np.flatnonzero((self.s[1:] >= lo) & (self.s[:-1] <= hi))
        if not len(segments):
            return lo
        a, b = self.points[segments], self.points[segments + 1]
        ab = b - a
        length2 = (ab * ab).sum(axis=1)
        t = np.clip(((xy - a) * ab).sum(axis=1) / np.maximum(length2, 1e-18), 0.0, 1.0)
        d = np.linalg.norm(a + t[:, None] * ab - xy, axis=1)
        k = int(np.argmin(d))
        return max(float(self.s[segments[k]] + t[k] * math.sqrt(length2[k])), lo)

    def command(self, state: RobotState) -> tuple[float, float]:
        xy = state.xy
        goal = self.points[-1]
        remaining_direct = float(np.linalg.norm(goal - xy))
        self._progress = self._project(xy)
        if self._progress >= self.s[-1] - 1e-9 and remaining_direct < self.tolerance:
            self.done = True
        if self.done:
            return 0.0, 0.0
        target = self._point_at(self._progress + self.lookahead)
        if float(np.linalg.norm(target - xy)) < 1e-6:
            target = goal
        alpha = wrap_angle(math.atan2(target[1] - xy[1], target[0] - xy[0]) - state.yaw)
        lim = self.limits
        if abs(alpha) > self.turn_in_place:
            return 0.0, math.copysign(lim.max_yaw_rate, alpha)
        remaining = max(float(self.s[-1] - self._progress), 0.0)
        # Slow down for the end of the path (stop within it) and for sharp turns.
        v = min(lim.max_speed, math.sqrt(2.0 * lim.max_accel * remaining) + 0.05)
        v *= max(0.2, math.cos(alpha))
        distance = max(float(np.linalg.norm(target - xy)), 1e-6)
        curvature = 2.0 * math.sin(alpha) / distance
        w = v * curvature
        if abs(w) > lim.max_yaw_rate:
            w = math.copysign(lim.max_yaw_rate, w)
            v = abs(w / curvature)
        return v, w
