"""``fastpose bench``: a quick side-by-side comparison of every backend on this machine.

Runs each op forward+backward on every registered backend that serves the device (through
:func:`fastpose.ops.backend_table`), checks outputs and gradients against the ``reference``
backend, and prints one table: median time, speed-up over ``reference``, errors. Host-timed
(synchronised on a GPU), median of a few repeats: a quick figure for this machine, not
the benchmark -- ``make bench`` / ``benchmarks/gpu_run.sh`` measure properly (CUDA events, peak
memory, roofline) and ``python -m benchmarks.report`` renders ``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import json

__all__ = ["add_parser", "format_table"]

_SIZES = {
    "seed": "volumetric B=8, J=18, 64^3 and 64x64; lifting 1024x243x17 points (the CPU seed shapes)",
    "small": "B=2, J=17, 8x10x12; 4x3x17 points (seconds; a smoke check, timings mostly overhead)",
}


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="quick side-by-side timing of every backend on this machine",
                       description="Quick side-by-side comparison of every backend on this machine "
                                   "(forward+backward, checked against the reference backend).")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available, else cpu)")
    p.add_argument("--size", default="seed", choices=sorted(_SIZES),
                   help="; ".join(f"{k}: {v}" for k, v in _SIZES.items()))
    p.add_argument("--repeats", type=int, default=5,
                   help="timed repeats per backend (median; default 5, the first call's compilation is an outlier)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the inputs")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    p.set_defaults(func=_run)


def _ms(v) -> str:
    return "—" if v is None else (f"{v:.1f}" if v >= 10 else f"{v:.3f}")


def _err(v) -> str:
    return "—" if v is None else f"{v:.1e}"


def _other_device(row: dict) -> bool:
    """A backend that does not serve this device at all (e.g. cuda on a CPU): listed, not tabled."""
    return row["status"].startswith("not supported") and "device" in row["status"] and "not served" in row["status"]


def format_table(rows: list[dict]) -> str:
    """The rows of :func:`fastpose.ops.backend_table` as a text table with speed-ups over reference."""
    ref_ms = {r["op"]: r["ms"] for r in rows if r["backend"] == "reference" and r["ms"]}
    header = ("op", "backend", "fwd+bwd ms", "vs reference", "max |out err|", "max |grad err|", "status")
    body = []
    for r in rows:
        if _other_device(r):
            continue
        base = ref_ms.get(r["op"])
        speed = f"{base / r['ms']:.2f}x" if base and r["ms"] else "—"
        status = r["status"] if len(r["status"]) <= 70 else r["status"][:67] + "..."
        body.append((r["op"], r["backend"], _ms(r["ms"]), speed, _err(r["max_abs_err"]),
                     _err(r["max_abs_grad_err"]), status))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row) for row in body]
    elsewhere = sorted({r["backend"] for r in rows if _other_device(r)})
    if elsewhere:
        lines.append(f"\n(registered for another device, not run here: {', '.join(elsewhere)})")
    return "\n".join(line.rstrip() for line in lines)


def _run(args: argparse.Namespace) -> int:
    import torch

    from fastpose.ops import backend_table

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise SystemExit(f"fastpose bench: --device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("fastpose bench: --device cuda, but torch.cuda.is_available() is False")
    if args.repeats < 1:
        raise SystemExit(f"fastpose bench: --repeats must be >= 1, got {args.repeats}")
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"fastpose bench: --threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    # The median of >= 3 repeats drops the first call's one-off costs (Triton compilation and
    # autotuning, page faults of fresh allocations) without a separate warm-up round.
    rows = backend_table(device, size=args.size, seed=args.seed, repeats=args.repeats)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        name = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        print(f"fastpose bench on {device} ({name}); size {args.size}: {_SIZES[args.size]}")
        print(f"median of {args.repeats} host-timed forward+backward runs (first call included); speed-ups and "
              "errors against the 'reference' backend (PyTorch math, analytic backward)\n")
        print(format_table(rows))
        if device == "cpu" and any(r["backend"] == "triton" and r["ms"] is not None for r in rows):
            print("\nnote: on the CPU the triton backend runs in the Triton interpreter (TRITON_INTERPRET=1): "
                  "its times are not a measure of the kernels")
        print("\nnote: 'vs reference' is a self-check of the backends, not a speed claim: the reference backend is "
              "slower than the PyTorch code users write. fastpose against that code (VideoPose3D / MMPose / 3DMPPE "
              "style, eager and torch.compile) is measured by `make bench` and reported in BENCHMARKS.md")
    bad = [r for r in rows if r["status"] == "MISMATCH"]
    return 1 if bad else 0
