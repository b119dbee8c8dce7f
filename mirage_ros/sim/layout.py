"""Floor plans: axis-aligned rooms and corridors that share walls and connect through doorways.

A plan is a set of rectangles (regions) that tile the building footprint edge to edge. Every
region owns the inner half of each of its walls, so a wall between two rooms is two half-thickness
slabs, one per room, each in its room's own material; outer walls are single slabs whose outer
face lies on the footprint boundary. Doorways are spans cut out of both halves of a shared wall.

Doors always make the plan connected (a random spanning tree over the adjacency graph), and
extra doors are added with some probability, so that tours can run in loops through the rooms.
Units are metres; x and y are map coordinates, z is up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Doorway", "FloorPlan", "Rect", "WallPiece", "open_hall_plan", "random_floor_plan"]

# Below this shared length two regions are treated as not adjacent (no door fits).
_MIN_SHARED = 1.6
# Wall kept on either side of a doorway, so that door jambs are never slivers.
_JAMB = 0.35
# Coordinates are drawn on a 5 cm grid: shared edges then coincide exactly, and the MJCF text is
# short and reproducible.
_GRID = 0.05


def _snap(value: float) -> float:
    return round(round(value / _GRID) * _GRID, 4)


@dataclass(frozen=True)
class Rect:
    """Axis-aligned rectangle ``[x0, x1] x [y0, y1]``."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def depth(self) -> float:
        return self.y1 - self.y0

    @property
    def center(self) -> tuple[float, float]:
        return (0.5 * (self.x0 + self.x1), 0.5 * (self.y0 + self.y1))

    def inset(self, margin: float) -> Rect:
        return Rect(self.x0 + margin, self.y0 + margin, self.x1 - margin, self.y1 - margin)


@dataclass(frozen=True)
class Doorway:
    """An opening in the wall between regions ``regions[0]`` and ``regions[1]``.

    ``axis`` 0: the wall runs along x on the line ``y = coord``; axis 1: along y on ``x = coord``.
    ``span`` is the opening's extent along the wall, ``height`` its top (equal to the wall height
    for an open passage, which then has no lintel).
    """

    regions: tuple[int, int]
    axis: int
    coord: float
    span: tuple[float, float]
    height: float

    @property
    def center(self) -> tuple[float, float]:
        s = 0.5 * (self.span[0] + self.span[1])
        return (s, self.coord) if self.axis == 0 else (self.coord, s)


@dataclass(frozen=True)
class WallPiece:
    """One slab of a region's wall: along ``axis`` on the line ``coord``, from ``span[0]`` to
    ``span[1]`` and from ``z[0]`` to ``z[1]``; ``inward`` (+1 or -1) is the side of the line
    (towards +y/+x or -y/-x) where the region, and the slab, lie."""

    region: int
    axis: int
    coord: float
    inward: int
    span: tuple[float, float]
    z: tuple[float, float]
    exterior: bool


@dataclass(frozen=True)
class FloorPlan:
    regions: tuple[Rect, ...]
    kinds: tuple[str, ...]  # "room" or "corridor", one per region
    doorways: tuple[Doorway, ...]
    wall_height: float
    wall_thickness: float

    @property
    def bounds(self) -> Rect:
        return Rect(
            min(r.x0 for r in self.regions), min(r.y0 for r in self.regions),
            max(r.x1 for r in self.regions), max(r.y1 for r in self.regions))

    def sides(self, index: int) -> list[tuple[int, float, int, tuple[float, float]]]:
        """``(axis, coord, inward, span)`` of the four sides of region ``index``.

        Sides along y are shortened by half a slab at both ends so that the slabs of one room do
        not overlap in its corners.
        """
        r, h = self.regions[index], 0.5 * self.wall_thickness
        return [
            (0, r.y0, +1, (r.x0, r.x1)),
            (0, r.y1, -1, (r.x0, r.x1)),
            (1, r.x0, +1, (r.y0 + h, r.y1 - h)),
            (1, r.x1, -1, (r.y0 + h, r.y1 - h)),
        ]

    def wall_pieces(self) -> list[WallPiece]:
        """Every slab of every region, doorways cut out, lintels above doors included."""
        pieces: list[WallPiece] = []
        for index in range(len(self.regions)):
            for axis, coord, inward, span in self.sides(index):
                openings = sorted(
                    (d for d in self.doorways
                     if index in d.regions and d.axis == axis and abs(d.coord - coord) < 1e-6),
                    key=lambda d: d.span[0])
                exterior = not _has_neighbour(self.regions, index, axis, coord, inward)
                start = span[0]
                for door in openings:
                    if door.span[0] > start:
                        pieces.append(WallPiece(index, axis, coord, inward,
                                                (start, door.span[0]),
                                                (0.0, self.wall_height), exterior))
                    if door.height < self.wall_height:
                        pieces.append(WallPiece(index, axis, coord, inward, door.span,
                                                (door.height, self.wall_height), exterior))
                    start = door.span[1]
                if span[1] > start:
                    pieces.append(WallPiece(index, axis, coord, inward, (start, span[1]),
                                            (0.0, self.wall_height), exterior))
        return pieces


def _has_neighbour(
    regions: tuple[Rect, ...], index: int, axis: int, coord: float, inward: int
) -> bool:
    """Whether any other region touches this side (then the side is an interior wall)."""
    me = regions[index]
    for j, other in enumerate(regions):
        if j == index:
            continue
        if axis == 0:
            edge = other.y1 if inward > 0 else other.y0
            overlap = min(me.x1, other.x1) - max(me.x0, other.x0)
        else:
            edge = other.x1 if inward > 0 else other.x0
            overlap = min(me.y1, other.y1) - max(me.y0, other.y0)
        if abs(edge - coord) < 1e-6 and overlap > 1e-6:
            return True
    return False


def _adjacencies(regions: list[Rect]) -> list[tuple[int, int, int, float, tuple[float, float]]]:
    """``(i, j, axis, coord, shared span)`` for every pair of regions sharing enough wall."""
    found = []
    for i, a in enumerate(regions):
        for j in range(i + 1, len(regions)):
            b = regions[j]
            for axis, coord_ok, coord, lo, hi in (
                (0, abs(a.y1 - b.y0) < 1e-6, a.y1, max(a.x0, b.x0), min(a.x1, b.x1)),
                (0, abs(b.y1 - a.y0) < 1e-6, a.y0, max(a.x0, b.x0), min(a.x1, b.x1)),
                (1, abs(a.x1 - b.x0) < 1e-6, a.x1, max(a.y0, b.y0), min(a.y1, b.y1)),
                (1, abs(b.x1 - a.x0) < 1e-6, a.x0, max(a.y0, b.y0), min(a.y1, b.y1)),
            ):
                if coord_ok and hi - lo >= _MIN_SHARED:
                    found.append((i, j, axis, coord, (lo, hi)))
    return found


def _grid_regions(rng: np.random.Generator) -> tuple[list[Rect], list[str]]:
    shapes = [(2, 1), (1, 2), (3, 1), (1, 3), (2, 2)]
    nx, ny = shapes[int(rng.integers(len(shapes)))]
    xs = np.concatenate([[0.0], np.cumsum([_snap(rng.uniform(3.6, 6.4)) for _ in range(nx)])])
    ys = np.concatenate([[0.0], np.cumsum([_snap(rng.uniform(3.6, 6.4)) for _ in range(ny)])])
    cells = [(i, j) for j in range(ny) for i in range(nx)]
    if nx == ny == 2 and rng.random() < 0.4:
        # An L-shaped flat: drop one corner room.
        cells.pop(int(rng.integers(len(cells))))
    regions = [Rect(_snap(xs[i]), _snap(ys[j]), _snap(xs[i + 1]), _snap(ys[j + 1]))
               for i, j in cells]
    return regions, ["room"] * len(regions)


def _corridor_regions(rng: np.random.Generator) -> tuple[list[Rect], list[str]]:
    width = _snap(rng.uniform(1.6, 2.4))
    n_top = int(rng.integers(2, 4))
    top_widths = [_snap(rng.uniform(3.6, 6.0)) for _ in range(n_top)]
    length = _snap(sum(top_widths))
    regions = [Rect(0.0, 0.0, length, width)]
    kinds = ["corridor"]
    top_depth = _snap(rng.uniform(3.6, 6.0))
    x = 0.0
    for w in top_widths:
        regions.append(Rect(_snap(x), width, _snap(x + w), _snap(width + top_depth)))
        kinds.append("room")
        x += w
    # Two rooms on the far side of a two-room corridor, cut at another place than the near
    # side (a three-room corridor is long enough as it is: at most four rooms per plan).
    if n_top == 2 and rng.random() < 0.5:
        bottom_depth = _snap(rng.uniform(3.6, 6.0))
        cut = _snap(rng.uniform(max(3.6, length - 6.4), min(6.4, length - 3.6)))
        for x0, x1 in ((0.0, cut), (cut, length)):
            regions.append(Rect(x0, -bottom_depth, x1, 0.0))
            kinds.append("room")
    return regions, kinds


def random_floor_plan(rng: np.random.Generator) -> FloorPlan:
    """A 2-4 room plan: a grid of rooms (possibly L-shaped) or rooms along a corridor."""
    if rng.random() < 0.6:
        regions, kinds = _grid_regions(rng)
    else:
        regions, kinds = _corridor_regions(rng)
    # Most buildings have 2.4-3.2 m ceilings; some rooms are lofts or old buildings up to 4 m.
    if rng.random() < 0.25:
        wall_height = _snap(rng.uniform(3.2, 4.0))
    else:
        wall_height = _snap(rng.uniform(2.3, 3.2))
    return _connect(rng, regions, kinds, wall_height)


def open_hall_plan(rng: np.random.Generator) -> FloorPlan:
    """One large open hall (8-13 m by 6-10 m, 3-4.5 m high: a warehouse, a lobby, a car park)
    with zero to two ordinary rooms along one of its long sides."""
    width, depth = _snap(rng.uniform(8.0, 13.0)), _snap(rng.uniform(6.0, 10.0))
    regions = [Rect(0.0, 0.0, width, depth)]
    kinds = ["room"]
    rooms = int(rng.choice([0, 1, 2], p=[0.2, 0.45, 0.35]))
    room_depth = _snap(rng.uniform(3.6, 5.0))
    x = _snap(rng.uniform(0.0, 1.0)) if rooms else 0.0
    for _ in range(rooms):
        w = _snap(rng.uniform(3.6, 5.5))
        if x + w > width:
            break
        regions.append(Rect(x, depth, _snap(x + w), _snap(depth + room_depth)))
        kinds.append("room")
        x = _snap(x + w)
    wall_height = _snap(rng.uniform(3.0, 4.5))
    return _connect(rng, regions, kinds, wall_height)


def _connect(
    rng: np.random.Generator, regions: list[Rect], kinds: list[str], wall_height: float
) -> FloorPlan:
    """Wall thickness and doorways for regions that tile a footprint."""
    wall_thickness = _snap(rng.uniform(0.1, 0.2))

    edges = _adjacencies(regions)
    # Random spanning tree (randomised Prim) so every region is reachable, then extra doors.
    order = [int(k) for k in rng.permutation(len(edges))]
    connected = {0}
    chosen: list[int] = []
    while len(connected) < len(regions):
        for k in order:
            i, j = edges[k][:2]
            if (i in connected) != (j in connected):
                chosen.append(k)
                connected |= {i, j}
                break
        else:
            raise AssertionError("floor plan regions are not all adjacent")
    for k in order:
        if k not in chosen and rng.random() < 0.35:
            chosen.append(k)

    doorways = []
    for k in sorted(chosen):
        i, j, axis, coord, (lo, hi) = edges[k]
        room = hi - lo - 2 * _JAMB
        if rng.random() < 0.25 and room > 1.6:
            width = _snap(rng.uniform(1.4, min(2.4, room)))
            height = wall_height
        else:
            width = _snap(rng.uniform(0.9, 1.2))
            height = _snap(rng.uniform(2.0, 2.2))
        start = _snap(rng.uniform(lo + _JAMB, hi - _JAMB - width))
        doorways.append(Doorway((i, j), axis, coord, (start, _snap(start + width)), height))
    return FloorPlan(tuple(regions), tuple(kinds), tuple(doorways), wall_height, wall_thickness)
