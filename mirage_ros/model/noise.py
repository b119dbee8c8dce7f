"""Sampling noise that belongs to a path, not to a batch.

``torch.randn`` draws one stream for the whole batch, so a path's noise (and so its imagined
frames and its score) would depend on how many other paths share the batch and on where it sits
in it, and a batch split across GPUs would not reproduce the unsplit one. Here the noise of
every element is a pure function of (seed, path id, imagined step, element index): a counter
hashed to two uniforms and turned into a Gaussian with Box-Muller. Adding a candidate never
changes another candidate's imagination, any split of the paths gives the same noise, and the
CPU and a GPU draw the same numbers (the hash is integer arithmetic; the transform runs in
float64, so the two differ by at most a few float32 ulps).

The hash is three rounds of a 32-bit integer mixer (multiply by an odd constant below 2^27,
xor-shift) kept inside int64 so nothing overflows on any device. It is not a cryptographic
generator; its outputs pass as independent standard normals for sampling (the tests check the
moments and the correlation between neighbouring paths and steps).
"""

from __future__ import annotations

import math

import torch

_MASK = 0xFFFFFFFF
_MIX = 0x045D9F3B  # odd, < 2^27: x * _MIX < 2^59 for any 32-bit x, no int64 overflow


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit avalanche mixer on int64 tensors holding values in [0, 2^32)."""
    x = (((x >> 16) ^ x) * _MIX) & _MASK
    x = (((x >> 16) ^ x) * _MIX) & _MASK
    return (x >> 16) ^ x


def path_noise(
    seed: int,
    path_ids: torch.Tensor,
    step: int,
    shape: tuple[int, ...],
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Standard normal noise ``[len(path_ids), *shape]`` float32.

    Element ``[i, ...]`` depends only on (``seed``, ``path_ids[i]``, ``step``, its flat index
    within ``shape``). ``step`` numbers the draws of one path (the rollout uses imagined step
    times sampler steps); ``seed`` and ``step`` are non-negative integers below 2^32.
    """
    for name, value in (("seed", seed), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MASK:
            raise ValueError(f"{name} must be an integer in [0, 2^32), got {value!r}")
    ids = torch.as_tensor(path_ids, dtype=torch.int64, device=device).reshape(-1)
    dev = ids.device
    n_el = math.prod(shape)
    # One key per (path, step): the seed, the path and the step each pass through the mixer.
    key = _mix32(torch.full_like(ids, seed) ^ 0x9E3779B9)
    key = _mix32(key ^ (ids & _MASK))
    key = _mix32(key ^ ((ids >> 32) & _MASK))
    key = _mix32(key ^ step)
    counter = torch.arange(n_el, dtype=torch.int64, device=dev)
    # The counter is mixed before it meets the key: XOR-ing it in raw would make two keys that
    # differ by a small even number draw the same numbers in a permuted order.
    a = _mix32(key[:, None] ^ _mix32((2 * counter) & _MASK))
    b = _mix32(_mix32(key[:, None] ^ _mix32((2 * counter + 1) & _MASK)) ^ 0x632BE5AB)
    # Uniforms in (0, 1) (never 0: the log below needs it), then Box-Muller in float64.
    u1 = (a.double() + 0.5) / 4294967296.0
    u2 = (b.double() + 0.5) / 4294967296.0
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return z.float().reshape(ids.numel(), *shape)
