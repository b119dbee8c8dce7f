"""The camera on the robot: intrinsics plus how it is mounted on ``base_link``.

Core geometry, not simulation: the simulator renders through it, and the node, the demo, the
benchmarks and the training tools all need the same mount to turn base poses into camera poses,
so it must be importable without MuJoCo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from numpy.typing import ArrayLike, NDArray

from mirage_ros.geometry.camera import PinholeCamera
from mirage_ros.geometry.frames import OPTICAL_TO_BODY, camera_link_to_base, camera_pose_from_base

__all__ = ["CameraRig"]


@dataclass(frozen=True)
class CameraRig:
    """A camera ``height`` metres above ``base_link``, ``x_offset`` ahead of it, pitched down by
    ``pitch`` radians (positive looks down), as in :mod:`mirage_ros.geometry.frames`."""

    camera: PinholeCamera
    height: float = 0.5
    pitch: float = math.radians(10.0)
    x_offset: float = 0.0

    @classmethod
    def create(
        cls,
        width: int = 128,
        height: int = 128,
        hfov_deg: float = 90.0,
        height_m: float = 0.5,
        pitch_deg: float = 10.0,
        x_offset: float = 0.0,
    ) -> CameraRig:
        """A centred square-pixel camera from the parameters the CLIs and the node expose."""
        camera = PinholeCamera.from_hfov(math.radians(hfov_deg), width, height)
        return cls(camera, height_m, math.radians(pitch_deg), x_offset)

    def cam_to_map(self, base_to_map: ArrayLike) -> NDArray:
        """Optical frame -> map for base poses ``[..., 4, 4]``."""
        return camera_pose_from_base(base_to_map, self.height, self.pitch, self.x_offset)

    @property
    def cam_to_base(self) -> NDArray:
        """Optical frame -> ``base_link`` (4x4): the extrinsic a real robot's tf would hold."""
        return camera_link_to_base(self.height, self.pitch, self.x_offset) @ OPTICAL_TO_BODY
