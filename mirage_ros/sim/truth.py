"""Ground truth along any path: rendered RGB-D frames, clearance and collisions, candidate fans.

Clearance is the exact 2D distance from the robot's base position to the nearest obstacle
footprint (:mod:`mirage_ros.sim.obstacles`), computed from the scene geometry itself; a pose is
in collision when its clearance is below the robot's radius. These are the numbers the
imagination critics are measured against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mirage_ros.geometry import CameraRig, transform_from_translation_quat_xyzw
from mirage_ros.rollout.paths import CandidatePath, arc_fan
from mirage_ros.sim.obstacles import DEFAULT_BAND
from mirage_ros.sim.render import Renderer
from mirage_ros.sim.scene import Scene

__all__ = [
    "PathFrames",
    "PathTruth",
    "candidate_fan",
    "clearance",
    "fan_truth",
    "path_base_poses",
    "render_path",
]


@dataclass(frozen=True)
class PathFrames:
    """Frames seen along a path: ``rgb [T, H, W, 3]`` uint8, ``depth [T, H, W]`` float32 metres
    (0 = nothing hit), ``cam_to_map [T, 4, 4]`` (optical frame), ``base_to_map [T, 4, 4]`` and
    the intrinsics ``K [3, 3]`` in our grid-edge convention."""

    rgb: NDArray
    depth: NDArray
    cam_to_map: NDArray
    base_to_map: NDArray
    K: NDArray


@dataclass(frozen=True)
class PathTruth:
    """Per-path ground truth of a fan: smallest clearance (m) and the index of the first pose in
    collision (-1 when the path is free)."""

    min_clearance: NDArray
    first_collision: NDArray

    @property
    def collides(self) -> NDArray:
        return self.first_collision >= 0


def render_path(renderer: Renderer, rig: CameraRig, base_to_map: ArrayLike) -> PathFrames:
    """Render the camera of ``rig`` at every base pose ``[T, 4, 4]``."""
    poses = np.asarray(base_to_map, dtype=np.float64).reshape(-1, 4, 4)
    cams = rig.cam_to_map(poses)
    cam = renderer.camera
    rgb = np.empty((len(poses), cam.height, cam.width, 3), dtype=np.uint8)
    depth = np.empty((len(poses), cam.height, cam.width), dtype=np.float32)
    for i, T in enumerate(cams):
        rgb[i], depth[i] = renderer.render(T)
    return PathFrames(rgb, depth, cams, poses, cam.K)


def clearance(
    scene: Scene, xy: ArrayLike, band: tuple[float, float] = DEFAULT_BAND
) -> NDArray:
    """Distance (m) from base positions ``[..., 2]`` (map) to the nearest obstacle."""
    return scene.obstacles(band).distance(xy)


def path_base_poses(path: CandidatePath) -> NDArray:
    """``[T, 4, 4]`` base poses of a candidate path."""
    return transform_from_translation_quat_xyzw(path.positions, path.quaternions_xyzw)


def candidate_fan(
    x: float,
    y: float,
    yaw: float,
    n: int = 9,
    *,
    length: float = 2.0,
    poses: int = 9,
    max_curvature: float = 1.0,
    frame_id: str = "map",
) -> list[CandidatePath]:
    """The planner's view of the options from a base state: :func:`rollout.paths.arc_fan`."""
    return arc_fan(n, length=length, poses=poses, max_curvature=max_curvature,
                   start_xy=(x, y), start_yaw=yaw, frame_id=frame_id)


def fan_truth(
    scene: Scene,
    paths: list[CandidatePath],
    robot_radius: float,
    band: tuple[float, float] = DEFAULT_BAND,
) -> PathTruth:
    """Smallest clearance and first collision of every path (positions' x, y only)."""
    mins, firsts = [], []
    for path in paths:
        c = clearance(scene, path.positions[:, :2], band)
        hits = np.flatnonzero(c < robot_radius)
        mins.append(float(c.min()))
        firsts.append(int(hits[0]) if len(hits) else -1)
    return PathTruth(np.array(mins), np.array(firsts, dtype=np.int64))
