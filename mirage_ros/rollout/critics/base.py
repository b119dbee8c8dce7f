"""The critic contract: one shared batch in, one unweighted cost per path out.

As in Nav2's MPPI controller, each critic is small and independent, is found by name in a
registry, declares its own parameters (the node exposes them as ``<name>.<parameter>`` next to
``<name>.weight``), and is fed the same batch as every other critic. Costs are "lower is
better" and reported unweighted so a planner can see why a path lost; the score is
``-sum(weight * cost)``, so higher is better.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from mirage_ros.rollout.paths import CandidatePath

if TYPE_CHECKING:
    from mirage_ros.memory import LatentMemory

ParamValue = bool | int | float | str


@dataclass(frozen=True)
class Goal:
    """What the planner wants: a base pose ``[4,4]`` in the map frame and/or the raw latent
    ``[C,h,w]`` of a goal image (encoded once per query). Either may be None."""

    pose: torch.Tensor | None = None
    latent: torch.Tensor | None = None


@dataclass(frozen=True)
class CriticBatch:
    """Everything a critic may look at, shared by all critics of one query.

    ``base_to_map`` / ``cam_to_map`` are ``[N,T+1,4,4]`` float64: index 0 is where imagination
    starts (the last observed camera pose for ``cam_to_map``; the path's first pose for
    ``base_to_map``), indices 1..T the path resampled at the engine's step length. The imagined
    fields are ``None`` when no active critic needs imagination (geometry-only scoring).
    """

    paths: Sequence[CandidatePath]  # as the planner sent them (validated)
    base_to_map: torch.Tensor  # [N,T+1,4,4] float64
    cam_to_map: torch.Tensor  # [N,T+1,4,4] float64
    K_latent: torch.Tensor  # [3,3] float64, latent-grid intrinsics
    goal: Goal = field(default_factory=Goal)
    robot_radius: float = 0.25
    latents: torch.Tensor | None = None  # [N,T,C,h,w] raw imagined latents
    depth: torch.Tensor | None = None  # [N,T,h,w] metres: memory depth where it filled a cell,
    # the depth head's elsewhere (0 = unknown)
    coverage: torch.Tensor | None = None  # [N,T] share of each view the model was given
    memory: LatentMemory | None = None  # the snapshot the rollout read (observed content only)
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None  # the model's latent scaling

    @property
    def n_paths(self) -> int:
        return len(self.paths)

    @property
    def horizon(self) -> int:
        return int(self.base_to_map.shape[1]) - 1

    @classmethod
    def geometric(cls, paths: Sequence[CandidatePath], **kw) -> CriticBatch:
        """A batch with no imagination: each path's own poses, padded with its last pose."""
        from mirage_ros.geometry import transform_from_translation_quat_xyzw

        longest = max(len(p) for p in paths)
        poses = np.empty((len(paths), longest, 4, 4))
        for i, p in enumerate(paths):
            T = transform_from_translation_quat_xyzw(p.positions, p.quaternions_xyzw)
            poses[i, :len(p)], poses[i, len(p):] = T, T[-1]
        t = torch.from_numpy(poses)
        return cls(paths=paths, base_to_map=t, cam_to_map=t, K_latent=torch.eye(3,
                   dtype=torch.float64), **kw)


class Critic:
    """Base class of every critic. Subclasses set the class attributes and implement ``cost``.

    ``parameters`` maps each parameter name to ``(default, description)``; the default's type
    is the parameter's type (an int parameter accepts ints only, a float one ints and floats).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    default_weight: ClassVar[float] = 1.0
    needs_imagination: ClassVar[bool] = False
    parameters: ClassVar[dict[str, tuple[ParamValue, str]]] = {}

    def __init__(self, **params: ParamValue) -> None:
        unknown = set(params) - set(self.parameters)
        if unknown:
            raise ValueError(f"critic {self.name}: unknown parameter(s) {sorted(unknown)}; "
                             f"it has {sorted(self.parameters) or 'none'}")
        for key, (default, _) in self.parameters.items():
            value = params.get(key, default)
            setattr(self, key, _checked(self.name, key, value, default))

    def cost(self, batch: CriticBatch) -> torch.Tensor | np.ndarray:
        """Unweighted cost per path, ``[N]``, lower is better."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.parameters)
        return f"{type(self).__name__}({args})"


def _checked(critic: str, key: str, value: ParamValue, default: ParamValue) -> ParamValue:
    where = f"critic {critic}: parameter {key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be a bool, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string, got {value!r}")
    return value


_REGISTRY: dict[str, type[Critic]] = {}


def register(cls: type[Critic]) -> type[Critic]:
    """Class decorator: make a critic findable by its ``name``."""
    if not cls.name or not cls.name.isidentifier():
        raise ValueError(f"{cls.__name__}.name must be an identifier, got {cls.name!r}")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"two critics are named {cls.name!r}: {_REGISTRY[cls.name]} and {cls}")
    _REGISTRY[cls.name] = cls
    return cls


def available_critics() -> list[str]:
    """Names of the registered critics, sorted."""
    return sorted(_REGISTRY)


def critic_class(name: str) -> type[Critic]:
    """The critic class called ``name``, or ``package.module:Class`` imported on demand."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"critic {name!r} cannot be imported: {err}") from None
        if not (isinstance(cls, type) and issubclass(cls, Critic)):
            raise ValueError(f"critic {name!r} is not a subclass of mirage_ros Critic")
        return register(cls)
    raise ValueError(f"no critic named {name!r}; available: {', '.join(available_critics())}")


def make_critic(name: str, params: dict[str, ParamValue] | None = None) -> Critic:
    return critic_class(name)(**(params or {}))


@dataclass(frozen=True)
class ScoreTable:
    """Scores for N paths from K critics, in path order."""

    scores: np.ndarray  # [N] float64, higher is better
    best_index: int  # first index of the maximum score
    names: tuple[str, ...]  # [K] critic names
    costs: np.ndarray  # [N, K] unweighted costs

    def order(self) -> np.ndarray:
        """Path indices best first (stable: ties keep path order)."""
        return np.argsort(-self.scores, kind="stable")


def score_paths(batch: CriticBatch, critics: Sequence[tuple[Critic, float]]) -> ScoreTable:
    """Run every critic on the batch and combine: score = -sum_k weight_k * cost_k."""
    n = batch.n_paths
    if n == 0:
        raise ValueError("score_paths needs at least one path")
    names = tuple(c.name for c, _ in critics)
    costs = np.zeros((n, len(critics)), dtype=np.float64)
    weights = np.array([w for _, w in critics], dtype=np.float64)
    for k, (critic, _) in enumerate(critics):
        cost = critic.cost(batch)
        if isinstance(cost, torch.Tensor):
            cost = cost.detach().to("cpu", torch.float64).numpy()
        cost = np.asarray(cost, dtype=np.float64)
        if cost.shape != (n,):
            raise ValueError(f"critic {critic.name} returned shape {cost.shape}, expected ({n},)")
        costs[:, k] = cost
    if not np.isfinite(costs).all():
        bad = [names[k] for k in range(len(names)) if not np.isfinite(costs[:, k]).all()]
        raise FloatingPointError(f"critic(s) returned a non-finite cost: {', '.join(bad)}")
    scores = -(costs @ weights) if critics else np.zeros(n)
    return ScoreTable(scores=scores, best_index=int(np.argmax(scores)), names=names, costs=costs)
