"""Procedural indoor scenes: a floor plan, furnished and lit, written as an MJCF string.

``generate_scene(seed)`` is a pure function of the seed: one ``numpy`` PCG64 stream drives every
choice and every number is written with fixed decimals, so a seed always gives the same MJCF
text, byte for byte. What varies between seeds: the plan (2-4 rooms in a grid, an L, or along a
corridor), wall and floor materials per room, furniture style and arrangement per room, windows,
pictures, light colour, brightness and count. On request (``open_roof``) some scenes have no
ceiling: open to a black or gradient sky, sometimes lit by a sun, as many user MJCF files are.

Rendering cost is kept low on purpose (a 128x128 RGB-D frame in about 1.5-2 ms on a CPU with
Mesa llvmpipe): a 512 shadow map, no multisampling, and at most two shadow-casting lights.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import cv2
import numpy as np

from mirage_ros.sim.furniture import (
    ROOM_STYLES,
    Piece,
    bollard,
    make_piece,
    pillar,
    shelving_row,
)
from mirage_ros.sim.layout import FloorPlan, Rect, WallPiece, open_hall_plan, random_floor_plan
from mirage_ros.sim.materials import MaterialBook
from mirage_ros.sim.mjcf import Part, fmt, write_part

__all__ = ["NEW_STYLES", "OLD_STYLES", "STYLES", "ProceduralScene", "generate_scene"]

# Region styles. The old ones furnish a room from ROOM_STYLES' frequencies ("hall" is what a
# corridor gets); the new ones have a layout of their own: rows of warehouse shelving with aisles
# between them, a grid (or, in a corridor, a row) of pillars, poles and bollards, or a room
# crowded with small things on thin legs and poles.
OLD_STYLES = ("living", "bedroom", "office", "dining", "storage", "hall")
NEW_STYLES = ("aisles", "pillar_hall", "cluttered")
STYLES = OLD_STYLES + NEW_STYLES
_ROOM_STYLES = tuple(s for s in OLD_STYLES if s != "hall")
# Unforced scenes: the chance of an open-hall plan, of a new style in an ordinary room, and of
# pillars in a corridor; the style of an open hall.
_P_OPEN_HALL = 0.15
_P_NEW_IN_ROOM = 0.16
_P_PILLAR_CORRIDOR = 0.3
_NEW_ROOM_WEIGHTS = {"aisles": 0.3, "pillar_hall": 0.3, "cluttered": 0.4}
_OPEN_HALL_WEIGHTS = {"aisles": 0.4, "pillar_hall": 0.35, "cluttered": 0.1, "storage": 0.1,
                      "office": 0.05}
# Free width kept along a corridor, and the lanes kept free through cluttered rooms (metres).
_CORRIDOR_FREE = 1.2
_LANE = 0.9
# Past this a region holds too much to render fast on a CPU; pieces are then left out.
_MAX_GEOMS = 600
# Loose pieces in the new styles must leave free space in one piece for a robot that needs this
# much room around it (radius 0.25 m, the tours' 0.12 m margin, some slack), on this raster.
_PASS_CLEARANCE = 0.42
_PASS_RES = 0.05
# Open-roof scenes draw from their own stream (seeded by the scene seed and this tag), so that a
# scene that stays closed is the same, byte for byte, whatever ``open_roof`` is.
_ROOF_STREAM = 0x526F6F66
# Sky colours above an open roof (zenith, horizon): clear day, overcast, dusk.
_SKIES = (((0.30, 0.50, 0.85), (0.75, 0.85, 0.95)), ((0.55, 0.57, 0.60), (0.80, 0.80, 0.82)),
          ((0.15, 0.18, 0.35), (0.85, 0.55, 0.35)))

# Box orientations whose local z is the wall normal, so that 2D textures land on the big faces:
# a wall along x has local axes x -> +x, y -> +z, z -> -y; along y: x -> +y, y -> +z, z -> +x.
_WALL_QUAT = {0: (math.sqrt(0.5), math.sqrt(0.5), 0.0, 0.0), 1: (0.5, 0.5, 0.5, 0.5)}
# Gap kept between furniture pieces, and in front of every doorway (metres).
_PIECE_GAP = 0.1
_DOOR_KEEPOUT = 1.0
# No more of a room's floor than this goes to furniture, so that the robot can move around.
_MAX_FURNISHED = 0.4
_MAX_SHADOW_LIGHTS = 2


@dataclass(frozen=True)
class ProceduralScene:
    seed: int
    mjcf: str
    plan: FloorPlan
    styles: tuple[str, ...]  # per region
    open_roof: bool = False  # no ceiling (see generate_scene)


def _wall_box(axis: int, coord: float, offset: float, span: tuple[float, float],
              z: tuple[float, float], thickness: float, material: str) -> Part:
    """A slab along a wall line, its centre ``offset`` off the line (signed, towards +y/+x)."""
    mid = 0.5 * (span[0] + span[1])
    centre = (mid, coord + offset) if axis == 0 else (coord + offset, mid)
    return Part("box", (centre[0], centre[1], 0.5 * (z[0] + z[1])),
                (0.5 * (span[1] - span[0]), 0.5 * (z[1] - z[0]), 0.5 * thickness),
                material, _WALL_QUAT[axis])


class _Builder:
    def __init__(self, seed: int, open_roof: bool = False) -> None:
        self.rng = np.random.default_rng(seed)
        self.open_roof = open_roof
        self.book = MaterialBook()
        self.parts: list[Part] = []
        self.lights: list[dict[str, str]] = []

    # ---------------------------------------------------------------- architecture

    def architecture(self, plan: FloorPlan) -> None:
        rng, book = self.rng, self.book
        t = plan.wall_thickness
        skirting = book.trim(rng)
        skirting_h = rng.uniform(0.05, 0.1)
        wall_mats = []
        for rect in plan.regions:
            cx, cy = rect.center
            floor = book.floor(rng)
            self.parts.append(Part("box", (cx, cy, -0.05), (0.5 * rect.width, 0.5 * rect.depth,
                                                            0.05), floor))
            ceiling = book.ceiling(rng)  # drawn even when open: the stream stays the same
            if not self.open_roof:
                self.parts.append(Part("box", (cx, cy, plan.wall_height + 0.05),
                                       (0.5 * rect.width, 0.5 * rect.depth, 0.05), ceiling))
            wall_mats.append(book.wall(rng))
        pieces = plan.wall_pieces()
        for piece in pieces:
            mat = wall_mats[piece.region]
            self.parts.append(_wall_box(piece.axis, piece.coord, piece.inward * 0.25 * t,
                                        piece.span, piece.z, 0.5 * t, mat))
            if piece.z[0] == 0.0:
                self.parts.append(_wall_box(
                    piece.axis, piece.coord, piece.inward * (0.5 * t + 0.006),
                    piece.span, (0.0, skirting_h), 0.012, skirting))
        self._door_trims(plan)
        self._wall_decor(plan, pieces)

    def _door_trims(self, plan: FloorPlan) -> None:
        trim = self.book.trim(self.rng)
        t, w = plan.wall_thickness, 0.06
        for door in plan.doorways:
            if door.height >= plan.wall_height:
                continue  # an open passage has no frame
            s0, s1 = door.span
            for side in (-1, 1):
                offset = side * (0.5 * t + 0.008)
                for s in (s0 - 0.5 * w, s1 + 0.5 * w):
                    self.parts.append(_wall_box(door.axis, door.coord, offset,
                                                (s - 0.5 * w, s + 0.5 * w),
                                                (0.0, door.height + w), 0.016, trim))
                self.parts.append(_wall_box(door.axis, door.coord, offset, (s0, s1),
                                            (door.height, door.height + w), 0.016, trim))

    def _wall_decor(self, plan: FloorPlan, pieces: list[WallPiece]) -> None:
        """Windows on outer walls, pictures on inner ones: things to recognise places by."""
        rng, book = self.rng, self.book
        t = plan.wall_thickness
        # Daylight through the glass: bright, but short of blowing out to pure white.
        sky = (rng.uniform(0.55, 0.75), rng.uniform(0.7, 0.85), rng.uniform(0.88, 1.0))
        glass = book.emissive(sky, rng.uniform(0.35, 0.6))
        frame = book.trim(rng)
        for piece in pieces:
            length = piece.span[1] - piece.span[0]
            if piece.z != (0.0, plan.wall_height) or length < 1.4:
                continue
            face = piece.inward * (0.5 * t)
            if piece.exterior and rng.random() < 0.5:
                width = rng.uniform(0.8, min(2.0, length - 0.5))
                s = rng.uniform(piece.span[0] + 0.25 + 0.5 * width,
                                piece.span[1] - 0.25 - 0.5 * width)
                z0, z1 = rng.uniform(0.85, 1.0), min(plan.wall_height - 0.3, rng.uniform(1.9, 2.3))
                span = (s - 0.5 * width, s + 0.5 * width)
                self.parts.append(_wall_box(piece.axis, piece.coord, face + piece.inward * 0.005,
                                            span, (z0, z1), 0.01, glass))
                for zz in (z0, z1):
                    self.parts.append(_wall_box(piece.axis, piece.coord,
                                                face + piece.inward * 0.02, span,
                                                (zz - 0.03, zz + 0.03), 0.04, frame))
                for ss in (*span, s):  # both sides and a mullion in the middle
                    self.parts.append(_wall_box(piece.axis, piece.coord,
                                                face + piece.inward * 0.02,
                                                (ss - 0.03, ss + 0.03), (z0, z1), 0.04, frame))
            elif not piece.exterior and rng.random() < 0.4:
                width, height = rng.uniform(0.3, min(1.2, length - 0.6)), rng.uniform(0.3, 0.9)
                s = rng.uniform(piece.span[0] + 0.3 + 0.5 * width,
                                piece.span[1] - 0.3 - 0.5 * width)
                zc = rng.uniform(1.3, 1.7)
                span, zs = (s - 0.5 * width, s + 0.5 * width), (zc - 0.5 * height,
                                                                 zc + 0.5 * height)
                self.parts.append(_wall_box(piece.axis, piece.coord, face + piece.inward * 0.012,
                                            (span[0] - 0.03, span[1] + 0.03),
                                            (zs[0] - 0.03, zs[1] + 0.03), 0.02, frame))
                self.parts.append(_wall_box(piece.axis, piece.coord, face + piece.inward * 0.024,
                                            span, zs, 0.004, book.art(rng)))

    # ---------------------------------------------------------------- lights

    def lighting(self, plan: FloorPlan) -> None:
        rng, book = self.rng, self.book
        # One colour temperature for the whole building, varied a little per fixture; now and
        # then a tinted light (sodium orange, greenish fluorescent, cold blue-white).
        warmth = rng.uniform(-1.0, 1.0)
        base = np.array([1.0, 0.93 + 0.04 * (1 - warmth), 0.8 + 0.18 * (1 - warmth)])
        if rng.random() < 0.2:
            tints = ((1.0, 0.78, 0.5), (0.88, 1.0, 0.86), (0.82, 0.9, 1.0), (1.0, 0.88, 0.92))
            base = base * np.array(tints[int(rng.integers(len(tints)))])
        base /= base.max()
        # From a dim corridor to a bright shop floor.
        brightness = rng.uniform(0.3, 1.0)
        shadow_left = _MAX_SHADOW_LIGHTS
        fixtures = book.emissive((1.0, 0.97, 0.9), 1.0)
        order = sorted(range(len(plan.regions)),
                       key=lambda i: -plan.regions[i].width * plan.regions[i].depth)
        for index in order:
            rect = plan.regions[index]
            area = rect.width * rect.depth
            count = 3 if area > 70 else 2 if area > 28 else 1
            long_x = rect.width >= rect.depth
            # Each room its own dimmer setting.
            room_level = rng.uniform(0.8, 1.2)
            for k in range(count):
                f = (k + 0.5) / count
                x = rect.x0 + f * rect.width if long_x else rect.center[0]
                y = rect.center[1] if long_x else rect.y0 + f * rect.depth
                x += rng.uniform(-0.15, 0.15) * rect.width / count
                y += rng.uniform(-0.15, 0.15) * rect.depth / count
                z = plan.wall_height - 0.06
                colour = base * brightness * room_level * rng.uniform(0.9, 1.1)
                cast = shadow_left > 0 and rng.random() < 0.8
                shadow_left -= int(cast)
                self.lights.append({
                    "pos": fmt((x, y, z), 4), "dir": "0 0 -1",
                    "diffuse": fmt(np.clip(colour, 0, 1)),
                    "specular": fmt([0.15] * 3), "ambient": fmt(np.clip(colour * 0.12, 0, 1)),
                    "cutoff": fmt([rng.uniform(60.0, 80.0)], 1),
                    "exponent": fmt([rng.uniform(0.5, 3.0)], 2),
                    "castshadow": "true" if cast else "false",
                })
                if self.open_roof:  # a lamp with nothing to hang from: light only
                    rng.random()  # the fixture's draw, kept so the stream stays the same
                elif rng.random() < 0.5:
                    self.parts.append(Part("box", (x, y, plan.wall_height - 0.01),
                                           (0.3, 0.3, 0.01), fixtures))
                else:
                    self.parts.append(Part("cylinder", (x, y, plan.wall_height - 0.015),
                                           (0.22, 0.015), fixtures))

    # ---------------------------------------------------------------- furniture

    def furnish(self, plan: FloorPlan, style: str | None) -> list[str]:
        styles = [self._region_style(plan, index, style) for index in range(len(plan.regions))]
        # Structured regions (shelving, pillars) first: they take the most room and the most
        # geoms; furnished rooms then get what the budget leaves.
        order = sorted(range(len(plan.regions)),
                       key=lambda i: (styles[i] not in ("aisles", "pillar_hall"), i))
        for index in order:
            rect = plan.regions[index]
            if styles[index] == "aisles":
                self._aisles(plan, index, rect)
            elif styles[index] == "pillar_hall":
                self._pillars(plan, index, rect)
            elif styles[index] == "cluttered":
                self._cluttered(plan, index, rect)
            else:
                self._furnish_region(plan, index, rect, styles[index])
        return styles

    def _region_style(self, plan: FloorPlan, index: int, style: str | None) -> str:
        rng = self.rng
        if style is not None:
            return style
        rect = plan.regions[index]
        if plan.kinds[index] == "corridor":
            return "pillar_hall" if rng.random() < _P_PILLAR_CORRIDOR else "hall"
        if rect.width * rect.depth > 45.0:  # the hall of an open-hall plan
            return _pick(rng, _OPEN_HALL_WEIGHTS)
        if rng.random() < _P_NEW_IN_ROOM:
            return _pick(rng, _NEW_ROOM_WEIGHTS)
        return _ROOM_STYLES[int(rng.integers(len(_ROOM_STYLES)))]

    def _add_piece(self, piece: Piece, x: float, y: float, yaw: float) -> bool:
        if len(self.parts) + len(piece.parts) > _MAX_GEOMS:
            return False
        self.parts.extend(p.placed(x, y, yaw) for p in piece.parts)
        return True

    def _scatter(self, plan: FloorPlan, index: int, area: Rect, taken: list[Rect], style: str,
                 count: int, max_area: float, solid: list[Rect]) -> None:
        """Up to ``count`` loose pieces of ``style`` placed at random in ``area``, each only
        where it splits no free space in two (``solid``: what stands in the region so far)."""
        rng = self.rng
        kinds = list(ROOM_STYLES[style])
        weights = np.array([ROOM_STYLES[style][k] for k in kinds], dtype=float)
        used = 0.0
        pieces = _Passability(area, solid)
        for _ in range(count):
            kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
            piece = make_piece(kind, rng, self.book, plan.wall_height)
            if used + piece.width * piece.depth > max_area:
                continue
            placed = self._place(piece, area, taken, plan, index, wall_ok=False)
            if placed is None:
                continue
            x, y, yaw, box = placed
            if not pieces.allows(box):
                continue
            if self._add_piece(piece, x, y, yaw):
                pieces.add(box)
                taken.append(box)
                used += piece.width * piece.depth

    # ---------------------------------------------------------------- new region styles

    def _aisles(self, plan: FloorPlan, index: int, rect: Rect) -> None:
        """Warehouse: parallel rows of open shelving along the long side, aisles between them
        (0.9-1.6 m), cross aisles at the row ends, pallets and crates here and there."""
        rng, book = self.rng, self.book
        inner = rect.inset(0.5 * plan.wall_thickness + 0.015)
        taken = self._keepouts(plan, index)
        along = 0 if inner.width >= inner.depth else 1  # rows run along x (0) or y (1)
        a0, a1 = (inner.x0, inner.x1) if along == 0 else (inner.y0, inner.y1)
        b0, b1 = (inner.y0, inner.y1) if along == 0 else (inner.x0, inner.x1)
        span = b1 - b0
        narrow = plan.kinds[index] == "corridor" or span < 2.8
        height = min(plan.wall_height - 0.35, rng.uniform(1.6, 2.8))
        boards = int(rng.integers(3, 6))
        if rng.random() < 0.5:
            frame = book.metal(rng)
        else:  # racking paint: orange, blue, grey, green
            frame = book.painted(rng)
        board = book.wood_grain(rng) if rng.random() < 0.5 else (
            book.metal(rng) if rng.random() < 0.5 else frame)
        cartons = [book.cardboard(rng) for _ in range(2)]
        fill = rng.uniform(0.3, 0.8)
        rows: list[tuple[float, float]] = []  # (b centre, depth)
        if narrow:
            depth = rng.uniform(0.3, 0.45)
            if span - depth >= _CORRIDOR_FREE:
                side = rng.random() < 0.5
                rows.append((b0 + 0.5 * depth if side else b1 - 0.5 * depth, depth))
            ends = (rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0))
        else:
            double = rng.random() < 0.4
            depth = rng.uniform(0.8, 1.1) if double else rng.uniform(0.4, 0.6)
            aisle = rng.uniform(0.9, 1.6)
            if rng.random() < 0.5:  # outer rows against the walls
                n = int((span + aisle) // (depth + aisle))
                if n == 1:
                    rows.append((0.5 * (b0 + b1), depth))
                elif n > 1:
                    gap = (span - n * depth) / (n - 1)
                    rows += [(b0 + 0.5 * depth + k * (depth + gap), depth) for k in range(n)]
            else:  # aisles along the walls too
                n = int((span - aisle) // (depth + aisle))
                if n >= 1:
                    gap = (span - n * depth) / (n + 1)
                    rows += [(b0 + gap + 0.5 * depth + k * (depth + gap), depth)
                             for k in range(n)]
            ends = (rng.uniform(1.0, 1.5), rng.uniform(1.0, 1.5))
        r0, r1 = a0 + ends[0], a1 - ends[1]
        if r1 - r0 < 1.0:
            rows = []
        # Long rows get a cross aisle in the middle now and then.
        cuts: list[tuple[float, float]] = []
        if not narrow and r1 - r0 > 7.0 and rng.random() < 0.6:
            mid = rng.uniform(r0 + 2.5, r1 - 2.5)
            w = rng.uniform(1.0, 1.5)
            cuts.append((mid - 0.5 * w, mid + 0.5 * w))
        shelves: list[Rect] = []
        for centre, d in rows:
            band = (centre - 0.5 * d, centre + 0.5 * d)
            blocked = list(cuts)
            for zone in taken:
                z_a = (zone.x0, zone.x1) if along == 0 else (zone.y0, zone.y1)
                z_b = (zone.y0, zone.y1) if along == 0 else (zone.x0, zone.x1)
                if z_b[0] < band[1] + _PIECE_GAP and band[0] < z_b[1] + _PIECE_GAP:
                    blocked.append((z_a[0] - _PIECE_GAP, z_a[1] + _PIECE_GAP))
            for s0, s1 in _free_segments((r0, r1), blocked):
                if s1 - s0 < 0.8:
                    continue
                piece = shelving_row(rng, book, s1 - s0, d, height, boards, frame, board,
                                     cartons, fill)
                sc = 0.5 * (s0 + s1)
                x, y, yaw = (sc, centre, 0.0) if along == 0 else (centre, sc, 0.5 * math.pi)
                if self._add_piece(piece, x, y, yaw):
                    box = (Rect(s0, band[0], s1, band[1]) if along == 0
                           else Rect(band[0], s0, band[1], s1))
                    shelves.append(box)
        # Pallets and crates go into the aisles; the cross aisles at the row ends stay free so
        # that every aisle stays reachable.
        reserved = list(taken) + shelves
        for lo, hi in ((a0, r0), (r1, a1), *cuts):
            reserved.append(Rect(lo, b0, hi, b1) if along == 0 else Rect(b0, lo, b1, hi))
        if narrow:
            reserved.append(_strip(along, a0, a1, b0, b1, rows, _CORRIDOR_FREE))
        self._scatter(plan, index, inner, reserved, "aisles", int(rng.integers(1, 4)),
                      max_area=2.5, solid=shelves)

    def _pillars(self, plan: FloorPlan, index: int, rect: Rect) -> None:
        """Pillars, thin poles and bollards: a jittered grid in an open room, a row along the
        walls of a corridor or narrow room; gaps between them are at least 0.9 m."""
        rng, book = self.rng, self.book
        inner = rect.inset(0.5 * plan.wall_thickness + 0.015)
        taken = self._keepouts(plan, index)
        mat = book.painted(rng) if rng.random() < 0.6 else book.trim(rng)
        plinth = book.trim(rng) if rng.random() < 0.3 else None
        round_shape = rng.random() < 0.5
        width = rng.uniform(0.12, 0.3)
        pole_mat = book.metal(rng)
        bollard_mat = book.painted(rng)
        mix = (rng.uniform(0.5, 1.0), rng.uniform(0.0, 0.3))  # full pillars, thin poles; rest
        along = 0 if inner.width >= inner.depth else 1
        a0, a1 = (inner.x0, inner.x1) if along == 0 else (inner.y0, inner.y1)
        b0, b1 = (inner.y0, inner.y1) if along == 0 else (inner.x0, inner.x1)
        spots: list[tuple[float, float, float]] = []  # (a, b, largest width allowed)
        narrow = plan.kinds[index] == "corridor" or b1 - b0 < 3.0
        if narrow:
            both = b1 - b0 - 2 * width >= _CORRIDOR_FREE and rng.random() < 0.5
            w = min(width, b1 - b0 - _CORRIDOR_FREE)
            if w >= 0.04:
                pitch = rng.uniform(1.5, 3.0)
                n = int((a1 - a0 - 0.4) // pitch)
                start = a0 + 0.5 * (a1 - a0 - (n - 1) * pitch) if n else a0
                sides = (0, 1) if both else (int(rng.integers(2)),)
                for k in range(n):
                    a = start + k * pitch
                    for side in sides:
                        spots.append((a, b0 + 0.5 * w if side == 0 else b1 - 0.5 * w, w))
        else:
            reach = width + (0.1 if plinth else 0.0)
            px, py = (rng.uniform(reach + 1.0, max(reach + 1.0, 3.5)) for _ in range(2))
            margin = 0.9 + 0.5 * reach
            nx = int((a1 - a0 - 2 * margin) // px) + 1
            ny = int((b1 - b0 - 2 * margin) // py) + 1
            jitter = rng.uniform(0.0, 0.5)
            ox = a0 + 0.5 * (a1 - a0 - (nx - 1) * px)
            oy = b0 + 0.5 * (b1 - b0 - (ny - 1) * py)
            for i in range(max(nx, 0)):
                for j in range(max(ny, 0)):
                    jx = jitter * (px - reach - 0.9) * rng.uniform(-0.5, 0.5)
                    jy = jitter * (py - reach - 0.9) * rng.uniform(-0.5, 0.5)
                    spots.append((ox + i * px + jx, oy + j * py + jy, reach))
        pillars: list[Rect] = []
        for a, b, w in spots:
            if rng.random() < 0.08:
                continue  # a missing pillar
            kind = rng.random()
            if kind < mix[0] or narrow and w < width:
                piece = pillar(rng, book, plan.wall_height, mat, min(w, width), round_shape,
                               plinth if w >= width else None)
            elif kind < mix[0] + mix[1]:
                piece = pillar(rng, book, plan.wall_height, pole_mat, rng.uniform(0.04, 0.08),
                               True)
            else:
                piece = bollard(rng, book, bollard_mat)
            x, y = (a, b) if along == 0 else (b, a)
            h = 0.5 * piece.width
            box = Rect(x - h, y - h, x + h, y + h)
            if any(_overlap(box, zone, _PIECE_GAP) for zone in taken):
                continue
            if self._add_piece(piece, x, y, 0.0):
                pillars.append(box)
                taken.append(box)
        reserved = list(taken)
        if narrow:
            rows = [(b0 + 0.5 * width, width), (b1 - 0.5 * width, width)]
            reserved.append(_strip(along, a0, a1, b0, b1, rows, _CORRIDOR_FREE))
        area = inner.width * inner.depth
        self._scatter(plan, index, inner, reserved, "pillar_hall",
                      int(rng.integers(0, 2 + int(area // 15))), max_area=0.08 * area,
                      solid=pillars)

    def _cluttered(self, plan: FloorPlan, index: int, rect: Rect) -> None:
        """Many small things (stools, thin chairs, side tables, lamps, poles, bins, boxes,
        plants), denser than a furnished room; lanes from every door to the middle stay free."""
        rng = self.rng
        inner = rect.inset(0.5 * plan.wall_thickness + 0.015)
        taken = self._keepouts(plan, index)
        lanes = self._lanes(plan, index, inner)
        area = inner.width * inner.depth
        if plan.kinds[index] == "corridor" or min(inner.width, inner.depth) < 2.8:
            along = 0 if inner.width >= inner.depth else 1
            a0, a1 = (inner.x0, inner.x1) if along == 0 else (inner.y0, inner.y1)
            b0, b1 = (inner.y0, inner.y1) if along == 0 else (inner.x0, inner.x1)
            keep = _strip(along, a0, a1, b0, b1, [], _CORRIDOR_FREE)
            count = int(rng.integers(2, 6))
            self._scatter(plan, index, inner, taken + [keep], "cluttered", count, 0.3 * area,
                          solid=[])
            return
        count = int(np.clip(round(area / 1.1 * rng.uniform(0.8, 1.2)), 10, 36))
        self._scatter(plan, index, inner, taken + lanes, "cluttered", count, 0.5 * area,
                      solid=[])

    def _lanes(self, plan: FloorPlan, index: int, inner: Rect) -> list[Rect]:
        """Straight lanes from each doorway of the region to its middle (an L: in from the door,
        then along), kept free so that a cluttered room stays passable."""
        cx, cy = inner.center
        h = 0.5 * _LANE
        lanes = []
        for door in plan.doorways:
            if index not in door.regions:
                continue
            dx, dy = door.center
            if door.axis == 0:  # wall along x: go in along y, then along x
                lanes.append(Rect(dx - h, min(dy, cy) - h, dx + h, max(dy, cy) + h))
                lanes.append(Rect(min(dx, cx) - h, cy - h, max(dx, cx) + h, cy + h))
            else:
                lanes.append(Rect(min(dx, cx) - h, dy - h, max(dx, cx) + h, dy + h))
                lanes.append(Rect(cx - h, min(dy, cy) - h, cx + h, max(dy, cy) + h))
        return lanes

    def _keepouts(self, plan: FloorPlan, index: int) -> list[Rect]:
        """Floor in front of each doorway of this region, kept free so doors stay usable."""
        zones = []
        for door in plan.doorways:
            if index not in door.regions:
                continue
            s0, s1 = door.span[0] - 0.3, door.span[1] + 0.3
            c = door.coord
            if door.axis == 0:
                zones.append(Rect(s0, c - _DOOR_KEEPOUT, s1, c + _DOOR_KEEPOUT))
            else:
                zones.append(Rect(c - _DOOR_KEEPOUT, s0, c + _DOOR_KEEPOUT, s1))
        return zones

    def _furnish_region(self, plan: FloorPlan, index: int, rect: Rect, style: str) -> None:
        rng, t = self.rng, plan.wall_thickness
        inner = rect.inset(0.5 * t + 0.015)
        taken: list[Rect] = self._keepouts(plan, index)
        corridor = plan.kinds[index] == "corridor"
        area = inner.width * inner.depth
        if corridor:
            count = int(rng.integers(0, 3))
        else:
            count = int(np.clip(round(area / 4.5 * rng.uniform(0.7, 1.3)), 3, 8))
        kinds = list(ROOM_STYLES[style])
        weights = np.array([ROOM_STYLES[style][k] for k in kinds], dtype=float)
        furnished = 0.0
        for _ in range(count):
            kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
            piece = make_piece(kind, rng, self.book, plan.wall_height)
            if corridor and (not piece.against_wall or piece.depth > 0.45
                             or min(inner.width, inner.depth) - piece.depth < 1.3):
                continue
            if kind != "rug" and furnished + piece.width * piece.depth > _MAX_FURNISHED * area:
                continue
            placed = self._place(piece, inner, taken, plan, index)
            if placed is None:
                continue
            x, y, yaw, box = placed
            if not self._add_piece(piece, x, y, yaw):
                continue
            if kind != "rug":  # rugs lie under furniture: never in the way of anything
                taken.append(box)
                furnished += piece.width * piece.depth

    def _place(
        self, piece: Piece, inner: Rect, taken: list[Rect], plan: FloorPlan, index: int,
        wall_ok: bool = True,
    ) -> tuple[float, float, float, Rect] | None:
        rng = self.rng
        for _ in range(30):
            if piece.against_wall and wall_ok:
                axis, coord, inward, _span = plan.sides(index)[int(rng.integers(4))]
                along = (inner.x0, inner.x1) if axis == 0 else (inner.y0, inner.y1)
                lo, hi = along[0] + 0.5 * piece.width, along[1] - 0.5 * piece.width
                if hi <= lo:
                    continue
                s = rng.uniform(lo, hi)
                n = coord + inward * (0.5 * plan.wall_thickness + 0.015 + 0.5 * piece.depth)
                # Turn the piece so that its back (+y) faces the wall.
                if axis == 0:
                    x, y, yaw = s, n, (0.0 if inward < 0 else math.pi)
                else:
                    x, y, yaw = n, s, inward * 0.5 * math.pi
            else:
                if piece.kind in ("table", "dining_set", "sofa", "bed", "chair", "shelf",
                                  "cabinet", "pallet"):
                    yaw = 0.5 * math.pi * int(rng.integers(4)) + rng.uniform(-0.15, 0.15)
                else:
                    yaw = rng.uniform(-math.pi, math.pi)
                hx, hy = _half_extents(piece, yaw)
                if inner.width <= 2 * hx or inner.depth <= 2 * hy:
                    continue
                x = rng.uniform(inner.x0 + hx, inner.x1 - hx)
                y = rng.uniform(inner.y0 + hy, inner.y1 - hy)
            hx, hy = _half_extents(piece, yaw)
            box = Rect(x - hx, y - hy, x + hx, y + hy)
            inside = (box.x0 >= inner.x0 - 1e-6 and box.x1 <= inner.x1 + 1e-6
                      and box.y0 >= inner.y0 - 1e-6 and box.y1 <= inner.y1 + 1e-6)
            if inside and not any(_overlap(box, other, _PIECE_GAP) for other in taken):
                return x, y, yaw, box
        return None


class _Passability:
    """Free space of one region on a 5 cm raster, for a robot that needs ``_PASS_CLEARANCE``
    from every obstacle: a new piece is allowed only when it splits no part of it in two."""

    def __init__(self, area: Rect, solid: list[Rect]) -> None:
        self.area = area
        rows = max(1, int(math.ceil(area.depth / _PASS_RES)))
        cols = max(1, int(math.ceil(area.width / _PASS_RES)))
        # The area's edges are walls (doorways have free keep-out zones in front of them).
        self.free = np.full((rows, cols), 255, dtype=np.uint8)
        for box in solid:
            self._fill(self.free, box)
        self.parts = self._count(self.free)

    def _fill(self, grid: np.ndarray, box: Rect) -> None:
        a = self.area
        c0 = max(0, int(math.floor((box.x0 - a.x0) / _PASS_RES)))
        c1 = min(grid.shape[1], int(math.ceil((box.x1 - a.x0) / _PASS_RES)))
        r0 = max(0, int(math.floor((box.y0 - a.y0) / _PASS_RES)))
        r1 = min(grid.shape[0], int(math.ceil((box.y1 - a.y0) / _PASS_RES)))
        grid[r0:r1, c0:c1] = 0

    @staticmethod
    def _count(free: np.ndarray) -> int:
        padded = cv2.copyMakeBorder(free, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        dist = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1] * _PASS_RES
        room = ((dist >= _PASS_CLEARANCE) & (free > 0)).astype(np.uint8)
        count, _labels, stats, _ = cv2.connectedComponentsWithStats(room, connectivity=4)
        return int((stats[1:, cv2.CC_STAT_AREA] >= 4).sum())

    def allows(self, box: Rect) -> bool:
        trial = self.free.copy()
        self._fill(trial, box)
        return self._count(trial) <= self.parts

    def add(self, box: Rect) -> None:
        self._fill(self.free, box)
        self.parts = self._count(self.free)


def _open_sky(roof: np.random.Generator, asset: ET.Element, world: ET.Element) -> None:
    """What an open roof shows and lets in: half the time a gradient skybox (its depth is no
    surface; see sim.render), else MuJoCo's black background; a sun now and then."""
    if roof.random() < 0.5:
        zenith, horizon = _SKIES[int(roof.integers(len(_SKIES)))]
        shade = roof.uniform(0.8, 1.1)
        ET.SubElement(asset, "texture", {
            "name": "sky", "type": "skybox", "builtin": "gradient", "width": "64",
            "height": "64", "rgb1": fmt(np.clip(np.array(zenith) * shade, 0, 1)),
            "rgb2": fmt(np.clip(np.array(horizon) * shade, 0, 1))})
    if roof.random() < 0.6:
        yaw, elevation = roof.uniform(0.0, 2 * math.pi), roof.uniform(0.6, 1.3)
        direction = (-math.cos(yaw) * math.cos(elevation), -math.sin(yaw) * math.cos(elevation),
                     -math.sin(elevation))
        level = roof.uniform(0.3, 0.7)
        ET.SubElement(world, "light", {
            "directional": "true", "pos": "0 0 10", "dir": fmt(direction, 4),
            "diffuse": fmt([level, level * 0.97, level * 0.9]), "specular": fmt([0.1] * 3),
            "castshadow": "false"})


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _free_segments(
    span: tuple[float, float], blocked: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """What is left of ``span`` once the ``blocked`` intervals are taken out."""
    segments = [span]
    for lo, hi in blocked:
        out = []
        for s0, s1 in segments:
            if hi <= s0 or lo >= s1:
                out.append((s0, s1))
                continue
            if lo > s0:
                out.append((s0, lo))
            if hi < s1:
                out.append((hi, s1))
        segments = out
    return segments


def _strip(along: int, a0: float, a1: float, b0: float, b1: float,
           rows: list[tuple[float, float]], width: float) -> Rect:
    """A lane ``width`` wide along a narrow region, beside what its ``rows`` (centre, depth
    across the region) take, or in the middle when there are none; kept free of loose pieces."""
    lo, hi = b0, b1
    for centre, depth in rows:
        if centre < 0.5 * (b0 + b1):
            lo = max(lo, centre + 0.5 * depth)
        else:
            hi = min(hi, centre - 0.5 * depth)
    mid = 0.5 * (lo + hi)
    c0, c1 = mid - 0.5 * width, mid + 0.5 * width
    return Rect(a0, c0, a1, c1) if along == 0 else Rect(c0, a0, c1, a1)


def _half_extents(piece: Piece, yaw: float) -> tuple[float, float]:
    c, s = abs(math.cos(yaw)), abs(math.sin(yaw))
    return (0.5 * (c * piece.width + s * piece.depth), 0.5 * (s * piece.width + c * piece.depth))


def _overlap(a: Rect, b: Rect, gap: float) -> bool:
    return (a.x0 < b.x1 + gap and b.x0 < a.x1 + gap and a.y0 < b.y1 + gap and b.y0 < a.y1 + gap)


def generate_scene(seed: int, style: str | None = None, open_roof: float = 0.0
                   ) -> ProceduralScene:
    """The scene of ``seed`` (any integer >= 0) as MJCF text plus its floor plan.

    ``style`` (one of :data:`STYLES`) gives every region of the scene that style, so that data
    and evaluations can be split by kind of scene; by default each region draws its own.
    ``open_roof`` is the chance (0-1) that the scene has no ceiling: the sky above is black or a
    gradient skybox, and a sun may shine in. Whether a seed is open depends on the seed alone
    (for one ``open_roof``), and a closed scene is the same whatever ``open_roof`` is. The MJCF
    text is a pure function of ``(seed, style, open_roof)``.
    """
    if seed < 0:
        raise ValueError(f"scene seeds are non-negative integers, got {seed}")
    if style is not None and style not in STYLES:
        raise ValueError(f"unknown scene style {style!r}; known: {', '.join(STYLES)}")
    if not 0.0 <= open_roof <= 1.0:
        raise ValueError(f"open_roof is a probability in [0, 1], got {open_roof}")
    roof = np.random.default_rng([_ROOF_STREAM, seed])
    is_open = bool(roof.random() < open_roof)
    builder = _Builder(seed, is_open)
    rng = builder.rng
    if style is None:
        p_hall = _P_OPEN_HALL
    else:
        p_hall = 0.5 if style in ("aisles", "pillar_hall") else 0.1
    plan = open_hall_plan(rng) if rng.random() < p_hall else random_floor_plan(rng)
    builder.architecture(plan)
    styles = builder.furnish(plan, style)
    builder.lighting(plan)

    bounds = plan.bounds
    extent = max(bounds.width, bounds.depth, plan.wall_height)
    root = ET.Element("mujoco", {"model": f"mirage_scene_{seed}"})
    ET.SubElement(root, "compiler", {"angle": "radian"})
    ET.SubElement(root, "statistic", {
        "extent": fmt([extent], 2),
        "center": fmt((*bounds.center, 0.5 * plan.wall_height), 3)})
    visual = ET.SubElement(root, "visual")
    ET.SubElement(visual, "global", {"ipd": "0"})
    ET.SubElement(visual, "quality", {"shadowsize": "512", "offsamples": "0"})
    ET.SubElement(visual, "map", {"znear": fmt([0.05 / extent], 5),
                                  "zfar": fmt([100.0 / extent], 3)})
    ambient = rng.uniform(0.08, 0.35)
    ET.SubElement(visual, "headlight", {
        "ambient": fmt([ambient] * 3), "diffuse": fmt([rng.uniform(0.05, 0.25)] * 3),
        "specular": "0 0 0"})
    asset = ET.SubElement(root, "asset")
    builder.book.write(asset)
    world = ET.SubElement(root, "worldbody")
    if is_open:
        _open_sky(roof, asset, world)
    for light in builder.lights:
        ET.SubElement(world, "light", light)
    # Geoms of one material next to each other: renderers switch material state less often.
    order = {name: k for k, name in enumerate(m["name"] for m in builder.book.materials)}
    for part in sorted(builder.parts, key=lambda p: order[p.material]):
        write_part(world, part)
    ET.indent(root, space=" ")
    return ProceduralScene(seed, ET.tostring(root, encoding="unicode") + "\n", plan,
                           tuple(styles), is_open)
