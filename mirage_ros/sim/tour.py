"""Scripted robot tours: smooth, collision-free drives through a scene that revisit places.

A :class:`TourPilot` keeps choosing goals and drives to them. A goal lies in another room when
the scene has several, or is a place visited before (so that a tour contains loops and the same
views seen again, which a spatial memory must recognise). Routes come from the clearance grid
(:mod:`mirage_ros.sim.planning`), are smoothed, and are followed by pure pursuit on a unicycle
(:mod:`mirage_ros.sim.motion`), so the motion is what a real base would do: forward driving,
turns, now and then a look around on the spot.

Everything is seeded: the same scene, seed and parameters give the same tour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from mirage_ros.geometry import planar_pose
from mirage_ros.sim.motion import Limits, PurePursuit, RobotState, integrate
from mirage_ros.sim.obstacles import DEFAULT_BAND
from mirage_ros.sim.planning import cost_to_go, route, smooth_polyline
from mirage_ros.sim.scene import Scene

__all__ = ["TourPilot", "Trajectory", "tour"]

# Plans run on a 10 cm grid made from a 5 cm clearance raster (a raster made directly at 10 cm
# misses thin walls by up to a cell); the coarse cells keep the smallest clearance they cover.
_RASTER = 0.05
_COARSEN = 2
DEFAULT_LIMITS = Limits()
# Control period used inside a tour (s); frames are sampled from it.
_CONTROL_DT = 0.05


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
        self.min_clearance = robot_radius + margin
        self.grid = scene.clearance_grid(band, _RASTER).coarsen(_COARSEN)
        self.revisit_probability = revisit_probability
        self.look_around_probability = look_around_probability
        self._reach: NDArray | None = None
        self._visited: list[NDArray] = []
        self._follower: PurePursuit | None = None
        self._spin_left = 0.0
        self._spin_sign = 1.0
        self._stuck_time = 0.0
        self._retry_in = 0.0

    def start(self) -> RobotState:
        """A random start in the largest connected free space, with room around it, facing a
        random direction (furniture can wall off small pockets; a tour never starts in one)."""
        free = (self.grid.clearance >= self.min_clearance).astype(np.uint8)
        count, labels = cv2.connectedComponents(free, connectivity=8)
        if count < 2:
            raise ValueError(
                f"scene {self.scene.name} has no spot with {self.min_clearance:.2f} m clearance")
        largest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
        self._reach = labels == largest
        comfortable = self._reach & (self.grid.clearance >= self.min_clearance + 0.3)
        cells = np.argwhere(comfortable if comfortable.any() else self._reach)
        xy = self.grid.center_of(cells[int(self.rng.integers(len(cells)))])
        self._visited = [xy]
        return RobotState(float(xy[0]), float(xy[1]), float(self.rng.uniform(-math.pi, math.pi)))

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
            if np.linalg.norm(nearest - start) > 0.6:
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
) -> Trajectory:
    """``frames`` robot states ``dt`` seconds apart along a tour of ``scene``."""
    if frames < 1 or dt <= 0.0:
        raise ValueError(f"need frames >= 1 and dt > 0, got {frames}, {dt}")
    pilot = TourPilot(scene, np.random.default_rng(seed), robot_radius=robot_radius,
                      limits=limits, band=band)
    state = pilot.start()
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
