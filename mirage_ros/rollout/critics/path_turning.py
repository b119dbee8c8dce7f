"""``path_turning``: radians of heading change along the path (sum of |wrapped yaw steps|).

Uses the poses' orientations, not the direction of travel: a ground robot's camera looks where
the base points, and that is what the imagination critics see.
"""

from __future__ import annotations

import numpy as np

from mirage_ros.rollout.critics.base import Critic, CriticBatch, register, wrap_angle, yaw_of


@register
class PathTurningCritic(Critic):
    name = "path_turning"
    description = "radians of heading change along the path"
    default_weight = 0.1

    def cost(self, batch: CriticBatch) -> np.ndarray:
        return np.array(
            [np.abs(wrap_angle(np.diff(yaw_of(p.quaternions_xyzw)))).sum() for p in batch.paths],
            dtype=np.float64)
