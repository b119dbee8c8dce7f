"""Procedural indoor scenes: a floor plan, furnished and lit, written as an MJCF string.

``generate_scene(seed)`` is a pure function of the seed: one ``numpy`` PCG64 stream drives every
choice and every number is written with fixed decimals, so a seed always gives the same MJCF
text, byte for byte. What varies between seeds: the plan (2-4 rooms in a grid, an L, or along a
corridor), wall and floor materials per room, furniture style and arrangement per room, windows,
pictures, light colour, brightness and count.

Rendering cost is kept low on purpose (a 128x128 RGB-D frame in about 1.5-2 ms on a CPU with
Mesa llvmpipe): a 512 shadow map, no multisampling, and at most two shadow-casting lights.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from mirage_ros.sim.furniture import ROOM_STYLES, Piece, make_piece
from mirage_ros.sim.layout import FloorPlan, Rect, WallPiece, random_floor_plan
from mirage_ros.sim.materials import MaterialBook
from mirage_ros.sim.mjcf import Part, fmt, write_part

__all__ = ["ProceduralScene", "generate_scene"]

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


def _wall_box(axis: int, coord: float, offset: float, span: tuple[float, float],
              z: tuple[float, float], thickness: float, material: str) -> Part:
    """A slab along a wall line, its centre ``offset`` off the line (signed, towards +y/+x)."""
    mid = 0.5 * (span[0] + span[1])
    centre = (mid, coord + offset) if axis == 0 else (coord + offset, mid)
    return Part("box", (centre[0], centre[1], 0.5 * (z[0] + z[1])),
                (0.5 * (span[1] - span[0]), 0.5 * (z[1] - z[0]), 0.5 * thickness),
                material, _WALL_QUAT[axis])


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
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
            ceiling = book.ceiling(rng)
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
        # One colour temperature for the whole building, varied a little per fixture.
        warmth = rng.uniform(-1.0, 1.0)
        base = np.array([1.0, 0.93 + 0.04 * (1 - warmth), 0.8 + 0.18 * (1 - warmth)])
        base /= base.max()
        brightness = rng.uniform(0.45, 0.8)
        shadow_left = _MAX_SHADOW_LIGHTS
        fixtures = book.emissive((1.0, 0.97, 0.9), 1.0)
        order = sorted(range(len(plan.regions)),
                       key=lambda i: -plan.regions[i].width * plan.regions[i].depth)
        for index in order:
            rect = plan.regions[index]
            count = 2 if rect.width * rect.depth > 28 else 1
            long_x = rect.width >= rect.depth
            for k in range(count):
                f = (k + 0.5) / count
                x = rect.x0 + f * rect.width if long_x else rect.center[0]
                y = rect.center[1] if long_x else rect.y0 + f * rect.depth
                x += rng.uniform(-0.15, 0.15) * rect.width / count
                y += rng.uniform(-0.15, 0.15) * rect.depth / count
                z = plan.wall_height - 0.06
                colour = base * brightness * rng.uniform(0.85, 1.15)
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
                if rng.random() < 0.5:
                    self.parts.append(Part("box", (x, y, plan.wall_height - 0.01),
                                           (0.3, 0.3, 0.01), fixtures))
                else:
                    self.parts.append(Part("cylinder", (x, y, plan.wall_height - 0.015),
                                           (0.22, 0.015), fixtures))

    # ---------------------------------------------------------------- furniture

    def furnish(self, plan: FloorPlan) -> list[str]:
        styles = []
        for index, rect in enumerate(plan.regions):
            if plan.kinds[index] == "corridor":
                style = "hall"
            else:
                names = [s for s in ROOM_STYLES if s != "hall"]
                style = names[int(self.rng.integers(len(names)))]
            styles.append(style)
            self._furnish_region(plan, index, rect, style)
        return styles

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
            if kind != "rug":  # rugs lie under furniture: never in the way of anything
                taken.append(box)
                furnished += piece.width * piece.depth
            self.parts.extend(p.placed(x, y, yaw) for p in piece.parts)

    def _place(
        self, piece: Piece, inner: Rect, taken: list[Rect], plan: FloorPlan, index: int
    ) -> tuple[float, float, float, Rect] | None:
        rng = self.rng
        for _ in range(30):
            if piece.against_wall:
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
                if piece.kind in ("table", "dining_set", "sofa", "bed", "chair"):
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


def _half_extents(piece: Piece, yaw: float) -> tuple[float, float]:
    c, s = abs(math.cos(yaw)), abs(math.sin(yaw))
    return (0.5 * (c * piece.width + s * piece.depth), 0.5 * (s * piece.width + c * piece.depth))


def _overlap(a: Rect, b: Rect, gap: float) -> bool:
    return (a.x0 < b.x1 + gap and b.x0 < a.x1 + gap and a.y0 < b.y1 + gap and b.y0 < a.y1 + gap)


def generate_scene(seed: int) -> ProceduralScene:
    """The scene of ``seed`` (any integer >= 0) as MJCF text plus its floor plan."""
    if seed < 0:
        raise ValueError(f"scene seeds are non-negative integers, got {seed}")
    builder = _Builder(seed)
    rng = builder.rng
    plan = random_floor_plan(rng)
    builder.architecture(plan)
    styles = builder.furnish(plan)
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
    ambient = rng.uniform(0.12, 0.3)
    ET.SubElement(visual, "headlight", {
        "ambient": fmt([ambient] * 3), "diffuse": fmt([rng.uniform(0.05, 0.25)] * 3),
        "specular": "0 0 0"})
    asset = ET.SubElement(root, "asset")
    builder.book.write(asset)
    world = ET.SubElement(root, "worldbody")
    for light in builder.lights:
        ET.SubElement(world, "light", light)
    # Geoms of one material next to each other: renderers switch material state less often.
    order = {name: k for k, name in enumerate(m["name"] for m in builder.book.materials)}
    for part in sorted(builder.parts, key=lambda p: order[p.material]):
        write_part(world, part)
    ET.indent(root, space=" ")
    return ProceduralScene(seed, ET.tostring(root, encoding="unicode") + "\n", plan,
                           tuple(styles))
