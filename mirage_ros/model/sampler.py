"""One imagined frame, fast: the DiT's flow sample and the depth head, in the precision the
hardware runs best, replayed from a captured CUDA graph on a GPU.

Why. A rollout step runs the DiT (2 sampler steps x 8 blocks) and the depth head on a batch of
a few to a few thousand 16 x 16 latents. On a GPU that is hundreds of small kernels whose launch
cost, paid by the host, exceeds their run time below ~256 paths; a CUDA graph launches them all
at once. bf16 halves the matrix work where the hardware has bf16 units (every CUDA GPU we
support, and CPUs with AVX512-BF16 or AMX, where it measured 2.1x faster for the DiT on two
cores); the model was trained under bf16 autocast on the GPU, and the evaluation reports what
bf16 inference changes (BENCHMARKS.md).

Precision. ``"fp32"`` is the reference. ``"bf16"`` runs matrix products and convolutions in
bf16 under ``torch.autocast`` (norms, softmax and the sampler's state stay float32); results
are float32. ``"auto"`` picks bf16 where the device has native bf16 and fp32 elsewhere.

Graphs. One graph per (batch size, sampler steps), captured on first use (a few hundred ms)
and kept, at most ``max_graphs`` of them (least recently used goes). The captured pass has no
cancellation points inside: on a GPU it takes milliseconds, and the rollout polls between
phases. Replays are serialised by a lock, because the graph's input and output buffers are
shared (two goals may overlap for a moment while one preempts the other).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import torch

from mirage_ros.model.world_model import WorldModel

PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16(device: torch.device) -> bool:
    """Does this device run bf16 matrix products natively (faster than float32)?"""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        try:
            cpu = torch.cpu
            return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
        except AttributeError:  # an older torch without the probes: assume not
            return False
    return False


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype:
    """``"auto"`` | ``"fp32"`` | ``"bf16"`` -> the autocast dtype (float32 = no autocast)."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return torch.bfloat16 if native_bf16(device) else torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float32


class FrameSampler:
    """The rollout's two model calls per imagined step, float32 in and out:

    ``sample(cond, noise, steps, check)`` -> raw latent ``[B,C,h,w]`` (cond ``[B,2C+8,h,w]`` is
    ``WorldModel.condition``'s stack, noise ``[B,C,h,w]`` the flow sample's starting point);
    ``depth(latent, check, geometry)`` -> metres ``[B,h,w]`` (geometry: the model's
    ``depth_geometry`` of the cameras, or None for a head that takes none). ``check`` runs
    between blocks on the eager path (see the module docstring for graphs).
    """

    def __init__(self, model: WorldModel, precision: str = "auto",
                 cuda_graphs: bool | None = None, max_graphs: int = 8) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.dtype = resolve_precision(precision, self.device)
        use_graphs = self.device.type == "cuda" if cuda_graphs is None else cuda_graphs
        if use_graphs and self.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, the model is on {self.device}")
        self.cuda_graphs = bool(use_graphs)
        self.max_graphs = max(1, int(max_graphs))
        self._graphs: OrderedDict[tuple, _Captured] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def precision(self) -> str:
        return "bf16" if self.dtype == torch.bfloat16 else "fp32"

    def autocast(self):
        """The autocast context of this precision (a no-op for fp32)."""
        # No weight-cast cache under graphs: a capture must record the casts, not reuse
        # tensors cached outside it (PyTorch's rule for autocast with CUDA graphs).
        return torch.autocast(self.device.type, dtype=self.dtype,
                              enabled=self.dtype != torch.float32,
                              cache_enabled=not self.cuda_graphs)

    def _sample(self, cond, noise, steps, check):
        with self.autocast():
            return self.model.sample(cond, noise, steps, check).float()

    def _depth(self, z, geometry, check):
        with self.autocast():
            return self.model.depth(z, check=check, geometry=geometry)[0].float()

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, noise: torch.Tensor, steps: int,
               check: Callable[[], None] | None = None) -> torch.Tensor:
        if not self.cuda_graphs:
            return self._sample(cond, noise, steps, check)
        return self._replay(("sample", int(steps)),
                            lambda c, n: self._sample(c, n, steps, None), cond, noise)

    @torch.no_grad()
    def depth(self, latent: torch.Tensor, check: Callable[[], None] | None = None,
              geometry: torch.Tensor | None = None) -> torch.Tensor:
        if not self.cuda_graphs:
            return self._depth(latent, geometry, check)
        if geometry is None:
            return self._replay(("depth",), lambda z: self._depth(z, None, None), latent)
        return self._replay(("depth",), lambda z, g: self._depth(z, g, None), latent, geometry)

    @torch.no_grad()
    def warm(self, batch: int, steps: int, hw: tuple[int, int]) -> None:
        """Capture the graphs for a batch size now (no-op without graphs). A rollout split
        across GPUs calls this for every replica before its threads start: captures, and
        PyTorch's lazy library initialisation, are not safe while other threads use a GPU."""
        if not self.cuda_graphs:
            return
        c, cc = self.model.latent_channels, self.model.dit.cfg.cond_channels
        g = self.model.depth_head.cfg.geometry_channels
        latent, cond, geom = (batch, c, *hw), (batch, cc, *hw), (batch, g, *hw)
        depth_key = ("depth", latent, geom) if g else ("depth", latent)
        with self._lock:
            have = {("sample", int(steps), cond, latent), depth_key} <= set(self._graphs)
        if have:
            return
        z = torch.zeros(latent, device=self.device)
        self.sample(torch.zeros(cond, device=self.device), z, steps)
        self.depth(z, geometry=torch.zeros(geom, device=self.device) if g else None)

    def _replay(self, name: tuple, fn: Callable, *inputs: torch.Tensor) -> torch.Tensor:
        key = (*name, *(tuple(x.shape) for x in inputs))
        with self._lock:
            graph = self._graphs.get(key)
            if graph is None:
                graph = _Captured(fn, inputs)
                self._graphs[key] = graph
                while len(self._graphs) > self.max_graphs:
                    self._graphs.popitem(last=False)
            else:
                self._graphs.move_to_end(key)
            return graph.replay(inputs)


class _Captured:
    """A captured ``fn(*inputs) -> tensor`` with its static input and output buffers."""

    def __init__(self, fn: Callable, inputs: tuple[torch.Tensor, ...]) -> None:
        device = inputs[0].device
        with torch.cuda.device(device):
            self.inputs = tuple(x.detach().clone() for x in inputs)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):  # warm-up: lazy initialisation must not happen in a capture
                    fn(*self.inputs)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            # The capture stream must live on this graph's GPU (torch.cuda.graph's default is
            # one stream made once, on whichever GPU was current then); thread_local: another
            # replica may run on its own GPU meanwhile.
            with torch.cuda.graph(self.graph, stream=side, capture_error_mode="thread_local"):
                self.out = fn(*self.inputs)
        self.device = device

    def replay(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        with torch.cuda.device(self.device):
            for static, x in zip(self.inputs, inputs, strict=True):
                static.copy_(x)
            self.graph.replay()
            return self.out.clone()
