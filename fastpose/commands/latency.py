"""``fastpose latency``: latency of a model under several engines, side by side from one run.

Examples::

    fastpose latency --model spgnet --engine eager,compile,onnx,aoti --batch 1,32 --json spgnet.json
    fastpose latency --model volumetric --engine eager,compile,aoti,tensorrt --device cuda \\
        --precision fp16 --batch 1

Each engine is built once (dynamic batch) and measured at every batch: ``--warmup`` untimed
calls, then ``--iters`` synchronised calls (CUDA events on a GPU). Prints p50/p90/p99 latency,
throughput and the speed-up over eager; ``--json`` writes every number with versions and machine.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_parser"]


def add_parser(sub) -> None:
    p = sub.add_parser("latency", help="measure a model's latency under several engines",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=["spgnet", "volumetric"])
    p.add_argument("--engine", default="eager,compile,onnx,aoti", type=_names,
                   help="comma-separated: eager, compile, onnx, aoti, tensorrt (default: the first four)")
    p.add_argument("--batch", default="1,32", type=_ints, help="comma-separated batch sizes (default 1,32)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--checkpoint", default=None, help="checkpoint from fastpose train (default: fresh weights)")
    p.add_argument("--config", default=None, type=_json_object, help="JSON object of architecture overrides")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of every engine (default: torch's); on a CPU shared with other work use 1")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode (default: reduce-overhead on CUDA)")
    p.add_argument("--workdir", default=None, help="where engine files are built (default: a temporary folder)")
    p.add_argument("--json", default=None, help="write the results as JSON to this file")
    p.add_argument("--seed", type=int, default=0)
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
    from fastpose.engine.latency import format_table, run_latency, write_json

    try:
        report = run_latency(
            args.model, args.engine, args.batch, precision=args.precision, device=args.device,
            warmup=args.warmup, iters=args.iters, config=args.config, checkpoint=args.checkpoint,
            workdir=args.workdir, threads=args.threads, seed=args.seed, compile_mode=args.compile_mode,
            log=lambda m: print(m, file=sys.stderr),
        )
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"fastpose latency: {exc}", file=sys.stderr)
        return 2
    print(format_table(report))
    if args.json:
        print(f"wrote {write_json(report, args.json)}")
    return 1 if any(r["error"] for r in report["results"]) else 0
