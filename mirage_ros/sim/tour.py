"""Scripted robot tours: smooth, collision-free drives through a scene that revisit places.

A :class:`TourPilot` keeps choosing goals and drives to them. A goal lies in another room when
the scene has several, or is a place visited before (so that a tour contains loops and the same
views seen again, which a spatial memory must recognise). Routes come from the clearance grid
(:mod:`mirage_ros.sim.planning`), are smoothed, and are followed by pure pursuit on a unicycle
(:mod:`mirage_ros.sim.motion`), so the motion is what a real base would do: forward driving,
turns, now and then a look around on the spot. A tour never leaves the connected free region it
starts in: the one around a given start pose, else an enclosed one (the inside of a building,
not the space around it).

Everything is seeded: the same scene, seed and parameters give the same tour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from mirage_ros.geometry import planar_pose
from mirage_ros.sim.motion import Limits, PurePursuit, RobotState, integrate
from mirage_ros.sim.obstacles import DEFAULT_BAND
from mirage_ros.sim.planning import FreeRegions, cost_to_go, free_regions, route, smooth_polyline
from mirage_ros.sim.scene import Scene

__all__ = ["TourPilot", "Trajectory", "tour"]

# Plans run on a 10 cm grid made from a 5 cm clearance raster (a raster made directly at 10 cm
# misses thin walls by up to a cell); the coarse cells keep the smallest clearance they cover.
_RASTER = 0.05
_COARSEN = 2
DEFAULT_LIMITS = Limits()
# Control period used inside a tour (s); frames are sampled from it.
_CONTROL_DT = 0.05
# A robot standing in the safety margin joins a route from a cell at most this far (m).
_JOIN_DISTANCE = 0.6


@dataclass(frozen=True)
class Trajectory:
    """``stamps [T]`` seconds and ``states [T, 3]`` (x, y, yaw) of the robot base in the map."""

    stamps: NDArray
    states: NDArray

    def __len__(self) -> int:
        return len(self.stamps)

    def base_to_map(self) -> NDArray:
        """``[T, 4, 4]`` base poses."""
        s = self.states
        return planar_pose(s[:, 0], s[:, 1], s[:, 2])


class TourPilot:
    """Chooses goals and steers towards them; call :meth:`command` every control period."""

    def __init__(
        self,
        scene: Scene,
        rng: np.random.Generator,
        *,
        robot_radius: float = 0.25,
        margin: float = 0.12,
        limits: Limits = DEFAULT_LIMITS,
        band: tuple[float, float] = DEFAULT_BAND,
        revisit_probability: float = 0.3,
        look_around_probability: float = 0.25,
    ) -> None:
        self.scene = scene
        self.rng = rng
        self.limits = limits
        self.robot_radius = robot_radius
        self.min_clearance = robot_radius + margin
        self.band = band
        self.grid = scene.clearance_grid(band, _RASTER).coarsen(_COARSEN)
        # Whether the tour's region is walled in (known after start()).
        self.region_enclosed: bool | None = None
        self.revisit_probability = revisit_probability
        self.look_around_probability = look_around_probability
        self._reach: NDArray | None = None
        self._visited: list[NDArray] = []
        self._follower: PurePursuit | None = None
        self._spin_left = 0.0
        self._spin_sign = 1.0
        self._stuck_time = 0.0
        self._retry_in = 0.0

    def start(self, at: RobotState | None = None) -> RobotState:
        """Where the tour begins; the tour then stays in the free region around it.

        With ``at`` (a pose the caller chose), the region is the connected free space that
        contains it; a start inside or too close to an obstacle, off the scene, or walled into a
        pocket with no room to move raises ValueError. Without it, the start is a random spot
        with room around it, facing a random direction, in an *enclosed* region (a user's closed
        building also has free space outside its walls, which is not where a tour should go;
        furniture can wall off small pockets too): the largest enclosed one, or the largest of
        all when nothing is walled in.
        """
        regions = free_regions(self.grid, self.min_clearance)
        if regions.count == 0:
            raise ValueError(
                f"scene {self.scene.name} has no spot with {self.min_clearance:.2f} m clearance")
        if at is not None:
            label = self._region_of(regions, at)
            self._reach = regions.labels == label
            self.region_enclosed = bool(regions.enclosed[label])
            self._visited = [at.xy]
            return RobotState(float(at.x), float(at.y), float(at.yaw))
        label = regions.default()
        self._reach = regions.labels == label
        self.region_enclosed = bool(regions.enclosed[label])
        comfortable = self._reach & (self.grid.clearance >= self.min_clearance + 0.3)
        cells = np.argwhere(comfortable if comfortable.any() else self._reach)
        xy = self.grid.center_of(cells[int(self.rng.integers(len(cells)))])
        self._visited = [xy]
        return RobotState(float(xy[0]), float(xy[1]), float(self.rng.uniform(-math.pi, math.pi)))

    def _region_of(self, regions: FreeRegions, at: RobotState) -> int:
        """The label of the free region a robot standing at ``at`` can drive in."""
        x, y = float(at.x), float(at.y)
        if not all(math.isfinite(v) for v in (x, y, float(at.yaw))):
            raise ValueError(f"start must be finite, got ({x}, {y}, {at.yaw})")
        grid = self.grid
        rows, cols = grid.shape
        row, col = (int(v) for v in grid.cell_of((x, y)))
        if not (0 <= row < rows and 0 <= col < cols):
            x0, y0 = grid.origin
            x1, y1 = x0 + cols * grid.resolution, y0 + rows * grid.resolution
            raise ValueError(
                f"start ({x:.2f}, {y:.2f}) is outside scene {self.scene.name}, which spans "
                f"x {x0:.2f}..{x1:.2f}, y {y0:.2f}..{y1:.2f}")
        distance = float(self.scene.obstacles(self.band).distance(np.array([[x, y]]))[0])
        if distance < self.robot_radius:
            raise ValueError(
                f"start ({x:.2f}, {y:.2f}) is not in free space: {distance:.2f} m from an "
                f"obstacle, less than the robot radius {self.robot_radius:.2f} m")
        label = int(regions.labels[row, col])
        if label:
            return label
        # The start lies in the safety margin by a wall: the region is the one the robot can
        # join from there, through obstacle-free space and within a short drive.
        _, space = cv2.connectedComponents((grid.clearance > 0.0).astype(np.uint8),
                                           connectivity=4)
        cells = np.argwhere((regions.labels > 0) & (space == space[row, col]))
        if len(cells):
            gaps = np.linalg.norm(grid.center_of(cells) - np.array([x, y]), axis=1)
            nearest = int(np.argmin(gaps))
            if gaps[nearest] <= _JOIN_DISTANCE:
                return int(regions.labels[tuple(cells[nearest])])
        raise ValueError(
            f"start ({x:.2f}, {y:.2f}) has no room to move: no spot with "
            f"{self.min_clearance:.2f} m clearance (robot radius plus margin) lies within "
            f"{_JOIN_DISTANCE:.1f} m of it in the same free space")

    def _candidates(self) -> NDArray:
        assert self._reach is not None
        open_space = self._reach & (self.grid.clearance >= self.min_clearance + 0.2)
        return np.argwhere(open_space if open_space.any() else self._reach)

    def _choose_goal(self, xy: NDArray) -> NDArray:
        rng = self.rng
        earlier = [v for v in self._visited[:-1] if np.linalg.norm(v - xy) > 1.5]
        if earlier and rng.random() < self.revisit_probability:
            return earlier[int(rng.integers(len(earlier)))]
        cells = self._candidates()
        points = self.grid.center_of(cells)
        far = np.linalg.norm(points - xy, axis=1) > 1.5
        regions = self.scene.regions
        here = [i for i, r in enumerate(regions)
                if r.x0 <= xy[0] <= r.x1 and r.y0 <= xy[1] <= r.y1]
        # Prefer another room: that is where the new views are.
        elsewhere = far.copy()
        for i in here:
            r = regions[i]
            elsewhere &= ~((points[:, 0] >= r.x0) & (points[:, 0] <= r.x1)
                           & (points[:, 1] >= r.y0) & (points[:, 1] <= r.y1))
        pool = np.flatnonzero(elsewhere) if elsewhere.any() else np.flatnonzero(far)
        if not len(pool):
            pool = np.arange(len(points))
        return points[int(pool[int(rng.integers(len(pool)))])]

    def _plan(self, state: RobotState) -> PurePursuit | None:
        goal = self._choose_goal(state.xy)
        field = cost_to_go(self.grid, goal, self.min_clearance)
        start = state.xy
        path = route(self.grid, start, field)
        if path is None:
            # The robot may stand in the safety margin (pursuit cuts corners by a few cm):
            # join the route from the nearest cell that has a route.
            cells = np.argwhere(np.isfinite(field))
            if not len(cells):
                return None
            points = self.grid.center_of(cells)
            nearest = points[int(np.argmin(np.linalg.norm(points - start, axis=1)))]
            if np.linalg.norm(nearest - start) > _JOIN_DISTANCE:
                return None
            tail = route(self.grid, nearest, field)
            if tail is None:
                return None
            path = np.concatenate([start[None], tail])
        self._visited.append(goal)
        return PurePursuit(smooth_polyline(path, 0.05, 0.6), self.limits, lookahead=0.35)

    def command(self, state: RobotState, dt: float) -> tuple[float, float]:
        """``(v, w)`` for the next ``dt`` seconds."""
        if self._reach is None:
            raise RuntimeError("call start() before command()")
        if self._spin_left > 0.0:
            rate = 0.7 * self.limits.max_yaw_rate
            self._spin_left -= rate * dt
            return 0.0, rate * self._spin_sign
        if self._follower is None or self._follower.done:
            if self._follower is not None and self.rng.random() < self.look_around_probability:
                self._follower = None
                self._spin_left = float(self.rng.uniform(0.5 * math.pi, 1.5 * math.pi))
                self._spin_sign = 1.0 if self.rng.random() < 0.5 else -1.0
                return 0.0, 0.0
            if self._retry_in > 0.0:
                self._retry_in -= dt
                return 0.0, 0.0
            self._follower = self._plan(state)
            self._stuck_time = 0.0
            if self._follower is None:
                # No route from here (a start outside the connected free space): wait a
                # second before planning again instead of planning at every control step.
                self._retry_in = 1.0
                return 0.0, 0.0
        v, w = self._follower.command(state)
        # A follower that makes no headway for a while is abandoned for a new goal.
        self._stuck_time = self._stuck_time + dt if abs(state.v) < 0.02 and abs(state.w) < 0.02 \
            else 0.0
        if self._stuck_time > 3.0:
            self._follower = None
        return v, w


def tour(
    scene: Scene,
    frames: int,
    *,
    dt: float = 0.2,
    seed: int = 0,
    robot_radius: float = 0.25,
    limits: Limits = DEFAULT_LIMITS,
    band: tuple[float, float] = DEFAULT_BAND,
    start: RobotState | Sequence[float] | None = None,
) -> Trajectory:
    """``frames`` robot states ``dt`` seconds apart along a tour of ``scene``.

    ``start`` is the first state (a RobotState or ``(x, y, yaw)`` in the map); the tour stays in
    the free region that contains it. Without it the tour starts at a random spot of an enclosed
    region (see :meth:`TourPilot.start`).
    """
    if frames < 1 or dt <= 0.0:
        raise ValueError(f"need frames >= 1 and dt > 0, got {frames}, {dt}")
    pilot = TourPilot(scene, np.random.default_rng(seed), robot_radius=robot_radius,
                      limits=limits, band=band)
    if start is not None and not isinstance(start, RobotState):
        values = [float(v) for v in start]
        if len(values) != 3:
            raise ValueError(f"start must be (x, y, yaw), got {start!r}")
        start = RobotState(*values)
    state = pilot.start(start)
    substeps = max(1, math.ceil(dt / _CONTROL_DT - 1e-9))
    h = dt / substeps
    states = [state]
    while len(states) < frames:
        for _ in range(substeps):
            v, w = pilot.command(state, h)
            state = integrate(state, v, w, h, limits)
        states.append(state)
    array = np.array([(s.x, s.y, s.yaw) for s in states])
    return Trajectory(np.arange(frames) * dt, array)
