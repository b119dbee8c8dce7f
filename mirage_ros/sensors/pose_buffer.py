"""A short history of robot poses, asked for the pose at any camera stamp.

Camera frames and odometry (or tf) arrive at different rates and with different stamps, so the
pose of the base at the instant an image was taken is interpolated between the two samples that
bracket its stamp. This is the one rule, used by the node live and by the bag importer offline,
so the model sees poses paired the same way in training and at run time.

Rules of :meth:`PoseBuffer.at`, for a query ``stamp`` and a ``tolerance`` (seconds):

* a sample with exactly that stamp is returned as it is;
* between two samples ``s0 < stamp < s1``: when they are at most ``max(max_gap, 2 * tolerance)``
  apart, the pose is interpolated (translation linearly, rotation by quaternion slerp) — over
  such a short gap constant velocity is the better guess than either end, and ``2 * tolerance``
  is included because then the nearer sample is within ``tolerance`` anyway. Farther apart
  (odometry dropped out), the nearer sample is returned if it is within ``tolerance``, else None;
* before the first or after the last sample: the nearest sample if it is within ``tolerance``
  (held, not extrapolated), else None.

Clock: stamps are seconds in one clock (header stamps; simulation time under ``use_sim_time``).
A sample more than ``CLOCK_JUMP_BACK`` seconds older than the newest one means the clock went
back (a simulation or bag restarted): the buffer is cleared first, so poses of the old run are
never interpolated with the new one. Smaller disorder is normal (tf and odometry may arrive out
of order) and the sample is inserted in place. A sample with a stamp already present replaces it.

Bounds: samples older than ``max_age`` seconds before the newest one, and the oldest beyond
``max_len``, are dropped. Adding in order is O(1) amortised; a query is O(log n).
"""

from __future__ import annotations

import bisect
import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mirage_ros.geometry import matrix_to_quat_wxyz, quat_wxyz_to_matrix, slerp

__all__ = ["CLOCK_JUMP_BACK", "MAX_POSITION", "ROTATION_TOLERANCE", "PoseBuffer", "check_pose"]

# A stamp this much older than the newest one is a restart of the clock, not a late message.
CLOCK_JUMP_BACK = 1.0
# Largest accepted deviation of R^T R from the identity (and of the bottom row from 0 0 0 1):
# loose enough for float32 round trips of a rotation, tight enough to refuse a scaled or sheared
# matrix, which slerp would silently turn into some other rotation.
ROTATION_TOLERANCE = 1e-4
# Metres: the largest |x|, |y|, |z| of a pose (and of a planner's path) that is accepted. Beyond
# every Earth-fixed map frame (UTM northings stay below 1e7 m); farther out, float64 geometry
# loses centimetres and squared distances overflow (a pose at 1e300 m made NaN scores).
MAX_POSITION = 1e7


def check_pose(base_to_map: ArrayLike) -> NDArray:
    """``base_to_map`` as a float64 ``[4, 4]`` copy, or ValueError if it is not a finite rigid
    transform (shape, NaN/inf, rotation not orthonormal with determinant +1, bottom row) or its
    position lies beyond :data:`MAX_POSITION`."""
    T = np.array(base_to_map, dtype=np.float64)  # always a copy: the caller may reuse its array
    if T.shape != (4, 4):
        raise ValueError(f"a pose must be a 4x4 transform, got shape {T.shape}")
    if not np.isfinite(T).all():
        raise ValueError("a pose must be finite, got NaN or inf")
    if np.abs(T[:3, 3]).max() > MAX_POSITION:
        raise ValueError(f"a pose's position must be within {MAX_POSITION:g} m of the origin, got "
                         f"{T[:3, 3].tolist()} (check the unit and the frame)")
    R = T[:3, :3]
    if (
        np.abs(R.T @ R - np.eye(3)).max() > ROTATION_TOLERANCE
        or np.linalg.det(R) < 0
        or np.abs(T[3] - (0.0, 0.0, 0.0, 1.0)).max() > ROTATION_TOLERANCE
    ):
        raise ValueError(f"a pose must be a rigid transform, got {T.tolist()}")
    return T


def _check_stamp(stamp: float) -> float:
    stamp = float(stamp)
    if not math.isfinite(stamp):
        raise ValueError(f"a stamp must be finite, got {stamp}")
    return stamp


class PoseBuffer:
    """Timestamped ``base_to_map`` poses; see the module docstring for the rules."""

    def __init__(self, max_age: float = 10.0, max_len: int = 2000, max_gap: float = 0.5) -> None:
        if not (max_age > 0 and max_len >= 1 and max_gap >= 0):
            raise ValueError(
                f"PoseBuffer needs max_age > 0, max_len >= 1 and max_gap >= 0, got "
                f"{max_age}, {max_len}, {max_gap}"
            )
        self.max_age = float(max_age)
        self.max_len = int(max_len)
        self.max_gap = float(max_gap)
        # Parallel lists sorted by stamp: bisect needs a plain list of floats.
        self._stamps: list[float] = []
        self._poses: list[NDArray] = []
        self._quats: list[NDArray] = []  # wxyz of each pose, computed once for slerp
        self.resets = 0  # clock jumps back seen (each cleared the buffer)

    def __len__(self) -> int:
        return len(self._stamps)

    def clear(self) -> None:
        self._stamps.clear()
        self._poses.clear()
        self._quats.clear()

    def add(self, stamp: float, base_to_map: ArrayLike) -> None:
        """Insert a sample. ValueError for a non-finite stamp or an invalid pose (see
        :func:`check_pose`); the buffer is then unchanged."""
        stamp = _check_stamp(stamp)
        pose = check_pose(base_to_map)
        quat = matrix_to_quat_wxyz(pose)
        if self._stamps and stamp < self._stamps[-1] - CLOCK_JUMP_BACK:
            self.clear()
            self.resets += 1
        i = bisect.bisect_left(self._stamps, stamp)
        if i < len(self._stamps) and self._stamps[i] == stamp:
            self._poses[i], self._quats[i] = pose, quat
        else:
            self._stamps.insert(i, stamp)
            self._poses.insert(i, pose)
            self._quats.insert(i, quat)
        self._trim()

    def _trim(self) -> None:
        cut = bisect.bisect_left(self._stamps, self._stamps[-1] - self.max_age)
        cut = max(cut, len(self._stamps) - self.max_len)
        if cut > 0:
            del self._stamps[:cut], self._poses[:cut], self._quats[:cut]

    def latest(self) -> tuple[float, NDArray] | None:
        """``(stamp, base_to_map)`` of the newest sample (a copy), or None when empty."""
        if not self._stamps:
            return None
        return self._stamps[-1], self._poses[-1].copy()

    @property
    def newest_stamp(self) -> float | None:
        return self._stamps[-1] if self._stamps else None

    def at(self, stamp: float, tolerance: float) -> NDArray | None:
        """``base_to_map`` at ``stamp`` (a new array), or None if the buffer cannot tell."""
        stamp = _check_stamp(stamp)
        if not (tolerance >= 0 and math.isfinite(tolerance)):
            raise ValueError(f"tolerance must be finite and >= 0, got {tolerance}")
        n = len(self._stamps)
        if n == 0:
            return None
        i = bisect.bisect_left(self._stamps, stamp)
        if i < n and self._stamps[i] == stamp:
            return self._poses[i].copy()
        if i == 0 or i == n:
            j = 0 if i == 0 else n - 1
            return self._poses[j].copy() if abs(self._stamps[j] - stamp) <= tolerance else None
        s0, s1 = self._stamps[i - 1], self._stamps[i]
        if s1 - s0 <= max(self.max_gap, 2.0 * tolerance):
            return self._interpolate(i - 1, i, (stamp - s0) / (s1 - s0))
        j = i - 1 if stamp - s0 <= s1 - stamp else i
        return self._poses[j].copy() if abs(self._stamps[j] - stamp) <= tolerance else None

    def _interpolate(self, a: int, b: int, f: float) -> NDArray:
        T0, T1 = self._poses[a], self._poses[b]
        T = np.eye(4)
        T[:3, :3] = quat_wxyz_to_matrix(slerp(self._quats[a], self._quats[b], f))
        T[:3, 3] = T0[:3, 3] + f * (T1[:3, 3] - T0[:3, 3])
        return T
