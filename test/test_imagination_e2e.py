"""The whole product over a real ROS 2 graph: simulator -> node's memory -> ScorePaths.

Three processes: the MuJoCo simulator node on a held-out scene (its camera, depth and odometry
remapped onto the mirage node's relative inputs), the mirage node with the shipped world model,
and this test as the planner. After the robot has looked around, the test stops it, sends a fan
of candidate arcs and compares the scores with the simulator's exact clearance: arcs that drive
into an obstacle must score below free ones. It also compares the decoded previews with what the
simulator renders at the same poses, and cancels and preempts long rollouts.

The measured figures are printed (run with -s to see them) and reported in BENCHMARKS.md.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.action import ActionClient
from rclpy.qos import qos_profile_sensor_data
from ros_harness import REPO, node_process, ros_client

from mirage_ros.action import ScorePaths
from mirage_ros.geometry import CameraRig, yaw_from_quat_xyzw
from mirage_ros.ros.conversions import paths_to_msgs
from mirage_ros.ros.image_bridge import imgmsg_to_rgb8

pytestmark = pytest.mark.ros
Result = ScorePaths.Result
SEEDS = (7, 20)  # held out: train.episodes.split_of_seed says "test" for both
RADIUS = 0.25
FAN = 9


def _sim_args(seed: int) -> list[str]:
    return ["--params-file", str(REPO / "config" / "sim.yaml"), "-p", f"scene_seed:={seed}",
            "-p", "rate_hz:=10.0", "-p", f"tour_seed:={seed}", "-r", "__node:=mirage_sim"]


MIRAGE_ARGS = ["--params-file", str(REPO / "config" / "mirage.yaml"),
               "-r", "camera/image_raw:=/mirage_sim/camera/image_raw",
               "-r", "camera/depth:=/mirage_sim/camera/depth",
               "-r", "camera/camera_info:=/mirage_sim/camera/camera_info",
               "-r", "odom:=/mirage_sim/odom",
               "-p", "observe.max_rate:=4.0"]


class Rig:
    """The test's side of the graph: action client, odometry, the sim's mode parameter."""

    def __init__(self, client, sim_proc, mirage_proc) -> None:
        self.client, self.sim, self.mirage = client, sim_proc, mirage_proc
        node = client.node
        self.action = ActionClient(node, ScorePaths, "/mirage/score_paths")
        self.odom: list[Odometry] = []
        node.create_subscription(Odometry, "/mirage_sim/odom", self.odom.append,
                                 qos_profile_sensor_data)
        self.params = node.create_client(SetParameters, "/mirage_sim/set_parameters")

    def send(self, goal, feedback=None):
        handle = self.client.result(self.action.send_goal_async(
            goal, feedback_callback=feedback), what="acceptance")
        assert handle.accepted
        return handle

    def result(self, handle, timeout=120.0):
        return self.client.result(handle.get_result_async(), timeout, "the result").result

    def set_mode(self, mode: str) -> None:
        value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=mode)
        req = SetParameters.Request(parameters=[ParameterMsg(name="mode", value=value)])
        out = self.client.result(self.params.call_async(req), what="set_parameters")
        assert out.results[0].successful, out.results[0].reason

    def pose(self) -> tuple[float, float, float]:
        self.client.spin_until(lambda: bool(self.odom), 30.0, "odometry")
        p = self.odom[-1].pose.pose
        q = p.orientation
        yaw = float(yaw_from_quat_xyzw([q.x, q.y, q.z, q.w]))
        return p.position.x, p.position.y, yaw

    def wait_still(self) -> None:
        """Until the robot reports zero velocity in consecutive odometry messages."""
        def still():
            recent = self.odom[-3:]
            return len(recent) == 3 and all(abs(m.twist.twist.linear.x) < 1e-6
                                            and abs(m.twist.twist.angular.z) < 1e-6
                                            for m in recent)
        n0 = len(self.odom)
        self.client.spin_until(lambda: len(self.odom) > n0 + 3 and still(), 30.0,
                               "the robot to stop")


def fan_goal(x, y, yaw, n=FAN, length=2.0, previews=0, horizon=0):
    from mirage_ros.sim.truth import candidate_fan

    fan = candidate_fan(x, y, yaw, n, length=length, poses=9, max_curvature=1.2)
    goal = ScorePaths.Goal(paths=paths_to_msgs(fan), num_previews=previews, horizon=horizon)
    goal.header.frame_id = "map"
    return goal, fan


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2) / 255.0 ** 2
    return float(-10 * np.log10(max(mse, 1e-10)))


@pytest.fixture(scope="module", params=SEEDS)
def graph(request):
    seed = request.param
    with node_process("mirage_ros.ros.mirage_node", MIRAGE_ARGS) as mirage:
        with ros_client(f"e2e_planner_{seed}") as client:
            rig = Rig(client, None, mirage)
            assert rig.action.wait_for_server(timeout_sec=60.0), mirage.log()
            # Before the simulator runs, nothing has been observed.
            goal, _ = fan_goal(0.0, 0.0, 0.0, n=3)
            assert rig.result(rig.send(goal)).error_code == Result.NO_MEMORY
            with node_process("mirage_ros.ros.sim_node", _sim_args(seed)) as sim:
                rig.sim = sim
                client.spin_until(lambda: rig.params.service_is_ready(), 60.0, "the simulator")
                yield seed, rig


def _look_around_then_stop(rig, seconds: float) -> None:
    rig.set_mode("tour")
    t_end = time.monotonic() + seconds
    rig.client.spin_until(lambda: time.monotonic() > t_end, seconds + 5.0, "the tour")
    rig.set_mode("cmd_vel")  # no command follows: the base's watchdog stops it
    rig.wait_still()


ORDER: dict[int, list[int]] = {}  # seed -> [correctly ordered pairs, pairs]
PSNR: list[float] = []


def test_colliding_paths_score_below_free_ones(graph):
    from mirage_ros.sim.scene import procedural_scene
    from mirage_ros.sim.truth import fan_truth

    seed, rig = graph
    scene = procedural_scene(seed)
    good = pairs = decisions = 0
    for stop in range(3):
        _look_around_then_stop(rig, 6.0 if stop == 0 else 3.0)
        x, y, yaw = rig.pose()
        goal, fan = fan_goal(x, y, yaw)
        result = rig.result(rig.send(goal))
        assert result.error_code == Result.SUCCESS, result.error_msg
        truth = fan_truth(scene, fan, RADIUS)
        scores = np.array(result.scores)
        names = list(result.critics[0].names)
        assert "clearance" in names
        for i, j in itertools.product(range(FAN), range(FAN)):
            if truth.collides[i] and not truth.collides[j]:
                pairs += 1
                good += scores[i] < scores[j]
        decisions += truth.collides.any() and not truth.collides.all()
    ORDER[seed] = [good, pairs]
    share = good / pairs if pairs else float("nan")
    print(f"\nseed {seed}: {good}/{pairs} (colliding, free) pairs ordered correctly "
          f"({share:.2f}) over {decisions} informative decisions")
    # Where the tour stops depends on timing, so one seed sees 0-60 pairs here and a single
    # decision can decide a seed. The assertion waits for 30 pairs, pooling the seeds run so
    # far (a broken critic, e.g. a flipped sign, orders ~0.1-0.2 correctly); the statistic with
    # hundreds of pairs is python -m mirage_ros.bench.ranking (0.88, BENCHMARKS.md).
    pooled_good = sum(g for g, _ in ORDER.values())
    pooled = sum(n for _, n in ORDER.values())
    if pooled >= 30 or (len(ORDER) == len(SEEDS) and pooled):
        assert pooled_good / pooled >= 0.6, f"only {pooled_good}/{pooled} pairs over {ORDER}"


def test_previews_match_the_simulators_view(graph):
    from mirage_ros.rollout import resample_path
    from mirage_ros.sim.render import Renderer
    from mirage_ros.sim.scene import procedural_scene

    seed, rig = graph
    _look_around_then_stop(rig, 2.0)  # the truth is rendered where the robot stands
    x, y, yaw = rig.pose()
    goal, fan = fan_goal(x, y, yaw, previews=3)
    result = rig.result(rig.send(goal))
    assert result.error_code == Result.SUCCESS, result.error_msg
    assert len(result.previews) == 3 and len(result.preview_indices) == 3
    order = np.argsort(-np.array(result.scores), kind="stable")[:3]
    assert list(result.preview_indices) == [int(i) for i in order]
    cam = CameraRig.create()
    scores = []
    with Renderer(procedural_scene(seed), cam.camera) as renderer:
        for img, idx in zip(result.previews, result.preview_indices, strict=True):
            assert img.encoding == "rgb8" and img.header.stamp == goal.header.stamp
            end = resample_path(fan[idx], 8, 0.25, 0.35)[-1]
            truth, _ = renderer.render(cam.cam_to_map(end))
            scores.append(_psnr(imgmsg_to_rgb8(img), truth))
    PSNR.extend(scores)
    print(f"\nseed {seed}: preview PSNR vs simulator truth "
          f"{', '.join(f'{s:.1f}' for s in scores)} dB")
    assert np.mean(scores) > 12.0  # a sanity floor: the right place, not noise


def test_cancel_and_preempt_end_within_one_imagined_step(graph):
    seed, rig = graph
    x, y, yaw = rig.pose()
    long_goal, _ = fan_goal(x, y, yaw, n=32, horizon=24)
    stamps: list[float] = []
    handle = rig.send(long_goal, lambda fb: stamps.append(time.monotonic()))
    rig.client.spin_until(lambda: len(stamps) >= 2, 120.0, "two feedback messages")
    step = stamps[-1] - stamps[-2]
    asked = time.monotonic()
    rig.client.result(handle.cancel_goal_async(), what="cancel response")
    result = rig.result(handle)
    waited = time.monotonic() - asked
    assert result.error_code == Result.CANCELED, result.error_msg
    print(f"\nseed {seed}: cancel answered in {waited * 1e3:.0f} ms (one step takes "
          f"{step * 1e3:.0f} ms)")
    assert waited < 2 * step + 1.0

    stamps.clear()
    first = rig.send(long_goal, lambda fb: stamps.append(time.monotonic()))
    rig.client.spin_until(lambda: len(stamps) >= 1, 120.0, "feedback")
    short, _ = fan_goal(x, y, yaw, n=3)
    asked = time.monotonic()
    second = rig.send(short)
    assert rig.result(first).error_code == Result.PREEMPTED
    print(f"seed {seed}: preempted goal answered {(time.monotonic() - asked) * 1e3:.0f} ms "
          "after the newer goal was sent")
    assert rig.result(second).error_code == Result.SUCCESS
    # the node is still serving with a consistent memory: the same query, the same answer
    again = rig.result(rig.send(short))
    assert again.error_code == Result.SUCCESS


def test_memory_services_round_trip(graph, tmp_path):
    from std_srvs.srv import Trigger

    from mirage_ros.srv import LoadMemory, SaveMemory

    seed, rig = graph
    if seed != SEEDS[0]:
        pytest.skip("once is enough")
    node = rig.client.node
    save = node.create_client(SaveMemory, "/mirage/save_memory")
    load = node.create_client(LoadMemory, "/mirage/load_memory")
    clear = node.create_client(Trigger, "/mirage/clear_memory")
    rig.client.spin_until(lambda: save.service_is_ready() and load.service_is_ready()
                          and clear.service_is_ready(), 30.0, "memory services")
    path = str(tmp_path / "map.safetensors")
    saved = rig.client.result(save.call_async(SaveMemory.Request(path=path)))
    assert saved.success and saved.voxels > 0, saved.message
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"not a memory file")
    refused = rig.client.result(load.call_async(LoadMemory.Request(path=str(bad))))
    assert not refused.success and "unchanged" in refused.message
    cleared = rig.client.result(clear.call_async(Trigger.Request()))
    assert cleared.success
    loaded = rig.client.result(load.call_async(LoadMemory.Request(path=path)))
    assert loaded.success and loaded.voxels >= 1, loaded.message


def test_outputs_for_rviz_and_diagnostics(graph):
    """Markers, previews, best path, plan preview, memory cloud and /diagnostics all appear."""
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import Path
    from sensor_msgs.msg import Image, PointCloud2
    from visualization_msgs.msg import MarkerArray

    seed, rig = graph
    if seed != SEEDS[0]:
        pytest.skip("once is enough")
    node = rig.client.node
    got: dict[str, list] = {k: [] for k in ("markers", "previews", "best", "plan", "cloud",
                                            "diag")}
    subs = [
        node.create_subscription(MarkerArray, "/mirage/candidates", got["markers"].append, 10),
        node.create_subscription(Image, "/mirage/previews", got["previews"].append, 10),
        node.create_subscription(Path, "/mirage/best_path", got["best"].append, 10),
        node.create_subscription(Image, "/mirage/plan_preview", got["plan"].append, 10),
        node.create_subscription(PointCloud2, "/mirage/memory_cloud", got["cloud"].append, 1),
        node.create_subscription(DiagnosticArray, "/diagnostics", got["diag"].append, 10),
    ]
    plan_pub = node.create_publisher(Path, "/mirage/planned_path", 10)
    rig.client.spin_until(lambda: all(s.get_publisher_count() > 0 for s in subs)
                          and plan_pub.get_subscription_count() > 0, 30.0, "discovery")
    x, y, yaw = rig.pose()
    goal, fan = fan_goal(x, y, yaw, n=5, previews=2)
    goal.header.stamp.sec = 77
    deadline = time.monotonic() + 60.0  # run alone, the node may not have a memory yet
    while (result := rig.result(rig.send(goal))).error_code == Result.NO_MEMORY:
        assert time.monotonic() < deadline, "the node never observed a frame"
        later = time.monotonic() + 0.5
        rig.client.spin_until(lambda t=later: time.monotonic() > t, 5.0, "half a second")
    assert result.error_code == Result.SUCCESS, result.error_msg
    plan = paths_to_msgs([fan[2]])[0]
    plan_pub.publish(plan)
    rig.client.spin_until(lambda: all(got.values()), 60.0,
                          f"outputs (so far: { {k: len(v) for k, v in got.items()} })")
    markers = got["markers"][-1].markers
    strips = [m for m in markers if m.type == m.LINE_STRIP]
    assert len(strips) == 5 and strips[0].header.stamp.sec == 77
    best = int(np.argmax(result.scores))
    assert strips[best].scale.x > strips[(best + 1) % 5].scale.x  # the best is drawn wider
    assert got["best"][-1].header.stamp.sec == 77
    assert len(got["best"][-1].poses) == len(fan[best].positions)
    preview = got["previews"][-1]
    assert preview.header.stamp.sec == 77 and preview.width > preview.height > 0
    strip = got["plan"][-1]
    assert strip.width == 8 * strip.height  # the imagined views of 8 steps side by side
    cloud = got["cloud"][-1]
    assert cloud.width > 100 and [f.name for f in cloud.fields] == ["x", "y", "z", "rgb"]
    status = got["diag"][-1].status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert int(values["voxels"]) > 0 and float(values["image rate (Hz)"]) > 0
    assert float(values["last ScorePaths latency (s)"]) > 0
