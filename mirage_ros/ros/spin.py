"""The one way every mirage_ros node runs: init, spin, clean shutdown, a clear exit code."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import Executor, ExternalShutdownException
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
        node = make_node()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as err:
        print(f"{program}: {err}", file=sys.stderr)
        return 2
    finally:
        # A Ctrl-C under ros2 launch arrives twice (the terminal's, then launch's own): the
        # second must not interrupt the cleanup it asked for.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
