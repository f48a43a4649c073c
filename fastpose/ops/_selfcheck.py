"""A quick side-by-side check of every op on every available backend (``fastpose demo``/``bench``).

Each row runs one op forward+backward on a small random sample, compares outputs and gradients
with the ``reference`` backend, and times the call (median of a few host-timed runs: a smoke
figure, not a benchmark -- see ``benchmarks/`` for measured numbers).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from ._dispatch import available_backends, not_supported_reasons

__all__ = ["backend_table"]


def _samples(device: torch.device, generator: torch.Generator, size: str):
    """(op -> (callable(backend, main) -> outputs tuple, main tensor, args for reasons)): every
    declared op (fastpose/ops/_spec.py) on inputs from :func:`fastpose.ops._spec.make_case`."""
    from . import _spec

    if size == "small":
        sizes = {"volume": (2, 17, (8, 10, 12)), "image": (2, 17, (10, 12)), "points": (4, 17, (3,))}
    else:  # "seed": the CPU seed shapes of the kernel issues (volumes 8x18x64^3, 1024x243x17 points)
        sizes = {"volume": (8, 18, (64, 64, 64)), "image": (8, 18, (64, 64)), "points": (1024, 17, (243,))}
    out = {}
    for name, spec in _spec.SPECS.items():
        batch, j, dims = sizes[spec.family]
        x, args = _spec.make_case(name, generator, torch.float32, batch=batch, j=j, dims=dims, sigma=2.0,
                                  sec_dtype=torch.float32)
        x = x.to(device)
        args = tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)
        fn = getattr(_ops_module(), name)

        def call(be, t, _fn=fn, _args=args):
            outs = _fn(t, *_args, backend=be)
            return tuple(outs) if isinstance(outs, (tuple, list)) else (outs,)

        out[name] = (call, x, (x, *args))
    return out


def _ops_module():
    """fastpose.ops (imported late: this module is imported by it)."""
    from .. import ops

    return ops


def _run(fn: Callable, backend: str, x: torch.Tensor):
    x = x.detach().requires_grad_(True)
    outs = fn(backend, x)
    loss = sum((o.float() * (k + 1)).sum() for k, o in enumerate(outs))
    loss.backward()
    return [o.detach() for o in outs], x.grad


def backend_table(device: str | torch.device = "cpu", size: str = "small", seed: int = 0,
                  repeats: int = 3) -> list[dict]:
    """Rows ``{op, backend, status, max_abs_err, max_abs_grad_err, ms}`` for every op x backend.

    ``status`` is ``ok``, ``MISMATCH`` (outside 1e-3 relative of reference) or ``not supported: ...``.
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    rows: list[dict] = []
    for op, (fn, x, args) in _samples(device, gen, size).items():
        ref_out, ref_grad = _run(fn, "reference", x)
        for be in available_backends(op):
            reasons = not_supported_reasons(op, be, x, *args)
            if reasons:
                rows.append({"op": op, "backend": be, "status": "not supported: " + "; ".join(reasons),
                             "max_abs_err": None, "max_abs_grad_err": None, "ms": None})
                continue
            times = []
            for _ in range(max(1, repeats)):
                t0 = time.perf_counter()
                out, grad = _run(fn, be, x)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times.append((time.perf_counter() - t0) * 1e3)
            err = max(float((o.double() - r.double()).abs().max()) if o.numel() else 0.0
                      for o, r in zip(out, ref_out, strict=True))
            gerr = float((grad.double() - ref_grad.double()).abs().max()) if grad.numel() else 0.0
            scale = max([float(r.double().abs().max()) for r in ref_out if r.numel()] + [1.0])
            gscale = max(float(ref_grad.double().abs().max()) if ref_grad.numel() else 0.0, 1e-12)
            ok = err <= 1e-3 * scale and gerr <= 1e-3 * gscale + 1e-9
            rows.append({"op": op, "backend": be, "status": "ok" if ok else "MISMATCH",
                         "max_abs_err": err, "max_abs_grad_err": gerr, "ms": statistics.median(times)})
    return rows
