"""Bring your own data: rosbag2 recordings (sqlite3 or MCAP) -> episodes.

``python -m mirage_ros.train.bag_import BAG --out DIR --image-topic ... --depth-topic ...
--camera-info-topic ... --odom-topic ... [--camera-to-base x,y,z,qx,qy,qz,qw]``

Messages are read and deserialised with ``rosbags`` (its own type store, ROS 2 Kilted
definitions unless the bag carries its own), so no ROS installation is needed to read a bag.
Pixels are decoded by :mod:`mirage_ros.ros.image_bridge`, the same code the nodes use, through a
small adapter that hands it a ``sensor_msgs/Image``; that needs the ``sensor_msgs`` Python
package (the ROS 2 wheels this project installs anyway), not a running ROS.

Matching, per colour image (header stamps, seconds):

* depth: the depth image nearest in time, within ``--tolerance``; same size as the colour image;
* camera_info: the nearest one within the tolerance, else the latest one before the image
  (intrinsics do not change; images before the first camera_info are dropped);
* odometry: must lie within the tolerance of the image; the base pose is interpolated
  (linear position, slerp orientation) between the odometry messages around the image stamp
  when they are at most ``4 * tolerance`` apart, else the nearest one is used.

The camera pose is ``cam_to_map = base_to_odom (odometry) @ cam_to_base``. ``cam_to_base`` is the
pose of the camera's *optical* frame in the odometry's child frame (what ``tf2_echo base_link
camera_optical_frame`` prints): given with ``--camera-to-base`` (``--extrinsic-frame body`` if
it describes a ``camera_link`` with x forward instead), or else looked up in the bag's
``/tf_static`` from the odometry child frame to the image's ``header.frame_id``.

Frames are grouped into episodes: a new one starts after a gap longer than ``--max-gap``
seconds, when the intrinsics change, or after ``--max-frames`` frames; episodes shorter than
``--min-frames`` are dropped. Each episode becomes one shard ``DIR/<split>/<bag>-<k>.npz``.
Everything not used is counted in a :class:`DropSummary` and printed.
"""

from __future__ import annotations

import argparse
import array
import math
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

from mirage_ros.geometry import (
    OPTICAL_TO_BODY,
    QUAT_UNIT_TOLERANCE,
    PinholeCamera,
    compose,
    invert,
    is_unit_quat,
    scale_intrinsics,
    transform_from_translation_quat_xyzw,
)
from mirage_ros.train.episodes import SPLITS, Episode, write_index, write_shard

__all__ = ["BagTopics", "DropSummary", "ImportOptions", "import_bag", "main"]

# Why an image was not turned into a frame, in the order a frame is checked.
IMAGE_DROPS = (
    "image_undecodable",
    "no_camera_info",
    "camera_info_size_mismatch",
    "depth_unmatched",
    "depth_out_of_tolerance",
    "depth_size_mismatch",
    "odom_unmatched",
    "odom_out_of_tolerance",
    "episode_too_short",
)
# Messages of the other topics that could not be used at all.
MESSAGE_DROPS = ("depth_undecodable", "depth_unused", "odom_invalid", "camera_info_invalid")


@dataclass(frozen=True)
class BagTopics:
    image: str
    depth: str
    camera_info: str
    odom: str
    tf_static: str = "/tf_static"


@dataclass(frozen=True)
class ImportOptions:
    camera_to_base: NDArray | None = None  # optical frame -> odometry child frame (4x4)
    tolerance: float = 0.05
    max_gap: float = 1.0
    max_frames: int = 0  # 0: no limit
    min_frames: int = 2
    resize: tuple[int, int] | None = None  # (width, height)
    split: str = "train"


@dataclass
class DropSummary:
    """What happened to every message: ``images``/``frames``/``episodes`` counts and the
    reasons (see ``IMAGE_DROPS`` and ``MESSAGE_DROPS``) with their counts."""

    images: int = 0
    depth_images: int = 0
    odometry: int = 0
    camera_infos: int = 0
    frames: int = 0
    episodes: int = 0
    dropped: Counter = field(default_factory=Counter)

    def lines(self) -> list[str]:
        out = [f"read {self.images} images, {self.depth_images} depth images, "
               f"{self.odometry} odometry and {self.camera_infos} camera_info messages",
               f"wrote {self.frames} frames in {self.episodes} episodes"]
        for reason in IMAGE_DROPS + MESSAGE_DROPS:
            if self.dropped[reason]:
                what = "images" if reason in IMAGE_DROPS else "messages"
                out.append(f"  dropped {self.dropped[reason]:6d} {what}: {reason}")
        return out


@dataclass(frozen=True)
class _Stamped:
    index: int  # position among the topic's messages
    stamp: float
    size: tuple[int, int] | None  # (height, width) of decodable images


@dataclass(frozen=True)
class _Frame:
    image: int
    depth: int
    stamp: float
    base_to_map: NDArray
    K: NDArray  # ours, before any resize
    size: tuple[int, int]


def _stamp(header: Any) -> float:
    return header.stamp.sec + 1e-9 * header.stamp.nanosec


def _as_ros_image(msg: Any) -> Any:
    """A ``sensor_msgs.msg.Image`` with the fields of a rosbags Image (the bridge's input)."""
    from sensor_msgs.msg import Image

    image = Image(height=msg.height, width=msg.width, encoding=msg.encoding,
                  is_bigendian=msg.is_bigendian, step=msg.step)
    image.data = array.array("B", np.asarray(msg.data, dtype=np.uint8).tobytes())
    return image


def _decode_rgb(msg: Any) -> NDArray:
    from mirage_ros.ros.image_bridge import imgmsg_to_rgb8

    return imgmsg_to_rgb8(_as_ros_image(msg))


def _decode_depth(msg: Any) -> NDArray:
    """Metres, float32; 16UC1/mono16 are millimetres (ROS convention), float encodings metres."""
    from mirage_ros.ros.image_bridge import imgmsg_to_numpy

    raw = imgmsg_to_numpy(_as_ros_image(msg))
    if raw.ndim != 2:
        raise ValueError(f"depth must have one channel, got encoding {msg.encoding}")
    if raw.dtype == np.uint16:
        return raw.astype(np.float32) * np.float32(0.001)
    if raw.dtype.kind == "f":
        return raw.astype(np.float32)
    raise ValueError(f"unsupported depth encoding {msg.encoding} (use 16UC1 mm or 32FC1 m)")


def _odometry_pose(msg: Any) -> NDArray | None:
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    values = np.array([p.x, p.y, p.z, q.x, q.y, q.z, q.w])
    if not np.isfinite(values).all() or not is_unit_quat(values[3:], QUAT_UNIT_TOLERANCE * 10):
        return None
    return values


def _slerp(q0: NDArray, q1: NDArray, f: float) -> NDArray:
    if float(q0 @ q1) < 0.0:
        q1 = -q1
    dot = min(float(q0 @ q1), 1.0)
    theta = math.acos(dot)
    if theta < 1e-9:
        return q0
    return (math.sin((1 - f) * theta) * q0 + math.sin(f * theta) * q1) / math.sin(theta)


def _tf_lookup(edges: dict[str, tuple[str, NDArray]], target: str, source: str) -> NDArray:
    """``source -> target`` from static transforms ``child -> (parent, child_to_parent)``."""

    def to_root(frame: str) -> tuple[list[str], NDArray]:
        chain, T = [frame], np.eye(4)
        while frame in edges and len(chain) <= len(edges) + 1:
            parent, child_to_parent = edges[frame]
            T = child_to_parent @ T
            frame = parent
            chain.append(frame)
        return chain, T

    s_chain, s_to_root = to_root(source)
    t_chain, t_to_root = to_root(target)
    if s_chain[-1] != t_chain[-1]:
        raise ValueError(
            f"no static transform connects '{source}' and '{target}' in the bag's /tf_static; "
            "give --camera-to-base")
    return invert(t_to_root) @ s_to_root


class _BagReader:
    """The bag, its connections for our topics, and typed iteration over them."""

    def __init__(self, path: Path, topics: BagTopics) -> None:
        self.reader = AnyReader([path], default_typestore=get_typestore(Stores.ROS2_KILTED))
        self.topics = topics

    def __enter__(self) -> _BagReader:
        self.reader.open()
        present = {c.topic for c in self.reader.connections}
        wanted = (self.topics.image, self.topics.depth, self.topics.camera_info, self.topics.odom)
        missing = [t for t in wanted if t not in present]
        if missing:
            raise ValueError(f"topics not in the bag: {missing}; it has {sorted(present)}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.reader.close()

    def messages(self, *topics: str) -> Iterator[tuple[str, Any]]:
        connections = [c for c in self.reader.connections if c.topic in topics]
        for connection, _, raw in self.reader.messages(connections=connections):
            yield connection.topic, self.reader.deserialize(raw, connection.msgtype)


def _scan(bag: _BagReader, summary: DropSummary) -> dict[str, Any]:
    """Pass 1: stamps and sizes of every image, all camera_info, odometry and static tf."""
    t = bag.topics
    images: list[_Stamped] = []
    depths: list[_Stamped] = []
    infos: list[tuple[float, NDArray, tuple[int, int]]] = []
    odom_stamps: list[float] = []
    odom_poses: list[NDArray] = []
    edges: dict[str, tuple[str, NDArray]] = {}
    base_frame = image_frame = ""
    for topic, msg in bag.messages(t.image, t.depth, t.camera_info, t.odom, t.tf_static):
        if topic == t.image:
            size: tuple[int, int] | None
            try:
                size = _decode_rgb(msg).shape[:2]
            except ValueError:
                size = None
            images.append(_Stamped(summary.images, _stamp(msg.header), size))
            image_frame = image_frame or msg.header.frame_id
            summary.images += 1
        elif topic == t.depth:
            try:
                size = _decode_depth(msg).shape[:2]
            except ValueError:
                size = None
                summary.dropped["depth_undecodable"] += 1
            depths.append(_Stamped(summary.depth_images, _stamp(msg.header), size))
            summary.depth_images += 1
        elif topic == t.camera_info:
            summary.camera_infos += 1
            k = np.asarray(msg.k, dtype=np.float64)
            try:
                camera = PinholeCamera.from_ros_k(k, int(msg.width), int(msg.height))
            except ValueError:
                summary.dropped["camera_info_invalid"] += 1
                continue
            infos.append((_stamp(msg.header), camera.K, (camera.height, camera.width)))
        elif topic == t.odom:
            summary.odometry += 1
            pose = _odometry_pose(msg)
            if pose is None:
                summary.dropped["odom_invalid"] += 1
                continue
            odom_stamps.append(_stamp(msg.header))
            odom_poses.append(pose)
            base_frame = base_frame or msg.child_frame_id
        else:
            for tf in msg.transforms:
                tr, q = tf.transform.translation, tf.transform.rotation
                edges[tf.child_frame_id] = (tf.header.frame_id,
                                            transform_from_translation_quat_xyzw(
                                                [tr.x, tr.y, tr.z], [q.x, q.y, q.z, q.w]))
    order = np.argsort(odom_stamps, kind="stable")
    return {
        "images": sorted(images, key=lambda s: s.stamp),
        "depths": [d for d in depths if d.size is not None],
        "infos": sorted(infos, key=lambda i: i[0]),
        "odom_stamps": np.asarray(odom_stamps, dtype=np.float64)[order],
        "odom_poses": np.asarray(odom_poses, dtype=np.float64).reshape(-1, 7)[order],
        "edges": edges,
        "base_frame": base_frame,
        "image_frame": image_frame,
    }


def _base_pose(stamps: NDArray, poses: NDArray, t: float, tol: float) -> NDArray | str:
    if not len(stamps):
        return "odom_unmatched"
    i = int(np.searchsorted(stamps, t))
    before, after = (i - 1 if i > 0 else None), (i if i < len(stamps) else None)
    nearest = min((j for j in (before, after) if j is not None), key=lambda j: abs(stamps[j] - t))
    if abs(stamps[nearest] - t) > tol:
        return "odom_out_of_tolerance"
    if before is not None and after is not None and stamps[after] - stamps[before] <= 4 * tol \
            and stamps[after] > stamps[before]:
        f = (t - stamps[before]) / (stamps[after] - stamps[before])
        xyz = (1 - f) * poses[before, :3] + f * poses[after, :3]
        q = _slerp(poses[before, 3:], poses[after, 3:], f)
    else:
        xyz, q = poses[nearest, :3], poses[nearest, 3:]
    return transform_from_translation_quat_xyzw(xyz, q / np.linalg.norm(q))


def _match(scan: dict[str, Any], options: ImportOptions, summary: DropSummary) -> list[_Frame]:
    tol = options.tolerance
    depths: list[_Stamped] = scan["depths"]
    depth_stamps = np.array([d.stamp for d in depths])
    infos = scan["infos"]
    info_stamps = np.array([i[0] for i in infos])
    frames: list[_Frame] = []
    used_depth: set[int] = set()
    for image in scan["images"]:
        if image.size is None:
            summary.dropped["image_undecodable"] += 1
            continue
        info = None
        if len(infos):
            j = int(np.argmin(np.abs(info_stamps - image.stamp)))
            if abs(info_stamps[j] - image.stamp) <= tol:
                info = infos[j]
            else:
                before = int(np.searchsorted(info_stamps, image.stamp, side="right")) - 1
                info = infos[before] if before >= 0 else None
        if info is None:
            summary.dropped["no_camera_info"] += 1
            continue
        if info[2] != image.size:
            summary.dropped["camera_info_size_mismatch"] += 1
            continue
        if not len(depths):
            summary.dropped["depth_unmatched"] += 1
            continue
        j = int(np.argmin(np.abs(depth_stamps - image.stamp)))
        if abs(depth_stamps[j] - image.stamp) > tol:
            summary.dropped["depth_out_of_tolerance"] += 1
            continue
        if depths[j].size != image.size:
            summary.dropped["depth_size_mismatch"] += 1
            continue
        pose = _base_pose(scan["odom_stamps"], scan["odom_poses"], image.stamp, tol)
        if isinstance(pose, str):
            summary.dropped[pose] += 1
            continue
        used_depth.add(depths[j].index)
        frames.append(_Frame(image.index, depths[j].index, image.stamp, pose, info[1],
                             image.size))
    summary.dropped["depth_unused"] += len(depths) - len(used_depth)
    return frames


def _episodes(frames: list[_Frame], options: ImportOptions, summary: DropSummary
              ) -> list[list[_Frame]]:
    groups: list[list[_Frame]] = []
    for frame in frames:
        current = groups[-1] if groups else None
        if current is None or frame.stamp - current[-1].stamp > options.max_gap \
                or not np.array_equal(frame.K, current[-1].K) \
                or (options.max_frames and len(current) >= options.max_frames):
            groups.append([frame])
        else:
            current.append(frame)
    kept = []
    for group in groups:
        if len(group) < options.min_frames:
            summary.dropped["episode_too_short"] += len(group)
        else:
            kept.append(group)
    return kept


def _camera_to_base(scan: dict[str, Any], options: ImportOptions) -> NDArray:
    if options.camera_to_base is not None:
        return options.camera_to_base
    if not scan["edges"]:
        raise ValueError("the bag has no /tf_static; give --camera-to-base")
    return _tf_lookup(scan["edges"], scan["base_frame"], scan["image_frame"])


def import_bag(
    bag: str | Path, out: str | Path, topics: BagTopics, options: ImportOptions | None = None
) -> DropSummary:
    """Import one bag (a rosbag2 folder, or an .mcap/.db3 file) into episode shards."""
    options = options or ImportOptions()
    if options.split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {options.split!r}")
    bag, out = Path(bag), Path(out)
    summary = DropSummary()
    with _BagReader(bag, topics) as reader:
        scan = _scan(reader, summary)
        groups = _episodes(_match(scan, options, summary), options, summary)
        if not groups:
            return summary
        cam_to_base = _camera_to_base(scan, options)
        name = bag.stem if bag.is_file() else bag.name
        _collect_and_write(reader, groups, cam_to_base, options, out, name, bag, summary)
    write_index(out, {"importer": "mirage_ros.train.bag_import"})
    return summary


def _collect_and_write(
    reader: _BagReader, groups: list[list[_Frame]], cam_to_base: NDArray,
    options: ImportOptions, out: Path, name: str, bag: Path, summary: DropSummary,
) -> None:
    """Pass 2: decode the images the episodes use and write each episode once it is complete,
    so that memory holds about one episode (bag order follows time closely)."""
    image_group = {f.image: g for g, group in enumerate(groups) for f in group}
    depth_groups: dict[int, set[int]] = {}
    for g, group in enumerate(groups):
        for f in group:
            depth_groups.setdefault(f.depth, set()).add(g)
    missing = [len(group) + len({f.depth for f in group}) for group in groups]
    rgb: dict[int, NDArray] = {}
    depth: dict[int, NDArray] = {}
    complete: list[int] = []
    counters = {reader.topics.image: 0, reader.topics.depth: 0}
    for topic, msg in reader.messages(reader.topics.image, reader.topics.depth):
        index = counters[topic]
        counters[topic] += 1
        if topic == reader.topics.image and index in image_group:
            rgb[index] = _decode_rgb(msg)
            g = image_group[index]
            missing[g] -= 1
            complete += [g] if missing[g] == 0 else []
        elif topic == reader.topics.depth and index in depth_groups:
            depth[index] = _decode_depth(msg)
            for g in depth_groups[index]:
                missing[g] -= 1
                complete += [g] if missing[g] == 0 else []
        for g in complete:
            _write_episode(out, name, g, groups[g], rgb, depth, cam_to_base, options, bag,
                           summary)
            for f in groups[g]:
                rgb.pop(f.image, None)
                depth_groups[f.depth].discard(g)
                if not depth_groups[f.depth]:
                    depth.pop(f.depth, None)
        complete.clear()


def _write_episode(
    out: Path, name: str, k: int, group: list[_Frame], rgb: dict[int, NDArray],
    depth: dict[int, NDArray], cam_to_base: NDArray, options: ImportOptions, bag: Path,
    summary: DropSummary,
) -> None:
    K = group[0].K
    height, width = group[0].size
    images = np.stack([rgb[f.image] for f in group])
    depths = np.stack([depth[f.depth] for f in group])
    if options.resize is not None:
        new_w, new_h = options.resize
        images = np.stack([cv2.resize(im, (new_w, new_h), interpolation=cv2.INTER_AREA)
                           for im in images])
        # Nearest neighbour: averaging depth across an edge would invent surfaces.
        depths = np.stack([cv2.resize(d, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
                           for d in depths])
        K = scale_intrinsics(K, (height, width), (new_h, new_w))
    base = np.stack([f.base_to_map for f in group])
    episode = Episode(images, depths, compose(base, cam_to_base), base, K,
                      np.array([f.stamp for f in group]),
                      {"source": f"rosbag2:{bag.name}", "episode": k, "split": options.split,
                       "scene_seed": None})
    write_shard(out / options.split / f"{name}-{k:03d}.npz", [episode])
    summary.frames += len(group)
    summary.episodes += 1


def _floats(text: str, n: int) -> list[float]:
    values = [float(v) for v in text.split(",")]
    if len(values) != n or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected {n} comma-separated finite numbers")
    return values


def _extrinsic(text: str, frame: str) -> NDArray:
    x, y, z, qx, qy, qz, qw = _floats(text, 7)
    if not is_unit_quat([qx, qy, qz, qw], 1e-3):
        raise argparse.ArgumentTypeError("the --camera-to-base quaternion is not unit length")
    T = transform_from_translation_quat_xyzw([x, y, z], [qx, qy, qz, qw])
    # A camera_link pose (x forward) still needs the fixed turn to the optical frame.
    return T @ OPTICAL_TO_BODY if frame == "body" else T


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mirage_ros.train.bag_import",
        description="Import a rosbag2 recording (sqlite3 or MCAP) into mirage_ros episodes.")
    parser.add_argument("bag", help="rosbag2 folder, or a single .mcap / .db3 file")
    parser.add_argument("--out", required=True, help="dataset folder")
    parser.add_argument("--image-topic", required=True, help="sensor_msgs/Image, colour")
    parser.add_argument("--depth-topic", required=True,
                        help="sensor_msgs/Image, 16UC1 (mm) or 32FC1 (m), registered to colour")
    parser.add_argument("--camera-info-topic", required=True)
    parser.add_argument("--odom-topic", required=True, help="nav_msgs/Odometry of the base")
    parser.add_argument("--tf-static-topic", default="/tf_static")
    parser.add_argument("--camera-to-base", metavar="x,y,z,qx,qy,qz,qw",
                        help="camera pose in the odometry child frame (default: /tf_static)")
    parser.add_argument("--extrinsic-frame", choices=("optical", "body"), default="optical",
                        help="--camera-to-base gives the optical frame (z forward, default) or "
                             "a camera_link body frame (x forward)")
    parser.add_argument("--tolerance", type=float, default=0.05, help="seconds")
    parser.add_argument("--max-gap", type=float, default=1.0,
                        help="seconds without frames that start a new episode")
    parser.add_argument("--max-frames", type=int, default=0, help="frames per episode, 0 = any")
    parser.add_argument("--min-frames", type=int, default=2)
    parser.add_argument("--resize", metavar="WxH", help="resize frames (K is scaled exactly)")
    parser.add_argument("--split", choices=SPLITS, default="train")
    args = parser.parse_args(argv)
    resize = None
    if args.resize:
        try:
            w, h = (int(v) for v in args.resize.lower().split("x"))
        except ValueError:
            parser.error("--resize must look like 128x128")
        resize = (w, h)
    try:
        extrinsic = (_extrinsic(args.camera_to_base, args.extrinsic_frame)
                     if args.camera_to_base else None)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    options = ImportOptions(extrinsic, args.tolerance, args.max_gap, args.max_frames,
                            args.min_frames, resize, args.split)
    topics = BagTopics(args.image_topic, args.depth_topic, args.camera_info_topic,
                       args.odom_topic, args.tf_static_topic)
    try:
        summary = import_bag(args.bag, args.out, topics, options)
    except ValueError as err:
        print(f"bag_import: {err}", file=sys.stderr)
        return 2
    print("\n".join(summary.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
