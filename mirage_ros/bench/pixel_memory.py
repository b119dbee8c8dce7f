"""The pixel-space baseline's memory: an RGB point cloud (``bench.pixel_imagination`` runs the
imagination loop on it). What Spatia / Voyager / GEN3C keep and what a latent memory replaces;
it lives beside the benchmarks, never in the product path, and needs only ``memory`` (so
``bench.memory`` and the kernel tools can import it without the models).

``PixelCloud`` keeps points as xyz float32 + rgb uint8, in one of two modes:

* unbounded (``voxel_size=None``): every valid pixel of every frame is appended, as those
  systems do. 15 bytes a point (plus an int64 path index for imagined points).
* bounded: voxelised exactly like ``LatentMemory`` (same voxel size, capacity, merge radius,
  weight cap and eviction score, through the same ``memory.voxel_hash`` functions): one point a
  voxel, the running mean of position and colour (colour rounded back to uint8 after each fuse),
  with the key, weight and stamp that fusion and eviction need (35 bytes a voxel). Imagined
  points are fused per path like overlay entries (no association, no eviction).

Lifting and rendering reuse the memory's own algorithms at pixel resolution, so the two memories
differ only in what they store and at what resolution: lifting is ``unproject_keys`` (cell
centres, the memory's float32 op order), rendering is the memory's z-buffer (packed
``depth bits << 32 | index`` keys min-reduced with ``scatter_reduce(amin)``: the nearest point
of each pixel wins, an exact depth tie goes to the lower index, so bank points beat imagined
ones), with the memory's block culling for the bank. On CUDA both run the memory's Triton
kernels when they load, like ``LatentMemory`` itself. Points are one pixel wide (no splat
radius): a bounded cloud seen from closer than ``voxel_size * fx`` leaves holes between its
points, which the render's mask reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mirage_ros.memory import LatentMemory
from mirage_ros.memory.backend import Ops, select_ops
from mirage_ros.memory.camera import (
    frustum_planes,
    rows_cam_to_map,
    rows_map_to_cam,
    to_float_tensor,
    validate_hw,
    validate_intrinsics,
    validate_poses,
    validate_stamps,
)
from mirage_ros.memory.synthetic import Room, ray_depth, surface_latent
from mirage_ros.memory.voxel_hash import (
    associate,
    block_bounds,
    eviction_scores,
    group_by_key,
    inverse_voxel,
    keep_mask_after_eviction,
    merge_sums,
    reduce_groups,
)
from mirage_ros.memory.zbuffer import INDEX_MASK, SENTINEL, new_zbuffer

# ---------------------------------------------------------------------------------- lifting


def lift_pixels(
    depth: torch.Tensor,
    K: torch.Tensor,
    cam_to_map: torch.Tensor,
    *,
    min_depth: float = 0.0,
    max_depth: float = float("inf"),
    ops: Ops | None = None,
    inv_voxel: torch.Tensor | None = None,
):
    """Map points of the valid pixels of ``depth`` [B,H,W] (K [3,3] or [B,3,3] at that
    resolution, cam_to_map [B,4,4]): (xyz [M,3] float32, keys [M] int64 Morton keys at
    ``inv_voxel``, flat pixel index [M] into B*H*W). Valid: finite, > 0, in [min, max] depth.

    The memory's ``unproject_keys`` at pixel resolution (pixel centres, its float32 op order)."""
    dev = depth.device
    b = depth.shape[0]
    poses = validate_poses(cam_to_map, "cam_to_map", 1)
    intr = validate_intrinsics(K, (b,), "K").to(dev, torch.float32)
    d = depth.to(torch.float32).contiguous()
    valid = torch.isfinite(d) & (d > 0) & (d >= min_depth) & (d <= max_depth)
    ops = ops or select_ops(dev, False)
    inv = inverse_voxel(0.05, dev) if inv_voxel is None else inv_voxel
    pts, keys = ops.unproject_keys(d, valid, intr, rows_cam_to_map(poses).to(dev), inv)
    sel = (keys >= 0).nonzero()[:, 0]
    return pts[sel], keys[sel], sel


def surface_colors(xyz: torch.Tensor, seed: int = 7) -> torch.Tensor:
    """uint8 colours [...,3] of the synthetic room's surface points (a smooth fixed field)."""
    return ((surface_latent(xyz, 3, seed=seed) * 0.5 + 0.5) * 255).round().to(torch.uint8)


def room_frames(
    cam_to_map: torch.Tensor, K: torch.Tensor, hw: tuple[int, int], room: Room | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB-D frames of the analytic room: (rgb [B,H,W,3] uint8, depth [B,H,W] float32, 0 =
    no hit). Colours are ``surface_colors`` of each pixel's surface point."""
    room = room or Room()
    depth = ray_depth(cam_to_map, K, hw, room)
    xyz, _, flat = lift_pixels(depth, K, cam_to_map)
    rgb = torch.zeros(depth.numel(), 3, dtype=torch.uint8)
    rgb[flat] = surface_colors(xyz)
    return rgb.reshape(*depth.shape, 3), depth


# ---------------------------------------------------------------------------------- the cloud


@dataclass(frozen=True)
class PixelView:
    """A render: rgb [V,3,H,W] uint8, depth [V,H,W] metres and mask [V,H,W] bool (0 / False
    where no point landed)."""

    rgb: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor


_FUSED = ("keys", "position", "color", "weight", "stamp")


class PixelCloud:
    """An RGB point cloud in the map frame (see the module docstring).

    ``voxel_size`` None = unbounded, else bounded to ``capacity`` voxels. ``overlay(n)`` opens
    ``n`` per-path clouds on top of this one (imagined points never enter the bank).
    """

    def __init__(
        self,
        voxel_size: float | None = None,
        capacity: int = 1_000_000,
        device: str | torch.device = "cpu",
        *,
        merge_radius: float = 1.0,
        max_weight: float = 64.0,
        min_depth: float = 0.05,
        max_depth: float = 20.0,
        near: float = 0.05,
        far: float = 50.0,
        eviction_distance_scale: float = 5.0,
        eviction_time_scale: float = 60.0,
        use_kernels: bool | None = None,
        _bank: PixelCloud | None = None,
        _n_paths: int = 0,
    ) -> None:
        if voxel_size is not None and not voxel_size > 0:
            raise ValueError(f"voxel_size must be > 0 or None, got {voxel_size!r}")
        if capacity <= 0:
            raise ValueError(f"capacity must be > 0, got {capacity!r}")
        self.voxel_size = voxel_size
        self.capacity = int(capacity)
        self.device = torch.device(device)
        self.merge_radius = merge_radius
        self.max_weight = max_weight
        self.min_depth, self.max_depth = min_depth, max_depth
        self.near, self.far = near, far
        self.eviction_distance_scale = eviction_distance_scale
        self.eviction_time_scale = eviction_time_scale
        self.use_kernels = use_kernels
        self.ops = select_ops(self.device, use_kernels)
        self.inv_voxel = inverse_voxel(voxel_size or 0.05, self.device)
        self.bank = _bank
        self.n_paths = _n_paths
        self._anchor: torch.Tensor | None = None
        self._now: float | None = None
        self._bounds: torch.Tensor | None = None
        dev = self.device
        self._cols: dict[str, torch.Tensor] = {
            "position": torch.zeros(0, 3, dtype=torch.float32, device=dev),
            "color": torch.zeros(0, 3, dtype=torch.uint8, device=dev),
        }
        if self.bounded:
            self._cols.update(
                keys=torch.zeros(0, dtype=torch.int64, device=dev),
                weight=torch.zeros(0, dtype=torch.float32, device=dev),
                stamp=torch.zeros(0, dtype=torch.float64, device=dev),
            )
        if _n_paths:
            self._cols["path"] = torch.zeros(0, dtype=torch.int64, device=dev)

    @classmethod
    def like(cls, memory: LatentMemory, bounded: bool) -> PixelCloud:
        """A cloud with ``memory``'s device, depth range, read range and (bounded) voxel size,
        capacity, merge radius, weight cap and eviction scales."""
        c = memory.config
        return cls(
            c.voxel_size if bounded else None, c.capacity, memory.device,
            merge_radius=c.merge_radius, max_weight=c.max_weight, min_depth=c.min_depth,
            max_depth=c.max_depth, near=c.near, far=c.far,
            eviction_distance_scale=c.eviction_distance_scale,
            eviction_time_scale=c.eviction_time_scale, use_kernels=memory.backend == "triton",
        )  # fmt: skip

    def overlay(self, n: int) -> PixelCloud:
        """``n`` per-path clouds over this bank: ``write`` frame i goes to path i, ``render``
        view i sees the bank and path i's points."""
        if self.n_paths:
            raise ValueError("overlays open on a bank, not on another overlay")
        if n <= 0:
            raise ValueError(f"an overlay needs a positive number of paths, got {n!r}")
        kw = {f: getattr(self, f) for f in (
            "voxel_size", "capacity", "device", "merge_radius", "max_weight", "min_depth",
            "max_depth", "near", "far", "eviction_distance_scale", "eviction_time_scale",
            "use_kernels")}  # fmt: skip
        return PixelCloud(**kw, _bank=self, _n_paths=n)

    # ------------------------------------------------------------------ introspection
    @property
    def bounded(self) -> bool:
        return self.voxel_size is not None

    def __len__(self) -> int:
        return int(self._cols["position"].shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes of every tensor the cloud holds (points, colours; keys, weights, stamps when
        bounded; path indices in an overlay). An overlay does not count its bank."""
        return sum(t.numel() * t.element_size() for t in self._cols.values())

    @property
    def positions(self) -> torch.Tensor:
        return self._cols["position"]

    @property
    def colors(self) -> torch.Tensor:
        return self._cols["color"]

    @property
    def paths(self) -> torch.Tensor | None:
        return self._cols.get("path")

    def _block_bounds(self) -> torch.Tensor:
        if self._bounds is None:
            self._bounds = block_bounds(self.positions)
        return self._bounds

    # ------------------------------------------------------------------ write
    def write(
        self,
        rgb: torch.Tensor,
        depth: torch.Tensor,
        K: torch.Tensor,
        cam_to_map: torch.Tensor,
        stamp: float | torch.Tensor = 0.0,
    ) -> int:
        """Lift frames into the cloud: rgb [B,3,H,W] (uint8, or float in [0,1]), depth [B,H,W]
        metres (invalid: not finite, <= 0, outside [min_depth, max_depth]), K [3,3] or [B,3,3]
        at pixel resolution, cam_to_map [B,4,4]. In an overlay B is the number of paths.
        Returns the number of pixels lifted."""
        dev = self.device
        rgb = torch.as_tensor(rgb).to(dev)
        d = to_float_tensor(depth, "depth", dev)
        if rgb.ndim != 4 or rgb.shape[1] != 3 or d.ndim != 3 or d.shape != (
            rgb.shape[0], *rgb.shape[2:]
        ):
            raise ValueError(f"need rgb [B,3,H,W] and depth [B,H,W], got {list(rgb.shape)} "
                             f"and {list(d.shape)}")
        b = rgb.shape[0]
        if self.n_paths and b != self.n_paths:
            raise ValueError(f"an overlay of {self.n_paths} paths takes {self.n_paths} frames")
        poses = validate_poses(cam_to_map, "cam_to_map", 1)
        if poses.shape[0] != b:
            raise ValueError(f"cam_to_map has {poses.shape[0]} poses for {b} frames")
        stamps = validate_stamps(stamp, b).to(dev)
        pts, keys, flat = lift_pixels(
            d, K, poses, min_depth=self.min_depth, max_depth=self.max_depth, ops=self.ops,
            inv_voxel=self.inv_voxel)  # fmt: skip
        if rgb.dtype != torch.uint8:
            rgb = (rgb.float().clamp(0, 1) * 255).round().to(torch.uint8)
        col = rgb.permute(0, 2, 3, 1).reshape(-1, 3)[flat]
        frame = flat // (d.shape[1] * d.shape[2])
        if self.bounded:
            self._fuse(pts, keys, col, stamps[frame], frame, poses[:, :3, 3])
        else:
            new = {"position": pts, "color": col}
            if self.n_paths:
                new["path"] = frame
            self._cols = {k: torch.cat([v, new[k]]) for k, v in self._cols.items()}
        self._bounds = None
        return int(flat.numel())

    def _fuse(self, pts, keys, col, stamps, frame, cam_positions) -> None:
        """Voxel fusion with the memory's rules: the bank associates points with neighbouring
        voxels, fuses a running mean and evicts past capacity; an overlay fuses per path."""
        old = self._cols
        n_old = old["keys"].numel()
        if self.n_paths:
            # (path, key) as one sortable int64, as MemoryOverlay.write does.
            uniq, ranks = torch.unique(torch.cat([old["keys"], keys]), return_inverse=True)
            old_sort = old["path"] * uniq.numel() + ranks[:n_old]
            new_sort = frame * uniq.numel() + ranks[n_old:]
            extra = {"path": frame}
        else:
            keys = associate(old["keys"], old["position"], keys, pts,
                             self.merge_radius * self.voxel_size)
            old_sort, new_sort, extra = old["keys"], keys, None
        if keys.numel():
            groups = group_by_key(new_sort)
            sums = reduce_groups(groups, keys, pts, col.float(), torch.ones_like(pts[:, 0]),
                                 stamps, segment_sums=self.ops.segment_sums, extra=extra)
            columns = {k: v for k, v in old.items() if k != "color"}
            columns["latent"] = old["color"].float()
            cols, _, _, _ = merge_sums(old_sort, columns, groups.keys, sums, self.max_weight)
            cols["color"] = cols.pop("latent").round().clamp(0, 255).to(torch.uint8)
            old = {k: cols[k] for k in old}
        if not self.n_paths:
            newest = int(stamps.argmax()) if stamps.numel() else None
            if newest is not None:
                self._anchor = cam_positions[int(frame[newest])].to(self.device)
                self._now = max(float(stamps.max()), self._now or float("-inf"))
            n_evict = old["keys"].numel() - self.capacity
            if n_evict > 0:
                scores = eviction_scores(old["position"], old["stamp"], self._anchor,
                                         self._now or 0.0, self.eviction_distance_scale,
                                         self.eviction_time_scale)
                keep = keep_mask_after_eviction(scores, n_evict)
                old = {k: v[keep] for k, v in old.items()}
        self._cols = old

    # ------------------------------------------------------------------ render
    def render(
        self, cam_to_map: torch.Tensor, K: torch.Tensor, hw: tuple[int, int]
    ) -> PixelView:
        """Render into views at pixel resolution: cam_to_map [V,4,4] (an overlay: one view per
        path), K [3,3] or [V,3,3], hw = (H, W). The nearest point of each pixel wins."""
        poses = validate_poses(cam_to_map, "cam_to_map", 1)
        v = poses.shape[0]
        if self.n_paths and v != self.n_paths:
            raise ValueError(f"an overlay of {self.n_paths} paths renders {self.n_paths} views")
        intr = validate_intrinsics(K, (v,), "K").to(torch.float32)
        h, w = validate_hw(hw)
        bank = self.bank if self.n_paths else self
        own = self if self.n_paths else None
        dev = self.device
        w2c_cpu = rows_map_to_cam(poses)
        w2c, intr_dev = w2c_cpu.to(dev), intr.to(dev)
        zbuf = new_zbuffer(v, h, w, dev)
        n_bank = len(bank)
        if n_bank and v:
            planes = frustum_planes(w2c_cpu, intr, h, w, self.near, self.far).to(dev)
            bank.ops.splat_bank(bank.positions, bank._block_bounds(), planes, w2c, intr_dev,
                                h, w, self.near, self.far, zbuf, 0)
        if own is not None and len(own) and v:
            self.ops.splat_entries(own.positions, own.paths, w2c, intr_dev, 1, h, w,
                                   self.near, self.far, zbuf, n_bank)
        return _decode(zbuf, bank.colors, None if own is None else own.colors, v, h, w)


def _decode(zbuf, bank_colors, own_colors, v: int, h: int, w: int) -> PixelView:
    """z-buffer keys -> colours, depth and mask (no host synchronisation)."""
    hit = zbuf != SENTINEL
    idx = zbuf & INDEX_MASK
    depth = (zbuf >> 32).to(torch.int32).view(torch.float32)
    depth = torch.where(hit, depth, torch.zeros_like(depth))
    rgb = torch.zeros(zbuf.numel(), 3, dtype=torch.uint8, device=zbuf.device)
    n_bank = bank_colors.shape[0]
    if n_bank:
        take = bank_colors[idx.clamp(max=n_bank - 1)]
        rgb = torch.where((hit & (idx < n_bank))[:, None], take, rgb)
    if own_colors is not None and own_colors.shape[0]:
        take = own_colors[(idx - n_bank).clamp(0, own_colors.shape[0] - 1)]
        rgb = torch.where((hit & (idx >= n_bank))[:, None], take, rgb)
    rgb = rgb.reshape(v, h, w, 3).permute(0, 3, 1, 2).contiguous()
    return PixelView(rgb=rgb, depth=depth.reshape(v, h, w), mask=hit.reshape(v, h, w))
