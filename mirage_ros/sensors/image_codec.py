"""Raw image bytes <-> numpy, without ROS: the layout rules of ``sensor_msgs/Image``.

The message-level bridge (:mod:`mirage_ros.ros.image_bridge`) and the rosbag2 importer (whose
messages come from ``rosbags``, not rclpy) both decode through this module, so a frame is read
the same way live and from a recording, and neither tool has to import the other's layer.

An image is described by its fields: ``encoding``, ``height``, ``width``, ``step`` (bytes per
row, padding included), ``is_bigendian`` and ``data`` (any byte buffer: ``bytes``,
``array.array('B')``, a uint8 numpy array, a memoryview).

Every inconsistency (unknown encoding, zero size, ``step`` smaller than a row, ``data`` not
``step * height`` bytes, array/encoding mismatch) raises a ValueError that names the problem:
images come from the network or from files, and the caller drops the frame and counts it.

Layout: arrays are ``[height, width]`` for one-channel encodings and ``[height, width, channels]``
otherwise (cv_bridge's layout), channels in the order the encoding names them (``bgr8`` stays BGR).
Decoded arrays are native-endian: ``is_bigendian`` is honoured and swapped away. Encoded images
are native-endian with unpadded rows (``step = width * channels * itemsize``).

Copies: :func:`decode_image` returns by default a *read-only* array that may view ``data``
(rows are addressed through ``step`` in place, so padding costs nothing; read-only so it can never
write into the source). ``copy=True`` gives an independent, writable, C-contiguous array, needed
whenever the array outlives the buffer or the buffer may be reused. :func:`encode_image` and
:func:`to_rgb8` always return fresh memory.
"""

from __future__ import annotations

import array
import sys
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "RGB_ENCODINGS",
    "SUPPORTED_ENCODINGS",
    "EncodedImage",
    "as_decoded",
    "check_array",
    "decode_image",
    "decode_rgb8",
    "encode_image",
    "encoding_info",
    "to_rgb8",
    "unpack_image",
    "validate_fields",
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

# Encodings :func:`to_rgb8` understands, and the channel indices giving R, G, B.
_RGB_SOURCES: dict[str, tuple[int, int, int]] = {
    "rgb8": (0, 1, 2),
    "rgba8": (0, 1, 2),
    "bgr8": (2, 1, 0),
    "bgra8": (2, 1, 0),
    "mono8": (0, 0, 0),
}
RGB_ENCODINGS: tuple[str, ...] = tuple(_RGB_SOURCES)


class EncodedImage(NamedTuple):
    """The fields of an encoded image, named as in ``sensor_msgs/Image`` (less the header).

    ``data`` is an ``array.array('B')``: the container rclpy stores for ``uint8[]`` without
    another copy, and a byte buffer for any other consumer (``bytes(data)``).
    """

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: array.array


def encoding_info(encoding: str) -> tuple[np.dtype, int]:
    """``(native dtype, channels)`` of a ROS image encoding; ValueError if unsupported."""
    try:
        return _ENCODINGS[encoding]
    except (KeyError, TypeError):
        raise ValueError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        ) from None


def validate_fields(
    encoding: str, height: int, width: int, step: int, nbytes: int
) -> tuple[np.dtype, int]:
    """Check that the fields describe a consistent image of ``nbytes`` bytes of data.

    Returns ``(dtype, channels)`` of the encoding; raises ValueError naming the first problem.
    """
    dtype, channels = encoding_info(encoding)
    if height == 0 or width == 0:
        raise ValueError(f"image has zero size: height={height}, width={width}")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ValueError(
            f"step {step} is smaller than one row of {width} px x {channels} channels x "
            f"{dtype.itemsize} bytes = {row_bytes} ({encoding})"
        )
    expected = step * height
    if nbytes != expected:
        problem = "too short" if nbytes < expected else "too long"
        raise ValueError(
            f"image data {problem}: {nbytes} bytes, expected step x height = "
            f"{step} x {height} = {expected}"
        )
    return dtype, channels


def unpack_image(
    data: Any, height: int, width: int, step: int, dtype: np.dtype, channels: int,
    is_bigendian: bool | int,
) -> NDArray:
    """The strided array over ``data``; converted to native byte order where it is not.

    The layout step of :func:`decode_image`, for callers that already ran
    :func:`validate_fields` (it checks only that ``data`` is a byte buffer large enough).
    The result views ``data`` when the byte order is native and is writable if ``data`` is.
    """
    wire = np.dtype(dtype).newbyteorder(">" if is_bigendian else "<")
    try:
        buffer = np.frombuffer(data, dtype=np.uint8)
    except TypeError as error:
        raise ValueError(f"image data is not a byte buffer: {type(data).__name__}") from error
    # Strides carry the row padding, so no bytes move; step need not be a multiple of itemsize.
    try:
        image = np.ndarray(
            shape=(height, width, channels),
            dtype=wire,
            buffer=buffer,
            strides=(step, channels * wire.itemsize, wire.itemsize),
        )
    except TypeError as error:
        raise ValueError(f"image data does not hold {height} rows of {step} bytes") from error
    if channels == 1:
        image = image[:, :, 0]
    return image if wire.isnative else image.astype(dtype)


def decode_image(
    data: Any, encoding: str, height: int, width: int, step: int,
    is_bigendian: bool | int = False, *, copy: bool = False,
) -> NDArray:
    """Decode raw image bytes to ``[h, w]`` or ``[h, w, c]``, native-endian.

    ``copy=False`` gives a read-only array that may view ``data``; ``copy=True`` an owned,
    writable, C-contiguous one (see the module docstring). Raises ValueError for inconsistent
    fields.
    """
    try:
        nbytes = len(data)
    except TypeError as error:
        raise ValueError(f"image data is not a byte buffer: {type(data).__name__}") from error
    dtype, channels = validate_fields(encoding, height, width, step, nbytes)
    image = unpack_image(data, height, width, step, dtype, channels, is_bigendian)
    return as_decoded(image, copy)


def as_decoded(image: NDArray, copy: bool) -> NDArray:
    """``image`` as :func:`decode_image` hands it out: an owned copy, or read-only as it is."""
    if copy:
        return np.array(image, order="C", copy=True)
    image.flags.writeable = False
    return image


def check_array(image: Any, encoding: str) -> tuple[np.dtype, int]:
    """Check that ``image`` can be encoded as ``encoding`` with no implicit cast.

    Same dtype kind and size (byte order may differ: it is converted on encoding) and the
    channel count of the encoding (one channel may be ``[h, w]`` or ``[h, w, 1]``). Returns
    ``(dtype, channels)``; raises ValueError otherwise.
    """
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
    if image.dtype.kind != dtype.kind or image.dtype.itemsize != dtype.itemsize:
        raise ValueError(f"encoding {encoding} needs dtype {dtype}, got {image.dtype}")
    return dtype, channels


def encode_image(image: NDArray, encoding: str) -> EncodedImage:
    """Encode an array as native-endian, unpadded image fields (always a copy).

    ``image`` must match ``encoding`` as :func:`check_array` says; nothing is cast implicitly.
    """
    dtype, _ = check_array(image, encoding)
    native = np.ascontiguousarray(image, dtype=dtype)
    height, width = native.shape[:2]
    data = array.array("B")
    data.frombytes(native.reshape(-1).view(np.uint8))
    return EncodedImage(
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(sys.byteorder == "big"),
        step=len(data) // height,
        data=data,
    )


def to_rgb8(image: NDArray, encoding: str) -> NDArray:
    """Fresh ``[h, w, 3]`` uint8 RGB array from rgb8, bgr8, rgba8, bgra8 or mono8 input.

    Alpha is dropped, not composited; mono is replicated into all three channels.
    """
    if encoding not in _RGB_SOURCES:
        raise ValueError(
            f"cannot make RGB from encoding {encoding!r}; "
            f"expected one of {', '.join(_RGB_SOURCES)}"
        )
    check_array(image, encoding)
    if image.ndim == 2:
        image = image[:, :, None]
    return np.ascontiguousarray(image[:, :, list(_RGB_SOURCES[encoding])])


def decode_rgb8(
    data: Any, encoding: str, height: int, width: int, step: int, is_bigendian: bool | int = False
) -> NDArray:
    """Decode a colour or mono8 image straight to a fresh ``[h, w, 3]`` uint8 RGB array."""
    return to_rgb8(decode_image(data, encoding, height, width, step, is_bigendian), encoding)
