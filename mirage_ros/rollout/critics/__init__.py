"""Critics as plugins, as in Nav2's MPPI controller: one small class per file, found by name.

Every module of this package is imported here, so a critic registers itself by being written:
a new critic is one new file with a class decorated by ``@register``. Critics from elsewhere
are named ``package.module:Class`` and imported on demand (see ``base.critic_class``).
"""

import importlib
import pkgutil

from mirage_ros.rollout.critics.base import (
    Critic,
    CriticBatch,
    Goal,
    ScoreTable,
    available_critics,
    critic_class,
    make_critic,
    register,
    score_paths,
)

for _info in pkgutil.iter_modules(__path__):
    if _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = [
    "Critic",
    "CriticBatch",
    "Goal",
    "ScoreTable",
    "available_critics",
    "critic_class",
    "make_critic",
    "register",
    "score_paths",
]
