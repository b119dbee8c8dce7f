"""``path_length``: metres travelled along the path as sent (sum of segment lengths)."""

from __future__ import annotations

import numpy as np

from mirage_ros.rollout.critics.base import Critic, CriticBatch, register


@register
class PathLengthCritic(Critic):
    name = "path_length"
    description = "metres along the path"
    default_weight = 0.1

    def cost(self, batch: CriticBatch) -> np.ndarray:
        return np.array(
            [np.linalg.norm(np.diff(p.positions, axis=0), axis=1).sum() for p in batch.paths],
            dtype=np.float64)
