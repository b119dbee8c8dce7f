"""Keyframes: the memory's per-view half, whole observed latent frames kept with their camera.

Why the voxel map is not enough. A latent cell encodes a patch of pixels at one viewpoint's scale
and sub-cell phase; it is not a property of the surface. The voxel map keeps a running mean of the
latents that many viewpoints wrote at a place, and a read takes the nearest voxel per cell from
voxels written by different views. That blend decodes poorly even at a pose the robot stood at:
on held-out tours a read at the last written pose decodes at about 20 dB against the
autoencoder's 32 dB for the frame itself. So the memory also keeps observed frames whole.

A read picks, for each view, the stored frame whose camera is nearest (``select``: distance plus
``angle_weight`` times the angle between optical axes, at most ``max_score``), forward-splats
that frame's cells into the view by their depth with the memory's own z-buffer rule (nearest
surface per cell; ties to the lower cell index), and lays it over the fused read (``composite``)
wherever it does not hide a surface the fused read holds clearly nearer (relative
``depth_tolerance``): something seen only from elsewhere, or imagined on a path's overlay. At a
pose the memory has seen this returns that frame exactly; near one, a one-frame warp, which is
sharper than the blend; the fused read still fills what the frame did not see.

Storage is bounded, and samples places the way SLAM keyframes do: a new frame within
``min_distance`` and ``min_angle_deg`` of a kept one is not kept (its content still fuses into the
voxels); otherwise it is added, and when more than ``capacity`` frames are held the oldest goes.
Replacing the kept twin instead would chain: a robot turning on the spot in 6 degree steps, or
creeping forward in 5 cm ones, would keep only its latest frame. A keyframe is ``C*h*w`` latents
plus ``h*w`` points: 11 KB at the shipped model's 8 x 16 x 16 cells, so the default 1024 cost
about 11 MB, a little under half of what the node's default 300,000 voxels take.

A stored frame's cells need a depth to be warped. Given full-resolution depth, every cell with at
least one valid pixel gets their median (``warp_depth``): the memory's robust reduction rejects
cells on depth edges, right for building a map, but a warped frame is better served by placing
such a cell on either side than by dropping it, and at the frame's own pose it must come back
whole. Given depth at cell resolution, the cells it leaves at 0 are not warped (nothing says what
is there). A frame with no valid depth at all is not kept.

``Keyframes`` is immutable: ``add`` returns a new store, so a memory's snapshot keeps reading the
store it was taken with, and a failed write leaves the old store in place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .camera import apply_rows, rows_cam_to_map, unproject_cells
from .depth import reduce_depth
from .zbuffer import SENTINEL, gather_reference, new_zbuffer, project

__all__ = ["KeyframeOptions", "Keyframes", "composite", "frame_points", "select", "view_centres",
           "warp", "warp_depth"]


@dataclass(frozen=True)
class KeyframeOptions:
    """How many frames a memory keeps and how a read uses them (see the module docstring)."""

    capacity: int = 1024  # frames; 0 keeps none (reads are the fused map's alone)
    min_distance: float = 0.1  # metres: a new frame this close ...
    min_angle_deg: float = 10.0  # ... and this aligned to a kept one is not kept
    angle_weight: float = 1.0  # metres per radian of optical-axis angle in the selection score
    max_score: float = 1.0  # a view with no stored frame within this score reads the map alone
    depth_tolerance: float = 0.25  # relative: the fused read is nearer by more -> keep it


def view_centres(w2c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera positions and optical axes in the map frame, ``[V,3]`` each, from map-to-camera
    rows ``[V,12]`` (rows of R^T | -R^T t)."""
    r = w2c.reshape(-1, 3, 4)
    rot_t, t_cam = r[..., :3], r[..., 3]
    position = -(rot_t * t_cam[..., None]).sum(dim=1)  # t = -R (-R^T t)
    return position, rot_t[:, 2]


def select(frame_position: torch.Tensor, frame_axis: torch.Tensor, view_position: torch.Tensor,
           view_axis: torch.Tensor, angle_weight: float, max_score: float,
           allowed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The stored frame nearest each view and its score: ``[V]`` int64 index (-1 where none
    scores within ``max_score``) and ``[V]`` float32 score (inf there). Frames ``[M,3]``, views
    ``[V,3]``; ``allowed`` ``[V,M]`` bool restricts the candidates per view (training uses it for
    "frames written so far"). Ties go to the lowest index, so the choice is deterministic."""
    v, m = view_position.shape[0], frame_position.shape[0]
    if m == 0:
        return (torch.full((v,), -1, dtype=torch.int64, device=view_position.device),
                torch.full((v,), math.inf, device=view_position.device))
    dist = (view_position[:, None] - frame_position[None]).norm(dim=-1)
    cos = (view_axis[:, None] * frame_axis[None]).sum(-1).clamp(-1.0, 1.0)
    score = dist + angle_weight * torch.arccos(cos)
    if allowed is not None:
        score = torch.where(allowed, score, torch.full_like(score, math.inf))
    best, idx = score.min(dim=1)
    ok = best <= max_score
    return (torch.where(ok, idx, torch.full_like(idx, -1)),
            torch.where(ok, best, torch.full_like(best, math.inf)).to(torch.float32))


def warp(points: torch.Tensor, latents: torch.Tensor, frame: torch.Tensor, w2c: torch.Tensor,
         intr: torch.Tensor, h: int, w: int, near: float, far: float,
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Splat frame ``frame[v]`` (``-1``: none) into view ``v``: points ``[M,P,3]`` map frame
    (NaN: no depth), latents ``[M,P,C]``. Returns latent ``[V,C,h,w]``, depth and mask
    ``[V,h,w]``, with the z-buffer rule of a memory read (``zbuffer``: nearest depth wins,
    ties to the lower cell index; visible when near <= z <= far and inside the image). ``select``
    gives ``frame``.

    Every (view, cell) pair is computed, invalid ones keyed out, with no data-dependent shapes:
    a GPU rollout's read never waits on the host (the slot overlay's reads rely on that)."""
    n_views = w2c.shape[0]
    m, p, c = latents.shape
    dev = w2c.device
    zbuf = new_zbuffer(n_views, h, w, dev)
    if m and n_views:
        has = frame >= 0
        src = frame.clamp(min=0)
        px, py, pz = points[src].unbind(-1)  # [V,P] each
        zc, fu, fv, vis = project(px, py, pz, w2c[:, None], intr[:, None], h, w, near, far)
        vis &= has[:, None]
        u = torch.where(vis, fu, torch.zeros_like(fu)).floor().to(torch.int64)
        v = torch.where(vis, fv, torch.zeros_like(fv)).floor().to(torch.int64)
        cell = torch.arange(n_views, device=dev)[:, None] * (h * w) + v * w + u
        index = src[:, None] * p + torch.arange(p, device=dev)  # row of the flat latents
        bits = torch.where(vis, zc, torch.ones_like(zc)).view(torch.int32).to(torch.int64)
        key = torch.where(vis, (bits << 32) | index, torch.full_like(index, SENTINEL))
        zbuf.scatter_reduce_(0, cell.reshape(-1), key.reshape(-1), reduce="amin")
    return gather_reference(zbuf, latents.reshape(m * p, c), None, n_views, h, w)


def composite(latent: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor,
              frame_latent: torch.Tensor, frame_depth: torch.Tensor, frame_mask: torch.Tensor,
              frame_score: torch.Tensor, depth_tolerance: float,
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lay a warped frame over a fused read: the frame's cell wins where it has one and the
    fused read is empty or not nearer than ``frame depth / (1 + depth_tolerance)``. Returns
    latent, depth, mask and the read's offset ``[V,h,w]``: the frame's score ``frame_score``
    ``[V]`` where the frame supplied the cell, inf elsewhere (see ``MemoryView.offset``)."""
    take = frame_mask & (~mask | (frame_depth <= depth * (1.0 + depth_tolerance)))
    offset = torch.where(take, frame_score[:, None, None].expand_as(take),
                         torch.full_like(depth, math.inf))
    return (torch.where(take[:, None], frame_latent, latent),
            torch.where(take, frame_depth, depth), mask | take, offset)


def warp_depth(depth: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Cell depth ``[F,h,w]`` for warping a frame from depth ``[F,H,W]``: at cell resolution
    as given (non-finite -> 0); at a multiple of it, the median of each cell's valid pixels,
    0 where it has none."""
    d = torch.nan_to_num(depth.to(torch.float32), nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0)
    if d.shape[-2:] == (h, w):
        return d
    return reduce_depth(d, h, w, min_valid_fraction=1e-9, max_relative_gap=1e9)


def frame_points(depth: torch.Tensor, intr: torch.Tensor,
                 cam_to_map: torch.Tensor) -> torch.Tensor:
    """Map-frame points of every cell, ``[F,h*w,3]`` float32 (NaN where the cell has no depth),
    from cell depth ``[F,h,w]`` (see ``warp_depth``; <= 0 = none), intrinsics ``[F,4]`` and
    cam_to_map ``[F,4,4]`` float64."""
    d = depth.to(torch.float32)
    d = torch.where(d > 0, d, torch.full_like(d, math.nan))
    x, y, z = unproject_cells(d, intr)
    px, py, pz = apply_rows(rows_cam_to_map(cam_to_map)[:, None, None], x, y, z)
    return torch.stack([px, py, pz], dim=-1).reshape(d.shape[0], -1, 3)


@dataclass(frozen=True)
class Keyframes:
    """Stored frames (see the module docstring): M frames of C channels at h x w cells."""

    latent: torch.Tensor  # [M,C,h,w] float32 raw latents
    points: torch.Tensor  # [M,h*w,3] float32 map-frame cell points (NaN: no depth)
    position: torch.Tensor  # [M,3] float32 camera position, map frame
    axis: torch.Tensor  # [M,3] float32 optical axis, map frame
    stamp: torch.Tensor  # [M] float64 seconds

    @classmethod
    def empty(cls, channels: int, device: torch.device) -> Keyframes:
        f32 = dict(dtype=torch.float32, device=device)
        return cls(torch.zeros(0, channels, 0, 0, **f32), torch.zeros(0, 0, 3, **f32),
                   torch.zeros(0, 3, **f32), torch.zeros(0, 3, **f32),
                   torch.zeros(0, dtype=torch.float64, device=device))

    def __len__(self) -> int:
        return self.latent.shape[0]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in
                   (self.latent, self.points, self.position, self.axis, self.stamp))

    def columns(self) -> dict[str, torch.Tensor]:
        return {"latent": self.latent, "points": self.points, "position": self.position,
                "axis": self.axis, "stamp": self.stamp}

    def to(self, device: torch.device) -> Keyframes:
        return Keyframes(*(t.to(device) for t in
                           (self.latent, self.points, self.position, self.axis, self.stamp)))

    def shifted(self, seconds: float) -> Keyframes:
        return Keyframes(self.latent, self.points, self.position, self.axis,
                         self.stamp + seconds)

    def add(self, latents: torch.Tensor, depth: torch.Tensor, intr: torch.Tensor,
            cam_to_map: torch.Tensor, stamps: torch.Tensor, opts: KeyframeOptions) -> Keyframes:
        """This store with frames ``latents [F,C,h,w]`` added in stamp order (ties: batch
        order), given their depth ``[F,H,W]`` (see ``warp_depth``), intrinsics ``[F,4]``,
        cam_to_map ``[F,4,4]`` float64 and stamps ``[F]`` float64. Frames without any valid
        depth or with a non-finite latent are skipped. Frames of another cell grid than the
        stored ones start the store afresh: one memory holds one model's latents."""
        if opts.capacity == 0 or latents.shape[0] == 0:
            return self
        dev = self.latent.device
        latents = latents.to(dev, torch.float32)
        h, w = latents.shape[-2:]
        points = frame_points(warp_depth(depth.to(dev), h, w), intr.to(dev), cam_to_map.to(dev))
        position = cam_to_map[:, :3, 3].to(dev, torch.float32)
        axis = cam_to_map[:, :3, 2].to(dev, torch.float32)
        stamps = stamps.to(dev, torch.float64)
        store = self
        if len(store) and store.latent.shape[1:] != latents.shape[1:]:
            store = Keyframes.empty(latents.shape[1], dev)
        if len(store) == 0:
            store = Keyframes(latents[:0], points[:0], position[:0], axis[:0], stamps[:0])
        cos_min = math.cos(math.radians(opts.min_angle_deg))
        for f in sorted(range(latents.shape[0]), key=lambda i: (float(stamps[i]), i)):
            if not bool(torch.isfinite(points[f]).any()):
                continue  # no depth anywhere: nothing to warp with
            if not bool(torch.isfinite(latents[f]).all()):
                continue  # a damaged frame is never copied whole (its good cells still fuse)
            near = ((store.position - position[f]).norm(dim=1) < opts.min_distance) & (
                store.axis @ axis[f] > cos_min)
            if bool(near.any()):
                continue  # this place is kept already
            row = [t[f:f + 1] for t in (latents, points, position, axis, stamps)]
            cols = [store.latent, store.points, store.position, store.axis, store.stamp]
            cols = [torch.cat([c, r]) for c, r in zip(cols, row, strict=True)]
            if cols[0].shape[0] > opts.capacity:
                i = int(cols[4].argmin())  # the oldest stamp (lowest index on a tie)
                cols = [torch.cat([c[:i], c[i + 1:]]) for c in cols]
            store = Keyframes(*cols)
        return store

    def warp_into(self, w2c: torch.Tensor, intr: torch.Tensor, h: int, w: int, near: float,
                  far: float, opts: KeyframeOptions
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The nearest stored frame of each view warped into it (see ``warp``), and its
        selection score ``[V]`` (inf where none)."""
        position, axis = view_centres(w2c)
        frame, score = select(self.position, self.axis, position, axis, opts.angle_weight,
                              opts.max_score)
        m = len(self)
        lat = self.latent.reshape(m, self.latent.shape[1], -1).transpose(1, 2)
        return (*warp(self.points, lat, frame, w2c, intr, h, w, near, far), score)
