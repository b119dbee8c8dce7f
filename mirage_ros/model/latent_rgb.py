"""A linear map from a latent vector to the mean colour of its 8x8 pixel patch.

The memory holds latents, not colours; RViz's point cloud and the demo's top-down map still
want a colour per voxel. Decoding every voxel through the autoencoder would be the RGB round
trip the package exists to avoid, so the colour is a least-squares fit, refined online from
the frames that are observed anyway (each observation adds 256 latent/colour pairs).
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F


class LatentColorMap:
    """Accumulates the normal equations of ``rgb ~ [latent, 1] @ W`` and solves on demand.

    Thread-safe: the node updates it from its observer thread while a timer colours the cloud.
    """

    def __init__(self, channels: int, ridge: float = 1e-3) -> None:
        self._ata = torch.zeros(channels + 1, channels + 1, dtype=torch.float64)
        self._atb = torch.zeros(channels + 1, 3, dtype=torch.float64)
        self._ridge = ridge
        self._w: torch.Tensor | None = None
        self._lock = threading.Lock()
        self.samples = 0

    def update(self, latents: torch.Tensor, rgb: torch.Tensor) -> None:
        """latents ``[B,C,h,w]`` with their images ``[B,H,W,3]`` uint8 (H = f h)."""
        b, c, h, w = latents.shape
        colour = rgb.permute(0, 3, 1, 2).float() / 255.0
        colour = F.adaptive_avg_pool2d(colour, (h, w))  # mean colour of each cell's patch
        a = torch.cat([latents.float(), torch.ones(b, 1, h, w, device=latents.device)], 1)
        a = a.permute(0, 2, 3, 1).reshape(-1, c + 1).double().cpu()
        y = colour.permute(0, 2, 3, 1).reshape(-1, 3).double().cpu()
        ata, atb = a.T @ a, a.T @ y
        with self._lock:
            self._ata += ata
            self._atb += atb
            self.samples += a.shape[0]
            self._w = None

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        """Latent vectors ``[M,C]`` -> colours ``[M,3]`` uint8 (mid grey before any update)."""
        m = latents.shape[0]
        with self._lock:
            if self.samples == 0:
                return torch.full((m, 3), 128, dtype=torch.uint8)
            if self._w is None:
                eye = torch.eye(self._ata.shape[0], dtype=torch.float64)
                self._w = torch.linalg.solve(self._ata + self._ridge * eye, self._atb).float()
            w = self._w
        a = torch.cat([latents.float().cpu(), torch.ones(m, 1)], 1)
        return (a @ w * 255.0).round().clamp(0, 255).to(torch.uint8)
