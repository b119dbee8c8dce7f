"""Random but plausible surface materials, written as MJCF textures and materials.

Only MuJoCo's builtin procedural textures are used (checker, gradient, flat with marks and noise),
so a scene needs no image files. MuJoCo maps a 2D texture on a box by projecting along the box's
local z axis: it looks right on the faces perpendicular to z and smeared on the others. Floors
and walls are therefore built as boxes whose local z is the face normal (see procedural.py) and
take 2D textures; furniture is seen from every side and mostly takes plain colours (each textured
geom costs a texture switch on CPU renderers; noise on a cube texture is stretched radially
across large faces anyway). A few cheap exceptions: wood grain on flat boards (table tops, shelf
boards, pallets), whose big faces are horizontal, and edged cube textures on cartons.
"""

from __future__ import annotations

import colorsys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np

from mirage_ros.sim.mjcf import fmt as _fmt

__all__ = ["MaterialBook"]


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (r, g, b)


def _shade(rgb: tuple[float, float, float], factor: float) -> tuple[float, float, float]:
    r, g, b = (min(max(c * factor, 0.0), 1.0) for c in rgb)
    return (r, g, b)


@dataclass
class MaterialBook:
    """Collects the textures and materials of one scene; names are ``<kind><n>``."""

    textures: list[dict[str, str]] = field(default_factory=list)
    materials: list[dict[str, str]] = field(default_factory=list)

    def _add(self, kind: str, texture: dict[str, str] | None, **material: str) -> str:
        name = f"{kind}{len(self.materials)}"
        if texture is not None:
            self.textures.append({"name": f"tex_{name}", **texture})
            material["texture"] = f"tex_{name}"
        self.materials.append({"name": name, **material})
        return name

    # ------------------------------------------------------------------ architecture

    def wall(self, rng: np.random.Generator) -> str:
        """Paint, plaster, wallpaper stripes, tiles or bricks."""
        if rng.random() < 0.75:  # pale paint, the usual
            base = _hsv(rng.random(), rng.uniform(0.02, 0.25), rng.uniform(0.7, 0.95))
        else:
            base = _hsv(rng.random(), rng.uniform(0.25, 0.6), rng.uniform(0.45, 0.85))
        style = rng.choice(["plaster", "plaster", "stripes", "tiles", "bricks", "gradient"])
        size = {"width": "64", "height": "64", "type": "2d"}
        if style == "plaster":
            tex = {**size, "builtin": "flat", "rgb1": _fmt(base), "mark": "random",
                   "random": _fmt([rng.uniform(0.03, 0.2)]),
                   "markrgb": _fmt(_shade(base, rng.uniform(0.85, 0.95)))}
            repeat = _fmt([rng.uniform(0.5, 2.0)] * 2)
        elif style == "stripes":
            tex = {**size, "builtin": "checker", "rgb1": _fmt(base),
                   "rgb2": _fmt(_shade(base, rng.uniform(0.8, 0.93)))}
            # A tiny vertical repeat leaves only the horizontal alternation: vertical stripes.
            repeat = _fmt([rng.uniform(2.0, 8.0), 0.001])
        elif style == "tiles":
            tex = {**size, "builtin": "checker", "rgb1": _fmt(base),
                   "rgb2": _fmt(_shade(base, rng.uniform(0.92, 1.0))), "mark": "edge",
                   "markrgb": _fmt(_shade(base, rng.uniform(0.5, 0.8)))}
            repeat = _fmt([rng.uniform(1.5, 4.0)] * 2)
        elif style == "bricks":
            brick = _hsv(rng.uniform(0.0, 0.08), rng.uniform(0.4, 0.7), rng.uniform(0.4, 0.7))
            tex = {**size, "builtin": "checker", "rgb1": _fmt(brick),
                   "rgb2": _fmt(_shade(brick, rng.uniform(0.85, 0.95))), "mark": "edge",
                   "markrgb": _fmt(_shade(base, 0.9))}
            repeat = _fmt([rng.uniform(2.5, 4.0), rng.uniform(6.0, 9.0)])
        else:
            tex = {**size, "builtin": "gradient", "rgb1": _fmt(base),
                   "rgb2": _fmt(_shade(base, rng.uniform(0.7, 0.9)))}
            repeat = _fmt([rng.uniform(0.3, 1.0)] * 2)
        return self._add("wall", tex, texrepeat=repeat, texuniform="true",
                         specular=_fmt([rng.uniform(0.0, 0.2)]), shininess="0.1")

    def floor(self, rng: np.random.Generator) -> str:
        """Wood planks, tiles, carpet or concrete."""
        style = rng.choice(["wood", "wood", "tiles", "carpet", "concrete"])
        size = {"width": "128", "height": "128", "type": "2d"}
        if style == "wood":
            wood = _hsv(rng.uniform(0.05, 0.11), rng.uniform(0.35, 0.7), rng.uniform(0.35, 0.8))
            tex = {**size, "builtin": "checker", "rgb1": _fmt(wood),
                   "rgb2": _fmt(_shade(wood, rng.uniform(0.75, 0.92))), "mark": "random",
                   "random": _fmt([rng.uniform(0.1, 0.3)]),
                   "markrgb": _fmt(_shade(wood, 0.7))}
            # Planks: long along one axis.
            plank = rng.uniform(1.0, 2.0)
            repeat = [plank, plank * rng.uniform(4.0, 7.0)]
            if rng.random() < 0.5:
                repeat.reverse()
            texrepeat = _fmt(repeat)
        elif style == "tiles":
            tile = _hsv(rng.random(), rng.uniform(0.0, 0.3), rng.uniform(0.4, 0.95))
            other = tile if rng.random() < 0.5 else _hsv(
                rng.random(), rng.uniform(0.0, 0.3), rng.uniform(0.2, 0.95))
            tex = {**size, "builtin": "checker", "rgb1": _fmt(tile), "rgb2": _fmt(other),
                   "mark": "edge", "markrgb": _fmt(_shade(tile, rng.uniform(0.4, 0.7)))}
            texrepeat = _fmt([rng.uniform(0.8, 2.5)] * 2)
        elif style == "carpet":
            carpet = _hsv(rng.random(), rng.uniform(0.1, 0.6), rng.uniform(0.25, 0.7))
            tex = {**size, "builtin": "flat", "rgb1": _fmt(carpet), "mark": "random",
                   "random": _fmt([rng.uniform(0.2, 0.5)]),
                   "markrgb": _fmt(_shade(carpet, rng.uniform(0.6, 0.85)))}
            texrepeat = _fmt([rng.uniform(1.0, 3.0)] * 2)
        else:
            grey = rng.uniform(0.4, 0.7)
            tex = {**size, "builtin": "flat", "rgb1": _fmt([grey, grey, grey * 0.97]),
                   "mark": "random", "random": _fmt([rng.uniform(0.05, 0.2)]),
                   "markrgb": _fmt([grey * 0.8] * 3)}
            texrepeat = _fmt([rng.uniform(0.5, 1.5)] * 2)
        return self._add("floor", tex, texrepeat=texrepeat, texuniform="true",
                         specular=_fmt([rng.uniform(0.0, 0.3)]), shininess="0.3")

    def ceiling(self, rng: np.random.Generator) -> str:
        # Ceiling lights point down and leave the ceiling in the dark; real ceilings are lit by
        # what the floor and walls bounce back, which a little emission stands in for.
        v = rng.uniform(0.75, 0.95)
        return self._add("ceiling", None, rgba=_fmt([v, v, v * rng.uniform(0.95, 1.0), 1.0]),
                         emission=_fmt([rng.uniform(0.15, 0.35)]), specular="0")

    # ------------------------------------------------------------------ furniture and props

    def wood(self, rng: np.random.Generator) -> str:
        rgb = _hsv(rng.uniform(0.04, 0.12), rng.uniform(0.3, 0.75), rng.uniform(0.2, 0.85))
        return self._solid("wood", rgb, rng, specular=rng.uniform(0.1, 0.4))

    def fabric(self, rng: np.random.Generator) -> str:
        rgb = _hsv(rng.random(), rng.uniform(0.15, 0.8), rng.uniform(0.2, 0.8))
        return self._solid("fabric", rgb, rng, specular=0.0)

    def linen(self, rng: np.random.Generator) -> str:
        v = rng.uniform(0.8, 0.97)
        return self._add("linen", None, rgba=_fmt([v, v, v * rng.uniform(0.93, 1.0), 1.0]),
                         specular="0")

    def art(self, rng: np.random.Generator) -> str:
        """Abstract pictures: a 2D gradient or checker between two random colours."""
        a = _hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.95))
        b = _hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.95))
        tex = {"type": "2d", "builtin": str(rng.choice(["gradient", "checker"])),
               "rgb1": _fmt(a), "rgb2": _fmt(b), "width": "32", "height": "32"}
        return self._add("art", tex, texrepeat=_fmt([rng.uniform(0.5, 3.0)] * 2),
                         texuniform="true", specular="0.1")

    def painted(self, rng: np.random.Generator) -> str:
        """Lacquered or painted furniture: white, black, greys or a bold colour."""
        if rng.random() < 0.6:
            v = float(rng.choice([rng.uniform(0.05, 0.2), rng.uniform(0.5, 0.95)]))
            rgb = _hsv(rng.random(), rng.uniform(0.0, 0.08), v)
        else:
            rgb = _hsv(rng.random(), rng.uniform(0.4, 0.9), rng.uniform(0.4, 0.9))
        return self._solid("painted", rgb, rng, specular=rng.uniform(0.2, 0.6))

    def trim(self, rng: np.random.Generator) -> str:
        """Skirting boards, door and window frames: white, grey, black or wood."""
        if rng.random() < 0.3:
            return self.wood(rng)
        v = float(rng.choice([rng.uniform(0.05, 0.25), rng.uniform(0.4, 0.6),
                              rng.uniform(0.8, 0.97)]))
        return self._solid("trim", _hsv(rng.random(), rng.uniform(0.0, 0.06), v), rng,
                           specular=rng.uniform(0.2, 0.5))

    def metal(self, rng: np.random.Generator) -> str:
        v = rng.uniform(0.3, 0.8)
        return self._add("metal", None, rgba=_fmt([v, v, v * rng.uniform(0.95, 1.05), 1.0]),
                         specular=_fmt([rng.uniform(0.5, 0.9)]),
                         shininess=_fmt([rng.uniform(0.5, 0.9)]))

    def foliage(self, rng: np.random.Generator) -> str:
        rgb = _hsv(rng.uniform(0.22, 0.38), rng.uniform(0.4, 0.8), rng.uniform(0.25, 0.6))
        return self._add("foliage", None, rgba=_fmt([*rgb, 1.0]), specular="0.1")

    def bright(self, rng: np.random.Generator) -> str:
        """Saturated accents: book spines, pictures, toys."""
        rgb = _hsv(rng.random(), rng.uniform(0.4, 0.95), rng.uniform(0.35, 0.95))
        return self._add("bright", None, rgba=_fmt([*rgb, 1.0]),
                         specular=_fmt([rng.uniform(0.0, 0.4)]))

    def wood_grain(self, rng: np.random.Generator) -> str:
        """Textured wood for flat boards (table tops, shelf boards, pallets): a 2D plank texture
        that lands on the big horizontal faces (boxes' local z is up)."""
        wood = _hsv(rng.uniform(0.05, 0.12), rng.uniform(0.3, 0.7), rng.uniform(0.35, 0.85))
        tex = {"type": "2d", "width": "32", "height": "32", "builtin": "checker",
               "rgb1": _fmt(wood), "rgb2": _fmt(_shade(wood, rng.uniform(0.75, 0.92))),
               "mark": "random", "random": _fmt([rng.uniform(0.1, 0.3)]),
               "markrgb": _fmt(_shade(wood, 0.7))}
        plank = rng.uniform(2.0, 5.0)
        return self._add("grain", tex, texrepeat=_fmt([plank, plank * rng.uniform(0.1, 0.3)]),
                         texuniform="true", specular=_fmt([rng.uniform(0.1, 0.3)]),
                         shininess="0.3")

    def cardboard(self, rng: np.random.Generator) -> str:
        """Boxes and cartons: a cube texture with dark edges, so every face reads as a box."""
        rgb = _hsv(rng.uniform(0.07, 0.11), rng.uniform(0.35, 0.6), rng.uniform(0.45, 0.8))
        if rng.random() < 0.25:  # white or coloured cartons now and then
            rgb = _hsv(rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.6, 0.95))
        tex = {"type": "cube", "width": "32", "height": "32", "builtin": "flat",
               "rgb1": _fmt(rgb), "mark": "edge", "markrgb": _fmt(_shade(rgb, 0.55))}
        return self._add("carton", tex, specular="0.05")

    def emissive(self, rgb: tuple[float, float, float], strength: float) -> str:
        """Light fixtures and windows: they glow, whatever lights them."""
        return self._add("glow", None, rgba=_fmt([*rgb, 1.0]), emission=_fmt([strength]),
                         specular="0")

    def _solid(
        self, kind: str, rgb: tuple[float, float, float], rng: np.random.Generator,
        specular: float,
    ) -> str:
        # Plain colours: at 128 x 128 a furniture texture is a few pixels of noise, while every
        # textured material costs the CPU renderer a texture switch per geom.
        return self._add(kind, None, rgba=_fmt([*rgb, 1.0]), specular=_fmt([specular]),
                         shininess=_fmt([rng.uniform(0.1, 0.6)]))

    def write(self, asset: ET.Element) -> None:
        for tex in self.textures:
            ET.SubElement(asset, "texture", tex)
        for mat in self.materials:
            ET.SubElement(asset, "material", mat)
