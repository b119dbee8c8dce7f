"""``exploration``: share of each imagined view that observed memory could not fill.

cost = mean over the path's steps of (1 - coverage), where coverage counts only cells the
shared bank (real observations) fills, not what the path imagined on its way; a path into the
unknown costs up to 1. A negative weight turns it into a reward for novelty (information gain).
"""

from __future__ import annotations

import torch

from mirage_ros.rollout.critics.base import Critic, CriticBatch, register


@register
class ExplorationCritic(Critic):
    name = "exploration"
    description = "share of the imagined views the observed memory could not fill"
    default_weight = 0.0
    needs_imagination = True

    def cost(self, batch: CriticBatch) -> torch.Tensor:
        if batch.memory is None or batch.latents is None:
            return torch.zeros(batch.n_paths, dtype=torch.float64)
        n, t = batch.latents.shape[:2]
        h, w = batch.latents.shape[-2:]
        cams = batch.cam_to_map[:, 1:].reshape(n * t, 4, 4).float()
        view = batch.memory.read(cams, batch.K_latent.float(), (h, w))
        return (1.0 - view.coverage().view(n, t).double()).mean(1)
