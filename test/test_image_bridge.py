"""Tests for mirage_ros.ros.image_bridge with real sensor_msgs/Image messages."""

from types import SimpleNamespace

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from hypothesis import given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from mirage_ros.ros import image_bridge
from mirage_ros.ros.image_bridge import (
    SUPPORTED_ENCODINGS,
    encoding_info,
    imgmsg_to_numpy,
    imgmsg_to_rgb8,
    numpy_to_imgmsg,
    to_rgb8,
)

LISTED = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "16UC1", "32FC1"]
EXTRA = ["rgb16", "bgra16", "8SC1", "16SC1", "32SC1", "64FC1", "16UC3", "32FC4", "bayer_rggb8"]


def random_image(encoding: str, height: int = 5, width: int = 7, seed: int = 0) -> np.ndarray:
    dtype, channels = encoding_info(encoding)
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype.kind == "f":
        return rng.normal(scale=100.0, size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def hand_built(
    wire: np.ndarray, encoding: str, pad: int = 0, big_endian: bool = False
) -> Image:
    """Message whose rows are ``wire``'s bytes (in ``wire``'s own byte order) + ``pad`` bytes."""
    rows = b"".join(row.tobytes() + b"\xab" * pad for row in wire)
    height, width = wire.shape[:2]
    return Image(
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(big_endian),
        step=len(rows) // height,
        data=rows,
    )


# --- encoding table -----------------------------------------------------------------------------


def test_encoding_info_literals():
    assert encoding_info("rgb8") == (np.dtype(np.uint8), 3)
    assert encoding_info("bgra8") == (np.dtype(np.uint8), 4)
    assert encoding_info("mono8") == (np.dtype(np.uint8), 1)
    assert encoding_info("mono16") == (np.dtype(np.uint16), 1)
    assert encoding_info("16UC1") == (np.dtype(np.uint16), 1)
    assert encoding_info("32FC1") == (np.dtype(np.float32), 1)
    assert encoding_info("64FC3") == (np.dtype(np.float64), 3)
    assert set(LISTED + EXTRA) <= set(SUPPORTED_ENCODINGS)
    with pytest.raises(ValueError, match="unsupported image encoding 'rgb9'"):
        encoding_info("rgb9")


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", LISTED + EXTRA)
def test_round_trip_odd_size(encoding: str):
    image = random_image(encoding, height=5, width=7)
    header = Header(frame_id="camera_optical", stamp=Time(sec=3, nanosec=4))
    msg = numpy_to_imgmsg(image, encoding, header)
    dtype, channels = encoding_info(encoding)
    assert (msg.height, msg.width, msg.encoding) == (5, 7, encoding)
    assert msg.step == 7 * channels * dtype.itemsize
    assert len(msg.data) == msg.step * 5
    assert msg.is_bigendian == 0
    assert msg.header.frame_id == "camera_optical" and msg.header.stamp.nanosec == 4
    back = imgmsg_to_numpy(msg)
    assert back.dtype == dtype and back.dtype.isnative
    assert back.shape == image.shape
    np.testing.assert_array_equal(back, image)


def test_single_channel_accepts_trailing_axis():
    image = random_image("16UC1")
    msg = numpy_to_imgmsg(image[:, :, None], "16UC1")
    np.testing.assert_array_equal(imgmsg_to_numpy(msg), image)


def test_encode_converts_non_native_input_to_native_message():
    image = random_image("16UC1")
    msg = numpy_to_imgmsg(image.astype(">u2"), "16UC1")
    assert msg.is_bigendian == 0
    np.testing.assert_array_equal(imgmsg_to_numpy(msg), image)


def test_encode_copies_and_decode_is_read_only_view_by_default():
    image = random_image("mono8")
    msg = numpy_to_imgmsg(image, "mono8")
    image[0, 0] ^= 0xFF  # the caller reusing its buffer must not change the message
    assert msg.data[0] != image[0, 0]

    view = imgmsg_to_numpy(msg)
    owned = imgmsg_to_numpy(msg, copy=True)
    assert not view.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        view[0, 0] = 1
    assert owned.flags.writeable and owned.flags.c_contiguous
    assert not np.shares_memory(owned, np.frombuffer(msg.data, np.uint8))
    msg.data[0] ^= 0xFF
    assert view[0, 0] == msg.data[0]  # documented: the default shares the message's bytes
    assert owned[0, 0] != msg.data[0]


# --- padded step and byte order -----------------------------------------------------------------


def test_padded_16uc1_hand_built():
    # 3 px x 2 bytes = 6 bytes per row, step 8: two bytes of 0xab padding per row.
    expected = np.array([[1, 300, 65535], [4660, 0, 7]], dtype=np.uint16)
    msg = hand_built(expected.astype("<u2"), "16UC1", pad=2)
    assert msg.step == 8 and len(msg.data) == 16
    np.testing.assert_array_equal(imgmsg_to_numpy(msg), expected)


@pytest.mark.parametrize("pad", [1, 3, 5])
@pytest.mark.parametrize("encoding", ["rgb8", "bgra8", "mono16", "32FC1", "64FC1"])
def test_padded_step_including_non_multiples_of_pixel_size(encoding: str, pad: int):
    image = random_image(encoding, height=5, width=7, seed=pad)
    msg = hand_built(image, encoding, pad=pad)
    out = imgmsg_to_numpy(msg)
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(imgmsg_to_numpy(msg, copy=True), image)


def test_big_endian_16uc1_hand_built():
    # Bytes written out literally, most significant first: 1 = 00 01, 256 = 01 00,
    # 65535 = ff ff, 258 = 01 02, 4660 = 12 34, 0 = 00 00.
    data = b"\x00\x01\x01\x00\xff\xff" + b"\x01\x02\x12\x34\x00\x00"
    msg = Image(height=2, width=3, encoding="16UC1", is_bigendian=1, step=6, data=data)
    out = imgmsg_to_numpy(msg)
    assert out.dtype == np.dtype(np.uint16) and out.dtype.isnative
    np.testing.assert_array_equal(out, [[1, 256, 65535], [258, 4660, 0]])
    # numpy's '>u2' writes the same bytes, which is how the other tests build big-endian data.
    assert np.array([[1, 256, 65535], [258, 4660, 0]], ">u2").tobytes() == data
    # Read as little-endian, 258 = 01 02 would be 0x0201.
    msg.is_bigendian = 0
    assert imgmsg_to_numpy(msg)[1, 0] == 0x0201


@pytest.mark.parametrize("encoding", ["16UC1", "mono16", "32FC1", "rgb16", "64FC1", "32SC1"])
def test_big_endian_with_padding(encoding: str):
    image = random_image(encoding, seed=7)
    msg = hand_built(image.astype(image.dtype.newbyteorder(">")), encoding, pad=3, big_endian=True)
    out = imgmsg_to_numpy(msg)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, image)


def test_big_endian_flag_is_irrelevant_for_bytes():
    image = random_image("rgb8")
    msg = hand_built(image, "rgb8", big_endian=True)
    np.testing.assert_array_equal(imgmsg_to_numpy(msg), image)


@settings(max_examples=150, deadline=None)
@given(
    encoding=st.sampled_from(LISTED + EXTRA),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    pad=st.integers(0, 9),
    big_endian=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_hand_built_messages_decode(encoding, height, width, pad, big_endian, seed):
    image = random_image(encoding, height, width, seed)
    wire = image.astype(image.dtype.newbyteorder(">" if big_endian else "<"))
    out = imgmsg_to_numpy(hand_built(wire, encoding, pad=pad, big_endian=big_endian))
    assert out.dtype.isnative and out.shape == image.shape
    np.testing.assert_array_equal(out, image)


# --- malformed input ----------------------------------------------------------------------------


def valid_rgb8() -> Image:
    return hand_built(random_image("rgb8"), "rgb8", pad=1)  # 5 rows, step 22, 110 bytes


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"encoding": "rgb9"}, "unsupported image encoding 'rgb9'"),
        ({"encoding": ""}, "unsupported image encoding ''"),
        ({"height": 0}, "zero size: height=0, width=7"),
        ({"width": 0}, "zero size: height=5, width=0"),
        ({"step": 20}, r"step 20 is smaller than one row .* = 21 \(rgb8\)"),
        ({"data": bytes(109)}, r"too short: 109 bytes, expected step x height = 22 x 5 = 110"),
        ({"data": bytes(111)}, r"too long: 111 bytes, expected .* = 110"),
        ({"data": b""}, "too short: 0 bytes"),
        ({"height": 6}, r"too short: 110 bytes, expected step x height = 22 x 6 = 132"),
    ],
)
def test_malformed_messages_raise_value_error(change: dict, message: str):
    msg = valid_rgb8()
    for field, value in change.items():
        setattr(msg, field, value)
    with pytest.raises(ValueError, match=message):
        imgmsg_to_numpy(msg)


def test_malformed_arrays_raise_value_error():
    with pytest.raises(ValueError, match=r"needs dtype float32, got float64"):
        numpy_to_imgmsg(np.zeros((2, 3)), "32FC1")
    with pytest.raises(ValueError, match=r"needs dtype uint16, got int16"):
        numpy_to_imgmsg(np.zeros((2, 3), np.int16), "16UC1")
    with pytest.raises(ValueError, match=r"mono8 needs shape \[h, w\] or \[h, w, 1\]"):
        numpy_to_imgmsg(np.zeros((2, 3, 3), np.uint8), "mono8")
    with pytest.raises(ValueError, match=r"rgba8 needs shape \[h, w, 4\], got \(2, 3, 3\)"):
        numpy_to_imgmsg(np.zeros((2, 3, 3), np.uint8), "rgba8")
    with pytest.raises(ValueError, match="zero size"):
        numpy_to_imgmsg(np.zeros((0, 3, 3), np.uint8), "rgb8")
    with pytest.raises(ValueError, match="expected a numpy array, got list"):
        numpy_to_imgmsg([[1, 2]], "mono8")
    with pytest.raises(ValueError, match="unsupported image encoding"):
        numpy_to_imgmsg(np.zeros((2, 3), np.uint8), "MONO8")


# --- RGB for the encoder ------------------------------------------------------------------------


def test_to_rgb8_hand_computed():
    # Pixel (0, 0) is R=10, G=20, B=30 in every colour encoding; mono pixel value 7.
    rgb = np.array([[[10, 20, 30], [1, 2, 3]]], dtype=np.uint8)
    sources = {
        "rgb8": rgb,
        "bgr8": rgb[:, :, ::-1],
        "rgba8": np.concatenate([rgb, np.full((1, 2, 1), 255, np.uint8)], axis=2),
        "bgra8": np.concatenate([rgb[:, :, ::-1], np.full((1, 2, 1), 9, np.uint8)], axis=2),
    }
    for encoding, source in sources.items():
        msg = hand_built(source, encoding, pad=2)
        for out in (to_rgb8(source, encoding), imgmsg_to_rgb8(msg)):
            assert out.dtype == np.uint8 and out.shape == (1, 2, 3)
            assert out.flags.c_contiguous and out.flags.writeable
            np.testing.assert_array_equal(out, rgb, err_msg=encoding)
        assert not np.shares_memory(imgmsg_to_rgb8(msg), np.frombuffer(msg.data, np.uint8))
    mono = np.array([[7, 200]], dtype=np.uint8)
    mono_rgb = imgmsg_to_rgb8(hand_built(mono, "mono8"))
    np.testing.assert_array_equal(mono_rgb, [[[7, 7, 7], [200, 200, 200]]])
    assert not np.shares_memory(to_rgb8(rgb, "rgb8"), rgb)


def test_to_rgb8_rejects_other_encodings():
    with pytest.raises(ValueError, match="cannot make RGB from encoding 'mono16'"):
        imgmsg_to_rgb8(numpy_to_imgmsg(np.zeros((2, 2), np.uint16), "mono16"))
    with pytest.raises(ValueError, match="cannot make RGB from encoding '8UC3'"):
        to_rgb8(np.zeros((2, 2, 3), np.uint8), "8UC3")
    with pytest.raises(ValueError, match=r"rgb8 needs shape \[h, w, 3\]"):
        to_rgb8(np.zeros((2, 2), np.uint8), "rgb8")


# --- cv_bridge ----------------------------------------------------------------------------------


class ReferenceBridge:
    """A correct stand-in for ROS 2 CvBridge, built on this module's own conversions."""

    def __init__(self) -> None:
        self.decoded = 0

    def imgmsg_to_cv2(self, msg: Image, desired_encoding: str = "passthrough") -> np.ndarray:
        assert desired_encoding == "passthrough"
        self.decoded += 1
        dtype, channels = encoding_info(msg.encoding)
        return image_bridge._decode_numpy(msg, dtype, channels).copy()

    def cv2_to_imgmsg(self, cvim: np.ndarray, encoding: str, header: Header | None = None):
        return image_bridge._encode_numpy(cvim, encoding, header)


class Ros1StyleBridge(ReferenceBridge):
    """Mimics PyPI's cv-bridge (a ROS 1 port): reads rows as if ``step`` had no padding."""

    def imgmsg_to_cv2(self, msg: Image, desired_encoding: str = "passthrough") -> np.ndarray:
        dtype, channels = encoding_info(msg.encoding)
        flat = np.frombuffer(msg.data, dtype=dtype)[: msg.height * msg.width * channels]
        return flat.reshape(msg.height, msg.width, channels).squeeze()


class CrashingBridge(ReferenceBridge):
    def cv2_to_imgmsg(self, cvim: np.ndarray, encoding: str, header: Header | None = None):
        raise AttributeError("'numpy.ndarray' object has no attribute 'tostring'")


def test_probe_accepts_a_correct_bridge_and_rejects_broken_ones():
    assert image_bridge._probe_bridge(ReferenceBridge())
    assert not image_bridge._probe_bridge(Ros1StyleBridge())
    assert not image_bridge._probe_bridge(CrashingBridge())


def test_bridge_is_used_only_for_layouts_it_handles(monkeypatch: pytest.MonkeyPatch):
    bridge = ReferenceBridge()
    monkeypatch.setattr(image_bridge, "_real_bridge", lambda: bridge)
    image = random_image("16UC1")
    native = imgmsg_to_numpy(numpy_to_imgmsg(image, "16UC1"))
    assert bridge.decoded == 1 and not native.flags.writeable
    np.testing.assert_array_equal(native, image)
    # Big-endian and non-whole-pixel steps go through the numpy path.
    imgmsg_to_numpy(hand_built(image.astype(">u2"), "16UC1", big_endian=True))
    imgmsg_to_numpy(hand_built(image, "16UC1", pad=1))
    assert bridge.decoded == 1
    # Validation happens before the bridge ever sees a message.
    with pytest.raises(ValueError, match="too short"):
        imgmsg_to_numpy(Image(height=5, width=7, encoding="16UC1", step=14, data=bytes(10)))
    assert bridge.decoded == 1


def test_real_cv_bridge_gives_identical_arrays():
    bridge = image_bridge._real_bridge()
    if bridge is None:
        pytest.skip("the real ROS 2 cv_bridge is not importable here (or failed the probe)")
    for encoding in LISTED + EXTRA:
        image = random_image(encoding, seed=3)
        ours = image_bridge._encode_numpy(np.ascontiguousarray(image), encoding, None)
        theirs = bridge.cv2_to_imgmsg(np.ascontiguousarray(image), encoding)
        assert (ours.step, bytes(ours.data)) == (theirs.step, bytes(theirs.data))
        padded = hand_built(image, encoding, pad=encoding_info(encoding)[0].itemsize * 2)
        dtype, channels = encoding_info(encoding)
        from_bridge = np.asarray(bridge.imgmsg_to_cv2(padded, "passthrough"))
        from_numpy = image_bridge._decode_numpy(padded, dtype, channels)
        assert from_bridge.dtype == from_numpy.dtype and from_bridge.shape == from_numpy.shape
        np.testing.assert_array_equal(from_bridge, from_numpy)


def test_duck_typed_message_with_bytes_or_list_data():
    image = random_image("rgb8")
    fields = {"height": 5, "width": 7, "encoding": "rgb8", "is_bigendian": 0, "step": 21}
    as_bytes = SimpleNamespace(data=image.tobytes(), **fields)
    np.testing.assert_array_equal(imgmsg_to_numpy(as_bytes), image)
    as_list = SimpleNamespace(data=list(image.tobytes()), **fields)
    with pytest.raises(ValueError, match="not a byte buffer: list"):
        imgmsg_to_numpy(as_list)
