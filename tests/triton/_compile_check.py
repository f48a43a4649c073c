"""Compile every Triton kernel of ``kernels`` for real NVIDIA targets, without a GPU.

The interpreter (``TRITON_INTERPRET=1``, what CI runs) executes kernels as NumPy and accepts
code the compiler rejects (loop-carried type changes, int/float mixing, constexpr misuse...).
This script runs the real front end and back end (TTIR -> TTGIR -> LLVM -> PTX -> cubin via the
ptxas bundled with triton) for a CUDA target given by hand, which needs no driver. It must run in
a process WITHOUT ``TRITON_INTERPRET=1`` (``@triton.jit`` then builds compilable kernels).

Usage: python -m tests.triton._compile_check [--arch 90] [--dtypes fp32,fp16,bf16,fp64] [--all-configs]
Prints one line per compiled kernel and exits non-zero on the first failure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# name -> (signature with IN = input dtype, ACC = accumulation dtype, constexprs)
_VOLUME_INTS = {"R": "i32", "H": "i32", "W": "i32", "ROWS_PER_SPLIT": "i32"}


def _kernels():
    """The kernels package as installed (``fastpose.kernels``, whose modules may import
    ``fastpose.reference`` relatively), else the source folder ``kernels``."""
    import importlib

    try:
        return importlib.import_module("fastpose.kernels")
    except ModuleNotFoundError:
        return importlib.import_module("kernels")


def _specs():
    k = _kernels()
    hm, pj, sa, fu = k.heatmap_mse, k.projection, k.soft_argmax, k.soft_argmax_heatmap_mse

    vol = dict(_VOLUME_INTS)
    specs = []
    for ndim in (2, 3):
        specs += [
            (f"soft_argmax fwd {ndim}d", sa._soft_argmax_fwd_kernel,
             {"logits_ptr": "*IN", "coords_ptr": "*IN", "stats_ptr": "*ACC", "part_ptr": "*ACC",
              **vol, "S": "i32"}, {"NDIM": ndim, "SINGLE": False, "BLOCK_W": 64}),
            (f"soft_argmax fwd single {ndim}d", sa._soft_argmax_fwd_kernel,
             {"logits_ptr": "*IN", "coords_ptr": "*IN", "stats_ptr": "*ACC", "part_ptr": "*ACC",
              **vol, "S": "i32"}, {"NDIM": ndim, "SINGLE": True, "BLOCK_W": 8}),
            (f"soft_argmax combine {ndim}d", sa._soft_argmax_combine_kernel,
             {"part_ptr": "*ACC", "coords_ptr": "*IN", "stats_ptr": "*ACC", "S": "i32"},
             {"NDIM": ndim, "BLOCK_S": 8}),
            (f"soft_argmax bwd {ndim}d", sa._soft_argmax_bwd_kernel,
             {"logits_ptr": "*IN", "stats_ptr": "*ACC", "grad_coords_ptr": "*IN", "grad_ptr": "*IN", **vol},
             {"NDIM": ndim, "BLOCK_W": 64}),
            (f"heatmap_mse fwd {ndim}d", hm._heatmap_mse_fwd_kernel,
             {"h_ptr": "*IN", "params_ptr": "*ACC", "part_ptr": "*ACC", **vol, "S": "i32"},
             {"NDIM": ndim, "BLOCK_W": 64}),
            (f"heatmap_mse bwd {ndim}d", hm._heatmap_mse_bwd_kernel,
             {"h_ptr": "*IN", "params_ptr": "*ACC", "scale_ptr": "*ACC", "grad_ptr": "*IN", **vol},
             {"NDIM": ndim, "BLOCK_W": 64}),
        ]
    specs += [
        ("heatmap_mse fwd wide rows", hm._heatmap_mse_fwd_kernel,
         {"h_ptr": "*IN", "params_ptr": "*ACC", "part_ptr": "*ACC", **vol, "S": "i32"},
         {"NDIM": 3, "BLOCK_W": 256}),
        ("fused fwd", fu._fused_fwd_kernel,
         {"logits_ptr": "*IN", "params_ptr": "*ACC", "coords_ptr": "*IN", "stats_ptr": "*ACC",
          "sse_ptr": "*ACC", "part_ptr": "*ACC", **vol, "S": "i32"}, {"SINGLE": False, "BLOCK_W": 64}),
        ("fused fwd single", fu._fused_fwd_kernel,
         {"logits_ptr": "*IN", "params_ptr": "*ACC", "coords_ptr": "*IN", "stats_ptr": "*ACC",
          "sse_ptr": "*ACC", "part_ptr": "*ACC", **vol, "S": "i32"}, {"SINGLE": True, "BLOCK_W": 64}),
        ("fused combine", fu._fused_combine_kernel,
         {"part_ptr": "*ACC", "coords_ptr": "*IN", "stats_ptr": "*ACC", "sse_ptr": "*ACC", "S": "i32"},
         {"BLOCK_S": 16}),
        ("fused bwd", fu._fused_bwd_kernel,
         {"logits_ptr": "*IN", "params_ptr": "*ACC", "stats_ptr": "*ACC", "grad_coords_ptr": "*IN",
          "grad_mse_ptr": "*ACC", "grad_ptr": "*IN", **vol}, {"BLOCK_W": 64}),
    ]
    pts = {"P": "i32", "G": "i32", "C": "i32", "CHUNK": "i32"}
    specs += [
        ("project fwd", pj._project_fwd_kernel,
         {"pts_ptr": "*IN", "cam_ptr": "*ACC", "out_ptr": "*IN", **pts}, {}),
        ("project bwd", pj._project_bwd_kernel,
         {"pts_ptr": "*IN", "cam_ptr": "*ACC", "grad_out_ptr": "*IN", "grad_ptr": "*IN", **pts}, {}),
    ]
    for has_w in (False, True):
        specs += [
            (f"reprojection fwd w={has_w}", pj._reproj_fwd_kernel,
             {"pts_ptr": "*IN", "cam_ptr": "*ACC", "kp_ptr": "*ACC", "w_ptr": "*ACC", "part_ptr": "*ACC",
              **pts}, {"HAS_W": has_w}),
            (f"reprojection bwd w={has_w}", pj._reproj_bwd_kernel,
             {"pts_ptr": "*IN", "cam_ptr": "*ACC", "kp_ptr": "*ACC", "w_ptr": "*ACC", "scale_ptr": "*ACC",
              "grad_ptr": "*IN", **pts}, {"HAS_W": has_w}),
        ]
    return specs


def main(argv=None) -> int:
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        print("run without TRITON_INTERPRET=1", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--dtypes", default="fp32,fp16,bf16,fp64")
    parser.add_argument("--all-configs", action="store_true",
                        help="every autotune configuration (default: the last, largest one)")
    args = parser.parse_args(argv)

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.autotuner import Autotuner

    target = GPUTarget("cuda", args.arch, 32)
    for dt in args.dtypes.split(","):
        acc = "fp64" if dt == "fp64" else "fp32"
        for name, kernel, sig, consts in _specs():
            configs = kernel.configs if isinstance(kernel, Autotuner) else [None]
            fn = kernel.fn if isinstance(kernel, Autotuner) else kernel
            for cfg in configs if args.all_configs else configs[-1:]:
                constexprs = dict(consts)
                options = {}
                if cfg is not None:
                    constexprs.update(cfg.kwargs)
                    options = {"num_warps": cfg.num_warps, "num_stages": cfg.num_stages}
                signature = {}
                for arg in fn.arg_names:
                    if arg in constexprs:
                        signature[arg] = "constexpr"
                    else:
                        signature[arg] = sig[arg].replace("IN", dt).replace("ACC", acc)
                t0 = time.time()
                src = ASTSource(fn, signature=signature, constexprs=constexprs)
                try:
                    triton.compile(src, target=target, options=options)
                except Exception as exc:  # report which kernel and configuration failed
                    print(f"FAIL sm_{args.arch} {dt} {name} {constexprs} {options}: {exc}", file=sys.stderr)
                    return 1
                print(f"ok sm_{args.arch} {dt:4s} {name:32s} {options} {time.time() - t0:.2f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
