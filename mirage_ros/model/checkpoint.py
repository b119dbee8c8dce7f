"""Checkpoints in safetensors, with the model config inside and a checksum; never pickle.

Layout: tensors are named "<part>.<parameter>" (part = autoencoder, depth_head, dit, stats...);
metadata holds the format name and version, each part's config as JSON, free-form notes (e.g.
training data and steps), and the SHA-256 of every tensor's bytes in name order. Loading refuses a
file whose checksum, format or configs do not match, so a tampered or truncated file never
reaches a model.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from mirage_ros.safefile import safetensors_metadata, write_atomic

FORMAT = "mirage_ros.checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """The file is not a valid mirage_ros checkpoint (corrupt, tampered, wrong version...)."""


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(
    path: str | os.PathLike,
    tensors: dict[str, torch.Tensor],
    configs: dict[str, dict],
    notes: dict[str, str] | None = None,
) -> None:
    """Write atomically (temp file in the same folder, then rename)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {
        "format": FORMAT,
        "version": str(VERSION),
        "configs": json.dumps(configs, sort_keys=True),
        "notes": json.dumps(notes or {}, sort_keys=True),
        "sha256": _digest(tensors),
    }
    write_atomic(path, save(tensors, metadata=meta))


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """Return (tensors, configs, notes) after verifying format, version and checksum."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    try:
        tensors = load(data)
        meta = safetensors_metadata(data)
    except (SafetensorError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from err
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a mirage_ros checkpoint")
    if meta.get("version") != str(VERSION):
        raise CheckpointError(
            f"{path} has checkpoint version {meta.get('version')}; this code reads {VERSION}")
    if meta.get("sha256") != _digest(tensors):
        raise CheckpointError(f"{path} failed its checksum: the file is corrupt or was modified")
    try:
        return tensors, json.loads(meta["configs"]), json.loads(meta["notes"])
    except (KeyError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} has unreadable metadata: {err}") from err


def module_tensors(prefix: str, module: torch.nn.Module, dtype: torch.dtype | None = None):
    out = {}
    for name, t in module.state_dict().items():
        out[f"{prefix}.{name}"] = t.to(dtype) if dtype is not None and t.is_floating_point() else t
    return out


def part(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
