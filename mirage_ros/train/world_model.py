"""Train the world model on simulator episodes: autoencoder, then depth head, then the DiT.

    python -m mirage_ros.train.world_model --data DIR --out world_model.safetensors \
        [--phases ae,depth,dit] [--init CKPT] [--ae-steps N] [--depth-steps N] [--dit-steps N]

One loop per phase, each a few lines: sample a batch, compute the loss, step. The DiT's training
examples come from the project's own LatentMemory: for every episode the frames are encoded and
written into a memory from ground-truth depth *with a lag* (frame t-k is written when frame t is
the target, k drawn per episode), so targets see both well-covered views and holes, as imagined
views do. The previous latent is perturbed with noise so that 8-step rollouts, which feed the
model its own imperfect frames, do not drift apart.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mirage_ros.geometry import scale_intrinsics
from mirage_ros.memory import LatentMemory, reduce_depth
from mirage_ros.model import WorldModel
from mirage_ros.model.autoencoder import psnr, reconstruction_loss
from mirage_ros.model.flow import flow_loss, sample_t
from mirage_ros.model.world_model import relative_rays


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
    """Stack episodes of equal length from the dataset reader onto `device`."""
    from mirage_ros.train.episodes import EpisodeReader

    rgb, depth, poses, K = [], [], [], None
    for ep in EpisodeReader(data_dir, split, cache=1):
        if rgb and ep.rgb.shape != rgb[0].shape:
            continue  # episodes of another length or size: keep the stack rectangular
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


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


class StepBudget:
    """At most `steps` steps and, if `seconds` is set, about that much time: the step count is
    fixed from the pace of steps 20..60 (the first steps include compilation and warm-up), so the
    learning-rate schedule still ends where training does."""

    def __init__(self, steps: int, seconds: float | None) -> None:
        self.total = steps
        self.done = 0
        self._seconds = seconds
        self._started = time.monotonic()
        self._mark = self._started

    def update(self, step: int) -> None:
        if not self._seconds:
            return
        if step == 20:
            self._mark = time.monotonic()
        elif step == 60:
            now = time.monotonic()
            per_step = (now - self._mark) / 40
            remaining = self._seconds - (now - self._started)
            self.total = max(61, min(self.total, 60 + int(remaining / per_step)))

    def run(self, opt: torch.optim.Optimizer, peak_lr: float) -> Iterator[int]:
        """Yield step numbers with the learning rate of each already set; `done` counts them."""
        step = 0
        while step < self.total:
            self.update(step)
            for g in opt.param_groups:
                g["lr"] = _lr(step, self.total, peak_lr)
            yield step
            step += 1
            self.done = step

    def logs(self, step: int) -> bool:
        return step % 200 == 0 or step == self.total - 1


def _lr(step: int, total: int, peak: float, warmup: int = 200) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _log(phase: str, step: int, total: int, started: float, **values: float) -> None:
    items = " ".join(f"{k} {v:.4f}" for k, v in values.items())
    print(f"[{phase}] {step:>6}/{total} {time.monotonic() - started:7.1f}s {items}", flush=True)


# ---------------------------------------------------------------------------- autoencoder

def train_autoencoder(model: WorldModel, frames: Frames, steps: int, batch: int = 64,
                      lr: float = 4e-4, seed: int = 0, seconds: float | None = None) -> int:
    device = frames.rgb.device
    ae = model.autoencoder.train()
    opt = torch.optim.AdamW(ae.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator(device=device).manual_seed(seed)
    total = frames.shape[0] * frames.shape[1]
    started = time.monotonic()
    budget = StepBudget(steps, seconds)
    for step in budget.run(opt, lr):
        x = _images(frames, torch.randint(total, (batch,), device=device, generator=gen))
        with _autocast(device):
            recon, z = ae(x)
            loss = reconstruction_loss(recon.float(), x) + 1e-4 * z.float().pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ae.parameters(), 1.0)
        opt.step()
        if budget.logs(step):
            _log("ae", step, budget.total, started, loss=loss.item(),
                 psnr=psnr(recon.detach().float().clamp(0, 1), x).mean().item())
    ae.eval()
    return budget.done


@torch.no_grad()
def encode_all(model: WorldModel, frames: Frames, batch: int = 256) -> torch.Tensor:
    """Raw latents of every frame: [N,T,C,h,w]."""
    n, t = frames.shape
    out = []
    for i in range(0, n * t, batch):
        idx = torch.arange(i, min(i + batch, n * t), device=frames.rgb.device)
        with _autocast(frames.rgb.device):
            out.append(model.autoencoder.encode(_images(frames, idx)).float())
    z = torch.cat(out)
    return z.view(n, t, *z.shape[1:])


@torch.no_grad()
def set_latent_stats(model: WorldModel, latents: torch.Tensor) -> None:
    flat = latents.transpose(0, 2).reshape(latents.shape[2], -1)
    model.latent_mean.copy_(flat.mean(1))
    model.latent_std.copy_(flat.std(1).clamp_min(1e-3))


# ---------------------------------------------------------------------------- depth head

def latent_depth_targets(frames: Frames, down: int) -> torch.Tensor:
    """Ground-truth depth at latent resolution with the memory's own robust reduction."""
    n, t = frames.shape
    h, w = frames.depth.shape[2] // down, frames.depth.shape[3] // down
    d = frames.depth.view(n * t, *frames.depth.shape[2:])
    out = torch.cat([reduce_depth(d[i:i + 512], h, w) for i in range(0, n * t, 512)])
    return out.view(n, t, h, w)


def _log_l1(pred_log: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    valid = target > 0
    return (pred_log - target.clamp_min(1e-3).log()).abs()[valid].mean()


def train_depth_head(model: WorldModel, frames: Frames, latents: torch.Tensor, steps: int,
                     batch: int = 64, lr: float = 4e-4, seed: int = 1,
                     seconds: float | None = None) -> int:
    device = latents.device
    head = model.depth_head.train()
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator(device=device).manual_seed(seed)
    cell_gt = latent_depth_targets(frames, model.downsampling).flatten(0, 1)
    pix_gt = frames.depth.flatten(0, 1)
    z_all = latents.flatten(0, 1)
    started = time.monotonic()
    budget = StepBudget(steps, seconds)
    for step in budget.run(opt, lr):
        idx = torch.randint(z_all.shape[0], (batch,), device=device, generator=gen)
        with _autocast(device):
            cell, pix = head.forward_log(model.normalize(z_all[idx]))
        loss = _log_l1(cell.float(), cell_gt[idx]) + _log_l1(pix.float(), pix_gt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if budget.logs(step):
            _log("depth", step, budget.total, started, log_l1=loss.item())
    head.eval()
    return budget.done


# ---------------------------------------------------------------------------- DiT

@dataclass
class Conditions:
    """Per (episode, frame): the lagged memory read at that frame's pose, and rays from t-1."""

    mem_latent: torch.Tensor  # [N,T,C,h,w] raw
    mem_depth: torch.Tensor  # [N,T,h,w]
    mem_mask: torch.Tensor  # [N,T,h,w] bool
    rays: torch.Tensor  # [N,T,6,h,w]; frame 0's rays are unused


@torch.no_grad()
def build_conditions(frames: Frames, latents: torch.Tensor, lags=(1, 2, 4, 8),
                     voxel_size: float = 0.05, seed: int = 2) -> Conditions:
    """One memory per episode, all episodes at once: each episode is a path of one overlay on an
    empty bank, so every frame step is a single batched write and a single batched read."""
    n, t, c, h, w = latents.shape
    device = latents.device
    down = frames.rgb.shape[2] // h
    K = torch.from_numpy(frames.latent_K(down)).float().to(device)
    cell_depth = latent_depth_targets(frames, down)
    poses = torch.from_numpy(frames.cam_to_map).float().to(device)
    rng = np.random.default_rng(seed)
    lag = torch.from_numpy(rng.choice(lags, size=n)).to(device)
    episodes = torch.arange(n, device=device)
    bank = LatentMemory(channels=c, voxel_size=voxel_size, capacity=1, device=device)
    memories = bank.overlay(n)
    mem_latent = torch.zeros_like(latents)
    mem_depth = torch.zeros(n, t, h, w, device=device)
    mem_mask = torch.zeros(n, t, h, w, dtype=torch.bool, device=device)
    started = time.monotonic()
    for i in range(t):
        j = (i - lag).clamp(min=0)
        # Episodes whose lag has not elapsed yet write an all-invalid frame (depth 0): nothing.
        depth = cell_depth[episodes, j] * (i - lag >= 0)[:, None, None]
        memories.write(latents[episodes, j], depth, K, poses[episodes, j], float(i))
        view = memories.read(poses[:, i], K, (h, w))
        mem_latent[:, i], mem_depth[:, i], mem_mask[:, i] = view.latent, view.depth, view.mask
        if i % 16 == 0 or i == t - 1:
            print(f"[conditions] frame {i}/{t}: {len(memories)} entries, coverage "
                  f"{mem_mask[:, i].float().mean().item():.2f}, "
                  f"{time.monotonic() - started:.1f}s", flush=True)
    K_lat = frames.latent_K(down)
    prev = frames.cam_to_map[:, :-1].reshape(-1, 4, 4)
    cur = frames.cam_to_map[:, 1:].reshape(-1, 4, 4)
    rays = torch.zeros(n, t, 6, h, w, device=device)
    rays[:, 1:] = relative_rays(K_lat, prev, cur, (h, w)).view(n, t - 1, 6, h, w).to(device)
    return Conditions(mem_latent, mem_depth, mem_mask, rays)


def train_dit(model: WorldModel, latents: torch.Tensor, conds: Conditions, steps: int,
              batch: int = 256, lr: float = 3e-4, prev_noise: float = 0.5,
              seed: int = 3, seconds: float | None = None) -> int:
    device = latents.device
    dit = model.dit.train()
    opt = torch.optim.AdamW(dit.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator(device=device).manual_seed(seed)
    n, t = latents.shape[:2]
    std = model.latent_std[:, None, None]
    started = time.monotonic()
    budget = StepBudget(steps, seconds)
    for step in budget.run(opt, lr):
        e = torch.randint(n, (batch,), device=device, generator=gen)
        i = torch.randint(1, t, (batch,), device=device, generator=gen)
        prev = latents[e, i - 1]
        # Rollouts feed the model its own imperfect frames: train on perturbed ones.
        sigma = prev_noise * torch.rand(batch, 1, 1, 1, device=device, generator=gen)
        prev = prev + sigma * std * torch.randn(prev.shape, device=device, generator=gen)
        cond = model.condition(conds.mem_latent[e, i], conds.mem_depth[e, i],
                               conds.mem_mask[e, i], prev, conds.rays[e, i])
        x0 = model.normalize(latents[e, i])
        noise = torch.randn(x0.shape, device=device, generator=gen)
        tt = sample_t(batch, device, gen)
        with _autocast(device):
            loss = flow_loss(lambda x, s, c=cond: dit(x, s, c).float(), x0, tt, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dit.parameters(), 1.0)
        opt.step()
        if budget.logs(step):
            _log("dit", step, budget.total, started, loss=loss.item())
    dit.eval()
    return budget.done


# ---------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="dataset (python -m mirage_ros.train.generate)")
    p.add_argument("--out", required=True, help="checkpoint to write (.safetensors)")
    p.add_argument("--init", help="checkpoint to start from (e.g. a trained autoencoder)")
    p.add_argument("--phases", default="ae,depth,dit")
    p.add_argument("--ae-steps", type=int, default=6000)
    p.add_argument("--depth-steps", type=int, default=2000)
    p.add_argument("--dit-steps", type=int, default=8000)
    p.add_argument("--ae-seconds", type=float, help="time budget of the autoencoder phase")
    p.add_argument("--depth-seconds", type=float)
    p.add_argument("--dit-seconds", type=float)
    p.add_argument("--max-episodes", type=int)
    p.add_argument("--latent-channels", type=int, default=16)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    phases = set(args.phases.split(","))
    if args.init:
        model = WorldModel.load(args.init, device).train()
    else:
        from mirage_ros.model.autoencoder import AutoencoderConfig
        from mirage_ros.model.depth_head import DepthHeadConfig
        from mirage_ros.model.dit import DiTConfig

        c = args.latent_channels
        model = WorldModel(AutoencoderConfig(latent_channels=c),
                           DepthHeadConfig(latent_channels=c),
                           DiTConfig(latent_channels=c)).to(device)
    frames = load_frames(args.data, "train", device, args.max_episodes)
    print(f"train split: {frames.shape[0]} episodes x {frames.shape[1]} frames", flush=True)
    notes = dict(model.notes)  # step counts and seconds add up over resumed runs
    started = time.monotonic()
    if "ae" in phases:
        done = train_autoencoder(model, frames, args.ae_steps, seed=args.seed,
                                 seconds=args.ae_seconds)
        notes["autoencoder_steps"] = str(int(notes.get("autoencoder_steps", 0)) + done)
    latents = encode_all(model, frames)
    if "ae" in phases or not args.init:
        set_latent_stats(model, latents)
    if "depth" in phases:
        done = train_depth_head(model, frames, latents, args.depth_steps, seed=args.seed + 1,
                                seconds=args.depth_seconds)
        notes["depth_head_steps"] = str(int(notes.get("depth_head_steps", 0)) + done)
    if "dit" in phases:
        conds = build_conditions(frames, latents, seed=args.seed + 2)
        done = train_dit(model, latents, conds, args.dit_steps, seed=args.seed + 3,
                         seconds=args.dit_seconds)
        notes["dit_steps"] = str(int(notes.get("dit_steps", 0)) + done)
    notes["trained"] = "yes" if {"ae", "depth", "dit"} <= phases | _done(notes) else "partial"
    notes["train_episodes"] = str(frames.shape[0])
    notes["train_frames"] = str(frames.shape[0] * frames.shape[1])
    notes["device"] = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    key = "seconds_" + args.phases.replace(",", "_")
    notes[key] = str(int(notes.get(key, 0)) + round(time.monotonic() - started))
    model.notes = notes
    model.save(args.out)
    print(f"saved {args.out}", flush=True)
    return 0


def _done(notes: dict[str, str]) -> set[str]:
    keys = {"ae": "autoencoder_steps", "depth": "depth_head_steps", "dit": "dit_steps"}
    return {k for k, v in keys.items() if v in notes}


if __name__ == "__main__":
    raise SystemExit(main())
