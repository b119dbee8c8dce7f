"""Image <-> latent autoencoder: 128x128 RGB -> 16x16xC latents (downsampling 8).

A plain deterministic convolutional autoencoder: the latent is what the memory stores and what the
diffusion model predicts, so it must be cheap to encode on every camera frame and smooth enough
for a small transformer to model. No KL term; a light L2 penalty on the latent keeps its scale
tame, and per-channel statistics (measured on the training set, stored in the checkpoint)
normalise it for the diffusion model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class AutoencoderConfig:
    latent_channels: int = 16
    widths: tuple[int, ...] = (48, 96, 160)  # one stage per factor-2 downsampling
    bottleneck: int = 192

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AutoencoderConfig:
        return cls(**{**d, "widths": tuple(d["widths"])})

    @property
    def downsampling(self) -> int:
        return 2 ** len(self.widths)


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(16, ch // 4), ch)


class ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
            _norm(ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, cfg.widths[0], 3, padding=1)]
        ch = cfg.widths[0]
        for w in (*cfg.widths[1:], cfg.bottleneck):
            layers += [ResBlock(ch), nn.Conv2d(ch, w, 4, stride=2, padding=1)]
            ch = w
        layers += [ResBlock(ch), _norm(ch), nn.SiLU(), nn.Conv2d(ch, cfg.latent_channels, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        chans = (cfg.bottleneck, *reversed(cfg.widths))
        layers: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, chans[0], 3, padding=1)]
        for c_in, c_out in zip(chans[:-1], chans[1:], strict=True):
            layers += [ResBlock(c_in), nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(c_in, c_out, 3, padding=1)]
        layers += [ResBlock(chans[-1]), _norm(chans[-1]), nn.SiLU(),
                   nn.Conv2d(chans[-1], 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Autoencoder(nn.Module):
    """encode: [B,3,H,W] in [0,1] -> [B,C,H/8,W/8]; decode: the inverse, clamped to [0,1]."""

    def __init__(self, cfg: AutoencoderConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or AutoencoderConfig()
        self.encoder = Encoder(self.cfg)
        self.decoder = Decoder(self.cfg)

    def encode(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.encoder(rgb * 2.0 - 1.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return (self.decoder(z) * 0.5 + 0.5).clamp(0.0, 1.0)

    def forward(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(rgb)
        return self.decoder(z) * 0.5 + 0.5, z


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 + an SSIM-like local-structure term: L1 alone gives blurry edges at this bottleneck."""
    return F.l1_loss(pred, target) + 0.5 * (1.0 - ssim(pred, target).mean())


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Mean SSIM per image with a uniform window (values in [0,1]); [B] tensor."""
    c1, c2 = 0.01**2, 0.03**2
    pad = window // 2
    mu_x = F.avg_pool2d(x, window, 1, pad, count_include_pad=False)
    mu_y = F.avg_pool2d(y, window, 1, pad, count_include_pad=False)
    sxx = F.avg_pool2d(x * x, window, 1, pad, count_include_pad=False) - mu_x**2
    syy = F.avg_pool2d(y * y, window, 1, pad, count_include_pad=False) - mu_y**2
    sxy = F.avg_pool2d(x * y, window, 1, pad, count_include_pad=False) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image for values in [0,1]; [B] tensor."""
    mse = (x - y).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return -10.0 * torch.log10(mse)
