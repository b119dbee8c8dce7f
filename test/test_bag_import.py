"""rosbag2 import: bags written here with rosbags (sqlite3 and MCAP) become the expected episodes,
and every message left out is accounted for."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from mirage_ros.geometry import OPTICAL_TO_BODY, make_transform, matrix_to_quat_xyzw, planar_pose
from mirage_ros.train.bag_import import BagTopics, ImportOptions, import_bag, main
from mirage_ros.train.episodes import EpisodeReader

TS = get_typestore(Stores.ROS2_KILTED)
T = TS.types
T0 = 100.0
H, W = 6, 8
TOPICS = BagTopics("/cam/color", "/cam/depth", "/cam/info", "/odom")
# camera_link 0.1 m ahead of and 0.5 m above base_link; the optical frame turned as REP-103 says.
LINK_TO_BASE = make_transform(np.eye(3), [0.1, 0.0, 0.5])
CAM_TO_BASE = LINK_TO_BASE @ OPTICAL_TO_BODY


def _header(t: float, frame: str):
    sec = int(math.floor(t))
    return T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=int(round((t - sec) * 1e9))),
        frame_id=frame)


def _colour(i: int) -> np.ndarray:
    """A recognisable RGB image per frame index: R = i, G = column, B = row."""
    img = np.zeros((H, W, 3), dtype=np.uint8)
    img[..., 0] = i
    img[..., 1] = np.arange(W)[None, :]
    img[..., 2] = np.arange(H)[:, None]
    return img


def _image(t: float, array: np.ndarray, encoding: str):
    h, w = array.shape[:2]
    data = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    return T["sensor_msgs/msg/Image"](
        header=_header(t, "camera_optical"), height=h, width=w, encoding=encoding,
        is_bigendian=0, step=data.size // h, data=data)


def _camera_info(t: float):
    k = np.array([5.0, 0.0, 3.5, 0.0, 5.0, 2.5, 0.0, 0.0, 1.0])  # ROS convention
    return T["sensor_msgs/msg/CameraInfo"](
        header=_header(t, "camera_optical"), height=H, width=W, distortion_model="plumb_bob",
        d=np.zeros(5), k=k, r=np.eye(3).ravel(),
        p=np.concatenate([k.reshape(3, 3), np.zeros((3, 1))], axis=1).ravel(),
        binning_x=0, binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                   do_rectify=False))


def _base(t: float) -> np.ndarray:
    return planar_pose(t - T0, 0.5, 0.2 * (t - T0))


def _odometry(t: float, broken: bool = False):
    pose = _base(t)
    qx, qy, qz, qw = matrix_to_quat_xyzw(pose)
    x = math.nan if broken else float(pose[0, 3])
    msg_pose = T["geometry_msgs/msg/Pose"](
        position=T["geometry_msgs/msg/Point"](x=x, y=float(pose[1, 3]), z=0.0),
        orientation=T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw))
    zero = T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0)
    return T["nav_msgs/msg/Odometry"](
        header=_header(t, "odom"), child_frame_id="base_link",
        pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=msg_pose, covariance=np.zeros(36)),
        twist=T["geometry_msgs/msg/TwistWithCovariance"](
            twist=T["geometry_msgs/msg/Twist"](linear=zero, angular=zero),
            covariance=np.zeros(36)))


def _tf_static():
    def stamped(parent: str, child: str, pose: np.ndarray):
        qx, qy, qz, qw = matrix_to_quat_xyzw(pose)
        x, y, z = pose[:3, 3]
        return T["geometry_msgs/msg/TransformStamped"](
            header=_header(T0, parent), child_frame_id=child,
            transform=T["geometry_msgs/msg/Transform"](
                translation=T["geometry_msgs/msg/Vector3"](x=x, y=y, z=z),
                rotation=T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw)))
    return T["tf2_msgs/msg/TFMessage"](transforms=[
        stamped("base_link", "camera_link", LINK_TO_BASE),
        stamped("camera_link", "camera_optical", OPTICAL_TO_BODY)])


def _messages():
    """(time, topic, type, message) of a small recording with one problem of every kind."""
    out = [(T0 - 1.0, "/tf_static", "tf2_msgs/msg/TFMessage", _tf_static())]
    colour_times = [T0 + 0.1 * i for i in range(10)] + [T0 + 3.0 + 0.1 * i for i in range(4)] \
        + [T0 + 6.0]
    for i, t in enumerate(colour_times):
        img = _colour(i)
        if i == 1:
            out.append((t, "/cam/color", "sensor_msgs/msg/Image", _image(t, img[..., ::-1],
                                                                         "bgr8")))
        elif i == 2:
            out.append((t, "/cam/color", "sensor_msgs/msg/Image", _image(t, img, "yuv422")))
        else:
            out.append((t, "/cam/color", "sensor_msgs/msg/Image", _image(t, img, "rgb8")))
        if i == 5:
            continue  # no depth for this one: its nearest depth is 90 ms away
        if i == 7:
            depth = _image(t + 0.01, np.ones((4, 4), dtype=np.float32), "32FC1")
        elif i % 2:
            values = np.full((H, W), 1.0 + i, dtype=np.float32)
            values[1, 1], values[1, 2] = np.nan, -1.0  # invalid, as some drivers mark it
            depth = _image(t + 0.01, values, "32FC1")
        else:
            depth = _image(t + 0.01, np.full((H, W), 1000 * (1 + i), dtype=np.uint16), "16UC1")
        out.append((t + 0.01, "/cam/depth", "sensor_msgs/msg/Image", depth))
    out.append((T0 + 0.55, "/cam/depth", "sensor_msgs/msg/Image",
                _image(T0 + 0.55, _colour(0), "rgb8")))  # a colour image on the depth topic
    out += [(t, "/cam/info", "sensor_msgs/msg/CameraInfo", _camera_info(t))
            for t in (T0 + 0.1, T0 + 3.0)]
    odom_times = np.concatenate([np.arange(-0.5, 1.0, 0.02), np.arange(2.9, 3.2001, 0.02),
                                 np.arange(5.9, 6.1, 0.02)]) + T0
    out += [(t, "/odom", "nav_msgs/msg/Odometry", _odometry(t)) for t in odom_times]
    out.append((T0 + 0.31, "/odom", "nav_msgs/msg/Odometry", _odometry(T0 + 0.31, broken=True)))
    return sorted(out, key=lambda m: m[0])


def _write_bag(path, storage: StoragePlugin) -> None:
    with Writer(path, version=9, storage_plugin=storage) as writer:
        connections = {}
        for t, topic, msgtype, msg in _messages():
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=TS)
            writer.write(connections[topic], int(t * 1e9), TS.serialize_cdr(msg, msgtype))


@pytest.fixture(scope="module", params=[StoragePlugin.SQLITE3, StoragePlugin.MCAP],
                ids=["sqlite3", "mcap"])
def bag(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("bags") / f"rec_{request.param.name.lower()}"
    _write_bag(path, request.param)
    return path


def test_import_matches_frames_and_reports_every_drop(bag, tmp_path):
    summary = import_bag(bag, tmp_path, TOPICS, ImportOptions(tolerance=0.05, max_gap=1.0))
    assert (summary.images, summary.depth_images, summary.camera_infos) == (15, 15, 2)
    # The first image comes 0.1 s before the first camera_info: it waits for it (intrinsics do
    # not change while a camera runs), as the node's pairer does.
    assert (summary.frames, summary.episodes) == (10, 2)
    assert {k: v for k, v in summary.dropped.items() if v} == {
        "image_undecodable": 1,  # yuv422
        "depth_out_of_tolerance": 1,  # its depth is missing
        "depth_size_mismatch": 1,
        "pose_out_of_tolerance": 1,  # odometry stops 0.1 s before it
        "episode_too_short": 1,  # a lone frame after a long gap
        "depth_undecodable": 1,  # rgb8 on the depth topic
        "odom_invalid": 1,  # NaN position
        "depth_unused": 3,  # those of the yuv422 image, the 4x4 one and the one without odometry
    }
    text = "\n".join(summary.lines())
    assert "wrote 10 frames in 2 episodes" in text and "odom_invalid" in text

    reader = EpisodeReader(tmp_path, "train")
    assert [len(e) for e in reader] == [7, 3]
    first = reader.load(0)
    kept = [0, 1, 3, 4, 6, 8, 9]
    np.testing.assert_allclose(first.stamps, [T0 + 0.1 * i for i in kept], atol=1e-9)
    np.testing.assert_array_equal(first.rgb, np.stack([_colour(i) for i in kept]))  # bgr8 too
    np.testing.assert_allclose(first.depth[:, 0, 0], [1.0 + i for i in kept], atol=1e-3)
    odd = [k for k, i in enumerate(kept) if i % 2]
    assert (first.depth[odd][:, 1, 1:3] == 0).all()  # NaN and negative depth: 0 = invalid
    np.testing.assert_allclose(first.K, [[5.0, 0, 4.0], [0, 5.0, 3.0], [0, 0, 1]])
    # Odometry interpolated to each image stamp, then the extrinsic from /tf_static.
    bases = np.stack([_base(T0 + 0.1 * i) for i in kept])
    np.testing.assert_allclose(first.base_to_map, bases, atol=1e-6)
    np.testing.assert_allclose(first.cam_to_map, bases @ CAM_TO_BASE, atol=1e-6)
    assert first.meta["source"] == f"rosbag2:{bag.name}"
    assert reader.load(1).stamps[0] == pytest.approx(T0 + 3.0)


def test_cli_with_explicit_extrinsic_and_resize(bag, tmp_path, capsys):
    # The same extrinsic, given as a camera_link (body) pose instead of read from /tf_static.
    code = main([str(bag), "--out", str(tmp_path), "--image-topic", "/cam/color",
                 "--depth-topic", "/cam/depth", "--camera-info-topic", "/cam/info",
                 "--odom-topic", "/odom", "--camera-to-base", "0.1,0,0.5,0,0,0,1",
                 "--extrinsic-frame", "body", "--resize", "4x3", "--split", "validation"])
    assert code == 0
    assert "wrote 10 frames in 2 episodes" in capsys.readouterr().out
    ep = EpisodeReader(tmp_path, "validation").load(0)
    assert ep.rgb.shape == (7, 3, 4, 3) and ep.depth.shape == (7, 3, 4)
    # Grid-edge convention: resizing scales K exactly (cx 4 -> 2 for 8 -> 4 pixels).
    np.testing.assert_allclose(ep.K, [[2.5, 0, 2.0], [0, 2.5, 1.5], [0, 0, 1]])
    np.testing.assert_allclose(ep.cam_to_map, ep.base_to_map @ CAM_TO_BASE, atol=1e-6)


def test_cli_reports_missing_topics(bag, tmp_path, capsys):
    code = main([str(bag), "--out", str(tmp_path), "--image-topic", "/nope",
                 "--depth-topic", "/cam/depth", "--camera-info-topic", "/cam/info",
                 "--odom-topic", "/odom"])
    assert code == 2
    assert "topics not in the bag: ['/nope']" in capsys.readouterr().err
