"""The pixel-space baseline's imagination loop, step for step the latent one.

Per imagined step, for all paths at once (``rollout.imagination.imagine_paths`` with an RGB
point cloud, ``bench.pixel_memory.PixelCloud``, in place of the latent memory):

    render the cloud (bank + the path's own imagined points) at the next pose, pixel resolution
    -> encode the render to a latent; its depth and hole mask to the latent grid
    -> the same conditioning and the same DiT sample (same noise draws for the same seed)
    -> decode the imagined latent to RGB; pixel depth from the depth head's pixel branch
    -> lift every pixel into the path's cloud

This is what Spatia / Voyager / GEN3C do; it lives beside the benchmarks, never in the product
path.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from mirage_ros.bench.pixel_memory import PixelCloud, PixelView
from mirage_ros.memory import reduce_depth
from mirage_ros.model import WorldModel
from mirage_ros.model.noise import path_noise
from mirage_ros.model.sampler import FrameSampler
from mirage_ros.model.world_model import relative_rays
from mirage_ros.rollout.imagination import phase_timer, rollout_inputs

# The render's depth at the latent grid: lower median of the covered pixels of a cell, the cell
# masked when fewer than half of them are covered. Depth edges inside a cell are kept (the
# latent read keeps the nearest voxel there too), hence the unbounded relative gap.
COND_MIN_COVERED = 0.5
_NO_GAP_TEST = 1e30


@dataclass(frozen=True)
class PixelImagined:
    latents: torch.Tensor  # [N,T,C,h,w] raw latents of steps 1..T
    mask: torch.Tensor  # [N,T,h,w] bool, latent cells the conditioning marked as known
    pixel_coverage: torch.Tensor  # [N,T] share of each render's pixels a point landed in
    clouds: PixelCloud  # the per-path clouds after the last step


def render_conditioning(
    model: WorldModel, view: PixelView, hw: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the DiT gets from a render, on the latent grid: (latent of the encoded render
    [V,C,h,w], depth [V,h,w], mask [V,h,w]), the inputs a latent read gives it."""
    latent = model.encode(view.rgb.float() / 255.0)
    depth = reduce_depth(view.depth, *hw, min_valid_fraction=COND_MIN_COVERED,
                         max_relative_gap=_NO_GAP_TEST)
    return latent, depth, depth > 0


@torch.no_grad()
def imagine_paths_pixel(
    model: WorldModel,
    bank: PixelCloud,
    start_latent: torch.Tensor,
    K_latent: torch.Tensor,
    K_pixels: torch.Tensor,
    cam_to_map: torch.Tensor,
    *,
    sampler_steps: int = 2,
    seed: int = 0,
    sampler: FrameSampler | None = None,
    timings: dict[str, float] | None = None,
) -> PixelImagined:
    """``rollout.imagination.imagine_paths`` with the pixel memory, step for step: same
    arguments (plus ``K_pixels`` [3,3] at image resolution), same conditioning, same DiT
    sample and noise draws, phases timed the same way (``timings``: render, encode,
    conditioning, DiT sampling, decode, depth head, lift)."""
    device = start_latent.device
    poses, K = rollout_inputs(cam_to_map, K_latent, device)
    n, t1 = poses.shape[:2]
    h, w = start_latent.shape[-2:]
    hw_px = (h * model.downsampling, w * model.downsampling)
    clouds = bank.overlay(n)
    ids = torch.arange(n, device=device)
    sampler = sampler or FrameSampler(model, "fp32", cuda_graphs=False)
    autocast = sampler.autocast
    prev = start_latent.expand(n, -1, -1, -1)
    timed = phase_timer(device, timings)
    latents, masks, cover = [], [], []
    for s in range(1, t1):
        view = timed("render", lambda s=s: clouds.render(poses[:, s], K_pixels, hw_px))
        with autocast():
            mem_latent, mem_depth, mem_mask = timed(
                "encode", lambda v=view: render_conditioning(model, v, (h, w)))
        mem_latent = mem_latent.float()
        rays = timed("conditioning", lambda s=s: relative_rays(
            K, poses[:, s - 1], poses[:, s], (h, w)))
        cond = model.condition(mem_latent, mem_depth, mem_mask, prev, rays)
        noise = path_noise(seed, ids, s, (model.latent_channels, h, w), device)
        prev = timed("DiT sampling", lambda c=cond, z=noise: sampler.sample(c, z, sampler_steps))
        with autocast():  # the model calls in the sampler's precision, as the latent loop's
            rgb = timed("decode", lambda p=prev: model.decode(p).float())
            geometry = model.depth_geometry(K, poses[:, s], (h, w))
            depth = timed("depth head", lambda p=prev, g=geometry: model.depth(
                p, pixels=True, geometry=g)[1].float())
        timed("lift", lambda s=s, r=rgb, d=depth: clouds.write(r, d, K_pixels, poses[:, s],
                                                              float(s)))
        latents.append(prev)
        masks.append(mem_mask)
        cover.append(view.mask.flatten(1).float().mean(1))
    return PixelImagined(latents=torch.stack(latents, 1), mask=torch.stack(masks, 1),
                         pixel_coverage=torch.stack(cover, 1), clouds=clouds)


def model_for_size(model: WorldModel, size: int) -> WorldModel:
    """The same weights for ``size`` x ``size`` images. The autoencoder and the depth head are
    convolutional; the DiT's weights do not depend on the grid either (its positions are fixed
    sin-cos, not learned), so a DiT for another grid takes the same weights. It was trained on
    the 16 x 16 grid of 128 x 128 images only: at other sizes it runs, untrained for them."""
    grid, rem = divmod(size, model.downsampling)
    if rem or grid % model.dit.cfg.patch:
        raise ValueError(f"size must be a multiple of {model.downsampling * model.dit.cfg.patch}")
    if grid == model.dit.cfg.grid:
        return model
    out = WorldModel(model.autoencoder.cfg, model.depth_head.cfg,
                     dataclasses.replace(model.dit.cfg, grid=grid))
    out.load_state_dict(model.state_dict(), strict=True)
    out.notes = dict(model.notes)
    device = next(model.parameters()).device
    return out.to(device).eval()
