"""Choose between the torch reference and the Triton kernels in ``kernels/`` (same signatures).

The kernels live in the repository's top-level ``kernels/`` folder, which is importable only
when the repository root is on ``sys.path`` and Triton is installed. They are imported lazily and
any failure falls back to the reference, so the memory imports and runs everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .frames import unproject_keys_reference
from .voxel_hash import segment_sums_reference
from .zbuffer import gather_reference, splat_bank_reference, splat_entries_reference


@dataclass(frozen=True)
class Ops:
    name: str
    unproject_keys: Callable
    segment_sums: Callable
    splat_bank: Callable
    splat_entries: Callable
    gather: Callable


TORCH_OPS = Ops(
    name="torch",
    unproject_keys=unproject_keys_reference,
    segment_sums=segment_sums_reference,
    splat_bank=splat_bank_reference,
    splat_entries=splat_entries_reference,
    gather=gather_reference,
)

_kernel_ops: Ops | None = None
_kernel_error: str | None = None


def kernel_ops() -> tuple[Ops | None, str | None]:
    """The Triton ops, or None and the reason they could not be loaded."""
    global _kernel_ops, _kernel_error
    if _kernel_ops is None and _kernel_error is None:
        try:
            try:  # the checkout's top-level kernels/ first, then the installed copy
                from kernels import memory_read, memory_write  # noqa: PLC0415 (lazy on purpose)
            except ImportError:
                from mirage_ros.kernels import memory_read, memory_write  # noqa: PLC0415

            _kernel_ops = Ops(
                name="triton",
                unproject_keys=memory_write.unproject_keys,
                segment_sums=memory_write.segment_sums,
                splat_bank=memory_read.splat_bank,
                splat_entries=memory_read.splat_entries,
                gather=memory_read.gather,
            )
        except Exception as exc:  # ImportError, or Triton failing to initialise
            _kernel_error = f"{type(exc).__name__}: {exc}"
    return _kernel_ops, _kernel_error


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def select_ops(device: torch.device, use_kernels: bool | None) -> Ops:
    """``use_kernels``: None = kernels when on CUDA and importable; True = kernels or raise;
    False = the torch reference. On CPU kernels run only under ``TRITON_INTERPRET=1`` (tests)."""
    if use_kernels is False:
        return TORCH_OPS
    runnable = device.type == "cuda" or _interpreting()
    if use_kernels is None:
        if device.type != "cuda":
            return TORCH_OPS
        ops, _ = kernel_ops()
        return ops or TORCH_OPS
    if not runnable:
        raise RuntimeError(
            f"use_kernels=True needs a CUDA device (or TRITON_INTERPRET=1), got {device}"
        )
    ops, err = kernel_ops()
    if ops is None:
        raise RuntimeError(f"use_kernels=True but the Triton kernels are unavailable ({err})")
    return ops
