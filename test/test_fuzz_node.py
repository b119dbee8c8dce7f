"""Fuzzing the running node: malformed input on every subscription and on ScorePaths.

One node process for the module. It first gets a memory from a small synthetic RGB-D camera
(the analytic room of ``memory.synthetic``); then the good stream stops, the memory is saved and
the answers to a fixed set of good goals are recorded. Hypothesis then generates malformed
messages for each interface (camera image, depth, camera info, odometry, ~/candidate_paths,
~/planned_path) and malformed ScorePaths goals, and a flood of goals faster than they can be
served. Invariants:

* the node stays up and keeps answering;
* every malformed goal is answered with the expected error code and a message naming the field
  (path and pose index, ``horizon``, ``goal_image``, ``goal_pose``);
* every malformed message the node *received* is dropped and counted: ``received <kind>`` and
  ``dropped <kind>`` in /diagnostics grow by the same amount (the only exception is a well-formed
  image of the wrong size, which the pairer drops and counts under its own reason). Sensor topics
  are best effort (KEEP_LAST 5), so what arrives of what was sent is asserted to be a high
  fraction, not all; the accounting of what arrived is exact;
* nothing reaches the memory: afterwards the saved memory is bit-identical and the good goals get
  identical answers.

Every generated message has at least one defect, so nothing it carries can be paired with the
leftovers of the good stream into a memory write.

Cases: ``MIRAGE_FUZZ_CASES`` in total (default 350), split evenly over the seven interfaces.
The long mode, run by hand:

    MIRAGE_FUZZ_CASES=10500 .venv/bin/python -m pytest -q -s test/test_fuzz_node.py
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path as FilePath

import numpy as np
import pytest
import torch
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nav_msgs.msg import Odometry, Path
from rclpy.action import ActionClient
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from ros_harness import REPO, node_process, ros_client
from safetensors import safe_open
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from mirage_ros.action import ScorePaths
from mirage_ros.geometry import CameraRig, matrix_to_quat_xyzw, planar_pose
from mirage_ros.memory.synthetic import Room, ray_depth
from mirage_ros.msg import CandidatePaths, PathScores
from mirage_ros.rollout import arc_fan
from mirage_ros.ros.conversions import paths_to_msgs
from mirage_ros.ros.image_bridge import numpy_to_imgmsg
from mirage_ros.ros.mirage_node import MAX_STAMP_LEAD
from mirage_ros.sensors import DEPTH_ENCODINGS, DROP_REASONS, MAX_POSITION, encoding_info
from mirage_ros.srv import SaveMemory

try:  # the deep action-service QoS of the node (ROS's default keeps only 10 requests)
    from mirage_ros.ros.qos import action_qos_kwargs
except ImportError:  # pragma: no cover - an older tree
    def action_qos_kwargs() -> dict:
        deep = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000,
                          reliability=ReliabilityPolicy.RELIABLE)
        return {f"{k}_service_qos_profile": deep for k in ("goal", "result", "cancel")}

pytestmark = pytest.mark.ros
Result = ScorePaths.Result

CASES = int(os.environ.get("MIRAGE_FUZZ_CASES", "350"))
TOPICS = ("image", "depth", "camera_info", "odom", "candidate_paths", "planned_path")
PER_INTERFACE = max(7, CASES // (len(TOPICS) + 1))
NODE = "mirage_fuzz"
SIZE = 128  # the good camera's image size
MAX_PATHS, MAX_POSES, MAX_HORIZON = 1024, 10000, 64  # config/mirage.yaml
# Of the messages sent on a best-effort topic, the share that must arrive (measured: all of
# them on an idle machine; the margin is for a machine busy with other tests).
MIN_DELIVERY = 0.5
FUZZ_SETTINGS = settings(max_examples=PER_INTERFACE, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))

# ---------------------------------------------------------------- the good side


class Rig:
    """The test's side of the graph: publishers on every input, the action, save_memory and the
    node's /diagnostics."""

    def __init__(self, client, proc) -> None:
        self.client, self.proc = client, proc
        node = client.node
        sensor = qos_profile_sensor_data
        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                              reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {
            "image": node.create_publisher(Image, "/camera/image_raw", sensor),
            "depth": node.create_publisher(Image, "/camera/depth", sensor),
            "camera_info": node.create_publisher(CameraInfo, "/camera/camera_info", sensor),
            "odom": node.create_publisher(Odometry, "/odom", sensor),
            "candidate_paths": node.create_publisher(
                CandidatePaths, f"/{NODE}/candidate_paths", reliable),
            "planned_path": node.create_publisher(Path, f"/{NODE}/planned_path", reliable),
        }
        # A planner that sends bursts needs the deep service QoS on its side too.
        self.action = ActionClient(node, ScorePaths, f"/{NODE}/score_paths",
                                   **action_qos_kwargs())
        self.save_client = node.create_client(SaveMemory, f"/{NODE}/save_memory")
        self.diags: list[dict[str, str]] = []
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.path_scores: list[PathScores] = []
        node.create_subscription(PathScores, f"/{NODE}/path_scores", self.path_scores.append, 10)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == f"{NODE}: imagination":
                self.diags.append({kv.key: kv.value for kv in status.values})

    def discover(self) -> None:
        if not self.action.wait_for_server(timeout_sec=60.0):
            raise TimeoutError(f"action server never appeared; node log:\n{self.proc.log()}")
        self.client.spin_until(
            lambda: all(p.get_subscription_count() > 0 for p in self.pubs.values())
            and self.save_client.service_is_ready(), 30.0, "the node's subscriptions")
        self.fresh()

    def fresh(self, timeout: float = 30.0) -> dict[str, str]:
        """The next /diagnostics status published from now on."""
        n = len(self.diags)
        self.client.spin_until(lambda: len(self.diags) > n, timeout, "/diagnostics")
        return self.diags[-1]

    def settled(self, timeout: float = 60.0) -> dict[str, str]:
        """Diagnostics once every count has stopped changing and no image waits for pairing."""
        deadline = time.monotonic() + timeout
        previous = None
        while time.monotonic() < deadline:
            d = self.fresh()
            counts = {k: v for k, v in d.items() if k.startswith(("received", "dropped"))
                      or k in ("observations written", "voxels")}
            if counts == previous and d.get("images waiting") == "0":
                return d
            previous = counts
        raise TimeoutError("the node's counts never settled")

    def send(self, goal: ScorePaths.Goal, timeout: float = 120.0) -> ScorePaths.Result:
        handle = self.client.result(self.action.send_goal_async(goal), what="acceptance")
        assert handle.accepted
        return self.client.result(handle.get_result_async(), timeout, "the result").result

    def save(self, path: str) -> dict:
        response = self.client.result(
            self.save_client.call_async(SaveMemory.Request(path=path)), what="save_memory")
        assert response.success, response.message
        return read_memory(path)


def count(diag: dict[str, str], key: str) -> int:
    return int(diag.get(key, "0"))


def peak_rss(pid: int) -> int:
    """Peak resident memory of a process, bytes (Linux)."""
    for line in FilePath(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def read_memory(path: str) -> dict:
    """Every tensor's bytes and the metadata of a saved memory (what bit-identical compares)."""
    with safe_open(path, "np") as f:
        tensors = {k: (f.get_tensor(k).dtype.str, f.get_tensor(k).shape,
                       f.get_tensor(k).tobytes()) for k in f.keys()}
        return {"tensors": tensors, "metadata": dict(f.metadata() or {})}


def stamp_msg(seconds: float) -> Time:
    """A builtin_interfaces/Time, clamped to what the message can hold."""
    seconds = min(max(seconds, -(2.0 ** 31)), 2.0 ** 31 - 1.0)
    sec = math.floor(seconds)
    return Time(sec=int(sec), nanosec=min(int((seconds - sec) * 1e9), 999_999_999))


class GoodCamera:
    """Frames of the analytic room from a robot turning on a 0.3 m circle (as the benchmarks'
    synthetic camera), published camera info, depth and odometry first, so each image pairs at
    once."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.camera = CameraRig.create(SIZE, SIZE)
        self.K = torch.from_numpy(self.camera.camera.K)
        self.room = Room()

    @staticmethod
    def pose(tick: int) -> tuple[float, float, float]:
        yaw = 0.15 * tick
        return 0.3 * math.cos(yaw), 0.3 * math.sin(yaw), yaw

    def render(self, tick: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        base = planar_pose(*self.pose(tick))
        cam = torch.from_numpy(self.camera.cam_to_map(base))
        depth = ray_depth(cam[None], self.K, (SIZE, SIZE), self.room)[0].numpy()
        grey = (255 * np.exp(-depth / 4.0)).clip(0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, 2), depth.astype(np.float32), base

    def publish(self, tick: int, stamp: Time, depth_only: bool = False) -> None:
        rgb, depth, base = self.render(tick)
        header = Header(stamp=stamp, frame_id="camera_optical_frame")
        info = CameraInfo(header=header, width=SIZE, height=SIZE)
        info.k = [float(v) for v in self.camera.camera.ros_k().ravel()]
        odom = Odometry()
        odom.header.stamp, odom.header.frame_id, odom.child_frame_id = stamp, "map", "base_link"
        p, o = odom.pose.pose.position, odom.pose.pose.orientation
        p.x, p.y = float(base[0, 3]), float(base[1, 3])
        o.x, o.y, o.z, o.w = (float(v) for v in matrix_to_quat_xyzw(base))
        self.rig.pubs["camera_info"].publish(info)
        self.rig.pubs["depth"].publish(numpy_to_imgmsg(depth, "32FC1", header))
        self.rig.pubs["odom"].publish(odom)
        if not depth_only:
            self.rig.pubs["image"].publish(numpy_to_imgmsg(rgb, "rgb8", header))


def fan_goal(pose, n: int, horizon: int = 0, previews: int = 0) -> ScorePaths.Goal:
    x, y, yaw = pose
    fan = arc_fan(n, length=1.5, poses=7, max_curvature=1.0, start_xy=(x, y), start_yaw=yaw)
    goal = ScorePaths.Goal(paths=paths_to_msgs(fan), horizon=horizon, num_previews=previews)
    goal.header.frame_id = "map"
    return goal


def good_goals(camera: GoodCamera, pose) -> dict[str, ScorePaths.Goal]:
    x, y, yaw = pose
    goals = {"fan5": fan_goal(pose, 5), "flood": fan_goal(pose, 3, horizon=2)}
    with_pose = fan_goal(pose, 3, horizon=4, previews=2)
    with_pose.goal_pose.header.frame_id = "map"
    with_pose.goal_pose.pose.position.x = x + 1.5 * math.cos(yaw)
    with_pose.goal_pose.pose.position.y = y + 1.5 * math.sin(yaw)
    with_pose.goal_pose.pose.orientation.w = 1.0
    goals["goal_pose"] = with_pose
    with_image = fan_goal(pose, 3, horizon=3)
    with_image.goal_image = numpy_to_imgmsg(camera.render(3)[0], "rgb8")
    goals["goal_image"] = with_image
    small = fan_goal(pose, 2, horizon=2)  # a goal image of another size: resized like frames
    small.goal_image = numpy_to_imgmsg(camera.render(5)[0][::4, ::2].copy(), "rgb8")
    goals["small_goal_image"] = small
    return goals


def answer(result: ScorePaths.Result) -> tuple:
    """Everything of a result that must repeat, bit for bit, on the same memory."""
    return (result.error_code, result.error_msg, tuple(result.scores), result.best_index,
            tuple((tuple(c.names), tuple(c.costs)) for c in result.critics),
            tuple(result.preview_indices), tuple(bytes(p.data) for p in result.previews))


@dataclass
class Fuzz:
    rig: Rig
    pose: tuple[float, float, float]
    goals: dict[str, ScorePaths.Goal]
    answers: dict[str, tuple]
    memory: dict
    before: dict[str, str]
    tmp: str
    rss: int  # the node's peak resident memory before fuzzing


@pytest.fixture(scope="module")
def fuzz():
    args = ["--params-file", str(REPO / "config" / "mirage.yaml"), "-r", f"__node:={NODE}",
            "-p", "observe.max_rate:=20.0"]
    with node_process("mirage_ros.ros.mirage_node", args) as proc:
        with ros_client("fuzzer") as client, tempfile.TemporaryDirectory() as tmp:
            rig = Rig(client, proc)
            rig.discover()
            camera = GoodCamera(rig)
            tick = 0
            while count(rig.diags[-1], "observations written") < 12:
                assert tick < 400, "the node wrote too few observations"
                tick += 1
                camera.publish(tick, client.node.get_clock().now().to_msg())
                client.executor.spin_once(timeout_sec=0.05)
            # Depth and odometry once more, a tenth of a second later at the same pose: an image
            # whose own depth or pose was lost in transport is decided now, not during fuzzing.
            last = client.node.get_clock().now().nanoseconds * 1e-9
            for _ in range(3):
                camera.publish(tick, stamp_msg(last + 0.1), depth_only=True)
            before = rig.settled()
            pose = camera.pose(tick)
            goals = good_goals(camera, pose)
            answers = {name: answer(rig.send(goal)) for name, goal in goals.items()}
            for name, a in answers.items():
                assert a[0] == Result.SUCCESS, (name, a[1])
            memory = rig.save(str(FilePath(tmp) / "before.safetensors"))
            assert count(before, "voxels") > 0 and memory["tensors"]
            yield Fuzz(rig, pose, goals, answers, memory, before, tmp, peak_rss(proc.proc.pid))


# ---------------------------------------------------------------- strategies

NO_NUL = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
# rcl strings end at NUL, so "rgb8\x00x" would arrive as the good "rgb8": texts avoid it.


def text(**kwargs):
    return st.text(alphabet=NO_NUL, **kwargs)


@dataclass
class Case:
    msg: object
    stamp: tuple[str, float] | None  # (how, value) resolved at publish time; None: leave it
    outcome: str = "callback"  # where the node must drop it: its callback, or the pairer
    defect: str = ""


def stamps(future: bool = False):
    """('future', s ahead) or any other stamp: near now, in the past, jumping back, 1970."""
    if future:
        return st.tuples(st.just("ahead"), st.floats(MAX_STAMP_LEAD + 20.0, 2.0e9))
    return st.one_of(
        st.tuples(st.just("ahead"), st.floats(-0.5, 0.5)),
        st.tuples(st.just("ahead"), st.floats(-1.0e6, -1.5)),
        st.tuples(st.just("at"), st.floats(0.0, 1.0e6)),
    )


def resolve(stamp: tuple[str, float]) -> Time:
    how, value = stamp
    return stamp_msg(time.time() + value if how == "ahead" else value)


def rng(draw) -> np.random.Generator:
    return np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))


def raw_image(encoding, height, width, step, data, bigendian=0) -> Image:
    msg = Image(height=height, width=width, encoding=encoding, step=step,
                is_bigendian=bigendian)
    msg.data = bytes(data)
    return msg


RGB_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
LAYOUT_DEFECTS = ("step_small", "truncated", "too_long", "zero_size", "huge")


def layout_defect(draw, defect: str, encoding: str, h: int, w: int, gen) -> Image:
    """An image whose fields disagree (for an encoding the codec knows)."""
    dtype, channels = encoding_info(encoding)
    row = w * channels * dtype.itemsize
    step = row + draw(st.integers(0, 5))
    n = step * h
    if defect == "step_small":
        step = draw(st.integers(0, row - 1))
        n = step * h
    elif defect == "truncated":
        n = draw(st.integers(0, n - 1))
    elif defect == "too_long":
        n += draw(st.integers(1, 64))
    elif defect == "zero_size":
        h, w = (0, w) if draw(st.booleans()) else (h, 0)
        step = draw(st.integers(0, 2 ** 32 - 1))
        n = draw(st.integers(0, 64))
    elif defect == "huge":
        h = draw(st.integers(2 ** 16, 2 ** 32 - 1))
        w = draw(st.integers(2 ** 16, 2 ** 32 - 1))
        step = draw(st.integers(0, 2 ** 32 - 1))
        n = draw(st.integers(0, 4096))
    return raw_image(encoding, h, w, step, gen.integers(0, 256, n, dtype=np.uint8),
                     draw(st.integers(0, 1)))


def consistent(encoding: str, array: np.ndarray, bigendian: int) -> Image:
    """A well-formed image of ``array`` (rows padded by nothing), either byte order."""
    dtype, _ = encoding_info(encoding)
    wire = array.astype(dtype.newbyteorder(">" if bigendian else "<"))
    h, w = array.shape[:2]
    return raw_image(encoding, h, w, wire.nbytes // h, wire.tobytes(), bigendian)


def any_layout(encoding: str, values: np.ndarray, draw) -> Image:
    """A well-formed image of ``values`` ``[h, w, 4]`` if the codec knows ``encoding`` (its
    channels taken from ``values``), else ``values`` as float32 bytes under that name."""
    try:
        dtype, channels = encoding_info(encoding)
    except ValueError:
        h, w = values.shape[:2]
        data = values.astype(np.float32).tobytes()
        return raw_image(encoding, h, w, len(data) // h, data)
    return consistent(encoding, values[:, :, :channels].astype(dtype), draw(st.integers(0, 1)))


@st.composite
def image_cases(draw) -> Case:
    defect = draw(st.sampled_from(("encoding", *LAYOUT_DEFECTS, "future", "size_mismatch")))
    gen = rng(draw)
    encoding = draw(st.sampled_from(RGB_ENCODINGS))
    h, w = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    stamp = draw(stamps(defect == "future"))
    if defect in LAYOUT_DEFECTS:
        return Case(layout_defect(draw, defect, encoding, h, w, gen), stamp, defect=defect)
    if defect == "encoding":
        encoding = draw(st.sampled_from(("", "rgba16", "bgr16", "mono16", "16UC1", "32FC1",
                                         "8UC3", "8UC4", "bayer_rggb8", "RGB8", "yuv422"))
                        | text(max_size=12).filter(lambda e: e not in RGB_ENCODINGS))
        return Case(any_layout(encoding, gen.integers(0, 100, (h, w, 4)), draw), stamp,
                    defect=defect)
    if defect == "future" and draw(st.booleans()):
        h = w = SIZE  # the right size: only the stamp is wrong
    if defect == "size_mismatch":
        assert (h, w) != (SIZE, SIZE)
    channels = encoding_info(encoding)[1]
    array = gen.integers(0, 256, (h, w, channels), dtype=np.uint8)
    msg = consistent(encoding, array, draw(st.integers(0, 1)))
    return Case(msg, stamp, "pairer" if defect == "size_mismatch" else "callback", defect)


def depth_array(gen, h: int, w: int, values: np.ndarray, dtype) -> np.ndarray:
    """``values`` on a random share of the pixels (at least one), invalid elsewhere."""
    out = values.astype(dtype)
    invalid = gen.random((h, w)) < gen.random() * 0.9
    invalid.flat[gen.integers(0, h * w)] = False
    out[invalid] = np.nan if np.dtype(dtype).kind == "f" else 0
    return out


@st.composite
def depth_cases(draw) -> Case:
    defect = draw(st.sampled_from(("encoding", *LAYOUT_DEFECTS, "metres_as_16UC1",
                                   "millimetres_as_32FC1", "denormal", "future")))
    gen = rng(draw)
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    bigendian = draw(st.integers(0, 1))
    stamp = draw(stamps(defect == "future"))
    if defect in LAYOUT_DEFECTS:
        encoding = draw(st.sampled_from(DEPTH_ENCODINGS))
        return Case(layout_defect(draw, defect, encoding, h, w, gen), stamp, defect=defect)
    if defect == "encoding":
        encoding = draw(st.sampled_from(("rgb8", "mono8", "8UC1", "16SC1", "32FC3", "64FC1",
                                         "32SC1", "", "bgr8", "16UC3", "32fc1"))
                        | text(max_size=12).filter(lambda e: e not in DEPTH_ENCODINGS))
        return Case(any_layout(encoding, gen.uniform(0.5, 5.0, (h, w, 4)), draw), stamp,
                    defect=defect)
    if defect == "metres_as_16UC1":
        encoding = draw(st.sampled_from(("16UC1", "mono16")))
        array = depth_array(gen, h, w, gen.integers(1, 41, (h, w)), np.uint16)
    elif defect == "millimetres_as_32FC1":
        encoding, array = "32FC1", depth_array(gen, h, w, gen.uniform(250.0, 1e5, (h, w)),
                                               np.float32)
    elif defect == "denormal":
        encoding, array = "32FC1", depth_array(gen, h, w, gen.uniform(1.4e-45, 1.1e-38, (h, w)),
                                               np.float32)
    else:  # future, with a plausible depth image
        encoding, array = "32FC1", depth_array(gen, h, w, gen.uniform(0.5, 5.0, (h, w)),
                                               np.float32)
    return Case(consistent(encoding, array, bigendian), stamp, defect=defect)


BAD_NUMBERS = {
    "zero": st.just(0.0),
    "negative": st.floats(-1e300, -1e-300),
    "nan": st.just(math.nan),
    "inf": st.sampled_from((math.inf, -math.inf)),
    "denormal": st.floats(5e-324, 2.2e-308),
    "absurd": st.floats(1e14, 1e300),
}


@st.composite
def camera_info_cases(draw) -> Case:
    sizes = st.integers(1, 4096) | st.integers(1, 2 ** 32 - 1)
    w, h = draw(sizes), draw(sizes)
    fx, fy = draw(st.floats(20.0, 5000.0)), draw(st.floats(20.0, 5000.0))
    k = [fx, 0.0, w / 2.0, 0.0, fy, h / 2.0, 0.0, 0.0, 1.0]
    defect = draw(st.sampled_from(("focal", "skew", "bottom_row", "zero_size", "centre")))
    if defect == "focal":
        k[draw(st.sampled_from((0, 4)))] = draw(st.one_of(*BAD_NUMBERS.values()))
    elif defect == "skew":
        k[draw(st.sampled_from((1, 3)))] = draw(st.floats(1e-300, 1e3) | st.floats(-1e3, -1e-300))
    elif defect == "bottom_row":
        i = draw(st.sampled_from((6, 7, 8)))
        k[i] = draw(st.floats(allow_nan=True).filter(lambda v: v != (1.0 if i == 8 else 0.0)))
    elif defect == "zero_size":
        w, h = (0, h) if draw(st.booleans()) else (w, 0)
    else:
        i, size = draw(st.sampled_from(((2, w), (5, h))))
        k[i] = draw(st.sampled_from((math.nan, math.inf, -math.inf))
                    | st.floats(2.0 * size + 1.0, 1e300) | st.floats(-1e300, -size - 1.0))
    msg = CameraInfo(width=w, height=h, distortion_model=draw(text(max_size=10)))
    msg.k = k
    msg.d = draw(st.lists(st.floats(), max_size=6))
    return Case(msg, draw(stamps()), defect=defect)


def unit_quaternion(gen) -> np.ndarray:
    q = gen.normal(size=4)
    return q / np.linalg.norm(q)


def bad_quaternion(draw, gen) -> tuple[str, np.ndarray]:
    kind = draw(st.sampled_from(("zero", "scaled", "nan", "inf", "denormal")))
    q = unit_quaternion(gen)
    if kind == "zero":
        q = np.zeros(4)
    elif kind == "scaled":
        q = q * draw(st.floats(0.0, 0.98) | st.floats(1.02, 1e150))
    elif kind in ("nan", "inf"):
        q[draw(st.integers(0, 3))] = math.nan if kind == "nan" else math.inf
    else:
        q = q * draw(st.floats(5e-324, 1e-310))
    return kind, q


def bad_position(draw) -> tuple[str, float]:
    kind = draw(st.sampled_from(("nan", "inf", "far")))
    value = {"nan": math.nan, "inf": draw(st.sampled_from((math.inf, -math.inf))),
             "far": draw(st.floats(MAX_POSITION * 1.0001, 1.7e308))}[kind]
    return kind, value * draw(st.sampled_from((1.0, -1.0)))


@st.composite
def odom_cases(draw) -> Case:
    gen = rng(draw)
    msg = Odometry()
    msg.header.frame_id, msg.child_frame_id = "map", draw(text(max_size=10))
    p, o = msg.pose.pose.position, msg.pose.pose.orientation
    p.x, p.y, p.z = (float(v) for v in gen.uniform(-50.0, 50.0, 3))
    q = unit_quaternion(gen)
    msg.twist.twist.linear.x = draw(st.floats())
    msg.pose.covariance = [draw(st.floats())] * 36
    defect = draw(st.sampled_from(("position", "orientation", "frame", "future")))
    if defect == "position":
        defect, value = bad_position(draw)
        setattr(p, draw(st.sampled_from("xyz")), value)
    elif defect == "orientation":
        defect, q = bad_quaternion(draw, gen)
    elif defect == "frame":
        msg.header.frame_id = draw(text(max_size=12).filter(lambda f: f != "map"))
    o.x, o.y, o.z, o.w = (float(v) for v in q)
    return Case(msg, draw(stamps(defect == "future")), defect=defect)


def valid_path(draw, gen, pose) -> Path:
    x, y, yaw = pose
    n = draw(st.integers(1, 9))
    path = Path()
    path.header.frame_id = "map"
    for i in range(n):
        ps = PoseStamped()
        ps.header.frame_id = "map"
        heading = yaw + float(gen.uniform(-1.0, 1.0))
        ps.pose.position.x = x + 0.2 * i * math.cos(heading)
        ps.pose.position.y = y + 0.2 * i * math.sin(heading)
        ps.pose.orientation.z, ps.pose.orientation.w = math.sin(heading / 2), math.cos(heading / 2)
        path.poses.append(ps)
    return path


PATH_DEFECTS = ("empty_path", "too_many_poses", "position", "orientation", "empty_frame",
                "unknown_frame")


def break_paths(draw, gen, paths: list[Path], defect: str) -> tuple[int, str, str]:
    """Apply ``defect`` to one of ``paths``; (code, expected text, frame the container must
    have: '' for empty_frame, else 'map')."""
    i = draw(st.integers(0, len(paths) - 1))
    path = paths[i]
    if defect == "empty_path":
        path.poses = []
        return Result.INVALID_INPUT, f"path {i}: has no poses", "map"
    if defect == "too_many_poses":
        n = draw(st.integers(MAX_POSES + 1, MAX_POSES + 20))
        path.poses = [path.poses[0]] * n
        return Result.INVALID_INPUT, f"path {i}: has {n} poses", "map"
    if defect == "empty_frame":
        path.header.frame_id = ""
        return Result.INVALID_INPUT, f"path {i}: empty frame_id", ""
    if defect == "unknown_frame":
        frame = draw(st.sampled_from(("odom", "base_link", "Map", " map"))
                     | text(min_size=1, max_size=12).filter(lambda f: f != "map"))
        path.header.frame_id = frame
        return Result.TRANSFORM_ERROR, f"path {i}: frame '{frame}' cannot be resolved", "map"
    j = draw(st.integers(0, len(path.poses) - 1))
    pose = path.poses[j].pose
    if defect == "position":
        kind, value = bad_position(draw)
        setattr(pose.position, draw(st.sampled_from("xyz")), value)
        text_ = "position is NaN or infinite" if kind != "far" else "position"
    else:
        kind, q = bad_quaternion(draw, gen)
        pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (
            float(v) for v in q)
        text_ = "orientation"
    return Result.INVALID_INPUT, f"path {i}, pose {j}: {text_}", "map"


@st.composite
def path_list_cases(draw, pose) -> tuple[list[Path], int, str, str, str]:
    """(paths, code, expected text, container frame, defect) for CandidatePaths and goals."""
    gen = rng(draw)
    defect = draw(st.sampled_from(("no_paths", "too_many_paths", *PATH_DEFECTS)))
    if defect == "no_paths":
        return [], Result.INVALID_INPUT, "goal has no paths", "map", defect
    if defect == "too_many_paths":
        n = draw(st.integers(MAX_PATHS + 1, MAX_PATHS + 30))
        return [Path()] * n, Result.INVALID_INPUT, f"goal has {n} paths; max_paths is " \
            f"{MAX_PATHS}", "map", defect
    paths = [valid_path(draw, gen, pose) for _ in range(draw(st.integers(1, 4)))]
    code, expect, frame = break_paths(draw, gen, paths, defect)
    return paths, code, expect, frame, defect


@st.composite
def candidate_paths_cases(draw, pose) -> Case:
    paths, _, _, frame, defect = draw(path_list_cases(pose))
    msg = CandidatePaths(paths=paths)
    msg.header.frame_id = frame
    msg.header.stamp = stamp_msg(draw(st.floats(-1e6, 2e9)))
    return Case(msg, None, defect=defect)


@st.composite
def planned_path_cases(draw, pose) -> Case:
    gen = rng(draw)
    paths = [valid_path(draw, gen, pose)]
    defect = draw(st.sampled_from(PATH_DEFECTS))
    break_paths(draw, gen, paths, defect)
    paths[0].header.stamp = stamp_msg(draw(st.floats(-1e6, 2e9)))
    return Case(paths[0], None, defect=defect)


@dataclass
class GoalCase:
    goal: ScorePaths.Goal
    code: int
    expect: str
    defect: str


@st.composite
def goal_cases(draw, pose) -> GoalCase:
    gen = rng(draw)
    goal = ScorePaths.Goal(horizon=draw(st.integers(0, MAX_HORIZON)),
                           num_previews=draw(st.integers(0, 2 ** 32 - 1)))
    goal.header.frame_id = "map"
    goal.header.stamp = stamp_msg(draw(st.floats(-1e6, 2e9)))
    goal.paths = [valid_path(draw, gen, pose) for _ in range(draw(st.integers(1, 3)))]
    defect = draw(st.sampled_from(("paths", "horizon", "goal_image", "goal_pose")))
    if defect == "paths":
        paths, code, expect, frame, defect = draw(path_list_cases(pose))
        goal.paths, goal.header.frame_id = paths, frame
        return GoalCase(goal, code, expect, defect)
    if defect == "horizon":
        goal.horizon = draw(st.integers(MAX_HORIZON + 1, 2 ** 32 - 1))
        return GoalCase(goal, Result.INVALID_INPUT,
                        f"horizon {goal.horizon} exceeds max_horizon {MAX_HORIZON}", defect)
    if defect == "goal_image":
        h, w = draw(st.integers(1, 64)), draw(st.integers(1, 64))
        kind = draw(st.sampled_from(("encoding", "zero_with_data", *LAYOUT_DEFECTS)))
        if kind == "encoding":
            encoding = draw(st.sampled_from(("", "rgba16", "mono16", "32FC1", "8UC3", "RGB8"))
                            | text(max_size=12).filter(lambda e: e not in RGB_ENCODINGS))
            goal.goal_image = raw_image(encoding, h, w, w * 3,
                                        gen.integers(0, 256, h * w * 3, dtype=np.uint8))
        elif kind == "zero_with_data":
            goal.goal_image = raw_image("rgb8", *((0, w) if draw(st.booleans()) else (h, 0)),
                                        w * 3, gen.integers(0, 256, draw(st.integers(1, 99)),
                                                            dtype=np.uint8))
        elif kind == "zero_size":  # width or height 0 without data is "no goal image": skip
            kind = "huge"
            goal.goal_image = layout_defect(draw, kind, "rgb8", h, w, gen)
        else:
            goal.goal_image = layout_defect(draw, kind, "rgb8", h, w, gen)
        return GoalCase(goal, Result.INVALID_INPUT, "goal_image: ", f"goal_image {kind}")
    gp = goal.goal_pose
    gp.header.frame_id = "map"
    gp.pose.position.x, gp.pose.position.y = pose[0] + 1.0, pose[1]
    gp.pose.orientation.w = 1.0
    kind = draw(st.sampled_from(("position", "orientation", "frame")))
    if kind == "position":
        which, value = bad_position(draw)
        setattr(gp.pose.position, draw(st.sampled_from("xyz")), value)
        expect = "goal_pose: NaN or infinite" if which != "far" else "goal_pose: position"
        code = Result.INVALID_INPUT
    elif kind == "orientation":
        which, q = bad_quaternion(draw, gen)
        gp.pose.orientation.x, gp.pose.orientation.y, gp.pose.orientation.z, \
            gp.pose.orientation.w = (float(v) for v in q)
        expect = ("goal_pose: NaN or infinite" if which in ("nan", "inf")
                  else "goal_pose: orientation quaternion has length")
        code = Result.INVALID_INPUT
    else:
        gp.header.frame_id = draw(text(min_size=1, max_size=12).filter(lambda f: f != "map"))
        expect, code = f"goal_pose: frame '{gp.header.frame_id}' cannot be resolved", \
            Result.TRANSFORM_ERROR
    return GoalCase(goal, code, expect, f"goal_pose {kind}")


STRATEGIES = {
    "image": lambda pose: image_cases(),
    "depth": lambda pose: depth_cases(),
    "camera_info": lambda pose: camera_info_cases(),
    "odom": lambda pose: odom_cases(),
    "candidate_paths": candidate_paths_cases,
    "planned_path": planned_path_cases,
}
WARNINGS = {"image": "dropped a image message: ", "depth": "dropped a depth message: ",
            "camera_info": "dropped a camera_info message: ",
            "odom": "dropped a odom message: ", "candidate_paths": "~/candidate_paths: ",
            "planned_path": "~/planned_path: "}
# The pairer's reasons for dropping an image (depth_unused is about depth images).
IMAGE_REASONS = tuple(r for r in DROP_REASONS if r != "depth_unused")


def report(what: str, text_: str) -> None:
    print(f"[fuzz] {what}: {text_}", file=sys.stderr)


def poses_in(msg) -> int:
    if isinstance(msg, Path):
        return len(msg.poses)
    return sum(len(p.poses) for p in msg.paths) + len(msg.paths) if hasattr(msg, "paths") else 0


def pace(pub, msg) -> None:
    """Publish no faster than the node takes messages: its subscriptions keep the last 5
    (sensors, best effort) or 10 (paths, reliable) and overwrite the rest. Measured: 3 ms
    between sensor messages and 10 ms between path messages lose none on an idle machine, and
    rclpy deserialises a pose in ~20 us (a 10000-pose path: 0.2 s on a busy machine)."""
    reliable = pub.qos_profile.reliability == ReliabilityPolicy.RELIABLE
    time.sleep((0.01 if reliable else 0.003) + 4e-5 * poses_in(msg))


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("kind", TOPICS)
def test_malformed_messages_are_dropped_and_counted(fuzz, kind):
    rig = fuzz.rig
    before = rig.settled()
    pub = rig.pubs[kind]
    sent: Counter = Counter()
    defects: Counter = Counter()
    scores_before = len(rig.path_scores)
    started = time.monotonic()

    @FUZZ_SETTINGS
    @given(case=STRATEGIES[kind](fuzz.pose))
    def publish(case: Case):
        if case.stamp is not None:
            case.msg.header.stamp = resolve(case.stamp)
        pub.publish(case.msg)
        sent[case.outcome] += 1
        defects[case.defect] += 1
        pace(pub, case.msg)

    publish()
    elapsed = time.monotonic() - started
    after = rig.settled()
    n = sum(sent.values())

    def delta(key: str) -> int:
        return count(after, key) - count(before, key)

    received, dropped = delta(f"received {kind}"), delta(f"dropped {kind}")
    by_pairer = sum(delta(f"dropped {r}") for r in IMAGE_REASONS)
    report(kind, f"{n} sent in {elapsed:.1f} s, {received} received, {dropped} dropped by the "
                 f"callback, {by_pairer} by the pairer; defects {dict(defects)}")
    assert rig.proc.alive(), rig.proc.log()
    assert received <= n
    assert received >= MIN_DELIVERY * n, f"only {received} of {n} {kind} messages arrived"
    # Exact: every message that arrived was dropped, once, where it should have been.
    assert dropped + by_pairer == received
    assert dropped <= sent["callback"] and by_pairer <= sent["pairer"]
    if kind != "image":
        assert by_pairer == 0 and delta("dropped depth_unused") == 0
    # ...and nothing reached the memory or the outputs.
    assert delta("observations written") == 0
    assert count(after, "voxels") == count(fuzz.before, "voxels")
    assert len(rig.path_scores) == scores_before
    if dropped:
        assert WARNINGS[kind] in rig.proc.log()
    if by_pairer:
        assert "pairing dropped camera frames since the last warning: " in rig.proc.log()


def test_malformed_goals_are_answered_with_a_code_and_the_field(fuzz):
    rig = fuzz.rig
    defects: Counter = Counter()
    started = time.monotonic()

    @FUZZ_SETTINGS
    @given(case=goal_cases(fuzz.pose))
    def send(case: GoalCase):
        result = rig.send(case.goal)
        assert result.error_code == case.code, (case.defect, result.error_msg)
        assert case.expect in result.error_msg, (case.defect, result.error_msg)
        assert len(result.scores) == 0 and len(result.previews) == 0
        defects[case.defect] += 1

    send()
    report("goal", f"{sum(defects.values())} goals in {time.monotonic() - started:.1f} s; "
                   f"defects {dict(defects)}")
    assert rig.proc.alive()


def test_a_flood_of_goals_is_answered_goal_by_goal(fuzz):
    """200 goals sent at once, every fourth malformed: each gets an answer; the newest (a good
    one) is not preempted; every success is the recorded answer."""
    rig = fuzz.rig
    good = fuzz.goals["flood"]
    bad = fan_goal(fuzz.pose, 2)
    bad.paths[1].poses[1].pose.position.x = math.nan
    goals = [bad if i % 4 == 1 else good for i in range(200)]
    started = time.monotonic()
    futures = [rig.action.send_goal_async(g) for g in goals]
    handles = [rig.client.result(f, what="acceptance") for f in futures]
    assert all(h.accepted for h in handles)
    results = [rig.client.result(h.get_result_async(), 120.0, "a flooded goal's result").result
               for h in handles]
    elapsed = time.monotonic() - started
    codes = Counter(r.error_code for r in results)
    report("flood", f"200 goals answered in {elapsed:.1f} s: {dict(codes)}")
    for goal, result in zip(goals, results, strict=True):
        if result.error_code == Result.PREEMPTED:
            assert "preempted by a newer ScorePaths goal" in result.error_msg
        elif goal is good:
            assert answer(result) == fuzz.answers["flood"]
        else:
            assert result.error_code == Result.INVALID_INPUT
            assert "path 1, pose 1: position is NaN or infinite" in result.error_msg
    assert codes[Result.SUCCESS] >= 1  # the newest goal ran to its end
    assert set(codes) <= {Result.SUCCESS, Result.PREEMPTED, Result.INVALID_INPUT}
    # still responsive, and still the same answer
    assert answer(rig.send(good)) == fuzz.answers["flood"]


def test_memory_and_answers_are_unchanged_after_fuzzing(fuzz):
    rig = fuzz.rig
    assert rig.proc.alive()
    after = rig.settled()
    assert count(after, "observations written") == count(fuzz.before, "observations written")
    assert count(after, "voxels") == count(fuzz.before, "voxels")
    memory = rig.save(str(FilePath(fuzz.tmp) / "after.safetensors"))
    assert memory == fuzz.memory  # bit for bit, metadata included
    for name, goal in fuzz.goals.items():
        assert answer(rig.send(goal)) == fuzz.answers[name], name
    assert "Traceback" not in rig.proc.log()
    # No message made the node allocate much (a header claiming 100000 x 100000 pixels, a
    # path of 10000 poses): its peak memory grew by less than what one such image would take.
    grown = peak_rss(rig.proc.proc.pid) - fuzz.rss
    report("memory", f"node peak RSS {fuzz.rss / 2**20:.0f} MiB before fuzzing, "
                     f"+{grown / 2**20:.0f} MiB after")
    assert grown < 512 * 2 ** 20
