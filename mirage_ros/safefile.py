"""Files that are never half-written and headers that are read before anything is trusted.

Shared by the memory's map files and the model's checkpoints (both safetensors).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile

_TMP_SUFFIX = ".tmp"


def _temp_name_pattern(basename: str) -> re.Pattern[str]:
    # tempfile.mkstemp's random part: 8 characters of [a-z0-9_]
    return re.compile(re.escape("." + basename + ".") + r"[a-z0-9_]{8}" + re.escape(_TMP_SUFFIX))


def _same_file(path: str, fd: int) -> bool:
    try:
        return os.path.samestat(os.stat(path), os.fstat(fd))
    except FileNotFoundError:
        return False


def _locked_temp(target: str) -> tuple[int, str]:
    """A new temporary file next to ``target``, opened and exclusively locked (flock)."""
    directory, base = os.path.split(target)
    while True:
        fd, tmp = tempfile.mkstemp(prefix="." + base + ".", suffix=_TMP_SUFFIX, dir=directory)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _same_file(tmp, fd):
            return fd, tmp
        # Another save's clean-up took it in the instant before the lock: take another.
        os.close(fd)


def remove_stale_temps(path: str | os.PathLike[str]) -> list[str]:
    """Delete the temporary files that killed ``write_atomic`` calls for ``path`` left behind.

    A save in progress holds an exclusive lock on its temporary file and the kernel drops that
    lock when its process dies, even by SIGKILL; so a temporary file whose lock can be taken
    belongs to no running save and is deleted. Returns the names deleted.
    """
    target = os.path.abspath(os.fspath(path))
    directory, base = os.path.split(target)
    pattern = _temp_name_pattern(base)
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not pattern.fullmatch(name):
            continue
        full = os.path.join(directory, name)
        try:
            fd = os.open(full, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _same_file(full, fd):  # still the file we locked, not a renamed or new one
                os.unlink(full)
                removed.append(name)
        except OSError:  # locked by a running save (or already gone): leave it
            pass
        finally:
            os.close(fd)
    return removed


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write to a temporary file in the target's folder, fsync, rename over the target, fsync the
    folder: a crash leaves the old file or the new one, never a torn one.

    The temporary file is ``.<name>.<8 random characters>.tmp``, locked while the save runs. A
    process killed mid-save (SIGKILL, power loss) leaves it behind; every save first deletes
    those leftovers of earlier saves of the same path (``remove_stale_temps``), so at most one
    per killed process exists until the next save.
    """
    target = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(target)
    remove_stale_temps(target)
    fd, tmp = _locked_temp(target)
    try:
        # Keep the descriptor (and its lock) open until the rename: a clean-up running in
        # another process must not take the file while it is still to be renamed.
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)
    # Make the rename itself durable; some filesystems refuse fsync on a directory.
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def safetensors_metadata(data: bytes) -> dict[str, str]:
    """The string metadata of a safetensors file's bytes; ValueError saying what is wrong."""
    if len(data) < 8:
        raise ValueError("file is truncated (no safetensors header)")
    n = int.from_bytes(data[:8], "little")
    if len(data) > 8 and data[8:9] != b"{":  # the JSON header follows its 8-byte length
        raise ValueError("file is not safetensors (no JSON header after the length)")
    if n > len(data) - 8:
        raise ValueError("file is truncated (header runs past the end)")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"file header is not valid JSON: {exc}") from exc
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ValueError("file has no string metadata")
    return meta


def safetensors_size(data: bytes) -> int | None:
    """The length a safetensors file must have by its header (8 + header + the end of its last
    tensor), or None when the header cannot be read; tells a truncated file from a corrupt one."""
    try:
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, IndexError,
            TypeError, ValueError):
        return None
    return 8 + n + max(ends, default=0)
