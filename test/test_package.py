"""The package as users meet it: config matches the node, lint is clean, manifests agree with the
code, and the install tree works from pip, make and colcon (executables, share/, interfaces)."""

import os
import re
import shutil
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
    # The mirage node also declares its critics' parameters (all_defaults); the sim node not.
    expected = node.all_defaults() if hasattr(node, "all_defaults") else node.DEFAULTS
    assert _flatten(params["/**"]["ros__parameters"]) == expected
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


# ---- the install tree: executables, share/, interfaces (bugs hit by ROS users) ----------------

# lib/mirage_ros/<name> runs <module>.main(); ros2 run and launch_ros find them there.
EXECUTABLES = {
    "mirage_node": "mirage_ros.ros.mirage_node",
    "sim_node": "mirage_ros.ros.sim_node",
    "demo": "mirage_ros.ros.demo",
    "demo_planner": "mirage_ros.ros.demo_planner",
}


def _installed_prefix() -> Path:
    """The prefix this environment has mirage_ros installed in: the ament index (a sourced colcon
    workspace) first, else sys.prefix (`make` / `pip install .`)."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_prefix

        candidates.append(Path(get_package_prefix("mirage_ros")))
    except (ImportError, LookupError, OSError):
        pass
    candidates.append(Path(sys.prefix))
    for prefix in candidates:
        if (prefix / "lib" / "mirage_ros").is_dir():
            return prefix
    pytest.skip("mirage_ros is not installed in this environment (run `make .venv/.installed`)")


def _wrapper_interpreter(text: str) -> str:
    """The interpreter a wrapper script runs: its shebang, or the /bin/sh exec line that replaces
    the shebang for paths a shebang cannot hold."""
    first, _, rest = text.partition("\n")
    assert first.startswith("#!"), text
    if first == "#!/bin/sh":
        match = re.match(r"'''exec' \"([^\"]+)\" \"\$0\" \"\$@\"\n' '''\n", rest)
        assert match, text
        return match.group(1)
    interpreter = first[2:]
    assert " " not in interpreter, f"{interpreter!r} is a command, not the interpreter's path"
    return interpreter


def _wrapper_header(text: str) -> str:
    """Everything before the wrapper's Python body (the shebang, or the /bin/sh exec lines)."""
    return text[:text.index("import sys\n")]


def test_installed_executables_are_executable_wrappers_of_the_right_modules():
    lib = _installed_prefix() / "lib" / "mirage_ros"
    assert sorted(p.name for p in lib.iterdir()) == sorted(EXECUTABLES)
    for name, module in EXECUTABLES.items():
        path = lib / name
        # stat() follows the link that `colcon build --symlink-install` makes into the build tree.
        assert path.stat().st_mode & 0o111 == 0o111, f"{path} is not executable"
        assert f"\nfrom {module} import main\n" in path.read_text(), path


def test_wrappers_run_the_interpreter_that_installed_them(tmp_path):
    prefix = _installed_prefix()
    lib = prefix / "lib" / "mirage_ros"
    for name in EXECUTABLES:
        interpreter = _wrapper_interpreter((lib / name).read_text())
        assert os.path.isabs(interpreter) and Path(interpreter).name != "env", (name, interpreter)
        assert os.access(interpreter, os.X_OK), (name, interpreter)
    if prefix.resolve() != Path(sys.prefix).resolve():
        return  # a colcon workspace: its Python path comes from sourcing it
    # The bare-machine case: a venv that is not activated, run from elsewhere with a minimal
    # environment. Same header as the real wrapper, a body that reports what it got.
    script = tmp_path / "probe"
    script.write_text(
        _wrapper_header((lib / "mirage_node").read_text())
        + "import importlib.util, sys\n"
        + "print(sys.prefix)\n"
        + "print(importlib.util.find_spec('mirage_ros.ros.mirage_node') is not None)\n")
    script.chmod(0o755)
    out = subprocess.run(
        [str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"})
    assert out.returncode == 0, out.stderr
    got_prefix, found = out.stdout.split()
    assert Path(got_prefix).resolve() == Path(sys.prefix).resolve()
    assert found == "True"


def test_share_holds_config_and_launch_files():
    share = _installed_prefix() / "share" / "mirage_ros"
    for folder in ("config", "launch"):  # config/ holds the parameters and any RViz config
        source = {p.name for p in (REPO / folder).iterdir() if p.is_file()}
        installed = {p.name for p in (share / folder).iterdir() if p.is_file()}
        assert source <= installed, (folder, source - installed)
    assert (share / "package.xml").is_file()


def test_memory_services_are_generated():
    from std_srvs.srv import Trigger  # the clear-memory service type

    from mirage_ros.srv import LoadMemory, SaveMemory

    assert set(Trigger.Response.get_fields_and_field_types()) == {"success", "message"}
    for srv in (SaveMemory, LoadMemory):
        assert srv.Request.get_fields_and_field_types() == {"path": "string"}
        assert srv.Response.get_fields_and_field_types() == {
            "success": "boolean", "message": "string", "voxels": "uint64"}
    # The comments name the node parameter an empty path falls back to: it must exist.
    params = _flatten(
        yaml.safe_load((REPO / "config" / "mirage.yaml").read_text())["/**"]["ros__parameters"])
    for name in ("SaveMemory", "LoadMemory"):
        text = (REPO / "srv" / f"{name}.srv").read_text()
        assert ".safetensors" in text, name
        default = re.search(r"empty = the node's default \(parameter (\w+)\)", text)
        assert default and default.group(1) in params, (name, default)


# ---- share_file: one lookup for config/ and launch/ however the package was installed -------


def _fake_share(root: Path, relative: str, text: str) -> Path:
    path = root / "share" / "mirage_ros" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_share_file_finds_the_installed_config():
    from mirage_ros.ros.resources import share_file

    path = share_file("config/mirage.yaml")
    assert path.is_file() and path.parts[-2:] == ("config", "mirage.yaml")
    assert "ros__parameters" in path.read_text()


def test_share_file_prefers_the_ament_index_then_sys_prefix(tmp_path, monkeypatch):
    from mirage_ros.ros import resources

    pytest.importorskip("ament_index_python")
    workspace, venv = tmp_path / "ws", tmp_path / "venv"
    index = workspace / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    (index / "mirage_ros").write_text("")
    in_ws = _fake_share(workspace, "config/only_here.yaml", "ws")
    in_venv = _fake_share(venv, "config/only_here.yaml", "venv")
    monkeypatch.setattr(sys, "prefix", str(venv))
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(workspace))
    assert resources.share_file("config/only_here.yaml") == in_ws
    monkeypatch.delenv("AMENT_PREFIX_PATH")  # nothing sourced: the bare-machine venv
    assert resources.share_file("config/only_here.yaml") == in_venv
    # A package that is not registered in the index still falls back to sys.prefix.
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "elsewhere"))
    assert resources.share_file("config/only_here.yaml") == in_venv


def test_share_file_without_ament_index_python(tmp_path, monkeypatch):
    from mirage_ros.ros import resources

    monkeypatch.setitem(sys.modules, "ament_index_python.packages", None)  # import fails
    in_venv = _fake_share(tmp_path, "launch/x.launch.py", "")
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    assert resources.share_file("launch/x.launch.py") == in_venv
    # From a checkout (nothing installed), the checkout's own files are found.
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "empty"))
    assert resources.share_file("config/mirage.yaml") == REPO / "config" / "mirage.yaml"


def test_share_file_names_every_place_it_looked(tmp_path, monkeypatch):
    from mirage_ros.ros import resources

    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "ws"))
    with pytest.raises(FileNotFoundError) as err:
        resources.share_file("config/no_such.yaml")
    message = str(err.value)
    assert str(tmp_path / "venv" / "share" / "mirage_ros" / "config" / "no_such.yaml") in message
    assert str(REPO / "config" / "no_such.yaml") in message
    assert "ament index" in message and str(tmp_path / "ws") in message
    for bad in ("/etc/passwd", "../setup.py", ""):
        with pytest.raises(ValueError):
            resources.share_file(bad)


# ---- CMake: configure in a shell that has sourced a workspace (≈5 s, no build) -----------------


@pytest.fixture(scope="module")
def cmake_configure(tmp_path_factory):
    """Configure CMakeLists.txt with tests on, the way colcon does after a workspace was sourced:
    AMENT_PREFIX_PATH set, but not to the prefix that holds the ROS 2 packages."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    prefixes = [Path(sys.prefix)] + [
        Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    if not any((p / "share" / "ament_cmake_pytest").is_dir() for p in prefixes):
        pytest.skip("ament_cmake_pytest is not installed (the Makefile's BUILD_DEPS bring it)")
    tmp = tmp_path_factory.mktemp("cmake")
    sourced = tmp / "sourced_ws" / "install"
    sourced.mkdir(parents=True)
    env = dict(os.environ)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(
        [str(sourced), *filter(None, [os.environ.get("AMENT_PREFIX_PATH")])])
    build = tmp / "build"
    out = subprocess.run(
        ["cmake", "-S", str(REPO), "-B", str(build), f"-DPython3_EXECUTABLE={sys.executable}",
         "-DBUILD_TESTING=ON", f"-DCMAKE_INSTALL_PREFIX={tmp / 'install'}"],
        capture_output=True, text=True, env=env, timeout=300)
    return build, out


def test_cmake_configures_with_a_workspace_sourced(cmake_configure):
    _, out = cmake_configure
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def test_build_tree_wrappers_are_executable_and_use_the_build_interpreter(cmake_configure):
    build, out = cmake_configure
    assert out.returncode == 0, out.stderr[-3000:]
    scripts = build / "scripts"  # what `colcon build --symlink-install` links lib/mirage_ros/ to
    assert sorted(p.name for p in scripts.iterdir()) == sorted(EXECUTABLES)
    for name, module in EXECUTABLES.items():
        script = scripts / name
        assert script.stat().st_mode & 0o111 == 0o111, f"{script} is not executable"
        text = script.read_text()
        assert _wrapper_interpreter(text) == sys.executable
        assert text.endswith(f"import sys\nfrom {module} import main\nsys.exit(main())\n")


def test_colcon_test_has_the_pytest_suite_to_run(cmake_configure):
    build, out = cmake_configure
    assert out.returncode == 0, out.stderr[-3000:]
    listed = subprocess.run(["ctest", "-N"], cwd=build, capture_output=True, text=True)
    assert "mirage_ros_tests" in listed.stdout and "Total Tests: 1" in listed.stdout, listed.stdout
    ctest_file = (build / "CTestTestfile.cmake").read_text()
    assert "pytest" in ctest_file and str(REPO / "test") in ctest_file


def test_setup_py_appends_the_interpreter_prefix_to_ament_prefix_path():
    # setup.py runs setup() when imported; take the one helper out of it.
    import ast

    tree = ast.parse((REPO / "setup.py").read_text())
    func = next(
        n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_with_prefix")
    namespace: dict = {"os": os}
    exec(compile(ast.Module(body=[func], type_ignores=[]), "setup.py", "exec"), namespace)
    with_prefix = namespace["_with_prefix"]
    assert with_prefix("", "/venv") == "/venv"
    assert with_prefix("/ws/install", "/venv") == "/ws/install:/venv"
    assert with_prefix("/venv:/ws/install", "/venv") == "/venv:/ws/install"
    assert with_prefix("/ws/install::", "/venv") == "/ws/install:/venv"


# ---- colcon itself, where it is installed (≈1 min; skipped otherwise) ------------------------


def _colcon() -> str | None:
    return shutil.which("colcon", path=os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


@pytest.mark.skipif(_colcon() is None, reason="colcon is not installed")
@pytest.mark.skipif(bool(os.environ.get("MIRAGE_ROS_CTEST")),
                    reason="already running under colcon test")
def test_colcon_symlink_install_gives_executables_and_rebuilds_in_a_sourced_shell(tmp_path):
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "mirage_ros").symlink_to(REPO)
    env = {k: v for k, v in os.environ.items()
           if k not in {"AMENT_PREFIX_PATH", "COLCON_PREFIX_PATH", "CMAKE_PREFIX_PATH"}}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    build = (f"{_colcon()} build --symlink-install --packages-select mirage_ros "
             "--event-handlers console_direct- ")

    def bash(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", command], cwd=ws, env=env, capture_output=True,
                              text=True, timeout=900)

    out = bash(build)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    lib = ws / "install" / "mirage_ros" / "lib" / "mirage_ros"
    for name in EXECUTABLES:
        assert (lib / name).is_symlink() and os.access(lib / name, os.X_OK), name
    # The rebuild that failed with "No 'rosidl_typesupport_c' found": the workspace is sourced
    # (AMENT_PREFIX_PATH set, without the ROS 2 wheels' prefix) and CMake configures again.
    out = bash(f"source install/setup.bash && {build} --cmake-force-configure")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    probe = "from mirage_ros.ros.resources import share_file as f; print(f('config/mirage.yaml'))"
    found = bash(f"cd {tmp_path} && source {ws}/install/setup.bash && "
                 f"{sys.executable} -c \"{probe}\"")
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == str(
        ws / "install" / "mirage_ros" / "share" / "mirage_ros" / "config" / "mirage.yaml")


# ---- manifests: package.xml, the Makefile and the README agree with the code -----------------

# Third-party imports -> package.xml keys (rosdep keys; -pip keys are installed by rosdep with pip;
# python3-safetensors has no rosdep key and is documented as pip-only).
PYTHON_KEYS = {
    "numpy": "python3-numpy",
    "yaml": "python3-yaml",
    "cv2": "python3-opencv",
    "tqdm": "python3-tqdm",
    "transforms3d": "python3-transforms3d",
    "torch": "python3-torch",
    "mujoco": "python3-mujoco-pip",
    "rosbags": "python3-rosbags-pip",
    "safetensors": "python3-safetensors",
}
ROS_PYTHON_PACKAGES = {"rclpy", "ament_index_python", "launch", "launch_ros"}
ROS_INTERFACES = re.compile(r"[a-z0-9_]+_(msgs|srvs|interfaces)")


def _package():
    catkin_pkg = pytest.importorskip("catkin_pkg.package")
    return catkin_pkg.parse_package(str(REPO / "package.xml"))


def _required_imports() -> dict[str, set[str]]:
    """Top-level third-party modules imported by the package and its launch files, except those
    imported inside ``try: ... except ImportError`` (optional, like cv_bridge)."""
    import ast

    def optional(handlers) -> bool:
        names = set()
        for h in handlers:
            for t in (h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]):
                names.add(getattr(t, "id", None))
        return bool(names & {"ImportError", "ModuleNotFoundError", "Exception", None})

    found: dict[str, set[str]] = {}

    def visit(node, guarded: bool, path: Path) -> None:
        if isinstance(node, ast.Try):
            inner = guarded or optional(node.handlers)
            for child in node.body:
                visit(child, inner, path)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, guarded, path)
            return
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if not guarded and top not in sys.stdlib_module_names | {"mirage_ros", "kernels"}:
                found.setdefault(top, set()).add(str(path.relative_to(REPO)))
        for child in ast.iter_child_nodes(node):
            visit(child, guarded, path)

    files = [*(REPO / "mirage_ros").rglob("*.py"), *(REPO / "launch").glob("*.py")]
    for path in files:
        if "__pycache__" not in path.parts:
            visit(ast.parse(path.read_text(), str(path)), False, path)
    return found


def test_package_xml_declares_every_import():
    pkg = _package()
    declared = {d.name for d in [*pkg.build_depends, *pkg.exec_depends]}
    missing = {}
    for module, files in sorted(_required_imports().items()):
        if module in PYTHON_KEYS:
            key = PYTHON_KEYS[module]
        elif module in ROS_PYTHON_PACKAGES or ROS_INTERFACES.fullmatch(module):
            key = module
        else:
            missing[module] = f"unknown third-party import in {sorted(files)}: add its rosdep " \
                              "key to package.xml and to PYTHON_KEYS here"
            continue
        if key not in declared:
            missing[module] = f"{key} (imported in {sorted(files)})"
    assert not missing, missing


def test_package_xml_declares_services_and_test_dependencies():
    pkg = _package()
    assert "std_srvs" in {d.name for d in pkg.build_depends} & {d.name for d in pkg.exec_depends}
    assert {d.name for d in pkg.test_depends} >= {
        "ament_cmake_pytest", "python3-pytest", "python3-hypothesis"}


def _make_variables() -> dict[str, list[str]]:
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    return {m[1]: m[2].split() for m in re.finditer(r"^([A-Z_]+)\s*:=\s*(.*)$", text, re.M)}


def test_makefile_installs_what_package_xml_declares():
    pkg = _package()
    make = _make_variables()
    wheels = {w.split("==")[0] for w in make["ROS_DEPS"]}
    for dep in {d.name for d in [*pkg.build_depends, *pkg.exec_depends]}:
        if dep == "rclpy" or ROS_INTERFACES.fullmatch(dep):
            assert "ros-" + dep.replace("_", "-") in wheels, dep
    runtime = {w.split("==")[0] for w in make["RUNTIME_DEPS"]}
    pip_names = {"python3-numpy": "numpy", "python3-yaml": "pyyaml", "python3-tqdm": "tqdm",
                 "python3-opencv": "opencv-python-headless", "python3-torch": "torch",
                 "python3-transforms3d": "transforms3d", "python3-mujoco-pip": "mujoco",
                 "python3-rosbags-pip": "rosbags", "python3-safetensors": "safetensors"}
    for dep in pkg.exec_depends:
        if dep.name.startswith("python3-"):
            assert pip_names[dep.name] in runtime, dep.name
    assert "ros-ament-cmake-pytest" in make["BUILD_DEPS"]
    tests = {w.split("==")[0] for w in make["TEST_DEPS"]}
    assert {"pytest", "hypothesis"} <= tests
    assert any(re.fullmatch(r"import-linter==[0-9.]+", w) for w in make["TEST_DEPS"])


def test_readme_ros_section_lists_the_dependencies():
    text = (REPO / "README.md").read_text()
    section = text[text.index("## With ROS 2"):text.index("## ROS interface")]
    pkg = _package()
    for dep in [*pkg.build_depends, *pkg.exec_depends, *pkg.test_depends]:
        if dep.name not in {"builtin_interfaces", "rosidl_default_runtime", "rcl_interfaces"}:
            assert f"`{dep.name}`" in section, dep.name
    assert "--skip-keys python3-safetensors" in section
    assert "pip install safetensors" in section
