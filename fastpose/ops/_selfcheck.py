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
    """(op -> (callable(backend) -> outputs tuple, main tensor, args for reasons))."""
    from . import (
        heatmap_mse_2d,
        heatmap_mse_3d,
        project_to_2d,
        reprojection_loss,
        soft_argmax_2d,
        soft_argmax_3d,
        soft_argmax_heatmap_mse_3d,
    )

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=generator) * scale).to(device)

    if size == "small":
        b, j, d, h, w, n, t = 2, 17, 8, 10, 12, 4, 9
    else:  # "seed": the CPU seed shapes of the kernel issues
        b, j, d, h, w, n, t = 8, 18, 64, 64, 64, 1024, 243
    vol = rnd(b, j, d, h, w)
    img = rnd(b, j, h, w)
    joints3 = (torch.rand(b, j, 3, generator=generator) * torch.tensor([w - 1, h - 1, d - 1])).to(device)
    joints2 = joints3[..., :2].contiguous()
    pts = torch.cat([rnd(n, t if size == "seed" else 3, 17, 2, scale=0.3),
                     (torch.rand(n, t if size == "seed" else 3, 17, 1, generator=generator) * 3 + 2).to(device)], -1)
    cam = torch.tensor([1.1, 1.1, 0.02, -0.01, -0.2, 0.24, -0.003, -0.001, -0.0014]).to(device)
    cam = cam.expand(n, 1, 9).contiguous()  # one camera per sample, broadcast over T
    kp = rnd(*pts.shape[:-1], 2, scale=0.3)

    return {
        "soft_argmax_2d": (lambda be, x: (soft_argmax_2d(x, backend=be),), img, (img,)),
        "soft_argmax_3d": (lambda be, x: (soft_argmax_3d(x, backend=be),), vol, (vol,)),
        "heatmap_mse_2d": (lambda be, x: (heatmap_mse_2d(x, joints2, 2.0, backend=be),), img,
                           (img, joints2, 2.0, None, "mean")),
        "heatmap_mse_3d": (lambda be, x: (heatmap_mse_3d(x, joints3, 2.0, backend=be),), vol,
                           (vol, joints3, 2.0, None, "mean")),
        "soft_argmax_heatmap_mse_3d": (lambda be, x: soft_argmax_heatmap_mse_3d(x, joints3, 2.0, backend=be),
                                       vol, (vol, joints3, 2.0, None)),
        "project_to_2d": (lambda be, x: (project_to_2d(x, cam, backend=be),), pts, (pts, cam)),
        "reprojection_loss": (lambda be, x: (reprojection_loss(x, cam, kp, backend=be),), pts,
                              (pts, cam, kp, None)),
    }


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
