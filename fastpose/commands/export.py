"""``fastpose export``: a model -> an ONNX file, an AOTInductor package or a TensorRT engine.

Examples::

    fastpose export --model spgnet --format onnx --precision fp32 --output spgnet243.onnx
    fastpose export --model volumetric --checkpoint runs/vol/best.pt --format aoti --output vol.pt2
    fastpose export --model volumetric --format tensorrt --precision fp16 --output vol.plan   # GPU + TensorRT

Without ``--checkpoint`` the weights are freshly initialised (``--seed``), which is what latency
work needs. ``--config '{"channels": 256}'`` overrides architecture fields. Every export writes
``<output>.json`` (metadata: versions, shapes, precision) and, unless ``--no-parity``, runs the
engine once against PyTorch and prints the largest difference per output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_parser"]


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a model to ONNX, AOTInductor or TensorRT",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=["spgnet", "volumetric"], help="the model to export")
    p.add_argument("--checkpoint", default=None, help="checkpoint from fastpose train (default: fresh weights)")
    p.add_argument("--config", default=None, type=_json_object,
                   help="JSON object of architecture overrides, e.g. '{\"filter_widths\": [3,3,3]}'")
    p.add_argument("--format", required=True, choices=["onnx", "aoti", "tensorrt"],
                   help="onnx: ONNX file (ONNX Runtime, TensorRT); aoti: AOTInductor package (.pt2); "
                        "tensorrt: serialized engine (GPU + TensorRT)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"],
                   help="storage and compute precision of the exported model")
    p.add_argument("--output", required=True, help="file to write (.onnx, .pt2, .plan)")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"],
                   help="aoti: the device compiled for (default cuda if available, else cpu)")
    p.add_argument("--max-batch", type=int, default=1024, help="largest batch the engine accepts (dynamic batch)")
    p.add_argument("--opt-batch", type=int, default=None, help="tensorrt: batch the profile is tuned for")
    p.add_argument("--workspace-gib", type=float, default=4.0, help="tensorrt: builder workspace limit")
    p.add_argument("--timing-cache", default=None, help="tensorrt: timing cache file (read and updated)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18; 22 for bf16, the minimum there)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fresh weights and of the parity inputs")
    p.add_argument("--video", action="store_true",
                   help="spgnet: full-video model (whole sequences of any length, dynamic frame count, "
                        "edge padding inside the graph)")
    p.add_argument("--no-parity", action="store_true", help="skip the check against PyTorch")
    p.set_defaults(func=_run)


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--config must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"--config must be a JSON object, received {type(value).__name__}")
    return value


def _run(args: argparse.Namespace) -> int:
    import torch

    from fastpose.engine import _models
    from fastpose.engine._common import EngineLoadError
    from fastpose.train.common import check_writable_dir

    out = Path(args.output)
    check_writable_dir(out.parent if str(out.parent) else ".", "--output's directory")  # before a long export
    want_suffix = {"onnx": ".onnx", "aoti": ".pt2"}.get(args.format)
    if want_suffix and out.suffix != want_suffix:
        print(f"fastpose export: --output for --format {args.format} must end in {want_suffix}, received {out.name}",
              file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    try:
        dep = _models.deployable(args.model, checkpoint=args.checkpoint, config=args.config,
                                 precision=args.precision, video=args.video)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        if getattr(args, "debug", False):
            raise
        print(f"fastpose export: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    # parity inputs: batch 3 != the export's example batch (and 50 frames for the full-video model)
    inputs = dep.example_inputs(3, seed=args.seed + 1, **({"frames": 50} if args.video else {}))
    try:
        if args.format == "onnx":
            from fastpose.engine.onnx import OnnxRunner, export_onnx

            meta = export_onnx(dep, out, max_batch=args.max_batch, opset=args.opset)
            if args.precision == "bf16" and not args.no_parity:
                print("parity: skipped (ONNX Runtime has no bfloat16 kernels; bf16 ONNX files are for TensorRT)")
            runner = None if args.no_parity or args.precision == "bf16" else OnnxRunner(out)
        elif args.format == "aoti":
            from fastpose.engine.aoti import AotiRunner, export_aoti

            device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
            meta = export_aoti(dep, out, device=device, max_batch=args.max_batch)
            runner = None if args.no_parity else AotiRunner(out)
            inputs = tuple(t.to(device) for t in inputs)
        else:
            from fastpose.engine.onnx import export_onnx
            from fastpose.engine.tensorrt import TensorRTRunner, build_engine, import_tensorrt

            import_tensorrt()
            onnx_path = out.with_suffix(".onnx")
            export_onnx(dep, onnx_path, max_batch=args.max_batch, opset=args.opset,
                        device="cuda" if torch.cuda.is_available() else "cpu")
            meta = build_engine(onnx_path, out, opt_batch=args.opt_batch, max_batch=min(args.max_batch, 256),
                                workspace_gib=args.workspace_gib, timing_cache=args.timing_cache)
            runner = None if args.no_parity else TensorRTRunner(out)
            inputs = tuple(t.cuda() for t in inputs)
    except (EngineLoadError, RuntimeError, ValueError) as exc:
        if getattr(args, "debug", False):
            raise
        # a bad setting is the user's to fix (2); an engine that cannot run here (TensorRT missing,
        # no GPU: the message says how to get it) or an exporter failure is a failure (1)
        user = isinstance(exc, ValueError)
        print(f"fastpose export: error: {type(exc).__name__}: {' '.join(str(exc).split())}"
              + ("" if user or isinstance(exc, EngineLoadError) else " (--debug shows where)"), file=sys.stderr)
        return 2 if user else 1
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and {out.name}.json")
    print(f"  model {meta.model} precision {meta.precision} device {meta.device} batch {list(meta.batch_range)}")
    for s in meta.inputs:
        print(f"  input  {s.name:<14} {s.pretty_shape():<24} {s.dtype}")
    for s in meta.outputs:
        print(f"  output {s.name:<14} {s.pretty_shape():<24} {s.dtype}")
    if runner is None:
        return 0
    report = runner.parity(dep, inputs)
    print(f"parity vs PyTorch (batch {inputs[0].shape[0]}): {report.summary()}")
    return 0 if report.ok else 1
