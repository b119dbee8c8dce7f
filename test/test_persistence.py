"""Persistence and restarts: damaged and foreign maps are refused with the memory untouched, saves
survive SIGKILL, the node starts from a saved map of its own model only, and nothing in the code
loads pickles.

test_memory.py covers the plain round trip, a first set of corruptions and a failed rename; the
cases here are the ones a restart meets: cuts at every layer of the file, a re-signed file of
another version, maps of another model, channel count, voxel size or capacity, and real kills.
"""

from __future__ import annotations

import ast
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mirage_ros.memory import LatentMemory, MemoryFormatError, persistence
from mirage_ros.model import WorldModel
from mirage_ros.model.autoencoder import AutoencoderConfig
from mirage_ros.model.depth_head import DepthHeadConfig
from mirage_ros.model.dit import DiTConfig
from mirage_ros.safefile import remove_stale_temps, write_atomic

REPO = Path(__file__).resolve().parents[1]
C = 8
MODEL_A = "autoencoder:aaaaaaaaaaaaaaaa"
MODEL_B = "autoencoder:bbbbbbbbbbbbbbbb"


def grid_memory(n: int, seed: int, channels: int = C, voxel_size: float = 0.05,
                capacity: int | None = None, stamp: float = 1.0) -> LatentMemory:
    """``n`` voxels at distinct cells of a cube, random latents (no camera needed)."""
    gen = torch.Generator().manual_seed(seed)
    side = math.ceil(n ** (1 / 3)) + 1
    idx = torch.randperm(side**3, generator=gen)[:n]
    cells = torch.stack([idx // side**2, (idx // side) % side, idx % side], dim=1)
    mem = LatentMemory(channels=channels, voxel_size=voxel_size, capacity=capacity or 2 * n)
    mem.insert_points((cells.float() + 0.5) * voxel_size, torch.randn(n, channels, generator=gen),
                      stamp, camera_position=torch.tensor([0.1, 0.2, 0.3]))
    assert len(mem) == n
    return mem


def raw_state(mem: LatentMemory) -> dict[str, object]:
    """Everything a load could change, tensors as raw bytes (bit-identical, -0.0 != 0.0)."""
    out: dict[str, object] = {
        name: getattr(mem, name).cpu().numpy().tobytes()
        for name in ("keys", "positions", "latents", "weights", "stamps")
    }
    anchor = mem.latest_camera_position
    out.update(config=mem.config, now=mem.latest_stamp, n=len(mem),
               anchor=None if anchor is None else anchor.cpu().numpy().tobytes())
    return out


def resign(data: bytes, **changes: str) -> bytes:
    """Edit metadata fields and recompute the checksum, as a careful forger would."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    meta = {**header["__metadata__"], **changes}
    from safetensors.torch import load as st_load

    tensors = st_load(data)
    meta["checksum"] = persistence._checksum({k: v for k, v in meta.items() if k != "checksum"},
                                             tensors)
    header["__metadata__"] = meta
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + data[8 + n :]


# ----------------------------------------------------------------------------- refusals
@pytest.fixture(scope="module")
def good_map(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("maps") / "good.safetensors"
    grid_memory(500, seed=1, stamp=5.0).save(path, model=MODEL_A)
    return path.read_bytes()


def _header_end(data: bytes) -> int:
    return 8 + int.from_bytes(data[:8], "little")


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x10
    return bytes(out)


def _saved(tmp: Path, mem: LatentMemory, model: str | None = MODEL_A) -> bytes:
    mem.save(tmp / "made.safetensors", model=model)
    return (tmp / "made.safetensors").read_bytes()


# (name, bytes from (good map, scratch folder), load_into options, what the error must say)
CASES = [
    *[(f"cut at {where}", lambda d, t, f=f: d[: f(d)], {}, "is truncated")
      for where, f in [("0", lambda d: 0), ("4", lambda d: 4), ("8", lambda d: 8),
                       ("mid header", lambda d: _header_end(d) // 2),
                       ("header end", _header_end),
                       ("first tensor", lambda d: _header_end(d) + 100),
                       ("mid data", lambda d: (_header_end(d) + len(d)) // 2),
                       ("last byte", lambda d: len(d) - 1)]],
    *[(f"bit flip {where}", lambda d, t, f=f: _flip(d, f(d)), {},
       "checksum mismatch|header is not valid JSON|payload is unreadable")
      for where, f in [("in the header length", lambda d: 1),
                       ("in the metadata", lambda d: _header_end(d) - 40),
                       ("in the first tensor", lambda d: _header_end(d) + 3),
                       ("mid data", lambda d: (_header_end(d) + len(d)) // 2),
                       ("last byte", lambda d: len(d) - 1)]],
    ("version 2, re-signed", lambda d, t: resign(d, version="2"), {}, "version 2"),
    ("version 0, re-signed", lambda d, t: resign(d, version="0"), {}, "version 0"),
    ("checkpoint, not a map",
     lambda d, t: (REPO / "mirage_ros/model/weights/world_model.safetensors").read_bytes(), {},
     "not a latent memory file"),
    ("4 channels", lambda d, t: _saved(t, grid_memory(50, 2, channels=4)), {},
     "4 channels, this memory has 8"),
    ("other model", lambda d, t: _saved(t, grid_memory(50, 3), MODEL_B), {"model": MODEL_A},
     f"made by model {MODEL_B}; the model in use is {MODEL_A}"),
    ("no model recorded", lambda d, t: _saved(t, grid_memory(50, 4), None), {"model": MODEL_A},
     f"records no model identity.*{MODEL_A}"),
    ("other voxel size", lambda d, t: _saved(t, grid_memory(50, 5, voxel_size=0.1)),
     {"model": MODEL_A, "same_voxel_size": True}, "voxel size 0.1 m, this memory has 0.05 m"),
    ("over capacity", lambda d, t: _saved(t, grid_memory(300, 6)),
     {"model": MODEL_A, "keep_capacity": True}, "300 voxels, over this memory's capacity 200"),
    ("everything differs",
     lambda d, t: _saved(t, grid_memory(300, 7, channels=4, voxel_size=0.1), MODEL_B),
     {"model": MODEL_A, "same_voxel_size": True, "keep_capacity": True},
     "made by model .*4 channels.*voxel size 0.1 m.*300 voxels"),
    ("empty", lambda d, t: b"", {}, "truncated"),
    ("text", lambda d, t: b"voxels: 12\nlatents: [1, 2]\n" * 10, {}, "not safetensors"),
    ("zip archive (torch.save's format)", lambda d, t: b"PK\x03\x04" + bytes(range(256)) * 4,
     {}, "not safetensors"),
    ("pickle stream", lambda d, t: b"\x80\x04\x95" + b"\x00" * 5 + b"}\x94." * 40, {},
     "not safetensors"),
    ("JSON with no tensors", lambda d, t: b"\x02\x00\x00\x00\x00\x00\x00\x00{}", {},
     "metadata"),
]


@pytest.mark.parametrize("name, make, options, message", CASES, ids=[c[0] for c in CASES])
def test_a_bad_or_foreign_map_is_refused_and_the_memory_is_untouched(
    good_map, tmp_path, name, make, options, message
):
    target = grid_memory(150, seed=9, capacity=200, stamp=3.0)
    before = raw_state(target)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(make(good_map, tmp_path))
    with pytest.raises(MemoryFormatError, match=message):
        target.load_into(bad, **options)
    assert raw_state(target) == before
    if "model" in message:  # a fresh load for that model refuses it too
        with pytest.raises(MemoryFormatError):
            LatentMemory.load(bad, model=options["model"])


def test_a_map_of_the_same_model_loads_with_every_check_on(good_map, tmp_path):
    """The control for the refusals above: the same target takes a good map."""
    path = tmp_path / "good.safetensors"
    path.write_bytes(good_map)
    assert persistence.read_file(path).model == MODEL_A
    target = grid_memory(150, seed=9, capacity=600, stamp=3.0)
    target.load_into(path, model=MODEL_A, same_voxel_size=True, keep_capacity=True)
    source = LatentMemory.load(path, model=MODEL_A)
    assert len(target) == 500 and target.latest_stamp == 5.0
    assert target.capacity == 600 and source.capacity == 1000  # the target keeps its own
    assert {k: v for k, v in raw_state(target).items() if k != "config"} == \
        {k: v for k, v in raw_state(source).items() if k != "config"}
    # Without an expected model any model's map loads (tools, notebooks); unknown reads as None.
    grid_memory(10, seed=1).save(path)
    assert persistence.read_file(path).model is None
    LatentMemory.load(path)


def test_the_autoencoder_id_names_the_autoencoder_and_nothing_else(tmp_path):
    torch.manual_seed(0)
    model = WorldModel(AutoencoderConfig(latent_channels=4, widths=(8, 16, 16), bottleneck=16),
                       DepthHeadConfig(latent_channels=4, width=8, blocks=1,
                                       upsample_widths=(8, 8, 8)),
                       DiTConfig(latent_channels=4, hidden=16, depth=1, heads=2))
    first = model.autoencoder_id()
    assert re.fullmatch(r"autoencoder:[0-9a-f]{16}", first) and model.autoencoder_id() == first
    with torch.no_grad():
        next(model.dit.parameters()).add_(1.0)  # another DiT: same latent space
        model.latent_std.mul_(2.0)
    assert model.autoencoder_id() == first
    with torch.no_grad():
        next(model.autoencoder.decoder.parameters()).view(-1)[0] += 1e-3
    second = model.autoencoder_id()
    assert second != first
    # Saved in fp16 and loaded twice (float32 in memory): the same id, equal to the fp16 model's.
    model.save(tmp_path / "wm.safetensors")
    loaded = WorldModel.load(tmp_path / "wm.safetensors").autoencoder_id()
    assert WorldModel.load(tmp_path / "wm.safetensors").autoencoder_id() == loaded
    assert model.to(torch.float16).autoencoder_id() == loaded


# ----------------------------------------------------------------------------- SIGKILL mid-save
# The child saves the two encoded maps alternately through write_atomic, the whole of
# LatentMemory.save after encoding (encoding happens in memory and cannot tear a file). It only
# imports mirage_ros.safefile, so a child starts in milliseconds instead of importing torch.
CHILD = """
import sys
from mirage_ros.safefile import write_atomic
path, *refs = sys.argv[1:]
blobs = [open(r, "rb").read() for r in refs]
i = 0
while True:
    write_atomic(path, blobs[i % 2])
    if i == 0:
        print("saved", flush=True)
    i += 1
"""


def _temps(folder: Path, name: str) -> list[str]:
    pattern = re.compile(re.escape(f".{name}.") + r"[a-z0-9_]{8}\.tmp")
    return [p for p in os.listdir(folder) if pattern.fullmatch(p)]


def test_a_save_killed_at_any_moment_leaves_a_complete_map(tmp_path):
    maps, work = tmp_path / "refs", tmp_path / "work"
    maps.mkdir()
    work.mkdir()
    mem = grid_memory(300_000, seed=11)  # about 19 MB: a save takes tens of milliseconds
    mem.save(maps / "a.safetensors", model=MODEL_A)
    mem.insert_points(torch.tensor([[-1.0, -1.0, -1.0]]), torch.ones(1, C), 2.0)
    mem.save(maps / "b.safetensors", model=MODEL_A)
    versions = [(maps / n).read_bytes() for n in ("a.safetensors", "b.safetensors")]
    assert versions[0] != versions[1]
    for v in versions:
        assert len(persistence.decode(v).keys) in (300_000, 300_001)

    path = work / "map.safetensors"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    rng = random.Random(20260521)
    for trial in range(20):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), *(str(maps / n) for n in
                                                       ("a.safetensors", "b.safetensors"))],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = child.stdout.readline()  # after one complete save of this child
            assert line == "saved\n", child.stderr.read()
            if trial % 2:  # land inside the write: wait for this save's temporary file
                deadline = time.monotonic() + 5.0
                while not _temps(work, path.name) and time.monotonic() < deadline:
                    time.sleep(0.0005)
                time.sleep(rng.uniform(0.0, 0.01))
            else:  # anywhere in the cycle
                time.sleep(rng.uniform(0.0, 0.1))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
            child.stderr.close()
        assert child.returncode == -signal.SIGKILL
        data = path.read_bytes()
        assert data in versions, f"trial {trial}: the map is torn ({len(data)} bytes)"
        # At most the killed save's own temporary file (every save removes older leftovers).
        left = _temps(work, path.name)
        assert len(left) <= 1, left
        assert sorted(os.listdir(work)) == sorted([path.name, *left])
    # The next save cleans up after the killed one, and the map it leaves loads.
    mem.save(path, model=MODEL_A)
    assert os.listdir(work) == [path.name]
    LatentMemory.load(path, model=MODEL_A)


def test_stale_temp_clean_up_spares_running_saves_and_other_files(tmp_path):
    import fcntl

    path = tmp_path / "map.safetensors"
    stale = tmp_path / ".map.safetensors.abcd1234.tmp"  # a killed save's leftover
    running = tmp_path / ".map.safetensors.zzzz9999.tmp"  # a save in progress holds its lock
    others = [".map.safetensors.swp", ".map.safetensors.abcd1234",
              ".other.safetensors.abcd1234.tmp", "map.safetensors.abcd1234.tmp"]
    for name in [stale.name, running.name, *others]:
        (tmp_path / name).write_bytes(b"x")
    fd = os.open(running, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert remove_stale_temps(path) == [stale.name]
        write_atomic(path, b"new")
        assert sorted(os.listdir(tmp_path)) == sorted([path.name, running.name, *others])
    finally:
        os.close(fd)
    assert remove_stale_temps(path) == [running.name]  # its writer is gone
    assert path.read_bytes() == b"new"


# ----------------------------------------------------------------------------- the node
def _node_map(path: Path, n: int, seed: int, model: str, channels: int,
              voxel_size: float = 0.05) -> LatentMemory:
    mem = grid_memory(n, seed, channels=channels, voxel_size=voxel_size)
    mem.save(path, model=model)
    return mem


@pytest.mark.ros
def test_the_node_starts_from_its_own_map_and_refuses_others(tmp_path):
    from ros_harness import node_process, ros_client

    from mirage_ros.srv import LoadMemory, SaveMemory

    wm = WorldModel.default()
    ours, width = wm.autoencoder_id(), wm.latent_channels
    del wm
    maps = {
        "start": _node_map(tmp_path / "start.safetensors", 1234, 1, ours, width),
        "foreign": _node_map(tmp_path / "foreign.safetensors", 50, 2, MODEL_B, width),
        "coarse": _node_map(tmp_path / "coarse.safetensors", 50, 3, ours, width, 0.1),
        "narrow": _node_map(tmp_path / "narrow.safetensors", 50, 4, ours, 4),
        "unknown": _node_map(tmp_path / "unknown.safetensors", 50, 5, "", width),
        "small": _node_map(tmp_path / "small.safetensors", 77, 6, ours, width),
    }
    data = (tmp_path / "start.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 3])
    base = ["--params-file", str(REPO / "config" / "mirage.yaml"),
            "-p", "critics:=[path_length,path_turning]", "-p", "load_memory_at_start:=true"]
    # Both start at once: the one given a foreign map must stop, the other must serve.
    with node_process("mirage_ros.ros.mirage_node", [
            *base, "-p", f"memory_file:={tmp_path / 'foreign.safetensors'}",
            "-r", "__node:=mirage_foreign"]) as refused, \
            node_process("mirage_ros.ros.mirage_node", [
                *base, "-p", f"memory_file:={tmp_path / 'start.safetensors'}",
                "-r", "__node:=mirage_restart"]) as proc, \
            ros_client("restarter") as client:
        save = client.node.create_client(SaveMemory, "/mirage_restart/save_memory")
        load = client.node.create_client(LoadMemory, "/mirage_restart/load_memory")
        client.spin_until(lambda: save.service_is_ready() and load.service_is_ready(), 60.0,
                          "the memory services")

        def saved(name: str) -> SaveMemory.Response:
            out = tmp_path / name
            response = client.result(save.call_async(SaveMemory.Request(path=str(out))))
            assert response.success, response.message
            return response

        # It serves the map it started from, and saves it back bit for bit, with its model.
        assert saved("back.safetensors").voxels == 1234
        back = persistence.read_file(tmp_path / "back.safetensors")
        assert back.model == ours
        assert torch.equal(back.keys, maps["start"].keys)
        assert torch.equal(back.latent, maps["start"].latents)
        # Unusable maps are refused, saying why; the memory in use stays as it was.
        for name, why in [("cut", "truncated"),
                          ("foreign", f"made by model {MODEL_B}; the model in use is {ours}"),
                          ("coarse", "voxel size 0.1 m, this memory has 0.05 m"),
                          ("narrow", f"4 channels, this memory has {width}"),
                          ("unknown", "records no model identity"),
                          ("missing", "No such file")]:
            request = LoadMemory.Request(path=str(tmp_path / f"{name}.safetensors"))
            response = client.result(load.call_async(request))
            assert not response.success and response.voxels == 0, name
            assert why in response.message and "unchanged" in response.message, \
                response.message
            assert saved("again.safetensors").voxels == 1234, name
        again = persistence.read_file(tmp_path / "again.safetensors")
        assert torch.equal(again.latent, back.latent)
        # A map of its own model replaces the memory.
        request = LoadMemory.Request(path=str(tmp_path / "small.safetensors"))
        response = client.result(load.call_async(request))
        assert response.success and response.voxels == 77, response.message
        assert proc.alive()

        assert refused.proc.wait(timeout=120) != 0, refused.log()
        log = refused.log()
        assert "load_memory_at_start: cannot load" in log
        assert f"this map was made by model {MODEL_B}; the model in use is {ours}" in log


# ----------------------------------------------------------------------------- no pickle
_BANNED_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve",
                   "marshal"}
# torch.load in any form: weights_only=True still runs a (restricted) unpickler, and the
# project's files are safetensors, so no call needs it.
_BANNED_CALLS = {"torch.load", "torch.serialization.load", "torch.jit.load", "torch.hub.load",
                 "torch.hub.load_state_dict_from_url", "pandas.read_pickle", "numpy.load"}
_NEEDS_NO_PICKLE = {"numpy.load"}  # allowed with allow_pickle absent or literally False


def pickle_loading(source: str, filename: str = "<snippet>") -> list[str]:
    """Every place in ``source`` that may load a pickle, as "file:line: what"."""
    tree = ast.parse(source, filename)
    aliases: dict[str, str] = {}
    found: list[str] = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[(a.asname or a.name).split(".")[0]] = (a.name if a.asname
                                                              else a.name.split(".")[0])
                if a.name.split(".")[0] in _BANNED_MODULES:
                    report(node, f"import {a.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                aliases[a.asname or a.name] = full
                if node.module.split(".")[0] in _BANNED_MODULES or (
                        full in _BANNED_CALLS and full not in _NEEDS_NO_PICKLE):
                    report(node, f"from {node.module} import {a.name}")

    def dotted(expr: ast.expr) -> str | None:
        parts = []
        while isinstance(expr, ast.Attribute):
            parts.append(expr.attr)
            expr = expr.value
        if not isinstance(expr, ast.Name):
            return None
        parts.append(aliases.get(expr.id, expr.id))
        return ".".join(reversed(parts))

    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        if name is None:
            continue
        # allow_pickle=<anything but a literal False>, or hidden in **kwargs
        may_pickle = any(k.arg is None or (k.arg == "allow_pickle" and not (
            isinstance(k.value, ast.Constant) and k.value.value is False))
            for k in node.keywords)
        if name.split(".")[0] in _BANNED_MODULES and name.rsplit(".", 1)[-1] in {
                "load", "loads", "Unpickler", "open", "DbfilenameShelf"}:
            report(node, f"{name}()")
        elif name in _BANNED_CALLS:
            if name not in _NEEDS_NO_PICKLE or may_pickle:
                report(node, f"{name}()")
        elif any(k.arg == "allow_pickle" for k in node.keywords) and may_pickle:
            report(node, f"{name}(allow_pickle=...)")
        elif name.rsplit(".", 1)[-1] in {"import_module", "__import__"} and node.args and \
                isinstance(node.args[0], ast.Constant) and \
                str(node.args[0].value).split(".")[0] in _BANNED_MODULES:
            report(node, f"{name}({node.args[0].value!r})")
    return found


@pytest.mark.parametrize("snippet", [
    "import pickle",
    "import pickle as p\nx = 1",
    "import os, _pickle",
    "from pickle import loads",
    "import dill",
    "from cloudpickle import load",
    "import joblib.numpy_pickle",
    "import shelve",
    "import marshal",
    "pickle.load(f)",
    "import torch\nstate = torch.load(path, weights_only=True)",
    "import torch as T\nT.load(path)",
    "from torch import load\nload(path)",
    "from torch import load as tl",
    "torch.jit.load('model.pt')",
    "import numpy as np\nnp.load(path, allow_pickle=True)",
    "import numpy\nnumpy.load(path, allow_pickle=flag)",
    "from numpy import load\nload(path, allow_pickle=True)",
    "import numpy as np\nnp.load(path, **options)",
    "np.lib.format.read_array(f, allow_pickle=True)",
    "import pandas as pd\npd.read_pickle(path)",
    "importlib.import_module('pickle')",
    "def f():\n    m = __import__('dill')",
])
def test_the_scanner_finds_pickle_loading(snippet):
    assert pickle_loading(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "# torch.load(path) and import pickle in a comment",
    "'''import pickle; torch.load(p)'''",
    "from safetensors.torch import load\nload(data)",
    "import safetensors.torch\nsafetensors.torch.load(data)",
    "import numpy as np\nnp.load(path)\nnp.load(path, allow_pickle=False)",
    "from numpy import load\nload(path)",
    "np.savez(path, a=a)\nnp.lib.format.write_array(f, a, allow_pickle=False)",
    "import json\njson.load(f)",
    "model.load(path)",
    "from mirage_ros.memory import persistence\npersistence.read_file(p)",
])
def test_the_scanner_leaves_safe_loading_alone(snippet):
    assert pickle_loading(snippet) == []


def test_no_code_loads_pickles():
    files = [p for folder in ("mirage_ros", "test", "kernels", "launch")
             for p in sorted((REPO / folder).rglob("*.py"))] + [REPO / "setup.py"]
    assert len(files) > 100  # the walk found the sources, the scan is not vacuous
    found = [hit for p in files
             for hit in pickle_loading(p.read_text(), str(p.relative_to(REPO)))]
    assert found == [], "pickle-based loading (use safetensors or JSON):\n" + "\n".join(found)
