"""Train the world model on recorded or simulated episodes: autoencoder, depth head, then DiT.

    python -m mirage_ros.train.world_model --config config/train/v2.yaml --data DIR --out RUN
    torchrun --nproc_per_node 2 -m mirage_ros.train.world_model --config ... --data DIR --out RUN
    ... --resume            # continue RUN from its last checkpoint, to the same result

Every run is described by a config file (``config/train/*.yaml``, fields of :class:`TrainConfig`;
``--set key=value`` overrides one). The run folder gets the resolved ``config.yaml``,
``log.jsonl`` (one line per logged step), ``loss.png``, ``state.safetensors`` (weights in fp32
and optimizer moments: what ``--resume`` reads) and ``model.safetensors`` (fp16, what the node
loads).

One process runs on the CPU (the tests) or one GPU; under ``torchrun`` every process drives one
GPU (NCCL; gloo on CPUs) through ``DistributedDataParallel``. The *global* batch of a step is
drawn from a generator seeded by (seed, phase, step) and is the same whatever the number of
processes: process r of W takes micro-batches r*A .. r*A+A-1 of the W*A micro-batches (A =
``grad_accum``), and gradients are averaged over all of them. So 1 GPU with ``grad_accum: 2`` and
2 GPUs with ``grad_accum: 1`` compute the same step, up to the order of float sums, and a resumed
run draws exactly the batches the uninterrupted one would have.

The DiT's training examples come from the project's own LatentMemory: for every episode the
frames are encoded and written into a memory from ground-truth depth *with a lag* (frame t-k is
written when frame t is the target, k drawn per episode; k = 0 writes the target's own frame
first, as a revisit finds the place already in memory, so the model learns to copy covered
cells). Rollouts feed the model its own frames, so each example is a rollout of
``rollout_steps`` frames: the first previous latent is the real one (perturbed with noise), each
later one is what the model itself imagined for the step before (sampled without gradient, as
the node samples), and every step's frame is supervised.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import yaml
from safetensors import safe_open
from safetensors.torch import save as save_tensors
from torch import nn

from mirage_ros.geometry import scale_intrinsics
from mirage_ros.memory import LatentMemory, MemoryView, keyframes, reduce_depth
from mirage_ros.memory.camera import rows_map_to_cam
from mirage_ros.model import WorldModel
from mirage_ros.model.autoencoder import AutoencoderConfig, reconstruction_loss
from mirage_ros.model.depth_head import DepthHeadConfig, with_column_attention, with_geometry
from mirage_ros.model.dit import DiTConfig, with_memory_trust
from mirage_ros.model.flow import sample_t
from mirage_ros.model.world_model import relative_rays
from mirage_ros.safefile import write_atomic

PHASES = ("ae", "depth", "dit")


# ---------------------------------------------------------------------------- config

@dataclass
class TrainConfig:
    """One training run. Batches are global (over all processes and accumulation steps)."""

    phases: list[str] = field(default_factory=lambda: list(PHASES))
    seed: int = 0
    precision: str = "bf16"  # bf16 autocast on GPUs; the CPU always trains in fp32
    grad_accum: int = 1
    max_episodes: int | None = None
    # A new model's shape (ignored with --init, which brings its own): configs' fields.
    autoencoder: dict = field(default_factory=lambda: {"latent_channels": 8})
    depth_head: dict = field(default_factory=lambda: {"latent_channels": 8})
    dit: dict = field(default_factory=lambda: {"latent_channels": 8})
    # Floor-geometry channels of the depth head (see geometry.floor_rays_torch): 2 lets one
    # head serve cameras of any height and pitch; an --init head with fewer is grown (its new
    # inputs start at zero weight). None: the head's own.
    depth_geometry_channels: int | None = None
    # Column-attention blocks of the depth head (model.depth_head.ColumnAttention): an --init
    # head with fewer is grown (the new blocks start as identities). None: the head's own.
    depth_column_attention: int | None = None
    # Photometric augmentation of the depth head's examples, 0 (off) to 1 (the ranges of
    # augment_draws): each image gets a random brightness, colour balance, contrast and gamma,
    # is mirrored half the time (at any strength above 0), and is encoded afresh, so the head
    # cannot read depth off how bright or tinted a surface is (the procedural scenes tie those
    # to distance in ways other buildings do not).
    depth_augment: float = 0.0
    # Share of the depth head's examples (0-1) that are the DiT's own imagined frames: a
    # rollout of depth_imagined_steps frames from a real one, as the node imagines them, ending
    # at the example's frame, whose true depth is the target. The critics read depth off
    # imagined frames where the memory has nothing; a head trained on real latents alone misses
    # it there by about twice as much. Needs a trained DiT (--init); those examples are neither
    # recoloured nor mirrored.
    depth_imagined: float = 0.0
    depth_imagined_steps: int = 4
    # The DiT's trust channel (model.dit): an --init DiT without it is grown (zero weights).
    memory_trust: bool = False
    ae_steps: int = 6000
    ae_batch: int = 64
    ae_lr: float = 4e-4
    depth_steps: int = 2000
    depth_batch: int = 64
    depth_lr: float = 4e-4
    dit_steps: int = 8000
    dit_batch: int = 256
    dit_lr: float = 3e-4
    warmup: int = 200
    # Optional time budget per phase, e.g. {dit: 300}: the phase's step count is cut to what fits,
    # fixed once from the pace of its first steps, so the learning-rate schedule still ends
    # where training does. The count is recorded, and a resumed run keeps it.
    seconds: dict = field(default_factory=dict)
    # The DiT's examples: memory lags (frames; 0 = revisit) and rollouts on its own frames.
    lags: list[int] = field(default_factory=lambda: [0, 1, 2, 4, 8])
    prev_noise: float = 0.5
    rollout_steps: int = 1
    rollout_sampler_steps: int = 2
    covered_weight: float = 0.0  # extra loss weight on memory-covered cells
    data_description: str = ""  # what the data is, for the model card (notes["data"])
    log_every: int = 50
    checkpoint_every: int = 500
    description: str = ""

    @classmethod
    def load(cls, path: str | os.PathLike | None, overrides: list[str] = ()) -> TrainConfig:
        raw = {}
        if path:
            raw = yaml.safe_load(Path(path).read_text()) or {}
            if not isinstance(raw, dict):
                raise ValueError(f"{path}: a training config is a mapping of fields")
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--set wants key=value, got {item!r}")
            raw[key.strip()] = yaml.safe_load(value)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ValueError(f"unknown training config fields {unknown}; known: {sorted(names)}")
        cfg = cls(**raw)
        cfg.check()
        return cfg

    def check(self) -> None:
        bad = [p for p in self.phases if p not in PHASES]
        if bad or not self.phases:
            raise ValueError(f"phases must be a non-empty subset of {PHASES}, got {self.phases}")
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be bf16 or fp32, got {self.precision!r}")
        if self.grad_accum < 1 or self.rollout_steps < 1 or self.rollout_sampler_steps < 1:
            raise ValueError("grad_accum, rollout_steps and rollout_sampler_steps must be >= 1")
        if not 0.0 <= self.depth_augment <= 1.0:
            raise ValueError(f"depth_augment must be in [0, 1], got {self.depth_augment}")
        if not 0.0 <= self.depth_imagined <= 1.0 or self.depth_imagined_steps < 1:
            raise ValueError("depth_imagined must be in [0, 1] and depth_imagined_steps >= 1, "
                             f"got {self.depth_imagined} and {self.depth_imagined_steps}")
        if self.depth_column_attention is not None and self.depth_column_attention < 0:
            raise ValueError("depth_column_attention must be >= 0")
        if not self.lags or min(self.lags) < 0:
            raise ValueError(f"lags must be non-negative frame counts, got {self.lags}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------- processes

@dataclass(frozen=True)
class Dist:
    """Where this process sits: rank of world, and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, device: str | None) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            return cls(0, 1, dev)
        rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
        cuda = torch.cuda.is_available() and device != "cpu"
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if cuda else "gloo")
        return cls(rank, world, torch.device(f"cuda:{local}" if cuda else "cpu"))

    def mean(self, value: float) -> float:
        """The mean of a scalar over processes (for logs)."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t) / self.world

    def smallest(self, value: int) -> int:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t)

    def wrap(self, module: nn.Module) -> nn.Module:
        if self.world == 1:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def micro(self, total: int, accum: int) -> list[slice]:
        """This process's micro-batches of a global batch of ``total``."""
        parts = self.world * accum
        if total % parts:
            raise ValueError(f"global batch {total} does not split into {self.world} processes "
                             f"x {accum} accumulation steps")
        size = total // parts
        return [slice((self.rank * accum + a) * size, (self.rank * accum + a + 1) * size)
                for a in range(accum)]


class _Method(nn.Module):
    """Makes one method of a module its ``forward``, so DDP sees the call (the depth head
    trains through ``forward_log``)."""

    def __init__(self, module: nn.Module, method: str) -> None:
        super().__init__()
        self.module, self.method = module, method

    def forward(self, *args):
        return getattr(self.module, self.method)(*args)


# ---------------------------------------------------------------------------- data

@dataclass
class Frames:
    """A split's episodes stacked on one device: N episodes of T frames."""

    rgb: torch.Tensor  # [N,T,H,W,3] uint8
    depth: torch.Tensor  # [N,T,H,W] float32 metres, 0 = invalid
    cam_to_map: np.ndarray  # [N,T,4,4] float64, camera optical frame -> map
    K: np.ndarray  # [3,3] pixel intrinsics (mirage_ros convention)

    @property
    def shape(self) -> tuple[int, int]:
        return self.rgb.shape[0], self.rgb.shape[1]

    def latent_K(self, down: int) -> np.ndarray:
        h, w = self.rgb.shape[2:4]
        return scale_intrinsics(self.K, (h, w), (h // down, w // down))


def load_frames(data_dir: str | Path, split: str, device: torch.device,
                max_episodes: int | None = None) -> Frames:
    """Stack episodes of equal length and intrinsics from the dataset reader onto `device`."""
    from mirage_ros.train.episodes import EpisodeReader

    rgb, depth, poses, K = [], [], [], None
    for ep in EpisodeReader(data_dir, split, cache=1):
        if rgb and (ep.rgb.shape != rgb[0].shape or not np.allclose(ep.K, K)):
            continue  # another length, size or lens: keep the stack rectangular, one K
        rgb.append(ep.rgb)
        depth.append(np.nan_to_num(ep.depth.astype(np.float32), nan=0.0, posinf=0.0))
        poses.append(ep.cam_to_map.astype(np.float64))
        K = ep.K if K is None else K
        if max_episodes and len(rgb) >= max_episodes:
            break
    if not rgb:
        raise FileNotFoundError(f"no '{split}' episodes under {data_dir}")
    return Frames(
        rgb=torch.from_numpy(np.stack(rgb)).to(device),
        depth=torch.from_numpy(np.stack(depth)).to(device),
        cam_to_map=np.stack(poses),
        K=np.asarray(K, dtype=np.float64),
    )


def _images(frames: Frames, idx: torch.Tensor) -> torch.Tensor:
    n, t = frames.shape
    flat = frames.rgb.view(n * t, *frames.rgb.shape[2:])
    return flat[idx].permute(0, 3, 1, 2).float() / 255.0


def latent_depth_targets(frames: Frames, down: int) -> torch.Tensor:
    """Ground-truth depth at latent resolution with the memory's own robust reduction."""
    n, t = frames.shape
    h, w = frames.depth.shape[2] // down, frames.depth.shape[3] // down
    d = frames.depth.view(n * t, *frames.depth.shape[2:])
    out = torch.cat([reduce_depth(d[i:i + 512], h, w) for i in range(0, n * t, 512)])
    return out.view(n, t, h, w)


@torch.no_grad()
def encode_all(model: WorldModel, frames: Frames, batch: int = 256) -> torch.Tensor:
    """Raw latents of every frame: [N,T,C,h,w] float32."""
    n, t = frames.shape
    out = []
    for i in range(0, n * t, batch):
        idx = torch.arange(i, min(i + batch, n * t), device=frames.rgb.device)
        out.append(model.autoencoder.encode(_images(frames, idx)).float())
    z = torch.cat(out)
    return z.view(n, t, *z.shape[1:])


@torch.no_grad()
def set_latent_stats(model: WorldModel, latents: torch.Tensor) -> None:
    flat = latents.transpose(0, 2).reshape(latents.shape[2], -1)
    model.latent_mean.copy_(flat.mean(1))
    model.latent_std.copy_(flat.std(1).clamp_min(1e-3))


@dataclass
class Conditions:
    """Per (episode, frame): the lagged memory read at that frame's pose, and rays from t-1."""

    mem_latent: torch.Tensor  # [N,T,C,h,w] raw
    mem_depth: torch.Tensor  # [N,T,h,w]
    mem_mask: torch.Tensor  # [N,T,h,w] bool
    rays: torch.Tensor  # [N,T,6,h,w]; frame 0's rays are unused
    mem_offset: torch.Tensor  # [N,T,h,w] see MemoryView.offset

    def condition(self, model: WorldModel, e: torch.Tensor, i: torch.Tensor,
                  prev: torch.Tensor) -> torch.Tensor:
        """The DiT's conditioning for frames ``i`` of episodes ``e`` after ``prev`` (raw)."""
        return model.condition(self.mem_latent[e, i], self.mem_depth[e, i], self.mem_mask[e, i],
                               prev, self.rays[e, i], self.mem_offset[e, i])


@torch.no_grad()
def build_conditions(frames: Frames, latents: torch.Tensor, lags=(0, 1, 2, 4, 8),
                     voxel_size: float = 0.05, seed: int = 2, log=print) -> Conditions:
    """One memory per episode, all episodes at once: each episode is a path of one overlay on an
    empty bank, so every frame step is a single batched write and a single batched read.
    Writing happens before reading, so a lag of 0 reads the target's own frame back.

    The read is the memory's own: the fused overlay read with the episode's nearest written
    frame warped over it (``memory.keyframes``, with the memory's default options). Every frame
    written so far is a candidate here, where the memory's bounded store keeps only the first of
    near-duplicates (within 0.1 m and 10 degrees): the chosen frame can be a later twin of the
    one the memory would use, no farther from it than that."""
    n, t, c, h, w = latents.shape
    device = latents.device
    down = frames.rgb.shape[2] // h
    K = torch.from_numpy(frames.latent_K(down)).float().to(device)
    cell_depth = latent_depth_targets(frames, down)
    poses = torch.from_numpy(frames.cam_to_map).float().to(device)
    rng = np.random.default_rng(seed)
    lag = torch.from_numpy(rng.choice(np.asarray(lags), size=n)).to(device)
    episodes = torch.arange(n, device=device)
    bank = LatentMemory(channels=c, voxel_size=voxel_size, capacity=1, device=device)
    memories = bank.overlay(n)
    kf = bank.config.keyframe_options()
    intr = torch.stack([K[0, 0], K[1, 1], K[0, 2], K[1, 2]])  # one lens for every frame
    poses64 = torch.from_numpy(frames.cam_to_map).to(device)
    depth_all, poses_all = frames.depth.flatten(0, 1), poses64.flatten(0, 1)
    kf_points = torch.cat([  # chunks keep the depth sort's peak memory small
        keyframes.frame_points(keyframes.warp_depth(depth_all[j:j + 512], h, w),
                               intr.expand(len(poses_all[j:j + 512]), 4), poses_all[j:j + 512])
        for j in range(0, n * t, 512)])
    kf_latents = latents.flatten(0, 1).flatten(2).transpose(1, 2)  # [n*t, h*w, C]
    kf_position = poses[..., :3, 3].reshape(n * t, 3)
    kf_axis = poses[..., :3, 2].reshape(n * t, 3)
    kf_episode = episodes.repeat_interleave(t)
    kf_frame = torch.arange(t, device=device).repeat(n)
    mem_latent = torch.zeros_like(latents)
    mem_depth = torch.zeros(n, t, h, w, device=device)
    mem_mask = torch.zeros(n, t, h, w, dtype=torch.bool, device=device)
    mem_offset = torch.full((n, t, h, w), math.inf, device=device)
    started = time.monotonic()
    for i in range(t):
        j = (i - lag).clamp(min=0)
        # Episodes whose lag has not elapsed yet write an all-invalid frame (depth 0): nothing.
        depth = cell_depth[episodes, j] * (i - lag >= 0)[:, None, None]
        memories.write(latents[episodes, j], depth, K, poses[episodes, j], float(i))
        view = memories.read(poses[:, i], K, (h, w))
        if kf.capacity:  # the episode's frames written so far are its keyframes
            allowed = (kf_episode[None] == episodes[:, None]) & (
                kf_frame[None] <= (i - lag)[:, None])
            frame, score = keyframes.select(kf_position, kf_axis, poses[:, i, :3, 3],
                                            poses[:, i, :3, 2], kf.angle_weight, kf.max_score,
                                            allowed)
            w2c = rows_map_to_cam(poses64[:, i])
            warped = keyframes.warp(kf_points, kf_latents, frame, w2c, intr.expand(n, 4), h, w,
                                    bank.config.near, bank.config.far)
            view = MemoryView(*keyframes.composite(view.latent, view.depth, view.mask, *warped,
                                                   score, kf.depth_tolerance))
        mem_latent[:, i], mem_depth[:, i], mem_mask[:, i] = view.latent, view.depth, view.mask
        mem_offset[:, i] = view.offset
        if i % 32 == 0 or i == t - 1:
            log(f"[conditions] frame {i}/{t}: {len(memories)} entries, coverage "
                f"{mem_mask[:, i].float().mean().item():.2f}, {time.monotonic() - started:.1f}s")
    K_lat = frames.latent_K(down)
    prev = frames.cam_to_map[:, :-1].reshape(-1, 4, 4)
    cur = frames.cam_to_map[:, 1:].reshape(-1, 4, 4)
    rays = torch.zeros(n, t, 6, h, w, device=device)
    rays[:, 1:] = relative_rays(K_lat, prev, cur, (h, w)).view(n, t - 1, 6, h, w).to(device)
    return Conditions(mem_latent, mem_depth, mem_mask, rays, mem_offset)


# ---------------------------------------------------------------------------- the loop

def _lr(step: int, total: int, peak: float, warmup: int) -> float:
    warmup = min(warmup, max(1, total // 10))
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _step_generator(device: torch.device, seed: int, phase: str, step: int) -> torch.Generator:
    """The generator of one step's global batch: a pure function of (seed, phase, step), so a
    resumed run and a run on another number of processes draw the same batches."""
    key = (seed * 1_000_003 + PHASES.index(phase)) * 10_000_019 + step
    return torch.Generator(device=device).manual_seed(key % (2**63))


class Trainer:
    """Runs the phases of one config, logging, checkpointing and resuming."""

    def __init__(self, cfg: TrainConfig, model: WorldModel, frames: Frames, out: Path,
                 proc: Dist, state: dict | None = None,
                 opt_state: dict[str, torch.Tensor] | None = None) -> None:
        self.cfg, self.model, self.frames, self.out, self.proc = cfg, model, frames, out, proc
        self.state = state or {"done": [], "phase": None, "step": 0, "totals": {},
                               "notes": dict(model.notes), "logged": 0}
        self.autocast = (proc.device.type == "cuda" and cfg.precision == "bf16")
        self._opt_state = opt_state  # a resumed phase's AdamW moments (opt.<i>.<key>)
        self.stop_after: int | None = None  # optimizer steps of this invocation
        self.time_limit: float | None = None  # seconds of this invocation
        self._t0 = time.monotonic()
        self._steps_run = 0

    def log(self, text: str) -> None:
        if self.proc.main:
            print(text, flush=True)
            with open(self.out / "log.txt", "a") as f:
                f.write(text + "\n")

    def record(self, row: dict) -> None:
        if self.proc.main:
            with open(self.out / "log.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")

    def _amp(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast)

    # -------------------------------------------------------------- generic phase loop

    def run_phase(self, phase: str, module: nn.Module, loss_fn, steps: int, lr: float,
                  weight_decay: float) -> bool:
        """Optimise ``module`` for ``steps`` steps of ``loss_fn(gen, micro_slices, wrapped)``,
        which returns the mean loss of its micro-batches (and does their backward passes).
        Returns False when the run stopped early (``stop_after``) with a checkpoint written."""
        cfg, proc = self.cfg, self.proc
        module.train()
        opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
        start = 0
        if self.state["phase"] == phase:
            start = self.state["step"]
            self._load_optimizer(opt)
        steps = int(self.state["totals"].get(phase, steps))
        budget = cfg.seconds.get(phase) if phase not in self.state["totals"] else None
        if budget is None:
            self.state["totals"][phase] = steps
        wrapped = proc.wrap(module)
        self.state["phase"] = phase
        started, paced = time.monotonic(), None
        # Steps before this one include warm-up and allocation: the rate is timed from here.
        pace_from = start + min(20, (steps - start) // 2)
        step = start - 1
        while step + 1 < steps:  # not a range: a time budget may shorten the phase
            step += 1
            if step == pace_from:
                paced = (time.monotonic(), step)
            if budget and paced and step == paced[1] + 20:
                per_step = (time.monotonic() - paced[0]) / 20
                fits = step + int((budget - (time.monotonic() - started)) / per_step)
                steps = proc.smallest(max(step + 1, min(steps, fits)))
                self.state["totals"][phase] = steps
                self.log(f"[{phase}] {budget:g} s budget: {steps} steps")
            for g in opt.param_groups:
                g["lr"] = _lr(step, steps, lr, cfg.warmup)
            gen = _step_generator(proc.device, cfg.seed, phase, step)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(gen, wrapped)
            torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
            opt.step()
            done = step + 1
            if done % cfg.log_every == 0 or done == steps or step == start:
                loss = proc.mean(loss)
                rate = ((done - paced[1]) / (time.monotonic() - paced[0])
                        if paced and done > paced[1] else float("nan"))
                self.log(f"[{phase}] {done:>6}/{steps} {time.monotonic() - started:7.1f}s "
                         f"loss {loss:.5f} lr {opt.param_groups[0]['lr']:.2e} "
                         f"{rate:.2f} steps/s")
                self.record({"phase": phase, "step": done, "loss": loss,
                             "lr": opt.param_groups[0]["lr"], "steps_per_s": rate,
                             "seconds": time.monotonic() - started, "world": proc.world,
                             "grad_accum": cfg.grad_accum})
            self.state["step"] = done
            self._steps_run += 1
            stopping = self.stop_after is not None and self._steps_run >= self.stop_after
            if self.time_limit is not None:  # every process must agree to stop
                over = time.monotonic() - self._t0 > self.time_limit
                stopping |= self.proc.smallest(int(over)) == 1
            if done < steps and (done % cfg.checkpoint_every == 0 or stopping):
                self.save_state(module, opt)
            if stopping and done < steps:
                self.log(f"[{phase}] stopped after {done} steps; --resume continues")
                return False
        key = _STEPS_NOTE[phase]
        notes = self.state["notes"]
        notes[key] = str(int(notes.get(key, 0)) + steps)
        if paced:
            rate = (steps - paced[1]) / (time.monotonic() - paced[0])
            notes[f"{phase}_steps_per_s"] = f"{rate:.2f} on {proc.world} process(es)"
            self.log(f"[{phase}] {rate:.2f} steps/s over steps {paced[1]}..{steps} "
                     f"({proc.world} process(es), grad_accum {cfg.grad_accum})")
        module.eval()
        self.state["done"].append(phase)
        self.state["phase"], self.state["step"] = None, 0
        self.save_state(None, None)
        return True

    # -------------------------------------------------------------- the three losses

    def ae_loss(self, gen: torch.Generator, wrapped: nn.Module) -> float:
        cfg, frames = self.cfg, self.frames
        total = frames.shape[0] * frames.shape[1]
        idx = torch.randint(total, (cfg.ae_batch,), device=self.proc.device, generator=gen)
        parts = self.proc.micro(cfg.ae_batch, cfg.grad_accum)
        losses = []
        for k, sl in enumerate(parts):
            x = _images(frames, idx[sl])
            with self._sync(wrapped, k, len(parts)), self._amp():
                recon, z = wrapped(x)
                loss = reconstruction_loss(recon.float(), x) + 1e-4 * z.float().pow(2).mean()
                (loss / len(parts)).backward()
            losses.append(loss.item())
        return float(np.mean(losses))

    def depth_loss(self, gen: torch.Generator, wrapped: nn.Module) -> float:
        cfg = self.cfg
        idx = torch.randint(self.z_all.shape[0], (cfg.depth_batch,), device=self.proc.device,
                            generator=gen)
        parts = self.proc.micro(cfg.depth_batch, cfg.grad_accum)
        # Drawn for the whole global batch, like the indices: every process slices the same draws.
        draws = (augment_draws(cfg.depth_batch, cfg.depth_augment, self.proc.device, gen)
                 if cfg.depth_augment > 0 else None)
        imagined = self._imagined_draws(gen) if cfg.depth_imagined > 0 else None
        losses = []
        for k, sl in enumerate(parts):
            i = idx[sl]
            use = None
            if imagined is not None:  # these examples move to their rollout's last frame
                use = imagined.use[sl]
                i = torch.where(use, imagined.frame[sl], i)
            geometry = None if self.geometry is None else self.geometry[i]
            z, cell_gt, pix_gt = self.z_all[i], self.cell_gt[i], self.pix_gt[i]
            if draws is not None:
                aug = Augmentation(*(d[sl] for d in draws))
                if use is not None:  # an imagined latent has no image to recolour or mirror
                    aug = aug._replace(flip=aug.flip & ~use)
                x, cell_gt, pix_gt, geometry = recolour_and_mirror(
                    _images(self.frames, i), cell_gt, pix_gt, geometry, aug)
                with torch.no_grad():  # the frozen encoder sees what the head will be asked
                    z = self.model.autoencoder.encode(x).float()
            if use is not None and bool(use.any()):
                z = z.clone()
                z[use] = self._rollout(imagined, sl, use)
            with self._sync(wrapped, k, len(parts)), self._amp():
                cell, pix = wrapped(self.model.normalize(z), True, geometry)
                loss = _log_l1(cell.float(), cell_gt) + _log_l1(pix.float(), pix_gt)
                (loss / len(parts)).backward()
            losses.append(loss.item())
        return float(np.mean(losses))

    def _imagined_draws(self, gen: torch.Generator) -> Imagination:
        """Which examples of the global batch are imagined (``depth_imagined``) and their
        rollouts, drawn for the whole batch so that every process slices the same draws."""
        cfg, dev, b = self.cfg, self.proc.device, self.cfg.depth_batch
        n, t = self.latents.shape[:2]
        k = cfg.depth_imagined_steps
        if t <= k:
            raise ValueError(f"episodes of {t} frames are too short for {k}-step rollouts")
        use = torch.rand(b, device=dev, generator=gen) < cfg.depth_imagined
        e = torch.randint(n, (b,), device=dev, generator=gen)
        last = torch.randint(k, t, (b,), device=dev, generator=gen)  # frames last-k .. last
        noise = torch.randn((k, b, *self.latents.shape[2:]), device=dev, generator=gen)
        return Imagination(use, e, last, e * t + last, noise)

    @torch.no_grad()
    def _rollout(self, imagined: Imagination, sl: slice, use: torch.Tensor) -> torch.Tensor:
        """The DiT's own frames at the end of the rollouts of ``imagined[sl][use]``: raw latents
        [M,C,h,w]. Like the node: the previous latent is real at the start and the model's own
        after; each step reads the memory at its pose (lagged as the DiT was trained)."""
        model, conds, k = self.model, self.conds, self.cfg.depth_imagined_steps
        e, last = imagined.episode[sl][use], imagined.last[sl][use]
        prev = self.latents[e, last - k]
        for s in range(k):
            cond = conds.condition(model, e, last - k + 1 + s, prev)
            with self._amp():
                prev = model.sample(cond, imagined.noise[s, sl][use],
                                    self.cfg.rollout_sampler_steps).float()
        return prev

    def dit_loss(self, gen: torch.Generator, wrapped: nn.Module) -> float:
        """A rollout of ``rollout_steps`` frames per example; see the module docstring."""
        cfg, model, conds, lat = self.cfg, self.model, self.conds, self.latents
        dev, b, k_steps = self.proc.device, cfg.dit_batch, cfg.rollout_steps
        n, t = lat.shape[:2]
        if t <= k_steps:
            raise ValueError(f"episodes of {t} frames are too short for {k_steps}-step rollouts")
        std = model.latent_std[:, None, None]
        # The whole global batch is drawn here, on every process, in a fixed order.
        e = torch.randint(n, (b,), device=dev, generator=gen)
        i0 = torch.randint(1, t - k_steps + 1, (b,), device=dev, generator=gen)
        sigma = cfg.prev_noise * torch.rand(b, 1, 1, 1, device=dev, generator=gen)
        shape = (b, *lat.shape[2:])
        prev_noise = torch.randn(shape, device=dev, generator=gen)
        flow_noise = torch.randn((k_steps, *shape), device=dev, generator=gen)
        sample_noise = torch.randn((k_steps, *shape), device=dev, generator=gen)
        tt = torch.stack([sample_t(b, dev, gen) for _ in range(k_steps)])
        parts = self.proc.micro(b, cfg.grad_accum)
        losses = []
        for p, sl in enumerate(parts):
            ee, ii = e[sl], i0[sl]
            prev = lat[ee, ii - 1] + sigma[sl] * std * prev_noise[sl]
            conds_k, x0_k = [], []
            for k in range(k_steps):
                cond = conds.condition(model, ee, ii + k, prev)
                conds_k.append(cond)
                x0_k.append(model.normalize(lat[ee, ii + k]))
                if k + 1 < k_steps:  # the model's own frame becomes the next step's context
                    with torch.no_grad(), self._amp():
                        prev = model.sample(cond, sample_noise[k, sl],
                                            cfg.rollout_sampler_steps).float()
            cond = torch.cat(conds_k)
            x0 = torch.cat(x0_k)
            noise = flow_noise[:, sl].flatten(0, 1)
            ts = tt[:, sl].flatten(0, 1)
            x_t = (1 - ts)[:, None, None, None] * x0 + ts[:, None, None, None] * noise
            weight = 1.0
            if cfg.covered_weight:
                covered = torch.cat([conds.mem_mask[ee, ii + k] for k in range(k_steps)])
                weight = 1.0 + cfg.covered_weight * covered[:, None].float()
            with self._sync(wrapped, p, len(parts)), self._amp():
                v = wrapped(x_t, ts, cond).float()
                loss = (weight * (v - (noise - x0)).pow(2)).mean()
                (loss / len(parts)).backward()
            losses.append(loss.item())
        return float(np.mean(losses))

    def _sync(self, wrapped: nn.Module, k: int, count: int):
        """Gradients are all-reduced on the last micro-batch only."""
        if k + 1 < count and isinstance(wrapped, nn.parallel.DistributedDataParallel):
            return wrapped.no_sync()
        return contextlib.nullcontext()

    # -------------------------------------------------------------- phases in order

    def run(self) -> bool:
        cfg, model = self.cfg, self.model
        for phase in cfg.phases:
            if phase in self.state["done"]:
                continue
            if phase == "ae":
                if not self.run_phase("ae", model.autoencoder, self.ae_loss, cfg.ae_steps,
                                      cfg.ae_lr, 0.01):
                    return False
                continue
            if not hasattr(self, "latents"):
                self.latents = encode_all(model, self.frames)
                if "ae" in cfg.phases and not self.state.get("stats_set"):
                    set_latent_stats(model, self.latents)
                    self.state["stats_set"] = True
            if phase == "depth":
                if cfg.depth_imagined > 0:
                    if "dit" not in _done(self.state["notes"]):
                        raise ValueError("depth_imagined needs a trained DiT: start from one "
                                         "with --init")
                    self._build_conditions()
                self.cell_gt = latent_depth_targets(self.frames, model.downsampling).flatten(0, 1)
                self.pix_gt = self.frames.depth.flatten(0, 1)
                self.z_all = self.latents.flatten(0, 1)
                self.geometry = model.depth_geometry(
                    self.frames.latent_K(model.downsampling),
                    self.frames.cam_to_map.reshape(-1, 4, 4), self.latents.shape[-2:])
                head = _Method(model.depth_head, "forward_log")
                if not self.run_phase("depth", head, self.depth_loss, cfg.depth_steps,
                                      cfg.depth_lr, 0.01):
                    return False
            else:
                self._build_conditions()
                if not self.run_phase("dit", model.dit, self.dit_loss, cfg.dit_steps,
                                      cfg.dit_lr, 0.0):
                    return False
        return True

    def _build_conditions(self) -> None:
        """The memory reads of every frame, once per run (the depth phase's imagined examples
        and the DiT phase read the same ones)."""
        if not hasattr(self, "conds"):
            self.conds = build_conditions(self.frames, self.latents, self.cfg.lags,
                                          seed=self.cfg.seed + 2, log=self.log)

    # -------------------------------------------------------------- checkpoints

    def save_state(self, module: nn.Module | None, opt: torch.optim.Optimizer | None) -> None:
        """Weights in fp32, the phase's optimizer moments and where the run stands."""
        if not self.proc.main:
            return
        tensors = {f"model.{k}": v.detach().float().cpu().contiguous()
                   for k, v in self.model.state_dict().items()}
        if opt is not None:
            for i, p in enumerate(module.parameters()):
                for key, value in opt.state.get(p, {}).items():
                    # AdamW keeps "step" as a 0-d tensor; a safetensors entry needs a dimension.
                    t = value.detach().cpu()
                    tensors[f"opt.{i}.{key}"] = t.reshape(1).float() if key == "step" \
                        else t.contiguous()
        meta = {"state": json.dumps(self.state), "config": json.dumps(self.cfg.to_dict())}
        write_atomic(self.out / "state.safetensors", save_tensors(tensors, metadata=meta))

    def _load_optimizer(self, opt: torch.optim.Optimizer) -> None:
        saved = self._opt_state or {}
        params = [p for g in opt.param_groups for p in g["params"]]
        for i, p in enumerate(params):
            keys = {k.split(".", 2)[2]: v for k, v in saved.items()
                    if k.startswith(f"opt.{i}.")}
            if not keys:
                continue
            st = {"step": keys["step"].reshape(()).to(torch.float32),
                  "exp_avg": keys["exp_avg"].to(p.device),
                  "exp_avg_sq": keys["exp_avg_sq"].to(p.device)}
            opt.state[p] = st


class Imagination(NamedTuple):
    """Per-example draws of the depth head's imagined examples (see ``depth_imagined``)."""

    use: torch.Tensor  # [B] bool: this example is an imagined frame
    episode: torch.Tensor  # [B]
    last: torch.Tensor  # [B] the rollout's last frame, the one whose depth is the target
    frame: torch.Tensor  # [B] that frame's index in the flattened episodes
    noise: torch.Tensor  # [steps, B, C, h, w] the sampler's starting noise per step


class Augmentation(NamedTuple):
    """Per-image draws of the depth head's photometric augmentation (see ``depth_augment``)."""

    gain: torch.Tensor  # [B,3,1,1] brightness times colour balance
    contrast: torch.Tensor  # [B,1,1,1]
    gamma: torch.Tensor  # [B,1,1,1]
    flip: torch.Tensor  # [B] bool: mirror left-right


def augment_draws(batch: int, strength: float, device: torch.device,
                  gen: torch.Generator) -> Augmentation:
    """Draws for ``batch`` images at ``strength`` in [0, 1]: brightness x e^+-0.5, colour
    balance x e^+-0.15 per channel, contrast and gamma x e^+-0.3 (each log-uniform, ranges
    scaled by ``strength``); mirrored with probability 1/2 whatever the strength."""

    def log_uniform(scale: float, *shape: int) -> torch.Tensor:
        u = torch.rand(batch, *shape, device=device, generator=gen)
        return torch.exp(scale * strength * (2 * u - 1))

    gain = log_uniform(0.5, 1, 1, 1) * log_uniform(0.15, 3, 1, 1)
    contrast, gamma = log_uniform(0.3, 1, 1, 1), log_uniform(0.3, 1, 1, 1)
    flip = torch.rand(batch, device=device, generator=gen) < 0.5
    return Augmentation(gain, contrast, gamma, flip)


def recolour_and_mirror(
    x: torch.Tensor, cell: torch.Tensor, pix: torch.Tensor, geometry: torch.Tensor | None,
    draws: Augmentation,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Images ``x`` [B,3,H,W] in [0, 1] recoloured by ``draws``; images, cell depth [B,h,w],
    pixel depth [B,H,W] and floor geometry [B,G,h,w] mirrored alike where ``draws.flip``.
    Depth along the optical axis does not change under a mirror, and the mirrored geometry is
    exactly the floor of the mirrored camera, so every target stays true."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (((x - mean) * draws.contrast + mean).clamp(0, 1).pow(draws.gamma)
         * draws.gain).clamp(0, 1)

    def mirrored(t: torch.Tensor) -> torch.Tensor:
        return torch.where(draws.flip.view(-1, *[1] * (t.ndim - 1)), t.flip(-1), t)

    return (mirrored(x), mirrored(cell), mirrored(pix),
            None if geometry is None else mirrored(geometry))


def _log_l1(pred_log: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    valid = target > 0
    return (pred_log - target.clamp_min(1e-3).log()).abs()[valid].mean()


def read_state(path: Path) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """(tensors, run state, config dict) of a run's ``state.safetensors``."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if "state" not in meta or "config" not in meta:
        raise ValueError(f"{path} is not a training state written by this script")
    return tensors, json.loads(meta["state"]), json.loads(meta["config"])


def loss_curve(log_path: Path, png: Path, title: str) -> None:
    """One panel per phase: the logged loss against the optimizer step."""
    from mirage_ros.train.plot import Panel, Series, panels, save_png

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    charts = []
    colours = {"ae": (31, 119, 180), "depth": (44, 160, 44), "dit": (214, 39, 40)}
    offset = 0
    for phase in PHASES:
        mine = [r for r in rows if r["phase"] == phase]
        if not mine:
            continue
        xs = [offset + r["step"] for r in mine]
        charts.append(Panel(f"{phase} loss (x: steps of the whole run)",
                            [Series(phase, xs, [r["loss"] for r in mine], colours[phase])],
                            y_label="loss", y_min=None))
        offset = max(xs)
    if charts:
        save_png(png, panels(charts, x_label="optimizer step", title=title))


# ---------------------------------------------------------------------------- CLI

def _new_model(cfg: TrainConfig) -> WorldModel:
    def build(kind, d):
        return kind.from_dict({**dataclasses.asdict(kind()), **d})

    return WorldModel(build(AutoencoderConfig, cfg.autoencoder),
                      build(DepthHeadConfig, cfg.depth_head), build(DiTConfig, cfg.dit))


def _grown(model: WorldModel, cfg: TrainConfig) -> WorldModel:
    grow = cfg.depth_geometry_channels
    if grow is not None and grow != model.depth_head.cfg.geometry_channels:
        model.depth_head = with_geometry(model.depth_head, grow)
    blocks = cfg.depth_column_attention
    if blocks is not None and blocks != model.depth_head.cfg.column_attention:
        model.depth_head = with_column_attention(model.depth_head, blocks)
    if cfg.memory_trust and not model.dit.cfg.memory_trust:
        model.dit = with_memory_trust(model.dit)
    return model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", help="a training config (config/train/*.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config field (YAML value)")
    p.add_argument("--data", required=True, help="dataset (train.generate or train.bag_import)")
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.add_argument("--init", help="checkpoint to start from (its shape wins over the config's)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--stop-after", type=int, help="stop (with a checkpoint) after this many "
                   "optimizer steps of this invocation: for pre-emptible machines and tests")
    p.add_argument("--time-limit", type=float, help="stop (with a checkpoint) after this many "
                   "seconds of this invocation; --resume continues")
    args = p.parse_args(argv)
    cfg = TrainConfig.load(args.config, args.set)
    proc = Dist.start(args.device)
    if proc.world == 1:
        return _run(args, cfg, proc)
    try:
        code = _run(args, cfg, proc)
        # Rank 0 still writes the model and the loss curve after the last step: a rank that
        # tore its connections down meanwhile was seen to abort on gloo (SIGABRT at exit).
        dist.barrier()
        return code
    finally:
        dist.destroy_process_group()


def _run(args, cfg: TrainConfig, proc: Dist) -> int:
    out: Path = args.out
    state_path = out / "state.safetensors"
    if proc.main:
        out.mkdir(parents=True, exist_ok=True)
    if proc.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    state = None
    if args.resume:
        if not state_path.exists():
            raise FileNotFoundError(f"--resume: no {state_path}")
        tensors, state, saved_cfg = read_state(state_path)
        if saved_cfg != cfg.to_dict():
            changed = sorted(k for k in saved_cfg if saved_cfg[k] != cfg.to_dict().get(k))
            raise ValueError(f"--resume: the config differs from the run's in {changed}")
        model = _grown(WorldModel.load(args.init, "cpu") if args.init else _new_model(cfg), cfg)
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        model.notes = dict(state["notes"])
    else:
        if state_path.exists():
            raise FileExistsError(f"{out} holds a run already: --resume it or use another --out")
        torch.manual_seed(cfg.seed)
        model = _grown(WorldModel.load(args.init, "cpu") if args.init else _new_model(cfg), cfg)
        if proc.main:
            (out / "config.yaml").write_text(
                yaml.safe_dump({**cfg.to_dict(), "data": str(args.data),
                                "init": args.init or "", "processes": proc.world},
                               sort_keys=False))
            for name in ("log.jsonl", "log.txt"):
                (out / name).unlink(missing_ok=True)
    model = model.to(proc.device)
    frames = load_frames(args.data, "train", proc.device, cfg.max_episodes)
    opt_state = None if state is None else {k: v for k, v in tensors.items()
                                            if k.startswith("opt.")}
    trainer = Trainer(cfg, model, frames, out, proc, state, opt_state)
    trainer.stop_after, trainer.time_limit = args.stop_after, args.time_limit
    trainer.log(f"train split: {frames.shape[0]} episodes x {frames.shape[1]} frames; "
                f"{proc.world} process(es) on {proc.device.type}; config {args.config}")
    started = time.monotonic()
    finished = trainer.run()
    if not finished:
        return 0
    notes = trainer.state["notes"]
    notes["trained"] = "yes" if set(PHASES) <= set(trainer.state["done"]) | _done(notes) \
        else "partial"
    run = {
        "train_episodes": str(frames.shape[0]),
        "train_frames": str(frames.shape[0] * frames.shape[1]),
        "device": (f"{proc.world} x {torch.cuda.get_device_name()}"
                   if proc.device.type == "cuda" else "cpu"),
        "config": cfg.description or str(args.config),
        "data": cfg.data_description,
    }
    # A run that trains some parts of an --init model describes those parts only: the notes
    # of the parts it left alone (their data, config, device) stay true and are kept.
    parts = ", ".join(_PART_NAMES[p] for p in cfg.phases)
    partial = set(cfg.phases) != set(PHASES) and "config" in notes  # notes: a trained model
    for key, value in run.items():
        if value:
            notes[key] = f"{notes[key]}; {parts}: {value}" if partial and notes.get(key) \
                else value
    if partial:
        step = f"{args.config or run['config']} ({parts} only, {run['device']})"
        notes["lineage"] = f"{notes['lineage']} -> {step}" if notes.get("lineage") else step
    key = "seconds_" + "_".join(cfg.phases)
    notes[key] = str(int(notes.get(key, 0)) + round(time.monotonic() - started))
    model.notes = notes
    if proc.main:
        model.save(out / "model.safetensors")
        loss_curve(out / "log.jsonl", out / "loss.png",
                   f"{cfg.description or args.config}: {proc.world} process(es)")
        trainer.log(f"saved {out / 'model.safetensors'}")
    return 0


# Per phase: the part's name in the notes' prose, and the note that counts its steps.
_PART_NAMES = {"ae": "autoencoder", "depth": "depth head", "dit": "DiT"}
_STEPS_NOTE = {"ae": "autoencoder_steps", "depth": "depth_head_steps", "dit": "dit_steps"}


def _done(notes: dict[str, str]) -> set[str]:
    """Phases whose step count the notes already hold (trained by an earlier run)."""
    return {k for k, v in _STEPS_NOTE.items() if v in notes}


if __name__ == "__main__":
    raise SystemExit(main())
