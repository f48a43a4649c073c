"""CUDA-graph capture of every public op on every GPU backend, checked against eager.

    python -m benchmarks.cuda_graphs [--device cuda|cpu] [--cases tiny|paper] [--json OUT.json]

For each op of :data:`fastpose.ops._dispatch.OPS` and each backend registered for the device
(``cuda``, ``triton``; on the CPU: ``cpu``), one training step -- the op's forward on a static
input that requires grad, then ``torch.autograd.grad`` of its outputs with fixed cotangents -- is

1. warmed up eagerly on a side stream (Triton compiles and autotunes here, the caching allocator
   sees every shape; a capture must not compile),
2. captured into a ``torch.cuda.CUDAGraph`` (which fails on any host synchronisation or host
   allocation inside the op, e.g. a ``.item()`` in validation or a CPU tensor made per call),
3. replayed after fresh values are copied into the static inputs, twice, and its outputs and
   gradient compared with an eager call of the same backend on the same values: they must be
   equal to within 1e-6 of the output scale (the same kernels on the same data; exact equality is
   reported separately, ``bitwise``), and finite.

Inputs and cotangents are those of the benchmark cases (:mod:`benchmarks._cases`): ``tiny`` (odd
sizes, seconds) or ``paper`` (the papers' shapes). On the CPU there are no CUDA graphs: the same
steps run with the capture replaced by a plain call on the static buffers (``mode = "emulated"``),
which checks this script's own plumbing (static buffers, refill, comparison) where CI can run it.

Exit status 0 when every (op, backend) passed, 1 otherwise; ``--json`` writes one record per pair.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

import torch

from benchmarks._cases import cases_for, cotangents, make_inputs
from fastpose import ops as _ops
from fastpose.ops import _dispatch

__all__ = ["capture_and_replay", "main", "run_all"]

_TOL = 1e-6  # relative to max |eager output|: same kernels, same data


def _backends(op: str, device: str) -> list[str]:
    out = []
    for be in _dispatch.available_backends(op):
        impl = _dispatch.get_impl(op, be)
        if be != "reference" and (impl.devices is None or device in impl.devices):
            out.append(be)
    return out


def _as_list(out) -> list[torch.Tensor]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _step_fn(op: str, backend: str, x: torch.Tensor, args: tuple, cots: list[torch.Tensor]) -> Callable:
    """step() -> [outputs..., dL/dx] for static ``x`` (requires grad) and static ``args``."""
    fn = getattr(_ops, op)

    def step() -> list[torch.Tensor]:
        outs = _as_list(fn(x, *args, backend=backend))
        (grad,) = torch.autograd.grad(outs, x, cots)
        return [o.detach() for o in outs] + [grad]

    return step


def _refill(static: list[torch.Tensor], fresh: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for s, f in zip(static, fresh, strict=True):
            s.copy_(f)


def _compare(got: list[torch.Tensor], want: list[torch.Tensor]) -> tuple[float, bool]:
    """(max |got - want| / max |want| over all tensors, bitwise equal)."""
    worst, bitwise = 0.0, True
    for g, w in zip(got, want, strict=True):
        if g.shape != w.shape or g.dtype != w.dtype:
            raise AssertionError(f"shape/dtype {tuple(g.shape)}/{g.dtype} != eager {tuple(w.shape)}/{w.dtype}")
        if not bool(torch.isfinite(g).all()):
            raise AssertionError("non-finite values after replay")
        scale = max(float(w.abs().max()), 1e-30) if w.numel() else 1.0
        diff = float((g.double() - w.double()).abs().max()) if w.numel() else 0.0
        worst = max(worst, diff / scale)
        bitwise = bitwise and torch.equal(g, w)
    return worst, bitwise


def capture_and_replay(op: str, backend: str, case, device: torch.device, warmup: int = 3) -> dict:
    """Capture one (op, backend) step after warm-up, replay on fresh inputs, compare with eager.

    Returns a record: op, backend, case, mode ("cuda_graph" or "emulated"), max_rel_diff, bitwise,
    capture_ms, replay_ms, eager_ms. Raises AssertionError when a replay differs from eager.
    """
    x0, args = make_inputs(case, device, seed=0)
    x1, args1 = make_inputs(case, device, seed=1)  # the fresh values of the replays
    cots = cotangents(case, device, x0.dtype)
    x = x0.detach().clone().requires_grad_(True)
    static_args = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
    step = _step_fn(op, backend, x, static_args, cots)
    tensors_static = [x] + [a for a in static_args if isinstance(a, torch.Tensor)]
    tensors_fresh = [x1] + [a for a in args1 if isinstance(a, torch.Tensor)]
    rec = {"op": op, "backend": backend, "case": case.id, "device": device.type}
    if device.type == "cuda":
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                step()
        torch.cuda.current_stream(device).wait_stream(side)
        torch.cuda.synchronize(device)
        graph = torch.cuda.CUDAGraph()
        t0 = time.perf_counter()
        with torch.cuda.graph(graph):
            static_out = step()
        torch.cuda.synchronize(device)
        rec["capture_ms"] = (time.perf_counter() - t0) * 1e3

        def replay() -> list[torch.Tensor]:
            graph.replay()
            return [o.clone() for o in static_out]

        rec["mode"] = "cuda_graph"
    else:
        for _ in range(warmup):
            step()
        replay = step  # no graphs on the CPU: a plain call on the static buffers
        rec["mode"] = "emulated"
    _refill(tensors_static, tensors_fresh)
    t0 = time.perf_counter()
    first = replay()
    second = replay()  # a graph replays repeatably on the same inputs
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    rec["replay_ms"] = (time.perf_counter() - t0) * 1e3 / 2
    # eager on the same fresh values, through a separate input tensor
    xe = x1.detach().clone().requires_grad_(True)
    t0 = time.perf_counter()
    eager = _step_fn(op, backend, xe, args1, cots)()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    rec["eager_ms"] = (time.perf_counter() - t0) * 1e3
    rel, bitwise = _compare(first, eager)
    rel2, _ = _compare(second, first)
    rec.update(max_rel_diff=rel, bitwise=bitwise, replay_repeat_rel_diff=rel2)
    if not (rel <= _TOL and rel2 <= _TOL):
        raise AssertionError(f"{op} on {backend}: replay differs from eager by {rel:.3e} (repeat {rel2:.3e}) "
                             f"x max|eager| > {_TOL}")
    return rec


def run_all(device: str, cases: str = "tiny", ops_filter: list[str] | None = None) -> list[dict]:
    """Every (op, backend) of ``device``; failures are records with ``error`` (never raised)."""
    dev = torch.device(device)
    records = []
    for op in _dispatch.OPS:
        if ops_filter and op not in ops_filter:
            continue
        try:
            case = cases_for(op, device, cases)[0]
        except ValueError as exc:  # an op without benchmark cases: say so, as a failure
            records.append({"op": op, "backend": "-", "error": f"no benchmark case: {exc}"})
            continue
        for be in _backends(op, device):
            x, a = make_inputs(case, dev)
            reasons = _dispatch.not_supported_reasons(op, be, x, x, *a)
            if reasons:
                records.append({"op": op, "backend": be, "case": case.id, "skipped": "; ".join(reasons)})
                continue
            try:
                records.append(capture_and_replay(op, be, case, dev))
            except Exception as exc:  # recorded, the run goes on to the next pair
                records.append({"op": op, "backend": be, "case": case.id, "error": f"{type(exc).__name__}: {exc}"})
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.cuda_graphs", description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    ap.add_argument("--cases", default="tiny", choices=("tiny", "paper"), help="input shapes (default tiny)")
    ap.add_argument("--ops", default="", help="comma-separated subset of the ops (default: all)")
    ap.add_argument("--json", default=None, help="write the records to this file")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("benchmarks.cuda_graphs: --device cuda, but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    records = run_all(args.device, args.cases, [o for o in args.ops.split(",") if o] or None)
    for r in records:
        if "error" in r:
            status = f"FAIL {r['error']}"
        elif "skipped" in r:
            status = f"skipped: {r['skipped']}"
        else:
            status = (f"ok ({r['mode']}, max rel diff {r['max_rel_diff']:.1e}, bitwise {r['bitwise']}, "
                      f"replay {r['replay_ms']:.3f} ms, eager {r['eager_ms']:.3f} ms)")
        print(f"{r['op']:<28} {r['backend']:<8} {status}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "cases": args.cases, "records": records}, f, indent=2)
    failed = [r for r in records if "error" in r]
    print(f"{len(records) - len(failed)} of {len(records)} (op, backend) pairs passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
