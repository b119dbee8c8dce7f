"""Find the files mirage_ros installs into ``share/mirage_ros`` (``config/``, ``launch/``).

One lookup for every way the package is installed, in this order:

1. the ament index: ``ament_index_python.get_package_share_directory("mirage_ros")`` when
   ament_index_python is importable and the package is registered (a colcon workspace or a ROS
   install that has been sourced);
2. ``<sys.prefix>/share/mirage_ros``: ``pip install .`` / ``make`` put it there, next to the
   ROS 2 wheels, and nothing needs to be sourced;
3. the source checkout this module lives in (running from a clone).

The first place that holds the file wins. A file found nowhere raises FileNotFoundError naming
every place that was tried, so the message says what to install or source.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path, PurePosixPath

PACKAGE = "mirage_ros"


def _checkout() -> Path | None:
    """The source checkout holding this module, if it is one (it has the package manifest)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "package.xml").is_file() else None


def share_dirs() -> tuple[list[tuple[str, Path]], list[str]]:
    """The candidate share directories, in lookup order, each with a label saying where it came
    from; and notes on the places that could not even be asked (for error messages)."""
    dirs: list[tuple[str, Path]] = []
    notes: list[str] = []
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError:
        notes.append("the ament index (ament_index_python is not importable)")
    else:
        try:
            dirs.append(("ament index", Path(get_package_share_directory(PACKAGE))))
        except (LookupError, OSError, ValueError) as err:
            # PackageNotFoundError (a KeyError) when not registered, EnvironmentError when
            # AMENT_PREFIX_PATH is unset.
            search = os.environ.get("AMENT_PREFIX_PATH", "")
            notes.append(
                f"the ament index (AMENT_PREFIX_PATH={search!r}: "
                f"{type(err).__name__}: {err})")
    dirs.append(("sys.prefix", Path(sys.prefix) / "share" / PACKAGE))
    checkout = _checkout()
    if checkout is not None:
        dirs.append(("source checkout", checkout))
    return dirs, notes


def share_file(relative: str) -> Path:
    """The installed file ``share/mirage_ros/<relative>``, e.g. ``config/mirage.yaml``.

    Raises ValueError for an absolute path or one that climbs out with ``..``, and
    FileNotFoundError (naming every place looked in) when no candidate holds the file.
    """
    rel = PurePosixPath(relative)
    if not relative or rel.is_absolute() or ".." in rel.parts:
        raise ValueError(
            f"share_file wants a path inside share/{PACKAGE}, like 'config/mirage.yaml'; "
            f"got {relative!r}")
    dirs, notes = share_dirs()
    looked: list[str] = []
    seen: set[Path] = set()
    for label, base in dirs:
        candidate = base / rel
        key = candidate.resolve() if candidate.exists() else candidate
        if key in seen:
            continue
        seen.add(key)
        if candidate.is_file():
            return candidate
        looked.append(f"{candidate} ({label})")
    places = "; ".join(looked + notes)
    raise FileNotFoundError(
        f"{PACKAGE}: {relative} not found. Looked in: {places}. Install the package "
        f"(`make`, `pip install .` or `colcon build`) and, in a ROS workspace, source its "
        f"install/setup.bash.")
