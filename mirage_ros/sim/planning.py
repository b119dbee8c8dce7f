"""Collision-free routes on a clearance grid: cost-to-go fields, shortest paths, smoothing.

Costs prefer open space: a step costs its length times ``1 + comfort_weight * shortfall``, where
the shortfall is how far the cell's clearance is below ``comfort`` (relative, 0..1). Cells with
less clearance than ``min_clearance`` (robot radius plus a margin) cannot be entered. So routes
run through the middle of doorways and keep a polite distance from furniture, as people expect
of a robot, and the views along them are not all close-ups of walls.

The cost-to-go field is computed by repeated vectorised relaxation over the 8-neighbourhood
(Bellman-Ford on a grid); it converges in as many sweeps as the longest route has cells, a few
hundred at 10 cm resolution, and costs tens of milliseconds.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mirage_ros.sim.obstacles import ClearanceGrid

__all__ = ["cost_to_go", "route", "smooth_polyline"]

_NEIGHBOURS = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]


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
