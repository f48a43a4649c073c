"""Interleaved fastpose-vs-peer probe for the issue-14 ratio targets (CPU, forward+backward).

Runs each case's steps round-robin in one process -- one call of every provider per round -- so the
load of a shared machine hits all providers alike, then prints per-provider median and spread
(min / max of the round times, ms) and the median ratio ``provider / fastpose``. The steps are the
benchmark harness's own (:func:`benchmarks._timing.make_step`), with its inputs
(:func:`benchmarks._cases.make_inputs`) and prepared peer arguments: the numbers are those the
suites would record, without pytest-benchmark around them. Not a test; the suites are the record.

Usage::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.perf_probe --threads 2 --rounds 15 \
        [--cases head8,head2,reproj,mse2d,sa2d] [--providers cpu,peer-compiled] [--json FILE]

``--json FILE`` also writes the medians in the results layout (``suite = "interleaved_probe"``, the
``peer-compiled`` rows marked as the baseline, the fastpose rows carrying the case's CPU target), so
``python -m benchmarks.report`` renders them next to the pytest-benchmark record and gives the
targets' verdict under interleaving: e.g. ``--json benchmarks/results/cpu-vm/interleaved_probe.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time

import torch

from benchmarks._cases import cases_for, make_inputs
from benchmarks._providers import prepare_args, provider_fn
from benchmarks._timing import make_step
from benchmarks.report import CPU_PEER_TARGETS

__all__ = ["CASES", "main"]

BASELINE = "peer-compiled"  # the provider the issue-14 targets are ratios against
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


def _target(name: str) -> float | None:
    """The CPU target ratio (fastpose vs compiled peer) of a probe case, from the report's table."""
    op, cid = CASES[name]
    for _text, t_op, (kind, sel), target in CPU_PEER_TARGETS:
        if t_op == op and (kind == "paper") == cid.startswith("paper") and (kind == "paper" or f"-{sel}x" in cid):
            return target
    return None


def _probe(name: str, providers: list[str], rounds: int) -> list[dict]:
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
    target = _target(name)
    records = []
    for p in providers:
        ts = times[p]
        med = statistics.median(ts)
        print(f"{name:7s} {p:15s} median {med:9.3f} ms  min {min(ts):9.3f}  max {max(ts):9.3f}  "
              f"ratio {med / base:6.2f}x", flush=True)
        info = {"suite": "interleaved_probe", "model": op, "config": cid, "provider": p, "device": "cpu",
                "threads": torch.get_num_threads(), "median_ms": med, "min_ms": min(ts), "max_ms": max(ts),
                "rounds": rounds, "baseline": p == BASELINE}
        if p != BASELINE and not p.startswith("peer") and target is not None:
            info["target"] = target
        records.append({"name": f"perf_probe[{name}-{p}]", "stats": {"median": med / 1e3, "min": min(ts) / 1e3,
                                                                      "max": max(ts) / 1e3, "rounds": rounds},
                        "extra_info": info})
    return records


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--providers", default="cpu,peer-compiled",
                    help="comma-separated; the first one is the ratio's denominator")
    ap.add_argument("--json", default=None, metavar="FILE",
                    help="also write the medians for python -m benchmarks.report (results layout)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    providers = [p.strip() for p in a.providers.split(",") if p.strip()]
    names = [n.strip() for n in a.cases.split(",") if n.strip()]
    for name in names:
        if name not in CASES:
            raise SystemExit(f"perf_probe: --cases: unknown {name!r}; expected some of {list(CASES)}")
    records = [r for name in names for r in _probe(name, providers, a.rounds)]
    if a.json:
        from benchmarks._machine import machine_record

        out = {"datetime": datetime.datetime.now(datetime.timezone.utc).isoformat(),
               "machine_info": machine_record("cpu"), "commit_info": {}, "benchmarks": records,
               "fastpose": {"perf_probe": " ".join(["--threads", str(a.threads), "--rounds", str(a.rounds),
                                                    "--cases", ",".join(names), "--providers", ",".join(providers)]),
                            "schema": 1}}
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"perf_probe: wrote {a.json}")


if __name__ == "__main__":
    main()
