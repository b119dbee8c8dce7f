"""The imagination node ``mirage``: camera -> latent memory; ScorePaths -> imagine -> critics.

Inputs (relative names, remap them onto your robot's topics; sensor-data QoS):
``camera/image_raw`` (rgb8, bgr8, mono8, ...), ``camera/depth`` (16UC1 mm or 32FC1 m; optional),
``camera/camera_info``, ``odom`` (nav_msgs/Odometry: the base's pose in ``map_frame``). The
camera mount comes from the ``camera_to_base`` parameter. Frames are paired with depth and
odometry by stamp (``sync_tolerance``) and written into the memory at a bounded rate (only after
``observe.min_translation`` or ``observe.min_rotation`` of motion, at most ``observe.max_rate``).
A malformed input message is dropped with a warning (throttled per kind) and counted:
``received <kind>`` and ``dropped <kind>`` (or the pairer's ``dropped <reason>``) in
/diagnostics. Refused besides broken layouts: depth whose median is implausible for its unit
(``sensors.depth``), camera info of an implausible field of view, poses and paths beyond
``sensors.MAX_POSITION``, and stamps more than ``MAX_STAMP_LEAD`` s ahead of the node's clock.

Serves ``~/score_paths`` (mirage_ros/action/ScorePaths): every goal is validated first (a bad
goal gets INVALID_INPUT / TRANSFORM_ERROR and a message naming the path and pose), then all
paths are imagined in one batch from a snapshot of the memory, with feedback after every
imagined step and cancel / preemption honoured between steps; NO_MEMORY before the first
observation. Streams ``~/candidate_paths`` -> ``~/path_scores`` and ``~/planned_path`` ->
``~/plan_preview``. Publishes ``~/best_path``, ``~/candidates`` (MarkerArray, one line strip per
path coloured by score; built only when subscribed), ``~/previews`` (one labelled image grid),
``~/memory_cloud`` (PointCloud2, throttled, only when subscribed) and ``/diagnostics``.
Services ``~/save_memory``, ``~/load_memory`` (safetensors) and ``~/clear_memory``. Saved maps
record the autoencoder that made them; loading (the service or ``load_memory_at_start``) refuses
a corrupt file and a map of another model, channel count or voxel size, memory in use unchanged.
Outputs carry the stamps of the inputs they answer, so bag replay lines up.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Sequence

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point
from nav_msgs.msg import Odometry, Path
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import JumpThreshold, TimeJump
from rclpy.duration import Duration
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import ColorRGBA, Header
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from mirage_ros.action import ScorePaths
from mirage_ros.geometry import transform_from_translation_quat_xyzw
from mirage_ros.memory import LatentMemory, MemoryFormatError
from mirage_ros.model import CheckpointError, WorldModel
from mirage_ros.model.sampler import PRECISIONS
from mirage_ros.msg import CandidatePaths, PathScores
from mirage_ros.rollout import (
    CandidatePath,
    Goal,
    InvalidPathError,
    available_critics,
    make_critic,
    validate_path,
)
from mirage_ros.rollout.critics import critic_class
from mirage_ros.rollout.engine import (
    IMAGINATION_MODES,
    EngineConfig,
    NoMemoryError,
    RolloutEngine,
    RolloutInterrupted,
    ScoreResult,
)
from mirage_ros.rollout.figures import preview_grid, score_colors
from mirage_ros.ros.conversions import (
    cloud_from_points,
    critics_to_msgs,
    duration_from_seconds,
    path_from_msg,
    paths_to_msgs,
    scores_to_list,
    seconds,
    time_from_seconds,
)
from mirage_ros.ros.image_bridge import imgmsg_to_numpy, imgmsg_to_rgb8, numpy_to_imgmsg
from mirage_ros.ros.qos import action_qos_kwargs
from mirage_ros.ros.spin import CalmMultiThreadedExecutor, run_node
from mirage_ros.sensors import (
    MAX_POSITION,
    ObservationPairer,
    check_depth_units,
    decode_depth,
)
from mirage_ros.sensors.pose_buffer import CLOCK_JUMP_BACK
from mirage_ros.srv import LoadMemory, SaveMemory

Result = ScorePaths.Result

# Seconds a camera, depth or odometry stamp may lead this node's clock (ROS time: /clock under
# use_sim_time). Stamps further ahead are dropped with a warning: accepted, one such stamp makes
# every normal message after it look like a clock jump back, which restarts the pairing and
# discards the waiting frames. Stamps in the past are accepted (a bag replayed without /clock);
# a jump back of more than CLOCK_JUMP_BACK s restarts the pairing (sensors.pairing) and is
# logged and counted ("pairing restarts" in /diagnostics).
MAX_STAMP_LEAD = 10.0
PREEMPT_HANDOVER_S = 0.5  # most a new goal waits for the goals it preempted to end
RESULT_KEPT_S = 10  # seconds a finished goal's result can still be fetched (rclpy's default)

# The default mount is the simulator's camera: 0.5 m above base_link, pitched 10 degrees down,
# as the optical frame (x right, y down, z forward) in base_link: x y z qx qy qz qw.
_SIM_MOUNT = [0.0, 0.0, 0.5, -0.541675, 0.541675, -0.454519, 0.454519]

# Parameter defaults; config/mirage.yaml repeats them (a test keeps the two in step). Those the
# engine also has are read from EngineConfig, so the node and the library cannot drift. Critics
# add their own, `<name>.weight` and `<name>.<parameter>`, for every critic in `critics`.
DEFAULTS: dict[str, object] = {
    "map_frame": "map",
    "horizon": 8,
    "max_horizon": 64,
    "max_paths": 1024,
    "max_poses_per_path": 10000,
    "quaternion_tolerance": 0.01,
    "model_path": "",
    "device": "auto",
    "precision": EngineConfig.precision,
    "imagination": EngineConfig.imagination,
    "cuda_graphs": EngineConfig.cuda_graphs,
    "split_gpus": True,
    "min_paths_per_gpu": EngineConfig.min_paths_per_device,
    "sampler_steps": EngineConfig.sampler_steps,
    "noise_scale": EngineConfig.noise_scale,
    "seed": EngineConfig.seed,
    "step_length": EngineConfig.step_length,
    "step_angle": EngineConfig.step_angle,
    "robot_radius": EngineConfig.robot_radius,
    "camera_to_base": _SIM_MOUNT,
    "sync_tolerance": 0.05,
    "depth_timeout": 0.5,
    "observe.min_translation": 0.1,
    "observe.min_rotation": 0.1,
    "observe.max_rate": 2.0,
    "memory.voxel_size": 0.05,
    "memory.capacity": 300000,
    "memory.keyframes": 1024,
    "memory_file": "mirage_memory.safetensors",
    "load_memory_at_start": False,
    "clock_jump": "keep",
    "critics": ["goal_pose", "goal_image", "clearance", "exploration", "path_length",
                "path_turning"],
    "latency_budget": 1.0,
    "memory_cloud_period": 2.0,
    "plan_preview_period": 1.0,
}

DESCRIPTIONS: dict[str, str] = {
    "map_frame": "frame of the latent memory and of odometry; paths must be given in it",
    "horizon": "imagined steps per path when a goal asks for 0",
    "max_horizon": "largest horizon a goal may ask for",
    "max_paths": "largest number of candidate paths in one goal",
    "max_poses_per_path": "largest number of poses in one candidate path",
    "quaternion_tolerance": "allowed | |q| - 1 | before an orientation is refused",
    "model_path": "world model weights (.safetensors); empty: the weights shipped in the package",
    "device": "auto (cuda when available), cpu or cuda[:N]",
    "precision": "of the DiT and depth head: auto (bf16 where the device runs it natively, "
                 "else fp32), fp32 or bf16",
    "imagination": "diffusion: the world model imagines every path; memory: the memory's read "
                   "with holes filled, no model (the planning benchmark's ablation, ~20x "
                   "faster on a CPU)",
    "cuda_graphs": "replay the DiT and depth head from CUDA graphs (GPU only; one capture per "
                   "batch size, on its first goal)",
    "split_gpus": "on a GPU, split a large goal's paths across every visible GPU",
    "min_paths_per_gpu": "fewest paths a GPU takes when a goal is split (smaller goals stay on "
                         "one GPU)",
    "sampler_steps": "flow-sampler steps per imagined frame (1-4; more is slower, sharper)",
    "noise_scale": "scale of the flow sampler's starting noise, 0-1: 1 samples the model's "
                   "distribution of next frames, lower values frames nearer its centre (closer "
                   "to the truth on average, less varied)",
    "seed": "imagination noise seed; the same goal on the same memory gives the same answer",
    "step_length": "metres of path between two imagined steps",
    "step_angle": "radians of turning on the spot that count as one imagined step",
    "robot_radius": "metres; the clearance critic's collision radius",
    "camera_to_base": "camera optical frame in base_link: x y z qx qy qz qw",
    "sync_tolerance": "seconds between an image and the depth / odometry paired with it",
    "depth_timeout": "seconds without depth after which frames are written without it",
    "observe.min_translation": "metres of motion since the last write before the next one",
    "observe.min_rotation": "radians of turning since the last write before the next one",
    "observe.max_rate": "most memory writes per second",
    "memory.voxel_size": "metres",
    "memory.capacity": "most voxels kept; the farthest and stalest are evicted first",
    "memory.keyframes": "most observed frames kept whole beside the voxels and warped into "
                        "reads (about 11 KB each; the oldest go first; 0: none)",
    "memory_file": "default file of the save_memory / load_memory services",
    "load_memory_at_start": "load memory_file when the node starts; a map that cannot be used "
                            "(corrupt, another model, channel count or voxel size) stops it",
    "clock_jump": "when the clock jumps back (a simulation or bag restart): keep the memory and "
                  "move its stamps back with the clock, or clear it",
    "critics": "active critics, by name (" + ", ".join(available_critics()) + ")",
    "latency_budget": "seconds a ScorePaths goal should take; /diagnostics warns above it",
    "memory_cloud_period": "seconds between ~/memory_cloud messages (when subscribed)",
    "plan_preview_period": "seconds between ~/plan_preview images (when a plan is received)",
}


class GoalError(Exception):
    """A goal that cannot be served; carries the ScorePaths result code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Rate:
    """Messages per second over the last few seconds (diagnostics)."""

    def __init__(self, window: float = 5.0) -> None:
        self._times: deque[float] = deque()
        self._window = window
        self.total = 0

    def tick(self) -> None:
        now = time.monotonic()
        self._times.append(now)
        self.total += 1
        while self._times and now - self._times[0] > self._window:
            self._times.popleft()

    def hz(self) -> float:
        now = time.monotonic()
        while self._times and now - self._times[0] > self._window:
            self._times.popleft()
        return len(self._times) / self._window


class MirageNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("mirage", **kwargs)
        try:
            for name, default in DEFAULTS.items():
                descriptor = ParameterDescriptor(description=DESCRIPTIONS[name],
                                                 read_only=name in _READ_ONLY)
                self.declare_parameter(name, default, descriptor)
            self._critic_params = self._declare_critic_parameters()
        except InvalidParameterTypeException as err:
            raise ValueError(f"invalid parameter: {err}") from None
        values = {n: self.get_parameter(n).value for n in (*DEFAULTS, *self._critic_params)}
        problem = _check_parameters(values)
        if problem:
            raise ValueError(f"invalid parameter: {problem}")
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._engine = self._build_engine(values)
        self._pairer = ObservationPairer(tolerance=float(values["sync_tolerance"]),
                                         depth_timeout=float(values["depth_timeout"]))
        self._pair_lock = threading.Lock()
        self._goal_lock = threading.Lock()
        self._goal_ended = threading.Condition(self._goal_lock)  # notified as a goal ends
        # Every accepted goal's preemption flag, by goal; a new goal sets all the others'. Kept
        # per goal because rclpy may start executing a goal after a newer one was accepted.
        self._preempt_flags: dict[int, threading.Event] = {}
        self._last_write: tuple[float, np.ndarray] | None = None  # (wall time, base_to_map)
        self._rates = {k: _Rate() for k in ("image", "depth", "odom", "written")}
        self._bad_inputs: dict[str, int] = {}
        self._received: dict[str, int] = {}  # every input message, good or bad, by kind
        self._count_lock = threading.Lock()
        self._warned: dict[str, tuple[float, int]] = {}  # kind -> (last warning, drops since)
        self._pairing_warned: tuple[float, dict[str, int]] = (-math.inf, {})  # when, counts
        self._last_latency: float | None = None
        self._last_goal_error = ""
        self._plan: tuple[Header, CandidatePath] | None = None
        self._plan_done: Header | None = None
        # Clock jumps back: seen by the node's clock under use_sim_time (a /clock reset), or by
        # a frame stamped far before the memory's newest (a bag replayed again). Either way the
        # observer thread applies the clock_jump policy; the clock's callback only records it.
        self._jump_to: float | None = None
        self._clock_jumps = 0
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(seconds=-CLOCK_JUMP_BACK),
                          on_clock_change=False),
            post_callback=self._on_clock_jump)
        if values["load_memory_at_start"]:
            ok, message = self._load_memory(str(values["memory_file"]))
            if not ok:
                raise ValueError(f"load_memory_at_start: {message}")
            self.get_logger().info(message)

        # Every callback group of this node is reentrant. rclpy's MultiThreadedExecutor spins,
        # holding the GIL, while a ready entity waits for its busy mutually exclusive group; with
        # the CPU full of imagination, sensor callbacks took long enough for that to slow
        # ScorePaths 30-fold (measured). The callbacks are thread-safe instead: the pairer has
        # its own lock, the engine serialises memory writes, repeated work uses try-locks.
        sensors = ReentrantCallbackGroup()
        qos = qos_profile_sensor_data
        self.create_subscription(Image, "camera/image_raw", self._on_image, qos,
                                 callback_group=sensors)
        self.create_subscription(Image, "camera/depth", self._on_depth, qos,
                                 callback_group=sensors)
        self.create_subscription(CameraInfo, "camera/camera_info", self._on_camera_info, qos,
                                 callback_group=sensors)
        self.create_subscription(Odometry, "odom", self._on_odom, qos, callback_group=sensors)
        # Encoding and fusing take tens of milliseconds: a worker thread of its own does it, so
        # the sensor callbacks above only queue (and never wait for it).
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._observer = threading.Thread(target=self._observe_loop, name="mirage observer",
                                          daemon=True)

        self._score_server = ActionServer(
            self, ScorePaths, "~/score_paths",
            execute_callback=self._execute,
            goal_callback=self._on_goal,
            handle_accepted_callback=self._on_accepted,
            cancel_callback=self._on_cancel,
            callback_group=ReentrantCallbackGroup(),
            **action_qos_kwargs(),  # bursts of goals and cancel storms lose no request
            # rclpy forgets a result RESULT_KEPT_S after the goal ends, and then answers a late
            # result request with status UNKNOWN and an empty result whose error_code reads
            # SUCCESS (README). Kept short: every status message lists every goal still kept,
            # and it goes out ~3 times a goal (at 10 goals/s, 60 s would mean 600 entries, 30
            # times a second, built in Python on both ends).
            result_timeout=RESULT_KEPT_S,
        )
        self._scores_pub = self.create_publisher(PathScores, "~/path_scores", 10)
        # A callback that finds its work already running returns at once (try-locks).
        background = ReentrantCallbackGroup()
        self._busy = {k: threading.Lock() for k in ("stream", "plan", "cloud", "diagnostics")}
        self._stream_pending: tuple[Header, list[CandidatePath]] | None = None
        self.create_subscription(CandidatePaths, "~/candidate_paths", self._on_candidate_paths,
                                 10, callback_group=background)
        self.create_subscription(Path, "~/planned_path", self._on_planned_path, 10,
                                 callback_group=sensors)
        self._best_pub = self.create_publisher(Path, "~/best_path", 10)
        self._markers_pub = self.create_publisher(MarkerArray, "~/candidates", 10)
        self._previews_pub = self.create_publisher(Image, "~/previews", 10)
        self._plan_preview_pub = self.create_publisher(Image, "~/plan_preview", 10)
        self._cloud_pub = self.create_publisher(PointCloud2, "~/memory_cloud", 1)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        services = ReentrantCallbackGroup()
        self.create_service(SaveMemory, "~/save_memory", self._on_save, callback_group=services)
        self.create_service(LoadMemory, "~/load_memory", self._on_load, callback_group=services)
        self.create_service(Trigger, "~/clear_memory", self._on_clear, callback_group=services)

        self.create_timer(float(values["plan_preview_period"]), self._on_plan_timer,
                          callback_group=background)
        self.create_timer(float(values["memory_cloud_period"]), self._on_cloud_timer,
                          callback_group=background)
        self.create_timer(1.0, self._on_diagnostics_timer, callback_group=background)
        self._observer.start()
        model = self._engine.model
        self.get_logger().info(
            f"serving {self.resolve_topic_name('~/score_paths', only_expand=True)} in frame "
            f"'{values['map_frame']}' on {', '.join(map(str, self._engine.devices))} "
            f"({self._engine.sampler().precision}); world model "
            f"{model.notes.get('trained', '?')} trained, "
            f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters; critics "
            f"{', '.join(values['critics'])}")

    # ---------------------------------------------------------------- set-up

    def _declare_critic_parameters(self) -> list[str]:
        try:
            params = critic_parameters(self.get_parameter("critics").value)
        except ValueError as err:
            raise ValueError(f"invalid parameter critics: {err}") from None
        for full, (default, description) in params.items():
            self.declare_parameter(full, default, ParameterDescriptor(description=description))
        return list(params)

    def _build_engine(self, values: dict[str, object]) -> RolloutEngine:
        device = str(values["device"])
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            model = (WorldModel.load(str(values["model_path"]), device) if values["model_path"]
                     else WorldModel.default(device))
        except (CheckpointError, FileNotFoundError, OSError) as err:
            raise ValueError(f"model_path: {err}") from None
        memory = LatentMemory(channels=model.latent_channels,
                              voxel_size=float(values["memory.voxel_size"]),
                              capacity=int(values["memory.capacity"]), device=device,
                              keyframe_capacity=int(values["memory.keyframes"]))
        mount = list(values["camera_to_base"])
        cam_to_base = transform_from_translation_quat_xyzw(mount[:3], mount[3:])
        split = []
        if bool(values["split_gpus"]) and model.latent_mean.device.type == "cuda":
            home = model.latent_mean.device
            split = [torch.device("cuda", i) for i in range(torch.cuda.device_count())
                     if i != home.index]
        return RolloutEngine(model, memory, cam_to_base, self._critics(values),
                             EngineConfig(step_length=float(values["step_length"]),
                                          step_angle=float(values["step_angle"]),
                                          sampler_steps=int(values["sampler_steps"]),
                                          noise_scale=float(values["noise_scale"]),
                                          robot_radius=float(values["robot_radius"]),
                                          seed=int(values["seed"]),
                                          precision=str(values["precision"]),
                                          imagination=str(values["imagination"]),
                                          cuda_graphs=bool(values["cuda_graphs"]),
                                          min_paths_per_device=int(
                                              values["min_paths_per_gpu"])),
                             split_devices=split)

    def _critics(self, values: dict[str, object]) -> list:
        out = []
        for name in values["critics"]:
            cls = critic_class(name)
            params = {k: values[f"{name}.{k}"] for k in cls.parameters}
            out.append((make_critic(name, params), float(values[f"{name}.weight"])))
        return out

    def _values(self) -> dict[str, object]:
        return {n: self.get_parameter(n).value for n in (*DEFAULTS, *self._critic_params)}

    # ---------------------------------------------------------------- callbacks (dispatch only)

    def _on_image(self, msg: Image) -> None:
        self._queue("image", msg, lambda: self._pairer.add_image(
            seconds(msg.header.stamp), imgmsg_to_rgb8(msg)))

    def _on_depth(self, msg: Image) -> None:
        def push() -> None:
            depth = decode_depth(imgmsg_to_numpy(msg), msg.encoding)
            check_depth_units(depth, msg.encoding)  # metres as 16UC1, millimetres as 32FC1
            self._pairer.add_depth(seconds(msg.header.stamp), depth)

        self._queue("depth", msg, push)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._queue("camera_info", msg, lambda: self._pairer.set_camera_info(
            np.asarray(msg.k, dtype=np.float64).reshape(3, 3), msg.width, msg.height))

    def _on_odom(self, msg: Odometry) -> None:
        self._queue("odom", msg, lambda: self._add_odometry(msg))

    def _on_clock_jump(self, jump: TimeJump) -> None:
        # rclpy calls this while it sets the clock: record and hand over, never block here.
        self._jump_to = self.get_clock().now().nanoseconds * 1e-9
        self._wake.set()

    def _on_goal(self, goal: ScorePaths.Goal) -> GoalResponse:
        # Malformed goals are accepted and answered with INVALID_INPUT: a rejection carries no
        # reason, and the planner deserves to know which path was wrong.
        return GoalResponse.ACCEPT

    def _on_accepted(self, handle: ServerGoalHandle) -> None:
        # One goal at a time, newest wins: a planner that sends a new query no longer needs the
        # old one (Nav2's preemption semantics).
        with self._goal_lock:
            for flag in self._preempt_flags.values():
                flag.set()
            self._preempt_flags[id(handle)] = threading.Event()
        handle.execute()

    def _on_cancel(self, handle: ServerGoalHandle) -> CancelResponse:
        return CancelResponse.ACCEPT

    def _on_candidate_paths(self, msg: CandidatePaths) -> None:
        # Validated here, not when scored: a message superseded while another is scored is
        # still counted if it was malformed.
        self._tally(self._received, "candidate_paths")
        try:
            paths = self._parse_paths(msg.paths, msg.header.frame_id)
        except Exception as err:  # noqa: BLE001 - a malformed message is dropped and counted
            self._drop("candidate_paths", f"~/candidate_paths: {err}")
            return
        self._stream_pending = (msg.header, paths)  # the newest wins
        # Whoever holds the stream lock scores what is pending; after releasing it, it looks
        # again, so a message stored while it was finishing is never left behind.
        while self._stream_pending is not None and self._exclusive(
                "stream", self._score_pending_streams):
            pass

    def _on_planned_path(self, msg: Path) -> None:
        self._tally(self._received, "planned_path")
        try:
            self._keep_plan(msg)
        except Exception as err:  # noqa: BLE001 - a malformed plan is dropped and counted
            self._drop("planned_path", f"~/planned_path: {err!r}")

    def _on_plan_timer(self) -> None:
        self._exclusive("plan", self._publish_plan_preview)

    def _on_cloud_timer(self) -> None:
        self._exclusive("cloud", self._publish_memory_cloud)

    def _on_diagnostics_timer(self) -> None:
        self._exclusive("diagnostics", self._publish_diagnostics)

    def _on_save(self, request: SaveMemory.Request, response: SaveMemory.Response):
        try:
            response.success, response.message, response.voxels = self._save_memory(
                request.path)
        except Exception as err:  # noqa: BLE001 - answer, never crash
            response.success, response.message = False, f"save failed: {err!r}"
        return response

    def _on_load(self, request: LoadMemory.Request, response: LoadMemory.Response):
        try:
            response.success, response.message = self._load_memory(request.path)
        except Exception as err:  # noqa: BLE001 - answer, never crash
            response.success, response.message = False, f"load failed: {err!r}"
        response.voxels = len(self._engine.memory) if response.success else 0
        return response

    def _on_clear(self, request: Trigger.Request, response: Trigger.Response):
        try:
            response.success, response.message = self._clear_memory()
        except Exception as err:  # noqa: BLE001 - answer, never crash
            response.success, response.message = False, f"clear failed: {err!r}"
        return response

    def _on_set_parameters(self, params: Sequence[Parameter]) -> SetParametersResult:
        try:
            values = self._values()
            values.update({p.name: p.value for p in params if p.name in values})
            problem = _check_parameters(values)
            if problem is None:
                self._critics(values)  # the critics' own checks (clearance heights, margin...)
        except Exception as err:  # noqa: BLE001 - refuse the change, keep the node
            problem = str(err)
        return SetParametersResult(successful=problem is None, reason=problem or "")

    # ---------------------------------------------------------------- background work

    def _exclusive(self, name: str, work) -> bool:
        """Run ``work`` unless the same work is already running; False when it was."""
        lock = self._busy[name]
        if not lock.acquire(blocking=False):
            return False
        try:
            work()
        except Exception as err:  # noqa: BLE001 - a bug in one output must not stop the node
            self._tally(self._bad_inputs, f"{name} failure")
            self.get_logger().error(f"{name}: {err!r}", throttle_duration_sec=5.0)
        finally:
            lock.release()
        return True

    def _observe_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(0.1)
            self._wake.clear()
            try:
                self._observe_ready()
            except Exception as err:  # noqa: BLE001 - the observer must outlive a bad frame
                self._tally(self._bad_inputs, "observation")
                self.get_logger().error(f"observation failed: {err!r}",
                                        throttle_duration_sec=5.0)

    def _score_pending_streams(self) -> None:
        while self._stream_pending is not None:
            (header, paths), self._stream_pending = self._stream_pending, None
            self._score_stream(header, paths)

    def destroy_node(self) -> None:
        # rclpy also destroys a node whose __init__ failed half-way: the thread may not exist.
        observer = getattr(self, "_observer", None)
        if observer is not None and observer.is_alive():
            self._stopping.set()
            self._wake.set()
            observer.join(timeout=10.0)
        super().destroy_node()

    # ---------------------------------------------------------------- observations

    def _queue(self, kind: str, msg, push) -> None:
        """Hand a message to the pairer; a malformed one is counted and dropped, never raised."""
        self._tally(self._received, kind)
        try:
            if kind != "camera_info":  # the pairer does not use camera info stamps
                self._check_stamp_lead(msg.header.stamp)
            with self._pair_lock:
                resets = self._pairer.resets
                push()
                reset = self._pairer.resets != resets
        except Exception as err:  # noqa: BLE001 - any malformed message is dropped and counted
            self._drop(kind, f"dropped a {kind} message: {err}")
            return
        if reset:
            self.get_logger().warning(
                f"{kind} stamp {seconds(msg.header.stamp):.3f} jumped back past the pairer's "
                "limit: pairing restarted (a bag or simulation restart?), the waiting frames "
                "were discarded ('pairing restarts' in /diagnostics)", throttle_duration_sec=5.0)
        if kind in self._rates:
            self._rates[kind].tick()
        self._wake.set()

    def _check_stamp_lead(self, stamp) -> None:
        """ValueError for a stamp more than MAX_STAMP_LEAD s ahead of the node's clock (not
        checked while the clock is zero: use_sim_time before the first /clock message)."""
        now = self.get_clock().now().nanoseconds * 1e-9
        lead = seconds(stamp) - now
        if now > 0.0 and lead > MAX_STAMP_LEAD:
            raise ValueError(
                f"stamp {seconds(stamp):.3f} is {lead:.6g} s ahead of this node's clock "
                f"({now:.3f}); more than {MAX_STAMP_LEAD:g} s is refused (are the clocks "
                "synchronised, and use_sim_time set alike on every node?)")

    def _tally(self, counts: dict[str, int], kind: str) -> int:
        """Add one to ``counts[kind]`` (callbacks run on several threads) and return it."""
        with self._count_lock:
            counts[kind] = counts.get(kind, 0) + 1
            return counts[kind]

    def _drop(self, kind: str, message: str) -> None:
        """Count a dropped input message and warn, at most once every 5 s per kind (one kind's
        flood must not hide another's), saying how many were dropped since the last warning."""
        self._tally(self._bad_inputs, kind)
        now = time.monotonic()
        with self._count_lock:
            last, since = self._warned.get(kind, (-math.inf, 0))
            due = now - last >= 5.0
            self._warned[kind] = (now, 0) if due else (last, since + 1)
        if due:
            more = f" ({since} more {kind} messages dropped since the last warning)" if since \
                else ""
            self.get_logger().warning(message + more)

    def _add_odometry(self, msg: Odometry) -> None:
        frame = str(self.get_parameter("map_frame").value)
        if msg.header.frame_id != frame:
            raise ValueError(f"odometry is in frame '{msg.header.frame_id}', expected "
                             f"'{frame}' (map_frame)")
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        quat = np.array([q.x, q.y, q.z, q.w])
        norm = float(np.linalg.norm(quat))
        if not math.isfinite(norm) or abs(norm - 1.0) > 0.01:
            raise ValueError(f"odometry orientation has length {norm:.4g}, expected 1")
        pose = transform_from_translation_quat_xyzw([p.x, p.y, p.z], quat / norm)
        self._pairer.add_pose(seconds(msg.header.stamp), pose)

    def _observe_ready(self) -> None:
        jump_to, self._jump_to = self._jump_to, None
        if jump_to is not None:
            self._clock_jumped(jump_to, "the clock")
        with self._pair_lock:
            ready = self._pairer.pop_ready()
        if not ready:
            return
        obs = ready[-1]  # the newest; older ones are superseded by it
        latest = self._engine.memory.latest_stamp
        if latest is not None and obs.stamp < latest - CLOCK_JUMP_BACK:
            self._clock_jumped(obs.stamp, "a camera frame's stamp")
        if not self._due(obs.base_to_map):
            return
        # The rate limit runs from the start of one write to the start of the next: timed from
        # the end, a write of ~50 ms under load cut 4 Hz to 3.2 Hz in the soak (measured).
        started = time.monotonic()
        try:
            stats = self._engine.observe(
                torch.from_numpy(obs.rgb),
                None if obs.depth is None else torch.from_numpy(obs.depth),
                obs.K, torch.from_numpy(obs.base_to_map), obs.stamp)
        except ValueError as err:
            self._drop("observation", f"observation at {obs.stamp:.3f} not written: {err}")
            return
        self._last_write = (started, obs.base_to_map)
        self._rates["written"].tick()
        self.get_logger().debug(f"observed {obs.stamp:.3f}: {stats}")

    def _clock_jumped(self, now: float, seen_by: str) -> None:
        """Apply the clock_jump policy for a jump back to ``now`` (s). A memory whose newest
        stamp is not ahead of ``now`` is left alone (the other detector got there first)."""
        policy = str(self.get_parameter("clock_jump").value)
        with self._engine.locked():
            memory = self._engine.memory
            latest = memory.latest_stamp
            if latest is None or now >= latest - CLOCK_JUMP_BACK:
                return
            if policy == "clear":
                done = f"cleared the memory ({len(memory)} voxels)"
                memory.clear()
            else:
                shift = memory.rebase_time(now)
                done = f"kept the memory ({len(memory)} voxels), stamps moved by {shift:.3f} s"
        if policy == "clear":
            self._last_write = None
        self._clock_jumps += 1
        self.get_logger().warning(
            f"time jumped back from {latest:.3f} s to {now:.3f} s (seen by {seen_by}; a "
            f"simulation or bag restart?): {done} (clock_jump: {policy})")

    def _due(self, base_to_map: np.ndarray) -> bool:
        """The write-rate policy: enough time since the last write, and enough motion."""
        if self._last_write is None:
            return True
        when, pose = self._last_write
        if time.monotonic() - when < 1.0 / float(self.get_parameter("observe.max_rate").value):
            return False
        moved = float(np.linalg.norm(base_to_map[:3, 3] - pose[:3, 3]))
        cos = (np.trace(pose[:3, :3].T @ base_to_map[:3, :3]) - 1.0) / 2.0
        turned = math.acos(max(-1.0, min(1.0, cos)))
        return (moved >= float(self.get_parameter("observe.min_translation").value)
                or turned >= float(self.get_parameter("observe.min_rotation").value))

    # ---------------------------------------------------------------- goal execution

    def _execute(self, handle: ServerGoalHandle) -> ScorePaths.Result:
        started = time.monotonic()
        with self._goal_lock:
            preempted = self._preempt_flags.setdefault(id(handle), threading.Event())
        self._let_older_goals_end(id(handle))
        try:
            result = self._serve(handle, handle.request, preempted)
        except GoalError as err:
            result = Result(error_code=err.code, error_msg=str(err))
        except Exception as err:  # noqa: BLE001 - a bug must not take the node down
            self.get_logger().error(f"ScorePaths failed: {err!r}")
            result = Result(error_code=Result.INTERNAL_ERROR, error_msg=f"internal error: {err!r}")
        finally:
            with self._goal_lock:
                self._preempt_flags.pop(id(handle), None)
                self._goal_ended.notify_all()
        elapsed = time.monotonic() - started
        result.planning_time = duration_from_seconds(elapsed)
        if result.error_code == Result.SUCCESS:
            self._last_latency = elapsed
        elif result.error_code != Result.CANCELED:
            self._last_goal_error = result.error_msg
        try:
            if result.error_code == Result.SUCCESS:
                handle.succeed()
            elif result.error_code == Result.CANCELED and handle.is_cancel_requested:
                handle.canceled()
            else:
                handle.abort()
        except Exception as err:  # noqa: BLE001 - the node is shutting down under the goal
            self.get_logger().warning(f"ScorePaths goal could not be ended: {err!r} (the node "
                                      "is shutting down?)")
        return result

    def _let_older_goals_end(self, key: int, timeout: float = PREEMPT_HANDOVER_S) -> None:
        """Wait (at most ``timeout``) until the goals accepted before this one, preempted by it,
        have ended. Starting at once, the new rollout took both cores while the old goal was
        unwinding and its result going out: the preempted planner then waited up to 130 ms
        instead of ~25 (measured). Bounded, because rclpy may start goals out of order."""
        deadline = time.monotonic() + timeout
        with self._goal_ended:
            while True:
                keys = list(self._preempt_flags)
                if key not in keys or keys.index(key) == 0:
                    return
                left = deadline - time.monotonic()
                if left <= 0.0:
                    return
                self._goal_ended.wait(left)

    def _serve(
        self, handle: ServerGoalHandle, goal: ScorePaths.Goal, preempted: threading.Event
    ) -> ScorePaths.Result:
        self._check_interrupt(handle, preempted)
        paths = self._parse_paths(goal.paths, goal.header.frame_id)
        horizon = int(goal.horizon) or int(self.get_parameter("horizon").value)
        max_horizon = int(self.get_parameter("max_horizon").value)
        if horizon > max_horizon:
            raise GoalError(Result.INVALID_INPUT,
                            f"horizon {horizon} exceeds max_horizon {max_horizon}")
        target = self._parse_goal(goal)
        total = len(paths) * horizon

        def should_stop() -> bool:  # polled within every imagined step: keep it cheap
            return handle.is_cancel_requested or preempted.is_set()

        def on_step(done: int, steps: int) -> bool:
            try:
                handle.publish_feedback(ScorePaths.Feedback(steps_done=done * len(paths),
                                                            steps_total=total))
            except Exception:  # noqa: BLE001 - the node is shutting down: stop imagining
                return False
            return not should_stop()

        outcome = self._score(paths, horizon, target, int(goal.num_previews), on_step, handle,
                              should_stop)
        table = outcome.table
        header = Header(stamp=goal.header.stamp, frame_id=str(self.get_parameter("map_frame")
                                                                .value))
        previews = [numpy_to_imgmsg(_rgb8(img), "rgb8", header) for img in outcome.previews]
        self._publish_outcome(header, paths, outcome)
        return Result(
            error_code=Result.SUCCESS,
            scores=scores_to_list(table),
            best_index=table.best_index,
            critics=critics_to_msgs(table),
            previews=previews,
            preview_indices=outcome.preview_indices,
        )

    def _score(self, paths, horizon, target, num_previews, on_step,
               handle=None, should_stop=None) -> ScoreResult:
        # The critics as the parameters are now: weights may have changed since the last goal.
        critics = self._critics(self._values())
        try:
            return self._engine.score(paths, horizon, target, num_previews, on_step,
                                      critics=critics, should_stop=should_stop)
        except NoMemoryError as err:
            raise GoalError(Result.NO_MEMORY,
                            f"{err} (check that camera/image_raw, camera/camera_info and odom "
                            "are remapped onto your robot's topics and carry matching "
                            "stamps)") from None
        except RolloutInterrupted:
            if handle is not None and handle.is_cancel_requested:
                raise GoalError(Result.CANCELED, "canceled by the client") from None
            raise GoalError(Result.PREEMPTED, "preempted by a newer ScorePaths goal") from None

    def _check_interrupt(self, handle: ServerGoalHandle, preempted: threading.Event) -> None:
        if handle.is_cancel_requested:
            raise GoalError(Result.CANCELED, "canceled by the client")
        if preempted.is_set():
            raise GoalError(Result.PREEMPTED, "preempted by a newer ScorePaths goal")

    # ---------------------------------------------------------------- validation

    def _parse_paths(self, msgs: Sequence, goal_frame: str) -> list[CandidatePath]:
        if len(msgs) == 0:
            raise GoalError(Result.INVALID_INPUT, "goal has no paths")
        max_paths = int(self.get_parameter("max_paths").value)
        if len(msgs) > max_paths:
            raise GoalError(
                Result.INVALID_INPUT, f"goal has {len(msgs)} paths; max_paths is {max_paths}")
        map_frame = str(self.get_parameter("map_frame").value)
        paths = []
        max_poses = int(self.get_parameter("max_poses_per_path").value)
        for i, msg in enumerate(msgs):
            if len(msg.poses) > max_poses:  # before converting a million poses one by one
                raise GoalError(Result.INVALID_INPUT, str(InvalidPathError(
                    f"has {len(msg.poses)} poses; the node accepts at most {max_poses}", i)))
            try:
                path = validate_path(
                    path_from_msg(msg, goal_frame), i,
                    max_poses=max_poses,
                    quaternion_tolerance=float(self.get_parameter("quaternion_tolerance").value),
                )
            except InvalidPathError as err:
                raise GoalError(Result.INVALID_INPUT, str(err)) from None
            if path.frame_id != map_frame:
                raise GoalError(
                    Result.TRANSFORM_ERROR,
                    f"path {i}: frame '{path.frame_id}' cannot be resolved to '{map_frame}' "
                    f"(this node has no tf lookup; send paths in '{map_frame}')")
            paths.append(path)
        return paths

    def _parse_goal(self, goal: ScorePaths.Goal) -> Goal:
        pose = latent = None
        img = goal.goal_image
        if not (img.width and img.height) and len(img.data):
            # ScorePaths.action: an empty image (width or height 0) means unused; one with data
            # is a malformed image, not an empty one, and ignoring it would hide the mistake.
            raise GoalError(Result.INVALID_INPUT,
                            f"goal_image: zero size (width={img.width}, height={img.height}) "
                            f"but {len(img.data)} bytes of data; send width = height = 0 and no "
                            "data for no goal image")
        if img.width and img.height:  # ScorePaths.action: width or height 0 means unused
            try:
                rgb = imgmsg_to_rgb8(img)
                latent = self._engine.encode_image(torch.from_numpy(np.ascontiguousarray(rgb)))
            except ValueError as err:
                raise GoalError(Result.INVALID_INPUT, f"goal_image: {err}") from None
        if goal.goal_pose.header.frame_id:
            map_frame = str(self.get_parameter("map_frame").value)
            if goal.goal_pose.header.frame_id != map_frame:
                raise GoalError(Result.TRANSFORM_ERROR,
                                f"goal_pose: frame '{goal.goal_pose.header.frame_id}' cannot be "
                                f"resolved to '{map_frame}' (send it in '{map_frame}')")
            p, q = goal.goal_pose.pose.position, goal.goal_pose.pose.orientation
            values = (p.x, p.y, p.z, q.x, q.y, q.z, q.w)
            if not all(math.isfinite(v) for v in values):
                raise GoalError(Result.INVALID_INPUT, "goal_pose: NaN or infinite value")
            if max(abs(p.x), abs(p.y), abs(p.z)) > MAX_POSITION:
                raise GoalError(Result.INVALID_INPUT,
                                f"goal_pose: position ({p.x:g}, {p.y:g}, {p.z:g}) is farther than "
                                f"{MAX_POSITION:g} m from the origin on some axis (check the "
                                "unit and the frame)")
            quat = np.array([q.x, q.y, q.z, q.w])
            norm = float(np.linalg.norm(quat))
            tol = float(self.get_parameter("quaternion_tolerance").value)
            if abs(norm - 1.0) > tol:
                raise GoalError(Result.INVALID_INPUT,
                                f"goal_pose: orientation quaternion has length {norm:.4g}; "
                                f"expected 1 within {tol:g}")
            pose = torch.from_numpy(
                transform_from_translation_quat_xyzw([p.x, p.y, p.z], quat / norm))
        return Goal(pose=pose, latent=latent)

    # ---------------------------------------------------------------- outputs

    def _publish_outcome(self, header: Header, paths: list[CandidatePath],
                         outcome: ScoreResult) -> None:
        table = outcome.table
        best = paths_to_msgs([paths[table.best_index]])[0]
        best.header = header
        self._best_pub.publish(best)
        if self._markers_pub.get_subscription_count() > 0:
            self._markers_pub.publish(_markers(header, paths, table.scores))
        if len(outcome.preview_indices) and self._previews_pub.get_subscription_count() > 0:
            labels = [f"#{i} score {table.scores[i]:.2f}" for i in outcome.preview_indices]
            grid = preview_grid(outcome.previews, labels)
            self._previews_pub.publish(numpy_to_imgmsg(grid, "rgb8", header))

    def _score_stream(self, msg_header: Header, paths: list[CandidatePath]) -> None:
        """Score paths of ~/candidate_paths, already validated by the callback."""
        try:
            outcome = self._score(paths, int(self.get_parameter("horizon").value), Goal(), 0,
                                  None)
        except GoalError as err:  # NO_MEMORY: the message was fine, the node is not ready
            self.get_logger().warning(f"~/candidate_paths: {err}", throttle_duration_sec=5.0)
            return
        table = outcome.table
        self._scores_pub.publish(PathScores(header=msg_header, scores=scores_to_list(table),
                                            best_index=table.best_index,
                                            critics=critics_to_msgs(table)))
        header = Header(stamp=msg_header.stamp,
                        frame_id=str(self.get_parameter("map_frame").value))
        self._publish_outcome(header, paths, outcome)

    def _keep_plan(self, msg: Path) -> None:
        try:
            path = self._parse_paths([msg], msg.header.frame_id)[0]
        except GoalError as err:
            self._drop("planned_path", f"~/planned_path: {err}")
            return
        self._plan = (msg.header, path)

    def _publish_plan_preview(self) -> None:
        plan = self._plan
        if plan is None or plan[0] is self._plan_done:
            return
        if self._plan_preview_pub.get_subscription_count() == 0:
            return
        header, path = plan
        memory, last = self._engine.snapshot()
        if last is None or len(memory) == 0:
            return
        # Imagination only: no critic is needed for a picture.
        _, cams = self._engine.camera_poses([path], int(self.get_parameter("horizon").value),
                                            last.cam_to_map)
        imagined = self._engine.imagine(cams, last.latent, last.K_latent, memory)
        self._plan_done = header
        frames = self._engine.decode(imagined.latents[0])  # [T,3,H,W]
        strip = torch.cat(list(frames), dim=2)
        self._plan_preview_pub.publish(numpy_to_imgmsg(
            _rgb8(strip), "rgb8", Header(stamp=header.stamp, frame_id=header.frame_id)))

    def _publish_memory_cloud(self) -> None:
        if self._cloud_pub.get_subscription_count() == 0:
            return
        memory, last = self._engine.snapshot()
        if len(memory) == 0:
            return
        header = Header(stamp=time_from_seconds(last.stamp if last else 0.0),
                        frame_id=str(self.get_parameter("map_frame").value))
        self._cloud_pub.publish(cloud_from_points(
            memory.positions.float().cpu().numpy(),
            self._engine.colors(memory.latents).numpy(), header))

    def _warn_pairing_drops(self, dropped: dict[str, int]) -> None:
        """Warn, at most every 5 s, about frames the pairer dropped since the last warning (a
        well-formed image of the wrong size, a pose or depth never found...). Unpaired depth
        images are not warned about: a depth camera faster than the colour one makes them."""
        when, seen = self._pairing_warned
        new = {k: n - seen.get(k, 0) for k, n in dropped.items()
               if k != "depth_unused" and n > seen.get(k, 0)}
        now = time.monotonic()
        if new and now - when >= 5.0:
            self._pairing_warned = (now, dict(dropped))
            self.get_logger().warning(
                "pairing dropped camera frames since the last warning: "
                + ", ".join(f"{n} {k}" for k, n in sorted(new.items()))
                + " (see mirage_ros.sensors.pairing; counted as 'dropped <reason>' in "
                "/diagnostics)")

    def _publish_diagnostics(self) -> None:
        memory = self._engine.memory
        budget = float(self.get_parameter("latency_budget").value)
        latency = self._last_latency
        with self._pair_lock:
            paired = dict(self._pairer.dropped)
            dropped = {**paired, **self._bad_inputs}
            resets, waiting = self._pairer.resets, self._pairer.pending
        with self._count_lock:
            received = dict(self._received)
        self._warn_pairing_drops(paired)
        level, message = DiagnosticStatus.OK, "imagining"
        if len(memory) == 0:
            level, message = DiagnosticStatus.WARN, "memory empty: no paired camera + odometry"
        elif latency is not None and latency > budget:
            level, message = DiagnosticStatus.WARN, (
                f"last ScorePaths took {latency:.3f} s, over the {budget:.3f} s budget")
        values = {
            "last ScorePaths latency (s)": "n/a" if latency is None else f"{latency:.4f}",
            "latency budget (s)": f"{budget:.3f}",
            "image rate (Hz)": f"{self._rates['image'].hz():.2f}",
            "depth rate (Hz)": f"{self._rates['depth'].hz():.2f}",
            "odometry rate (Hz)": f"{self._rates['odom'].hz():.2f}",
            "memory writes (Hz)": f"{self._rates['written'].hz():.2f}",
            "observations written": str(self._rates["written"].total),
            "voxels": str(len(memory)),
            "capacity": str(memory.capacity),
            "memory fill": f"{len(memory) / memory.capacity:.4f}",
            "keyframes": str(len(memory.keyframes)),
            "memory bytes": str(memory.nbytes),
            "keyframe bytes": str(memory.keyframes.nbytes),
            "clock jumps back": str(self._clock_jumps),
            "device": ", ".join(str(d) for d in self._engine.devices),
            "precision": self._engine.sampler().precision,
            "imagination": self._engine.config.imagination,
            "last goal error": self._last_goal_error,
        }
        values.update({"images waiting": str(waiting), "pairing restarts": str(resets)})
        values.update({f"received {k}": str(v) for k, v in sorted(received.items())})
        values.update({f"dropped {k}": str(v) for k, v in sorted(dropped.items())})
        status = DiagnosticStatus(
            level=level, name=f"{self.get_name()}: imagination", message=message,
            hardware_id=str(self._engine.device),
            values=[KeyValue(key=k, value=v) for k, v in values.items()])
        self._diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now()
                                                             .to_msg()), status=[status]))

    # ---------------------------------------------------------------- memory services

    def _memory_path(self, path: str) -> str:
        return path or str(self.get_parameter("memory_file").value)

    def _save_memory(self, path: str) -> tuple[bool, str, int]:
        path = self._memory_path(path)
        memory, _ = self._engine.snapshot()
        try:
            # the map records which autoencoder made its latents; _load_memory checks it
            memory.save(path, model=self._engine.model.autoencoder_id())
        except OSError as err:
            return False, f"cannot write {path}: {err}", 0
        return True, f"saved {len(memory)} voxels to {path}", len(memory)

    def _load_memory(self, path: str) -> tuple[bool, str]:
        path = self._memory_path(path)
        model = self._engine.model.autoencoder_id()
        try:
            with self._engine.locked():
                # Only a map of this autoencoder, channel count and voxel size (the read-only
                # parameters); the node keeps its capacity. Verified before anything changes.
                self._engine.memory.load_into(path, model=model, same_voxel_size=True,
                                              keep_capacity=True)
        except (MemoryFormatError, OSError) as err:
            return False, f"cannot load {path}: {err} (the memory in use is unchanged)"
        return True, f"loaded {len(self._engine.memory)} voxels from {path}"

    def _clear_memory(self) -> tuple[bool, str]:
        with self._engine.locked():
            n = len(self._engine.memory)
            self._engine.memory.clear()
        self._last_write = None
        return True, f"cleared {n} voxels"


_READ_ONLY = {"map_frame",
              "model_path", "device", "precision", "imagination", "cuda_graphs", "split_gpus",
              "min_paths_per_gpu", "memory.voxel_size", "memory.capacity", "memory.keyframes",
              "critics",
              "camera_to_base", "sync_tolerance", "depth_timeout", "memory_cloud_period",
              "plan_preview_period", "load_memory_at_start", "sampler_steps", "noise_scale",
              "seed", "step_length", "step_angle", "robot_radius"}


def _rgb8(chw: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(
        (chw.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy())


def _markers(header: Header, paths: Sequence[CandidatePath], scores: np.ndarray) -> MarkerArray:
    """One line strip per path coloured by score (MPPI's trajectory visualiser), best wider;
    each strip's ``text`` holds its score (RViz ignores it on line strips)."""
    colours = score_colors(scores)
    best = int(np.argmax(scores))
    out = MarkerArray(markers=[Marker(header=header, ns="candidates", action=Marker.DELETEALL)])
    for i, path in enumerate(paths):
        m = Marker(header=header, ns="candidates", id=i, type=Marker.LINE_STRIP,
                   action=Marker.ADD)
        m.pose.orientation.w = 1.0
        m.text = f"{scores[i]:.6g}"  # the score itself, for tools that redraw the picture
        m.scale.x = 0.05 if i == best else 0.02
        r, g, b = (float(c) / 255.0 for c in colours[i])
        m.color = ColorRGBA(r=r, g=g, b=b, a=1.0)
        m.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in path.positions]
        out.markers.append(m)
    return out


def critic_parameters(critics: Sequence[str]) -> dict[str, tuple[object, str]]:
    """``<critic>.weight`` and ``<critic>.<setting>`` of every listed critic: (default, text)."""
    out: dict[str, tuple[object, str]] = {}
    for critic in critics:
        cls = critic_class(critic)
        out[f"{critic}.weight"] = (cls.default_weight, f"weight of {cls.description}")
        out.update({f"{critic}.{k}": v for k, v in cls.parameters.items()})
    return out


def all_defaults() -> dict[str, object]:
    """Every parameter the node declares with the default critics, and its default (what
    config/mirage.yaml must repeat)."""
    extra = critic_parameters(DEFAULTS["critics"])
    return {**DEFAULTS, **{k: v[0] for k, v in extra.items()}}


def _check_parameters(values: dict[str, object]) -> str | None:
    """Return a description of the first invalid parameter value, or None."""
    for name in ("horizon", "max_horizon", "max_paths", "max_poses_per_path", "sampler_steps",
                 "memory.capacity", "min_paths_per_gpu"):
        if not isinstance(values[name], int) or values[name] < 1:
            return f"{name} must be a positive integer, got {values[name]!r}"
    if values["precision"] not in PRECISIONS:
        return f"precision must be one of {', '.join(PRECISIONS)}, got {values['precision']!r}"
    if values["imagination"] not in IMAGINATION_MODES:
        return (f"imagination must be one of {', '.join(IMAGINATION_MODES)}, got "
                f"{values['imagination']!r}")
    if values["horizon"] > values["max_horizon"]:
        return f"horizon {values['horizon']} exceeds max_horizon {values['max_horizon']}"
    kf = values["memory.keyframes"]
    if isinstance(kf, bool) or not isinstance(kf, int) or kf < 0:
        return f"memory.keyframes must be an integer >= 0, got {kf!r}"
    ns = values["noise_scale"]
    if not isinstance(ns, float) or not 0.0 <= ns <= 1.0:
        return f"noise_scale must be a float in [0, 1], got {ns!r}"
    tol = values["quaternion_tolerance"]
    if not isinstance(tol, float) or not 0.0 < tol < 1.0:
        return f"quaternion_tolerance must be in (0, 1), got {tol!r}"
    for name in ("step_length", "step_angle", "robot_radius", "sync_tolerance", "depth_timeout",
                 "observe.max_rate", "memory.voxel_size", "latency_budget",
                 "memory_cloud_period", "plan_preview_period"):
        v = values[name]
        if not isinstance(v, float) or not math.isfinite(v) or v <= 0.0:
            return f"{name} must be a positive float, got {v!r}"
    for name in ("observe.min_translation", "observe.min_rotation"):
        v = values[name]
        if not isinstance(v, float) or not math.isfinite(v) or v < 0.0:
            return f"{name} must be a float >= 0, got {v!r}"
    for name, value in values.items():
        if name.endswith(".weight") and (not isinstance(value, float)
                                         or not math.isfinite(value)):
            return f"{name} must be a finite float, got {value!r}"
    mount = list(values["camera_to_base"])
    if len(mount) != 7 or not all(math.isfinite(float(v)) for v in mount) \
            or abs(float(np.linalg.norm(mount[3:])) - 1.0) > 0.01:
        return ("camera_to_base must be [x, y, z, qx, qy, qz, qw] with a unit quaternion, got "
                f"{mount!r}")
    if not values["map_frame"]:
        return "map_frame must not be empty"
    if values["clock_jump"] not in ("keep", "clear"):
        return f"clock_jump must be 'keep' or 'clear', got {values['clock_jump']!r}"
    if not values["critics"] or len(set(values["critics"])) != len(values["critics"]):
        return f"critics must list distinct critic names, got {values['critics']!r}"
    return None


def main(args: list[str] | None = None) -> int:
    return run_node(MirageNode, lambda: CalmMultiThreadedExecutor(num_threads=6),
                    "mirage_node", args)


if __name__ == "__main__":
    raise SystemExit(main())
