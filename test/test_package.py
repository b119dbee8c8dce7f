"""The package as users meet it: config matches the node, lint is clean, manifests parse."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("config, module", [
    ("mirage.yaml", "mirage_ros.ros.mirage_node"),
    ("sim.yaml", "mirage_ros.ros.sim_node"),
])
def test_config_file_matches_node_defaults(config, module):
    import importlib

    node = importlib.import_module(module)
    params = yaml.safe_load((REPO / "config" / config).read_text())
    assert _flatten(params["/**"]["ros__parameters"]) == node.DEFAULTS
    assert node.DESCRIPTIONS.keys() == node.DEFAULTS.keys()


def test_ruff_is_clean():
    ruff = pytest.importorskip("ruff")
    del ruff
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
        cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_package_xml_is_valid():
    catkin_pkg = pytest.importorskip("catkin_pkg.package")
    pkg = catkin_pkg.parse_package(str(REPO / "package.xml"))
    assert pkg.name == "mirage_ros"
    assert pkg.get_build_type() == "ament_cmake"


def test_interfaces_are_generated_with_fixed_names_and_codes():
    from mirage_ros.action import ScorePaths
    from mirage_ros.msg import CandidatePaths, PathCritics, PathScores

    r = ScorePaths.Result
    codes = {n: getattr(r, n) for n in (
        "SUCCESS", "INVALID_INPUT", "NO_MEMORY", "TRANSFORM_ERROR", "CANCELED", "PREEMPTED",
        "INTERNAL_ERROR")}
    assert codes["SUCCESS"] == 0 and len(set(codes.values())) == 7
    assert set(ScorePaths.Goal.get_fields_and_field_types()) >= {
        "header", "paths", "horizon", "goal_image", "goal_pose", "num_previews"}
    assert set(r.get_fields_and_field_types()) >= {
        "error_code", "error_msg", "scores", "best_index", "critics", "previews",
        "preview_indices", "planning_time"}
    assert set(ScorePaths.Feedback.get_fields_and_field_types()) == {"steps_done", "steps_total"}
    assert set(PathScores.get_fields_and_field_types()) == {
        "header", "scores", "best_index", "critics"}
    assert set(CandidatePaths.get_fields_and_field_types()) == {"header", "paths"}
    assert set(PathCritics.get_fields_and_field_types()) == {"names", "costs"}


def test_launch_file_describes_the_node():
    # `import launch` alone would find this repository's launch/ folder as a namespace package.
    pytest.importorskip(
        "launch_ros", reason="launch_ros is not on PyPI; this runs where ROS 2 is installed")
    import importlib.util

    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument

    expected = {
        "mirage.launch.py": {"namespace", "use_sim_time", "params_file", "log_level"},
        "sim.launch.py": {"namespace", "scene_seed", "sim_params_file", "params_file",
                          "log_level"},
    }
    for name, args in expected.items():
        spec = importlib.util.spec_from_file_location("m", REPO / "launch" / name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        try:
            desc = module.generate_launch_description()
        except LookupError:  # package not installed in a sourced workspace
            pytest.skip("mirage_ros is not in the ament index of this environment")
        assert isinstance(desc, LaunchDescription)
        declared = {e.name for e in desc.entities if isinstance(e, DeclareLaunchArgument)}
        assert declared >= args, name
