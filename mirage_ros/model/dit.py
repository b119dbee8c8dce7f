"""Memory-conditioned diffusion transformer (DiT with adaLN-Zero), the whole model in one file.

It predicts the latent of the next camera frame from what is already known about that view:

    per latent cell (16x16 grid, C channels):
        x_t          the noisy target latent (flow matching state)           C
        memory       the memory read at the target pose: latent, log-depth,  C + 1 + 1
                     hole mask (holes are zeros with mask 0)
        previous     the previous frame's latent                              C
        motion       Plücker rays of the target camera, written in the        6
                     previous camera's frame (the relative camera motion)
        trust        (memory_trust models) how near the camera of the kept    1
                     frame that supplied the memory cell was to the target:
                     1 = seen from exactly here, 0 = a fused-map cell or hole

All of it is concatenated per cell, patchified 2x2 into 64 tokens, and run through transformer
blocks whose LayerNorms are modulated by the noise level (adaLN-Zero, as in DiT). The output is
the flow-matching velocity for the target latent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class DiTConfig:
    latent_channels: int = 16
    grid: int = 16  # latent grid side (h = w)
    patch: int = 2
    hidden: int = 192
    depth: int = 8
    heads: int = 4
    mlp_ratio: float = 4.0
    memory_trust: bool = False  # the conditioning carries the trust channel (see above)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DiTConfig:
        return cls(**d)

    @property
    def cond_channels(self) -> int:
        """Channels of the conditioning stack: memory latent, depth, mask, previous, rays and,
        for memory_trust models, trust."""
        return 2 * self.latent_channels + 2 + 6 + int(self.memory_trust)

    @property
    def tokens(self) -> int:
        return (self.grid // self.patch) ** 2


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


def sincos_2d(dim: int, side: int) -> torch.Tensor:
    """Fixed 2D sin-cos position embedding [side*side, dim] (row-major token order)."""
    quarter = dim // 4
    freqs = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    ay = ys.flatten()[:, None].double() * freqs[None]
    ax = xs.flatten()[:, None].double() * freqs[None]
    return torch.cat([ay.sin(), ay.cos(), ax.sin(), ax.cos()], dim=1).float()


class TimestepEmbedder(nn.Module):
    """Noise level t in [0, 1] -> a vector, via sinusoids and an MLP."""

    def __init__(self, hidden: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
        args = (t.float() * 1000.0)[:, None] * freqs[None]
        return self.mlp(torch.cat([args.cos(), args.sin()], dim=1))


class Block(nn.Module):
    def __init__(self, hidden: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        mlp = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, mlp), nn.GELU(approximate="tanh"), nn.Linear(mlp, hidden))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=1)
        b, n, d = x.shape
        h = modulate(self.norm1(x), shift1, scale1)
        q, k, v = self.qkv(h).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + gate1[:, None] * self.proj(h)
        h = modulate(self.norm2(x), shift2, scale2)
        return x + gate2[:, None] * self.mlp(h)


class FinalLayer(nn.Module):
    def __init__(self, hidden: int, out: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, out)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


class MemoryDiT(nn.Module):
    """forward(x_t [B,C,g,g], t [B], cond [B,cond_channels,g,g]) -> velocity [B,C,g,g]."""

    def __init__(self, cfg: DiTConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or DiTConfig()
        if cfg.grid % cfg.patch or cfg.hidden % (4 * cfg.heads):
            raise ValueError("grid must be a multiple of patch, hidden of 4 * heads")
        in_ch = cfg.latent_channels + cfg.cond_channels
        self.embed = nn.Conv2d(in_ch, cfg.hidden, cfg.patch, stride=cfg.patch)
        self.register_buffer("pos", sincos_2d(cfg.hidden, cfg.grid // cfg.patch), persistent=False)
        self.t_embed = TimestepEmbedder(cfg.hidden)
        self.blocks = nn.ModuleList(
            Block(cfg.hidden, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.final = FinalLayer(cfg.hidden, cfg.patch * cfg.patch * cfg.latent_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.embed.weight.view(self.embed.weight.shape[0], -1))
        nn.init.zeros_(self.embed.bias)
        nn.init.normal_(self.t_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embed.mlp[2].weight, std=0.02)
        # adaLN-Zero: every block starts as the identity, the output as zero.
        for block in self.blocks:
            nn.init.zeros_(block.ada[-1].weight)
            nn.init.zeros_(block.ada[-1].bias)
        nn.init.zeros_(self.final.ada[-1].weight)
        nn.init.zeros_(self.final.ada[-1].bias)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                check: Callable[[], None] | None = None) -> torch.Tensor:
        """``check``, when given, runs before every block and may raise to abandon the pass: a
        pass over a large batch takes long enough on a CPU to make cancellation late."""
        cfg = self.cfg
        x = self.embed(torch.cat([x_t, cond], dim=1)).flatten(2).transpose(1, 2) + self.pos
        c = self.t_embed(t)
        for block in self.blocks:
            if check is not None:
                check()
            x = block(x, c)
        x = self.final(x, c)  # [B, tokens, p*p*C]
        side, p, ch = cfg.grid // cfg.patch, cfg.patch, cfg.latent_channels
        x = x.view(-1, side, side, p, p, ch).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(-1, ch, cfg.grid, cfg.grid)


def with_memory_trust(dit: MemoryDiT) -> MemoryDiT:
    """A copy of ``dit`` that takes the trust channel, its weights zero: it predicts exactly
    what ``dit`` did until training teaches it to use the channel."""
    if dit.cfg.memory_trust:
        return dit
    new = MemoryDiT(DiTConfig(**{**dit.cfg.to_dict(), "memory_trust": True}))
    state = dit.state_dict()
    w = state["embed.weight"]
    grown = torch.zeros(w.shape[0], w.shape[1] + 1, *w.shape[2:], dtype=w.dtype)
    grown[:, :w.shape[1]] = w  # the trust channel is the last input channel
    state["embed.weight"] = grown
    new.load_state_dict(state)
    return new.to(w.device)
