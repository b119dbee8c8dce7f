"""Critics turn candidate paths into per-path costs; the score is their negated weighted sum.

As in Nav2's MPPI controller, each critic is small and independent and its weight lives in YAML.
Costs are "lower is better" and reported unweighted so a planner can see why a path lost; the
score is `-sum(weight * cost)`, so higher is better.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mirage_ros.rollout.paths import CandidatePath


class Critic(Protocol):
    name: str

    def cost(self, paths: Sequence[CandidatePath]) -> np.ndarray:
        """Return float64 [N] costs, one per path, lower is better."""
        ...


class PathLengthCritic:
    """Metres travelled along the path (sum of segment lengths)."""

    name = "path_length"

    def cost(self, paths: Sequence[CandidatePath]) -> np.ndarray:
        return np.array(
            [np.linalg.norm(np.diff(p.positions, axis=0), axis=1).sum() for p in paths],
            dtype=np.float64)


def yaw_of(quaternions_xyzw: np.ndarray) -> np.ndarray:
    """Heading (rotation about z) of ROS-order quaternions, radians in (-pi, pi]."""
    x, y, z, w = (quaternions_xyzw[:, i] for i in range(4))
    return np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


class PathTurningCritic:
    """Radians of heading change along the path (sum of |wrapped yaw differences|).

    Uses the poses' orientations, not the direction of travel: a ground robot's camera looks
    where the base points, and that is what the imagination critics will see.
    """

    name = "path_turning"

    def cost(self, paths: Sequence[CandidatePath]) -> np.ndarray:
        costs = np.empty(len(paths), dtype=np.float64)
        for i, p in enumerate(paths):
            dyaw = np.diff(yaw_of(p.quaternions_xyzw))
            costs[i] = np.abs(np.angle(np.exp(1j * dyaw))).sum()
        return costs


@dataclass(frozen=True)
class ScoreTable:
    """Scores for N paths from K critics, in path order."""

    scores: np.ndarray  # [N] float64, higher is better
    best_index: int  # first index of the maximum score
    names: tuple[str, ...]  # [K] critic names
    costs: np.ndarray  # [N, K] unweighted costs


def score_paths(
    paths: Sequence[CandidatePath], critics: Sequence[tuple[Critic, float]]
) -> ScoreTable:
    """Run every critic on every path and combine: score = -sum_k weight_k * cost_k."""
    if not paths:
        raise ValueError("score_paths needs at least one path")
    names = tuple(c.name for c, _ in critics)
    costs = np.zeros((len(paths), len(critics)), dtype=np.float64)
    weights = np.array([w for _, w in critics], dtype=np.float64)
    for k, (critic, _) in enumerate(critics):
        costs[:, k] = critic.cost(paths)
    if not np.isfinite(costs).all():
        raise FloatingPointError(f"a critic returned a non-finite cost: {names}")
    scores = -(costs @ weights) if critics else np.zeros(len(paths))
    return ScoreTable(scores=scores, best_index=int(np.argmax(scores)), names=names, costs=costs)
