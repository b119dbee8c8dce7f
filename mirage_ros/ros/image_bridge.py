"""sensor_msgs/Image <-> numpy, validated, without requiring cv_bridge.

Images arrive from the network, so every inconsistency (unknown encoding, zero size, ``step``
smaller than a row, ``data`` not ``step * height`` bytes, array/encoding mismatch) raises a
ValueError that names the problem; callers log it and drop the frame.

Layout: arrays are ``[height, width]`` for one-channel encodings and ``[height, width, channels]``
otherwise (cv_bridge's layout), channels in the order the encoding names them (``bgr8`` stays BGR).
Decoded arrays are always native-endian: ``is_bigendian`` is honoured and swapped away. Encoded
messages are native-endian with unpadded rows (``step = width * channels * itemsize``).

Copies: :func:`imgmsg_to_numpy` by default returns a *read-only* array that may be a view of
``msg.data`` (as C++ ``cv_bridge::toCvShare`` does): rows are addressed through ``step`` in place,
so padded rows cost nothing, and being read-only it can never write into the message. It aliases
the message, though: it sees later in-place edits of ``msg.data``, and ``msg.data`` cannot be
resized while the array lives. Pass ``copy=True`` for an independent, writable, C-contiguous array
(``toCvCopy``) whenever the array outlives the message or the message may be reused.
:func:`numpy_to_imgmsg` always copies, so the caller may keep reusing its array after publishing.
:func:`to_rgb8` always returns a fresh array, since the encoder wants contiguous writable memory.

cv_bridge: when the real ROS 2 ``cv_bridge`` is importable and passes a functional probe (PyPI's
``cv-bridge`` is a ROS 1 port that ignores ``step``; the probe rejects it), conversions go through
it for the layouts it handles; both paths give identical arrays and messages.
"""

from __future__ import annotations

import array
import functools
import sys
from typing import Any

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

__all__ = [
    "SUPPORTED_ENCODINGS",
    "encoding_info",
    "imgmsg_to_numpy",
    "imgmsg_to_rgb8",
    "numpy_to_imgmsg",
    "to_rgb8",
]


def _build_table() -> dict[str, tuple[np.dtype, int]]:
    table: dict[str, tuple[np.dtype, int]] = {}
    for bits, dtype in ((8, np.uint8), (16, np.uint16)):
        for name, channels in (("rgb", 3), ("bgr", 3), ("rgba", 4), ("bgra", 4), ("mono", 1)):
            table[f"{name}{bits}"] = (np.dtype(dtype), channels)
        for pattern in ("rggb", "bggr", "gbrg", "grbg"):
            table[f"bayer_{pattern}{bits}"] = (np.dtype(dtype), 1)
    # OpenCV-style generic encodings, e.g. 16UC1 (depth in mm) and 32FC1 (depth in m).
    for depth, dtype in (
        ("8U", np.uint8), ("8S", np.int8), ("16U", np.uint16), ("16S", np.int16),
        ("32S", np.int32), ("32F", np.float32), ("64F", np.float64),
    ):
        for channels in (1, 2, 3, 4):
            table[f"{depth}C{channels}"] = (np.dtype(dtype), channels)
    return table


_ENCODINGS = _build_table()
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(sorted(_ENCODINGS))

# Encodings the encoder input helper understands, and the channel indices giving R, G, B.
_RGB_SOURCES: dict[str, tuple[int, int, int]] = {
    "rgb8": (0, 1, 2),
    "rgba8": (0, 1, 2),
    "bgr8": (2, 1, 0),
    "bgra8": (2, 1, 0),
    "mono8": (0, 0, 0),
}


def encoding_info(encoding: str) -> tuple[np.dtype, int]:
    """``(native dtype, channels)`` of a ROS image encoding; ValueError if unsupported."""
    try:
        return _ENCODINGS[encoding]
    except (KeyError, TypeError):
        raise ValueError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        ) from None


def _check_message(msg: Image) -> tuple[np.dtype, int]:
    dtype, channels = encoding_info(msg.encoding)
    if msg.height == 0 or msg.width == 0:
        raise ValueError(f"image has zero size: height={msg.height}, width={msg.width}")
    row_bytes = msg.width * channels * dtype.itemsize
    if msg.step < row_bytes:
        raise ValueError(
            f"step {msg.step} is smaller than one row of {msg.width} px x {channels} channels x "
            f"{dtype.itemsize} bytes = {row_bytes} ({msg.encoding})"
        )
    expected = msg.step * msg.height
    if len(msg.data) != expected:
        problem = "too short" if len(msg.data) < expected else "too long"
        raise ValueError(
            f"image data {problem}: {len(msg.data)} bytes, expected step x height = "
            f"{msg.step} x {msg.height} = {expected}"
        )
    return dtype, channels


def _check_array(image: np.ndarray, encoding: str) -> tuple[np.dtype, int]:
    dtype, channels = encoding_info(encoding)
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected a numpy array, got {type(image).__name__}")
    shape_ok = image.ndim == 3 and image.shape[2] == channels
    if channels == 1:
        shape_ok = shape_ok or image.ndim == 2
    if not shape_ok:
        layout = "[h, w] or [h, w, 1]" if channels == 1 else f"[h, w, {channels}]"
        raise ValueError(f"encoding {encoding} needs shape {layout}, got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image has zero size: shape {image.shape}")
    # Byte order is not part of the match: non-native input is converted on the way out.
    if image.dtype.kind != dtype.kind or image.dtype.itemsize != dtype.itemsize:
        raise ValueError(f"encoding {encoding} needs dtype {dtype}, got {image.dtype}")
    return dtype, channels


def _finish(image: np.ndarray, copy: bool) -> np.ndarray:
    if copy:
        return np.array(image, order="C", copy=True)
    image.flags.writeable = False
    return image


def _decode_numpy(msg: Image, dtype: np.dtype, channels: int) -> np.ndarray:
    """Strided view of ``msg.data``, converted to native byte order where it is not."""
    wire = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    try:
        buffer = np.frombuffer(msg.data, dtype=np.uint8)
    except TypeError as error:
        raise ValueError(f"image data is not a byte buffer: {type(msg.data).__name__}") from error
    # Strides carry the row padding, so no bytes move; step need not be a multiple of itemsize.
    image = np.ndarray(
        shape=(msg.height, msg.width, channels),
        dtype=wire,
        buffer=buffer,
        strides=(msg.step, channels * dtype.itemsize, dtype.itemsize),
    )
    if channels == 1:
        image = image[:, :, 0]
    return image if wire.isnative else image.astype(dtype)


def _probe_bridge(bridge: Any) -> bool:
    """True if ``bridge`` round-trips 16UC1 values above 255 and honours a padded ``step``."""
    expected = np.array([[0, 1, 300, 65535, 4097], [2, 513, 7, 40000, 9]], dtype=np.uint16)
    padded = _encode_numpy(expected, "16UC1", None)
    padded.step += 6  # 3 pixels of padding per row, written below as a marker value
    rows = padded.data.tobytes()
    marker = np.full(3, 0xBEEF, dtype=np.uint16).tobytes()
    padded.data = array.array("B", rows[:10] + marker + rows[10:] + marker)
    try:
        msg = bridge.cv2_to_imgmsg(expected, "16UC1")
        round_trip = np.asarray(bridge.imgmsg_to_cv2(msg, "passthrough"))
        from_padded = np.asarray(bridge.imgmsg_to_cv2(padded, "passthrough"))
    # A broken third-party bridge can fail in any way; each one just means "do not use it".
    except Exception:
        return False
    return all(
        a.dtype == expected.dtype and a.shape == expected.shape and np.array_equal(a, expected)
        for a in (round_trip, from_padded)
    ) and bytes(msg.data) == expected.tobytes()


@functools.cache
def _real_bridge() -> Any | None:
    """The real ROS 2 CvBridge if it is importable and works, else None (checked once)."""
    try:
        from cv_bridge import CvBridge

        bridge = CvBridge()
    # Importing a foreign or broken cv_bridge can raise anything, not only ImportError.
    except Exception:
        return None
    return bridge if _probe_bridge(bridge) else None


def _bridge_handles(msg: Image, dtype: np.dtype, channels: int) -> bool:
    # cv_bridge derives the row length as step // pixel size and casts byte order with APIs that
    # differ between numpy versions, so it gets only native-endian, whole-pixel-stride layouts.
    host_big = sys.byteorder == "big"
    native = dtype.itemsize == 1 or bool(msg.is_bigendian) == host_big
    return native and msg.step % (channels * dtype.itemsize) == 0


def imgmsg_to_numpy(msg: Image, *, copy: bool = False) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` to ``[h, w]`` or ``[h, w, c]``, native-endian.

    ``copy=False`` gives a read-only array that may view ``msg.data``; ``copy=True`` an owned,
    writable one (see the module docstring). Raises ValueError for inconsistent messages.
    """
    dtype, channels = _check_message(msg)
    bridge = _real_bridge()
    if bridge is not None and _bridge_handles(msg, dtype, channels):
        image = np.asarray(bridge.imgmsg_to_cv2(msg, "passthrough"))
        if channels == 1 and image.ndim == 3:
            image = image[:, :, 0]
    else:
        image = _decode_numpy(msg, dtype, channels)
    return _finish(image, copy)


def _encode_numpy(image: np.ndarray, encoding: str, header: Header | None) -> Image:
    height, width = image.shape[:2]
    data = array.array("B")
    data.frombytes(image.reshape(-1).view(np.uint8))
    msg = Image(
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(sys.byteorder == "big"),
        step=len(data) // height,
    )
    # Assigning an array.array stores it as is; it is ours, so no second copy is needed.
    msg.data = data
    if header is not None:
        msg.header = header
    return msg


def numpy_to_imgmsg(image: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """Encode an array as a native-endian, unpadded ``sensor_msgs/Image`` (always a copy).

    ``image`` must match ``encoding`` exactly in dtype kind and size and in channel count (one
    channel may be ``[h, w]`` or ``[h, w, 1]``); nothing is cast implicitly. ``header`` is
    attached as given.
    """
    dtype, _ = _check_array(image, encoding)
    native = np.ascontiguousarray(image, dtype=dtype)
    bridge = _real_bridge()
    if bridge is not None:
        return bridge.cv2_to_imgmsg(native, encoding, header)
    return _encode_numpy(native, encoding, header)


def to_rgb8(image: np.ndarray, encoding: str) -> np.ndarray:
    """Fresh ``[h, w, 3]`` uint8 RGB array from rgb8, bgr8, rgba8, bgra8 or mono8 input.

    Alpha is dropped, not composited; mono is replicated into all three channels.
    """
    if encoding not in _RGB_SOURCES:
        raise ValueError(
            f"cannot make RGB from encoding {encoding!r}; "
            f"expected one of {', '.join(_RGB_SOURCES)}"
        )
    _check_array(image, encoding)
    if image.ndim == 2:
        image = image[:, :, None]
    return np.ascontiguousarray(image[:, :, list(_RGB_SOURCES[encoding])])


def imgmsg_to_rgb8(msg: Image) -> np.ndarray:
    """Decode a colour or mono8 ``sensor_msgs/Image`` straight to fresh ``[h, w, 3]`` uint8 RGB."""
    return to_rgb8(imgmsg_to_numpy(msg), msg.encoding)
