"""The world model as the rest of the package sees it: encode, decode, depth, imagine.

Bundles the autoencoder, the latent depth head and the memory-conditioned DiT with the latent
statistics that normalise latents for the diffusion model, and builds the DiT's conditioning
from a memory read, the previous latent and the relative camera motion. Latents outside this
class (in the memory, in the rollout) are always *raw* encoder outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from mirage_ros.geometry.rays import floor_rays_torch, plucker_rays_torch
from mirage_ros.model.autoencoder import Autoencoder, AutoencoderConfig
from mirage_ros.model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    module_tensors,
    part,
    save_checkpoint,
)
from mirage_ros.model.depth_head import DepthHeadConfig, LatentDepthHead
from mirage_ros.model.dit import DiTConfig, MemoryDiT
from mirage_ros.model.flow import euler_sample

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "world_model.safetensors"

# log-depth features are centred near 1 m..10 m indoor ranges: (log d - 1) lands in about [-2, 2].
LOG_DEPTH_OFFSET = 1.0
# Metres (plus radians) of keyframe offset at which the trust channel falls to 1/e: a frame
# taken 10 cm away warps with visible reprojection error already (memory.keyframes).
TRUST_SCALE = 0.1


class WorldModel(nn.Module):
    def __init__(
        self,
        ae: AutoencoderConfig | None = None,
        depth: DepthHeadConfig | None = None,
        dit: DiTConfig | None = None,
    ) -> None:
        super().__init__()
        ae = ae or AutoencoderConfig()
        depth = depth or DepthHeadConfig(latent_channels=ae.latent_channels)
        dit = dit or DiTConfig(latent_channels=ae.latent_channels)
        if not ae.latent_channels == depth.latent_channels == dit.latent_channels:
            raise ValueError("autoencoder, depth head and DiT disagree on latent channels")
        self.autoencoder = Autoencoder(ae)
        self.depth_head = LatentDepthHead(depth)
        self.dit = MemoryDiT(dit)
        c = ae.latent_channels
        self.register_buffer("latent_mean", torch.zeros(c))
        self.register_buffer("latent_std", torch.ones(c))
        self.notes: dict[str, str] = {"trained": "no"}

    @property
    def latent_channels(self) -> int:
        return self.autoencoder.cfg.latent_channels

    @property
    def downsampling(self) -> int:
        return self.autoencoder.cfg.downsampling

    def autoencoder_id(self) -> str:
        """A fingerprint of the autoencoder: its config and weights (``"autoencoder:<hex>"``).

        Latents (and so latent memory maps) only mean something to the autoencoder that made
        them; maps record this string and the node refuses a map of another autoencoder.
        Retraining the depth head or the DiT keeps it. Deterministic across devices, loads and
        runtime dtypes (floating weights are hashed as float32, which holds fp16 and bf16
        exactly); it hashes the weights on every call (tens of ms), so call it when saving or
        loading, not per frame.
        """
        digest = hashlib.sha256(json.dumps(self.autoencoder.cfg.to_dict(), sort_keys=True)
                                .encode())
        for name, t in sorted(self.autoencoder.state_dict().items()):
            t = t.detach().to("cpu", torch.float32 if t.is_floating_point() else t.dtype)
            digest.update(f"\n{name}:{t.dtype}:{list(t.shape)}\n".encode())
            digest.update(t.contiguous().numpy().tobytes())
        return "autoencoder:" + digest.hexdigest()[:16]

    # ------------------------------------------------------------------ latents

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.latent_mean[:, None, None]) / self.latent_std[:, None, None]

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latent_std[:, None, None] + self.latent_mean[:, None, None]

    @torch.no_grad()
    def encode(self, rgb: torch.Tensor) -> torch.Tensor:
        """[B,H,W,3] uint8 or [B,3,H,W] float in [0,1] -> raw latents [B,C,H/8,W/8]."""
        if rgb.dtype == torch.uint8:
            rgb = rgb.permute(0, 3, 1, 2).float() / 255.0
        return self.autoencoder.encode(rgb)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latents -> [B,3,H,W] float in [0,1]."""
        return self.autoencoder.decode(z)

    @torch.no_grad()
    def depth(self, z: torch.Tensor, pixels: bool = False,
              check: Callable[[], None] | None = None,
              geometry: torch.Tensor | None = None):
        """Raw latents -> (depth [B,h,w] metres, depth [B,H,W] metres or None). ``check`` runs
        between layers and may raise to abandon the pass. ``geometry`` is
        :meth:`depth_geometry` of the cameras (required when the head takes it)."""
        return self.depth_head(self.normalize(z), pixels=pixels, check=check,
                               geometry=geometry)

    def depth_geometry(self, K_latent, cam_to_map, hw: tuple[int, int]) -> torch.Tensor | None:
        """What the depth head needs to know of the cameras (``cam_to_map`` ``[B,4,4]``, map z
        up with the floor at z = 0): ``[B,G,h,w]`` float32 on the model's device, or None for a
        head that takes none (it assumes the camera height and pitch it was trained with)."""
        if not self.depth_head.cfg.geometry_channels:
            return None
        device = self.latent_mean.device
        T = torch.as_tensor(cam_to_map).to(device=device, dtype=torch.float32)
        K = torch.as_tensor(K_latent).to(device=device, dtype=torch.float32)
        return floor_rays_torch(K, T, hw[0], hw[1])

    # ------------------------------------------------------------------ imagination

    def condition(
        self,
        memory_latent: torch.Tensor,
        memory_depth: torch.Tensor,
        memory_mask: torch.Tensor,
        previous_latent: torch.Tensor,
        rays: torch.Tensor,
        memory_offset: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Stack the DiT conditioning [B, 2C+8(+1), h, w] from raw latents and metric depth;
        ``memory_offset`` ([B,h,w], ``MemoryView.offset``; None = unknown, no trust) feeds the
        trust channel of models that have one."""
        mask = memory_mask.float()
        mem = self.normalize(memory_latent) * mask[:, None]
        log_d = torch.where(
            memory_mask, memory_depth.clamp_min(1e-3).log() - LOG_DEPTH_OFFSET,
            torch.zeros_like(memory_depth))
        prev = self.normalize(previous_latent)
        parts = [mem, log_d[:, None], mask[:, None], prev, rays.float()]
        if self.dit.cfg.memory_trust:
            trust = torch.zeros_like(mask)
            if memory_offset is not None:  # exp(-inf) = 0: fused cells and holes
                trust = torch.exp(-memory_offset.float() / TRUST_SCALE) * mask
            parts.append(trust[:, None])
        return torch.cat(parts, dim=1)

    @torch.no_grad()
    def imagine(
        self, cond: torch.Tensor, steps: int = 2, generator: torch.Generator | None = None,
        check: Callable[[], None] | None = None,
    ) -> torch.Tensor:
        """Sample the target latent (raw) given the conditioning, in `steps` Euler steps, from
        noise drawn with ``generator``. ``check`` runs between DiT blocks and may raise to
        abandon the sample (cancellation). The rollout uses ``sample`` with per-path noise."""
        b, _, h, w = cond.shape
        noise = torch.randn(
            (b, self.latent_channels, h, w), generator=generator, device=cond.device)
        return self.sample(cond, noise, steps, check)

    @torch.no_grad()
    def sample(
        self, cond: torch.Tensor, noise: torch.Tensor, steps: int = 2,
        check: Callable[[], None] | None = None,
    ) -> torch.Tensor:
        """The target latent (raw) ``[B,C,h,w]`` from the conditioning ``[B,2C+8,h,w]`` and the
        starting noise ``[B,C,h,w]`` (normalised latent space), in ``steps`` Euler steps."""
        z = euler_sample(lambda x, t: self.dit(x, t, cond, check), noise, steps, check)
        return self.denormalize(z)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike, dtype: torch.dtype = torch.float16) -> None:
        tensors = {
            **module_tensors("autoencoder", self.autoencoder, dtype),
            **module_tensors("depth_head", self.depth_head, dtype),
            **module_tensors("dit", self.dit, dtype),
            # statistics stay float32: they rescale every latent
            "stats.latent_mean": self.latent_mean.float(),
            "stats.latent_std": self.latent_std.float(),
        }
        configs = {
            "autoencoder": self.autoencoder.cfg.to_dict(),
            "depth_head": self.depth_head.cfg.to_dict(),
            "dit": self.dit.cfg.to_dict(),
        }
        save_checkpoint(path, tensors, configs, self.notes)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> WorldModel:
        tensors, configs, notes = load_checkpoint(path)
        try:
            model = cls(
                AutoencoderConfig.from_dict(configs["autoencoder"]),
                DepthHeadConfig.from_dict(configs["depth_head"]),
                DiTConfig.from_dict(configs["dit"]),
            )
            for name, module in (("autoencoder", model.autoencoder),
                                 ("depth_head", model.depth_head), ("dit", model.dit)):
                state = {k: v.float() for k, v in part(tensors, name).items()}
                module.load_state_dict(state, strict=True)
            model.latent_mean.copy_(tensors["stats.latent_mean"])
            model.latent_std.copy_(tensors["stats.latent_std"])
        except (KeyError, TypeError, RuntimeError) as err:
            raise CheckpointError(f"{path} does not match the model definition: {err}") from err
        model.notes = notes
        return model.to(device).eval()

    @classmethod
    def default(cls, device: str | torch.device = "cpu") -> WorldModel:
        """The weights shipped inside the package."""
        if not DEFAULT_WEIGHTS.exists():
            raise FileNotFoundError(
                f"no embedded weights at {DEFAULT_WEIGHTS}; train them with "
                "`python -m mirage_ros.train.world_model` or pass a checkpoint path")
        return cls.load(DEFAULT_WEIGHTS, device)


def relative_rays(K_latent, previous_cam_to_map, target_cam_to_map, hw) -> torch.Tensor:
    """Plücker rays [B,6,h,w] float32 of each target camera in its previous camera's frame.

    Takes numpy arrays or torch tensors; with tensors the rays are computed on their device
    (the rollout passes poses that already live on the model's device). The relative pose is
    formed in float64 where the device allows it: map coordinates of tens of metres lose
    millimetres in float32.
    """
    prev = torch.as_tensor(previous_cam_to_map)
    target = torch.as_tensor(target_cam_to_map)
    dtype = torch.float32 if prev.device.type == "mps" else torch.float64
    prev, target = prev.to(dtype), target.to(device=prev.device, dtype=dtype)
    K = torch.as_tensor(K_latent).to(device=prev.device, dtype=dtype)
    # The inverse of a rigid transform, written out: torch.linalg.inv checks for singular
    # matrices, which on a GPU makes the host wait for the device at every imagined step.
    rot_t = prev[..., :3, :3].transpose(-1, -2)
    inv = torch.zeros_like(prev)
    inv[..., :3, :3] = rot_t
    inv[..., :3, 3] = -(rot_t @ prev[..., :3, 3:])[..., 0]
    inv[..., 3, 3] = 1.0
    rel = inv @ target
    return plucker_rays_torch(K, rel, hw[0], hw[1]).float()
