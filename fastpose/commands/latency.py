"""``fastpose latency``: latency of a model under several engines, or of engine files you ship.

Examples::

    fastpose latency --model spgnet --engine eager,compile,onnx,aoti --batch 1,32 --json spgnet.json
    fastpose latency --model spgnet --video --frames 1000 --batch 1      # full-video SPGNet
    fastpose latency --model volumetric --engine eager,compile,aoti,tensorrt --device cuda \\
        --precision fp16 --batch 1
    fastpose latency spgnet.onnx spgnet.pt2 --batch 1,32                 # existing files, side by side
    fastpose latency model.plan                                          # TensorRT engine (GPU)

With ``--model``, each engine is built once (dynamic batch) and measured at every batch. With
FILE(s) (``.onnx`` ONNX Runtime, ``.pt2`` AOTInductor, ``.engine``/``.plan`` TensorRT), the input
shapes come from the file's metadata; a dynamic batch / frame count takes ``--batch`` /
``--frames`` or the metadata's default, and the run prints which. Each case: ``--warmup`` untimed
calls, then ``--iters`` synchronised calls (CUDA events on a GPU). Prints p50/p90/p99 latency and
throughput and speed-up computed from the median (p50); ``--json`` writes every number with
versions and machine.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_parser"]


def add_parser(sub) -> None:
    p = sub.add_parser("latency", help="measure a model's latency under several engines",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="engine file(s) to time: .onnx, .pt2, .engine/.plan (instead of --model)")
    p.add_argument("--model", default=None, choices=["spgnet", "volumetric"],
                   help="build this model into every --engine and time them (instead of FILE)")
    p.add_argument("--video", action="store_true",
                   help="--model spgnet: the full-video model (whole sequences, dynamic frame count)")
    p.add_argument("--frames", type=int, default=None,
                   help="frames per sequence of a full-video model (--video, or a FILE exported with "
                        "a dynamic frame count; default: its metadata default, 300)")
    p.add_argument("--engine", default="eager,compile,onnx,aoti", type=_names,
                   help="comma-separated: eager, compile, onnx, aoti, tensorrt (default: the first four)")
    p.add_argument("--batch", default=None, type=_ints,
                   help="comma-separated batch sizes (default: 1,32 with --model; a FILE's metadata default)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"],
                   help="weights and inputs of --model engines (a FILE keeps its own precision)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where every engine runs")
    p.add_argument("--checkpoint", default=None, help="checkpoint from fastpose train (default: fresh weights)")
    p.add_argument("--config", default=None, type=_json_object, help="JSON object of architecture overrides")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls before timing (per engine and batch)")
    p.add_argument("--iters", type=int, default=50, help="timed calls (per engine and batch); the table uses their median")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of every engine (default: torch's); on a CPU shared with other work use 1")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode (default: reduce-overhead on CUDA)")
    p.add_argument("--workdir", default=None, help="where engine files are built (default: a temporary folder)")
    p.add_argument("--json", default=None, help="write the results as JSON to this file")
    p.add_argument("--seed", type=int, default=0, help="seed of the fresh weights and of the random inputs")
    p.set_defaults(func=_run)


def _names(text: str) -> list[str]:
    from fastpose.engine.latency import ENGINES

    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in ENGINES]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"--engine: expected names from {list(ENGINES)}, received {text!r}")
    return names


def _ints(text: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batch: expected comma-separated integers, received {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"--batch: expected sizes >= 1, received {text!r}")
    return values


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--config must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"--config must be a JSON object, received {type(value).__name__}")
    return value


def _run(args: argparse.Namespace) -> int:
    from fastpose.engine._common import EngineLoadError
    from fastpose.engine.latency import format_table, run_file_latency, run_latency, write_json

    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    try:
        if args.files and args.model:
            raise ValueError("give either engine FILE(s) or --model, not both")
        if args.files:
            model_only = [flag for flag, v in (("--video", args.video), ("--checkpoint", args.checkpoint),
                                               ("--config", args.config), ("--workdir", args.workdir)) if v]
            if model_only:
                raise ValueError(f"{', '.join(model_only)}: only with --model (an engine FILE fixes the model, "
                                 "its weights and its shapes)")
        if args.frames is not None and args.frames < 1:
            raise ValueError(f"--frames: expected >= 1, received {args.frames}")
        if args.files:
            report = run_file_latency(
                args.files, args.batch, frames=args.frames, device=args.device, warmup=args.warmup,
                iters=args.iters, threads=args.threads, seed=args.seed, log=log,
            )
        elif args.model:
            if args.video and args.model != "spgnet":
                raise ValueError(f"--video: the full-video model exists for spgnet only, received --model {args.model}")
            if args.frames is not None and not args.video:
                raise ValueError("--frames: with --model, only the full-video model (--video) takes a frame count")
            report = run_latency(
                args.model, args.engine, args.batch or [1, 32], precision=args.precision, device=args.device,
                warmup=args.warmup, iters=args.iters, config=args.config, checkpoint=args.checkpoint,
                workdir=args.workdir, threads=args.threads, seed=args.seed, compile_mode=args.compile_mode,
                log=log, video=args.video, frames=args.frames,
            )
        else:
            raise ValueError("nothing to time: give engine FILE(s) (.onnx, .pt2, .engine, .plan) or --model")
    except (ValueError, RuntimeError, FileNotFoundError, EngineLoadError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"fastpose latency: {text}", file=sys.stderr)
        return 2
    print(format_table(report))
    if args.json:
        print(f"wrote {write_json(report, args.json)}")
    return 1 if any(r["error"] for r in report["results"]) else 0
