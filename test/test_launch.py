"""The node graphs (mirage_ros.ros.graph), the launch files built on them, the bare-machine
launcher and the shipped RViz config agree with each other and with the nodes' topic names."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mirage_ros.ros import graph
from mirage_ros.ros.launcher import LaunchedGraph, parameter_text, ros_arguments

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILES = ("mirage.launch.py", "sim.launch.py", "sim_demo.launch.py")

# What each node of the package creates, as the nodes name it (the contract the graphs wire up).
# "~/x" is private; "x" is relative to the namespace; "/x" is absolute.
INTERFACES = {
    "mirage_sim": {
        "publishes": ["~/camera/image_raw", "~/camera/depth", "~/camera/camera_info", "~/odom",
                      "/clock", "~/collision"],
        "subscribes": ["~/follow_path", "~/cmd_vel"],
        "action_servers": [],
        "action_clients": [],
    },
    "mirage": {
        "publishes": ["~/path_scores", "~/best_path", "~/candidates", "~/previews",
                      "~/plan_preview", "~/memory_cloud", "/diagnostics"],
        "subscribes": ["camera/image_raw", "camera/depth", "camera/camera_info", "odom",
                       "~/planned_path", "~/candidate_paths"],
        "action_servers": ["~/score_paths"],
        "action_clients": [],
    },
    "demo_planner": {
        "publishes": ["follow_path", "~/plan", "~/status"],
        "subscribes": ["odom"],
        "action_servers": [],
        "action_clients": ["score_paths"],
    },
}
# Inputs a node cannot work without, per graph (the rest are optional).
NEEDED = {
    "mirage": {"mirage": []},
    "sim": {"mirage": ["camera/image_raw", "camera/depth", "camera/camera_info", "odom"]},
    "sim_demo": {
        "mirage": ["camera/image_raw", "camera/depth", "camera/camera_info", "odom"],
        "demo_planner": ["odom", "score_paths", "follow_path"],
    },
}
RVIZ_DISPLAYS = {
    "rviz_default_plugins/Grid": None,
    "rviz_default_plugins/Image": {"/mirage_sim/camera/image_raw", "/mirage/previews"},
    "rviz_default_plugins/MarkerArray": {"/mirage/candidates"},
    "rviz_default_plugins/Path": {"/mirage/best_path"},
    "rviz_default_plugins/PointCloud2": {"/mirage/memory_cloud"},
    "rviz_default_plugins/Odometry": {"/mirage_sim/odom"},
}
DEMO_PLANNER_PARAMETERS = {
    "goal", "goal_tolerance", "replan_period", "num_paths", "path_length", "poses_per_path",
    "max_curvature", "timeout", "max_failures", "warmup", "num_previews", "map_frame"}


def _resolved(spec: graph.NodeSpec, name: str, namespace: str) -> str:
    """Where a node's own name for a topic ends up: its remap rule (if any) applied, then
    expanded in the node's namespace."""
    for source, target in spec.remappings:
        if source == name:
            return graph.resolve_name(target, namespace, spec.name)
    return graph.resolve_name(name, namespace, spec.name)


def _provided(specs: list[graph.NodeSpec], namespace: str, kind: str, but: str) -> set[str]:
    return {graph.resolve_name(n, namespace, s.name)
            for s in specs if s.name != but for n in INTERFACES[s.name][kind]}


# ---------------------------------------------------------------------------------------------
# Graph specs (no launch, no rclpy)


def test_graph_module_needs_neither_launch_nor_rclpy():
    code = ("import sys, mirage_ros.ros.graph, mirage_ros.ros.launcher; "
            "bad = {'launch', 'launch_ros', 'rclpy'} & set(sys.modules); "
            "sys.exit(f'imported {bad}' if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("name", sorted(graph.GRAPHS))
@pytest.mark.parametrize("namespace", ["", "/robot1"])
def test_remaps_point_at_names_other_nodes_provide(name, namespace):
    specs = graph.GRAPHS[name]()
    assert [s.name for s in specs] == list(dict.fromkeys(s.name for s in specs)), "unique names"
    for spec in specs:
        iface = INTERFACES[spec.name]
        own = (iface["publishes"] + iface["subscribes"] + iface["action_servers"]
               + iface["action_clients"])
        for source, target in spec.remappings:
            assert source in own, f"{spec.name} has no {source!r} to remap"
            assert not target.startswith("/"), f"{target!r}: a namespace would not move it"
            where = _resolved(spec, source, namespace)
            if source in iface["subscribes"]:
                assert where in _provided(specs, namespace, "publishes", spec.name), where
            elif source in iface["publishes"]:
                assert where in _provided(specs, namespace, "subscribes", spec.name), where
            elif source in iface["action_clients"]:
                assert where in _provided(specs, namespace, "action_servers", spec.name), where
            else:
                pytest.fail(f"{spec.name}: remapping the server {source!r} breaks its clients")
        for needed in NEEDED[name].get(spec.name, []):
            assert needed in dict(spec.remappings), f"{spec.name}: {needed} is not wired"


def test_sim_demo_graph_parameters():
    sim, mirage, planner = graph.sim_demo_graph(scene_seed="3", goal="1, 2, 0.5")
    assert sim.parameters == {"scene_seed": 3, "start_pose": [1.5, 1.0, 0.0], "mode": "path"}
    assert "use_sim_time" not in sim.parameters  # the /clock source keeps wall time
    assert mirage.parameters == {"use_sim_time": True}
    assert planner.parameters == {"use_sim_time": True, "goal": [1.0, 2.0, 0.5]}
    assert planner.required and not sim.required and not mirage.required
    assert [s.params_files for s in (sim, mirage, planner)] == [
        ("config/sim.yaml",), ("config/mirage.yaml",), ("config/demo_planner.yaml",)]
    tour = graph.sim_graph(start_pose=None)[0]
    assert tour.parameters == {"scene_seed": 0, "mode": "tour"}
    with pytest.raises(ValueError, match="goal"):
        graph.sim_demo_graph(goal=[1.0, 2.0])
    with pytest.raises(ValueError, match="scene_seed"):
        graph.sim_demo_graph(scene_seed=1.5)
    with pytest.raises(ValueError, match="start_pose"):
        graph.sim_demo_graph(start_pose=[0.0, float("nan"), 0.0])


def test_names_and_poses():
    assert graph.normalize_namespace("") == "" and graph.normalize_namespace("/") == ""
    assert graph.normalize_namespace("robot1/") == "/robot1"
    with pytest.raises(ValueError):
        graph.normalize_namespace("1robot")
    assert graph.resolve_name("~/odom", "robot1", "mirage_sim") == "/robot1/mirage_sim/odom"
    assert graph.resolve_name("odom", "", "x") == "/odom"
    assert graph.resolve_name("/clock", "/robot1", "x") == "/clock"
    for text in ("[6.5, 1.0, 0.0]", "6.5,1,0", " 6.5 1 0 ", "(6.5, 1, 0)"):
        assert graph.parse_pose(text) == (6.5, 1.0, 0.0)
    assert graph.parse_pose(graph.pose_text(graph.DEMO_GOAL)) == graph.DEMO_GOAL
    assert graph.parse_optional_pose("[]") is None and graph.parse_optional_pose("") is None
    with pytest.raises(ValueError):
        graph.parse_pose("[1, 2]")


def test_every_shipped_file_of_the_graphs_exists():
    for make in graph.GRAPHS.values():
        for spec in make():
            for relative in spec.params_files:
                assert graph.share_file(relative).is_file(), relative
    assert graph.share_file(graph.RVIZ_CONFIG).is_file()


def test_ros_arguments_of_a_spec():
    sim, mirage, planner = graph.sim_demo_graph()
    args = ros_arguments(planner, namespace="robot1", params_file="/tmp/mine.yaml",
                         log_level="debug", resolve=lambda rel: Path("/share") / rel)
    assert args == [
        "-r", "__node:=demo_planner", "-r", "__ns:=/robot1",
        "--params-file", "/share/config/demo_planner.yaml", "--params-file", "/tmp/mine.yaml",
        "-p", "use_sim_time:=true", "-p", "goal:=[6.5, 1.0, 0.0]",
        "-r", "odom:=mirage_sim/odom", "-r", "score_paths:=mirage/score_paths",
        "-r", "follow_path:=mirage_sim/follow_path",
        "--log-level", "debug"]
    assert "__ns" not in " ".join(ros_arguments(sim))
    assert parameter_text(2.0) == "2.0" and parameter_text(1e-5) == "1e-05"
    assert parameter_text("it's") == "'it''s'" and parameter_text([1, 2]) == "[1, 2]"
    with pytest.raises(ValueError):
        parameter_text([])


def test_rviz_spec_follows_the_namespace():
    spec = graph.rviz_spec()
    assert spec.module is None and spec.package == "rviz2"
    assert spec.arguments == ("-d", str(graph.share_file(graph.RVIZ_CONFIG)))
    for source, target in spec.remappings:
        assert source.startswith("/") and target == source[1:]
        assert graph.resolve_name(target, "/robot1") == "/robot1" + source
    with pytest.raises(ValueError, match="ros2 launch"):
        LaunchedGraph([spec])


# ---------------------------------------------------------------------------------------------
# Shipped config files


def test_rviz_config_shows_the_graph():
    config = yaml.safe_load((REPO / "config" / "mirage.rviz").read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "map"
    shown: dict[str, set[str]] = {}
    for display in manager["Displays"]:
        topic = display.get("Topic", {}).get("Value")
        shown.setdefault(display["Class"], set())
        if topic:
            shown[display["Class"]].add(topic)
        if display["Class"].endswith("PointCloud2"):
            assert display["Color Transformer"] == "RGB8"
    assert set(shown) == set(RVIZ_DISPLAYS)
    for cls, topics in RVIZ_DISPLAYS.items():
        assert shown[cls] == (topics or set()), cls
    # Every topic it shows is published by the demo graph (default namespace).
    specs = graph.sim_demo_graph()
    published = _provided(specs, "", "publishes", but="")
    topics = graph.rviz_topics(REPO / "config" / "mirage.rviz")
    assert set(topics) == set().union(*(t for t in RVIZ_DISPLAYS.values() if t))
    assert set(topics) <= published


def test_demo_planner_config_has_exactly_the_agreed_parameters():
    params = yaml.safe_load((REPO / "config" / "demo_planner.yaml").read_text())
    values = params["/**"]["ros__parameters"]
    assert DEMO_PLANNER_PARAMETERS <= set(values)
    assert len(values["goal"]) == 3 and all(isinstance(v, float) for v in values["goal"])
    assert tuple(values["goal"]) == graph.DEMO_GOAL
    for name in ("goal_tolerance", "replan_period", "path_length", "max_curvature", "timeout",
                 "warmup"):
        assert isinstance(values[name], float), name
    for name in ("num_paths", "poses_per_path", "max_failures", "num_previews"):
        assert isinstance(values[name], int), name


def test_demo_planner_config_matches_the_node():
    if importlib.util.find_spec("mirage_ros.ros.demo_planner") is None:
        pytest.skip("mirage_ros/ros/demo_planner.py does not exist yet")
    node = pytest.importorskip("mirage_ros.ros.demo_planner")
    defaults = getattr(node, "DEFAULTS", None)
    if defaults is None:
        pytest.skip("demo_planner has no DEFAULTS table")
    values = yaml.safe_load((REPO / "config" / "demo_planner.yaml").read_text())
    values = values["/**"]["ros__parameters"]
    # The file repeats every parameter with the node's default, so it documents them all.
    assert set(values) == set(defaults), set(values) ^ set(defaults)
    for name, value in values.items():
        assert type(value) is type(defaults[name]), name
        assert value == (list(defaults[name]) if name == "goal" else defaults[name]), name


# ---------------------------------------------------------------------------------------------
# Against rcl: the remaps resolve to the same names in a real node, and -p values parse


@pytest.mark.ros
def test_rcl_resolves_the_graph_like_the_spec_says():
    import rclpy
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    namespace = "/robot1"
    contexts = []
    try:
        for spec in graph.sim_demo_graph():
            context = rclpy.Context()
            args = ["--ros-args", *ros_arguments(spec, namespace=namespace)]
            rclpy.init(args=args, context=context)
            contexts.append(context)
            node = Node("placeholder", context=context,
                        automatically_declare_parameters_from_overrides=True)
            assert node.get_name() == spec.name and node.get_namespace() == namespace
            iface = INTERFACES[spec.name]
            for topic in iface["publishes"] + iface["subscribes"]:
                assert node.resolve_topic_name(topic) == _resolved(spec, topic, namespace)
            for name, value in spec.parameters.items():
                got = node.get_parameter(name).value
                assert (list(got) if name in ("goal", "start_pose") else got) == value, name
            if spec.name == "demo_planner":
                assert node.get_parameter("goal").type_ == Parameter.Type.DOUBLE_ARRAY
            if spec.name == "mirage_sim":
                assert node.get_parameter("mode").value == "path"
            node.destroy_node()
    finally:
        for context in contexts:
            rclpy.try_shutdown(context=context)


@pytest.mark.ros
def test_action_remap_reaches_the_server():
    # rcl_action remaps action names like topics: the planner's relative `score_paths` finds
    # mirage's private `~/score_paths` under a namespace.
    import rclpy
    from rclpy.action import ActionClient, ActionServer
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from mirage_ros.action import ScorePaths

    namespace = "/robot1"
    specs = {s.name: s for s in graph.sim_demo_graph()}
    contexts, nodes = [], []
    try:
        for name in ("mirage", "demo_planner"):
            context = rclpy.Context()
            rclpy.init(args=["--ros-args", *ros_arguments(specs[name], namespace=namespace)],
                       context=context)
            contexts.append(context)
            nodes.append(Node("placeholder", context=context))
        server = ActionServer(nodes[0], ScorePaths, "~/score_paths", lambda goal: None)
        client = ActionClient(nodes[1], ScorePaths, "score_paths")
        executor = SingleThreadedExecutor(context=contexts[0])
        executor.add_node(nodes[0])
        assert client.wait_for_server(timeout_sec=15.0), "no server at the remapped name"
        del server, executor
    finally:
        for node in nodes:
            node.destroy_node()
        for context in contexts:
            rclpy.try_shutdown(context=context)


# ---------------------------------------------------------------------------------------------
# The launcher runs a graph for real


@pytest.mark.ros
def test_launcher_starts_and_stops_the_sim_graph(tmp_path):
    import time

    import rclpy
    from nav_msgs.msg import Odometry
    from rclpy.action import ActionClient
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data

    from mirage_ros.action import ScorePaths

    namespace = "/launcher_test"
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node("launcher_test_client", context=context)
    odoms = []
    node.create_subscription(Odometry, f"{namespace}/mirage_sim/odom", odoms.append,
                             qos_profile_sensor_data)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    client = ActionClient(node, ScorePaths, f"{namespace}/mirage/score_paths")
    with LaunchedGraph(graph.sim_graph(), namespace=namespace, log_dir=tmp_path) as launched:
        try:
            deadline = time.monotonic() + 60.0
            while not (odoms and client.server_is_ready()):
                assert launched.first_exit() is None, launched.returncodes()
                assert time.monotonic() < deadline, (
                    f"after 60 s: odometry {bool(odoms)}, action {client.server_is_ready()}")
                executor.spin_once(timeout_sec=0.1)
        except BaseException:
            for log in sorted(tmp_path.glob("*.log")):
                print(f"---- {log.name}\n{log.read_text(errors='replace')}", file=sys.stderr)
            raise
        finally:
            executor.shutdown()
            node.destroy_node()
            rclpy.try_shutdown(context=context)
        codes = launched.stop()
    assert list(codes) == ["mirage", "mirage_sim"], "stopped in reverse start order"
    assert codes == {"mirage": 0, "mirage_sim": 0}, codes


@pytest.mark.ros
def test_launcher_cli_runs_a_graph_until_sigterm(tmp_path):
    import signal

    import rclpy
    from rclpy.action import ActionClient
    from rclpy.node import Node

    from mirage_ros.action import ScorePaths

    log = (tmp_path / "out.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirage_ros.ros.launcher", "mirage", "--namespace", "cli_test"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node("cli_test_client", context=context)
    try:
        client = ActionClient(node, ScorePaths, "/cli_test/mirage/score_paths")
        assert client.wait_for_server(timeout_sec=60.0), "the node did not come up"
        # The action server can be discovered before the node's first line has passed through
        # the launcher's relay: wait for that line, not a fixed time, before stopping.
        deadline = time.monotonic() + 30.0
        while "\n[mirage] " not in (tmp_path / "out.log").read_text():
            assert time.monotonic() < deadline, "no line of the node's came through"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # stops the graph as Ctrl-C does
        proc.wait(timeout=30)
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log.seek(0)
    output = log.read()
    assert proc.returncode == 0, output
    assert output.startswith("launcher: starting mirage (mirage) in /cli_test")
    assert "\n[mirage] " in output  # the node's lines, prefixed with its name
    bad = subprocess.run(
        [sys.executable, "-m", "mirage_ros.ros.launcher", "sim_demo", "--namespace", "9x"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "invalid namespace" in bad.stderr


# ---------------------------------------------------------------------------------------------
# Launch files (need ROS 2's launch and launch_ros: not on PyPI)


def _launch_module(name: str):
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), REPO / "launch" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _launch_nodes(name: str, overrides: dict[str, str]):
    """Declared argument names, and the actions the launch file's OpaqueFunction returns."""
    from launch import LaunchContext, LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    desc = _launch_module(name).generate_launch_description()
    assert isinstance(desc, LaunchDescription)
    context = LaunchContext()
    context.launch_configurations.update(overrides)
    declared, actions = set(), []
    for entity in desc.entities:
        if isinstance(entity, DeclareLaunchArgument):
            declared.add(entity.name)
            entity.visit(context)
        elif isinstance(entity, OpaqueFunction):
            actions += entity.visit(context) or []
    return declared, actions, context


@pytest.mark.parametrize("name, graph_name", [
    ("mirage.launch.py", "mirage"), ("sim.launch.py", "sim"), ("sim_demo.launch.py", "sim_demo")])
def test_launch_file_starts_the_graph(name, graph_name):
    # `import launch` alone would find this repository's launch/ folder as a namespace package.
    pytest.importorskip(
        "launch_ros", reason="launch_ros is not on PyPI; this runs where ROS 2 is installed")
    from launch.actions import LogInfo
    from launch_ros.actions import Node

    common = {"namespace", "use_sim_time", "params_file", "use_rviz", "log_level"}
    for overrides, rviz, ns in (({}, False, Node.UNSPECIFIED_NODE_NAMESPACE),
                                ({"namespace": "robot1", "use_rviz": "true"}, True, "/robot1")):
        declared, actions, context = _launch_nodes(name, overrides)
        assert declared >= common
        if graph_name != "mirage":
            assert "scene_seed" in declared
        if graph_name == "sim_demo":
            assert {"goal", "start_pose"} <= declared
        nodes = [a for a in actions if isinstance(a, Node)]
        # Without rviz2 installed, use_rviz:=true says so and starts the rest.
        rviz = rviz and graph._installed("rviz2")
        notes = [a for a in actions if isinstance(a, LogInfo)]
        assert len(nodes) + len(notes) == len(actions)
        assert len(notes) == (1 if "use_rviz" in overrides and not rviz else 0)
        specs = graph.GRAPHS[graph_name]()
        expected = [s.name for s in specs] + (["rviz2"] if rviz else [])
        got = []
        for node in nodes:
            node._perform_substitutions(context)  # names and remaps, without starting anything
            got.append(node.node_name.rsplit("/", 1)[-1])
            assert node.expanded_node_namespace == ns
        assert got == expected
        by_name = {s.name: s for s in specs}
        for node, node_name in zip(nodes, got, strict=True):
            if node_name in by_name:
                rules = node.expanded_remapping_rules or []
                assert rules == list(by_name[node_name].remappings)


def test_log_levels_can_differ_per_node():
    from mirage_ros.ros.launcher import _level_for

    levels = {"demo_planner": "info", "*": "warn"}
    assert _level_for("demo_planner", levels) == "info"
    assert _level_for("mirage", levels) == "warn"
    assert _level_for("mirage", "debug") == "debug" and _level_for("mirage", None) is None
    assert _level_for("mirage", {"demo_planner": "info"}) is None


_RUN_NODE_SCRIPT = """
import sys
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from mirage_ros.ros.spin import run_node

class StoppedMidSpin(SingleThreadedExecutor):
    def spin(self):
        rclpy.shutdown()  # what rclpy's signal handler does on SIGTERM
        raise RuntimeError("failed to initialize wait set: the given context is not valid")

class Broken(SingleThreadedExecutor):
    def spin(self):
        raise RuntimeError("a real bug")

def stopped_while_built():
    node = Node("stopped_while_built")
    rclpy.shutdown()
    node.create_timer(1.0, lambda: None)  # fails: the context is gone

case = sys.argv[1]
make = stopped_while_built if case == "built" else (lambda: Node("run_node_case"))
executor = {"spin": StoppedMidSpin, "bug": Broken, "built": SingleThreadedExecutor}[case]
sys.exit(run_node(make, executor, "case"))
"""


@pytest.mark.ros
@pytest.mark.parametrize("case, code", [("spin", 0), ("built", 0), ("bug", 1)])
def test_a_stop_at_any_moment_is_a_clean_exit_and_a_bug_is_not(case, code):
    """SIGTERM shuts the context down from a signal handler, so the failure it causes can
    surface in the node's constructor or in the executor's wait set; both must end 0 (seen as
    exit 1 in CI), while an error with the context still up must still fail."""
    proc = subprocess.run([sys.executable, "-c", _RUN_NODE_SCRIPT, case], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == code, proc.stderr
    if case == "bug":
        assert "a real bug" in proc.stderr
