"""Interleaved fastpose-vs-peer probe for the issue-14 ratio targets (CPU, forward+backward).

Runs each case's steps round-robin in one process -- one call of every provider per round -- so the
load of a shared machine hits all providers alike, then prints per-provider median and spread
(min / max of the round times, ms) and the median ratio ``provider / fastpose``. The steps are the
benchmark harness's own (:func:`benchmarks._timing.make_step`), with its inputs
(:func:`benchmarks._cases.make_inputs`) and prepared peer arguments: the numbers are those the
suites would record, without pytest-benchmark around them. Not a test; the suites are the record.

Usage::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.perf_probe --threads 2 --rounds 15 \
        [--cases head8,head2,reproj,mse2d,sa2d] [--providers cpu,peer-compiled]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks._cases import cases_for, make_inputs
from benchmarks._providers import prepare_args, provider_fn
from benchmarks._timing import make_step

__all__ = ["CASES", "main"]

# short name -> (op, case id)
CASES = {
    "head8": ("soft_argmax_heatmap_mse_3d", "paper-B8-J18-64x64x64-float32"),
    "head2": ("soft_argmax_heatmap_mse_3d", "sweep-volume-B2-J18-32x32x32-float32"),
    "reproj": ("reprojection_loss", "paper-1024x243x17-float32"),
    "mse2d": ("heatmap_mse_2d", "paper-B32-J18-64x64-float32"),
    "sa2d": ("soft_argmax_2d", "paper-B32-J18-64x64-float32"),
}


def _case(op: str, case_id: str):
    for c in cases_for(op, "cpu", "all"):
        if c.id == case_id:
            return c
    raise ValueError(f"perf_probe: no case {case_id!r} for op {op!r}")


def _probe(name: str, providers: list[str], rounds: int) -> None:
    op, cid = CASES[name]
    case = _case(op, cid)
    x, args = make_inputs(case, "cpu")
    steps = {p: make_step(case, provider_fn(op, p), x, prepare_args(op, p, x, args), "forward+backward")
             for p in providers}
    for st in steps.values():  # warm-up: compilation, page faults, allocator caches
        for _ in range(3):
            st.target()
    times: dict[str, list[float]] = {p: [] for p in providers}
    for _ in range(rounds):
        for p, st in steps.items():
            t0 = time.perf_counter()
            st.target()
            times[p].append((time.perf_counter() - t0) * 1e3)
    base = statistics.median(times[providers[0]])
    for p in providers:
        ts = times[p]
        med = statistics.median(ts)
        print(f"{name:7s} {p:15s} median {med:9.3f} ms  min {min(ts):9.3f}  max {max(ts):9.3f}  "
              f"ratio {med / base:6.2f}x", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--providers", default="cpu,peer-compiled",
                    help="comma-separated; the first one is the ratio's denominator")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    providers = [p.strip() for p in a.providers.split(",") if p.strip()]
    for name in a.cases.split(","):
        name = name.strip()
        if name not in CASES:
            raise SystemExit(f"perf_probe: --cases: unknown {name!r}; expected some of {list(CASES)}")
        _probe(name, providers, a.rounds)


if __name__ == "__main__":
    main()
