"""The one way every mirage_ros node runs: init, spin, clean shutdown, a clear exit code."""

from __future__ import annotations

import concurrent.futures
import signal
import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import (
    ConditionReachedException,
    Executor,
    ExternalShutdownException,
    MultiThreadedExecutor,
    ShutdownException,
    TimeoutException,
)
from rclpy.node import Node


def run_node(
    make_node: Callable[[], Node], make_executor: Callable[[], Executor], program: str,
    args: list[str] | None = None,
) -> int:
    """Spin the node until Ctrl-C or shutdown; 0 on a clean stop, 2 when the node refuses its
    configuration (a ValueError from its constructor, printed as one line)."""
    rclpy.init(args=args)
    executor = make_executor()
    node = None
    try:
        try:
            node = make_node()
        except ValueError as err:  # only the constructor's: a refused configuration
            if not rclpy.ok():  # ... unless a stop shut the context down under it
                return 0
            print(f"{program}: {err}", file=sys.stderr)
            return 2
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # A stop (SIGTERM, Ctrl-C) shuts the context down from the signal handler. Landing
        # while the node is still being built, the next create_* call fails; landing between
        # the executor's own checks, building its wait set fails (RCLError, not rclpy's
        # ExternalShutdownException; seen in CI). Both are clean stops; anything else is not.
        if rclpy.ok():
            raise
    finally:
        # A Ctrl-C under ros2 launch arrives twice (the terminal's, then launch's own): the
        # second must not interrupt the cleanup it asked for.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


class CalmMultiThreadedExecutor(MultiThreadedExecutor):
    """rclpy's MultiThreadedExecutor, minus a busy loop that starves the callbacks it serves.

    On every pass rclpy's executor hands out again each task that is neither running nor done,
    including a task it already queued in its thread pool that no pool thread has picked up yet;
    the base class then queues it once more and loops without waiting. On a loaded CPU (a
    rollout in another thread) pool threads start late, so the loop ran ~1,000 passes a second
    holding the GIL and ScorePaths took 20-50 s instead of 1-2 s (measured with the simulator
    publishing at 10 Hz). Here a task still queued is not queued again: the pass waits up to
    5 ms for the pool instead, which lets it start the task.
    Relies on ``_executor`` and ``_futures`` of rclpy 9 (the version the Makefile pins).
    """

    def __init__(self, num_threads: int | None = None, **kwargs) -> None:
        super().__init__(num_threads, **kwargs)
        self._queued: dict[object, concurrent.futures.Future] = {}

    def _spin_once_impl(self, timeout_sec=None, wait_condition=lambda: False) -> None:
        try:
            handler, _, _ = self.wait_for_ready_callbacks(timeout_sec, None, wait_condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException,
                ConditionReachedException):
            return
        queued = self._queued.get(handler)
        if queued is not None and not queued.done():
            concurrent.futures.wait([queued], timeout=0.005)
            return
        self._queued[handler] = self._executor.submit(handler)
        if handler not in self._futures:
            self._futures.append(handler)
        for future in self._futures[:]:
            if future.done():
                self._futures.remove(future)
                self._queued.pop(future, None)
                future.result()  # raise any exception of the callback
