"""Candidate paths as plain arrays, and the checks every path passes before anything uses it.

A planner's paths arrive over the network; a NaN or a non-unit quaternion must be refused with a
message that names the path and the pose, never reach the memory or the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mirage_ros.geometry import slerp, transform_from_translation_quat_xyzw
from mirage_ros.sensors import MAX_POSITION


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
    bad = (np.abs(path.positions) > MAX_POSITION).any(axis=1)
    if bad.any():
        k = int(np.argmax(bad))
        raise InvalidPathError(
            f"position {path.positions[k].tolist()} is farther than {MAX_POSITION:g} m from the "
            "origin on some axis (check the unit and the frame)", index, k)
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


def arc(
    curvature: float,
    *,
    length: float = 2.0,
    poses: int = 9,
    start_xy: tuple[float, float] = (0.0, 0.0),
    start_yaw: float = 0.0,
    frame_id: str = "map",
) -> CandidatePath:
    """One constant-curvature arc (1/m, positive turns left) of ``length`` metres from a pose,
    ``poses`` poses at equal spacing. Stamps are left at zero: the path is geometric."""
    if poses < 2:
        raise ValueError("an arc needs poses >= 2")
    s = np.linspace(0.0, length, poses)
    yaw = start_yaw + curvature * s
    if abs(curvature) < 1e-9:
        dx, dy = s * np.cos(start_yaw), s * np.sin(start_yaw)
    else:
        dx = (np.sin(yaw) - np.sin(start_yaw)) / curvature
        dy = (np.cos(start_yaw) - np.cos(yaw)) / curvature
    positions = np.stack([start_xy[0] + dx, start_xy[1] + dy, np.zeros_like(s)], axis=1)
    quats = np.stack(
        [np.zeros_like(s), np.zeros_like(s), np.sin(yaw / 2), np.cos(yaw / 2)], axis=1)
    return CandidatePath(frame_id, positions, quats, np.zeros_like(s))


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
    return [arc(float(k), length=length, poses=poses, start_xy=start_xy, start_yaw=start_yaw,
                frame_id=frame_id) for k in curvatures]


def resample_path(
    path: CandidatePath, steps: int, step_length: float, step_angle: float
) -> np.ndarray:
    """Base poses ``[steps + 1, 4, 4]`` at equal progress along one path (see
    ``resample_paths``)."""
    return resample_paths([path], steps, step_length, step_angle)[0]


def resample_paths(
    paths: list[CandidatePath], steps: int, step_length: float, step_angle: float
) -> np.ndarray:
    """Base poses ``[N, steps + 1, 4, 4]`` at equal progress along every path, from its first
    pose.

    Progress mixes distance and turning, ``ds = sqrt(|dp|^2 + (dyaw * step_length /
    step_angle)^2)``, so a turn on the spot advances too: one step is ``step_length`` metres of
    travel or ``step_angle`` radians of turn. Positions are interpolated linearly, orientations
    by quaternion slerp. A path shorter than the horizon holds its last pose for the remaining
    steps (the robot stops there). Paths of equal length are resampled together as arrays (a
    planner's thousands of candidates cost milliseconds, not a Python loop per path).
    """
    if steps < 1 or not step_length > 0 or not step_angle > 0:
        raise ValueError("resample_path needs steps >= 1, step_length > 0 and step_angle > 0")
    out = np.empty((len(paths), steps + 1, 4, 4))
    by_length: dict[int, list[int]] = {}
    for i, path in enumerate(paths):
        by_length.setdefault(len(path), []).append(i)
    for idx in by_length.values():
        pos = np.stack([np.asarray(paths[i].positions, dtype=np.float64) for i in idx])
        quat = np.stack([np.asarray(paths[i].quaternions_xyzw, dtype=np.float64) for i in idx])
        out[idx] = _resample_same_length(pos, quat, steps, step_length, step_angle)
    return out


def _resample_same_length(pos: np.ndarray, quat: np.ndarray, steps: int, step_length: float,
                          step_angle: float) -> np.ndarray:
    """``resample_paths`` for positions ``[N,T,3]`` and quaternions ``[N,T,4]`` (xyzw)."""
    n, t = pos.shape[:2]
    # Consecutive quaternions on the same hemisphere, so slerp takes the short way round.
    quat = quat.copy()
    for i in range(1, t):
        flip = np.sum(quat[:, i] * quat[:, i - 1], axis=1) < 0
        quat[flip, i] = -quat[flip, i]
    if t == 1:
        p_out = np.repeat(pos, steps + 1, axis=1)
        q_out = np.repeat(quat, steps + 1, axis=1)
        return transform_from_translation_quat_xyzw(p_out, q_out)
    dp = np.linalg.norm(np.diff(pos, axis=1), axis=2)
    dots = np.clip(np.abs(np.sum(quat[:, 1:] * quat[:, :-1], axis=2)), 0.0, 1.0)
    dang = 2.0 * np.arccos(dots)
    ds = np.sqrt(dp**2 + (dang * step_length / step_angle) ** 2)
    s = np.concatenate([np.zeros((n, 1)), np.cumsum(ds, axis=1)], axis=1)  # [N,T]
    targets = np.minimum(np.arange(steps + 1)[None] * step_length, s[:, -1:])  # [N,S]
    # Per row: the last segment start at or before the target (searchsorted, side right).
    seg = np.clip((s[:, None, :] <= targets[:, :, None]).sum(axis=2) - 1, 0, t - 2)
    s0 = np.take_along_axis(s, seg, axis=1)
    span = np.take_along_axis(s, seg + 1, axis=1) - s0
    f = np.where(span > 0, (targets - s0) / np.where(span > 0, span, 1.0), 0.0)
    f = np.clip(f, 0.0, 1.0)
    rows = np.arange(n)[:, None]
    p0, p1 = pos[rows, seg], pos[rows, seg + 1]
    p_out = p0 + f[..., None] * (p1 - p0)
    q_out = slerp(quat[rows, seg], quat[rows, seg + 1], f)
    return transform_from_translation_quat_xyzw(p_out, q_out)
