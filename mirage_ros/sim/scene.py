"""A compiled, static MuJoCo scene: procedural (from a seed) or a user's MJCF file or string.

The scene is a snapshot: kinematics are computed once (``mj_forward``) and never stepped, so
bodies with joints stay where the model puts them at ``qpos0``. The loader adds one camera,
``mirage_camera``, to the world body; renderers move it by writing its pose into ``MjData``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import mujoco

from mirage_ros.sim.layout import Rect
from mirage_ros.sim.obstacles import DEFAULT_BAND, ClearanceGrid, Obstacles
from mirage_ros.sim.procedural import generate_scene

__all__ = ["CAMERA_NAME", "Scene", "load_scene", "procedural_scene", "scene_from_config"]

CAMERA_NAME = "mirage_camera"
# Free space kept around the obstacles of a user scene that has no floor plan.
_USER_MARGIN = 1.0


@dataclass(eq=False)
class Scene:
    """A compiled scene. ``regions`` are its rooms and corridors (procedural scenes) or one
    rectangle around everything (user scenes): tours pick their goals per region."""

    name: str
    mjcf: str
    model: mujoco.MjModel
    data: mujoco.MjData
    camera_id: int
    regions: tuple[Rect, ...]
    bounds: Rect
    seed: int | None = None
    styles: tuple[str, ...] = ()  # per region, procedural scenes only
    open_roof: bool = False  # procedural scenes only: no ceiling
    _obstacles: dict[tuple[float, float], Obstacles] = field(default_factory=dict, repr=False)
    _grids: dict[tuple, ClearanceGrid] = field(default_factory=dict, repr=False)

    def obstacles(self, band: tuple[float, float] = DEFAULT_BAND) -> Obstacles:
        """Footprints of everything a robot as tall as ``band[1]`` can hit (cached per band)."""
        if band not in self._obstacles:
            self._obstacles[band] = Obstacles.from_model(self.model, self.data, band)
        return self._obstacles[band]

    def clearance_grid(
        self, band: tuple[float, float] = DEFAULT_BAND, resolution: float = 0.05
    ) -> ClearanceGrid:
        """Clearance over the scene's bounds (cached per band and resolution)."""
        key = (band, resolution)
        if key not in self._grids:
            b = self.bounds
            self._grids[key] = self.obstacles(band).clearance_grid(
                (b.x0, b.y0, b.x1, b.y1), resolution)
        return self._grids[key]


def _compile(spec: mujoco.MjSpec) -> tuple[mujoco.MjModel, mujoco.MjData, int]:
    if spec.camera(CAMERA_NAME) is not None:
        raise ValueError(f"the scene already has a camera named {CAMERA_NAME!r}")
    spec.worldbody.add_camera(name=CAMERA_NAME)
    model = spec.compile()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, CAMERA_NAME)
    return model, data, camera_id


def procedural_scene(seed: int, style: str | None = None, open_roof: float = 0.0) -> Scene:
    """The generated scene of ``seed``, every region furnished in ``style`` if given, open to
    the sky with chance ``open_roof`` (see :mod:`mirage_ros.sim.procedural`)."""
    generated = generate_scene(seed, style, open_roof)
    model, data, camera_id = _compile(mujoco.MjSpec.from_string(generated.mjcf))
    return Scene(
        # The name tells apart every distinct scene: a seed, its forced style, an open roof.
        name=f"procedural-{seed}" + (f"-{style}" if style else "")
        + ("-open" if generated.open_roof else ""),
        mjcf=generated.mjcf,
        model=model,
        data=data,
        camera_id=camera_id,
        regions=generated.plan.regions,
        bounds=generated.plan.bounds,
        seed=seed,
        styles=generated.styles,
        open_roof=generated.open_roof,
    )


def load_scene(source: str | os.PathLike[str]) -> Scene:
    """A user scene from an MJCF file path or an MJCF string (anything starting with ``<``).

    Files are loaded with their directory as the asset root, so meshes and textures referenced
    by relative paths resolve as in MuJoCo's own viewer. The robot's free space is taken to be
    the rectangle around all geoms (infinite planes aside) plus a margin. A closed building thus
    has free space outside its walls as well: tours stay in the connected part of it that holds
    their start, and pick an enclosed part when no start is given (see
    :meth:`~mirage_ros.sim.tour.TourPilot.start`).
    """
    text = str(source)
    if text.lstrip().startswith("<"):
        spec, mjcf, name = mujoco.MjSpec.from_string(text), text, "mjcf-string"
    else:
        path = Path(source)
        spec, mjcf, name = mujoco.MjSpec.from_file(str(path)), path.read_text(), path.stem
    model, data, camera_id = _compile(spec)
    scene = Scene(name, mjcf, model, data, camera_id, (), Rect(0.0, 0.0, 0.0, 0.0))
    # Everything at any height (floors and ceilings included) delimits where a robot may be.
    x0, y0, x1, y1 = scene.obstacles((-math.inf, math.inf)).bounds()
    bounds = Rect(x0 - _USER_MARGIN, y0 - _USER_MARGIN, x1 + _USER_MARGIN, y1 + _USER_MARGIN)
    scene.regions, scene.bounds = (bounds,), bounds
    return scene


def scene_from_config(seed: int, mjcf_path: str = "", style: str | None = None,
                      open_roof: float = 0.0) -> Scene:
    """What the CLIs and the sim node accept: a user MJCF path if given, else the seed (and a
    forced procedural style, and the chance of an open roof)."""
    return load_scene(mjcf_path) if mjcf_path else procedural_scene(seed, style, open_roof)
