"""Depth images to metres: one rule for the node and the bag importer.

ROS depth images come in two encodings (REP-118): ``16UC1`` (``mono16`` is the same layout)
holding millimetres as unsigned integers, and ``32FC1`` holding metres as floats. Invalid
pixels are 0 in the first and NaN (sometimes ``inf``, 0 or a negative value from a careless
driver) in the second. Everything downstream (the memory, the episode format) takes one
convention: float32 metres with **0 = invalid**, so this is the only place that knows the others.

A depth image in the wrong unit decodes without error but is nonsense: metres stored as 16UC1
read as millimetres (a room 2 m deep becomes 2 mm), millimetres stored as 32FC1 read as metres
(2 km). :func:`check_depth_units` catches both by plausibility: the **median of the valid
pixels** must lie within :data:`PLAUSIBLE_MEDIAN_DEPTH` (0.05 m to 200 m). No depth camera
measures a scene whose median is nearer than 5 cm (their minimum ranges are 0.1 to 0.5 m), and
none has half its returns beyond 200 m; an image with no valid pixel passes (nothing seen).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["DEPTH_ENCODINGS", "MM_ENCODINGS", "PLAUSIBLE_MEDIAN_DEPTH", "check_depth_units",
           "decode_depth"]

MM_ENCODINGS = ("16UC1", "mono16")
METRE_ENCODINGS = ("32FC1",)
DEPTH_ENCODINGS: tuple[str, ...] = MM_ENCODINGS + METRE_ENCODINGS

_MM_TO_M = np.float32(0.001)

# Metres: the range the median of a depth image's valid pixels must fall in (see the docstring).
PLAUSIBLE_MEDIAN_DEPTH = (0.05, 200.0)
_MEDIAN_SAMPLES = 1 << 16  # the median is taken over at most this many pixels (a regular grid)


def decode_depth(array: NDArray, encoding: str) -> NDArray:
    """Float32 ``[H, W]`` metres from a decoded depth image; 0 marks invalid pixels.

    ``array`` is the decoded image (``[H, W]`` or ``[H, W, 1]``, as
    :func:`mirage_ros.sensors.image_codec.decode_image` returns it): uint16 millimetres for
    ``16UC1``/``mono16``, float32 metres for ``32FC1``. NaN, ``inf``, negative and zero depths
    all become 0. The result is always a new, writable array (the input may be a read-only view
    of a message). Raises ValueError naming the encoding for any other encoding, and for an array
    whose dtype or shape does not match it.
    """
    if encoding not in DEPTH_ENCODINGS:
        raise ValueError(
            f"unsupported depth encoding {encoding!r}: expected 16UC1 or mono16 (millimetres) "
            f"or 32FC1 (metres)"
        )
    raw = np.asarray(array)
    if raw.ndim == 3 and raw.shape[2] == 1:
        raw = raw[:, :, 0]
    if raw.ndim != 2 or raw.shape[0] == 0 or raw.shape[1] == 0:
        raise ValueError(f"depth image ({encoding}) must be [H, W] with H, W > 0, got {raw.shape}")
    if encoding in MM_ENCODINGS:
        if raw.dtype.kind != "u" or raw.dtype.itemsize != 2:
            raise ValueError(f"depth encoding {encoding} needs uint16 data, got {raw.dtype}")
        # uint16 has no NaN and no negatives; 0 stays 0.
        return raw.astype(np.float32) * _MM_TO_M
    if raw.dtype.kind != "f" or raw.dtype.itemsize != 4:
        raise ValueError(f"depth encoding {encoding} needs float32 data, got {raw.dtype}")
    depth = raw.astype(np.float32)  # a copy, native byte order
    # NaN compares False, so `> 0` alone keeps it out; inf is caught by isfinite.
    depth[~(np.isfinite(depth) & (depth > 0))] = 0.0
    return depth


def check_depth_units(depth_m: NDArray, encoding: str) -> None:
    """ValueError naming the likely cause when a decoded depth image (float32 metres, 0 =
    invalid, as :func:`decode_depth` returns it) is implausible for its ``encoding``: the median
    of its valid pixels lies outside :data:`PLAUSIBLE_MEDIAN_DEPTH`. Cost: one median over at
    most 65536 pixels."""
    depth = np.asarray(depth_m)
    stride = max(1, int(np.ceil(np.sqrt(depth.size / _MEDIAN_SAMPLES))))
    sample = depth[::stride, ::stride] if depth.ndim == 2 else depth.reshape(-1)
    valid = sample[sample > 0]
    if valid.size == 0:
        return
    median = float(np.median(valid))
    lo, hi = PLAUSIBLE_MEDIAN_DEPTH
    if lo <= median <= hi:
        return
    if median > hi:
        cause = "are these millimetres?"
    elif encoding in MM_ENCODINGS:
        cause = "are these metres?"
    else:
        cause = "nearer than any depth camera measures: a wrong unit or garbage data"
    unit = "millimetres" if encoding in MM_ENCODINGS else "metres"
    raise ValueError(
        f"implausible depth image: the median of its valid pixels is {median:.4g} m, outside "
        f"{lo:g}..{hi:g} m ({encoding} depth must be {unit}; {cause})")
