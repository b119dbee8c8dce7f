"""The primitive a procedural scene is made of, and how it is written as MJCF text.

Numbers are written with a fixed number of decimals so that a seed always gives the same MJCF
string, byte for byte (and so the same compiled model and the same rendered frames).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Part", "fmt", "yaw_quat", "write_part"]


def fmt(values: Iterable[float], digits: int = 3) -> str:
    """Space-separated decimals with trailing zeros dropped; ``-0`` is written as ``0``."""
    out = []
    for v in values:
        text = f"{v:.{digits}f}".rstrip("0").rstrip(".")
        out.append("0" if text in ("-0", "") else text)
    return " ".join(out)


def yaw_quat(yaw: float) -> tuple[float, float, float, float]:
    """MuJoCo-order ``(w, x, y, z)`` quaternion of a rotation by ``yaw`` about +z."""
    return (math.cos(0.5 * yaw), 0.0, 0.0, math.sin(0.5 * yaw))


def _quat_mul(
    a: tuple[float, float, float, float], b: tuple[float, float, float, float]
) -> tuple[float, float, float, float]:
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return (
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    )


@dataclass(frozen=True)
class Part:
    """One MuJoCo geom: ``shape`` box, cylinder, sphere or ellipsoid; ``size`` in MuJoCo's
    meaning (half extents, or radius and half height); ``pos`` and ``quat`` (w, x, y, z) in the
    frame of whatever holds it (a furniture piece's own frame, or the map)."""

    shape: str
    pos: tuple[float, float, float]
    size: tuple[float, ...]
    material: str
    quat: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)

    def placed(self, x: float, y: float, yaw: float) -> Part:
        """This part after turning its holder by ``yaw`` about z and moving it to ``(x, y)``."""
        c, s = math.cos(yaw), math.sin(yaw)
        px, py, pz = self.pos
        return Part(
            self.shape,
            (x + c * px - s * py, y + s * px + c * py, pz),
            self.size,
            self.material,
            _quat_mul(yaw_quat(yaw), self.quat),
        )


def write_part(parent: ET.Element, part: Part, name: str | None = None) -> ET.Element:
    attrs = {"type": part.shape, "size": fmt(part.size, 4), "pos": fmt(part.pos, 4)}
    if part.quat != (1.0, 0.0, 0.0, 0.0):
        attrs["quat"] = fmt(part.quat, 6)
    attrs["material"] = part.material
    if name is not None:
        attrs = {"name": name, **attrs}
    return ET.SubElement(parent, "geom", attrs)
