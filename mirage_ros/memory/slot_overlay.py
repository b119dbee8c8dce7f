"""Per-path overlays in fixed slots: the rollout's overlay on a GPU, with no host round trip.

``MemoryOverlay`` (the reference) keeps its entries as one sorted list whose length changes
with every write, so each write asks the GPU how many entries it made (``nonzero``, ``unique``)
and waits for the answer: at 64 paths that wait, paid 8 times a rollout, cost more than the
DiT. A rollout knows from the start how many entries a path can ever hold (one per latent
cell per imagined step), so here every path owns that many slots and every write is a fixed
sequence of tensor operations of fixed shapes: the host queues them and moves on.

Per path, the slots hold that path's entries sorted by voxel key, empty slots last (key = the
int64 maximum, position NaN, which no view can see). A write, for all paths at once:

1. checks its cells like the reference (``depth.cell_validity``, finite latents), unprojects
   them and keys them (the memory's ``unproject_keys``: the Triton kernel on a GPU);
2. sorts each path's new keys (stably) and sums every run of equal keys: one cumulative sum
   in float64 along the sorted cells, differenced at the run ends (the reference adds the same
   cells in the same order in float32; the two agree to float32 rounding);
3. finds each run's key among the path's slots (batched ``searchsorted``) and fuses into it
   with the reference's running mean and weight cap, or appends it after the path's filled
   slots;
4. sorts each path's slots by key again.

Reads render the slots through the memory's own z-buffer (``LatentMemory._render_views``),
with entry index = path * slots + slot. Within a path that is the reference's order (sorted
keys), and a view only ever sees its own path's entries and the bank, so ties resolve by the
same rule. The sums differ from the reference's float32 ones by float32 rounding, so a fused
point can move by an ulp: a cell on a pixel edge, or an exact depth tie, may then go the
other way. The tests check entries and reads within 1e-6 and a whole rollout within 1e-4.
Because a run's sum is a difference of prefix sums along the path's sorted cells, a finite
but enormous latent (beyond ~1e9; the model's are O(10)) would leak rounding into that path's
other voxels, where the reference confines it to its own voxel. The empty-slot key is the
Morton key of the key range's far corner (52 km out at 5 cm voxels): a point there is dropped.
Memory: slots x paths x (C + 6) x 4 bytes, e.g. 2,048 slots x 256 paths x 14 floats = 29 MB
for 8 steps at 16 x 16 and C = 8.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .camera import rows_cam_to_map, validate_hw, validate_intrinsics, validate_poses
from .depth import cell_validity
from .latent_memory import MemoryView, OverlayEntries, ViewTables

if TYPE_CHECKING:
    from .latent_memory import LatentMemory

_EMPTY = torch.iinfo(torch.int64).max  # key of an empty slot: sorts after every real key


class SlotOverlay:
    """``n`` per-path overlays of ``slots`` entries each on top of a ``LatentMemory``.

    ``K`` ``[3,3]`` (latent resolution) and the camera poses of every step ``[n,T,4,4]`` are
    given once, up front, and checked then; ``write(latents, depth, step)`` then needs no
    check and no host synchronisation. ``read(step)`` renders every path's view at that step.
    """

    def __init__(self, memory: LatentMemory, cam_to_map: torch.Tensor, K: torch.Tensor,
                 hw: tuple[int, int]) -> None:
        self._memory = memory
        poses = validate_poses(cam_to_map, "cam_to_map", 2)  # CPU float64 [n,T,4,4]
        n, t = poses.shape[:2]
        if n == 0 or t == 0:
            raise ValueError(f"a slot overlay needs paths and steps, got {list(poses.shape)}")
        self._h, self._w = validate_hw(hw)
        self._n, self._steps = n, t
        self._slots = t * self._h * self._w
        dev, c = memory.device, memory.channels
        intr = validate_intrinsics(K, (n,), "K").to(torch.float32)  # [n,4]
        self._intr = intr.to(dev)
        # Every step's read tables on the device now, in one copy (see ``read``).
        near, far = memory._read_range(None, None)
        flat = memory.view_tables(poses.reshape(-1, 4, 4), intr.repeat_interleave(t, 0),
                                  self._h, self._w, near, far)
        self._views = [ViewTables(*(x.reshape(n, t, *x.shape[1:])[:, i].contiguous()
                                    for x in (flat.w2c, flat.intr, flat.planes)))
                       for i in range(t)]
        self._range = (near, far)
        self._rows = rows_cam_to_map(poses).to(dev)  # [n,T,12] float32
        # The kernel reads the inverse voxel size as a number: keep it on the CPU, where
        # reading it does not wait for the GPU (a 0-d tensor also scales GPU tensors).
        self._inv_voxel = memory._inv_voxel.cpu()
        s1 = self._slots + 1  # one spare column takes the scatters of cells that go nowhere
        self._keys = torch.full((n, s1), _EMPTY, dtype=torch.int64, device=dev)
        self._pos = torch.full((n, s1, 3), float("nan"), dtype=torch.float32, device=dev)
        self._lat = torch.zeros(n, s1, c, dtype=torch.float32, device=dev)
        self._weight = torch.zeros(n, s1, dtype=torch.float32, device=dev)
        self._stamp = torch.full((n, s1), float("-inf"), dtype=torch.float64, device=dev)
        self._path = torch.arange(n, device=dev).repeat_interleave(self._slots)
        self._rank = torch.arange(s1, device=dev)
        self._written: set[int] = set()  # steps written: each once, so slots never run out
        self._opts = memory.config.write_options()

    @property
    def n_paths(self) -> int:
        return self._n

    @property
    def slots(self) -> int:
        return self._slots

    @property
    def memory(self) -> LatentMemory:
        return self._memory

    def counts(self) -> torch.Tensor:
        """Filled slots per path: int64 ``[n]``."""
        return (self._keys[:, :-1] != _EMPTY).sum(1)

    def entries(self) -> dict[str, torch.Tensor]:
        """The filled slots as the reference's columns, sorted by (path, key): keys, path,
        position, latent, weight, stamp (this synchronises; tests and tools only)."""
        keep = self._keys[:, :-1] != _EMPTY
        path = torch.arange(self._n, device=keep.device)[:, None].expand_as(keep)
        return {"keys": self._keys[:, :-1][keep], "path": path[keep],
                "position": self._pos[:, :-1][keep], "latent": self._lat[:, :-1][keep],
                "weight": self._weight[:, :-1][keep], "stamp": self._stamp[:, :-1][keep]}

    @torch.no_grad()
    def write(self, latents: torch.Tensor, depth: torch.Tensor, step: int) -> None:
        """Fuse frame i (latents ``[n,C,h,w]`` raw, depth ``[n,h,w]`` metres, at the poses of
        ``step``, 0-based) into path i. Cells are accepted and refused exactly as in
        ``LatentMemory.write``; the stamp of every entry is the step number (as in the
        rollout's reference writes, which stamp imagined step s with s)."""
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < self._steps:
            raise ValueError(f"step must be an integer in [0, {self._steps}), got {step!r}")
        if step in self._written:
            raise ValueError(f"step {step} was written already: a slot overlay holds one frame "
                             "per path and step (its slots are sized for that)")
        mem = self._memory
        n, (h, w) = self._n, (self._h, self._w)
        if latents.shape[0] != n or tuple(latents.shape[-2:]) != (h, w) \
                or tuple(depth.shape) != (n, h, w):
            raise ValueError(f"expected latents [{n},C,{h},{w}] and depth [{n},{h},{w}], got "
                             f"{list(latents.shape)} and {list(depth.shape)}")
        self._written.add(step)
        hw = h * w
        opts = self._opts
        d = depth.to(torch.float32).contiguous()
        masks = cell_validity(d, self._intr, min_depth=opts.min_depth, max_depth=opts.max_depth,
                              edge_threshold=opts.edge_threshold,
                              max_incidence_deg=opts.max_incidence_deg)
        lat = latents.to(torch.float32).permute(0, 2, 3, 1).reshape(n, hw, -1)
        valid = masks.valid & torch.isfinite(lat).all(-1).reshape(n, h, w)
        pts, keys = mem._ops.unproject_keys(d, valid, self._intr, self._rows[:, step],
                                            self._inv_voxel)
        keys = torch.where(keys < 0, torch.full_like(keys, _EMPTY), keys).reshape(n, hw)
        pts = pts.reshape(n, hw, 3)

        # 2. Runs of equal keys in each path's sorted cells, summed.
        ks, order = torch.sort(keys, dim=1, stable=True)
        p_sorted = pts.gather(1, order[..., None].expand(-1, -1, 3)).double()
        l_sorted = lat.gather(1, order[..., None].expand(-1, -1, lat.shape[-1])).double()
        first = torch.ones_like(ks, dtype=torch.bool)
        first[:, 1:] = ks[:, 1:] != ks[:, :-1]
        last = torch.ones_like(first)
        last[:, :-1] = first[:, 1:]
        idx = self._rank[:hw].expand(n, -1)
        # the last cell of each cell's run: a reversed running minimum of run-end positions
        end = torch.where(last, idx, torch.full_like(idx, hw))
        end = torch.flip(torch.cummin(torch.flip(end, [1]), dim=1).values, [1])
        count = (end - idx + 1).to(torch.float32)  # meaningful on run starts

        def run_sums(x: torch.Tensor) -> torch.Tensor:
            cs = torch.cumsum(x, dim=1)
            upto = cs.gather(1, end[..., None].expand(-1, -1, x.shape[-1]))
            before = torch.where((idx > 0)[..., None],
                                 cs.gather(1, (idx - 1).clamp(min=0)[..., None]
                                           .expand(-1, -1, x.shape[-1])),
                                 torch.zeros_like(upto))
            return upto - before

        psum, lsum = run_sums(p_sorted), run_sums(l_sorted)
        start = first & (ks != _EMPTY)

        # 3. Fuse into the slot holding the key, or append after the filled slots.
        found = torch.searchsorted(self._keys[:, :-1].contiguous(), ks)
        at = found.clamp(max=self._slots - 1)
        hit = start & (self._keys.gather(1, at) == ks)
        insert = start & ~hit
        fill = (self._keys[:, :-1] != _EMPTY).sum(1, keepdim=True)
        append = fill + torch.cumsum(insert.long(), 1) - 1
        dest = torch.where(hit, at, torch.where(insert, append, torch.full_like(at, self._slots)))
        w_old = torch.where(hit, self._weight.gather(1, dest), torch.zeros_like(count))
        w_tot = (w_old + count).double()
        p_old = self._pos.gather(1, dest[..., None].expand(-1, -1, 3))
        l_old = self._lat.gather(1, dest[..., None].expand(-1, -1, lat.shape[-1]))
        hit3 = hit[..., None]
        new_p = torch.where(hit3, p_old.double() * w_old[..., None].double(), 0.0) + psum
        new_l = torch.where(hit3, l_old.double() * w_old[..., None].double(), 0.0) + lsum
        new_p = (new_p / w_tot[..., None]).float()
        new_l = (new_l / w_tot[..., None]).float()
        new_w = w_tot.float().clamp(max=mem.config.max_weight)
        old_s = self._stamp.gather(1, dest)
        new_s = torch.maximum(old_s, torch.full_like(old_s, float(step + 1)))
        self._keys.scatter_(1, dest, torch.where(start, ks, self._keys.gather(1, dest)))
        self._pos.scatter_(1, dest[..., None].expand(-1, -1, 3), new_p)
        self._lat.scatter_(1, dest[..., None].expand(-1, -1, lat.shape[-1]), new_l)
        self._weight.scatter_(1, dest, new_w)
        self._stamp.scatter_(1, dest, new_s)
        # the spare column took every non-start cell: empty it again
        self._keys[:, -1] = _EMPTY
        self._pos[:, -1] = float("nan")

        # 4. Keep each path's slots sorted by key (empty ones last).
        o = torch.sort(self._keys, dim=1, stable=True).indices
        self._keys = self._keys.gather(1, o)
        self._pos = self._pos.gather(1, o[..., None].expand(-1, -1, 3))
        self._lat = self._lat.gather(1, o[..., None].expand(-1, -1, self._lat.shape[-1]))
        self._weight = self._weight.gather(1, o)
        self._stamp = self._stamp.gather(1, o)

    def read(self, step: int) -> MemoryView:
        """Bank + own slots for every path at the poses of ``step`` (the memory's near and far
        range): latent ``[n,C,h,w]``, depth and mask ``[n,h,w]``. The view tables were copied
        to the device up front, so nothing here waits for the device."""
        mem = self._memory
        entries = OverlayEntries(position=self._pos[:, :-1].reshape(-1, 3),
                                 latent=self._lat[:, :-1].reshape(-1, mem.channels),
                                 path=self._path, views_per_path=1)
        return mem._render_views(self._views[step], self._h, self._w, *self._range, entries)
