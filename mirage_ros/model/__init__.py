"""The world model: autoencoder, latent depth head, memory-conditioned DiT (no ROS)."""

from mirage_ros.model.checkpoint import CheckpointError
from mirage_ros.model.world_model import WorldModel

__all__ = ["CheckpointError", "WorldModel"]
