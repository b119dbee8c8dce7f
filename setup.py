"""pip entry point: builds the package with the same CMakeLists.txt that colcon uses.

`pip install .` configures, builds and installs the CMake project into a staging folder and ships
that tree as wheel *data*, which pip installs relative to sys.prefix. sys.prefix is also the ament
prefix of the ROS 2 wheels from PyPI, so the result is laid out exactly like a colcon install:
site-packages/mirage_ros (generated interfaces + our sources), lib/mirage_ros/<executables>,
share/mirage_ros/{launch,config,package.xml} and the ament resource index.

Under colcon, package.xml selects ament_cmake and this file is not used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Command, Distribution, setup
from setuptools.command.build import build
from setuptools.command.install import install

ROOT = Path(__file__).resolve().parent
BUILD_DIR = ROOT / "build" / "pip"
STAGE_DIR = BUILD_DIR / "stage"


def _cmake_env() -> dict[str, str]:
    env = os.environ.copy()
    # pip's isolated build environment puts its own folders on PYTHONPATH and hides the venv;
    # CMake's helper scripts need the venv's ament_package and rosidl generators.
    parts = [
        p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and "pip-build-env-" not in p
    ]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    # ament's resource index is read from AMENT_PREFIX_PATH only. A sourced workspace sets it
    # without this interpreter's prefix (where the ROS 2 wheels are): append it when missing.
    env["AMENT_PREFIX_PATH"] = _with_prefix(env.get("AMENT_PREFIX_PATH", ""), sys.prefix)
    return env


def _with_prefix(search_path: str, prefix: str) -> str:
    """``search_path`` (``os.pathsep``-separated) with ``prefix`` appended unless listed."""
    parts = [p for p in search_path.split(os.pathsep) if p]
    if any(os.path.realpath(p) == os.path.realpath(prefix) for p in parts):
        return os.pathsep.join(parts)
    return os.pathsep.join([*parts, prefix])


class BuildCMake(Command):
    """Configure, build and stage-install CMakeLists.txt."""

    description = "build the ROS interfaces and install tree with CMake"
    user_options: list = []

    def initialize_options(self) -> None:
        pass

    def finalize_options(self) -> None:
        pass

    def run(self) -> None:
        if shutil.which("cmake") is None:
            raise SystemExit("mirage_ros: cmake is required (Debian: apt-get install cmake)")
        env = _cmake_env()
        BUILD_DIR.mkdir(parents=True, exist_ok=True)
        if STAGE_DIR.exists():
            shutil.rmtree(STAGE_DIR)
        jobs = str(os.cpu_count() or 2)
        self._cmake(
            ["cmake", "-S", str(ROOT), "-B", str(BUILD_DIR / "cmake"),
             f"-DCMAKE_INSTALL_PREFIX={STAGE_DIR}", f"-DPython3_EXECUTABLE={sys.executable}",
             "-DBUILD_TESTING=OFF", "-DCMAKE_BUILD_TYPE=Release"], env)
        self._cmake(["cmake", "--build", str(BUILD_DIR / "cmake"), "--parallel", jobs], env)
        self._cmake(["cmake", "--install", str(BUILD_DIR / "cmake")], env)

    @staticmethod
    def _cmake(cmd: list[str], env: dict[str, str]) -> None:
        print("mirage_ros:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, env=env)


class BuildWithCMake(build):
    sub_commands = [("build_cmake", None), *build.sub_commands]


class InstallStagedTree(install):
    """Install the CMake stage as data files relative to the prefix."""

    def run(self) -> None:
        self.run_command("build_cmake")
        data_files: dict[str, list[str]] = {}
        for path in sorted(STAGE_DIR.rglob("*")):
            rel = path.relative_to(STAGE_DIR)
            # rosidl writes an .egg-info of its own; shipping it would confuse `pip show`.
            if path.is_dir() or any(part.endswith(".egg-info") for part in rel.parts):
                continue
            if "__pycache__" in rel.parts or path.suffix in {".pyc", ".c"}:
                continue
            data_files.setdefault(str(rel.parent), []).append(str(path))
        self.distribution.data_files = sorted(data_files.items())
        super().run()


class NoEditable(Command):
    """Editable installs cannot work: the generated interfaces exist only in the build tree."""

    description = "refuse editable installs"
    user_options: list = []

    def initialize_options(self) -> None:
        pass

    def finalize_options(self) -> None:
        pass

    def run(self) -> None:
        raise SystemExit(
            "mirage_ros cannot be installed in editable mode (the ROS interfaces are generated "
            "at build time). Use `make test` (sources are imported from the checkout, "
            "interfaces from the venv) or `colcon build --symlink-install` in a ROS workspace.")


class BinaryDistribution(Distribution):
    """The wheel carries compiled type-support libraries, so it is platform-specific."""

    def has_ext_modules(self) -> bool:
        return True


setup(
    name="mirage_ros",
    version="0.1.0",
    description="Imagination service for ROS 2 planners: latent spatial memory + world model",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=[],
    distclass=BinaryDistribution,
    install_requires=[
        "numpy>=1.24",
        "pyyaml",
        "transforms3d>=0.4",
        "safetensors>=0.4",
        "torch>=2.4",
        "mujoco>=3.2",
        "rosbags>=0.10",
        "tqdm",
    ],
    cmdclass={
        "build_cmake": BuildCMake,
        "build": BuildWithCMake,
        "install": InstallStagedTree,
        "develop": NoEditable,
        "editable_wheel": NoEditable,
    },
)
