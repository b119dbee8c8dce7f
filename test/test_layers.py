"""The layers of DESIGN.md hold: the import-linter contracts in pyproject.toml, and the core
importing neither ROS, MuJoCo nor the tools in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ("geometry", "sensors", "memory", "model", "rollout")


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    # From the repo root, so the source tree (not an installed copy) is what gets analysed.
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_import_linter_contracts_are_kept():
    pytest.importorskip(
        "importlinter", reason="import-linter is not installed (pip install import-linter)")
    run = _python(
        "import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())",
        "--no-cache",  # no .import_linter_cache/ in the checkout
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "broken" in run.stdout and "0 broken" in run.stdout


def test_core_loads_without_ros_mujoco_or_tools():
    imports = "; ".join(f"import mirage_ros.{name}" for name in CORE)
    code = (
        f"import sys; {imports}; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('rclpy', 'sensor_msgs', 'mujoco', 'rosbags') or m.startswith(("
        "'mirage_ros.ros', 'mirage_ros.sim', 'mirage_ros.train', 'mirage_ros.bench'))); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    run = _python(code)
    assert run.returncode == 0, run.stdout + run.stderr
