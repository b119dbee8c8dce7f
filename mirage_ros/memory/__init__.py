"""Latent spatial memory: image latents fused into a voxel hash in the map frame.

Importable without ROS. See ``latent_memory.LatentMemory`` for the API and the module docstrings
of ``depth``, ``voxel_hash``, ``zbuffer``, ``keyframes``, ``overlay`` and ``persistence`` for
the rules.
"""

from . import keyframes
from .depth import reduce_depth
from .frames import WriteStats
from .latent_memory import LatentMemory, MemoryConfig, MemoryView
from .overlay import MemoryOverlay
from .persistence import MemoryFormatError

__all__ = [
    "LatentMemory",
    "MemoryConfig",
    "MemoryFormatError",
    "MemoryOverlay",
    "MemoryView",
    "WriteStats",
    "keyframes",
    "reduce_depth",
]
