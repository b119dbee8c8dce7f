"""``RolloutEngine``: the product's data flow in one object, without ROS.

``observe`` turns a camera frame into latents and fuses them into the latent memory (sensor
depth when the camera has it, the latent depth head otherwise). ``score`` turns the planner's
base paths into camera poses, imagines every path in one batch from a snapshot of the memory,
runs the critics on the shared batch and decodes previews of the best paths only. The node,
the demo, the evaluation and the benchmarks all call it; nobody re-implements the loop.

Threading: ``observe`` and ``score`` may run on different threads. A rollout works on a
snapshot taken at its start (the memory's tables are immutable, so that costs nothing);
observations that arrive meanwhile go into the live memory and are seen by the next rollout.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from mirage_ros.geometry import scale_intrinsics
from mirage_ros.memory import LatentMemory, WriteStats
from mirage_ros.model import WorldModel
from mirage_ros.model.latent_rgb import LatentColorMap
from mirage_ros.model.sampler import PRECISIONS, FrameSampler
from mirage_ros.rollout.critics import Critic, CriticBatch, Goal, ScoreTable, score_paths
from mirage_ros.rollout.imagination import (
    Imagined,
    Replica,
    RolloutInterrupted,
    imagine_paths,
    imagine_split,
    recall_paths,
    split_sizes,
)
from mirage_ros.rollout.paths import CandidatePath, resample_paths

__all__ = [
    "IMAGINATION_MODES",
    "EngineConfig",
    "NoMemoryError",
    "RolloutEngine",
    "RolloutInterrupted",
    "ScoreResult",
]


# How a rollout sees along the paths: the diffusion model (the product), or the memory's read
# with its holes filled (the ablation without a generative model; see imagination.recall_paths).
IMAGINATION_MODES = ("diffusion", "memory")


class NoMemoryError(RuntimeError):
    """Imagination was asked for before anything was observed."""


@dataclass(frozen=True)
class EngineConfig:
    """Options of the engine. Distances in metres, angles in radians."""

    step_length: float = 0.25  # path progress between imagined steps
    step_angle: float = 0.35  # a turn on the spot this large counts as one step
    sampler_steps: int = 2  # Euler steps of the flow sampler per imagined frame
    robot_radius: float = 0.25
    seed: int = 0  # imagination noise (per path, see model.noise), so answers repeat
    precision: str = "auto"  # DiT and depth head: auto | fp32 | bf16 (see model.sampler)
    cuda_graphs: bool = True  # replay the DiT and depth head from CUDA graphs on a GPU
    min_paths_per_device: int = 512  # split a goal across devices only above this many each
    slot_overlay: bool | None = None  # imagined frames in slots (None: on a GPU; see memory)
    imagination: str = "diffusion"  # or "memory": the memory read, holes filled, no model
    # A memory cell that a kept frame taken within this offset of the view supplied (metres
    # plus radians, see MemoryView.offset) is returned as observed rather than imagined: what
    # the camera saw from here needs no imagining. Negative: imagine every cell.
    copy_offset: float = 0.02
    # The flow sampler starts from this multiple of its Gaussian noise: 1 draws from the
    # model's distribution of next frames; below 1 it draws nearer that distribution's centre,
    # frames closer to the truth on average but less varied. 0.5 was chosen for v2.3 on the
    # validation split: it keeps almost all of 0's PSNR gain over 1 (best at 8 steps) and some
    # of the variety, and planned within the benchmark's seed spread of 1; the depth of its
    # imagined frames in the hand-built scenes is a little worse than at 1 (BENCHMARKS.md,
    # "World model v2.3").
    noise_scale: float = 0.5

    def __post_init__(self) -> None:
        for name in ("step_length", "step_angle", "robot_radius"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not isinstance(self.sampler_steps, int) or not 1 <= self.sampler_steps <= 64:
            raise ValueError(f"sampler_steps must be an integer in [1, 64], got "
                             f"{self.sampler_steps!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got "
                             f"{self.precision!r}")
        if self.imagination not in IMAGINATION_MODES:
            raise ValueError(f"imagination must be one of {', '.join(IMAGINATION_MODES)}, got "
                             f"{self.imagination!r}")
        if not (isinstance(self.copy_offset, (int, float)) and np.isfinite(self.copy_offset)):
            raise ValueError(f"copy_offset must be a finite number, got {self.copy_offset!r}")
        if not (isinstance(self.noise_scale, (int, float)) and np.isfinite(self.noise_scale)
                and 0 <= self.noise_scale <= 1):
            raise ValueError(f"noise_scale must be a number in [0, 1], got "
                             f"{self.noise_scale!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be an integer in [0, 2^32), got {self.seed!r}")
        if not isinstance(self.min_paths_per_device, int) or self.min_paths_per_device < 1:
            raise ValueError(f"min_paths_per_device must be an integer >= 1, got "
                             f"{self.min_paths_per_device!r}")


@dataclass(frozen=True)
class LastView:
    """The newest observation the engine encoded: where imagination starts."""

    latent: torch.Tensor  # [1,C,h,w] raw
    cam_to_map: torch.Tensor  # [4,4] float64
    K_latent: torch.Tensor  # [3,3] float32 at latent resolution, model device
    stamp: float


@dataclass(frozen=True)
class ScoreResult:
    table: ScoreTable
    batch: CriticBatch
    previews: torch.Tensor  # [k,3,H,W] float in [0,1], CPU: last imagined view of the best paths
    preview_indices: list[int]  # previews[i] belongs to path preview_indices[i]
    imagined: Imagined | None  # None when no active critic needed imagination
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase


class RolloutEngine:
    """Observe into the latent memory; imagine and score candidate paths.

    ``cam_to_base``: [4,4] camera optical frame -> robot base (the mount). ``critics``: (critic,
    weight) pairs, see ``rollout.critics``. ``split_devices``: more devices (say the other
    GPUs) that take a share of a goal's paths, each with its own copy of the model and of the
    memory (see ``imagination.imagine_split``). All tensors returned live on the CPU except
    ``ScoreResult.imagined`` and ``batch`` (the model's device).
    """

    def __init__(
        self,
        model: WorldModel,
        memory: LatentMemory,
        cam_to_base: np.ndarray | torch.Tensor,
        critics: Sequence[tuple[Critic, float]],
        config: EngineConfig | None = None,
        split_devices: Sequence[str | torch.device] = (),
    ) -> None:
        if memory.channels != model.latent_channels:
            raise ValueError(f"memory has {memory.channels} channels, the model's latents "
                             f"{model.latent_channels}")
        self.model = model
        self.memory = memory
        self.device = next(model.parameters()).device
        self._extra_models = []
        for dev in split_devices:
            dev = torch.device(dev)
            if dev != self.device:
                self._extra_models.append(copy.deepcopy(model).to(dev).eval())
        self._samplers: dict[tuple, FrameSampler] = {}
        self.config = config or EngineConfig()
        self.set_cam_to_base(cam_to_base)
        self.critics = list(critics)
        grid = model.dit.cfg.grid
        self.latent_hw = (grid, grid)
        self.image_hw = (grid * model.downsampling, grid * model.downsampling)
        self._lock = threading.Lock()
        self._last: LastView | None = None
        self.colors = LatentColorMap(model.latent_channels)  # voxel colours for RViz and maps

    # ------------------------------------------------------------------ configuration

    def set_cam_to_base(self, cam_to_base: np.ndarray | torch.Tensor) -> None:
        T = torch.from_numpy(_numpy64(cam_to_base))
        if T.shape != (4, 4) or not bool(torch.isfinite(T).all()):
            raise ValueError(f"cam_to_base must be a finite 4x4 transform, got {tuple(T.shape)}")
        self.cam_to_base = T

    @property
    def last_view(self) -> LastView | None:
        return self._last

    # ------------------------------------------------------------------ observe

    def _to_model_size(self, rgb: torch.Tensor, depth: torch.Tensor | None, K: np.ndarray):
        """Resize an [H,W,3] uint8 frame (and its depth) to the model's image size, with K."""
        H, W = self.image_hw
        h0, w0 = rgb.shape[:2]
        if (h0, w0) == (H, W):
            return rgb, depth, K
        x = rgb.permute(2, 0, 1)[None].float()
        x = F.interpolate(x, size=(H, W), mode="bilinear", antialias=True, align_corners=False)
        rgb = x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8)
        if depth is not None:
            # Nearest keeps depth edges sharp; the memory's robust per-cell reduction follows.
            depth = F.interpolate(depth[None, None], size=(H, W), mode="nearest")[0, 0]
        return rgb, depth, scale_intrinsics(K, (h0, w0), (H, W))

    @torch.no_grad()
    def observe(
        self,
        rgb: torch.Tensor,
        depth: torch.Tensor | None,
        K: torch.Tensor | np.ndarray,
        base_to_map: torch.Tensor | np.ndarray,
        stamp: float,
    ) -> WriteStats:
        """Encode one frame and fuse it into the memory.

        rgb ``[H,W,3]`` uint8; depth ``[H,W]`` metres along the optical axis (0 / NaN / inf =
        no return) or None (the latent depth head estimates it); K ``[3,3]`` pixel intrinsics in
        this package's convention (``geometry.k_from_ros`` converts a CameraInfo's); base_to_map
        ``[4,4]``; stamp in seconds. Any size: frames are resized to the model's. On an error
        nothing is written.
        """
        rgb = torch.as_tensor(rgb)
        if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != torch.uint8:
            raise ValueError(f"rgb must be uint8 [H,W,3], got {rgb.dtype} {tuple(rgb.shape)}")
        if depth is not None:
            depth = torch.as_tensor(depth).float()
            if depth.shape != rgb.shape[:2]:
                raise ValueError(f"depth {tuple(depth.shape)} and rgb {tuple(rgb.shape[:2])} "
                                 "differ in size")
        K = _numpy64(K)
        pose = torch.from_numpy(_numpy64(base_to_map))
        if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError("K must be a finite 3x3 with positive focal lengths")
        if pose.shape != (4, 4) or not bool(torch.isfinite(pose).all()):
            raise ValueError("base_to_map must be a finite 4x4 transform")
        if not np.isfinite(stamp):
            raise ValueError(f"stamp must be finite, got {stamp!r}")
        rgb, depth, K = self._to_model_size(rgb, depth, K)
        latent = self.model.encode(rgb[None].to(self.device))
        K_lat = torch.from_numpy(scale_intrinsics(K, self.image_hw, self.latent_hw)).float()
        cam = pose @ self.cam_to_base
        if depth is None:
            geometry = self.model.depth_geometry(K_lat, cam[None], self.latent_hw)
            depth = self.model.depth(latent, geometry=geometry)[0][0]
        with self._lock:
            stats = self.memory.write(latent, depth[None].to(self.device), K_lat, cam[None],
                                      float(stamp))
            self.colors.update(latent.cpu(), rgb[None])
            self._last = LastView(latent=latent, cam_to_map=cam, K_latent=K_lat.to(self.device),
                                  stamp=float(stamp))
        return stats

    @torch.no_grad()
    def encode_image(self, rgb: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Raw latent ``[C,h,w]`` of an ``[H,W,3]`` uint8 image (a goal image), any size."""
        rgb = torch.as_tensor(rgb)
        if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != torch.uint8:
            raise ValueError(f"image must be uint8 [H,W,3], got {rgb.dtype} {tuple(rgb.shape)}")
        rgb, _, _ = self._to_model_size(rgb, None, np.eye(3))
        return self.model.encode(rgb[None].to(self.device))[0]

    def snapshot(self) -> tuple[LatentMemory, LastView | None]:
        """The memory and newest view as one consistent pair."""
        with self._lock:
            return self.memory.snapshot(), self._last

    def locked(self) -> threading.Lock:
        """The lock that serialises memory writes (hold it to save, load or clear the memory)."""
        return self._lock

    # ------------------------------------------------------------------ score

    def camera_poses(
        self, paths: Sequence[CandidatePath], horizon: int, start_cam: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Base and camera poses ``[N,T+1,4,4]`` float64 for every path, resampled to the step
        length; camera pose 0 is ``start_cam`` (the newest observation) when given."""
        c = self.config
        base = torch.from_numpy(resample_paths(list(paths), horizon, c.step_length,
                                               c.step_angle))
        cams = base @ self.cam_to_base
        if start_cam is not None:
            cams[:, 0] = start_cam
        return base.to(self.device), cams.to(self.device)

    @torch.no_grad()
    def score(
        self,
        paths: Sequence[CandidatePath],
        horizon: int,
        goal: Goal | None = None,
        num_previews: int = 0,
        on_step: Callable[[int, int], bool] | None = None,
        *,
        critics: Sequence[tuple[Critic, float]] | None = None,
        should_stop: Callable[[], bool] | None = None,
        views: Imagined | None = None,
    ) -> ScoreResult:
        """Imagine ``horizon`` steps along every path (one batch), score, decode previews.

        ``on_step(done, total)`` runs after every imagined step (``total`` = horizon); return
        False to stop (raises ``RolloutInterrupted``); ``should_stop()`` is polled within steps
        too (see ``imagine_paths``) and before the critics and previews, for a prompt cancel.
        ``critics`` replaces the engine's own for this call (the node passes its current
        parameters). Raises ``NoMemoryError`` when a critic needs imagination and nothing has
        been observed yet.

        ``views`` replaces imagination with views the caller already has along exactly the
        camera poses ``camera_poses(paths, horizon, last_view.cam_to_map)`` gives (the planning
        benchmark's oracle passes the simulator's true frames); ``[N,T]`` leading dims.
        """
        if not paths:
            raise ValueError("score needs at least one path")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        critics = list(self.critics if critics is None else critics)
        memory, last = self.snapshot()
        imagine = any(c.needs_imagination for c, _ in critics) or num_previews > 0
        if imagine and len(memory) == 0:
            raise NoMemoryError("nothing has been observed yet: the memory is empty")
        if imagine and last is None:
            raise NoMemoryError("the memory holds a map but no camera frame has arrived yet "
                                "(imagination starts from the newest frame)")
        base, cams = self.camera_poses(paths, horizon, last.cam_to_map if last else None)
        K_lat = last.K_latent if last is not None else torch.eye(3, device=self.device)
        timings["poses"] = time.perf_counter() - t0
        imagined = None
        if views is not None:
            if tuple(views.latents.shape[:2]) != (len(paths), horizon):
                raise ValueError(f"views hold {tuple(views.latents.shape[:2])} (paths, steps), "
                                 f"expected {(len(paths), horizon)}")
            imagined = views
        elif imagine:
            t0 = time.perf_counter()
            imagined = self._imagine(memory, last.latent, K_lat, cams, seed=self.config.seed,
                                     timings=None, on_step=on_step, should_stop=should_stop)
            timings["imagine"] = time.perf_counter() - t0
        elif on_step is not None and on_step(horizon, horizon) is False:
            raise RolloutInterrupted("stopped before scoring")
        if should_stop is not None and should_stop():
            raise RolloutInterrupted("stopped before scoring")
        t0 = time.perf_counter()
        batch = CriticBatch(
            paths=paths, base_to_map=base, cam_to_map=cams, K_latent=K_lat.double(),
            goal=goal or Goal(), robot_radius=self.config.robot_radius,
            latents=None if imagined is None else imagined.latents,
            depth=None if imagined is None else imagined.merged_depth(),
            coverage=None if imagined is None else imagined.coverage,
            memory=memory, normalize=self.model.normalize)
        table = score_paths(batch, critics)
        timings["critics"] = time.perf_counter() - t0
        if should_stop is not None and should_stop():
            raise RolloutInterrupted("stopped before the previews")
        t0 = time.perf_counter()
        k = min(int(num_previews), len(paths)) if imagined is not None else 0
        order = [int(i) for i in table.order()[:k]]
        if k:
            previews = self.model.decode(imagined.latents[order, -1]).clamp(0, 1).cpu()
        else:
            previews = torch.zeros(0, 3, *self.image_hw)
        timings["previews"] = time.perf_counter() - t0
        return ScoreResult(table=table, batch=batch, previews=previews, preview_indices=order,
                           imagined=imagined, timings=timings)

    @torch.no_grad()
    def imagine(
        self,
        cam_to_map: torch.Tensor,
        start_latent: torch.Tensor,
        K_latent: torch.Tensor,
        memory: LatentMemory | None = None,
        *,
        seed: int | None = None,
        timings: dict[str, float] | None = None,
        on_step: Callable[[int, int], bool] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Imagined:
        """Imagine along given camera poses ``[N,T+1,4,4]`` (index 0 = pose of
        ``start_latent`` [1 or N,C,h,w]; ``K_latent`` [3,3] at latent resolution) from
        ``memory`` (default: a snapshot of the engine's). For callers that know the camera poses
        already: the evaluation and the benchmarks."""
        memory = memory if memory is not None else self.snapshot()[0]
        return self._imagine(memory, start_latent.to(self.device), K_latent, cam_to_map,
                             seed=self.config.seed if seed is None else seed, timings=timings,
                             on_step=on_step, should_stop=should_stop)

    def sampler(self, device: torch.device | None = None) -> FrameSampler:
        """The DiT and depth-head runner for ``device`` (default: the model's), built for the
        current config's precision and graph setting and kept (graphs are captured once)."""
        c = self.config
        device = self.device if device is None else torch.device(device)
        key = (str(device), c.precision, c.cuda_graphs)
        if key not in self._samplers:
            model = self.model if device == self.device else next(
                m for m in self._extra_models if next(m.parameters()).device == device)
            self._samplers[key] = FrameSampler(
                model, c.precision, cuda_graphs=c.cuda_graphs and device.type == "cuda")
        return self._samplers[key]

    @property
    def devices(self) -> list[torch.device]:
        """The model's device, then the devices that take a share of large goals."""
        return [self.device] + [next(m.parameters()).device for m in self._extra_models]

    def _imagine(self, memory, start_latent, K_latent, cams, *, seed, timings, on_step,
                 should_stop) -> Imagined:
        c = self.config
        if c.imagination == "memory":
            if should_stop is not None and should_stop():
                raise RolloutInterrupted("stopped before the memory read")
            t0 = time.perf_counter()
            recalled = recall_paths(memory, K_latent, cams, self.latent_hw)
            if timings is not None:
                timings["memory read"] = timings.get("memory read", 0.0) \
                    + time.perf_counter() - t0
            steps = cams.shape[1] - 1
            if on_step is not None and on_step(steps, steps) is False:
                raise RolloutInterrupted(f"stopped after step {steps} of {steps}")
            return recalled
        sizes = split_sizes(cams.shape[0], len(self.devices), c.min_paths_per_device)
        slots = self.device.type == "cuda" if c.slot_overlay is None else c.slot_overlay
        if len(sizes) == 1:
            return imagine_paths(self.model, memory, start_latent, K_latent, cams,
                                 sampler_steps=c.sampler_steps, seed=seed,
                                 copy_offset=c.copy_offset, noise_scale=c.noise_scale,
                                 sampler=self.sampler(), slot_overlay=slots, timings=timings,
                                 on_step=on_step, should_stop=should_stop)
        replicas = [Replica(self.sampler(d), memory.to(d)) for d in self.devices[:len(sizes)]]
        return imagine_split(replicas, sizes, start_latent, K_latent, cams,
                             sampler_steps=c.sampler_steps, seed=seed, slot_overlay=slots,
                             copy_offset=c.copy_offset, noise_scale=c.noise_scale,
                             timings=timings, on_step=on_step, should_stop=should_stop)

    # ------------------------------------------------------------------ helpers

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Raw latents ``[B,C,h,w]`` -> RGB ``[B,3,H,W]`` float in [0,1] on the CPU."""
        return self.model.decode(latents.to(self.device)).clamp(0, 1).cpu()


def _numpy64(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """A float64 numpy copy of a tensor or array (a copy: callers' frozen arrays stay frozen and
    torch never sees a read-only buffer)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy().copy()
    return np.array(x, dtype=np.float64)
