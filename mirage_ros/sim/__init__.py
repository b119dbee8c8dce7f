"""MuJoCo scenes, robot trajectories and RGB-D rendering for mirage_ros (no models, no ROS).

Modules: ``layout`` (floor plans), ``materials``, ``furniture``, ``mjcf`` and ``procedural``
(seeded scene generation), ``scene`` (compiled scenes, also from a user's MJCF), ``obstacles``
(2D footprints, exact clearance, clearance grids), ``render`` (RGB-D rendering of the camera of
a :class:`~mirage_ros.geometry.CameraRig`), ``planning``, ``motion`` and ``tour`` (collision-free
robot-like trajectories), ``truth`` (ground truth along any path), ``robot`` (the sim node's
robot), and the CLI ``contact_sheet``.

A tool over the core: it may import geometry and rollout, never ``train`` or ``ros`` (datasets
are written by :mod:`mirage_ros.train.generate`, which drives this package).
"""

import os

# MuJoCo picks its OpenGL backend when it is first imported, and every module of this package
# imports it: default to headless EGL, which works on Mesa's llvmpipe (CPU) and on NVIDIA
# drivers. MUJOCO_GL=osmesa is the fallback where EGL is missing (needs libosmesa6); an explicit
# setting is always kept. Importing mujoco before this package bypasses the default.
os.environ.setdefault("MUJOCO_GL", "egl")

from mirage_ros.sim.motion import Limits, RobotState  # noqa: E402
from mirage_ros.sim.obstacles import ClearanceGrid, Obstacles  # noqa: E402
from mirage_ros.sim.procedural import generate_scene  # noqa: E402
from mirage_ros.sim.render import Renderer  # noqa: E402
from mirage_ros.sim.robot import SimRobot  # noqa: E402
from mirage_ros.sim.scene import Scene, load_scene, procedural_scene, scene_from_config  # noqa: E402
from mirage_ros.sim.tour import TourPilot, Trajectory, tour  # noqa: E402
from mirage_ros.sim.truth import (  # noqa: E402
    candidate_fan,
    clearance,
    fan_truth,
    path_base_poses,
    render_path,
)

__all__ = [
    "ClearanceGrid",
    "Limits",
    "Obstacles",
    "Renderer",
    "RobotState",
    "Scene",
    "SimRobot",
    "TourPilot",
    "Trajectory",
    "candidate_fan",
    "clearance",
    "fan_truth",
    "generate_scene",
    "load_scene",
    "path_base_poses",
    "procedural_scene",
    "render_path",
    "scene_from_config",
    "tour",
]
