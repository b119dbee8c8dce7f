"""Filling the holes of a memory read with the nearest cell the memory did fill.

The memory-only guess of a view: what a planner without a generative model would have. The
evaluation's baseline and the memory-only imagination (``rollout.imagination.recall_paths``)
both use it, so the two agree on what "memory only" means.
"""

from __future__ import annotations

import torch

__all__ = ["fill_nearest"]


def fill_nearest(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Copy into every cell with ``mask`` False the value of the nearest cell with ``mask`` True
    (Euclidean distance on the cell grid) of the same view.

    values ``[B, C, h, w]`` (latents) or ``[B, h, w]`` (depth); mask ``[B, h, w]`` bool. A view
    with no filled cell is returned unchanged. Ties between equally near cells go to the first
    in row-major order, so the result is deterministic. Returns a new tensor.
    """
    squeeze = values.ndim == 3
    v = values[:, None] if squeeze else values
    if v.ndim != 4 or mask.shape != (v.shape[0], *v.shape[-2:]):
        raise ValueError(f"values [B,C,h,w] or [B,h,w] and mask [B,h,w] must match, got "
                         f"{tuple(values.shape)} and {tuple(mask.shape)}")
    b, c, h, w = v.shape
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    cells = torch.stack([ys.flatten(), xs.flatten()], 1).float().to(v.device)
    out = v.clone()
    flat_mask = mask.reshape(b, -1)
    for i in range(b):
        known = flat_mask[i].nonzero()[:, 0]
        if known.numel() == 0 or known.numel() == h * w:
            continue
        nearest = torch.cdist(cells, cells[known]).argmin(1)
        out[i] = v[i].flatten(1)[:, known[nearest]].view(c, h, w)
    return out[:, 0] if squeeze else out
