"""sensor_msgs/Image <-> numpy, validated, without requiring cv_bridge.

The message-level wrapper of :mod:`mirage_ros.sensors.image_codec`, which owns the layout rules
(encodings, ``step``, byte order, validation, copies) and is shared with the rosbag2 importer;
this module adds what needs ROS: building ``sensor_msgs/Image`` messages with their header, and
the real cv_bridge where it works. Messages are duck-typed on ``encoding``, ``height``,
``width``, ``step``, ``is_bigendian`` and ``data``.

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

from mirage_ros.sensors import image_codec
from mirage_ros.sensors.image_codec import SUPPORTED_ENCODINGS, encoding_info, to_rgb8

__all__ = [
    "SUPPORTED_ENCODINGS",
    "encoding_info",
    "imgmsg_to_numpy",
    "imgmsg_to_rgb8",
    "numpy_to_imgmsg",
    "to_rgb8",
]


def _check_message(msg: Image) -> tuple[np.dtype, int]:
    return image_codec.validate_fields(
        msg.encoding, msg.height, msg.width, msg.step, len(msg.data))


def _decode_numpy(msg: Image, dtype: np.dtype, channels: int) -> np.ndarray:
    """Strided view of ``msg.data`` (native byte order), for a message already checked."""
    return image_codec.unpack_image(
        msg.data, msg.height, msg.width, msg.step, dtype, channels, msg.is_bigendian)


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
    return image_codec.as_decoded(image, copy)


def _encode_numpy(image: np.ndarray, encoding: str, header: Header | None) -> Image:
    fields = image_codec.encode_image(image, encoding)
    msg = Image(
        height=fields.height,
        width=fields.width,
        encoding=fields.encoding,
        is_bigendian=fields.is_bigendian,
        step=fields.step,
    )
    # Assigning an array.array stores it as is; it is ours, so no second copy is needed.
    msg.data = fields.data
    if header is not None:
        msg.header = header
    return msg


def numpy_to_imgmsg(image: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """Encode an array as a native-endian, unpadded ``sensor_msgs/Image`` (always a copy).

    ``image`` must match ``encoding`` exactly in dtype kind and size and in channel count (one
    channel may be ``[h, w]`` or ``[h, w, 1]``); nothing is cast implicitly. ``header`` is
    attached as given.
    """
    dtype, _ = image_codec.check_array(image, encoding)
    bridge = _real_bridge()
    if bridge is not None:
        return bridge.cv2_to_imgmsg(np.ascontiguousarray(image, dtype=dtype), encoding, header)
    return _encode_numpy(image, encoding, header)


def imgmsg_to_rgb8(msg: Image) -> np.ndarray:
    """Decode a colour or mono8 ``sensor_msgs/Image`` straight to fresh ``[h, w, 3]`` uint8 RGB."""
    return to_rgb8(imgmsg_to_numpy(msg), msg.encoding)
