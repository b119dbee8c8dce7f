"""The product's data flow without ROS: the rollout engine, the imagination loop, critics."""

from mirage_ros.rollout.critics import (
    Critic,
    CriticBatch,
    Goal,
    ScoreTable,
    available_critics,
    make_critic,
    register,
    score_paths,
)
from mirage_ros.rollout.paths import (
    CandidatePath,
    InvalidPathError,
    arc_fan,
    resample_path,
    validate_path,
)

__all__ = [
    "CandidatePath",
    "Critic",
    "CriticBatch",
    "Goal",
    "InvalidPathError",
    "ScoreTable",
    "arc_fan",
    "available_critics",
    "make_critic",
    "register",
    "resample_path",
    "score_paths",
    "validate_path",
]
