"""Candidate paths as plain arrays, and the checks every path passes before anything uses it.

A planner's paths arrive over the network; a NaN or a non-unit quaternion must be refused with a
message that names the path and the pose, never reach the memory or the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class InvalidPathError(ValueError):
    """A candidate path is malformed; `path_index` and `pose_index` say where (-1 = whole path)."""

    def __init__(self, message: str, path_index: int = -1, pose_index: int = -1) -> None:
        where = f"path {path_index}" if path_index >= 0 else "goal"
        if pose_index >= 0:
            where += f", pose {pose_index}"
        super().__init__(f"{where}: {message}")
        self.path_index = path_index
        self.pose_index = pose_index


@dataclass(frozen=True)
class CandidatePath:
    """One candidate robot base path.

    positions: [T, 3] metres in `frame_id`; quaternions_xyzw: [T, 4] (ROS order), unit length;
    stamps: [T] seconds (may be all zero: a geometric path without timing).
    """

    frame_id: str
    positions: np.ndarray
    quaternions_xyzw: np.ndarray
    stamps: np.ndarray

    def __len__(self) -> int:
        return int(self.positions.shape[0])


def validate_path(
    path: CandidatePath,
    index: int,
    *,
    max_poses: int,
    quaternion_tolerance: float,
) -> CandidatePath:
    """Check one path; return it with quaternions renormalised, or raise InvalidPathError.

    Quaternions within `quaternion_tolerance` of unit length are renormalised (float32 round trips
    and hand-typed YAML are off by ~1e-7..1e-3); anything further off is refused, because the
    caller clearly meant something else and a silent normalisation would hide the bug.
    """
    if not path.frame_id:
        raise InvalidPathError(
            "empty frame_id (set the path's header.frame_id or the goal's header.frame_id)",
            index)
    n = len(path)
    if n == 0:
        raise InvalidPathError("has no poses", index)
    if n > max_poses:
        raise InvalidPathError(f"has {n} poses; the node accepts at most {max_poses}", index)
    if path.positions.shape != (n, 3) or path.quaternions_xyzw.shape != (n, 4):
        raise InvalidPathError("positions and orientations disagree in length", index)
    bad = ~np.isfinite(path.positions).all(axis=1)
    if bad.any():
        raise InvalidPathError("position is NaN or infinite", index, int(np.argmax(bad)))
    bad = ~np.isfinite(path.quaternions_xyzw).all(axis=1)
    if bad.any():
        raise InvalidPathError("orientation is NaN or infinite", index, int(np.argmax(bad)))
    norms = np.linalg.norm(path.quaternions_xyzw, axis=1)
    bad = np.abs(norms - 1.0) > quaternion_tolerance
    if bad.any():
        k = int(np.argmax(bad))
        raise InvalidPathError(
            f"orientation quaternion has length {norms[k]:.4g}; expected 1 within "
            f"{quaternion_tolerance:g} (an all-zero quaternion is not a valid orientation)",
            index, k)
    return CandidatePath(
        frame_id=path.frame_id,
        positions=path.positions,
        quaternions_xyzw=path.quaternions_xyzw / norms[:, None],
        stamps=path.stamps,
    )


def arc_fan(
    n: int,
    *,
    length: float = 2.0,
    poses: int = 9,
    max_curvature: float = 1.0,
    start_xy: tuple[float, float] = (0.0, 0.0),
    start_yaw: float = 0.0,
    frame_id: str = "map",
) -> list[CandidatePath]:
    """A fan of n constant-curvature arcs of equal length from one pose (a ground robot's options).

    Curvatures are spread evenly over [-max_curvature, max_curvature] (1/m, positive turns left);
    n = 1 gives the straight path. Stamps are left at zero: the paths are geometric.
    """
    if n < 1 or poses < 2:
        raise ValueError("arc_fan needs n >= 1 and poses >= 2")
    curvatures = np.linspace(-max_curvature, max_curvature, n) if n > 1 else np.zeros(1)
    s = np.linspace(0.0, length, poses)
    fan = []
    for k in curvatures:
        yaw = start_yaw + k * s
        if abs(k) < 1e-9:
            dx, dy = s * np.cos(start_yaw), s * np.sin(start_yaw)
        else:
            dx = (np.sin(yaw) - np.sin(start_yaw)) / k
            dy = (np.cos(start_yaw) - np.cos(yaw)) / k
        positions = np.stack([start_xy[0] + dx, start_xy[1] + dy, np.zeros_like(s)], axis=1)
        quats = np.stack(
            [np.zeros_like(s), np.zeros_like(s), np.sin(yaw / 2), np.cos(yaw / 2)], axis=1)
        fan.append(CandidatePath(frame_id, positions, quats, np.zeros_like(s)))
    return fan
