"""Files that are never half-written and headers that are read before anything is trusted.

Shared by the memory's map files and the model's checkpoints (both safetensors).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write to a temporary file in the target's folder, fsync, rename over the target, fsync the
    folder: a crash leaves the old file or the new one, never a torn one."""
    target = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(target)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
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
