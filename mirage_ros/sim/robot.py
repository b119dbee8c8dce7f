"""The simulated robot base behind the sim node: one state, three ways to drive it, collisions.

Modes: ``tour`` (a :class:`~mirage_ros.sim.tour.TourPilot` drives around the scene), ``path``
(pure pursuit along the last path received; the robot stops at its end) and ``cmd_vel`` (the
last velocity command, for at most ``cmd_timeout`` seconds, as a real base's watchdog does).
A step that would end closer to an obstacle than the robot's radius is refused: the robot stops
where it is and the step reports the collision. The start is a given pose (which must be in free
space) or a random spot of an enclosed free region; a tour stays in the region of the start (see
:meth:`~mirage_ros.sim.tour.TourPilot.start`). Nothing here knows about ROS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from mirage_ros.sim.motion import Limits, PurePursuit, RobotState, integrate
from mirage_ros.sim.obstacles import DEFAULT_BAND
from mirage_ros.sim.scene import Scene
from mirage_ros.sim.tour import TourPilot

__all__ = ["MODES", "SimRobot", "StepResult"]

MODES = ("tour", "path", "cmd_vel")


@dataclass(frozen=True)
class StepResult:
    state: RobotState
    collided: bool
    clearance: float  # metres from the base position to the nearest obstacle


class SimRobot:
    def __init__(
        self,
        scene: Scene,
        *,
        robot_radius: float = 0.25,
        limits: Limits | None = None,
        seed: int = 0,
        start: tuple[float, float, float] | None = None,
        cmd_timeout: float = 0.5,
        band: tuple[float, float] = DEFAULT_BAND,
    ) -> None:
        self.scene = scene
        self.radius = robot_radius
        self.limits = limits or Limits()
        self.band = band
        self.cmd_timeout = cmd_timeout
        self._pilot = TourPilot(scene, np.random.default_rng(seed), robot_radius=robot_radius,
                                limits=self.limits, band=band)
        # The pilot owns the start in every mode: a given start must lie in free space with room
        # to move, and a tour (now or after a switch of mode) stays in the region around it.
        if start is None:
            self.state = self._pilot.start()
        else:
            x, y, yaw = start
            self.state = self._pilot.start(RobotState(float(x), float(y), float(yaw)))
        self.mode = "tour"
        self._follower: PurePursuit | None = None
        self._command = (0.0, 0.0)
        self._command_time = -math.inf

    def clearance(self) -> float:
        return float(self.scene.obstacles(self.band).distance(self.state.xy[None])[0])

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode != self.mode:
            self.mode = mode
            self._follower = None
            self._command = (0.0, 0.0)

    def follow(self, path_xy: ArrayLike) -> None:
        """Drive along ``[K, 2]`` map points (from wherever the robot is now)."""
        self._follower = PurePursuit(path_xy, self.limits)

    def command_velocity(self, v: float, w: float, now: float) -> None:
        if not (math.isfinite(v) and math.isfinite(w)):
            raise ValueError(f"velocity command must be finite, got v={v}, w={w}")
        self._command = (v, w)
        self._command_time = now

    @property
    def region_enclosed(self) -> bool:
        """Whether the free region of the start is walled in (False: it reaches the edge of the
        scene, as the space around a building does)."""
        return bool(self._pilot.region_enclosed)

    @property
    def path_done(self) -> bool:
        return self._follower is None or self._follower.done

    def step(self, dt: float, now: float) -> StepResult:
        """Advance by ``dt`` seconds of simulated time; ``now`` is the simulated time."""
        if self.mode == "tour":
            v, w = self._pilot.command(self.state, dt)
        elif self.mode == "path":
            v, w = self._follower.command(self.state) if self._follower else (0.0, 0.0)
        else:
            fresh = now - self._command_time <= self.cmd_timeout
            v, w = self._command if fresh else (0.0, 0.0)
        moved = integrate(self.state, v, w, dt, self.limits)
        clearance = float(self.scene.obstacles(self.band).distance(moved.xy[None])[0])
        if clearance < self.radius:
            s = self.state
            self.state = RobotState(s.x, s.y, s.yaw)  # stopped: zero velocity
            self._follower = None  # a blocked path is abandoned, not retried into the wall
            return StepResult(self.state, True, self.clearance())
        self.state = moved
        return StepResult(moved, False, clearance)
