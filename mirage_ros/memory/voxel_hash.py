"""The voxel hash: quantised map coordinates -> one fused entry, as plain sorted torch tensors.

Keys. A point p (map frame, float32) falls in voxel ``q = floor(p * (1 / voxel_size))`` (the
inverse is rounded to float32 once; multiplying by it is exactly reproducible on every device and
in the kernels, where a division by a scalar is not always IEEE-rounded). Each coordinate must
lie in [-2^20, 2^20), i.e. +-52 km at 5 cm voxels; points outside are dropped. The three 21-bit
offsets are bit-interleaved into a 63-bit Morton code, so keys are non-negative int64 and, sorted,
they walk space along a Z-order curve: consecutive voxels are close in space. The read relies on
that to cull whole blocks of voxels against each view frustum.

Table. Entries are stored sorted by key (a "sorted key array + searchsorted" hash): lookup is a
binary search, merging a batch of new voxels is one linear pass, and the storage order (the
voxel index used by the read's tie-break) is a pure function of the contents. Tables are never
changed in place: ``fuse`` and ``keep`` return new tables, so a failure half-way through an
update leaves the caller's table as it was.

Fusion. One write's points are grouped by key with a stable sort; per group we sum
``w``, ``w * p`` and ``w * latent`` strictly in sorted order (rank 0, then rank 1, ...; no
atomics, so the result is bit-identical run to run and on the GPU), and take the max stamp.
A group then updates its voxel as a weighted running mean:
``x <- (W * x + sum w_i x_i) / (W + sum w_i)``, ``W <- min(W + sum w_i, max_weight)``.
Capping W keeps the mean able to follow a changing scene (an exponential moving average once a
voxel is well observed). Revisiting a place hits the same keys, so it updates voxels instead of
adding them: memory does not grow with time spent in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

KEY_BITS = 21
KEY_HALF_RANGE = 1 << (KEY_BITS - 1)  # quantised coordinates lie in [-2^20, 2^20)
CULL_BLOCK = 256  # voxels per culling block; the read kernel uses the same blocks

_SPREAD = (
    (32, 0x001F00000000FFFF),
    (16, 0x001F0000FF0000FF),
    (8, 0x100F00F00F00F00F),
    (4, 0x10C30C30C30C30C3),
    (2, 0x1249249249249249),
)


def inverse_voxel(voxel_size: float, device: torch.device) -> torch.Tensor:
    return torch.tensor(1.0 / voxel_size, dtype=torch.float32, device=device)


def quantise(points: torch.Tensor, inv_voxel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 ``[P,3]`` map points -> (int64 ``[P,3]`` voxel coords, bool ``[P]`` in range)."""
    scaled = points * inv_voxel
    in_range = ((scaled >= -KEY_HALF_RANGE) & (scaled < KEY_HALF_RANGE)).all(dim=-1)
    q = torch.where(in_range[:, None], scaled.floor(), torch.zeros_like(scaled))
    return q.to(torch.int64), in_range


def _spread_bits(v: torch.Tensor) -> torch.Tensor:
    v = v & ((1 << KEY_BITS) - 1)
    for shift, mask in _SPREAD:
        v = (v | (v << shift)) & mask
    return v


_COMPACT = (
    (2, 0x10C30C30C30C30C3),
    (4, 0x100F00F00F00F00F),
    (8, 0x001F0000FF0000FF),
    (16, 0x001F00000000FFFF),
    (32, (1 << KEY_BITS) - 1),
)


def _compact_bits(v: torch.Tensor) -> torch.Tensor:
    v = v & _SPREAD[-1][1]
    for shift, mask in _COMPACT:
        v = (v ^ (v >> shift)) & mask
    return v


def morton_encode(q: torch.Tensor) -> torch.Tensor:
    """int64 voxel coordinates ``[P,3]`` (each in [-2^20, 2^20)) -> int64 keys ``[P]`` >= 0."""
    o = q + KEY_HALF_RANGE
    return _spread_bits(o[:, 0]) | (_spread_bits(o[:, 1]) << 1) | (_spread_bits(o[:, 2]) << 2)


def morton_decode(keys: torch.Tensor) -> torch.Tensor:
    """Inverse of ``morton_encode``."""
    return torch.stack([_compact_bits(keys >> s) for s in (0, 1, 2)], dim=-1) - KEY_HALF_RANGE


@dataclass(frozen=True)
class Groups:
    """Points grouped by a sort key: ``order`` sorts the points, group g is
    ``order[starts[g]:starts[g+1]]`` and has sort key ``keys[g]``."""

    order: torch.Tensor
    keys: torch.Tensor
    starts: torch.Tensor

    @property
    def counts(self) -> torch.Tensor:
        return self.starts[1:] - self.starts[:-1]

    def segment_ids(self) -> torch.Tensor:
        """Group index of each point in sorted order."""
        idx = torch.arange(self.keys.numel(), device=self.keys.device)
        return idx.repeat_interleave(self.counts)


def group_by_key(sort_keys: torch.Tensor) -> Groups:
    order = torch.sort(sort_keys, stable=True).indices
    uniq, counts = torch.unique_consecutive(sort_keys[order], return_counts=True)
    starts = torch.zeros(uniq.numel() + 1, dtype=torch.int64, device=sort_keys.device)
    starts[1:] = torch.cumsum(counts, 0)
    return Groups(order=order, keys=uniq, starts=starts)


def segment_sums_reference(
    order: torch.Tensor,
    starts: torch.Tensor,
    points: torch.Tensor,
    latents: torch.Tensor,
    weights: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per group: (sum w, sum w * p, sum w * latent), each accumulated strictly in rank order.

    The loop runs over ranks (at most the largest group size), each step a batched update of the
    groups that still have points, so the float32 summation order is fixed and identical to the
    kernel's sequential loop.
    """
    n_groups = starts.numel() - 1
    dev = points.device
    wsum = torch.zeros(n_groups, dtype=torch.float32, device=dev)
    psum = torch.zeros(n_groups, 3, dtype=torch.float32, device=dev)
    lsum = torch.zeros(n_groups, latents.shape[1], dtype=torch.float32, device=dev)
    if n_groups == 0:
        return wsum, psum, lsum
    counts = starts[1:] - starts[:-1]
    active = torch.arange(n_groups, device=dev)
    for rank in range(int(counts.max())):
        active = active[counts[active] > rank]
        idx = order[starts[active] + rank]
        w = weights[idx]
        wsum[active] = wsum[active] + w
        psum[active] = psum[active] + w[:, None] * points[idx]
        lsum[active] = lsum[active] + w[:, None] * latents[idx]
    return wsum, psum, lsum


@dataclass(frozen=True)
class SegmentSums:
    """One write's points reduced per voxel (and per path, for overlays)."""

    keys: torch.Tensor  # [U] int64 Morton keys
    weight: torch.Tensor  # [U] f32, sum of w
    position: torch.Tensor  # [U,3] f32, sum of w * p
    latent: torch.Tensor  # [U,C] f32, sum of w * latent
    stamp: torch.Tensor  # [U] f64, max stamp
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # carried columns, e.g. path

    def select(self, mask: torch.Tensor) -> SegmentSums:
        return SegmentSums(
            keys=self.keys[mask],
            weight=self.weight[mask],
            position=self.position[mask],
            latent=self.latent[mask],
            stamp=self.stamp[mask],
            extra={k: v[mask] for k, v in self.extra.items()},
        )


def reduce_groups(
    groups: Groups,
    keys: torch.Tensor,
    points: torch.Tensor,
    latents: torch.Tensor,
    weights: torch.Tensor,
    stamps: torch.Tensor,
    segment_sums=segment_sums_reference,
    extra: dict[str, torch.Tensor] | None = None,
) -> SegmentSums:
    wsum, psum, lsum = segment_sums(groups.order, groups.starts, points, latents, weights)
    first = groups.order[groups.starts[:-1]]
    seg = groups.segment_ids()
    smax = torch.full((groups.keys.numel(),), -math.inf, dtype=torch.float64, device=keys.device)
    smax = smax.scatter_reduce(0, seg, stamps[groups.order], reduce="amax", include_self=True)
    return SegmentSums(
        keys=keys[first],
        weight=wsum,
        position=psum,
        latent=lsum,
        stamp=smax,
        extra={k: v[first] for k, v in (extra or {}).items()},
    )


_NEIGHBOURS = torch.tensor(
    [(0, 0, 0)]
    + [
        (dx, dy, dz)
        for dx in (-1, 0, 1)
        for dy in (-1, 0, 1)
        for dz in (-1, 0, 1)
        if (dx, dy, dz) != (0, 0, 0)
    ],
    dtype=torch.int64,
)


def associate(
    table_keys: torch.Tensor,
    table_position: torch.Tensor,
    keys: torch.Tensor,
    points: torch.Tensor,
    radius: float,
) -> torch.Tensor:
    """Target voxel key of each new point.

    A point whose own voxel exists fuses there. A point whose voxel is empty joins the nearest
    existing voxel among the 26 neighbouring keys if that voxel's fused position lies within
    ``radius`` (at most one voxel size); otherwise it starts its own voxel. Without this, a
    latent grid much coarser than the voxels (a 16 x 16 latent cell covers ~25 cm at 2 m) samples
    a slightly different point of the same surface on every visit, each sample crosses into a
    fresh voxel now and then, and revisiting a place keeps growing the memory. Ties in distance
    go to the first neighbour in a fixed offset order, so the choice is deterministic.
    """
    n = table_keys.numel()
    if radius <= 0 or n == 0 or keys.numel() == 0:
        return keys
    found = torch.searchsorted(table_keys, keys)
    hit = (found < n) & (table_keys[found.clamp(max=n - 1)] == keys)
    miss = (~hit).nonzero()[:, 0]
    if miss.numel() == 0:
        return keys
    offsets = _NEIGHBOURS.to(keys.device)
    cand = morton_decode(keys[miss])[:, None, :] + offsets[None]  # [M,27,3]
    in_range = ((cand >= -KEY_HALF_RANGE) & (cand < KEY_HALF_RANGE)).all(dim=-1)
    cand_keys = morton_encode(torch.where(in_range[..., None], cand, 0).reshape(-1, 3))
    cand_keys = cand_keys.reshape(cand.shape[:2])
    f = torch.searchsorted(table_keys, cand_keys).clamp(max=n - 1)
    exists = in_range & (table_keys[f] == cand_keys)
    diff = table_position[f] - points[miss][:, None, :]
    d2 = diff[..., 0] * diff[..., 0] + diff[..., 1] * diff[..., 1] + diff[..., 2] * diff[..., 2]
    d2 = torch.where(exists, d2, torch.full_like(d2, float("inf")))
    best = torch.argmin(d2, dim=1)
    close = d2.gather(1, best[:, None])[:, 0] <= radius * radius
    target = keys.clone()
    target[miss[close]] = cand_keys[close, best[close]]
    return target


FUSED_COLUMNS = ("position", "latent", "weight", "stamp")


def merge_sums(
    sort_keys: torch.Tensor,
    columns: dict[str, torch.Tensor],
    new_sort_keys: torch.Tensor,
    sums: SegmentSums,
    max_weight: float,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, int, int]:
    """Fuse grouped sums into sorted columns.

    ``sort_keys`` (strictly increasing) orders the existing rows; ``new_sort_keys`` (strictly
    increasing) orders ``sums``. Columns other than the fused ones (``keys``, ``path``) are
    carried: existing rows keep theirs, new rows take ``sums.keys`` / ``sums.extra``.
    Returns (new columns, new sort keys, number of new rows, number of updated rows).
    """
    n_old = sort_keys.numel()
    dev = sort_keys.device
    if n_old:
        found = torch.searchsorted(sort_keys, new_sort_keys)
        exists = (found < n_old) & (sort_keys[found.clamp(max=n_old - 1)] == new_sort_keys)
    else:
        found = torch.zeros_like(new_sort_keys)
        exists = torch.zeros_like(new_sort_keys, dtype=torch.bool)

    upd = sums.select(exists)
    rows = found[exists]
    w_old = columns["weight"][rows]
    w_tot = w_old + upd.weight
    updated = {
        "position": (w_old[:, None] * columns["position"][rows] + upd.position) / w_tot[:, None],
        "latent": (w_old[:, None] * columns["latent"][rows] + upd.latent) / w_tot[:, None],
        "weight": w_tot.clamp(max=max_weight),
        "stamp": torch.maximum(columns["stamp"][rows], upd.stamp),
    }

    ins = sums.select(~exists)
    ins_keys = new_sort_keys[~exists]
    n_new = ins_keys.numel()
    inserted = {
        "position": ins.position / ins.weight[:, None],
        "latent": ins.latent / ins.weight[:, None],
        "weight": ins.weight.clamp(max=max_weight),
        "stamp": ins.stamp,
        "keys": ins.keys,
        **ins.extra,
    }

    # Linear merge: old row i moves down by the number of inserted keys before it, inserted row
    # j lands after the old rows smaller than it and the j inserted rows before it.
    dest_old = torch.arange(n_old, device=dev) + torch.searchsorted(ins_keys, sort_keys)
    dest_new = torch.searchsorted(sort_keys, ins_keys) + torch.arange(n_new, device=dev)
    total = n_old + n_new
    out: dict[str, torch.Tensor] = {}
    for name, col in columns.items():
        merged = col.new_empty((total, *col.shape[1:]))
        merged[dest_old] = col
        if name in updated:
            merged[dest_old[rows]] = updated[name]
        merged[dest_new] = inserted[name]
        out[name] = merged
    merged_keys = sort_keys.new_empty(total)
    merged_keys[dest_old] = sort_keys
    merged_keys[dest_new] = ins_keys
    return out, merged_keys, n_new, int(rows.numel())


def block_bounds(position: torch.Tensor, block: int = CULL_BLOCK) -> torch.Tensor:
    """Bounds of consecutive blocks of voxels: float32 ``[NB, 6]`` (lo xyz, hi xyz)."""
    n = position.shape[0]
    nb = -(-n // block)
    pad = nb * block - n
    inf = position.new_full((pad, 3), math.inf)
    lo = torch.cat([position, inf]).reshape(nb, block, 3).amin(dim=1)
    hi = torch.cat([position, -inf]).reshape(nb, block, 3).amax(dim=1)
    return torch.cat([lo, hi], dim=1).contiguous()


class VoxelTable:
    """Sorted, immutable voxel storage: keys, fused position, latent, weight, last-seen stamp."""

    def __init__(
        self,
        keys: torch.Tensor,
        position: torch.Tensor,
        latent: torch.Tensor,
        weight: torch.Tensor,
        stamp: torch.Tensor,
    ) -> None:
        self.keys = keys
        self.position = position
        self.latent = latent
        self.weight = weight
        self.stamp = stamp
        self._bounds: torch.Tensor | None = None

    @classmethod
    def empty(cls, channels: int, device: torch.device) -> VoxelTable:
        return cls(
            keys=torch.zeros(0, dtype=torch.int64, device=device),
            position=torch.zeros(0, 3, dtype=torch.float32, device=device),
            latent=torch.zeros(0, channels, dtype=torch.float32, device=device),
            weight=torch.zeros(0, dtype=torch.float32, device=device),
            stamp=torch.zeros(0, dtype=torch.float64, device=device),
        )

    def columns(self) -> dict[str, torch.Tensor]:
        return {
            "keys": self.keys,
            "position": self.position,
            "latent": self.latent,
            "weight": self.weight,
            "stamp": self.stamp,
        }

    def __len__(self) -> int:
        return int(self.keys.numel())

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.columns().values())

    def bounds(self) -> torch.Tensor:
        """Culling-block bounds, computed once per table (tables are immutable)."""
        if self._bounds is None:
            self._bounds = block_bounds(self.position)
        return self._bounds

    def fuse(self, sums: SegmentSums, max_weight: float) -> tuple[VoxelTable, int, int]:
        cols, keys, n_new, n_upd = merge_sums(
            self.keys, self.columns(), sums.keys, sums, max_weight
        )
        del cols["keys"]
        return VoxelTable(keys=keys, **cols), n_new, n_upd

    def keep(self, mask: torch.Tensor) -> VoxelTable:
        return VoxelTable(**{k: v[mask] for k, v in self.columns().items()})


def eviction_scores(
    position: torch.Tensor,
    stamp: torch.Tensor,
    anchor: torch.Tensor | None,
    now: float,
    distance_scale: float,
    time_scale: float,
) -> torch.Tensor:
    """Higher = evicted first: metres from the latest camera / distance_scale + seconds since
    last seen / time_scale. With the defaults (5 m, 60 s) one metre of distance weighs as much as
    twelve seconds of staleness. Without a camera position only staleness counts."""
    staleness = (now - stamp).clamp(min=0.0) / time_scale
    if anchor is None:
        return staleness
    d = position.to(torch.float64) - anchor.to(position.device, torch.float64)
    dist = (d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2]).sqrt()
    return dist / distance_scale + staleness


def keep_mask_after_eviction(scores: torch.Tensor, n_evict: int) -> torch.Tensor:
    """Drop the ``n_evict`` highest scores; ties go to the lower voxel index (stable sort)."""
    keep = torch.ones_like(scores, dtype=torch.bool)
    if n_evict > 0:
        order = torch.sort(scores, descending=True, stable=True).indices
        keep[order[:n_evict]] = False
    return keep
