"""Helpers for tests that talk to a node in another process over a real ROS 2 graph.

They wait for discovery (action server ready, subscriber matched) instead of sleeping, and always
leave the process group dead, with its log attached to the failure when something goes wrong.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from mirage_ros.ros.launcher import NodeProcess

REPO = Path(__file__).resolve().parents[1]


class LoggedNode(NodeProcess):
    """A NodeProcess whose output goes to a file the test can read."""

    def __init__(self, module: str, ros_args: Sequence[str] = ()) -> None:
        self._log = tempfile.NamedTemporaryFile(prefix="node-", suffix=".log", delete=False)
        super().__init__(module, ros_args, output=self._log)

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")


@contextmanager
def node_process(module: str, ros_args: Sequence[str] = ()) -> Iterator[LoggedNode]:
    proc = LoggedNode(module, ros_args)
    try:
        yield proc
    except BaseException:
        proc.stop()
        print(f"---- log of {module} ----\n{proc.log()}", file=sys.stderr)
        raise
    finally:
        proc.stop()
        os.unlink(proc._log.name)


class RosClient:
    """An rclpy node in this process with its own context and executor."""

    def __init__(self, name: str = "test_client") -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.05)

    def result(self, future, timeout: float = 30.0, what: str = "a result"):
        self.spin_until(future.done, timeout, what)
        return future.result()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@contextmanager
def ros_client(name: str = "test_client") -> Iterator[RosClient]:
    client = RosClient(name)
    try:
        yield client
    finally:
        client.close()
