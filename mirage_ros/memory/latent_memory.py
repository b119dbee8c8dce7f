"""``LatentMemory``: the bounded, fused latent spatial memory (write, read, evict, save, load)."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mirage_ros.safefile import write_atomic

from . import persistence
from .backend import Ops, select_ops
from .camera import (
    frustum_planes,
    rows_map_to_cam,
    to_float_tensor,
    validate_hw,
    validate_intrinsics,
    validate_poses,
    validate_stamps,
)
from .frames import PreparedPoints, WriteOptions, WriteStats, prepare_frames
from .keyframes import KeyframeOptions, Keyframes, composite
from .persistence import MemoryFormatError
from .voxel_hash import (
    VoxelTable,
    associate,
    eviction_scores,
    group_by_key,
    inverse_voxel,
    keep_mask_after_eviction,
    morton_encode,
    quantise,
    reduce_groups,
)
from .zbuffer import new_zbuffer

if TYPE_CHECKING:
    from .overlay import MemoryOverlay

_MAX_INDEX = 1 << 32  # the z-buffer key keeps the voxel index in 32 bits


def _f32(x: float) -> float:
    """Round to the nearest float32: the kernels receive float32 scalars, the reference must
    compare against exactly the same numbers."""
    return float(np.float32(x))


def _model_problem(found: str | None, expected: str | None) -> str | None:
    """Why a map recorded as made by model ``found`` may not be used by model ``expected``."""
    if expected is None or found == expected:
        return None
    if found is None:
        return (
            "this map records no model identity (saved without one, or by an older version); "
            f"the model in use is {expected} and cannot tell whether the latents are its own"
        )
    return f"this map was made by model {found}; the model in use is {expected}"


@dataclass(frozen=True)
class MemoryConfig:
    """Every option of a memory. Distances in metres, times in seconds, angles in degrees."""

    channels: int
    voxel_size: float = 0.05
    capacity: int = 1_000_000
    near: float = 0.05  # read: nearest depth drawn
    far: float = 50.0  # read: farthest depth drawn
    min_depth: float = 0.05  # write: nearest depth accepted
    max_depth: float = 20.0  # write: farthest depth accepted
    max_weight: float = 64.0  # fusion weight cap (see voxel_hash)
    merge_radius: float = 1.0  # in voxel sizes, 0..1; 0 = exact-key fusion (voxel_hash.associate)
    edge_threshold: float = 0.1  # flying-point test (see depth)
    max_incidence_deg: float = 75.0  # grazing test (see depth)
    depth_min_valid_fraction: float = 0.5  # reduce_depth
    depth_max_relative_gap: float = 0.1  # reduce_depth
    depth_min_near_fraction: float = 0.25  # reduce_depth: near side of an edge in a block
    eviction_distance_scale: float = 5.0  # eviction score (see voxel_hash.eviction_scores)
    eviction_time_scale: float = 60.0
    # Whole observed frames kept beside the voxel map (see keyframes); 0 frames: none.
    keyframe_capacity: int = 1024
    keyframe_min_distance: float = 0.1
    keyframe_min_angle_deg: float = 10.0
    keyframe_angle_weight: float = 1.0
    keyframe_max_score: float = 1.0
    keyframe_depth_tolerance: float = 0.25

    def __post_init__(self) -> None:
        def positive(name: str) -> None:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")

        if not (isinstance(self.merge_radius, (int, float)) and 0 <= self.merge_radius <= 1):
            raise ValueError(
                f"merge_radius must be in [0, 1] voxel sizes, got {self.merge_radius!r}"
            )
        object.__setattr__(self, "merge_radius", float(self.merge_radius))
        for name in ("channels", "capacity"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.capacity >= _MAX_INDEX // 2:
            raise ValueError(f"capacity must be < {_MAX_INDEX // 2}")
        kf = self.keyframe_capacity
        if isinstance(kf, bool) or not isinstance(kf, (int, np.integer)) or kf < 0:
            raise ValueError(f"keyframe_capacity must be an int >= 0, got {kf!r}")
        object.__setattr__(self, "keyframe_capacity", int(kf))
        for f in dataclasses.fields(self):
            if f.name not in ("channels", "capacity", "merge_radius", "keyframe_capacity"):
                positive(f.name)
                object.__setattr__(self, f.name, float(getattr(self, f.name)))
        object.__setattr__(self, "near", _f32(self.near))
        object.__setattr__(self, "far", _f32(self.far))
        if self.far <= self.near:
            raise ValueError("far must be > near")
        if self.max_depth <= self.min_depth:
            raise ValueError("max_depth must be > min_depth")
        if self.max_incidence_deg > 90 or self.depth_min_valid_fraction > 1:
            raise ValueError("max_incidence_deg must be <= 90 and depth_min_valid_fraction <= 1")
        if self.depth_min_near_fraction > 1:
            raise ValueError(
                f"depth_min_near_fraction must be in (0, 1], got {self.depth_min_near_fraction!r}"
            )

    def keyframe_options(self) -> KeyframeOptions:
        return KeyframeOptions(
            capacity=self.keyframe_capacity,
            min_distance=self.keyframe_min_distance,
            min_angle_deg=self.keyframe_min_angle_deg,
            angle_weight=self.keyframe_angle_weight,
            max_score=self.keyframe_max_score,
            depth_tolerance=self.keyframe_depth_tolerance,
        )

    def write_options(self) -> WriteOptions:
        return WriteOptions(
            min_depth=self.min_depth,
            max_depth=self.max_depth,
            edge_threshold=self.edge_threshold,
            max_incidence_deg=self.max_incidence_deg,
            depth_min_valid_fraction=self.depth_min_valid_fraction,
            depth_max_relative_gap=self.depth_max_relative_gap,
            depth_min_near_fraction=self.depth_min_near_fraction,
        )


@dataclass(frozen=True)
class MemoryView:
    """What the memory sees from a batch of views (leading dims = the views' batch shape)."""

    latent: torch.Tensor  # [..., C, h, w] fused latent of the nearest surface, 0 where unknown
    depth: torch.Tensor  # [..., h, w] its depth along the optical axis, 0 where unknown
    mask: torch.Tensor  # [..., h, w] bool, True where the memory filled the cell
    # [..., h, w] float32: where a keyframe supplied the cell, how far that frame's camera is
    # from the view (its selection score: metres plus angle_weight x radians; 0 = seen from
    # exactly here); inf where the fused map, an overlay or nothing did. None: not known.
    offset: torch.Tensor | None = None

    def coverage(self) -> torch.Tensor:
        """Share of each view's cells the memory filled: ``[...]`` float32."""
        return self.mask.flatten(-2).to(torch.float32).mean(dim=-1)


@dataclass(frozen=True)
class OverlayEntries:
    """Per-path entries joining one read (see ``overlay``)."""

    position: torch.Tensor  # [M,3]
    latent: torch.Tensor  # [M,C]
    path: torch.Tensor  # [M] int64
    views_per_path: int


@dataclass(frozen=True)
class ViewTables:
    """Per-view read parameters on the memory's device (see ``LatentMemory.view_tables``)."""

    w2c: torch.Tensor  # [V,12] float32 map-to-camera rows
    intr: torch.Tensor  # [V,4] float32 fx, fy, cx, cy
    planes: torch.Tensor  # [V,6,4] float32 frustum half-spaces


class LatentMemory:
    """A voxel-hashed memory of image latents in the map frame.

    ``write`` fuses observed latent frames (and keeps them whole as keyframes), ``read`` renders
    the nearest fused latent into any batch of views with a deterministic z-buffer and lays the
    nearest keyframe, warped into the view, over it (see ``keyframes``), ``overlay`` opens
    per-path scratch banks for imagined frames. Identical inputs give bit-identical state and
    reads on a given device.
    Not thread-safe: serialise writes; a reader on another thread takes a ``snapshot`` first.
    """

    def __init__(
        self,
        channels: int,
        voxel_size: float = 0.05,
        capacity: int = 1_000_000,
        device: str | torch.device = "cpu",
        *,
        use_kernels: bool | None = None,
        **options: Any,
    ) -> None:
        self._config = MemoryConfig(
            channels=channels, voxel_size=voxel_size, capacity=capacity, **options
        )
        self._device = torch.device(device)
        self._use_kernels = use_kernels
        self._ops: Ops = select_ops(self._device, use_kernels)
        self._inv_voxel = inverse_voxel(self._config.voxel_size, self._device)
        self._table = VoxelTable.empty(self._config.channels, self._device)
        self._keyframes = Keyframes.empty(self._config.channels, self._device)
        self._anchor: torch.Tensor | None = None
        self._now: float | None = None

    # ------------------------------------------------------------------ introspection
    @property
    def config(self) -> MemoryConfig:
        return self._config

    @property
    def channels(self) -> int:
        return self._config.channels

    @property
    def voxel_size(self) -> float:
        return self._config.voxel_size

    @property
    def capacity(self) -> int:
        return self._config.capacity

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def backend(self) -> str:
        """``"triton"`` when reads and writes run the kernels, ``"torch"`` for the reference."""
        return self._ops.name

    def __len__(self) -> int:
        return len(self._table)

    @property
    def nbytes(self) -> int:
        """Bytes held by the voxel tensors (keys, positions, latents, weights, stamps)."""
        return self._table.nbytes

    @property
    def keyframes(self) -> Keyframes:
        """The whole frames kept beside the voxel map (immutable; see ``keyframes``)."""
        return self._keyframes

    @property
    def keys(self) -> torch.Tensor:
        return self._table.keys

    @property
    def positions(self) -> torch.Tensor:
        return self._table.position

    @property
    def latents(self) -> torch.Tensor:
        return self._table.latent

    @property
    def weights(self) -> torch.Tensor:
        return self._table.weight

    @property
    def stamps(self) -> torch.Tensor:
        return self._table.stamp

    @property
    def latest_camera_position(self) -> torch.Tensor | None:
        return None if self._anchor is None else self._anchor.clone()

    @property
    def latest_stamp(self) -> float | None:
        return self._now

    def __repr__(self) -> str:
        return (
            f"LatentMemory(voxels={len(self)}, channels={self.channels}, "
            f"voxel_size={self.voxel_size}, capacity={self.capacity}, device={self._device}, "
            f"backend={self.backend})"
        )

    def rebase_time(self, now: float) -> float:
        """Move every voxel's stamp, and the memory's latest stamp, so the latest becomes
        ``now``; return the shift (s). For a clock that jumped (a simulation reset): eviction
        ranks voxels by age against the latest stamp, so without this the frames written after
        a jump back would all look older than the map, and be evicted first. Ages are kept.
        The table is replaced, never changed in place (snapshots keep their stamps)."""
        now = float(now)
        if not math.isfinite(now):
            raise ValueError(f"now must be finite, got {now}")
        if self._now is None:
            return 0.0
        shift = now - self._now
        t = self._table
        table = VoxelTable(t.keys, t.position, t.latent, t.weight, t.stamp + shift)
        self._table, self._now = table, now
        self._keyframes = self._keyframes.shifted(shift)
        return shift

    def snapshot(self) -> LatentMemory:
        """A memory holding exactly this one's current contents, sharing its tensors.

        Cheap (no copy): the voxel table is immutable and every write, clear or load replaces
        it, so later writes to this memory never show in the snapshot. A rollout reads one
        snapshot from start to end while observations keep being written to the live memory.
        """
        snap = LatentMemory.__new__(LatentMemory)
        snap.__dict__.update(self.__dict__)
        return snap

    def to(self, device: str | torch.device) -> LatentMemory:
        """This memory's current contents on ``device`` (itself when already there): the
        replica a second GPU reads when a rollout's paths are split across devices. The copy
        holds the same bits, so its reads match this memory's wherever the devices' read
        implementations agree (the kernels match the reference bit for bit)."""
        device = torch.device(device)
        if device == self._device:
            return self.snapshot()
        out = LatentMemory.__new__(LatentMemory)
        out.__dict__.update(self.__dict__)
        out._device = device
        out._ops = select_ops(device, self._use_kernels)
        out._inv_voxel = self._inv_voxel.to(device)
        t = self._table
        out._table = VoxelTable(t.keys.to(device), t.position.to(device), t.latent.to(device),
                                t.weight.to(device), t.stamp.to(device))
        out._anchor = None if self._anchor is None else self._anchor.to(device)
        out._keyframes = self._keyframes.to(device)
        return out

    def clear(self) -> None:
        self._table = VoxelTable.empty(self.channels, self._device)
        self._keyframes = Keyframes.empty(self.channels, self._device)
        self._anchor = None
        self._now = None

    # ------------------------------------------------------------------ write
    def _prepare(
        self, latents, depth, K, cam_to_map, stamp, expected_batch=None
    ) -> PreparedPoints:
        return prepare_frames(
            latents,
            depth,
            K,
            cam_to_map,
            stamp,
            channels=self.channels,
            opts=self._config.write_options(),
            inv_voxel=self._inv_voxel,
            device=self._device,
            unproject_keys=self._ops.unproject_keys,
            expected_batch=expected_batch,
        )

    def write(
        self,
        latents: torch.Tensor,
        depth: torch.Tensor,
        K: torch.Tensor,
        cam_to_map: torch.Tensor,
        stamp: float | torch.Tensor,
    ) -> WriteStats:
        """Fuse observed frames into the bank.

        latents ``[B,C,h,w]``; depth ``[B,h,w]`` metres along the optical axis (0 / NaN / inf =
        invalid), or ``[B,H,W]`` at a multiple of the latent size (then ``reduce_depth`` runs);
        K ``[3,3]`` or ``[B,3,3]`` at latent resolution; cam_to_map ``[B,4,4]`` (camera optical
        frame to map); stamp in seconds, one for the batch or ``[B]``.
        """
        prep = self._prepare(latents, depth, K, cam_to_map, stamp)
        if prep.frame_stamps.numel() == 0:
            return prep.stats
        stamps = prep.frame_stamps
        newest = int((stamps == stamps.max()).nonzero()[-1, 0])
        keyframes = self._new_keyframes(latents, depth, prep)
        stats = self._fuse(prep, prep.camera_position[newest], float(stamps[newest]))
        self._keyframes = keyframes  # after the fuse: a failed write changes nothing
        return stats

    def _new_keyframes(self, latents, depth, prep: PreparedPoints) -> Keyframes:
        """The keyframe store with this write's frames added: ``prep`` holds their validated
        cameras; latents and depth passed ``_prepare``'s checks (converting them again is free
        for tensors already on the device)."""
        opts = self._config.keyframe_options()
        if opts.capacity == 0:
            return self._keyframes
        dev = self._device
        lat = to_float_tensor(latents, "latents", dev).to(torch.float32)
        d = to_float_tensor(depth, "depth", dev).to(torch.float32)
        return self._keyframes.add(lat, d, prep.intr, prep.cam_to_map.to(dev),
                                   prep.frame_stamps, opts)

    def insert_points(
        self,
        points: torch.Tensor,
        latents: torch.Tensor,
        stamp: float | torch.Tensor,
        *,
        weights: torch.Tensor | None = None,
        camera_position: torch.Tensor | None = None,
    ) -> WriteStats:
        """Fuse already-unprojected map-frame points ``[P,3]`` with latents ``[P,C]``.

        Rows with a non-finite point or latent are dropped (counted in the stats); weights
        default to 1 and must be finite and > 0; ``camera_position`` (map frame, optional)
        updates the eviction anchor.
        """
        dev = self._device
        pts = to_float_tensor(points, "points", dev).to(torch.float32)
        lat = to_float_tensor(latents, "latents", dev).to(torch.float32)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(f"points must have shape [P,3], got {list(pts.shape)}")
        if lat.shape != (pts.shape[0], self.channels):
            raise ValueError(f"latents must have shape [{pts.shape[0]},{self.channels}]")
        p = pts.shape[0]
        if weights is None:
            w = torch.ones(p, dtype=torch.float32, device=dev)
        else:
            w = to_float_tensor(weights, "weights", dev).to(torch.float32)
            if w.shape != (p,) or not bool(torch.isfinite(w).all()) or bool((w <= 0).any()):
                raise ValueError(f"weights must be [{p}] finite values > 0")
        stamps = validate_stamps(stamp, p).to(dev)
        anchor = None
        if camera_position is not None:
            anchor = to_float_tensor(camera_position, "camera_position", dev).to(torch.float64)
            if anchor.shape != (3,) or not bool(torch.isfinite(anchor).all()):
                raise ValueError("camera_position must be 3 finite numbers")
        pts_ok = torch.isfinite(pts).all(dim=1)
        lat_ok = torch.isfinite(lat).all(dim=1)
        q, in_range = quantise(
            torch.where(pts_ok[:, None], pts, torch.zeros_like(pts)), self._inv_voxel
        )
        keys = morton_encode(q)
        sel = (pts_ok & lat_ok & in_range).nonzero()[:, 0]
        counts = torch.stack(
            [(~pts_ok).sum(), (pts_ok & ~lat_ok).sum(), (pts_ok & lat_ok & ~in_range).sum()]
        ).tolist()
        stats = WriteStats(
            cells=p,
            fused=int(sel.numel()),
            rejected_depth=counts[0],
            rejected_edge=0,
            rejected_grazing=0,
            rejected_latent=counts[1],
            rejected_range=counts[2],
        )
        prep = PreparedPoints(
            keys=keys[sel],
            points=pts[sel],
            latents=lat[sel],
            weights=w[sel],
            stamps=stamps[sel],
            frame=torch.zeros_like(sel),
            camera_position=torch.zeros(0, 3, dtype=torch.float64, device=dev),
            frame_stamps=stamps,
            stats=stats,
        )
        latest = float(stamps.max()) if p else None
        return self._fuse(prep, anchor, latest)

    def _fuse(
        self, prep: PreparedPoints, camera_position: torch.Tensor | None, latest: float | None
    ) -> WriteStats:
        # Build the whole new state first and commit it at the end: an exception anywhere leaves
        # the bank exactly as it was.
        table, n_new, n_upd = self._table, 0, 0
        if prep.keys.numel():
            keys = associate(
                table.keys,
                table.position,
                prep.keys,
                prep.points,
                self._config.merge_radius * self._config.voxel_size,
            )
            groups = group_by_key(keys)
            sums = reduce_groups(
                groups,
                keys,
                prep.points,
                prep.latents,
                prep.weights,
                prep.stamps,
                segment_sums=self._ops.segment_sums,
            )
            table, n_new, n_upd = table.fuse(sums, self._config.max_weight)
        anchor = camera_position if camera_position is not None else self._anchor
        now = self._now
        if latest is not None:
            now = latest if now is None else max(now, latest)
        n_evict = len(table) - self.capacity
        if n_evict > 0:
            scores = eviction_scores(
                table.position,
                table.stamp,
                anchor,
                now if now is not None else 0.0,
                self._config.eviction_distance_scale,
                self._config.eviction_time_scale,
            )
            table = table.keep(keep_mask_after_eviction(scores, n_evict))
        self._table, self._anchor, self._now = table, anchor, now
        return dataclasses.replace(
            prep.stats,
            voxels_new=n_new,
            voxels_updated=n_upd,
            voxels_evicted=max(0, n_evict),
        )

    # ------------------------------------------------------------------ read
    def _read_range(self, near: float | None, far: float | None) -> tuple[float, float]:
        near = self._config.near if near is None else _f32(near)
        far = self._config.far if far is None else _f32(far)
        if not (math.isfinite(near) and math.isfinite(far) and 0 < near < far):
            raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
        return near, far

    def read(
        self,
        cam_to_map: torch.Tensor,
        K: torch.Tensor,
        hw: tuple[int, int],
        *,
        near: float | None = None,
        far: float | None = None,
    ) -> MemoryView:
        """Render the bank into views: cam_to_map ``[V,4,4]``, K ``[3,3]`` or ``[V,3,3]`` at the
        target (latent) resolution, hw = (h, w). Nearest surface per cell; ties -> lower voxel
        index. Returns ``MemoryView`` with latent ``[V,C,h,w]``, depth and mask ``[V,h,w]``."""
        poses = validate_poses(cam_to_map, "cam_to_map", 1)
        intr = validate_intrinsics(K, (poses.shape[0],), "K").to(torch.float32)
        h, w = validate_hw(hw)
        near, far = self._read_range(near, far)
        return self._render(poses, intr, h, w, near, far, None)

    def _render(
        self,
        poses: torch.Tensor,  # CPU float64 [V,4,4], validated
        intr: torch.Tensor,  # CPU float32 [V,4], validated
        h: int,
        w: int,
        near: float,
        far: float,
        overlay: OverlayEntries | None,
    ) -> MemoryView:
        return self._render_views(self.view_tables(poses, intr, h, w, near, far), h, w, near,
                                  far, overlay)

    def view_tables(self, poses: torch.Tensor, intr: torch.Tensor, h: int, w: int, near: float,
                    far: float) -> ViewTables:
        """The per-view tables a read needs (map-to-camera rows, intrinsics, frustum planes),
        built on the CPU from validated poses ``[V,4,4]`` and intrinsics ``[V,4]`` and copied to
        the memory's device once. A rollout builds them for all its steps up front: each copy
        to a GPU makes the host wait for the device."""
        w2c_cpu = rows_map_to_cam(poses)
        planes = frustum_planes(w2c_cpu, intr, h, w, near, far)
        dev = self._device
        return ViewTables(w2c=w2c_cpu.to(dev), intr=intr.to(dev), planes=planes.to(dev))

    def _render_views(
        self,
        views: ViewTables,
        h: int,
        w: int,
        near: float,
        far: float,
        overlay: OverlayEntries | None,
    ) -> MemoryView:
        """The read itself, from device-side view tables: no host synchronisation."""
        n_views = views.w2c.shape[0]
        table = self._table
        n_overlay = 0 if overlay is None else overlay.position.shape[0]
        if len(table) + n_overlay >= _MAX_INDEX:
            raise ValueError("bank plus overlay exceed 2^32 entries")
        zbuf = new_zbuffer(n_views, h, w, self._device)
        if len(table) and n_views:
            self._ops.splat_bank(table.position, table.bounds(), views.planes, views.w2c,
                                 views.intr, h, w, near, far, zbuf, 0)
        overlay_latent = None
        if overlay is not None and n_overlay and n_views:
            self._ops.splat_entries(
                overlay.position,
                overlay.path,
                views.w2c,
                views.intr,
                overlay.views_per_path,
                h,
                w,
                near,
                far,
                zbuf,
                len(table),
            )
            overlay_latent = overlay.latent
        latent, depth, mask = self._ops.gather(zbuf, table.latent, overlay_latent, n_views, h, w)
        if len(self._keyframes) and n_views:
            opts = self._config.keyframe_options()
            warped = self._keyframes.warp_into(views.w2c, views.intr, h, w, near, far, opts)
            latent, depth, mask, offset = composite(latent, depth, mask, *warped,
                                                    opts.depth_tolerance)
        else:
            offset = torch.full_like(depth, math.inf)
        return MemoryView(latent=latent, depth=depth, mask=mask, offset=offset)

    # ------------------------------------------------------------------ overlays
    def overlay(self, n: int) -> MemoryOverlay:
        """Open ``n`` per-path scratch banks for imagined frames; the bank is never written."""
        from .overlay import MemoryOverlay  # noqa: PLC0415 (overlay imports this module)

        return MemoryOverlay(self, n)

    # ------------------------------------------------------------------ persistence
    def _saved_state(self) -> persistence.SavedState:
        t = self._table
        return persistence.SavedState(
            config=dataclasses.asdict(self._config),
            keys=t.keys,
            position=t.position,
            latent=t.latent,
            weight=t.weight,
            stamp=t.stamp,
            anchor=self._anchor,
            now=self._now,
            keyframes=self._keyframes.columns(),
        )

    def save(self, path: str | os.PathLike[str], model: str | None = None) -> None:
        """Write the memory to ``path`` (safetensors, checksummed, atomic replace).

        ``model`` names the autoencoder whose latents this memory holds (the world model's
        ``autoencoder_id()``) so that loaders can refuse the map for another model; None
        records it as unknown.
        """
        state = self._saved_state()
        state.model = model or None
        write_atomic(path, persistence.encode(state))

    @staticmethod
    def _parts_from_file(
        path: str | os.PathLike[str], device: torch.device
    ) -> tuple[MemoryConfig, VoxelTable, Keyframes, torch.Tensor | None, float | None,
               str | None]:
        state = persistence.read_file(path)
        try:
            config = MemoryConfig(**state.config)
        except (TypeError, ValueError) as exc:
            raise MemoryFormatError(f"memory file config is invalid: {exc}") from exc
        table = VoxelTable(
            keys=state.keys.to(device),
            position=state.position.to(device),
            latent=state.latent.to(device),
            weight=state.weight.to(device),
            stamp=state.stamp.to(device),
        )
        anchor = None if state.anchor is None else state.anchor.to(device)
        keyframes = (Keyframes(**{k: v.to(device) for k, v in state.keyframes.items()})
                     if state.keyframes else Keyframes.empty(config.channels, device))
        if len(keyframes) > config.keyframe_capacity:
            raise MemoryFormatError(
                f"memory file holds {len(keyframes)} keyframes over its keyframe capacity "
                f"{config.keyframe_capacity}")
        return config, table, keyframes, anchor, state.now, state.model

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        *,
        use_kernels: bool | None = None,
        model: str | None = None,
    ) -> LatentMemory:
        """Read a memory saved by ``save``; raises ``MemoryFormatError`` on any defect.

        With ``model`` (see ``load_into``), a map of another model or of unknown model is
        refused.
        """
        dev = torch.device(device)
        config, table, keyframes, anchor, now, found = cls._parts_from_file(path, dev)
        problem = _model_problem(found, model)
        if problem:
            raise MemoryFormatError(problem)
        mem = cls.__new__(cls)
        mem._config = config
        mem._device = dev
        mem._use_kernels = use_kernels
        mem._ops = select_ops(dev, use_kernels)
        mem._inv_voxel = inverse_voxel(config.voxel_size, dev)
        mem._table, mem._anchor, mem._now = table, anchor, now
        mem._keyframes = keyframes
        return mem

    def load_into(
        self,
        path: str | os.PathLike[str],
        *,
        model: str | None = None,
        same_voxel_size: bool = False,
        keep_capacity: bool = False,
    ) -> None:
        """Replace this memory's contents and options with a saved file's, in place.

        The file is read and verified completely first; on any error (``MemoryFormatError``
        naming every difference found) this memory is untouched. Refused:

        - a file with another channel count than this memory's (the model's latent width);
        - with ``model`` (the running model's ``autoencoder_id()``): a map made by another
          model, and a map that records no model (saved without one, or by an older version),
          since nothing says its latents belong to this autoencoder;
        - with ``same_voxel_size``: a map of another voxel size than this memory's;
        - with ``keep_capacity``: a map holding more voxels than this memory's capacity (this
          memory's capacity is kept instead of the file's).
        """
        config, table, keyframes, anchor, now, found = self._parts_from_file(path, self._device)
        problems = []
        problem = _model_problem(found, model)
        if problem:
            problems.append(problem)
        if config.channels != self.channels:
            problems.append(
                f"memory file has {config.channels} channels, this memory has {self.channels}"
            )
        if same_voxel_size and config.voxel_size != self.voxel_size:
            problems.append(
                f"memory file has voxel size {config.voxel_size} m, "
                f"this memory has {self.voxel_size} m"
            )
        if keep_capacity:
            count = int(table.keys.numel())
            if count > self.capacity:
                problems.append(
                    f"memory file holds {count} voxels, over this memory's capacity "
                    f"{self.capacity}"
                )
            config = dataclasses.replace(config, capacity=self.capacity)
            if len(keyframes) > self._config.keyframe_capacity:
                problems.append(
                    f"memory file holds {len(keyframes)} keyframes, over this memory's "
                    f"keyframe capacity {self._config.keyframe_capacity}"
                )
            config = dataclasses.replace(config,
                                         keyframe_capacity=self._config.keyframe_capacity)
        if problems:
            raise MemoryFormatError("; ".join(problems))
        inv_voxel = inverse_voxel(config.voxel_size, self._device)
        self._config, self._inv_voxel = config, inv_voxel
        self._table, self._anchor, self._now = table, anchor, now
        self._keyframes = keyframes
