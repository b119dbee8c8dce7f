"""Bring your own data: rosbag2 recordings (sqlite3 or MCAP) -> episodes.

``python -m mirage_ros.train.bag_import BAG --out DIR --image-topic ... --depth-topic ...
--camera-info-topic ... --odom-topic ... [--camera-to-base x,y,z,qx,qy,qz,qw]``

Messages are read and deserialised with ``rosbags`` (its own type store, ROS 2 Kilted
definitions unless the bag carries its own), so no ROS installation is needed to read a bag.

The recording is replayed, in the order it was recorded, through the same core code the node
runs live (:mod:`mirage_ros.sensors`), so training data is decoded and paired exactly as the
node will see it: pixels by :mod:`~mirage_ros.sensors.image_codec`, depth by
:func:`~mirage_ros.sensors.decode_depth` (16UC1/mono16 millimetres, 32FC1 metres; NaN, inf and
non-positive depths become 0 = invalid), and images with depth, camera info and odometry by
:class:`~mirage_ros.sensors.ObservationPairer` (its docstring has the rules: depth nearest in
stamp within ``--tolerance`` and of the same size; the latest camera info, of the same size;
the base pose interpolated, linear position and slerp orientation, between the odometry
messages around the image stamp). One difference from the node: an episode needs depth, so the
pairer always expects it once a depth image has been seen (no depth timeout), and images paired
before the first depth image are dropped (``depth_unmatched``).

The camera pose is ``cam_to_map = base_to_odom (odometry) @ cam_to_base``. ``cam_to_base`` is the
pose of the camera's *optical* frame in the odometry's child frame (what ``tf2_echo base_link
camera_optical_frame`` prints): given with ``--camera-to-base`` (``--extrinsic-frame body`` if
it describes a ``camera_link`` with x forward instead), or else looked up in the bag's
``/tf_static`` from the odometry child frame to the image's ``header.frame_id``.

Frames are grouped into episodes: a new one starts after a gap longer than ``--max-gap``
seconds, when time goes back (a restarted clock), when the intrinsics change, or after
``--max-frames`` frames; episodes shorter than ``--min-frames`` are dropped. Each episode becomes
one shard ``DIR/<split>/<bag>-<k>.npz``, written as soon as it is complete, so memory holds about
one episode. Everything not used is counted in a :class:`DropSummary` and printed.
"""

from __future__ import annotations

import argparse
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
    compose,
    invert,
    is_unit_quat,
    scale_intrinsics,
    transform_from_translation_quat_xyzw,
)
from mirage_ros.sensors import (
    DROP_REASONS,
    Observation,
    ObservationPairer,
    check_depth_units,
    decode_depth,
    decode_image,
    decode_rgb8,
)
from mirage_ros.train.episodes import SPLITS, Episode, write_index, write_shard

__all__ = ["BagTopics", "DropSummary", "ImportOptions", "import_bag", "main"]

# Messages of the other topics that could not be used at all.
MESSAGE_DROPS = ("depth_undecodable", "depth_implausible", "depth_unused", "odom_invalid",
                 "camera_info_invalid")
# Why an image was not turned into a frame: undecodable, the pairer's reasons, then ours.
IMAGE_DROPS = (
    ("image_undecodable",)
    + tuple(r for r in DROP_REASONS if r not in MESSAGE_DROPS)
    + ("depth_unmatched", "episode_too_short")
)
# Images the pairer may keep waiting: a recording's odometry can lag its images by a lot more
# than a live node would wait for, and memory is not as tight offline.
_MAX_PENDING = 64


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


def _stamp(header: Any) -> float:
    return header.stamp.sec + 1e-9 * header.stamp.nanosec


def _decode_rgb(msg: Any) -> NDArray:
    return decode_rgb8(msg.data, msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian)


def _decode_depth(msg: Any) -> NDArray:
    raw = decode_image(msg.data, msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian)
    return decode_depth(raw, msg.encoding)


def _odometry_pose(msg: Any) -> NDArray | None:
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    values = np.array([p.x, p.y, p.z, q.x, q.y, q.z, q.w])
    if not np.isfinite(values).all() or not is_unit_quat(values[3:], QUAT_UNIT_TOLERANCE * 10):
        return None
    return transform_from_translation_quat_xyzw(values[:3], values[3:])


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


class _Episodes:
    """Observations in stamp order -> episode shards, each written as soon as it is complete."""

    def __init__(self, out: Path, name: str, bag: Path, options: ImportOptions,
                 summary: DropSummary, camera_to_base: Any) -> None:
        self.out, self.name, self.bag = out, name, bag
        self.options, self.summary = options, summary
        self._camera_to_base = camera_to_base  # () -> NDArray, resolved at the first write
        self._cam_to_base: NDArray | None = None
        self.current: list[Observation] = []

    def add(self, obs: Observation) -> None:
        if obs.depth is None:
            self.summary.dropped["depth_unmatched"] += 1
            return
        last = self.current[-1] if self.current else None
        if last is not None and (
            obs.stamp - last.stamp > self.options.max_gap
            or obs.stamp <= last.stamp
            or not np.array_equal(obs.K, last.K)
            or (self.options.max_frames and len(self.current) >= self.options.max_frames)
        ):
            self.finish()
        self.current.append(obs)

    def finish(self) -> None:
        group, self.current = self.current, []
        if not group:
            return
        if len(group) < self.options.min_frames:
            self.summary.dropped["episode_too_short"] += len(group)
            return
        if self._cam_to_base is None:
            self._cam_to_base = self._camera_to_base()
        self._write(group)

    def _write(self, group: list[Observation]) -> None:
        options = self.options
        K = group[0].K
        height, width = group[0].rgb.shape[:2]
        images = np.stack([o.rgb for o in group])
        depths = np.stack([o.depth for o in group])
        if options.resize is not None:
            new_w, new_h = options.resize
            images = np.stack([cv2.resize(im, (new_w, new_h), interpolation=cv2.INTER_AREA)
                               for im in images])
            # Nearest neighbour: averaging depth across an edge would invent surfaces.
            depths = np.stack([cv2.resize(d, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
                               for d in depths])
            K = scale_intrinsics(K, (height, width), (new_h, new_w))
        base = np.stack([o.base_to_map for o in group])
        k = self.summary.episodes
        episode = Episode(images, depths, compose(base, self._cam_to_base), base, K,
                          np.array([o.stamp for o in group]),
                          {"source": f"rosbag2:{self.bag.name}", "episode": k,
                           "split": options.split, "scene_seed": None})
        write_shard(self.out / options.split / f"{self.name}-{k:03d}.npz", [episode])
        self.summary.frames += len(group)
        self.summary.episodes += 1


def _static_edges(reader: _BagReader) -> dict[str, tuple[str, NDArray]]:
    """``child -> (parent, child_to_parent)`` of every transform in the bag's /tf_static."""
    edges: dict[str, tuple[str, NDArray]] = {}
    if reader.topics.tf_static not in {c.topic for c in reader.reader.connections}:
        return edges
    for _, msg in reader.messages(reader.topics.tf_static):
        for tf in msg.transforms:
            tr, q = tf.transform.translation, tf.transform.rotation
            edges[tf.child_frame_id] = (tf.header.frame_id,
                                        transform_from_translation_quat_xyzw(
                                            [tr.x, tr.y, tr.z], [q.x, q.y, q.z, q.w]))
    return edges


def import_bag(
    bag: str | Path, out: str | Path, topics: BagTopics, options: ImportOptions | None = None
) -> DropSummary:
    """Import one bag (a rosbag2 folder, or an .mcap/.db3 file) into episode shards."""
    options = options or ImportOptions()
    if options.split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {options.split!r}")
    bag, out = Path(bag), Path(out)
    summary = DropSummary()
    frames = {"base": "", "image": ""}  # odometry child frame and image frame, from the bag
    with _BagReader(bag, topics) as reader:
        edges = _static_edges(reader) if options.camera_to_base is None else {}

        def camera_to_base() -> NDArray:
            if options.camera_to_base is not None:
                return options.camera_to_base
            if not edges:
                raise ValueError("the bag has no /tf_static; give --camera-to-base")
            return _tf_lookup(edges, frames["base"], frames["image"])

        name = bag.stem if bag.is_file() else bag.name
        episodes = _Episodes(out, name, bag, options, summary, camera_to_base)
        # Depth is required, so it is always waited for once seen (no timeout).
        pairer = ObservationPairer(options.tolerance, depth_timeout=math.inf,
                                   max_pending=_MAX_PENDING)
        for topic, msg in reader.messages(topics.image, topics.depth, topics.camera_info,
                                          topics.odom):
            _feed(pairer, topic, msg, topics, summary, frames)
            for obs in pairer.pop_ready():
                episodes.add(obs)
        for obs in pairer.flush():
            episodes.add(obs)
        episodes.finish()
    summary.dropped.update({k: v for k, v in pairer.dropped.items() if v})
    if not summary.episodes:
        return summary
    write_index(out, {"importer": "mirage_ros.train.bag_import"})
    return summary


def _feed(pairer: ObservationPairer, topic: str, msg: Any, topics: BagTopics,
          summary: DropSummary, frames: dict[str, str]) -> None:
    """One bag message into the pairer; what cannot be used is counted in ``summary``."""
    if topic == topics.image:
        summary.images += 1
        frames["image"] = frames["image"] or msg.header.frame_id
        try:
            rgb = _decode_rgb(msg)
        except ValueError:
            summary.dropped["image_undecodable"] += 1
            return
        pairer.add_image(_stamp(msg.header), rgb)
    elif topic == topics.depth:
        summary.depth_images += 1
        try:
            depth = _decode_depth(msg)
        except ValueError:
            summary.dropped["depth_undecodable"] += 1
            return
        try:
            check_depth_units(depth, msg.encoding)  # the node's rule: metres stored as mm...
        except ValueError:
            summary.dropped["depth_implausible"] += 1
            return
        pairer.add_depth(_stamp(msg.header), depth)
    elif topic == topics.camera_info:
        summary.camera_infos += 1
        try:
            pairer.set_camera_info(np.asarray(msg.k, dtype=np.float64), int(msg.width),
                                   int(msg.height))
        except ValueError:
            summary.dropped["camera_info_invalid"] += 1
    else:
        summary.odometry += 1
        pose = _odometry_pose(msg)
        if pose is None:
            summary.dropped["odom_invalid"] += 1
            return
        frames["base"] = frames["base"] or msg.child_frame_id
        pairer.add_pose(_stamp(msg.header), pose)


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
