"""Batched imagination rollouts over candidate paths, critics and scoring (no ROS)."""

from mirage_ros.rollout.critics import (
    Critic,
    PathLengthCritic,
    PathTurningCritic,
    ScoreTable,
    score_paths,
)
from mirage_ros.rollout.paths import CandidatePath, InvalidPathError, arc_fan, validate_path

__all__ = [
    "CandidatePath",
    "Critic",
    "arc_fan",
    "InvalidPathError",
    "PathLengthCritic",
    "PathTurningCritic",
    "ScoreTable",
    "score_paths",
    "validate_path",
]
