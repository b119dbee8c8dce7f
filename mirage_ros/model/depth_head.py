"""Latent -> metric depth, so imagined frames can enter the per-path overlays without decoding.

Predicts log-depth (depth spans centimetres to tens of metres and errors matter relatively) at
latent resolution for the memory, and at pixel resolution for previews. Depth is z along the
optical axis, in metres, like everywhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from mirage_ros.model.autoencoder import ResBlock, _norm


@dataclass(frozen=True)
class DepthHeadConfig:
    latent_channels: int = 16
    width: int = 128
    blocks: int = 3
    upsample_widths: tuple[int, ...] = (64, 48, 32)  # pixel branch: one stage per factor 2
    min_depth: float = 0.05
    max_depth: float = 50.0
    # Channels of floor geometry (geometry.floor_rays_torch) stacked onto the latent: 0 for a
    # head that assumes the camera it was trained with, 2 for one told each camera's height
    # and tilt.
    geometry_channels: int = 0
    # Blocks of attention along image columns after the convolutional trunk (ColumnAttention):
    # 0 for the plain head.
    column_attention: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DepthHeadConfig:
        return cls(**{**d, "upsample_widths": tuple(d["upsample_widths"])})


class ColumnAttention(nn.Module):
    """Self-attention within each image column of a feature map, ``[B,C,h,w] -> [B,C,h,w]``.

    Why: a wall, a shelf or a box stands on the floor, and with a level camera its foot lies
    straight below it in the same image column; the floor's depth there is known from the
    camera's height and tilt (the geometry channels). A stack of 3x3 convolutions can carry that
    depth up the column only if it has learnt to for the textures it was trained on; attention
    lets every cell read the foot of its column directly, however far below and whatever the
    wall looks like. The bias on each query-key pair depends on their signed row offset only
    (offsets beyond ``span`` share the last bias), so one block serves any image height.

    The output projection starts at zero: a block added to a trained head leaves its
    predictions unchanged until training moves it (see ``with_column_attention``).
    """

    def __init__(self, ch: int, heads: int = 4, span: int = 15) -> None:
        super().__init__()
        if ch % heads:
            raise ValueError(f"{ch} channels do not split into {heads} heads")
        self.heads, self.span = heads, span
        self.norm = _norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.offset_bias = nn.Parameter(torch.zeros(heads, 2 * span + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n, d = self.heads, c // self.heads
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=1)

        def columns(t: torch.Tensor) -> torch.Tensor:  # [B,C,h,w] -> [B*w, heads, h, d]
            return t.reshape(b, n, d, h, w).permute(0, 4, 1, 3, 2).reshape(b * w, n, h, d)

        rows = torch.arange(h, device=x.device)
        offset = (rows[None, :] - rows[:, None]).clamp(-self.span, self.span) + self.span
        bias = self.offset_bias[:, offset].to(q.dtype)  # [heads, h (query), h (key)]
        a = nn.functional.scaled_dot_product_attention(columns(q), columns(k), columns(v),
                                                       attn_mask=bias)
        a = a.reshape(b, w, n, h, d).permute(0, 2, 4, 3, 1).reshape(b, c, h, w)
        return x + self.out(a)


class LatentDepthHead(nn.Module):
    """forward(z [B,C,h,w] normalised latents, geometry [B,G,h,w] when G > 0)
    -> (depth [B,h,w], depth_pixels [B,8h,8w])."""

    def __init__(self, cfg: DepthHeadConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or DepthHeadConfig()
        if cfg.column_attention < 0:
            raise ValueError(f"column_attention must be >= 0, got {cfg.column_attention}")
        self.trunk = nn.Sequential(
            nn.Conv2d(cfg.latent_channels + cfg.geometry_channels, cfg.width, 3, padding=1),
            *[ResBlock(cfg.width) for _ in range(cfg.blocks)],
            *[ColumnAttention(cfg.width) for _ in range(cfg.column_attention)],
        )
        self.cell_out = nn.Sequential(_norm(cfg.width), nn.SiLU(), nn.Conv2d(cfg.width, 1, 1))
        layers: list[nn.Module] = []
        ch = cfg.width
        for w in cfg.upsample_widths:
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, w, 3, padding=1),
                       ResBlock(w)]
            ch = w
        layers += [_norm(ch), nn.SiLU(), nn.Conv2d(ch, 1, 3, padding=1)]
        self.pixel_out = nn.Sequential(*layers)

    def _to_depth(self, log_depth: torch.Tensor) -> torch.Tensor:
        return log_depth.squeeze(1).exp().clamp(self.cfg.min_depth, self.cfg.max_depth)

    def _input(self, z: torch.Tensor, geometry: torch.Tensor | None) -> torch.Tensor:
        g = self.cfg.geometry_channels
        if not g:
            return z
        if geometry is None:
            raise ValueError("this depth head needs each camera's floor geometry "
                             "(WorldModel.depth_geometry)")
        if geometry.shape[-3] != g or geometry.shape[-2:] != z.shape[-2:]:
            raise ValueError(f"floor geometry {tuple(geometry.shape)} does not fit latents "
                             f"{tuple(z.shape)} ({g} channels)")
        return torch.cat([z, geometry.to(z.dtype).expand(z.shape[0], -1, -1, -1)], dim=1)

    def forward_log(self, z: torch.Tensor, pixels: bool = True,
                    geometry: torch.Tensor | None = None):
        """Log-depth maps (for the loss): ([B,h,w], [B,8h,8w] or None)."""
        h = self.trunk(self._input(z, geometry))
        cell = self.cell_out(h).squeeze(1)
        pix = self.pixel_out(h).squeeze(1) if pixels else None
        return cell, pix

    def forward(self, z: torch.Tensor, pixels: bool = False,
                check: Callable[[], None] | None = None,
                geometry: torch.Tensor | None = None):
        """``check``, when given, runs between trunk blocks and may raise to abandon the pass.
        ``geometry`` ``[B or 1, geometry_channels, h, w]``: required when the head has any."""
        z = self._input(z, geometry)
        if check is None:
            h = self.trunk(z)
        else:
            h = z
            for layer in self.trunk:
                check()
                h = layer(h)
        cell = self._to_depth(self.cell_out(h))
        return (cell, self._to_depth(self.pixel_out(h))) if pixels else (cell, None)


@torch.no_grad()
def with_geometry(head: LatentDepthHead, channels: int) -> LatentDepthHead:
    """A copy of ``head`` taking ``channels`` of floor geometry, the new inputs' weights zero:
    it predicts exactly what ``head`` did until training teaches it to use them."""
    old = head.cfg
    if channels < old.geometry_channels:
        raise ValueError("a depth head cannot drop geometry channels it was trained with")
    new = LatentDepthHead(DepthHeadConfig(**{**old.to_dict(), "geometry_channels": channels}))
    state = head.state_dict()
    w = state["trunk.0.weight"]
    grown = torch.zeros(w.shape[0], old.latent_channels + channels, *w.shape[2:], dtype=w.dtype)
    grown[:, :w.shape[1]] = w
    state["trunk.0.weight"] = grown
    new.load_state_dict(state)
    return new.to(w.device)


@torch.no_grad()
def with_column_attention(head: LatentDepthHead, blocks: int) -> LatentDepthHead:
    """A copy of ``head`` with ``blocks`` column-attention blocks, the new ones appended after
    the trained ones with zero output projections: it predicts exactly what ``head`` did until
    training teaches it to use them."""
    old = head.cfg
    if blocks < old.column_attention:
        raise ValueError("a depth head cannot drop column-attention blocks it was trained with")
    new = LatentDepthHead(DepthHeadConfig(**{**old.to_dict(), "column_attention": blocks}))
    missing, unexpected = new.load_state_dict(head.state_dict(), strict=False)
    fresh = {f"trunk.{1 + old.blocks + i}." for i in range(old.column_attention, blocks)}
    if unexpected or any(not any(k.startswith(f) for f in fresh) for k in missing):
        raise ValueError(f"depth head weights do not fit: missing {missing}, "
                         f"unexpected {unexpected}")
    return new.to(next(head.parameters()).device)
