"""The batched imagination loop: N candidate paths x T steps, never leaving latent space.

Per step, for all paths at once: one memory read of every path's next camera pose (shared bank
merged with each path's own overlay), one DiT sample conditioned on that read, the previous latent
and the relative camera motion (Plücker rays computed in torch on the model's device), one
depth-head call, and one overlay write, so later steps see what earlier steps imagined. The
shared bank is never written. Decoding to RGB is left to the caller (previews only).

The DiT and the depth head run through a ``FrameSampler`` (precision, CUDA graphs); the noise
of each path comes from ``model.noise.path_noise`` and depends only on (seed, path id, step),
so a path imagines the same whatever else is in the batch, and ``imagine_split`` can spread the
paths over several devices and still return what one device would.

This is the only imagination loop in the package: the engine, the evaluation and the
benchmarks all run it through ``RolloutEngine``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from mirage_ros.memory import LatentMemory
from mirage_ros.memory.fill import fill_nearest
from mirage_ros.memory.slot_overlay import SlotOverlay
from mirage_ros.model import WorldModel
from mirage_ros.model.noise import path_noise
from mirage_ros.model.sampler import FrameSampler
from mirage_ros.model.world_model import relative_rays


class RolloutInterrupted(Exception):
    """Raised when the caller asks to stop (cancel, preempt): between steps by ``on_step``,
    within a step by ``should_stop``."""


@dataclass(frozen=True)
class Imagined:
    latents: torch.Tensor  # [N,T,C,h,w] raw latents of steps 1..T
    depth: torch.Tensor  # [N,T,h,w] metres, from the depth head
    memory_depth: torch.Tensor  # [N,T,h,w] metres of what the read filled (0 elsewhere)
    mask: torch.Tensor  # [N,T,h,w] bool, cells the read filled (bank + overlay)
    coverage: torch.Tensor  # [N,T] share of each step's view the read filled

    def merged_depth(self) -> torch.Tensor:
        """Memory depth where the read filled a cell (measured or fused), the head's elsewhere."""
        return torch.where(self.mask, self.memory_depth, self.depth)


@torch.no_grad()
def imagine_paths(
    model: WorldModel,
    bank: LatentMemory,
    start_latent: torch.Tensor,
    K_latent: torch.Tensor,
    cam_to_map: torch.Tensor,
    *,
    sampler_steps: int = 2,
    seed: int = 0,
    path_ids: torch.Tensor | None = None,
    sampler: FrameSampler | None = None,
    slot_overlay: bool = False,
    copy_offset: float | None = None,
    noise_scale: float = 1.0,
    timings: dict[str, float] | None = None,
    on_step: Callable[[int, int], bool] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Imagined:
    """Imagine every path's views.

    start_latent: [1,C,h,w] or [N,C,h,w], the latest observed frame; K_latent: [3,3] at latent
    resolution; cam_to_map: [N,T+1,4,4] camera poses (float64 preferred), index 0 being the pose
    of start_latent. ``seed`` and ``path_ids`` ([N] int, default 0..N-1) choose each path's
    noise. ``sampler`` runs the DiT and the depth head (default: float32, no graphs, the
    reference). ``slot_overlay`` keeps imagined frames in a ``SlotOverlay`` (no host round trip
    per step: the GPU's choice) instead of the reference ``MemoryOverlay``. ``copy_offset``
    (see ``EngineConfig``; None or negative: off) returns memory cells that a kept frame from
    within that offset of the view supplied as they are, in place of the DiT's. ``noise_scale``
    (see ``EngineConfig``) multiplies the flow sampler's starting noise. ``timings``, when
    given, accumulates seconds per phase (synchronising CUDA around each).
    ``on_step(done, total)`` runs after every step; returning False stops the rollout with
    ``RolloutInterrupted``. ``should_stop()`` is polled much more often, before every phase and
    between the DiT's and the depth head's blocks, and True stops the rollout the same way: one
    step of a large batch takes hundreds of milliseconds on a CPU, too long for a planner
    waiting on a cancel. It must be cheap (it runs ~30 times a step).
    """
    device = start_latent.device
    poses, K = rollout_inputs(cam_to_map, K_latent, device)
    n, t1 = poses.shape[:2]
    h, w = start_latent.shape[-2:]
    # The memory checks poses and intrinsics on the CPU: one copy here, not one per step.
    poses_cpu = poses.detach().to("cpu", torch.float64)
    K_cpu = K.detach().cpu()
    sampler = sampler or FrameSampler(model, "fp32", cuda_graphs=False)
    ids = (torch.arange(n, device=device) if path_ids is None
           else torch.as_tensor(path_ids, dtype=torch.int64).to(device))
    if ids.shape != (n,):
        raise ValueError(f"path_ids must have one id per path ({n}), got {tuple(ids.shape)}")
    noise_shape = (model.latent_channels, h, w)
    # Imagined frames go to per-path overlays; step s reads and writes camera pose s.
    slots = SlotOverlay(bank, poses_cpu[:, 1:], K_cpu, (h, w)) if slot_overlay else None
    overlay = None if slot_overlay else bank.overlay(n)

    def read(s: int):
        if slots is not None:
            return slots.read(s - 1)
        return overlay.read(poses_cpu[:, s], K_cpu, (h, w))

    def write(s: int, latent: torch.Tensor, depth: torch.Tensor) -> None:
        if slots is not None:
            slots.write(latent, depth, s - 1)
        else:
            overlay.write(latent, depth, K_cpu, poses_cpu[:, s], float(s))
    prev = start_latent.expand(n, -1, -1, -1)
    timed = phase_timer(device, timings)
    latents, depths, mem_depths, masks = [], [], [], []
    step = 0

    def check() -> None:
        if should_stop is not None and should_stop():
            raise RolloutInterrupted(f"stopped during step {step} of {t1 - 1}")

    poll = None if should_stop is None else check
    # The depth head's floor geometry of every imagined pose, once per rollout (None for a head
    # that takes none): [N, T, G, h, w].
    floor = model.depth_geometry(K, poses[:, 1:].reshape(-1, 4, 4), (h, w))
    if floor is not None:
        floor = floor.view(n, t1 - 1, *floor.shape[1:])
    for s in range(1, t1):
        step = s
        check()
        view = timed("memory read", lambda s=s: read(s))
        rays = timed("conditioning", lambda s=s: relative_rays(
            K, poses[:, s - 1], poses[:, s], (h, w)))
        cond = model.condition(view.latent, view.depth, view.mask, prev, rays, view.offset)
        noise = path_noise(seed, ids, s, noise_shape, device) * noise_scale
        prev = timed("DiT sampling", lambda c=cond, z=noise: sampler.sample(
            c, z, sampler_steps, poll))
        if copy_offset is not None and copy_offset >= 0 and view.offset is not None:
            seen = view.mask & (view.offset <= copy_offset)
            prev = torch.where(seen[:, None], view.latent.to(prev.dtype), prev)
        geometry = None if floor is None else floor[:, s - 1]
        depth = timed("depth head", lambda p=prev, g=geometry: sampler.depth(p, poll, g))
        check()
        timed("overlay write", lambda s=s, p=prev, d=depth: write(s, p, d))
        latents.append(prev)
        depths.append(depth)
        mem_depths.append(view.depth)
        masks.append(view.mask)
        if on_step is not None and on_step(s, t1 - 1) is False:
            raise RolloutInterrupted(f"stopped after step {s} of {t1 - 1}")
    mask = torch.stack(masks, 1)
    return Imagined(
        latents=torch.stack(latents, 1),
        depth=torch.stack(depths, 1),
        memory_depth=torch.stack(mem_depths, 1),
        mask=mask,
        coverage=mask.flatten(-2).float().mean(-1),
    )


@torch.no_grad()
def recall_paths(
    bank: LatentMemory,
    K_latent: torch.Tensor,
    cam_to_map: torch.Tensor,
    hw: tuple[int, int],
) -> Imagined:
    """The memory-only answer to the same question as ``imagine_paths``: no diffusion.

    Every step's view is the memory's read at that camera pose (``cam_to_map`` [N,T+1,4,4],
    index 0 unused) with its holes filled by the nearest filled cell, latents and depth alike
    (``memory.fill.fill_nearest``); a view the memory does not cover at all stays empty (zero
    latent, depth 0 = unknown). Nothing is written anywhere: without a model there is nothing
    new to remember. This is the ablation that tells what the diffusion model adds to a plain
    spatial memory (the planning benchmark's "memory" planner, the node's ``imagination:
    memory``).
    """
    poses = torch.as_tensor(cam_to_map).detach().to("cpu", torch.float64)
    n, t1 = poses.shape[:2]
    if t1 < 2:
        raise ValueError(f"cam_to_map must hold at least 2 poses per path, got {t1}")
    K = torch.as_tensor(K_latent).detach().to("cpu", torch.float32)
    view = bank.read(poses[:, 1:].reshape(-1, 4, 4), K, hw)
    device = bank.device
    latent = fill_nearest(view.latent, view.mask).to(device)
    depth = fill_nearest(view.depth, view.mask).to(device)
    mask = view.mask.to(device)
    shape = (n, t1 - 1)
    return Imagined(
        latents=latent.reshape(*shape, *latent.shape[1:]),
        depth=depth.reshape(*shape, *hw),
        memory_depth=view.depth.to(device).reshape(*shape, *hw),
        mask=mask.reshape(*shape, *hw),
        coverage=mask.reshape(*shape, -1).float().mean(-1),
    )


def rollout_inputs(cam_to_map, K_latent, device: torch.device):
    """Camera poses ``[N,T+1,4,4]`` (float64 where the device has it: map coordinates of tens
    of metres lose millimetres in float32) and K ``[3,3]`` float32 on ``device``: what every
    imagination loop (this one, the pixel baseline's) starts from."""
    poses = torch.as_tensor(cam_to_map).to(device)
    if poses.dtype != torch.float64 and device.type != "mps":
        poses = poses.double()
    return poses, torch.as_tensor(K_latent).to(device=device, dtype=torch.float32)


def _on(device: torch.device):
    """Make ``device`` current when it is a GPU (a no-op context elsewhere)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


@dataclass(frozen=True)
class Replica:
    """What one device needs to imagine its share of the paths: its sampler (which holds its
    copy of the model) and its copy of the memory, on the same device."""

    sampler: FrameSampler
    bank: LatentMemory


def split_sizes(n: int, devices: int, min_per_device: int) -> list[int]:
    """How many of ``n`` paths each device takes: as equal as possible, in device order, and
    no device with fewer than ``min_per_device`` (a small batch is faster on one device than
    split: below a few hundred paths a GPU's step time hardly depends on the batch)."""
    use = max(1, min(devices, n // max(1, min_per_device)))
    base, extra = divmod(n, use)
    return [base + (1 if i < extra else 0) for i in range(use)]


@torch.no_grad()
def imagine_split(
    replicas: Sequence[Replica],
    sizes: Sequence[int],
    start_latent: torch.Tensor,
    K_latent: torch.Tensor,
    cam_to_map: torch.Tensor,
    *,
    sampler_steps: int = 2,
    seed: int = 0,
    slot_overlay: bool = False,
    copy_offset: float | None = None,
    noise_scale: float = 1.0,
    timings: dict[str, float] | None = None,
    on_step: Callable[[int, int], bool] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Imagined:
    """``imagine_paths`` with the paths split across devices: replica i takes the next
    ``sizes[i]`` paths, each replica runs on its own thread (the GIL is released while a GPU
    works), and the results are gathered on the first replica's device, in path order. Every
    path keeps its id (its index in the whole batch), so its noise, and its imagination, are
    what one device would give. ``on_step`` and ``timings`` follow the first replica; a stop
    from any source (``on_step``, ``should_stop``, an error on another replica) stops all."""
    if len(sizes) != len(replicas) or sum(sizes) != cam_to_map.shape[0]:
        raise ValueError(f"sizes {list(sizes)} must give each of {len(replicas)} replicas a "
                         f"share of the {cam_to_map.shape[0]} paths")
    home = replicas[0].bank.device
    stop = threading.Event()
    results: list[Imagined | None] = [None] * len(replicas)
    errors: list[BaseException | None] = [None] * len(replicas)

    def stopping() -> bool:
        return stop.is_set() or (should_stop is not None and should_stop())

    def first_on_step(done: int, total: int) -> bool:
        return on_step is None or on_step(done, total) is not False

    def run(i: int, lo: int, hi: int) -> None:
        r = replicas[i]
        dev = r.bank.device
        # One start latent for all paths, or one per path: then this replica's share.
        start = start_latent if start_latent.shape[0] == 1 else start_latent[lo:hi]
        try:
            with _on(dev):  # Triton launches on the current device
                results[i] = imagine_paths(
                    r.sampler.model, r.bank, start.to(dev), K_latent,
                    cam_to_map[lo:hi].to(dev), sampler_steps=sampler_steps, seed=seed,
                    path_ids=torch.arange(lo, hi, device=dev), sampler=r.sampler,
                    slot_overlay=slot_overlay, copy_offset=copy_offset,
                    noise_scale=noise_scale,
                    timings=timings if i == 0 else None,
                    on_step=first_on_step if i == 0 else None, should_stop=stopping)
        except BaseException as exc:  # noqa: BLE001 (re-raised on the caller's thread)
            errors[i] = exc
            stop.set()

    # Graph captures are not thread-safe in PyTorch: make them here, one device at a time,
    # before the threads start. (linalg.inv's lazy backend initialisation raced here too;
    # the loop no longer calls it.)
    hw = tuple(start_latent.shape[-2:])
    for r, size in zip(replicas, sizes, strict=True):
        with _on(r.bank.device):
            r.sampler.warm(size, sampler_steps, hw)
    bounds, lo = [], 0
    for size in sizes:
        bounds.append((lo, lo + size))
        lo += size
    threads = [threading.Thread(target=run, args=(i, *bounds[i]), daemon=True)
               for i in range(1, len(replicas))]
    for t in threads:
        t.start()
    run(0, *bounds[0])
    for t in threads:
        t.join()
    # A real failure on any replica explains the stop best; then the first interruption.
    real = [e for e in errors if e is not None and not isinstance(e, RolloutInterrupted)]
    stops = [e for e in errors if isinstance(e, RolloutInterrupted)]
    if real or stops:
        raise (real or stops)[0]
    parts = [r for r in results if r is not None]
    return Imagined(*(torch.cat([getattr(p, f).to(home) for p in parts])
                      for f in ("latents", "depth", "memory_depth", "mask", "coverage")))


def phase_timer(device: torch.device, timings: dict[str, float] | None) -> Callable:
    def timed(name: str, fn: Callable):
        if timings is None:
            return fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
        return out

    return timed
