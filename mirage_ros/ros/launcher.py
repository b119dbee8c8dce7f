"""A small rclpy-side launcher: start a node module in its own process group and stop it.

`ros2 launch` needs launch/launch_ros, which are not on PyPI; the demo and the tests start the
same node graph with this instead. Stopping sends SIGINT to the whole group, as Ctrl-C would
(ros2 run does not forward a SIGINT sent to its own pid), and escalates to SIGKILL on a timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

SOURCE_ROOT = Path(__file__).resolve().parents[2]


class NodeProcess:
    """`python -m <module> --ros-args ...` in a new process session."""

    def __init__(
        self,
        module: str,
        ros_args: Sequence[str] = (),
        *,
        output: IO | None = None,
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
            cmd, env=full_env, stdout=output, stderr=subprocess.STDOUT if output else None,
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
