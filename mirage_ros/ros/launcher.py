"""A small launcher for machines without ``launch``: start the node graphs of
:mod:`mirage_ros.ros.graph` as plain processes, and stop them.

``ros2 launch`` needs launch/launch_ros, which are not on PyPI; the demo and the tests start the
same node graphs with this instead::

    python -m mirage_ros.ros.launcher sim_demo --seconds 60 --scene-seed 0 --goal 6.5 1.0 0.0

Every node runs as ``python -m <module> --ros-args ...`` in its own process group. Stopping
sends SIGINT to the whole group, as Ctrl-C would (``ros2 run`` does not forward a SIGINT sent to
its own pid), and escalates to SIGKILL on a timeout; a graph stops in reverse start order.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from mirage_ros.ros.graph import (
    DEMO_GOAL,
    DEMO_START,
    NodeSpec,
    mirage_graph,
    normalize_namespace,
    params_paths,
    sim_demo_graph,
    sim_graph,
)

SOURCE_ROOT = Path(__file__).resolve().parents[2]


class NodeProcess:
    """`python -m <module> --ros-args ...` in a new process session."""

    def __init__(
        self,
        module: str,
        ros_args: Sequence[str] = (),
        *,
        output: IO | int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        full_env = os.environ.copy()
        # Run the checkout's sources when started from one (the installed copy otherwise).
        if (SOURCE_ROOT / "mirage_ros" / "__init__.py").exists():
            full_env["PYTHONPATH"] = os.pathsep.join(
                [str(SOURCE_ROOT), *filter(None, [full_env.get("PYTHONPATH")])])
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "0")  # logs in order with ours
        full_env.update(env or {})
        cmd = [sys.executable, "-m", module]
        if ros_args:
            cmd += ["--ros-args", *ros_args]
        self.module = module
        self.proc = subprocess.Popen(
            cmd, env=full_env, stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        """Ctrl-C the process group; SIGKILL it if it has not exited after `timeout` seconds."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                self.proc.wait()
        return self.proc.returncode


# ---------------------------------------------------------------------------------------------
# Command lines


def ros_arguments(
    spec: NodeSpec,
    *,
    namespace: str = "",
    params_file: str | os.PathLike[str] | None = None,
    log_level: str | None = None,
    resolve: Callable[[str], Path] | None = None,
) -> list[str]:
    """What follows ``--ros-args`` for ``spec``: name, namespace, the shipped params files (then
    the user's ``params_file``, then the spec's ``-p`` overrides, so later ones win), remaps."""
    args = ["-r", f"__node:={spec.name}"]
    ns = normalize_namespace(namespace)
    if ns:
        args += ["-r", f"__ns:={ns}"]
    for path in params_paths(spec, resolve):
        args += ["--params-file", str(path)]
    if params_file:
        args += ["--params-file", os.fspath(params_file)]
    for name, value in spec.parameters.items():
        args += ["-p", f"{name}:={parameter_text(value)}"]
    for source, target in spec.remappings:
        args += ["-r", f"{source}:={target}"]
    if log_level:
        args += ["--log-level", log_level]
    return args


def _level_for(name: str, log_level: str | Mapping[str, str] | None) -> str | None:
    """One level for every node, or per node name with ``"*"`` for the others."""
    if log_level is None or isinstance(log_level, str):
        return log_level
    return log_level.get(name, log_level.get("*"))


def parameter_text(value: Any) -> str:
    """A parameter value as ``-p name:=<text>`` takes it (YAML, typed the way rcl reads it):
    floats keep their decimal point so ``[1.0, 2.0]`` stays a double array, strings are quoted
    so ``'1'`` or ``'true'`` stay strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text if any(c in text for c in ".eEn") else text + ".0"  # n: nan, inf
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError("an empty list has no parameter type; leave the parameter out")
        return "[" + ", ".join(parameter_text(v) for v in value) + "]"
    raise TypeError(f"unsupported parameter value {value!r}")


# ---------------------------------------------------------------------------------------------
# Graphs


class LaunchedGraph:
    """The nodes of a graph spec list, each in its own process group, started in order.

    Output: each node's lines on this process's stdout prefixed with ``[name]`` (the default),
    or into ``<log_dir>/<name>.log`` when ``log_dir`` is given. Nodes without a Python module
    (RViz) cannot run here and are refused. ``log_level`` is one level for all nodes, or a
    mapping from node name to level with ``"*"`` for the rest. Use as a context manager, or
    call :meth:`stop`.
    """

    def __init__(
        self,
        specs: Iterable[NodeSpec],
        *,
        namespace: str = "",
        params_file: str | os.PathLike[str] | None = None,
        log_level: str | Mapping[str, str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        stream: IO[str] | None = None,
    ) -> None:
        self.specs = list(specs)
        for spec in self.specs:
            if spec.module is None:
                raise ValueError(
                    f"{spec.name} ({spec.package}/{spec.executable}) is not a Python node of "
                    "this package; start it with ros2 run or ros2 launch")
        self.namespace = normalize_namespace(namespace)
        self.nodes: list[tuple[NodeSpec, NodeProcess]] = []
        self._pumps: list[threading.Thread] = []
        self._logs: list[IO] = []
        self._stream = stream
        log_path = Path(log_dir) if log_dir is not None else None
        if log_path is not None:
            log_path.mkdir(parents=True, exist_ok=True)
        try:
            for spec in self.specs:
                args = ros_arguments(
                    spec, namespace=self.namespace, params_file=params_file,
                    log_level=_level_for(spec.name, log_level))
                if log_path is not None:
                    log = open(log_path / f"{spec.name}.log", "wb")
                    self._logs.append(log)
                    node = NodeProcess(spec.module, args, output=log, env=env)
                else:
                    node = NodeProcess(spec.module, args, output=subprocess.PIPE, env=env)
                    self._pump(spec.name, node)
                self.nodes.append((spec, node))
        except BaseException:
            self.stop()
            raise

    def _pump(self, name: str, node: NodeProcess) -> None:
        def copy() -> None:
            out = self._stream or sys.stdout
            for raw in iter(node.proc.stdout.readline, b""):
                out.write(f"[{name}] {raw.decode(errors='replace')}")
                out.flush()
            node.proc.stdout.close()

        thread = threading.Thread(target=copy, name=f"output of {name}", daemon=True)
        thread.start()
        self._pumps.append(thread)

    def __enter__(self) -> LaunchedGraph:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def process(self, name: str) -> NodeProcess:
        for spec, node in self.nodes:
            if spec.name == name:
                return node
        raise KeyError(name)

    def returncodes(self) -> dict[str, int | None]:
        """Node name -> exit code, None while it runs."""
        return {spec.name: node.proc.poll() for spec, node in self.nodes}

    def first_exit(self) -> tuple[NodeSpec, int] | None:
        """The first node (in start order) found to have exited, with its code."""
        for spec, node in self.nodes:
            code = node.proc.poll()
            if code is not None:
                return spec, code
        return None

    def wait(self, seconds: float | None = None, poll: float = 0.2) -> tuple[NodeSpec, int] | None:
        """Block until a node exits (returned with its code) or ``seconds`` pass (None)."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            exited = self.first_exit()
            if exited is not None:
                return exited
            if deadline is not None and time.monotonic() >= deadline:
                return None
            left = poll if deadline is None else deadline - time.monotonic()
            time.sleep(max(0.0, min(poll, left)))

    def stop(self, timeout: float = 10.0) -> dict[str, int]:
        """Ctrl-C every node, last started first; name -> exit code."""
        codes = {}
        for spec, node in reversed(self.nodes):
            codes[spec.name] = node.stop(timeout)
        for thread in self._pumps:
            thread.join(timeout=2.0)
        for log in self._logs:
            log.close()
        self._logs.clear()
        return codes


def launch_graph(specs: Iterable[NodeSpec], **kwargs: Any) -> LaunchedGraph:
    """Start ``specs`` (see :class:`LaunchedGraph` for the keyword arguments)."""
    return LaunchedGraph(specs, **kwargs)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_graph(
    specs: Iterable[NodeSpec], *, seconds: float | None = None, **kwargs: Any
) -> int:
    """Start ``specs``, run until Ctrl-C (or SIGTERM), ``seconds`` pass, or a node exits; then
    stop them all. Keyword arguments as for :class:`LaunchedGraph`.

    Returns 0 when the graph ran and stopped cleanly, or when a ``required`` node exited with 0
    (the demo planner finishing); the code of a ``required`` node that failed; the code of any
    other node that exited early (1 if that was 0: it should have kept running); 1 when a node
    did not stop cleanly."""
    in_main = threading.current_thread() is threading.main_thread()
    # SIGTERM (a service manager, `timeout`) stops the graph as Ctrl-C does: the nodes live in
    # their own process groups and would outlive this process otherwise.
    previous_term = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
    graph = None
    exited = None
    codes: dict[str, int] = {}
    try:
        graph = LaunchedGraph(specs, **kwargs)  # stops what it started if interrupted
        exited = graph.wait(seconds)
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C or SIGTERM must not cut the orderly shutdown short.
        if in_main:
            previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if graph is not None:
                codes = graph.stop()
        finally:
            if in_main:
                signal.signal(signal.SIGINT, previous_int)
                signal.signal(signal.SIGTERM, previous_term)
    if exited is not None:
        spec, code = exited
        print(f"launcher: {spec.name} exited with {code}; stopped the graph", file=sys.stderr)
        return code if spec.required else (code or 1)
    bad = {name: code for name, code in codes.items() if code != 0}
    for name, code in bad.items():
        print(f"launcher: {name} exited with {code} when stopped", file=sys.stderr)
    return 1 if bad else 0


# ---------------------------------------------------------------------------------------------
# CLI


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mirage_ros.ros.launcher",
        description="Run a mirage_ros node graph without ros2 launch.")
    parser.add_argument("graph", choices=("mirage", "sim", "sim_demo"),
                        help="mirage: the node alone; sim: simulator tour + node; "
                             "sim_demo: simulator + node + demo planner")
    parser.add_argument("--seconds", type=float, default=None,
                        help="stop after this long (default: until Ctrl-C or a node exits)")
    parser.add_argument("--namespace", default="", help="namespace of every node")
    parser.add_argument("--params-file", default=None,
                        help="extra ROS params file, loaded after the shipped ones")
    parser.add_argument("--log-level", default=None, help="ROS logger level (info, debug, ...)")
    parser.add_argument("--log-dir", default=None,
                        help="write <node>.log files here instead of prefixed lines on stdout")
    parser.add_argument("--use-sim-time", action=argparse.BooleanOptionalAction, default=None,
                        help="nodes other than the simulator use /clock "
                             "(default: on with the simulator, off without)")
    parser.add_argument("--scene-seed", type=int, default=0, help="procedural scene")
    parser.add_argument("--start-pose", type=float, nargs=3, metavar=("X", "Y", "YAW"),
                        default=None, help=f"robot start in map (sim_demo default {DEMO_START})")
    parser.add_argument("--goal", type=float, nargs=3, metavar=("X", "Y", "YAW"),
                        default=list(DEMO_GOAL), help="demo planner goal in map")
    return parser


def graph_from_args(args: argparse.Namespace) -> list[NodeSpec]:
    """The spec list the CLI arguments ask for."""
    if args.graph == "mirage":
        return mirage_graph(use_sim_time=bool(args.use_sim_time))
    sim_time = True if args.use_sim_time is None else args.use_sim_time
    if args.graph == "sim":
        return sim_graph(scene_seed=args.scene_seed, start_pose=args.start_pose,
                         use_sim_time=sim_time)
    start = DEMO_START if args.start_pose is None else args.start_pose
    return sim_demo_graph(scene_seed=args.scene_seed, goal=args.goal, start_pose=start,
                          use_sim_time=sim_time)


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        specs = graph_from_args(args)
        namespace = normalize_namespace(args.namespace)
    except ValueError as err:
        print(f"launcher: {err}", file=sys.stderr)
        return 2
    names = ", ".join(s.name for s in specs)
    print(f"launcher: starting {args.graph} ({names})"
          + (f" in {namespace}" if namespace else ""), flush=True)
    return run_graph(specs, seconds=args.seconds, namespace=namespace,
                     params_file=args.params_file, log_level=args.log_level,
                     log_dir=args.log_dir)


if __name__ == "__main__":
    sys.exit(main())
