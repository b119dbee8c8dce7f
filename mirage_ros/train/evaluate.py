"""Evaluate the world model on held-out scenes and print the table the README quotes.

    python -m mirage_ros.train.evaluate --data DIR [--checkpoint CKPT] [--cases N]
        [--split test] [--steps 2] [--png-dir DIR]

Measures, on episodes whose scene seeds were never trained on:
- autoencoder PSNR / SSIM;
- latent depth head AbsRel and delta < 1.25 (latent resolution, against the memory's robust
  reduction of the true depth), and the share of obstacle cells (true depth under 1 m) that the
  head places more than 0.2 m too far: the error that lets the clearance critic drive into things;
- imagination: from a memory of the first half of an episode, imagine its next 8 frames along
  the true (held-out) path, writing each imagined frame into a per-path overlay, and compare the
  decoded frames after 1, 4 and 8 steps with the rendered truth, split into the cells the memory
  covered and those it did not; the same for a memory-only baseline (the memory read with holes
  filled by the nearest known cell), so the diffusion model's contribution is visible; and the
  depth of each imagined frame against the true depth, the same three figures, for the head on
  the imagined latent and merged with the memory's depth where the read filled the cell (the
  depth the critics score, ``Imagined.merged_depth``); these are means over cases;
- revisit consistency: imagine the view of a place seen 20 or more frames earlier from a memory
  that has moved on, and compare with the real view from then.
PNG strips (truth / memory read / imagined) are written per case when --png-dir is given.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mirage_ros.memory import LatentMemory, reduce_depth
from mirage_ros.memory.fill import fill_nearest
from mirage_ros.model import WorldModel
from mirage_ros.model.autoencoder import psnr, ssim
from mirage_ros.rollout.engine import EngineConfig, RolloutEngine
from mirage_ros.train.world_model import Frames, latent_depth_targets, load_frames

STEPS_REPORTED = (1, 4, 8)
NEAR_OBSTACLE_M = 1.0  # true cell depth below which a cell counts as an obstacle close by
TOO_FAR_M = 0.2  # placing such a cell this much farther than it is can hide a collision


def masked_psnr(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float:
    """PSNR (dB) over the pixels where mask [B,H,W] is True, pooled over the batch; nan if none."""
    m = mask[:, None].expand_as(x)
    if not bool(m.any()):
        return float("nan")
    mse = (x - y).pow(2)[m].mean().clamp_min(1e-10)
    return float(-10.0 * torch.log10(mse))


@dataclass
class Tally:
    """Running sums for pooled metrics."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, value: float) -> None:
        if not np.isnan(value):
            self.values.setdefault(key, []).append(value)

    def mean(self, key: str) -> float:
        v = self.values.get(key)
        return float(np.mean(v)) if v else float("nan")


def _to_chw(rgb: torch.Tensor) -> torch.Tensor:
    return rgb.permute(0, 3, 1, 2).float() / 255.0


def _upsample_mask(mask: torch.Tensor, factor: int) -> torch.Tensor:
    return mask.repeat_interleave(factor, -2).repeat_interleave(factor, -1)


@torch.no_grad()
def evaluate_autoencoder(model: WorldModel, frames: Frames, tally: Tally) -> None:
    n, t = frames.shape
    rgb = frames.rgb.flatten(0, 1)
    for i in range(0, n * t, 128):
        x = _to_chw(rgb[i:i + 128])
        y = model.decode(model.encode(x))
        for p, s in zip(psnr(y, x).tolist(), ssim(y, x).tolist(), strict=True):
            tally.add("ae_psnr", p)
            tally.add("ae_ssim", s)


@torch.no_grad()
def evaluate_depth(model: WorldModel, frames: Frames, latents: torch.Tensor, tally: Tally) -> None:
    gt = latent_depth_targets(frames, model.downsampling).flatten(0, 1)
    K = frames.latent_K(model.downsampling)
    poses = frames.cam_to_map.reshape(-1, 4, 4)
    z = latents.flatten(0, 1)
    pred = torch.cat([  # chunks keep the depth head's peak memory small
        model.depth(z[i:i + 512], geometry=model.depth_geometry(
            K, poses[i:i + 512], z.shape[-2:]))[0] for i in range(0, len(z), 512)])
    _tally_depth(tally, "depth_", pred, gt)


def _tally_depth(tally: Tally, prefix: str, pred: torch.Tensor, gt: torch.Tensor) -> None:
    """AbsRel, delta < 1.25, and the share of near obstacle cells placed too far, over the
    cells with a true depth (gt > 0)."""
    valid = gt > 0
    if not bool(valid.any()):
        return
    rel = ((pred - gt).abs() / gt.clamp_min(1e-6))[valid]
    ratio = torch.maximum(pred / gt.clamp_min(1e-6), gt / pred.clamp_min(1e-6))[valid]
    tally.add(f"{prefix}absrel", float(rel.mean()))
    tally.add(f"{prefix}delta1", float((ratio < 1.25).float().mean()))
    near = valid & (gt < NEAR_OBSTACLE_M)
    if bool(near.any()):
        too_far = (pred[near] > gt[near] + TOO_FAR_M).float().mean()
        tally.add(f"{prefix}near_too_far", float(too_far))
        tally.add(f"{prefix}near_cells", float(near.float().mean()))


@torch.no_grad()
def _bank(frames: Frames, latents: torch.Tensor, e: int, upto: int,
          K: torch.Tensor, memory_options: dict | None = None) -> LatentMemory:
    mem = LatentMemory(channels=latents.shape[2], device=latents.device,
                       **(memory_options or {}))
    poses = torch.from_numpy(frames.cam_to_map[e, :upto + 1]).float().to(latents.device)
    stamps = torch.arange(upto + 1, dtype=torch.float64, device=latents.device)
    for i in range(0, upto + 1, 16):  # chunks keep the write's peak memory small
        j = min(i + 16, upto + 1)
        # full-resolution depth: the memory reduces it as latent_depth_targets does, and its
        # keyframes keep every cell that has a measured pixel (see memory.keyframes)
        mem.write(latents[e, i:j], frames.depth[e, i:j], K, poses[i:j], stamps[i:j])
    return mem


@torch.no_grad()
def evaluate_rollouts(model: WorldModel, frames: Frames, latents: torch.Tensor, cases: int,
                      sampler_steps: int, tally: Tally, png_dir: Path | None,
                      seed: int = 0, precision: str = "auto",
                      memory_options: dict | None = None,
                      engine_options: dict | None = None) -> None:
    n, t = frames.shape
    horizon = max(STEPS_REPORTED)
    down = model.downsampling
    h, w = latents.shape[-2:]
    K = torch.from_numpy(frames.latent_K(down)).float().to(latents.device)
    start = t // 2 - 1
    if start + horizon >= t:
        raise ValueError(f"episodes of {t} frames are too short for {horizon}-step rollouts")
    for e in range(min(cases, n)):
        bank = _bank(frames, latents, e, start, K, memory_options)
        # The engine's imagination loop, exactly as the node runs it, along the true path.
        engine = RolloutEngine(model, bank, np.eye(4), [],
                               EngineConfig(sampler_steps=sampler_steps, precision=precision,
                                            **(engine_options or {})))
        cams = torch.from_numpy(frames.cam_to_map[e, start:start + horizon + 1])[None]
        imagined = engine.imagine(cams, latents[e, start:start + 1], K, bank,
                                  seed=seed * 100_003 + e)
        merged = imagined.merged_depth()
        strip = []
        for k in STEPS_REPORTED:
            i = start + k
            pose = torch.from_numpy(frames.cam_to_map[e, i:i + 1]).float().to(latents.device)
            observed = bank.read(pose, K, (h, w))  # what the real memory covered
            z = imagined.latents[:, k - 1]
            truth = _to_chw(frames.rgb[e, i:i + 1])
            imagined_rgb = model.decode(z)
            baseline = model.decode(fill_nearest(observed.latent, observed.mask))
            covered = _upsample_mask(observed.mask, down)
            for name, img in (("imagined", imagined_rgb), ("memory_only", baseline)):
                tally.add(f"{name}_{k}_psnr", float(psnr(img, truth)))
                tally.add(f"{name}_{k}_ssim", float(ssim(img, truth)))
                tally.add(f"{name}_{k}_psnr_covered", masked_psnr(img, truth, covered))
                tally.add(f"{name}_{k}_psnr_uncovered", masked_psnr(img, truth, ~covered))
            tally.add(f"coverage_{k}", float(observed.mask.float().mean()))
            # The depth the critics score: the head's on the imagined frame, and merged with
            # the memory's where the read filled the cell (Imagined.merged_depth).
            gt = reduce_depth(frames.depth[e, i:i + 1].float(), h, w)
            for name, depth in (("head", imagined.depth[:, k - 1]),
                                ("merged", merged[:, k - 1])):
                _tally_depth(tally, f"imagined_{k}_{name}_", depth.float(), gt)
            read = model.decode(observed.latent) * covered[:, None]
            strip.append(torch.cat([truth, read, imagined_rgb], dim=2))  # stacked vertically
        if png_dir is not None:
            _save_png(png_dir / f"rollout_case{e:02d}.png", torch.cat(strip, dim=3)[0])


@torch.no_grad()
def evaluate_revisits(model: WorldModel, frames: Frames, latents: torch.Tensor, cases: int,
                      sampler_steps: int, tally: Tally, png_dir: Path | None,
                      min_gap: int = 20, seed: int = 1, precision: str = "auto",
                      memory_options: dict | None = None,
                      engine_options: dict | None = None) -> int:
    """Returns how many revisit cases were found."""
    n, t = frames.shape
    down = model.downsampling
    h, w = latents.shape[-2:]
    K = torch.from_numpy(frames.latent_K(down)).float().to(latents.device)
    found = 0
    for e in range(n):
        if found >= cases:
            break
        pair = _revisit_pair(frames.cam_to_map[e], min_gap)
        if pair is None:
            continue
        then, now = pair
        bank = _bank(frames, latents, e, now, K, memory_options)
        # the memory has moved on: it holds everything up to `now`, the view is from `then`
        pose = torch.from_numpy(frames.cam_to_map[e, then:then + 1]).float().to(latents.device)
        view = bank.read(pose, K, (h, w))
        engine = RolloutEngine(model, bank, np.eye(4), [],
                               EngineConfig(sampler_steps=sampler_steps, precision=precision,
                                            **(engine_options or {})))
        cams = torch.from_numpy(frames.cam_to_map[e, [now, then]])[None]
        z = engine.imagine(cams, latents[e, now:now + 1], K, bank,
                           seed=seed * 100_003 + e).latents[:, 0]
        truth = _to_chw(frames.rgb[e, then:then + 1])
        imagined = model.decode(z)
        baseline = model.decode(fill_nearest(view.latent, view.mask))
        tally.add("revisit_psnr", float(psnr(imagined, truth)))
        tally.add("revisit_ssim", float(ssim(imagined, truth)))
        tally.add("revisit_memory_only_psnr", float(psnr(baseline, truth)))
        tally.add("revisit_gap", float(now - then))
        if png_dir is not None:
            read = model.decode(view.latent) * _upsample_mask(view.mask, down)[:, None]
            _save_png(png_dir / f"revisit_case{found:02d}.png",
                      torch.cat([truth, read, imagined], dim=3)[0])
        found += 1
    return found


def _revisit_pair(cam_to_map: np.ndarray, min_gap: int, max_dist: float = 0.3,
                  min_cos: float = 0.9) -> tuple[int, int] | None:
    """The latest frame `now` whose view (position and optical axis) repeats one from at least
    `min_gap` frames before it: (then, now)."""
    pos = cam_to_map[:, :3, 3]
    axis = cam_to_map[:, :3, 2]
    for now in range(len(pos) - 1, min_gap - 1, -1):
        cands = np.arange(0, now - min_gap + 1)
        close = (np.linalg.norm(pos[cands] - pos[now], axis=1) < max_dist) & (
            axis[cands] @ axis[now] > min_cos)
        if close.any():
            return int(cands[close][0]), now
    return None


def _save_png(path: Path, chw: torch.Tensor) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    img = (chw.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    cv2.imwrite(str(path), img[:, :, ::-1])


def format_table(tally: Tally, cases: int, revisits: int) -> str:
    f = tally.mean
    lines = [
        "| metric | value |",
        "|---|---|",
        f"| autoencoder PSNR / SSIM | {f('ae_psnr'):.2f} dB / {f('ae_ssim'):.3f} |",
        f"| depth head AbsRel / delta<1.25 | {f('depth_absrel'):.3f} / {f('depth_delta1'):.3f} |",
        f"| depth head: obstacle cells (< {NEAR_OBSTACLE_M:g} m, {f('depth_near_cells'):.1%} of "
        f"cells) placed > {TOO_FAR_M:g} m too far | {f('depth_near_too_far'):.1%} |",
    ]
    for k in STEPS_REPORTED:
        for name in ("imagined", "memory_only"):
            lines.append(
                f"| {name} step {k}: PSNR all / covered / uncovered, SSIM "
                f"(memory coverage {f(f'coverage_{k}'):.2f}) | "
                f"{f(f'{name}_{k}_psnr'):.2f} / {f(f'{name}_{k}_psnr_covered'):.2f} / "
                f"{f(f'{name}_{k}_psnr_uncovered'):.2f} dB, {f(f'{name}_{k}_ssim'):.3f} |")
        lines.append(
            f"| imagined step {k}: depth AbsRel head / merged with memory; near cells too far "
            f"| {f(f'imagined_{k}_head_absrel'):.3f} / {f(f'imagined_{k}_merged_absrel'):.3f}; "
            f"{f(f'imagined_{k}_head_near_too_far'):.1%} / "
            f"{f(f'imagined_{k}_merged_near_too_far'):.1%} |")
    lines.append(
        f"| revisit ({revisits} cases, gap {f('revisit_gap'):.0f} frames): imagined / memory-only"
        f" PSNR | {f('revisit_psnr'):.2f} / {f('revisit_memory_only_psnr'):.2f} dB |")
    lines.append(f"| rollout cases | {cases} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--checkpoint", help="default: the weights shipped in the package")
    p.add_argument("--split", default="test")
    p.add_argument("--cases", type=int, default=8, help="rollout and revisit cases")
    p.add_argument("--episodes", type=int, default=None, help="episodes for AE/depth metrics")
    p.add_argument("--steps", type=int, default=2, help="sampler steps per imagined frame")
    p.add_argument("--png-dir", type=Path)
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="of the DiT and depth head in the rollout (see model.sampler)")
    p.add_argument("--parts", default="ae,depth,rollout,revisit",
                   help="comma-separated subset of ae,depth,rollout,revisit")
    p.add_argument("--keyframes", type=int, default=None,
                   help="keyframe capacity of the memories (0: the fused voxel map alone); "
                        "default: the memory's")
    p.add_argument("--copy-offset", type=float, default=EngineConfig.copy_offset,
                   help="see EngineConfig.copy_offset; negative: imagine every cell")
    p.add_argument("--noise-scale", type=float, default=EngineConfig.noise_scale,
                   help="see EngineConfig.noise_scale")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", type=Path, help="also write every pooled metric here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    model = (WorldModel.load(args.checkpoint, device) if args.checkpoint
             else WorldModel.default(device))
    episodes = args.episodes or max(args.cases, 1)
    frames = load_frames(args.data, args.split, device, episodes)
    started = time.monotonic()
    latents = torch.cat([model.encode(frames.rgb[e]) for e in range(frames.shape[0])])
    latents = latents.view(*frames.shape, *latents.shape[1:])
    tally = Tally()
    parts = set(args.parts.split(","))
    mem_opts = {} if args.keyframes is None else {"keyframe_capacity": args.keyframes}
    engine_opts = {"copy_offset": args.copy_offset, "noise_scale": args.noise_scale}
    EngineConfig(**engine_opts)  # bad values fail here, before any case runs
    if "ae" in parts:
        evaluate_autoencoder(model, frames, tally)
    if "depth" in parts:
        evaluate_depth(model, frames, latents, tally)
    if "rollout" in parts:
        evaluate_rollouts(model, frames, latents, args.cases, args.steps, tally, args.png_dir,
                          precision=args.precision, memory_options=mem_opts,
                          engine_options=engine_opts)
    revisits = 0
    if "revisit" in parts:
        revisits = evaluate_revisits(model, frames, latents, args.cases, args.steps, tally,
                                     args.png_dir, precision=args.precision,
                                     memory_options=mem_opts, engine_options=engine_opts)
    print(f"model: {model.notes}")
    print(f"{args.split} split: {frames.shape[0]} episodes x {frames.shape[1]} frames, "
          f"sampler steps {args.steps}, precision {args.precision}, device {device}, "
          f"{time.monotonic() - started:.1f} s")
    print(format_table(tally, min(args.cases, frames.shape[0]), revisits))
    if args.json:
        summary = {k: tally.mean(k) for k in sorted(tally.values)}
        summary.update(cases=min(args.cases, frames.shape[0]), revisits=revisits,
                       episodes=frames.shape[0], data=str(args.data), split=args.split,
                       checkpoint=args.checkpoint or "shipped", notes=model.notes,
                       keyframes=args.keyframes, **engine_opts)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
