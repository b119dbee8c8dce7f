"""Furniture-like obstacles built from primitives: tables, chairs, shelves, cabinets, sofas, beds,
crates, bins, plants, lamps, columns and rugs; stools, thin-legged chairs and side tables, bare
poles, pallets, warehouse shelving rows, pillars and bollards.

Each maker returns a :class:`Piece` in its own frame: origin on the floor at the centre of its
footprint, x along its width, y along its depth with the back at ``+y`` (pieces that stand against
a wall are turned so that ``+y`` faces the wall), z up. Sizes follow real furniture so that the
scenes read as rooms, and so that clearance numbers mean something for a real robot.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mirage_ros.sim.materials import MaterialBook
from mirage_ros.sim.mjcf import Part, yaw_quat

__all__ = ["MAKERS", "ROOM_STYLES", "Piece", "bollard", "make_piece", "pillar", "shelving_row"]


@dataclass(frozen=True)
class Piece:
    kind: str
    width: float  # footprint along local x
    depth: float  # footprint along local y
    parts: tuple[Part, ...]
    against_wall: bool


def _box(x: float, y: float, z0: float, w: float, d: float, h: float, mat: str) -> Part:
    """Box from its footprint centre ``(x, y)``, bottom ``z0`` and full extents ``w, d, h``."""
    return Part("box", (x, y, z0 + 0.5 * h), (0.5 * w, 0.5 * d, 0.5 * h), mat)


def _cyl(x: float, y: float, z0: float, r: float, h: float, mat: str) -> Part:
    return Part("cylinder", (x, y, z0 + 0.5 * h), (r, 0.5 * h), mat)


def _legs(
    w: float, d: float, h: float, inset: float, size: float, round_legs: bool, mat: str
) -> list[Part]:
    parts = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * (0.5 * w - inset), sy * (0.5 * d - inset)
            if round_legs:
                parts.append(_cyl(x, y, 0.0, 0.5 * size, h, mat))
            else:
                parts.append(_box(x, y, 0.0, size, size, h, mat))
    return parts


def _table_parts(
    rng: np.random.Generator, book: MaterialBook, w: float, d: float
) -> tuple[list[Part], float]:
    h = rng.uniform(0.7, 0.78)
    top = rng.uniform(0.025, 0.05)
    wood = book.wood(rng) if rng.random() < 0.7 else book.painted(rng)
    legs = book.metal(rng) if rng.random() < 0.4 else wood
    surface = book.wood_grain(rng) if rng.random() < 0.3 else wood
    parts = [_box(0.0, 0.0, h - top, w, d, top, surface)]
    parts += _legs(w, d, h - top, 0.06, rng.uniform(0.04, 0.07), rng.random() < 0.5, legs)
    return parts, h


def _chair_parts(
    rng: np.random.Generator, seat_mat: str, frame_mat: str, size: float, seat_h: float
) -> list[Part]:
    """A chair facing -y (its back at +y), centred on its seat."""
    parts = [_box(0.0, 0.0, seat_h - 0.04, size, size, 0.04, seat_mat)]
    parts += _legs(size, size, seat_h - 0.04, 0.03, 0.035, False, frame_mat)
    back_h = rng.uniform(0.35, 0.5)
    parts.append(_box(0.0, 0.5 * size - 0.02, seat_h, size, 0.04, back_h, frame_mat))
    return parts


def table(rng: np.random.Generator, book: MaterialBook) -> Piece:
    w, d = rng.uniform(0.8, 1.8), rng.uniform(0.6, 1.0)
    parts, h = _table_parts(rng, book, w, d)
    # Something on the table now and then: a box (books) or a cylinder (vase, mug).
    for _ in range(int(rng.integers(0, 3))):
        x, y = rng.uniform(-0.35, 0.35) * w, rng.uniform(-0.3, 0.3) * d
        if rng.random() < 0.5:
            parts.append(Part("box", (x, y, h + 0.03), (0.12, 0.09, 0.03), book.bright(rng),
                              yaw_quat(rng.uniform(0, math.pi))))
        else:
            r, ch = rng.uniform(0.03, 0.07), rng.uniform(0.08, 0.3)
            parts.append(_cyl(x, y, h, r, ch, book.bright(rng)))
    return Piece("table", w, d, tuple(parts), against_wall=rng.random() < 0.3)


def dining_set(rng: np.random.Generator, book: MaterialBook) -> Piece:
    """A table with chairs pulled up to its long sides."""
    w, d = rng.uniform(1.0, 1.8), rng.uniform(0.7, 0.95)
    parts, _ = _table_parts(rng, book, w, d)
    seat_mat = book.fabric(rng) if rng.random() < 0.5 else book.wood(rng)
    frame_mat = book.wood(rng) if rng.random() < 0.6 else book.metal(rng)
    size, seat_h = rng.uniform(0.4, 0.48), rng.uniform(0.43, 0.48)
    chair = _chair_parts(rng, seat_mat, frame_mat, size, seat_h)
    per_side = 2 if w > 1.3 else 1
    offset = 0.5 * d + 0.5 * size - 0.08
    for side in (-1, 1):
        for k in range(per_side):
            x = (k - 0.5 * (per_side - 1)) * 0.55 * w
            # A chair's back is at +y; on the -y side it must face +y, so turn it by pi.
            yaw = 0.0 if side > 0 else math.pi
            parts += [p.placed(x, side * offset, yaw) for p in chair]
    return Piece("dining_set", w, d + 2 * size - 0.16, tuple(parts), against_wall=False)


def chair(rng: np.random.Generator, book: MaterialBook) -> Piece:
    size = rng.uniform(0.4, 0.5)
    seat = book.fabric(rng) if rng.random() < 0.5 else book.wood(rng)
    parts = _chair_parts(rng, seat, book.wood(rng), size, rng.uniform(0.43, 0.48))
    return Piece("chair", size, size, tuple(parts), against_wall=False)


def shelf(rng: np.random.Generator, book: MaterialBook) -> Piece:
    w, d, h = rng.uniform(0.8, 1.4), rng.uniform(0.28, 0.4), rng.uniform(1.2, 2.0)
    t = 0.025
    mat = book.wood(rng) if rng.random() < 0.6 else book.painted(rng)
    parts = [
        _box(-0.5 * w + 0.5 * t, 0.0, 0.0, t, d, h, mat),
        _box(0.5 * w - 0.5 * t, 0.0, 0.0, t, d, h, mat),
        _box(0.0, 0.5 * d - 0.5 * t, 0.0, w, t, h, mat),
    ]
    boards = int(rng.integers(3, 6))
    levels = np.linspace(0.05, h - t, boards + 1)
    for z in levels:
        parts.append(_box(0.0, 0.0, float(z), w - 2 * t, d - t, t, mat))
    # Books on some boards: a row of thin boxes with varied height and colour.
    colours = [book.bright(rng) for _ in range(3)]
    for z0, z1 in zip(levels[:-1], levels[1:], strict=True):
        if rng.random() < 0.4:
            continue
        x = -0.5 * w + t + rng.uniform(0.0, 0.2)
        for _ in range(int(rng.integers(2, 7))):
            bw = rng.uniform(0.04, 0.12)
            bh = min(rng.uniform(0.15, 0.3), float(z1 - z0) - t - 0.02)
            if x + bw > 0.5 * w - t or bh <= 0.05:
                break
            parts.append(_box(x + 0.5 * bw, 0.0, float(z0) + t, bw, d * 0.75, bh,
                              colours[int(rng.integers(len(colours)))]))
            x += bw + rng.uniform(0.0, 0.03)
    return Piece("shelf", w, d, tuple(parts), against_wall=True)


def cabinet(rng: np.random.Generator, book: MaterialBook) -> Piece:
    w, d, h = rng.uniform(0.6, 1.6), rng.uniform(0.4, 0.6), rng.uniform(0.5, 1.1)
    body = book.painted(rng) if rng.random() < 0.5 else book.wood(rng)
    front = book.painted(rng) if rng.random() < 0.5 else body
    handle = book.metal(rng)
    parts = [
        _box(0.0, 0.01, 0.08, w, d - 0.02, h - 0.1, body),
        _box(0.0, 0.0, h - 0.03, w + 0.02, d + 0.01, 0.03, body),
        _box(0.0, 0.03, 0.0, w - 0.04, d - 0.06, 0.08, front),
    ]
    doors = max(1, int(round(w / 0.45)))
    door_w = (w - 0.02) / doors
    for k in range(doors):
        x = -0.5 * w + 0.01 + (k + 0.5) * door_w
        parts.append(_box(x, -0.5 * d + 0.005, 0.1, door_w - 0.008, 0.02, h - 0.16, front))
        parts.append(_box(x + (0.35 if k % 2 else -0.35) * door_w, -0.5 * d - 0.01,
                          h - 0.25, 0.02, 0.02, 0.1, handle))
    return Piece("cabinet", w + 0.02, d + 0.04, tuple(parts), against_wall=True)


def sofa(rng: np.random.Generator, book: MaterialBook) -> Piece:
    w, d = rng.uniform(1.5, 2.3), rng.uniform(0.8, 0.95)
    cover = book.fabric(rng)
    cushion = cover if rng.random() < 0.6 else book.fabric(rng)
    arm_w, back_d = rng.uniform(0.15, 0.22), rng.uniform(0.18, 0.25)
    parts = [
        _box(0.0, 0.0, 0.05, w, d, 0.3, cover),
        _box(0.0, 0.5 * d - 0.5 * back_d, 0.35, w, back_d, rng.uniform(0.35, 0.5), cover),
    ]
    for side in (-1, 1):
        parts.append(_box(side * (0.5 * w - 0.5 * arm_w), 0.0, 0.35, arm_w, d, 0.22, cover))
    seats = int(rng.integers(2, 4))
    inner = w - 2 * arm_w
    for k in range(seats):
        x = -0.5 * inner + (k + 0.5) * inner / seats
        parts.append(_box(x, -0.5 * back_d, 0.35, inner / seats - 0.02, d - back_d, 0.1,
                          cushion))
    feet = book.wood(rng)
    parts += _legs(w, d, 0.05, 0.06, 0.05, True, feet)
    return Piece("sofa", w, d, tuple(parts), against_wall=True)


def bed(rng: np.random.Generator, book: MaterialBook) -> Piece:
    w, d = rng.uniform(1.0, 1.8), rng.uniform(1.95, 2.1)
    frame = book.wood(rng) if rng.random() < 0.7 else book.painted(rng)
    linen = book.fabric(rng)
    sheet = book.linen(rng)
    parts = [
        _box(0.0, 0.0, 0.1, w, d, 0.25, frame),
        _box(0.0, 0.0, 0.35, w - 0.06, d - 0.06, 0.18, sheet),
        _box(0.0, -0.2 * d, 0.53, w - 0.02, 0.55 * d, 0.04, linen),
        _box(0.0, 0.5 * d - 0.04, 0.1, w + 0.04, 0.08, rng.uniform(0.6, 0.9), frame),
    ]
    pillows = 2 if w > 1.3 else 1
    for k in range(pillows):
        x = (k - 0.5 * (pillows - 1)) * 0.5 * w
        parts.append(_box(x, 0.5 * d - 0.3, 0.53, min(0.6, 0.45 * w), 0.35, 0.1, sheet))
    parts += _legs(w, d, 0.1, 0.05, 0.06, False, frame)
    return Piece("bed", w + 0.04, d, tuple(parts), against_wall=True)


def crates(rng: np.random.Generator, book: MaterialBook) -> Piece:
    """One to three boxes stacked, each turned a little: storage, moving boxes."""
    if rng.random() < 0.4:
        mat = book.cardboard(rng)
    else:
        mat = book.wood(rng) if rng.random() < 0.5 else book.painted(rng)
    w, d = rng.uniform(0.35, 0.8), rng.uniform(0.35, 0.8)
    parts, z = [], 0.0
    for k in range(int(rng.integers(1, 4))):
        shrink = 1.0 - 0.15 * k
        h = rng.uniform(0.25, 0.5)
        parts.append(Part("box", (0.0, 0.0, z + 0.5 * h),
                          (0.5 * w * shrink, 0.5 * d * shrink, 0.5 * h),
                          mat if rng.random() < 0.7 else book.painted(rng),
                          yaw_quat(rng.uniform(-0.25, 0.25))))
        z += h
    reach = math.hypot(w, d)  # any turned layer stays inside this square
    return Piece("crates", reach, reach, tuple(parts), against_wall=False)


def bin_or_barrel(rng: np.random.Generator, book: MaterialBook) -> Piece:
    r, h = rng.uniform(0.15, 0.35), rng.uniform(0.35, 0.95)
    mat = book.painted(rng) if rng.random() < 0.6 else book.metal(rng)
    parts = [_cyl(0.0, 0.0, 0.0, r, h, mat)]
    if rng.random() < 0.5:
        parts.append(_cyl(0.0, 0.0, h, r * 1.04, 0.03, book.painted(rng)))
    return Piece("bin", 2 * r * 1.04, 2 * r * 1.04, tuple(parts), against_wall=False)


def plant(rng: np.random.Generator, book: MaterialBook) -> Piece:
    r, h = rng.uniform(0.13, 0.25), rng.uniform(0.25, 0.5)
    pot = book.painted(rng) if rng.random() < 0.6 else book.wood(rng)
    leaves = book.foliage(rng)
    size = rng.uniform(0.25, 0.5)
    tall = rng.uniform(0.8, 1.8) * size
    parts = [
        _cyl(0.0, 0.0, 0.0, r, h, pot),
        Part("ellipsoid", (0.0, 0.0, h + tall), (size, size * rng.uniform(0.8, 1.0), tall),
             leaves, yaw_quat(rng.uniform(0, math.pi))),
    ]
    reach = 2 * max(r, size)
    return Piece("plant", reach, reach, tuple(parts), against_wall=False)


def floor_lamp(rng: np.random.Generator, book: MaterialBook) -> Piece:
    metal = book.metal(rng)
    h = rng.uniform(1.3, 1.7)
    shade_rgb = (1.0, rng.uniform(0.85, 0.95), rng.uniform(0.6, 0.8))
    shade = book.emissive(shade_rgb, rng.uniform(0.4, 0.8))
    parts = [
        _cyl(0.0, 0.0, 0.0, 0.16, 0.03, metal),
        _cyl(0.0, 0.0, 0.03, 0.015, h, metal),
        _cyl(0.0, 0.0, h, rng.uniform(0.14, 0.22), rng.uniform(0.2, 0.3), shade),
    ]
    return Piece("lamp", 0.44, 0.44, tuple(parts), against_wall=False)


def column(rng: np.random.Generator, book: MaterialBook, height: float) -> Piece:
    """A pillar from floor to ceiling, round or square."""
    mat = book.painted(rng)
    r = rng.uniform(0.15, 0.3)
    if rng.random() < 0.5:
        part = _cyl(0.0, 0.0, 0.0, r, height, mat)
    else:
        part = _box(0.0, 0.0, 0.0, 2 * r, 2 * r, height, mat)
    return Piece("column", 2 * r, 2 * r, (part,), against_wall=False)


def rug(rng: np.random.Generator, book: MaterialBook) -> Piece:
    """Flat on the floor: seen, never an obstacle (it stays below any robot's obstacle band)."""
    w, d = rng.uniform(1.2, 2.5), rng.uniform(0.8, 2.0)
    mat = book.fabric(rng)
    parts = [_box(0.0, 0.0, 0.0, w, d, 0.008, mat)]
    if rng.random() < 0.5:
        parts.append(_box(0.0, 0.0, 0.0, w * 0.8, d * 0.75, 0.01, book.fabric(rng)))
    return Piece("rug", w, d, tuple(parts), against_wall=False)


# ------------------------------------------------------------------ thin legs and poles
# Legs and poles of 2-6 cm: seen in a few pixels only, yet a robot must not drive into them.


def _thin_legs(
    w: float, d: float, h: float, inset: float, size: float, mat: str, round_legs: bool = True
) -> list[Part]:
    return _legs(w, d, h, inset, size, round_legs, mat)


def stool(rng: np.random.Generator, book: MaterialBook) -> Piece:
    """A bar or kitchen stool: a round or square seat on three or four thin legs."""
    seat_h = rng.uniform(0.45, 0.78)
    r = rng.uniform(0.15, 0.21)
    seat = book.wood(rng) if rng.random() < 0.5 else book.painted(rng)
    frame = book.metal(rng) if rng.random() < 0.6 else book.wood(rng)
    leg = rng.uniform(0.02, 0.035)
    parts = [_cyl(0.0, 0.0, seat_h - 0.035, r, 0.035, seat)]
    legs = 3 if rng.random() < 0.4 else 4
    spread = r + rng.uniform(0.0, 0.04)  # legs splay a little past the seat
    for k in range(legs):
        a = 2 * math.pi * k / legs + 0.25 * math.pi
        parts.append(_cyl(spread * 0.8 * math.cos(a), spread * 0.8 * math.sin(a), 0.0,
                          0.5 * leg, seat_h - 0.035, frame))
    if rng.random() < 0.5:  # a foot ring: a thin flat disc at a third of the height
        parts.append(_cyl(0.0, 0.0, 0.3 * seat_h, spread * 0.75, 0.015, frame))
    size = 2 * max(r, spread * 0.8 + 0.5 * leg)
    return Piece("stool", size, size, tuple(parts), against_wall=False)


def thin_chair(rng: np.random.Generator, book: MaterialBook) -> Piece:
    """A cafe or folding chair: metal tube legs of 2-3 cm, seat and back panels."""
    size, seat_h = rng.uniform(0.4, 0.48), rng.uniform(0.43, 0.48)
    seat = book.painted(rng) if rng.random() < 0.5 else book.wood(rng)
    frame = book.metal(rng) if rng.random() < 0.7 else book.painted(rng)
    leg = rng.uniform(0.02, 0.03)
    parts = [_box(0.0, 0.0, seat_h - 0.025, size, size, 0.025, seat)]
    parts += _thin_legs(size, size, seat_h - 0.025, 0.02, leg, frame)
    back_h = rng.uniform(0.3, 0.45)
    for sx in (-1, 1):  # two uprights carry the back panel
        parts.append(_cyl(sx * (0.5 * size - 0.02), 0.5 * size - 0.02, seat_h, 0.5 * leg,
                          back_h, frame))
    parts.append(_box(0.0, 0.5 * size - 0.02, seat_h + 0.6 * back_h, size - 0.02, 0.02,
                      0.4 * back_h, seat))
    return Piece("chair_thin", size, size, tuple(parts), against_wall=False)


def side_table(rng: np.random.Generator, book: MaterialBook) -> Piece:
    """A small table: a square top on four thin legs, or a round top on one pole and a base."""
    h = rng.uniform(0.45, 0.75)
    top = book.wood_grain(rng) if rng.random() < 0.4 else (
        book.wood(rng) if rng.random() < 0.5 else book.painted(rng))
    frame = book.metal(rng) if rng.random() < 0.6 else book.wood(rng)
    if rng.random() < 0.5:
        w = rng.uniform(0.4, 0.7)
        parts = [_box(0.0, 0.0, h - 0.025, w, w, 0.025, top)]
        parts += _thin_legs(w, w, h - 0.025, 0.03, rng.uniform(0.02, 0.04), frame,
                            round_legs=rng.random() < 0.6)
    else:
        r = rng.uniform(0.2, 0.35)
        w = 2 * r
        parts = [_cyl(0.0, 0.0, h - 0.025, r, 0.025, top),
                 _cyl(0.0, 0.0, 0.0, rng.uniform(0.015, 0.03), h - 0.025, frame),
                 _cyl(0.0, 0.0, 0.0, rng.uniform(0.15, 0.6) * r + 0.1, 0.025, frame)]
    if rng.random() < 0.5:
        r_obj = rng.uniform(0.03, 0.08)
        parts.append(_cyl(rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1), h, r_obj,
                          rng.uniform(0.08, 0.3), book.bright(rng)))
    return Piece("side_table", w, w, tuple(parts), against_wall=False)


def pole(rng: np.random.Generator, book: MaterialBook) -> Piece:
    """A bare pole 2-6 cm wide: a post, a sign, a stanchion, a coat stand."""
    mat = book.metal(rng) if rng.random() < 0.6 else book.painted(rng)
    r = rng.uniform(0.01, 0.03)
    h = rng.uniform(0.9, 2.0)
    parts = [_cyl(0.0, 0.0, 0.0, r, h, mat)]
    reach = 2 * r
    kind = rng.random()
    if kind < 0.35:  # a low flat base
        base = rng.uniform(0.1, 0.18)
        parts.append(_cyl(0.0, 0.0, 0.0, base, 0.025, mat))
        reach = 2 * base
    elif kind < 0.6:  # a coat stand: short arms at the top
        for a in (0.0, 0.5 * math.pi):
            parts.append(Part("box", (0.0, 0.0, h - 0.1), (0.14, 0.012, 0.012), mat,
                              yaw_quat(a)))
        reach = max(reach, 0.3)
    elif kind < 0.8:  # a sign on top
        parts.append(_box(0.0, 0.0, h, rng.uniform(0.25, 0.45), 0.02, rng.uniform(0.2, 0.35),
                          book.bright(rng)))
        reach = max(reach, 0.45)
    return Piece("pole", reach, reach, tuple(parts), against_wall=False)


def pallet(rng: np.random.Generator, book: MaterialBook) -> Piece:
    """A wooden pallet on the floor, often loaded with cartons."""
    w, d = (1.2, 0.8) if rng.random() < 0.7 else (1.0, 1.0)
    wood = book.wood_grain(rng)
    parts = [_box(0.0, 0.0, 0.0, w, d, 0.12, book.wood(rng)),
             _box(0.0, 0.0, 0.12, w, d, 0.025, wood)]
    top = 0.145
    if rng.random() < 0.75:
        carton = book.cardboard(rng)
        h = rng.uniform(0.3, 1.2)
        parts.append(_box(0.0, 0.0, top, w * rng.uniform(0.8, 0.98), d * rng.uniform(0.8, 0.98),
                          h, carton))
        if rng.random() < 0.4:
            parts.append(_box(rng.uniform(-0.2, 0.2) * w, 0.0, top + h, 0.4 * w, 0.6 * d,
                              rng.uniform(0.2, 0.4), book.cardboard(rng)))
    return Piece("pallet", w, d, tuple(parts), against_wall=False)


def shelving_row(
    rng: np.random.Generator, book: MaterialBook, length: float, depth: float, height: float,
    boards: int, frame: str, board_mat: str, cartons: list[str], fill: float,
) -> Piece:
    """Open warehouse shelving along local x: thin uprights at every bay boundary (3-5 cm), a
    low bottom board and ``boards - 1`` more up to ``height``, some cartons on the boards."""
    bays = max(1, int(round(length / rng.uniform(1.0, 1.8))))
    bay = length / bays
    post = rng.uniform(0.03, 0.05)
    round_posts = rng.random() < 0.3
    parts: list[Part] = []
    for k in range(bays + 1):
        x = -0.5 * length + k * bay
        x = min(max(x, -0.5 * length + 0.5 * post), 0.5 * length - 0.5 * post)
        for sy in (-1, 1):
            y = sy * (0.5 * depth - 0.5 * post)
            if round_posts:
                parts.append(_cyl(x, y, 0.0, 0.5 * post, height, frame))
            else:
                parts.append(_box(x, y, 0.0, post, post, height, frame))
    low = rng.uniform(0.08, 0.15)
    levels = [low] + list(np.linspace(low, height - 0.03, boards)[1:])
    for z in levels:
        parts.append(_box(0.0, 0.0, float(z), length, depth - 0.01, 0.03, board_mat))
    # Cartons: one wide box per bay and level at most, so the geom count stays small.
    for z0, z1 in zip(levels[:-1], levels[1:], strict=True):
        gap = float(z1 - z0) - 0.06
        for k in range(bays):
            if rng.random() > fill or gap < 0.15:
                continue
            bw = bay * rng.uniform(0.3, 0.85)
            x = -0.5 * length + (k + 0.5) * bay + rng.uniform(-0.5, 0.5) * (bay - bw - post)
            carton = cartons[int(rng.integers(len(cartons)))]
            parts.append(_box(x, 0.0, float(z0) + 0.03, bw, depth * rng.uniform(0.6, 0.9),
                              gap * rng.uniform(0.5, 0.9), carton))
    return Piece("shelving", length, depth, tuple(parts), against_wall=False)


def pillar(rng: np.random.Generator, book: MaterialBook, height: float, mat: str,
           width: float, round_shape: bool, plinth: str | None = None) -> Piece:
    """A pillar or post ``width`` wide (4-30 cm) from the floor to ``height``."""
    if round_shape:
        parts = [_cyl(0.0, 0.0, 0.0, 0.5 * width, height, mat)]
    else:
        parts = [_box(0.0, 0.0, 0.0, width, width, height, mat)]
    reach = width
    if plinth is not None and width >= 0.12:
        pw = width + rng.uniform(0.04, 0.1)
        parts.append(_box(0.0, 0.0, 0.0, pw, pw, rng.uniform(0.08, 0.3), plinth))
        reach = pw
    return Piece("pillar", reach, reach, tuple(parts), against_wall=False)


def bollard(rng: np.random.Generator, book: MaterialBook, mat: str) -> Piece:
    """A short post 0.3-1 m tall, 5-30 cm wide, sometimes with a bright band or cap."""
    h = rng.uniform(0.3, 1.0)
    r = rng.uniform(0.025, 0.15)
    parts = [_cyl(0.0, 0.0, 0.0, r, h, mat)]
    if rng.random() < 0.5:
        parts.append(_cyl(0.0, 0.0, h * rng.uniform(0.6, 0.85), r * 1.03, 0.06,
                          book.bright(rng)))
    return Piece("bollard", 2.06 * r, 2.06 * r, tuple(parts), against_wall=False)


Maker = Callable[[np.random.Generator, MaterialBook], Piece]

MAKERS: dict[str, Maker] = {
    "table": table,
    "dining_set": dining_set,
    "chair": chair,
    "shelf": shelf,
    "cabinet": cabinet,
    "sofa": sofa,
    "bed": bed,
    "crates": crates,
    "bin": bin_or_barrel,
    "plant": plant,
    "lamp": floor_lamp,
    "rug": rug,
    "stool": stool,
    "chair_thin": thin_chair,
    "side_table": side_table,
    "pole": pole,
    "pallet": pallet,
}

# Relative frequencies of each kind per room style; a room draws its style, then its pieces.
ROOM_STYLES: dict[str, dict[str, float]] = {
    "living": {"sofa": 3, "table": 2, "plant": 2, "shelf": 2, "cabinet": 1, "lamp": 1.5,
               "rug": 1.5, "chair": 1, "column": 0.3},
    "bedroom": {"bed": 3, "cabinet": 2, "shelf": 1, "plant": 1, "chair": 1, "lamp": 1,
                "rug": 1, "bin": 0.5},
    "office": {"table": 3, "chair": 2, "shelf": 2, "cabinet": 2, "plant": 1, "bin": 1,
               "dining_set": 0.5, "column": 0.5, "chair_thin": 0.5},
    "dining": {"dining_set": 3, "cabinet": 2, "shelf": 1, "plant": 1.5, "lamp": 1, "rug": 1},
    "storage": {"crates": 4, "bin": 3, "shelf": 3, "cabinet": 1, "column": 1},
    "hall": {"plant": 2, "bin": 1, "cabinet": 1, "shelf": 1, "crates": 0.5, "column": 0.5,
             "pole": 0.3},
    # Many small things on thin legs and poles (see procedural.py: denser than the rooms above).
    "cluttered": {"stool": 2, "chair_thin": 2, "side_table": 2, "lamp": 1.5, "pole": 1.2,
                  "bin": 1.2, "crates": 1.5, "plant": 1.5, "chair": 0.7, "table": 0.6,
                  "shelf": 0.5},
    # Loose pieces around the main structure of the two layout styles (procedural.py).
    "aisles": {"pallet": 2, "crates": 2, "bin": 1, "pole": 0.5},
    "pillar_hall": {"plant": 1.5, "bin": 1, "side_table": 0.7, "stool": 0.5, "pole": 0.5,
                    "crates": 0.5},
}


def make_piece(
    kind: str, rng: np.random.Generator, book: MaterialBook, ceiling: float
) -> Piece:
    if kind == "column":
        return column(rng, book, ceiling)
    return MAKERS[kind](rng, book)
