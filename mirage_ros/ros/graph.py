"""The node graphs of mirage_ros, written down once as data.

Two things start these graphs: the launch files in ``launch/`` (``ros2 launch`` on a ROS install)
and :mod:`mirage_ros.ros.launcher` (a bare machine with ROS 2 from PyPI, where ``launch`` and
``launch_ros`` do not exist). Both read the specs made here, so a node, a parameter file or a
remapping is added in one place. This module imports neither ``launch`` nor ``rclpy``;
:func:`launch_description` and :func:`launch_actions` import ``launch`` / ``launch_ros`` when
they are called.

The graphs:

* :func:`mirage_graph`: the world-model node ``mirage`` alone, listening on the relative topics
  ``camera/image_raw``, ``camera/depth``, ``camera/camera_info`` and ``odom`` (a robot's own);
* :func:`sim_graph`: the simulator ``mirage_sim`` on its scripted tour, with ``mirage`` remapped
  onto the simulator's camera and odometry;
* :func:`sim_demo_graph`: the simulator driven by a path, ``mirage``, and ``demo_planner``,
  which asks ``mirage`` to score candidate paths and sends the best to the simulator.

Remap targets are relative names, so a namespace given at start time moves the whole graph.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mirage_ros.ros.resources import share_file

__all__ = [
    "DEMO_GOAL",
    "DEMO_START",
    "GRAPHS",
    "NodeSpec",
    "PACKAGE",
    "RVIZ_CONFIG",
    "demo_planner_spec",
    "launch_actions",
    "launch_description",
    "mirage_graph",
    "mirage_spec",
    "normalize_namespace",
    "parse_optional_pose",
    "params_paths",
    "parse_pose",
    "pose_text",
    "resolve_name",
    "rviz_spec",
    "rviz_topics",
    "share_file",
    "sim_demo_graph",
    "sim_graph",
    "sim_spec",
]

PACKAGE = "mirage_ros"
RVIZ_CONFIG = "config/mirage.rviz"

SIM = "mirage_sim"
MIRAGE = "mirage"
PLANNER = "demo_planner"

# Scene 0 (the default procedural scene) has a corridor along y = 1 m from x ~ 1 to 8 m: the
# demo starts at its west end facing east and drives to the east end.
DEMO_START: tuple[float, float, float] = (1.5, 1.0, 0.0)
DEMO_GOAL: tuple[float, float, float] = (6.5, 1.0, 0.0)


@dataclass(frozen=True)
class NodeSpec:
    """One node of a graph: what to run, under which name, with which parameters and remaps.

    ``params_files`` are relative to the package's share directory (``config/mirage.yaml``) and
    are resolved only when the node is started (:func:`share_file`); an absolute path (a user's
    file) is taken as it is. ``parameters`` override them (a user's params file given at start
    time sits between the two). ``remappings`` are ``(from, to)`` rule pairs as
    ``--ros-args -r from:=to`` takes them. ``module`` is the Python module the
    bare-machine launcher runs (``python -m module``); ``None`` for a node that is not part of
    this package (RViz). The graph ends when a ``required`` node exits.
    """

    name: str
    executable: str
    module: str | None
    package: str = PACKAGE
    params_files: tuple[str, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    arguments: tuple[str, ...] = ()
    required: bool = False

    def with_parameters(self, **overrides: Any) -> NodeSpec:
        """A copy with more parameter overrides (later ones win)."""
        return replace(self, parameters={**self.parameters, **overrides})

    def with_params_file(self, path: str | Path) -> NodeSpec:
        """A copy that also loads ``path`` (made absolute), after the files it has."""
        return replace(self, params_files=(*self.params_files, str(Path(path).resolve())))


# ---------------------------------------------------------------------------------------------
# Nodes


def sim_spec(
    *,
    scene_seed: int | str | None = None,
    start_pose: Sequence[float] | str | None = None,
    mode: str | None = None,
    mjcf_path: str | None = None,
) -> NodeSpec:
    """The MuJoCo simulator ``mirage_sim``. It is the ``/clock`` source, so it keeps wall time
    (its frame timer runs on the steady clock either way); None leaves config/sim.yaml's value."""
    overrides: dict[str, Any] = {}
    if scene_seed is not None:
        overrides["scene_seed"] = _int("scene_seed", scene_seed)
    if start_pose is not None:
        overrides["start_pose"] = list(_pose("start_pose", start_pose))
    if mode is not None:
        overrides["mode"] = str(mode)
    if mjcf_path is not None:
        overrides["mjcf_path"] = str(mjcf_path)
    return NodeSpec(
        name=SIM, executable="sim_node", module="mirage_ros.ros.sim_node",
        params_files=("config/sim.yaml",), parameters=overrides)


def mirage_spec(*, use_sim_time: bool = False, camera_source: str | None = None) -> NodeSpec:
    """The world-model node ``mirage``. With ``camera_source`` (a node name such as
    ``mirage_sim``) its relative inputs are remapped onto that node's private camera and odometry
    topics; without, it listens on ``camera/...`` and ``odom`` in its namespace."""
    remaps: tuple[tuple[str, str], ...] = ()
    if camera_source:
        remaps = tuple((topic, f"{camera_source}/{topic}") for topic in (
            "camera/image_raw", "camera/depth", "camera/camera_info", "odom"))
    return NodeSpec(
        name=MIRAGE, executable="mirage_node", module="mirage_ros.ros.mirage_node",
        params_files=("config/mirage.yaml",),
        parameters={"use_sim_time": bool(use_sim_time)}, remappings=remaps)


def demo_planner_spec(
    *,
    goal: Sequence[float] | str | None = None,
    use_sim_time: bool = False,
    robot: str = SIM,
    world_model: str = MIRAGE,
) -> NodeSpec:
    """The demo planner: reads ``robot``'s odometry, asks ``world_model`` to score candidate
    paths, sends the best one to ``robot``'s ``follow_path``. The graph ends when it exits."""
    overrides: dict[str, Any] = {"use_sim_time": bool(use_sim_time)}
    if goal is not None:
        overrides["goal"] = list(_pose("goal", goal))
    return NodeSpec(
        name=PLANNER, executable="demo_planner", module="mirage_ros.ros.demo_planner",
        params_files=("config/demo_planner.yaml",), parameters=overrides,
        remappings=(
            ("odom", f"{robot}/odom"),
            ("score_paths", f"{world_model}/score_paths"),
            ("follow_path", f"{robot}/follow_path"),
        ),
        required=True)


def rviz_spec(config: str | Path | None = None, *, use_sim_time: bool = False) -> NodeSpec:
    """RViz 2 with ``config`` (default: the shipped config/mirage.rviz, resolved now).

    The config names absolute topics of the default (empty) namespace; each is remapped to the
    same name relative to RViz's namespace, which changes nothing without a namespace and moves
    RViz along with the graph under one."""
    path = Path(config) if config is not None else share_file(RVIZ_CONFIG)
    remaps = tuple((topic, topic.lstrip("/")) for topic in rviz_topics(path))
    return NodeSpec(
        name="rviz2", executable="rviz2", module=None, package="rviz2",
        parameters={"use_sim_time": bool(use_sim_time)},
        remappings=remaps, arguments=("-d", str(path)))


# ---------------------------------------------------------------------------------------------
# Graphs


def mirage_graph(*, use_sim_time: bool = False) -> list[NodeSpec]:
    """The world-model node alone, on a robot's (or a bag's) ``camera/*`` and ``odom``."""
    return [mirage_spec(use_sim_time=use_sim_time)]


def sim_graph(
    *,
    scene_seed: int | str | None = 0,
    start_pose: Sequence[float] | str | None = None,
    use_sim_time: bool = True,
) -> list[NodeSpec]:
    """The simulator on its scripted tour and the world-model node watching it."""
    return [
        sim_spec(scene_seed=scene_seed, start_pose=start_pose, mode="tour"),
        mirage_spec(use_sim_time=use_sim_time, camera_source=SIM),
    ]


def sim_demo_graph(
    *,
    scene_seed: int | str | None = 0,
    goal: Sequence[float] | str | None = DEMO_GOAL,
    start_pose: Sequence[float] | str | None = DEMO_START,
    use_sim_time: bool = True,
) -> list[NodeSpec]:
    """Simulator (following paths) + world-model node + demo planner, in start order.

    The defaults fit scene 0; with another scene pick ``start_pose`` and ``goal`` for it
    (``start_pose=None`` lets the simulator choose a random free spot)."""
    return [
        sim_spec(scene_seed=scene_seed, start_pose=start_pose, mode="path"),
        mirage_spec(use_sim_time=use_sim_time, camera_source=SIM),
        demo_planner_spec(goal=goal, use_sim_time=use_sim_time),
    ]


GRAPHS: dict[str, Callable[..., list[NodeSpec]]] = {
    "mirage": mirage_graph,
    "sim": sim_graph,
    "sim_demo": sim_demo_graph,
}


# ---------------------------------------------------------------------------------------------
# Files of the package


def params_paths(spec: NodeSpec, resolve: Callable[[str], Path] | None = None) -> list[Path]:
    """The spec's parameter files as paths: share-relative ones through ``resolve`` (default
    :func:`share_file`), absolute ones (a user's file) as they are."""
    resolve = resolve or share_file
    return [Path(p) if Path(p).is_absolute() else resolve(p) for p in spec.params_files]


def rviz_topics(config: str | Path) -> list[str]:
    """Every topic an RViz 2 config subscribes to, in file order."""
    import yaml

    tree = yaml.safe_load(Path(config).read_text())
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            topic = node.get("Topic")
            if isinstance(topic, dict) and isinstance(topic.get("Value"), str):
                found.append(topic["Value"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tree.get("Visualization Manager", {}).get("Displays", []))
    return found


# ---------------------------------------------------------------------------------------------
# Names and values


_NAME_TOKEN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def normalize_namespace(namespace: str | None) -> str:
    """``""`` / ``"/"`` -> ``""``; ``robot1`` or ``/robot1/`` -> ``/robot1``. Refuses what ROS
    would refuse (tokens must be letters, digits and underscores, not starting with a digit)."""
    parts = [p for p in (namespace or "").strip().split("/") if p]
    for part in parts:
        if not _NAME_TOKEN.match(part):
            raise ValueError(f"invalid namespace {namespace!r}: bad token {part!r}")
    return "".join(f"/{p}" for p in parts)


def resolve_name(name: str, namespace: str = "", node: str | None = None) -> str:
    """Fully qualified form of a topic/service/action name as ROS expands it for a node named
    ``node`` in ``namespace``: ``~/x`` -> ``<ns>/<node>/x``, ``x`` -> ``<ns>/x``, ``/x`` stays."""
    ns = normalize_namespace(namespace)
    if name.startswith("/"):
        return name
    if name == "~" or name.startswith("~/"):
        if not node:
            raise ValueError(f"{name!r} is private: a node name is needed")
        return f"{ns}/{node}{name[1:]}"
    return f"{ns}/{name}"


def pose_text(pose: Sequence[float]) -> str:
    """``[x, y, yaw]`` as a launch argument's text (what :func:`parse_pose` reads)."""
    return "[" + ", ".join(repr(float(v)) for v in pose) + "]"


def parse_optional_pose(text: str) -> tuple[float, float, float] | None:
    """:func:`parse_pose`, or None for an empty argument (``""`` or ``[]``)."""
    return None if text.strip().replace(" ", "") in ("", "[]") else parse_pose(text)


def parse_pose(text: str | Sequence[float], what: str = "pose") -> tuple[float, float, float]:
    """``[x, y, yaw]`` from a launch argument (``"[6.5, 1.0, 0.0]"``, ``"6.5,1,0"``,
    ``"6.5 1 0"``) or a sequence of numbers."""
    return _pose(what, text)


def _pose(what: str, values: str | Iterable[Any]) -> tuple[float, float, float]:
    if isinstance(values, str):
        values = [t for t in re.split(r"[\s,]+", values.strip().strip("[]()").strip()) if t]
    try:
        pose = tuple(float(v) for v in values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be [x, y, yaw] in metres and radians: {err}") from None
    if len(pose) != 3 or not all(math.isfinite(v) for v in pose):
        raise ValueError(f"{what} must be three finite numbers [x, y, yaw], got {list(pose)}")
    return pose  # type: ignore[return-value]


def _int(what: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an integer, got {value!r}") from None
    if not as_float.is_integer():
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return int(as_float)


# ---------------------------------------------------------------------------------------------
# launch_ros

LaunchArgument = tuple[str, str, str]  # name, default value, description


def launch_description(
    arguments: Sequence[LaunchArgument],
    make_specs: Callable[[dict[str, str], Callable[[str], bool]], list[NodeSpec]],
) -> Any:
    """The LaunchDescription of a launch file: declare ``arguments``; at launch time resolve
    them and start the nodes ``make_specs(values, flag)`` returns (``values``: argument name ->
    text; ``flag(name)``: the argument read as a launch condition, true/false/1/0).

    The arguments ``namespace``, ``params_file`` and ``log_level`` apply to every node, and
    RViz joins when ``use_rviz`` is true (with ``use_sim_time`` when that is declared)."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration

    names = [name for name, _, _ in arguments]

    def nodes(context: Any, *args: Any, **kwargs: Any) -> list[Any]:
        values = {name: LaunchConfiguration(name).perform(context) for name in names}

        def flag(name: str) -> bool:
            return IfCondition(LaunchConfiguration(name)).evaluate(context)

        specs = list(make_specs(values, flag))
        notes = []
        if "use_rviz" in values and flag("use_rviz"):
            if _installed("rviz2"):
                sim_time = "use_sim_time" in values and flag("use_sim_time")
                specs.append(rviz_spec(use_sim_time=sim_time))
            else:
                notes.append(LogInfo(msg="use_rviz: rviz2 is not installed; no RViz"))
        return notes + launch_actions(
            specs, namespace=values.get("namespace", ""),
            params_file=values.get("params_file", ""),
            log_level=values.get("log_level") or "info")

    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=text)
          for name, default, text in arguments),
        OpaqueFunction(function=nodes),
    ])


def _installed(package: str) -> bool:
    try:
        from ament_index_python.packages import get_package_prefix

        get_package_prefix(package)
    except (ImportError, LookupError, ValueError, OSError):
        return False
    return True


def launch_actions(
    specs: Iterable[NodeSpec],
    *,
    namespace: str = "",
    params_file: str = "",
    log_level: str = "info",
) -> list[Any]:
    """``launch_ros`` Node actions for ``specs`` (for an OpaqueFunction in a launch file).

    ``params_file``, when given, is loaded by every node of this package after its shipped
    config file and before the spec's own overrides, so it changes only what it names (its keys
    are node names, ``/**`` or ``/**/mirage`` style wildcards, as in any ROS params file). A
    ``required`` node shuts the launch down when it exits."""
    from launch.actions import Shutdown
    from launch_ros.actions import Node

    ns = normalize_namespace(namespace)
    actions = []
    for spec in specs:
        parameters: list[Any] = [str(p) for p in params_paths(spec)]
        if params_file and spec.package == PACKAGE:
            parameters.append(params_file)
        if spec.parameters:
            parameters.append({k: _launch_value(v) for k, v in spec.parameters.items()})
        extra: dict[str, Any] = {}
        if spec.required:
            extra["on_exit"] = [Shutdown(reason=f"{spec.name} exited")]
        actions.append(Node(
            package=spec.package,
            executable=spec.executable,
            name=spec.name,
            namespace=ns or None,
            parameters=parameters or None,
            remappings=list(spec.remappings) or None,
            arguments=list(spec.arguments) or None,
            ros_arguments=["--log-level", log_level],
            output="screen",
            emulate_tty=True,
            **extra,
        ))
    return actions


def _launch_value(value: Any) -> Any:
    # launch_ros takes lists, not tuples, for array parameters.
    if isinstance(value, tuple):
        return list(value)
    return value
