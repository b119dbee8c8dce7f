"""Collision-free routes on a clearance grid: cost-to-go fields, shortest paths, smoothing.

Costs prefer open space: a step costs its length times ``1 + comfort_weight * shortfall``, where
the shortfall is how far the cell's clearance is below ``comfort`` (relative, 0..1). Cells with
less clearance than ``min_clearance`` (robot radius plus a margin) cannot be entered. So routes
run through the middle of doorways and keep a polite distance from furniture, as people expect
of a robot, and the views along them are not all close-ups of walls.

The cost-to-go field is computed by repeated vectorised relaxation over the 8-neighbourhood
(Bellman-Ford on a grid); it converges in as many sweeps as the longest route has cells, a few
hundred at 10 cm resolution, and costs tens of milliseconds.

:func:`free_regions` splits the cells a robot may occupy into connected regions and tells which
are *enclosed*: a closed building in a user's MJCF leaves free space outside its walls too, up to
the edge of the grid, and a robot (or a tour) that is meant to be inside must stay out of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

from mirage_ros.sim.obstacles import ClearanceGrid

__all__ = ["FreeRegions", "cost_to_go", "free_regions", "route", "smooth_polyline"]

_NEIGHBOURS = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]


@dataclass(frozen=True)
class FreeRegions:
    """Connected regions of the cells with at least ``min_clearance`` (8-neighbourhood).

    ``labels[i, j]`` is 0 for a cell the robot may not occupy and ``k`` (1..count) for a cell of
    region ``k``; ``sizes[k]`` counts its cells and ``enclosed[k]`` says whether the region is
    walled in: the obstacle-free space around it (any clearance above zero, 4-neighbourhood, so
    that walls meeting only at a corner still close) never reaches the edge of the grid.
    Index 0 of ``sizes`` and ``enclosed`` stands for the blocked cells and is always 0 / False.
    """

    labels: NDArray
    sizes: NDArray
    enclosed: NDArray

    @property
    def count(self) -> int:
        return len(self.sizes) - 1

    def default(self) -> int:
        """The region to use when nothing says where the robot is: the largest enclosed one,
        else (nothing is walled in: an open scene) the largest; 0 when there is none."""
        if self.count == 0:
            return 0
        for candidates in (self.enclosed, np.ones_like(self.enclosed)):
            sizes = np.where(candidates, self.sizes, 0)
            sizes[0] = 0
            if sizes.max() > 0:
                return int(np.argmax(sizes))
        return 0


def free_regions(grid: ClearanceGrid, min_clearance: float) -> FreeRegions:
    """The connected regions of ``grid`` with at least ``min_clearance`` (see FreeRegions)."""
    passable = (grid.clearance >= min_clearance).astype(np.uint8)
    count, labels = cv2.connectedComponents(passable, connectivity=8)
    sizes = np.bincount(labels.ravel(), minlength=count)
    sizes[0] = 0
    _, space = cv2.connectedComponents((grid.clearance > 0.0).astype(np.uint8), connectivity=4)
    edge = np.concatenate([space[0], space[-1], space[:, 0], space[:, -1]])
    outside = np.isin(space, np.unique(edge[edge > 0]))
    # A region is open when any of its cells lies in the space that reaches the edge.
    open_regions = np.bincount(labels[outside], minlength=count) > 0
    enclosed = ~open_regions
    enclosed[0] = False
    return FreeRegions(labels.astype(np.int32), sizes, enclosed)


def _step_cost(grid: ClearanceGrid, min_clearance: float, comfort: float,
               comfort_weight: float) -> NDArray:
    c = grid.clearance
    shortfall = np.clip((comfort - c) / max(comfort - min_clearance, 1e-6), 0.0, 1.0)
    cost = 1.0 + comfort_weight * shortfall
    return np.where(c >= min_clearance, cost, np.inf)


def _shifted(a: NDArray, dr: int, dc: int, fill: float) -> NDArray:
    """``out[r, c] = a[r + dr, c + dc]`` (``fill`` where that falls off the grid)."""
    out = np.full_like(a, fill)
    rows, cols = a.shape
    out[max(0, -dr):rows - max(0, dr), max(0, -dc):cols - max(0, dc)] = \
        a[max(0, dr):rows - max(0, -dr), max(0, dc):cols - max(0, -dc)]
    return out


def cost_to_go(
    grid: ClearanceGrid,
    goal_xy: ArrayLike,
    min_clearance: float,
    *,
    comfort: float = 1.0,
    comfort_weight: float = 3.0,
) -> NDArray:
    """Cheapest cost (metres, weighted) from every cell to the goal's cell; inf if unreachable.

    A step between neighbouring cells costs its length times the mean of both cells' weights.
    """
    weight = _step_cost(grid, min_clearance, comfort, comfort_weight)
    goal = grid.cell_of(goal_xy)
    rows, cols = grid.shape
    field = np.full((rows, cols), np.inf)
    if not (0 <= goal[0] < rows and 0 <= goal[1] < cols) or not np.isfinite(weight[tuple(goal)]):
        return field
    field[tuple(goal)] = 0.0
    steps = [(dr, dc, math.hypot(dr, dc) * grid.resolution,
              0.5 * (weight + _shifted(weight, dr, dc, np.inf))) for dr, dc in _NEIGHBOURS]
    while True:
        best = field
        for dr, dc, length, w in steps:
            best = np.minimum(best, _shifted(field, dr, dc, np.inf) + length * w)
        if np.array_equal(best, field):
            return field
        field = best


def route(
    grid: ClearanceGrid,
    start_xy: ArrayLike,
    field: NDArray,
) -> NDArray | None:
    """Cell-centre polyline ``[K, 2]`` from ``start_xy`` down ``field`` (see :func:`cost_to_go`)
    to its goal, or None when the start cannot reach it. Starts and ends exactly where asked:
    the first point is ``start_xy`` itself."""
    cell = tuple(int(v) for v in grid.cell_of(start_xy))
    rows, cols = grid.shape
    if not (0 <= cell[0] < rows and 0 <= cell[1] < cols) or not np.isfinite(field[cell]):
        return None
    cells = [cell]
    while field[cell] > 0.0:
        r, c = cell
        options = [(field[r + dr, c + dc], (r + dr, c + dc)) for dr, dc in _NEIGHBOURS
                   if 0 <= r + dr < rows and 0 <= c + dc < cols]
        value, nxt = min(options)
        if not value < field[cell]:
            return None  # cannot happen on a converged field; refuse rather than loop
        cell = nxt
        cells.append(cell)
    points = grid.center_of(np.array(cells))
    points[0] = np.asarray(start_xy, dtype=np.float64)
    return points


def smooth_polyline(points: ArrayLike, spacing: float, window: float) -> NDArray:
    """Resample a polyline every ``spacing`` metres and average it over ``window`` metres.

    The ends stay fixed (the window shrinks towards them), so a route still starts and ends
    where it did; corners become arcs of roughly ``window / 2`` radius.
    """
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) < 2:
        return pts.copy()
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] <= spacing:
        return pts[[0, -1]]
    samples = np.linspace(0.0, s[-1], int(math.ceil(s[-1] / spacing)) + 1)
    res = np.stack([np.interp(samples, s, pts[:, 0]), np.interp(samples, s, pts[:, 1])], axis=1)
    half = max(1, int(round(0.5 * window / spacing)))
    out = res.copy()
    n = len(res)
    for i in range(1, n - 1):
        k = min(half, i, n - 1 - i)
        out[i] = res[i - k:i + k + 1].mean(axis=0)
    return out
