"""``goal_image``: latent distance between each path's last imagined frame and the goal image.

cost = mean over channels and cells of the squared difference of the two latents, both scaled
by the model's per-channel latent statistics (so every channel counts alike); 0 when the goal
has no image. Compared in latent space: nothing is decoded.
"""

from __future__ import annotations

import torch

from mirage_ros.rollout.critics.base import Critic, CriticBatch, register


@register
class GoalImageCritic(Critic):
    name = "goal_image"
    description = "latent distance of the final imagined view to the goal image"
    default_weight = 1.0
    needs_imagination = True

    def cost(self, batch: CriticBatch) -> torch.Tensor:
        if batch.goal.latent is None or batch.latents is None:
            return torch.zeros(batch.n_paths, dtype=torch.float64)
        final = batch.latents[:, -1]
        goal = batch.goal.latent.to(final)[None]
        if batch.normalize is not None:
            final, goal = batch.normalize(final), batch.normalize(goal)
        return (final - goal).pow(2).flatten(1).mean(1).double()
