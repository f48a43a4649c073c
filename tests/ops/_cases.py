"""Shared inputs and expectations for the generic op tests.

Every registered backend of every op is compared with the plain ``fastpose.reference`` math
differentiated by autograd (not with the ``reference`` backend's own analytic backward), so the
``reference`` backend is tested too.
"""

from __future__ import annotations

import torch

import fastpose.reference as R
from fastpose import ops
from fastpose.ops import _dispatch, _spec

# Sizes are small and odd: the Triton interpreter runs these in CI on 2 cores.
VOL = {"B": 2, "D": 5, "H": 6, "W": 7}
IMG = {"B": 2, "H": 9, "W": 11}
PTS = {"N": 3, "T": 5}
SIGMA = 1.7

# A real Human3.6M camera (54138969), normalised as in VideoPose3D: f' = 2f/w, c' = 2c/w - [1, h/w].
H36M_CAMERA = torch.tensor(_spec.H36M_CAMERA, dtype=torch.float64)


def backends(op: str, device: str = "cpu", dtype: torch.dtype = torch.float32) -> list[str]:
    """Registered backends of ``op`` that declare they serve ``device`` and ``dtype``."""
    out = []
    for be in _dispatch.available_backends(op):
        impl = _dispatch.get_impl(op, be)
        if (impl.devices is None or device in impl.devices) and dtype in impl.dtypes:
            out.append(be)
    return out


def make_inputs(op: str, gen: torch.Generator, dtype=torch.float32, j: int = 17, batch: int | None = None,
                scale: float = 1.0):
    """(main tensor, other args) for ``op`` from its declaration (fastpose.ops._spec.make_case) at
    the small odd sizes above; secondary tensors are float64 (the ops cast them)."""
    spec = _spec.spec(op)
    sizes = {"volume": (VOL["B"], (VOL["D"], VOL["H"], VOL["W"])), "image": (IMG["B"], (IMG["H"], IMG["W"])),
             "points": (PTS["N"], (PTS["T"],))}
    b, dims = sizes[spec.family]
    return _spec.make_case(op, gen, dtype, batch=b if batch is None else batch, j=j, dims=dims, sigma=SIGMA,
                           scale=scale)


def public(op: str):
    return getattr(ops, op)


def reference_fn(op: str):
    return getattr(R, op)


def as_outputs(out) -> tuple[torch.Tensor, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def run(fn, x: torch.Tensor, args, grad_seed: int = 0, **kwargs):
    """Outputs and d(sum_k c_k . out_k)/dx with fixed random cotangents c_k."""
    x = x.detach().clone().requires_grad_(True)
    outs = as_outputs(fn(x, *args, **kwargs))
    g = torch.Generator().manual_seed(grad_seed)
    loss = 0.0
    for o in outs:
        c = torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.dtype)
        loss = loss + (o * c).sum().double()
    (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(x)
    return [o.detach() for o in outs], grad


def cast_args(args, dtype):
    return tuple(a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
