"""mirage_ros.sensors: depth decoding, the pose buffer and the observation pairer (no ROS)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import transforms3d.axangles as t3a
from hypothesis import given, settings
from hypothesis import strategies as st

from mirage_ros.geometry import make_transform, planar_pose
from mirage_ros.sensors import (
    CLOCK_JUMP_BACK,
    DROP_REASONS,
    ObservationPairer,
    PoseBuffer,
    decode_depth,
    decode_image,
    decode_rgb8,
    encode_image,
)

# --- image codec ---------------------------------------------------------------------------------


def test_codec_decodes_rosbags_style_numpy_buffers_and_round_trips():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    fields = encode_image(image, "rgb8")
    assert (fields.height, fields.width, fields.step, fields.encoding) == (2, 3, 9, "rgb8")
    # rosbags hands message data over as a uint8 numpy array.
    data = np.frombuffer(bytes(fields.data), dtype=np.uint8)
    out = decode_image(data, "rgb8", 2, 3, 9)
    np.testing.assert_array_equal(out, image)
    assert not out.flags.writeable
    assert decode_image(data, "rgb8", 2, 3, 9, copy=True).flags.writeable
    np.testing.assert_array_equal(decode_rgb8(data[::-1].copy(), "bgr8", 2, 3, 9),
                                  image[::-1, ::-1, :])


def test_codec_rejects_inconsistent_fields():
    with pytest.raises(ValueError, match="too short"):
        decode_image(bytes(5), "mono8", 2, 3, 3)
    with pytest.raises(ValueError, match="unsupported image encoding 'yuv422'"):
        decode_image(bytes(12), "yuv422", 2, 3, 6)
    with pytest.raises(ValueError, match="not a byte buffer: int"):
        decode_image(7, "mono8", 1, 1, 1)


def test_sensors_import_neither_ros_nor_the_tools():
    code = (
        "import sys, mirage_ros.sensors; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('rclpy', 'sensor_msgs', 'std_msgs', 'mujoco', 'rosbags') or "
        "m.startswith(('mirage_ros.ros', 'mirage_ros.sim', 'mirage_ros.train')));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0, run.stdout + run.stderr


# --- depth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["16UC1", "mono16"])
def test_millimetre_depth_to_metres(encoding):
    raw = np.array([[0, 1, 1000], [1500, 65535, 250]], dtype=np.uint16)
    raw.flags.writeable = False  # as a view of a message would be
    out = decode_depth(raw, encoding)
    assert out.dtype == np.float32 and out.shape == (2, 3) and out.flags.writeable
    np.testing.assert_allclose(out, [[0.0, 0.001, 1.0], [1.5, 65.535, 0.25]], rtol=1e-6)


def test_metre_depth_invalid_values_become_zero():
    raw = np.array([[np.nan, np.inf, -np.inf], [-0.5, 0.0, -0.0], [0.3, 2.5, 1e-6]],
                   dtype=np.float32)
    out = decode_depth(raw, "32FC1")
    expected = np.array([[0, 0, 0], [0, 0, 0], [0.3, 2.5, 1e-6]], dtype=np.float32)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float32 and not np.shares_memory(out, raw)
    assert not np.signbit(out).any()  # -0.0 is stored as plain 0


def test_depth_from_big_endian_message_bytes_and_trailing_channel_axis():
    mm = np.array([[1, 256], [4660, 0]], dtype=np.uint16)
    raw = decode_image(mm.astype(">u2").tobytes(), "16UC1", 2, 2, 4, is_bigendian=True)
    np.testing.assert_allclose(decode_depth(raw, "16UC1"), mm / 1000.0, rtol=1e-6)
    np.testing.assert_allclose(decode_depth(mm[:, :, None], "16UC1"), mm / 1000.0, rtol=1e-6)


@pytest.mark.parametrize("encoding", ["rgb8", "32FC3", "16SC1", "64FC1", "8UC1", "", "mono8"])
def test_unsupported_depth_encodings_are_named(encoding):
    with pytest.raises(ValueError, match=f"unsupported depth encoding '{encoding}'"):
        decode_depth(np.zeros((2, 2), np.float32), encoding)


def test_depth_array_must_match_its_encoding():
    with pytest.raises(ValueError, match="16UC1 needs uint16"):
        decode_depth(np.zeros((2, 2), np.float32), "16UC1")
    with pytest.raises(ValueError, match="32FC1 needs float32"):
        decode_depth(np.zeros((2, 2), np.float64), "32FC1")
    with pytest.raises(ValueError, match=r"must be \[H, W\]"):
        decode_depth(np.zeros((2, 2, 3), np.float32), "32FC1")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 65535), min_size=1, max_size=30))
def test_millimetres_property(values):
    raw = np.array(values, dtype=np.uint16)[None, :]
    np.testing.assert_allclose(decode_depth(raw, "16UC1")[0], np.array(values) / 1000.0,
                               rtol=1e-6, atol=0)


# --- pose buffer ---------------------------------------------------------------------------------


def _rot(axis, angle, t=(0.0, 0.0, 0.0)):
    return make_transform(t3a.axangle2mat(axis, angle), t)


def test_empty_buffer():
    buf = PoseBuffer()
    assert len(buf) == 0 and buf.latest() is None and buf.at(0.0, 1.0) is None


def test_exact_stamp_and_copies():
    buf = PoseBuffer()
    pose = planar_pose(1.0, 2.0, 0.3)
    buf.add(5.0, pose)
    got = buf.at(5.0, 0.0)
    np.testing.assert_array_equal(got, pose)
    got[0, 3] = 99.0
    pose[0, 3] = 98.0  # neither the caller's array nor a returned one aliases the buffer
    assert buf.at(5.0, 0.0)[0, 3] == 1.0
    stamp, latest = buf.latest()
    assert stamp == 5.0 and latest[0, 3] == 1.0


def test_slerp_against_a_known_rotation():
    axis = np.array([1.0, 2.0, -0.5]) / np.linalg.norm([1.0, 2.0, -0.5])
    buf = PoseBuffer()
    buf.add(10.0, _rot(axis, 0.2, (0.0, 0.0, 0.0)))
    buf.add(10.4, _rot(axis, 1.0, (4.0, -2.0, 1.0)))
    got = buf.at(10.1, tolerance=0.05)  # a quarter of the way
    np.testing.assert_allclose(got, _rot(axis, 0.4, (1.0, -0.5, 0.25)), atol=1e-12)


def test_slerp_takes_the_short_way_round():
    buf = PoseBuffer()
    buf.add(0.0, planar_pose(0.0, 0.0, math.radians(170)))
    buf.add(0.2, planar_pose(0.0, 0.0, math.radians(-170)))
    mid = buf.at(0.1, 0.05)
    np.testing.assert_allclose(mid, planar_pose(0.0, 0.0, math.pi), atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    axis=st.tuples(*[st.floats(-1, 1)] * 3).filter(lambda a: np.linalg.norm(a) > 0.1),
    a=st.floats(-3.0, 3.0),
    delta=st.floats(-3.0, 3.0),
    f=st.floats(0.0, 1.0),
)
def test_slerp_property_constant_angular_speed(axis, a, delta, f):
    buf = PoseBuffer(max_gap=1.0)
    buf.add(0.0, _rot(axis, a))
    buf.add(1.0, _rot(axis, a + delta))
    got = buf.at(f, tolerance=0.0)
    np.testing.assert_allclose(got, _rot(axis, a + f * delta), atol=1e-9)


def test_tolerance_edges_outside_the_buffered_range():
    buf = PoseBuffer()
    buf.add(1.0, planar_pose(0, 0, 0))
    buf.add(1.25, planar_pose(1, 0, 0))
    # 0.25 is exact in binary, so the edges are exact too.
    np.testing.assert_array_equal(buf.at(1.5, 0.25), planar_pose(1, 0, 0))  # held, not moved
    assert buf.at(1.5000001, 0.25) is None
    np.testing.assert_array_equal(buf.at(0.75, 0.25), planar_pose(0, 0, 0))
    assert buf.at(0.7499999, 0.25) is None


def test_gap_rules_between_samples():
    buf = PoseBuffer(max_gap=0.5)
    buf.add(0.0, planar_pose(0, 0, 0))
    buf.add(0.4, planar_pose(4, 0, 0))
    buf.add(2.0, planar_pose(20, 0, 0))
    # 0.4 s apart (<= max_gap): interpolated although 0.2 s from either sample.
    np.testing.assert_allclose(buf.at(0.2, 0.05), planar_pose(2, 0, 0), atol=1e-12)
    # 1.6 s apart (odometry dropped out): the nearer sample if within tolerance, else nothing.
    np.testing.assert_array_equal(buf.at(0.45, 0.05), planar_pose(4, 0, 0))
    np.testing.assert_array_equal(buf.at(1.96, 0.05), planar_pose(20, 0, 0))
    assert buf.at(1.2, 0.05) is None
    # A tolerance of 0.8 s admits a 1.6 s gap: both samples are then within it.
    np.testing.assert_allclose(buf.at(1.2, 0.8), planar_pose(12, 0, 0), atol=1e-12)


def test_out_of_order_insert_and_duplicate_stamp():
    buf = PoseBuffer()
    buf.add(0.0, planar_pose(0, 0, 0))
    buf.add(0.2, planar_pose(2, 0, 0))
    buf.add(0.1, planar_pose(1, 0, 0))  # late, but within the clock-jump threshold
    assert len(buf) == 3
    np.testing.assert_allclose(buf.at(0.15, 0.0), planar_pose(1.5, 0, 0), atol=1e-12)
    buf.add(0.1, planar_pose(5, 0, 0))  # the same stamp again replaces the sample
    assert len(buf) == 3
    np.testing.assert_array_equal(buf.at(0.1, 0.0), planar_pose(5, 0, 0))


def test_clock_jump_back_clears_the_buffer():
    buf = PoseBuffer()
    for t in (100.0, 100.5, 101.0):
        buf.add(t, planar_pose(t, 0, 0))
    buf.add(101.0 - CLOCK_JUMP_BACK + 0.01, planar_pose(0, 0, 0))  # late message: kept
    assert len(buf) == 4 and buf.resets == 0
    buf.add(3.0, planar_pose(3, 0, 0))  # the simulation restarted
    assert len(buf) == 1 and buf.resets == 1
    assert buf.at(100.5, 1.0) is None
    assert buf.latest()[0] == 3.0


def test_invalid_input_leaves_the_buffer_unchanged():
    buf = PoseBuffer()
    buf.add(50.0, planar_pose(0, 0, 0))
    bad = planar_pose(1, 0, 0)
    bad[1, 3] = np.nan
    scaled = planar_pose(0, 0, 0)
    scaled[:3, :3] *= 1.01
    mirrored = np.diag([1.0, 1.0, -1.0, 1.0])
    for stamp, pose in ((1.0, bad), (1.0, scaled), (1.0, mirrored), (1.0, np.eye(3)),
                        (math.nan, np.eye(4)), (math.inf, np.eye(4))):
        with pytest.raises(ValueError):
            buf.add(stamp, pose)
    # Not even the clock-jump clearing happened: the invalid samples were 49 s "back".
    assert len(buf) == 1 and buf.resets == 0
    with pytest.raises(ValueError, match="tolerance"):
        buf.at(50.0, -0.1)


def test_age_and_length_bounds():
    buf = PoseBuffer(max_age=1.0, max_len=1000)
    for i in range(31):
        buf.add(i * 0.1, planar_pose(i, 0, 0))
    assert len(buf) == 11  # 2.0 .. 3.0
    assert buf.at(1.9, 0.05) is None
    short = PoseBuffer(max_age=100.0, max_len=5)
    for i in range(12):
        short.add(i * 0.1, planar_pose(i, 0, 0))
    assert len(short) == 5
    short.clear()
    assert len(short) == 0 and short.latest() is None


def test_constructor_validation():
    for kwargs in ({"max_age": 0.0}, {"max_len": 0}, {"max_gap": -1.0}):
        with pytest.raises(ValueError):
            PoseBuffer(**kwargs)


# --- observation pairer --------------------------------------------------------------------------

H, W = 4, 6
K_ROS = np.array([[5.0, 0.0, 2.5], [0.0, 5.0, 1.5], [0.0, 0.0, 1.0]])


def rgb(value: int, h: int = H, w: int = W) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.uint8)


def depth(value: float, h: int = H, w: int = W) -> np.ndarray:
    return np.full((h, w), value, dtype=np.float32)


def base(t: float) -> np.ndarray:
    """A robot driving 1 m/s along x while turning 0.5 rad/s."""
    return planar_pose(t, 0.0, 0.5 * t)


def pairer(**kwargs) -> ObservationPairer:
    p = ObservationPairer(**kwargs)
    p.set_camera_info(K_ROS, W, H)
    return p


def add_poses(p: ObservationPairer, start: float, stop: float, dt: float = 0.02) -> None:
    for t in np.arange(start, stop + 1e-9, dt):
        p.add_pose(float(t), base(float(t)))


def test_one_observation_in_our_intrinsics_convention():
    p = pairer()
    add_poses(p, 0.0, 0.1)
    p.add_depth(0.05, depth(2.0))
    p.add_image(0.05, rgb(7))
    (obs,) = p.pop_ready()
    assert obs.stamp == 0.05 and obs.rgb[0, 0, 0] == 7 and obs.depth[0, 0] == 2.0
    np.testing.assert_array_equal(obs.K, [[5.0, 0.0, 3.0], [0.0, 5.0, 2.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(obs.base_to_map, base(0.05), atol=1e-12)  # interpolated
    assert p.pending == 0 and not any(p.dropped.values())
    assert set(p.dropped) == set(DROP_REASONS)


def test_image_waits_for_a_pose_at_or_after_its_stamp():
    p = pairer()
    add_poses(p, 0.0, 0.14)
    p.add_image(0.15, rgb(1))
    assert p.pop_ready() == [] and p.pending == 1
    p.add_pose(0.16, base(0.16))
    (obs,) = p.pop_ready()
    np.testing.assert_allclose(obs.base_to_map, base(0.15), atol=1e-12)


def test_image_waits_for_camera_info():
    p = ObservationPairer()
    add_poses(p, 0.0, 0.2)
    p.add_image(0.1, rgb(1))
    assert p.pop_ready() == [] and p.pending == 1
    p.set_camera_info(K_ROS.ravel(), W, H)  # the 9 values of CameraInfo.k work too
    assert len(p.pop_ready()) == 1


def test_no_depth_ever_means_no_depth_and_no_waiting():
    p = pairer()
    add_poses(p, 0.0, 0.2)
    p.add_image(0.1, rgb(1))
    (obs,) = p.pop_ready()
    assert obs.depth is None


def test_depth_timeout_by_default_now_and_by_explicit_now():
    p = pairer(depth_timeout=0.5)
    p.add_depth(0.0, depth(1.0))
    add_poses(p, 0.0, 0.3)
    p.add_image(0.3, rgb(1))
    assert p.pop_ready() == []  # depth seen 0.3 s ago: a depth for this image may still come
    assert p.pop_ready(now=0.5) == []
    (obs,) = p.pop_ready(now=0.5000001)  # the depth stream stopped: colour alone
    assert obs.depth is None
    # The default `now` is the newest stamp of any stream.
    add_poses(p, 0.32, 1.2)
    p.add_image(1.0, rgb(2))
    (obs,) = p.pop_ready()
    assert obs.stamp == 1.0 and obs.depth is None


def test_depth_nearest_within_tolerance_and_waits_for_a_later_one():
    p = pairer(tolerance=0.05)
    add_poses(p, 0.9, 1.2)
    p.add_depth(0.96, depth(1.0))
    p.add_image(1.0, rgb(1))
    assert p.pop_ready() == []  # 0.96 is within tolerance, but a nearer one may come
    p.add_depth(1.01, depth(2.0))
    (obs,) = p.pop_ready()
    assert obs.depth[0, 0] == 2.0


def test_depth_tolerance_edges():
    p = pairer(tolerance=0.25)  # binary-exact stamps: the edge is exact
    add_poses(p, 0.0, 3.0, dt=0.25)
    p.add_depth(1.25, depth(1.0))
    p.add_image(1.0, rgb(1))
    (obs,) = p.pop_ready()
    assert obs.depth[0, 0] == 1.0
    p.add_depth(2.2500001, depth(2.0))
    p.add_image(2.0, rgb(2))
    assert p.pop_ready() == []
    assert p.dropped["depth_out_of_tolerance"] == 1


def test_depth_and_camera_info_size_mismatch_drop_the_image():
    p = pairer()
    add_poses(p, 0.0, 1.0)
    p.add_depth(0.1, depth(1.0, h=2, w=2))
    p.add_image(0.1, rgb(1))
    p.add_depth(0.2, depth(1.0))
    p.add_image(0.2, rgb(2, h=H + 1))
    assert p.pop_ready() == []
    assert p.dropped["depth_size_mismatch"] == 1
    assert p.dropped["camera_info_size_mismatch"] == 1


def test_pose_out_of_tolerance_across_an_odometry_gap():
    p = pairer()
    p.add_pose(0.0, base(0.0))
    p.add_pose(2.0, base(2.0))
    p.add_image(1.0, rgb(1))
    p.add_image(1.97, rgb(2))
    obs = p.pop_ready()
    assert [o.stamp for o in obs] == [1.97] and p.dropped["pose_out_of_tolerance"] == 1
    np.testing.assert_array_equal(obs[0].base_to_map, base(2.0))  # held: within tolerance


def test_full_queue_drops_the_oldest_by_what_it_waited_for():
    p = pairer(max_pending=3)
    for i in range(5):
        p.add_image(0.1 * i, rgb(i))
    assert p.pending == 3 and p.dropped["no_pose"] == 2
    add_poses(p, 0.0, 0.5)
    assert [o.rgb[0, 0, 0] for o in p.pop_ready()] == [2, 3, 4]
    q = ObservationPairer(max_pending=1)
    q.add_image(0.0, rgb(0))
    q.add_image(0.1, rgb(1))
    assert q.dropped["no_camera_info"] == 1


def test_full_queue_keeps_images_already_decided():
    p = pairer(max_pending=2)
    add_poses(p, 0.0, 1.0)
    for i in range(6):
        p.add_image(0.1 * i, rgb(i))  # nobody pops in between
    assert [o.rgb[0, 0, 0] for o in p.pop_ready()] == list(range(6))
    assert not any(p.dropped.values())


def test_output_is_in_strict_stamp_order_and_late_images_are_dropped():
    p = pairer()
    add_poses(p, 0.0, 1.0)
    p.add_image(0.5, rgb(1))
    assert len(p.pop_ready()) == 1
    p.add_image(0.4, rgb(2))
    p.add_image(0.5, rgb(3))
    p.add_image(0.6, rgb(4))
    p.add_image(0.6, rgb(5))  # the same stamp again: the first one stays
    assert [o.rgb[0, 0, 0] for o in p.pop_ready()] == [4]
    assert p.dropped["late"] == 3


def test_clock_jump_back_resets_everything_but_the_camera_info():
    p = pairer()
    add_poses(p, 10.0, 10.5)
    p.add_depth(10.6, depth(1.0))
    p.add_image(10.55, rgb(1))  # waits for a pose
    p.add_image(10.6, rgb(2))
    assert p.pop_ready() == []
    p.add_pose(0.0, base(0.0))  # the simulation restarted
    assert p.pending == 0 and p.resets == 1
    assert p.dropped["clock_reset"] == 2 and p.dropped["depth_unused"] == 1
    assert len(p.poses) == 1
    add_poses(p, 0.02, 0.2)
    p.add_image(0.1, rgb(3))
    (obs,) = p.pop_ready()
    assert obs.stamp == 0.1 and obs.depth is None  # no depth seen since the restart
    # Stamps of another stream jumping back trigger it too.
    p.add_image(-5.0, rgb(4))
    assert p.resets == 2 and len(p.poses) == 0


def test_flush_decides_what_waits():
    p = pairer(depth_timeout=math.inf)
    add_poses(p, 0.0, 0.3)
    p.add_depth(0.28, depth(1.0))
    p.add_image(0.31, rgb(1))  # after the last pose and the last depth, both within tolerance
    p.add_image(0.36, rgb(2))  # depth expected, none near
    assert p.pop_ready() == []
    (obs,) = p.flush()
    assert obs.stamp == 0.31 and obs.depth[0, 0] == 1.0
    np.testing.assert_array_equal(obs.base_to_map, base(0.3))
    assert p.dropped["pose_out_of_tolerance"] == 1  # 0.36: the last pose is 0.06 s older
    assert p.pending == 0


def test_invalid_inputs_raise_and_change_nothing():
    p = pairer()
    for k, w, h in ((np.full((3, 3), np.nan), W, H), (np.diag([0.0, 5.0, 1.0]), W, H),
                    (np.diag([5.0, -5.0, 1.0]), W, H), (K_ROS, 0, H),
                    (np.array([[5.0, 1.0, 2.5], [0, 5.0, 1.5], [0, 0, 1]]), W, H)):
        with pytest.raises(ValueError):
            p.set_camera_info(k, w, h)
    assert p.camera_info[1] == (H, W)
    with pytest.raises(ValueError, match="uint8"):
        p.add_image(0.0, rgb(1).astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        p.add_image(0.0, rgb(1)[:, :, 0])
    with pytest.raises(ValueError, match="float32"):
        p.add_depth(0.0, depth(1.0).astype(np.float64))
    with pytest.raises(ValueError, match="finite"):
        p.add_image(math.nan, rgb(1))
    bad = base(0.0)
    bad[0, 0] = np.inf
    with pytest.raises(ValueError):
        p.add_pose(0.0, bad)
    assert len(p.poses) == 0 and p.pending == 0
    for kwargs in ({"tolerance": -1.0}, {"depth_timeout": -1.0}, {"max_pending": 0}):
        with pytest.raises(ValueError):
            ObservationPairer(**kwargs)


def _feed(p: ObservationPairer, events: list[tuple]) -> list:
    out = []
    for _, kind, stamp, value in events:
        getattr(p, f"add_{kind}")(stamp, value)
        out += p.pop_ready()
    return out + p.flush()


@settings(max_examples=40, deadline=None)
@given(
    latency=st.tuples(st.floats(0.0, 0.2), st.floats(0.0, 0.2), st.floats(0.0, 0.2)),
    jitter_seed=st.integers(0, 2**16),
)
def test_any_stream_latencies_pair_every_frame_deterministically(latency, jitter_seed):
    """Camera at 10 Hz with registered depth, odometry at 50 Hz; each stream arrives late by its
    own latency (plus jitter, order kept within a stream). Every image is paired with its own
    depth and its interpolated pose, in order, and the same feed gives the same result. Only
    images decided before any depth image arrived go without depth (none was ever seen)."""
    rng = np.random.default_rng(jitter_seed)
    streams = {
        "image": [(0.1 * i, rgb(i)) for i in range(1, 20)],
        "depth": [(0.1 * i, depth(float(i))) for i in range(1, 20)],
        "pose": [(0.02 * i, base(0.02 * i)) for i in range(101)],
    }
    events = []
    for (kind, items), lat in zip(streams.items(), latency, strict=True):
        arrival = np.array([s for s, _ in items]) + lat + rng.uniform(0, 0.03, len(items))
        arrival = np.maximum.accumulate(arrival)  # a stream keeps its own order
        events += [(a, kind, s, v) for a, (s, v) in zip(arrival, items, strict=True)]
    events.sort(key=lambda e: (e[0], e[1]))

    p = pairer(depth_timeout=math.inf, max_pending=64)
    out = _feed(p, events)
    assert [o.rgb[0, 0, 0] for o in out] == list(range(1, 20))
    first_depth = min(e[0] for e in events if e[1] == "depth")
    arrival = {e[2]: e[0] for e in events if e[1] == "image"}
    for o in out:
        if o.depth is None:
            assert arrival[o.stamp] < first_depth
        else:
            assert o.depth[0, 0] == o.rgb[0, 0, 0]
    for o in out:
        np.testing.assert_allclose(o.base_to_map, base(o.stamp), atol=1e-9)
    without = sum(o.depth is None for o in out)  # their depth images go unused
    assert {k: v for k, v in p.dropped.items() if v} == ({"depth_unused": without} if without
                                                          else {})
    again = _feed(pairer(depth_timeout=math.inf, max_pending=64), events)
    assert [(o.stamp, o.depth is None) for o in again] == [(o.stamp, o.depth is None) for o in out]
