"""What a ground robot can hit, as 2D footprints, and exact distances to it.

Every geom of a compiled MuJoCo model whose vertical extent meets the robot's *obstacle band*
(from just above the floor to the robot's height) is projected onto the floor: upright
cylinders, capsules and spheres become discs, everything else becomes the convex hull of its
projected corners (exact for boxes turned about any axis; conservative for ellipsoids and
meshes). Rugs and floors lie below the band, ceilings and lintels above it, so they never count.

The same footprints serve two purposes: exact point-to-obstacle distances (the ground-truth
clearance of a path) and a rasterised occupancy/clearance grid for planning.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import mujoco
import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["DEFAULT_BAND", "ClearanceGrid", "Obstacles", "convex_hull"]

# Default obstacle band (metres above the floor): a 2 cm floor tolerance and a 0.8 m tall robot.
DEFAULT_BAND = (0.02, 0.8)
# Polygon used for an upright ellipsoid's outline.
_ELLIPSE_SIDES = 16


def convex_hull(points: ArrayLike) -> NDArray:
    """Counter-clockwise convex hull ``[K, 2]`` of 2D points (Andrew's monotone chain)."""
    pts = np.unique(np.round(np.asarray(points, dtype=np.float64), 9), axis=0)
    if len(pts) < 3:
        return pts

    def cross(o: NDArray, a: NDArray, b: NDArray) -> float:
        return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))

    lower: list[NDArray] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[NDArray] = []
    for p in pts[::-1]:
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])


@dataclass(frozen=True)
class ClearanceGrid:
    """Distance to the nearest obstacle on a grid: ``clearance[i, j]`` (metres) is the value at
    the centre of cell ``(i, j)``, at ``x = origin[0] + (j + 0.5) * resolution`` and
    ``y = origin[1] + (i + 0.5) * resolution``. Accurate to about one cell."""

    clearance: NDArray
    origin: tuple[float, float]
    resolution: float

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.clearance.shape[0]), int(self.clearance.shape[1]))

    def cell_of(self, xy: ArrayLike) -> NDArray:
        """``[..., 2]`` (row, col) integer cells of map points (not clipped to the grid)."""
        xy = np.asarray(xy, dtype=np.float64)
        col = np.floor((xy[..., 0] - self.origin[0]) / self.resolution)
        row = np.floor((xy[..., 1] - self.origin[1]) / self.resolution)
        return np.stack([row, col], axis=-1).astype(np.int64)

    def center_of(self, cells: ArrayLike) -> NDArray:
        """Map ``[..., 2]`` (x, y) of the centres of ``[..., 2]`` (row, col) cells."""
        rc = np.asarray(cells, dtype=np.float64)
        return np.stack([self.origin[0] + (rc[..., 1] + 0.5) * self.resolution,
                         self.origin[1] + (rc[..., 0] + 0.5) * self.resolution], axis=-1)

    def coarsen(self, factor: int) -> ClearanceGrid:
        """A grid ``factor`` times coarser whose cells hold the smallest clearance of the cells
        they cover: never more optimistic than this grid. Edge cells that do not fill a whole
        block are dropped."""
        rows, cols = self.shape[0] // factor, self.shape[1] // factor
        blocks = self.clearance[:rows * factor, :cols * factor].reshape(rows, factor, cols, factor)
        return ClearanceGrid(blocks.min(axis=(1, 3)), self.origin, self.resolution * factor)

    def lookup(self, xy: ArrayLike) -> NDArray:
        """Clearance at map points (nearest cell); 0 outside the grid."""
        rc = self.cell_of(xy)
        rows, cols = self.shape
        inside = (rc[..., 0] >= 0) & (rc[..., 0] < rows) & (rc[..., 1] >= 0) & (rc[..., 1] < cols)
        r = np.clip(rc[..., 0], 0, rows - 1)
        c = np.clip(rc[..., 1], 0, cols - 1)
        return np.where(inside, self.clearance[r, c], 0.0)


@dataclass(frozen=True)
class Obstacles:
    """Footprints in the map's xy plane: convex polygons (CCW) and discs ``(x, y, r)``."""

    polygons: tuple[NDArray, ...]
    discs: NDArray  # [M, 3]
    # MuJoCo geom id behind each polygon, then each disc (-1: not known)
    sources: tuple[int, ...] = ()

    @classmethod
    def from_model(
        cls, model: mujoco.MjModel, data: mujoco.MjData, band: tuple[float, float] = DEFAULT_BAND
    ) -> Obstacles:
        """Footprints of the geoms of ``model`` (posed as in ``data``) that meet ``band``."""
        polygons: list[NDArray] = []
        discs: list[tuple[float, float, float]] = []
        polygon_geoms: list[int] = []
        disc_geoms: list[int] = []
        for g in range(model.ngeom):
            gtype = int(model.geom_type[g])
            if gtype == mujoco.mjtGeom.mjGEOM_HFIELD:
                continue  # terrain is the floor, not an obstacle
            R = data.geom_xmat[g].reshape(3, 3)
            pos = data.geom_xpos[g]
            size = model.geom_size[g]
            if gtype == mujoco.mjtGeom.mjGEOM_PLANE:
                if abs(R[2, 2]) > 0.99 or size[0] <= 0 or size[1] <= 0:
                    continue  # floors, and infinite planes that no footprint can describe
                local = np.array([[sx * size[0], sy * size[1], 0.0]
                                  for sx in (-1, 1) for sy in (-1, 1)])
            else:
                centre, half = model.geom_aabb[g, :3], model.geom_aabb[g, 3:]
                local = centre + half * np.array(
                    [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
            corners = local @ R.T + pos
            if corners[:, 2].max() < band[0] or corners[:, 2].min() > band[1]:
                continue
            upright = abs(R[2, 2]) > 1.0 - 1e-6
            if gtype == mujoco.mjtGeom.mjGEOM_SPHERE or (
                upright and gtype in (mujoco.mjtGeom.mjGEOM_CYLINDER,
                                      mujoco.mjtGeom.mjGEOM_CAPSULE)):
                discs.append((float(pos[0]), float(pos[1]), float(size[0])))
                disc_geoms.append(g)
            elif upright and gtype == mujoco.mjtGeom.mjGEOM_ELLIPSOID:
                a = np.linspace(0.0, 2 * math.pi, _ELLIPSE_SIDES, endpoint=False)
                # Circumscribed polygon: scale by 1/cos(pi/n) so the ellipse stays inside.
                k = 1.0 / math.cos(math.pi / _ELLIPSE_SIDES)
                ring = np.stack([k * size[0] * np.cos(a), k * size[1] * np.sin(a),
                                 np.zeros_like(a)], axis=1)
                polygons.append(convex_hull((ring @ R.T + pos)[:, :2]))
                polygon_geoms.append(g)
            else:
                polygons.append(convex_hull(corners[:, :2]))
                polygon_geoms.append(g)
        keep = [i for i, p in enumerate(polygons) if len(p) >= 3]
        return cls(tuple(polygons[i] for i in keep),
                   np.array(discs, dtype=np.float64).reshape(-1, 3),
                   tuple(polygon_geoms[i] for i in keep) + tuple(disc_geoms))

    def nearest(self, xy: ArrayLike) -> tuple[int, float, float]:
        """The footprint nearest the map point ``xy``: ``(geom id or -1, distance m, size m)``,
        where size is the footprint's largest extent (a disc's diameter, a polygon's longest
        diagonal), e.g. to tell a pole from a wall."""
        p = np.asarray(xy, dtype=np.float64).reshape(1, 2)
        # Every footprint's distance, polygons then discs (the order of ``sources``).
        d = np.full(len(self), np.inf)
        if self.polygons:
            d[:len(self.polygons)] = self._polygon_distances(p)[0]
        if len(self.discs):
            d[len(self.polygons):] = np.maximum(
                np.linalg.norm(p - self.discs[:, :2], axis=1) - self.discs[:, 2], 0.0)
        if not len(d):
            return -1, math.inf, math.inf
        index = int(np.argmin(d))
        if index < len(self.polygons):
            poly = self.polygons[index]
            size = float(np.linalg.norm(poly[:, None] - poly[None], axis=-1).max())
        else:
            size = 2.0 * float(self.discs[index - len(self.polygons), 2])
        geom = self.sources[index] if index < len(self.sources) else -1
        return geom, float(d[index]), size

    def __len__(self) -> int:
        return len(self.polygons) + len(self.discs)

    def bounds(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` of all footprints."""
        pts = [p for p in self.polygons]
        if len(self.discs):
            d = self.discs
            pts.append(np.concatenate([d[:, :2] - d[:, 2:], d[:, :2] + d[:, 2:]]))
        if not pts:
            raise ValueError("no footprints (the scene has nothing but infinite planes?)")
        allpts = np.concatenate(pts)
        lo, hi = allpts.min(axis=0), allpts.max(axis=0)
        return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))

    def distance(self, xy: ArrayLike) -> NDArray:
        """Exact distance ``[...]`` from map points ``[..., 2]`` to the nearest footprint; 0 for
        points inside one; ``inf`` when there are no obstacles."""
        xy = np.asarray(xy, dtype=np.float64)
        flat = xy.reshape(-1, 2)
        best = np.full(len(flat), np.inf)
        if len(self.discs):
            d = np.linalg.norm(flat[:, None, :] - self.discs[None, :, :2], axis=-1)
            best = np.minimum(best, np.maximum(d - self.discs[None, :, 2], 0.0).min(axis=1))
        if self.polygons:
            best = np.minimum(best, self._polygon_distance(flat))
        return best.reshape(xy.shape[:-1])

    @functools.cached_property
    def _edges(self) -> tuple[NDArray, NDArray]:
        """Edge start points and vectors ``[P, K, 2]`` of all polygons, padded to one K.

        Padding repeats a polygon's first vertex: the extra edges have zero length and change
        neither the distance nor the inside test.
        """
        k = max(len(poly) for poly in self.polygons)
        starts = np.empty((len(self.polygons), k, 2))
        ends = np.empty_like(starts)
        for i, poly in enumerate(self.polygons):
            n = len(poly)
            starts[i, :n] = poly
            ends[i, :n] = np.roll(poly, -1, axis=0)
            starts[i, n:] = ends[i, n:] = poly[0]
        return starts, ends - starts

    def _polygon_distance(self, points: NDArray) -> NDArray:
        return self._polygon_distances(points).min(axis=1)

    def _polygon_distances(self, points: NDArray) -> NDArray:
        """Distance ``[N, P]`` of points ``[N, 2]`` to each polygon (0 inside it)."""
        a, ab = self._edges
        denom = np.maximum((ab * ab).sum(-1), 1e-18)
        out = np.empty((len(points), a.shape[0]))
        # Chunks bound the [N, P, K, 2] temporaries to a few MB.
        chunk = max(1, 65536 // (a.shape[0] * a.shape[1]))
        for s in range(0, len(points), chunk):
            p = points[s:s + chunk, None, None, :]
            ap = p - a[None]
            t = np.clip((ap * ab[None]).sum(-1) / denom[None], 0.0, 1.0)
            edge_d = np.linalg.norm(ap - t[..., None] * ab[None], axis=-1).min(axis=2)
            cross = ab[None, ..., 0] * ap[..., 1] - ab[None, ..., 1] * ap[..., 0]
            inside = (cross >= -1e-12).all(axis=2)
            out[s:s + chunk] = np.where(inside, 0.0, edge_d)
        return out

    def clearance_grid(
        self, bounds: tuple[float, float, float, float], resolution: float = 0.05
    ) -> ClearanceGrid:
        """Rasterise the footprints over ``bounds`` and take the Euclidean distance transform.

        Cells outside ``bounds`` count as obstacles (the grid is all the robot may use).
        """
        x0, y0, x1, y1 = bounds
        cols = int(math.ceil((x1 - x0) / resolution))
        rows = int(math.ceil((y1 - y0) / resolution))
        free = np.full((rows + 2, cols + 2), 255, dtype=np.uint8)
        free[0, :] = free[-1, :] = free[:, 0] = free[:, -1] = 0
        shift = 4  # sub-pixel vertex precision for OpenCV's rasteriser
        scale = (1 << shift) / resolution

        def to_px(xy: NDArray) -> NDArray:
            # +1: the one-cell border; -0.5: OpenCV puts pixel centres at integer coordinates.
            px = (xy - np.array([x0, y0])) / resolution + 1.0 - 0.5
            return np.round(px * (1 << shift)).astype(np.int32)

        for poly in self.polygons:
            cv2.fillConvexPoly(free, to_px(poly), 0, lineType=cv2.LINE_8, shift=shift)
        for x, y, r in self.discs:
            centre = to_px(np.array([x, y]))
            cv2.circle(free, (int(centre[0]), int(centre[1])), int(round(r * scale)), 0, -1,
                       lineType=cv2.LINE_8, shift=shift)
        dist = cv2.distanceTransform(free, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        # The transform measures to the centre of the nearest blocked cell, which lies about
        # half a cell inside the obstacle.
        dist = np.where(free > 0, np.maximum(dist - 0.5, 0.0), 0.0)
        clearance = dist[1:-1, 1:-1].astype(np.float64) * resolution
        return ClearanceGrid(clearance, (x0, y0), resolution)
