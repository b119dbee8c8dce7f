"""Compile every memory kernel for sm_90 without a GPU (Triton's wheel ships ptxas).

    PYTHONPATH=. python -m kernels.compile_check

Catches Triton compile errors before spending device time: each kernel is compiled with and
without the 16-divisibility specialisation the launcher applies to aligned pointers and ints,
and the resource usage (registers, spills, shared memory) is printed for the record.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from kernels import memory_read, memory_write

_P32, _P64, _PU8, _I32, _I64, _F32 = "*fp32", "*i64", "*u8", "i32", "i64", "fp32"

KERNELS = {
    "splat_bank": (
        memory_read._splat_bank_kernel,
        [("pos_ptr", _P32), ("n_points", _I32), ("bounds_ptr", _P32), ("list_ptr", "*i32"),
         ("count_ptr", "*i32"), ("views_ptr", _P32), ("zbuf_ptr", _P64), ("n_views", _I32),
         ("h", _I32), ("w", _I32), ("near", _F32), ("far", _F32), ("index_offset", _I32)],
        [{"MARGIN": 1e-4, "BLOCK": b, "VIEW_SPLIT": s, "PREFILTER": p, "CULL": c, "AGG": a}
         for b, s, p, c, a in [(256, 4, True, 2, 0), (512, 1, False, 0, 0),
                               (128, 16, True, 1, 8), (256, 1, True, 2, 2)]],
    ),
    "cull": (
        memory_read._cull_kernel,
        [("bounds_ptr", _P32), ("views_ptr", _P32), ("list_ptr", "*i32"), ("count_ptr", "*i32"),
         ("n_views", _I32)],
        [{"MARGIN": 1e-4, "VB": 128}],
    ),
    "splat_entries": (
        memory_read._splat_entries_kernel,
        [("pos_ptr", _P32), ("path_ptr", _P64), ("n_entries", _I32), ("views_ptr", _P32),
         ("zbuf_ptr", _P64), ("views_per_path", _I32), ("h", _I32), ("w", _I32),
         ("near", _F32), ("far", _F32), ("index_offset", _I64)],
        [{"BLOCK": 128}],
    ),
    "gather": (
        memory_read._gather_kernel,
        [("zbuf_ptr", _P64), ("n_cells", _I32), ("hw", _I32), ("bank_ptr", _P32),
         ("n_bank", _I32), ("overlay_ptr", _P32), ("channels", _I32), ("latent_ptr", _P32),
         ("depth_ptr", _P32), ("mask_ptr", _PU8), ("sentinel", _I64)],
        [{"BLOCK": 128, "CP": 16}, {"BLOCK": 128, "CP": 4}],
    ),
    "unproject_keys": (
        memory_write._unproject_keys_kernel,
        [("depth_ptr", _P32), ("valid_ptr", _PU8), ("intr_ptr", _P32), ("c2m_ptr", _P32),
         ("inv_voxel", _F32), ("pts_ptr", _P32), ("keys_ptr", _P64), ("n_cells", _I32),
         ("h", _I32), ("w", _I32)],
        [{"HALF": 1 << 20, "BLOCK": 256}],
    ),
    "segment_sums": (
        memory_write._segment_sum_kernel,
        [("order_ptr", _P64), ("starts_ptr", _P64), ("n_groups", _I32), ("max_count", _I32),
         ("pts_ptr", _P32), ("lat_ptr", _P32), ("w_ptr", _P32), ("wsum_ptr", _P32),
         ("psum_ptr", _P32), ("lsum_ptr", _P32), ("channels", _I32)],
        [{"BLOCK": 64, "CP": 16}, {"BLOCK": 64, "CP": 4}],
    ),
}


def _usage(kernel) -> str:
    """Registers / spills / shared memory, from ptxas -v on the kernel's PTX."""
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    if not os.path.exists(ptxas):
        return f"shared={kernel.metadata.shared}"
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(kernel.asm["ptx"])
        res = subprocess.run(
            [ptxas, "-v", "--gpu-name", "sm_90a", src, "-o", os.path.join(tmp, "k.cubin")],
            capture_output=True,
            text=True,
            check=False,
        )
    lines = [ln.split("ptxas info    : ")[-1] for ln in res.stderr.splitlines() if "Used" in ln]
    lines += [ln.strip() for ln in res.stderr.splitlines() if "spill" in ln]
    return "; ".join(lines) or res.stderr.strip()[:200]


def main() -> None:
    target = GPUTarget("cuda", 90, 32)
    failures = 0
    for name, (fn, args, constexpr_sets) in KERNELS.items():
        aligned = tuple(
            (i,) for i, (_, t) in enumerate(args) if t.startswith("*") or t in (_I32, _I64)
        )
        for constexprs, divisible in itertools.product(constexpr_sets, (False, True)):
            sig = {a: t for a, t in args}
            sig.update({k: "constexpr" for k in constexprs})
            attrs = {idx: [["tt.divisibility", 16]] for idx in aligned} if divisible else {}
            src = ASTSource(fn=fn, signature=sig, constexprs=constexprs, attrs=attrs)
            try:
                k = triton.compile(
                    src, target=target, options={"num_warps": 4, "enable_fp_fusion": False}
                )
                print(f"ok   {name:15s} div16={divisible!s:5s} {constexprs} {_usage(k)}")
            except Exception as exc:
                failures += 1
                print(f"FAIL {name:15s} div16={divisible!s:5s} {constexprs}: {str(exc)[:200]}")
    print(f"{failures} failure(s)")
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
