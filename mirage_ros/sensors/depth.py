"""Depth images to metres: one rule for the node and the bag importer.

ROS depth images come in two encodings (REP-118): ``16UC1`` (``mono16`` is the same layout)
holding millimetres as unsigned integers, and ``32FC1`` holding metres as floats. Invalid
pixels are 0 in the first and NaN (sometimes ``inf``, 0 or a negative value from a careless
driver) in the second. Everything downstream (the memory, the episode format) takes one
convention: float32 metres with **0 = invalid**, so this is the only place that knows the others.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["DEPTH_ENCODINGS", "MM_ENCODINGS", "decode_depth"]

MM_ENCODINGS = ("16UC1", "mono16")
METRE_ENCODINGS = ("32FC1",)
DEPTH_ENCODINGS: tuple[str, ...] = MM_ENCODINGS + METRE_ENCODINGS

_MM_TO_M = np.float32(0.001)


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
