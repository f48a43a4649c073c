"""``fastpose demo``: the main job, end to end on the built-in synthetic data, on the CPU.

1. every op of ``fastpose.ops`` on each available backend, on a small random sample, against
   the reference (error, gradient error, time);
2. the synthetic Human3.6M-like set, written in the VideoPose3D npz layout and read back
   through the same loader as the real data;
3. a 27-frame SPGNet trained for a few minutes (time-boxed; progress bar);
4. per-action evaluation on the held-out subjects S9 and S11 (Protocols #1-#3, MPJVE),
   saved as JSON and Markdown;
5. a figure (PNG + animated GIF) of input 2D / prediction / ground truth.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["add_parser", "format_backend_table"]


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="the main job: ops table, synthetic data, train + evaluate SPGNet, figure",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/demo", help="output folder")
    p.add_argument("--minutes", type=float, default=4.0, help="training time budget (minutes)")
    p.add_argument("--epochs", type=int, default=8, help="training epochs (if the time budget allows)")
    p.add_argument("--channels", type=int, default=256, help="SPGNet channels (the paper uses 1024)")
    p.add_argument("--frames", type=int, default=300, help="mean frames per synthetic sequence")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)")
    p.add_argument("--quick", action="store_true", help="a tiny run (seconds) to check the pipeline")
    p.set_defaults(func=_run)


def format_backend_table(rows: list[dict]) -> str:
    """The rows of :func:`fastpose.ops.backend_table` as an aligned text table."""
    head = ["op", "backend", "status", "max |err|", "max |grad err|", "ms"]

    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    # backends that cannot serve this device at all are summarised in one line below the table
    elsewhere = sorted({r["backend"] for r in rows if "device" in r["status"] and r["status"].startswith("not supported")})
    rows = [r for r in rows if r["backend"] not in elsewhere]
    body = [[r["op"], r["backend"], r["status"], num(r.get("max_abs_err"), ".1e"),
             num(r.get("max_abs_grad_err"), ".1e"), num(r.get("ms"), ".2f")] for r in rows]
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True))
    text = "\n".join([line(head), "-" * len(line(head)), *map(line, body)])
    if elsewhere:
        text += f"\n(registered but not for this device: {', '.join(elsewhere)})"
    return text


def _run(args: argparse.Namespace) -> int:
    import torch

    from fastpose import ops
    from fastpose.data import (
        TEST_SUBJECTS,
        TRAIN_SUBJECTS,
        SyntheticConfig,
        generate_synthetic,
        load_h36m,
        write_synthetic,
    )
    from fastpose.train.spgnet import SPGNetTrainConfig, evaluate_spgnet, train_spgnet

    from .visualize import render

    threads = args.threads or _threads_for_load(torch.get_num_threads())
    torch.set_num_threads(threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    timings: dict[str, float] = {}

    _section("1/5  fastpose.ops on every available backend (small random sample, vs reference)")
    t = time.perf_counter()
    print(format_backend_table(ops.backend_table()))
    timings["ops table"] = time.perf_counter() - t

    _section("2/5  built-in synthetic data (Human3.6M layout, 4 calibrated cameras with distortion)")
    t = time.perf_counter()
    if args.quick:
        syn = SyntheticConfig(seed=args.seed, frames=60, subactions=1,
                              actions=("Walking", "Sitting", "Greeting", "Waiting"))
    else:
        syn = SyntheticConfig(seed=args.seed, frames=args.frames)
    data = generate_synthetic(syn)
    p3, p2 = write_synthetic(data, out / "data")
    train_seqs = load_h36m(out / "data", "gt", TRAIN_SUBJECTS)
    test_seqs = load_h36m(out / "data", "gt", TEST_SUBJECTS)
    timings["data"] = time.perf_counter() - t
    print(f"{data.num_frames} frames x 4 cameras, {len(syn.subjects)} subjects, {len(syn.actions)} actions "
          f"-> {p3}, {p2} ({timings['data']:.1f} s)")

    _section(f"3/5  training a 27-frame SPGNet on the CPU ({threads} thread{'s' if threads > 1 else ''}, "
             f"at most {args.minutes:g} minutes)")
    cfg = SPGNetTrainConfig(
        filter_widths=(3, 3, 3), channels=16 if args.quick else args.channels, dropout=0.1,
        epochs=1 if args.quick else args.epochs, batch_size=256, lr=3e-3, lr_decay=0.7,
        frame_stride=8 if args.quick else 4, seed=args.seed, device="cpu", out_dir=str(out),
        time_limit=args.minutes, max_steps=6 if args.quick else None,
    )
    t = time.perf_counter()
    result = train_spgnet(cfg, train_seqs)
    timings["training"] = time.perf_counter() - t
    print(f"{result.frames_per_second:.0f} frames/s, {timings['training']:.0f} s; checkpoint: {result.checkpoint}")

    _section("4/5  per-action evaluation on the held-out subjects S9, S11 (flip test-time augmentation)")
    t = time.perf_counter()
    report, preds = evaluate_spgnet(result.model, test_seqs, flip_test=True, progress=True,
                                    meta={"data": "synthetic", "train_seconds": timings["training"],
                                          "finished_schedule": result.finished})
    timings["evaluation"] = time.perf_counter() - t
    print(report.table())
    pj, pm = report.save(out)

    _section("5/5  figure")
    t = time.perf_counter()
    seq = next(s for s in test_seqs if s.subject == "S9" and s.action == "Walking" and s.camera_index == 0)
    pred = preds[(seq.subject, seq.action, seq.camera_index)]
    stop = min(seq.num_frames, 30 if args.quick else 100)
    figs = render(seq, pred, out / "figures", 0, stop, step=3 if args.quick else 2)
    timings["figure"] = time.perf_counter() - t

    _section("outputs")
    total = time.perf_counter() - t_all
    print(f"synthetic data      {p3.parent}/")
    print(f"checkpoint          {result.checkpoint}")
    print(f"evaluation          {pj}  {pm}")
    for f in figs:
        print(f"figure              {f}")
    print(f"MPJPE {report.mean['mpjpe']:.1f} mm, P-MPJPE {report.mean['p_mpjpe']:.1f} mm (mean over actions, "
          f"held-out S9/S11, ground-truth 2D)")
    print("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + f"; total {total:.0f} s")
    return 0


def _threads_for_load(default: int) -> int:
    """One thread on a busy machine, else torch's default.

    When the load average reaches the number of cores, OpenMP threads wait for each other at
    every small kernel (we measured a 10x slower training step with 2 threads than with 1 on
    a 2-core machine running other jobs).
    """
    import os

    try:
        busy = os.getloadavg()[0] >= (os.cpu_count() or 1)
    except OSError:  # not available on this platform
        busy = False
    return 1 if busy else default


def _section(title: str) -> None:
    print(f"\n=== {title}", flush=True)
