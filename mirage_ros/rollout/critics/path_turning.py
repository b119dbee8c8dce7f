"""``path_turning``: radians of heading change along the path (sum of |wrapped yaw steps|).

Uses the poses' orientations, not the direction of travel: a ground robot's camera looks where
the base points, and that is what the imagination critics see.
"""

from __future__ import annotations

import numpy as np

from mirage_ros.geometry import wrap_angle, yaw_from_quat_xyzw
from mirage_ros.rollout.critics.base import Critic, CriticBatch, register


@register
class PathTurningCritic(Critic):
    name = "path_turning"
    description = "radians of heading change along the path"
    default_weight = 0.1

    def cost(self, batch: CriticBatch) -> np.ndarray:
        turns = [np.diff(yaw_from_quat_xyzw(p.quaternions_xyzw)) for p in batch.paths]
        return np.array([np.abs(wrap_angle(t)).sum() for t in turns], dtype=np.float64)
