"""Save and load a memory as safetensors: no pickle anywhere, verified before anything is trusted.

File layout: the safetensors tensors ``keys`` (int64 [N]), ``position`` (f32 [N,3]), ``latent``
(f32 [N,C]), ``weight`` (f32 [N]), ``stamp`` (f64 [N]), ``anchor`` (f64 [3]) and ``now``
(f64 [1]), and string metadata: ``format``, ``version``, ``channels``, ``voxel_size``,
``capacity``, ``count``, ``has_anchor``, ``has_now``, ``config`` (JSON of every option),
``model`` and ``checksum``. The checksum is the sha256 of the canonical JSON of the other metadata
followed by, for each tensor in name order, its name, dtype, shape and raw bytes: flipping a bit
anywhere, truncating the file or editing a metadata field is detected.

Keyframes (``keyframes``: whole observed frames kept beside the voxels) are optional, like
``model``: a map that has them adds the tensors ``kf_latent`` (f32 [M,C,h,w]), ``kf_points``
(f32 [M,h*w,3], NaN where a cell has no depth), ``kf_position`` and ``kf_axis`` (f32 [M,3]) and
``kf_stamp`` (f64 [M]) and the metadata ``keyframes`` (M), all under the same checksum. Files
without them load with no keyframes; readers older than keyframes refuse files that have them
(they name the unexpected tensors).

``model`` names the autoencoder whose latents the map holds (``WorldModel.autoencoder_id()``;
empty or absent: unknown). It is optional, so it did not change the format version: files
written before it existed read as "unknown model", and older readers ignore it. Whoever loads a
map for a model (``LatentMemory.load_into(path, model=...)``, the node) refuses a map of another
model and a map of unknown model, with a message naming both. This module only stores the
string; it knows nothing of models.

Saves are atomic (``mirage_ros.safefile.write_atomic``): the bytes go to a temporary file
``.<name>.<random>.tmp`` in the target's directory, are fsynced, and ``os.replace`` swaps it in
(then the directory is fsynced), so a crash, even SIGKILL, leaves either the old file or the new
one, never a torn one. A process killed mid-save leaves its temporary file behind; the next save
of the same path deletes it (temporary files of saves still running are locked and kept).

Loading refuses (``MemoryFormatError``, nothing half-loaded) files that are not safetensors,
truncated, bit-flipped or edited (checksum), of another format name or version, or whose tensors
disagree with their metadata. ``LatentMemory.load_into`` also refuses another channel count and,
when asked (the node asks for all three), another model, another voxel size, or more voxels
than the memory's capacity; the memory is unchanged after any refusal.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mirage_ros.safefile import safetensors_metadata, safetensors_size

FORMAT_NAME = "mirage_ros.latent_memory"
FORMAT_VERSION = 1

_TENSOR_SPECS = {
    "keys": torch.int64,
    "position": torch.float32,
    "latent": torch.float32,
    "weight": torch.float32,
    "stamp": torch.float64,
    "anchor": torch.float64,
    "now": torch.float64,
}


_KEYFRAME_SPECS = {
    "kf_latent": torch.float32,
    "kf_points": torch.float32,
    "kf_position": torch.float32,
    "kf_axis": torch.float32,
    "kf_stamp": torch.float64,
}


class MemoryFormatError(ValueError):
    """A memory file is corrupt, truncated, tampered with, or of an unsupported version."""


@dataclass
class SavedState:
    config: dict[str, Any]  # every MemoryConfig field, JSON-able
    keys: torch.Tensor
    position: torch.Tensor
    latent: torch.Tensor
    weight: torch.Tensor
    stamp: torch.Tensor
    anchor: torch.Tensor | None  # f64 [3], the latest camera position
    now: float | None  # latest stamp seen
    model: str | None = None  # identity of the autoencoder that made the latents; None: unknown
    keyframes: dict[str, torch.Tensor] | None = None  # _KEYFRAME_SPECS names without "kf_"


def _checksum(meta: dict[str, str], tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(meta, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        digest.update(f"\n{name}:{str(t.dtype)}:{list(t.shape)}\n".encode())
        digest.update(t.numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def encode(state: SavedState) -> bytes:
    cfg = state.config
    tensors = {
        "keys": state.keys,
        "position": state.position,
        "latent": state.latent,
        "weight": state.weight,
        "stamp": state.stamp,
        "anchor": state.anchor
        if state.anchor is not None
        else torch.zeros(3, dtype=torch.float64),
        "now": torch.tensor([state.now if state.now is not None else 0.0], dtype=torch.float64),
    }
    kf = state.keyframes if state.keyframes and state.keyframes["latent"].shape[0] else None
    if kf is not None:
        tensors.update({f"kf_{k}": v for k, v in kf.items()})
    specs = {**_TENSOR_SPECS, **_KEYFRAME_SPECS}
    tensors = {k: v.detach().to("cpu", specs[k]).contiguous() for k, v in tensors.items()}
    meta = {
        "format": FORMAT_NAME,
        "version": str(FORMAT_VERSION),
        "channels": str(int(cfg["channels"])),
        "voxel_size": repr(float(cfg["voxel_size"])),
        "capacity": str(int(cfg["capacity"])),
        "count": str(int(state.keys.numel())),
        "has_anchor": "1" if state.anchor is not None else "0",
        "has_now": "1" if state.now is not None else "0",
        "config": json.dumps(cfg, sort_keys=True),
        "model": state.model or "",
    }
    if kf is not None:
        meta["keyframes"] = str(int(kf["latent"].shape[0]))
    meta["checksum"] = _checksum(meta, tensors)
    return st_save(tensors, metadata=meta)


def _header_metadata(data: bytes) -> dict[str, str]:
    try:
        return safetensors_metadata(data)
    except ValueError as exc:
        raise MemoryFormatError(f"memory {exc}") from exc


def _field(meta: dict[str, str], name: str, kind: type):
    if name not in meta:
        raise MemoryFormatError(f"memory file metadata lacks {name!r}")
    try:
        value = kind(meta[name])
    except ValueError as exc:
        raise MemoryFormatError(f"memory file metadata {name!r} is malformed") from exc
    if isinstance(value, float) and not math.isfinite(value):
        raise MemoryFormatError(f"memory file metadata {name!r} is not finite")
    return value


def decode(data: bytes) -> SavedState:
    """Parse and verify a memory file's bytes; raise ``MemoryFormatError`` on any defect."""
    meta = _header_metadata(data)
    if meta.get("format") != FORMAT_NAME:
        raise MemoryFormatError(f"not a latent memory file (format {meta.get('format')!r})")
    version = _field(meta, "version", int)
    if version != FORMAT_VERSION:
        raise MemoryFormatError(
            f"unsupported memory file version {version} (this build reads {FORMAT_VERSION})"
        )
    expected_size = safetensors_size(data)
    if expected_size is not None and len(data) < expected_size:
        raise MemoryFormatError(
            f"memory file is truncated ({len(data)} of the {expected_size} bytes its header "
            "describes)"
        )
    try:
        tensors = st_load(data)
    except Exception as exc:  # safetensors raises its own error type for any malformed payload
        raise MemoryFormatError(f"memory file payload is unreadable: {exc}") from exc
    has_keyframes = "keyframes" in meta
    specs = {**_TENSOR_SPECS, **_KEYFRAME_SPECS} if has_keyframes else _TENSOR_SPECS
    if set(tensors) != set(specs):
        raise MemoryFormatError(f"memory file holds tensors {sorted(tensors)}")
    for name, dtype in specs.items():
        if tensors[name].dtype != dtype:
            raise MemoryFormatError(f"tensor {name!r} has dtype {tensors[name].dtype}")
    stored = meta.get("checksum")
    expected = _checksum({k: v for k, v in meta.items() if k != "checksum"}, tensors)
    if stored != expected:
        raise MemoryFormatError("memory file checksum mismatch (corrupt or modified)")

    channels = _field(meta, "channels", int)
    voxel_size = _field(meta, "voxel_size", float)
    capacity = _field(meta, "capacity", int)
    count = _field(meta, "count", int)
    try:
        config = json.loads(meta["config"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise MemoryFormatError("memory file metadata 'config' is missing or malformed") from exc
    if not isinstance(config, dict) or (
        config.get("channels"),
        config.get("voxel_size"),
        config.get("capacity"),
    ) != (channels, voxel_size, capacity):
        raise MemoryFormatError("memory file config disagrees with its metadata")

    keys, pos, lat = tensors["keys"], tensors["position"], tensors["latent"]
    weight, stamp = tensors["weight"], tensors["stamp"]
    shapes_ok = (
        keys.shape == (count,)
        and pos.shape == (count, 3)
        and lat.shape == (count, channels)
        and weight.shape == (count,)
        and stamp.shape == (count,)
        and tensors["anchor"].shape == (3,)
        and tensors["now"].shape == (1,)
    )
    if not shapes_ok:
        raise MemoryFormatError("memory file tensor shapes disagree with its metadata")
    if count > capacity:
        raise MemoryFormatError(f"memory file holds {count} voxels over its capacity {capacity}")
    if count and (bool((keys[1:] <= keys[:-1]).any()) or bool((keys < 0).any())):
        raise MemoryFormatError("memory file keys are not strictly increasing")
    finite = all(bool(torch.isfinite(t).all()) for t in (pos, lat, weight, stamp))
    if not finite or bool((weight <= 0).any()):
        raise MemoryFormatError("memory file holds non-finite values or non-positive weights")
    has_anchor = meta.get("has_anchor") == "1"
    has_now = meta.get("has_now") == "1"
    if not bool(torch.isfinite(tensors["anchor"]).all() and torch.isfinite(tensors["now"]).all()):
        raise MemoryFormatError("memory file anchor or stamp is not finite")
    keyframes = _keyframes(meta, tensors, channels) if has_keyframes else None
    return SavedState(
        config=config,
        keys=keys,
        position=pos,
        latent=lat,
        weight=weight,
        stamp=stamp,
        anchor=tensors["anchor"] if has_anchor else None,
        now=float(tensors["now"][0]) if has_now else None,
        model=meta.get("model") or None,
        keyframes=keyframes,
    )


def _keyframes(meta: dict[str, str], tensors: dict[str, torch.Tensor],
               channels: int) -> dict[str, torch.Tensor]:
    m = _field(meta, "keyframes", int)
    lat, pts = tensors["kf_latent"], tensors["kf_points"]
    ok = (
        m > 0
        and lat.ndim == 4
        and lat.shape[:2] == (m, channels)
        and pts.shape == (m, lat.shape[2] * lat.shape[3], 3)
        and tensors["kf_position"].shape == (m, 3)
        and tensors["kf_axis"].shape == (m, 3)
        and tensors["kf_stamp"].shape == (m,)
    )
    if not ok:
        raise MemoryFormatError("memory file keyframe shapes disagree with its metadata")
    finite = all(bool(torch.isfinite(tensors[k]).all())
                 for k in ("kf_latent", "kf_position", "kf_axis", "kf_stamp"))
    if not finite or bool(torch.isinf(pts).any()):
        raise MemoryFormatError("memory file keyframes hold non-finite values")
    return {k[3:]: tensors[k] for k in _KEYFRAME_SPECS}


def read_file(path: str | os.PathLike[str]) -> SavedState:
    with open(path, "rb") as f:
        data = f.read()
    return decode(data)
