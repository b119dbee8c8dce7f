"""Per-path overlays: where imagined frames live, so that they never touch the shared bank.

An overlay holds ``n`` small banks as one set of batched tensors; every entry carries the index
of its path. Entries are fused exactly like bank voxels (same keys, same running mean) but per
path: two paths imagining the same place keep separate entries. Storage is sorted by
(path, key), so it is as deterministic as the bank.

A read renders, for each path, the union of the bank and that path's entries through one
z-buffer: bank voxels go into every view, an entry only into its own path's views, and the
nearest surface wins whichever side it comes from (an exact depth tie goes to the bank).
The overlay reads the bank as it is at read time; it holds no copy of it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from .camera import to_float_tensor, validate_hw, validate_intrinsics, validate_poses
from .frames import WriteStats
from .latent_memory import MemoryView, OverlayEntries
from .voxel_hash import group_by_key, merge_sums, reduce_groups

if TYPE_CHECKING:
    from .latent_memory import LatentMemory

_COLUMNS = ("keys", "path", "position", "latent", "weight", "stamp")


class MemoryOverlay:
    """``n`` per-path scratch banks on top of a ``LatentMemory`` (see the module docstring)."""

    def __init__(self, memory: LatentMemory, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"an overlay needs a positive number of paths, got {n!r}")
        self._memory = memory
        self._n = n
        self._cols = self._empty()

    def _empty(self) -> dict[str, torch.Tensor]:
        dev, c = self._memory.device, self._memory.channels
        return {
            "keys": torch.zeros(0, dtype=torch.int64, device=dev),
            "path": torch.zeros(0, dtype=torch.int64, device=dev),
            "position": torch.zeros(0, 3, dtype=torch.float32, device=dev),
            "latent": torch.zeros(0, c, dtype=torch.float32, device=dev),
            "weight": torch.zeros(0, dtype=torch.float32, device=dev),
            "stamp": torch.zeros(0, dtype=torch.float64, device=dev),
        }

    @property
    def n_paths(self) -> int:
        return self._n

    @property
    def memory(self) -> LatentMemory:
        return self._memory

    def __len__(self) -> int:
        return int(self._cols["keys"].numel())

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._cols.values())

    def counts(self) -> torch.Tensor:
        """Entries per path: int64 ``[n]``."""
        return torch.bincount(self._cols["path"], minlength=self._n)

    def entries(self) -> dict[str, torch.Tensor]:
        """Entry tensors sorted by (path, key): keys, path, position, latent, weight, stamp."""
        return dict(self._cols)

    def clear(self) -> None:
        self._cols = self._empty()

    def select(self, paths: torch.Tensor | list[int]) -> MemoryOverlay:
        """A new overlay whose path i holds a copy of this overlay's path ``paths[i]``
        (repeats allowed: resampling the best rollouts)."""
        idx = torch.as_tensor(paths, dtype=torch.int64, device=self._memory.device).reshape(-1)
        if idx.numel() == 0 or bool(((idx < 0) | (idx >= self._n)).any()):
            raise ValueError(f"paths must be a non-empty list of indices in [0, {self._n})")
        counts = self.counts()
        offsets = torch.cumsum(counts, 0) - counts
        take_counts = counts[idx]
        starts = offsets[idx].repeat_interleave(take_counts)
        within = torch.arange(int(take_counts.sum()), device=idx.device)
        within = within - (torch.cumsum(take_counts, 0) - take_counts).repeat_interleave(
            take_counts
        )
        rows = starts + within
        out = MemoryOverlay(self._memory, int(idx.numel()))
        cols = {k: v[rows] for k, v in self._cols.items()}
        cols["path"] = torch.arange(idx.numel(), device=idx.device).repeat_interleave(take_counts)
        out._cols = cols
        return out

    def write(
        self,
        latents: torch.Tensor,
        depth: torch.Tensor,
        K: torch.Tensor,
        cam_to_map: torch.Tensor,
        stamp: float | torch.Tensor,
    ) -> WriteStats:
        """Fuse frame i (latents ``[n,C,h,w]``, depth ``[n,h,w]``, cam_to_map ``[n,4,4]``) into
        path i. Same validation and rejection rules as ``LatentMemory.write``."""
        mem = self._memory
        prep = mem._prepare(latents, depth, K, cam_to_map, stamp, expected_batch=self._n)
        if prep.keys.numel() == 0:
            return prep.stats
        old = self._cols
        n_old = old["keys"].numel()
        # (path, key) pairs as one int64 sort key: rank of the key among all keys involved,
        # offset by path * number of ranks. Both old and new pairs sort the same way.
        ranks_keys, ranks = torch.unique(torch.cat([old["keys"], prep.keys]), return_inverse=True)
        n_ranks = ranks_keys.numel()
        old_sort = old["path"] * n_ranks + ranks[:n_old]
        new_sort = prep.frame * n_ranks + ranks[n_old:]
        groups = group_by_key(new_sort)
        sums = reduce_groups(
            groups,
            prep.keys,
            prep.points,
            prep.latents,
            prep.weights,
            prep.stamps,
            segment_sums=mem._ops.segment_sums,
            extra={"path": prep.frame},
        )
        cols, _, n_new, n_upd = merge_sums(old_sort, old, groups.keys, sums, mem.config.max_weight)
        self._cols = {k: cols[k] for k in _COLUMNS}
        return dataclasses.replace(prep.stats, voxels_new=n_new, voxels_updated=n_upd)

    def read(
        self,
        cam_to_map: torch.Tensor,
        K: torch.Tensor,
        hw: tuple[int, int],
        *,
        near: float | None = None,
        far: float | None = None,
    ) -> MemoryView:
        """Render bank + own overlay for every path in one z-buffer.

        cam_to_map ``[n,V,4,4]`` (V views per path) or ``[n,4,4]`` (one view per path); K
        ``[3,3]``, ``[n,3,3]`` or one per view. Output leading dims follow cam_to_map's.
        """
        mem = self._memory
        poses = validate_poses(cam_to_map, "cam_to_map", (1, 2))
        if poses.shape[0] != self._n:
            raise ValueError(f"cam_to_map must have {self._n} paths first, got {poses.shape[0]}")
        batch = tuple(poses.shape[:-2])
        views_per_path = batch[1] if len(batch) == 2 else 1
        k = to_float_tensor(K, "K", torch.device("cpu"))
        if len(batch) == 2 and k.shape == (self._n, 3, 3):
            k = k[:, None].expand(*batch, 3, 3)
        intr = validate_intrinsics(k, batch, "K").to(torch.float32).reshape(-1, 4)
        h, w = validate_hw(hw)
        near, far = mem._read_range(near, far)
        entries = OverlayEntries(
            position=self._cols["position"],
            latent=self._cols["latent"],
            path=self._cols["path"],
            views_per_path=views_per_path,
        )
        flat = mem._render(poses.reshape(-1, 4, 4), intr, h, w, near, far, entries)
        c = mem.channels
        return MemoryView(
            latent=flat.latent.reshape(*batch, c, h, w),
            depth=flat.depth.reshape(*batch, h, w),
            mask=flat.mask.reshape(*batch, h, w),
            offset=flat.offset.reshape(*batch, h, w),
        )
