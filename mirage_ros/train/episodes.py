"""Episodes on disk: the one dataset format of mirage_ros (simulated or imported from bags).

An *episode* is a sequence of consecutive RGB-D frames from one camera moving through one place:

=============  =================  =====================================================
field          array              meaning
=============  =================  =====================================================
rgb            [T, H, W, 3] uint8 colour, RGB order
depth          [T, H, W] float32  metres along the optical axis (z); 0 = no valid depth
cam_to_map     [T, 4, 4] float64  camera *optical* frame (x right, y down, z forward) -> map
base_to_map    [T, 4, 4] float64  robot base_link -> map
K              [3, 3] float64     intrinsics, grid-edge convention (``cx = W / 2`` when
                                  centred; ROS ``CameraInfo.k`` has ``cx - 0.5``)
stamps         [T] float64        seconds (simulation time, or the bag's header stamps)
=============  =================  =====================================================

Files (format version 1). Episodes are stored in *shards*: compressed ``.npz`` files (the
layout ``np.savez_compressed`` writes, read back with ``allow_pickle=False``; nothing is ever
pickled) that hold one or more episodes as members ``e{i}/rgb``, ``e{i}/depth_mm``, ... plus a
member ``meta``: UTF-8 JSON (as a uint8 array) with the format version and, per episode, its
frame count, image size, intrinsics, scene seed, source and split. Depth is stored as
**uint16 millimetres** (the ROS 16UC1 convention; 0 = invalid; depths beyond 65.535 m are stored
as invalid), because it compresses several times better than float32 and loses at most 0.5 mm;
the reader returns float32 metres. A dataset is a folder ``DIR/{train,validation,test}/*.npz``
plus ``DIR/index.json`` (written last) that lists the shards and the parameters that made them;
the reader needs only the shards.

Splits are decided by scene seed, never by frame: a scene's episodes all land in one split, so no
test view was ever seen in training. :func:`split_of_seed` hashes the seed (SHA-256 of
``"mirage-scene-<seed>"``) to a number in [0, 1) and cuts it at the split fractions (default
80 / 10 / 10): stable across runs, machines and dataset sizes (adding scenes never moves one).
Episodes imported from bags have no scene seed; the importer is told their split.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "FORMAT_VERSION",
    "SPLITS",
    "Episode",
    "EpisodeReader",
    "EpisodeRef",
    "WindowDataset",
    "depth_from_mm",
    "depth_to_mm",
    "read_shard_meta",
    "split_of_seed",
    "write_index",
    "write_shard",
]

FORMAT_VERSION = 1
SPLITS = ("train", "validation", "test")
_ARRAYS = ("rgb", "depth_mm", "cam_to_map", "base_to_map", "K", "stamps")
_MAX_MM = np.iinfo(np.uint16).max


def split_of_seed(seed: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> str:
    """``"train"``, ``"validation"`` or ``"test"`` for a scene seed (see the module docstring)."""
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, "
                         f"got {tuple(fractions)}")
    digest = hashlib.sha256(f"mirage-scene-{int(seed)}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    edges = np.cumsum(fractions)
    for name, edge in zip(SPLITS, edges, strict=True):
        if u < edge:
            return name
    return SPLITS[-1]


def depth_to_mm(depth_m: NDArray) -> NDArray:
    """Float metres -> uint16 millimetres; NaN, inf, <= 0 and > 65.535 m become 0 (invalid)."""
    d = np.asarray(depth_m, dtype=np.float64)
    mm = np.round(np.where(np.isfinite(d), d, 0.0) * 1000.0)
    mm = np.where((mm > 0) & (mm <= _MAX_MM), mm, 0)
    return mm.astype(np.uint16)


def depth_from_mm(depth_mm: NDArray) -> NDArray:
    """uint16 millimetres -> float32 metres (0 stays 0: invalid)."""
    return np.asarray(depth_mm, dtype=np.float32) * np.float32(0.001)


@dataclass(frozen=True)
class Episode:
    """One episode in memory (see the module docstring for the fields); ``meta`` is its JSON
    header entry (scene seed, source, split, ...)."""

    rgb: NDArray
    depth: NDArray
    cam_to_map: NDArray
    base_to_map: NDArray
    K: NDArray
    stamps: NDArray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = len(self.stamps)
        if self.rgb.ndim != 4 or self.rgb.shape[0] != t or self.rgb.shape[3] != 3 \
                or self.rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be uint8 [T, H, W, 3] with T={t}, got "
                             f"{self.rgb.dtype} {self.rgb.shape}")
        if self.depth.shape != self.rgb.shape[:3]:
            raise ValueError(f"depth {self.depth.shape} does not match rgb {self.rgb.shape}")
        for name in ("cam_to_map", "base_to_map"):
            if getattr(self, name).shape != (t, 4, 4):
                raise ValueError(f"{name} must be [T, 4, 4], got {getattr(self, name).shape}")
        if self.K.shape != (3, 3):
            raise ValueError(f"K must be 3x3, got {self.K.shape}")

    def __len__(self) -> int:
        return len(self.stamps)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (int(self.rgb.shape[1]), int(self.rgb.shape[2]))

    def window(self, start: int, length: int) -> Episode:
        """Frames ``start .. start + length - 1`` (views of this episode's arrays)."""
        if not 0 <= start <= len(self) - length or length < 1:
            raise IndexError(f"window [{start}, {start + length}) outside 0..{len(self)}")
        s = slice(start, start + length)
        return replace(self, rgb=self.rgb[s], depth=self.depth[s], cam_to_map=self.cam_to_map[s],
                       base_to_map=self.base_to_map[s], stamps=self.stamps[s])

    def to_torch(self, device: Any = None) -> dict[str, Any]:
        """Tensors for training: ``rgb`` float32 ``[T, 3, H, W]`` in [0, 1], ``depth`` float32
        ``[T, 1, H, W]`` metres, ``cam_to_map``/``base_to_map`` float32 ``[T, 4, 4]``, ``K``
        float32 ``[3, 3]``, ``stamps`` float64 ``[T]``."""
        import torch

        rgb = torch.from_numpy(np.ascontiguousarray(self.rgb)).permute(0, 3, 1, 2)
        return {
            "rgb": rgb.to(device=device, dtype=torch.float32).div_(255.0),
            "depth": torch.from_numpy(np.ascontiguousarray(self.depth))[:, None].to(device),
            "cam_to_map": torch.from_numpy(self.cam_to_map.astype(np.float32)).to(device),
            "base_to_map": torch.from_numpy(self.base_to_map.astype(np.float32)).to(device),
            "K": torch.from_numpy(self.K.astype(np.float32)).to(device),
            "stamps": torch.from_numpy(np.asarray(self.stamps, dtype=np.float64)).to(device),
        }


def _episode_meta(episode: Episode) -> dict[str, Any]:
    h, w = episode.image_size
    return {**episode.meta, "frames": len(episode), "height": h, "width": w,
            "K": episode.K.tolist(), "depth_units": "mm_uint16"}


def write_shard(path: str | os.PathLike[str], episodes: Sequence[Episode]) -> Path:
    """Write ``episodes`` to one compressed shard; atomic (a temporary file is renamed)."""
    if not episodes:
        raise ValueError("a shard needs at least one episode")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, NDArray] = {}
    for i, ep in enumerate(episodes):
        arrays[f"e{i}/rgb"] = np.ascontiguousarray(ep.rgb, dtype=np.uint8)
        arrays[f"e{i}/depth_mm"] = depth_to_mm(ep.depth)
        arrays[f"e{i}/cam_to_map"] = np.asarray(ep.cam_to_map, dtype=np.float64)
        arrays[f"e{i}/base_to_map"] = np.asarray(ep.base_to_map, dtype=np.float64)
        arrays[f"e{i}/K"] = np.asarray(ep.K, dtype=np.float64)
        arrays[f"e{i}/stamps"] = np.asarray(ep.stamps, dtype=np.float64)
    header = {"format": "mirage_ros.episodes", "version": FORMAT_VERSION,
              "episodes": [_episode_meta(ep) for ep in episodes]}
    arrays["meta"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    tmp = path.with_name(path.name + ".tmp")
    # What np.savez_compressed writes (a zip of .npy members, deflated), at deflate level 1:
    # twice as fast as savez's default level, for files about 8 % larger.
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, value in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, value, allow_pickle=False)
    os.replace(tmp, path)
    return path


def read_shard_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON header of a shard; checks the format version."""
    with np.load(path, allow_pickle=False) as npz:
        header = json.loads(npz["meta"].tobytes().decode())
    if header.get("format") != "mirage_ros.episodes":
        raise ValueError(f"{path} is not a mirage_ros episode shard")
    if header.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path} has format version {header.get('version')}; this reader "
                         f"reads version {FORMAT_VERSION}")
    return header


def write_index(root: str | os.PathLike[str], info: dict[str, Any]) -> Path:
    """``root/index.json``: every shard (relative path, episode count, frames) plus ``info``."""
    root = Path(root)
    shards = []
    for split in SPLITS:
        for path in sorted((root / split).glob("*.npz")):
            meta = read_shard_meta(path)
            shards.append({"path": str(path.relative_to(root)), "split": split,
                           "episodes": len(meta["episodes"]),
                           "frames": sum(e["frames"] for e in meta["episodes"])})
    index = {"format": "mirage_ros.episodes", "version": FORMAT_VERSION, "shards": shards,
             **info}
    out = root / "index.json"
    out.write_text(json.dumps(index, indent=1) + "\n")
    return out


@dataclass(frozen=True)
class EpisodeRef:
    """Where an episode lives and its header entry."""

    shard: Path
    index: int
    split: str
    meta: dict[str, Any]

    @property
    def frames(self) -> int:
        return int(self.meta["frames"])


def _shard_order(path: Path) -> tuple:
    # Natural order, so that scene-10 comes after scene-9.
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name))


class EpisodeReader:
    """All episodes of a dataset folder (one split or all), for iteration and random windows.

    Loading an episode decompresses only its own members of its shard. The last ``cache``
    loaded episodes are kept, which makes random windows over a few episodes cheap.
    """

    def __init__(
        self, root: str | os.PathLike[str], split: str | None = None, *, cache: int = 8
    ) -> None:
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
        self.root = Path(root)
        splits = SPLITS if split is None else (split,)
        refs = []
        for name in splits:
            for shard in sorted((self.root / name).glob("*.npz"), key=_shard_order):
                for i, meta in enumerate(read_shard_meta(shard)["episodes"]):
                    refs.append(EpisodeRef(shard, i, name, meta))
        self.refs: list[EpisodeRef] = refs
        self._cache: OrderedDict[int, Episode] = OrderedDict()
        self._cache_size = cache

    def __len__(self) -> int:
        return len(self.refs)

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self.load(i)

    @property
    def frames(self) -> int:
        return sum(ref.frames for ref in self.refs)

    def load(self, i: int) -> Episode:
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        ref = self.refs[i]
        with np.load(ref.shard, allow_pickle=False) as npz:
            a = {name: npz[f"e{ref.index}/{name}"] for name in _ARRAYS}
        episode = Episode(a["rgb"], depth_from_mm(a["depth_mm"]), a["cam_to_map"],
                          a["base_to_map"], a["K"], a["stamps"], dict(ref.meta))
        self._cache[i] = episode
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return episode

    def windows(self, length: int, stride: int = 1) -> list[tuple[int, int]]:
        """Every ``(episode, start)`` of a window of ``length`` frames, ``stride`` apart."""
        return [(i, s) for i, ref in enumerate(self.refs)
                for s in range(0, ref.frames - length + 1, stride)]

    def window(self, i: int, start: int, length: int) -> Episode:
        return self.load(i).window(start, length)

    def random_windows(
        self, length: int, rng: np.random.Generator, *, episodes_at_once: int = 4
    ) -> Iterator[Episode]:
        """Endless random windows of ``length`` consecutive frames.

        Windows are drawn from a small working set of episodes (``episodes_at_once``) that is
        renewed one episode at a time, so decompression is amortised over many windows while
        every episode is visited.
        """
        usable = [i for i, ref in enumerate(self.refs) if ref.frames >= length]
        if not usable:
            raise ValueError(f"no episode has {length} frames")
        working = list(rng.choice(usable, size=min(episodes_at_once, len(usable)),
                                  replace=False))
        while True:
            for _ in range(16):
                i = int(working[int(rng.integers(len(working)))])
                start = int(rng.integers(self.refs[i].frames - length + 1))
                yield self.window(i, start, length)
            working[int(rng.integers(len(working)))] = int(rng.choice(usable))


class WindowDataset:
    """Map-style dataset of every window of ``length`` frames (``stride`` apart) of a reader,
    as dicts of tensors (:meth:`Episode.to_torch`); works with ``torch.utils.data.DataLoader``.
    """

    def __init__(self, reader: EpisodeReader, length: int, stride: int = 1) -> None:
        self.reader = reader
        self.length = length
        self.index = reader.windows(length, stride)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> dict[str, Any]:
        i, start = self.index[k]
        return self.reader.window(i, start, self.length).to_torch()
