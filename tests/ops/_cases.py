"""Shared inputs and expectations for the generic op tests.

Every registered backend of every op is compared with the plain ``fastpose.reference`` math
differentiated by autograd (not with the ``reference`` backend's own analytic backward), so the
``reference`` backend is tested too.
"""

from __future__ import annotations

import torch

import fastpose.reference as R
from fastpose import ops
from fastpose.ops import _dispatch

# Sizes are small and odd: the Triton interpreter runs these in CI on 2 cores.
VOL = {"B": 2, "D": 5, "H": 6, "W": 7}
IMG = {"B": 2, "H": 9, "W": 11}
PTS = {"N": 3, "T": 5}
SIGMA = 1.7

# A real Human3.6M camera (54138969), normalised as in VideoPose3D: f' = 2f/w, c' = 2c/w - [1, h/w].
H36M_CAMERA = torch.tensor([2.290099, 2.2875624, 0.02508307, 0.0289107, -0.20709892, 0.24777518,
                            -0.00307515, -0.0009757, -0.00142447], dtype=torch.float64)


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
    """(main tensor, other args) for ``op``; secondary tensors are float64 (the ops cast them)."""

    def rnd(*shape, s=1.0):
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * s

    if op in ("soft_argmax_3d", "heatmap_mse_3d", "soft_argmax_heatmap_mse_3d"):
        b = VOL["B"] if batch is None else batch
        shape = (b, j, VOL["D"], VOL["H"], VOL["W"])
        x = (rnd(*shape, s=scale)).to(dtype)
        mu = torch.rand(b, j, 3, generator=gen, dtype=torch.float64) * torch.tensor(
            [VOL["W"] - 1, VOL["H"] - 1, VOL["D"] - 1], dtype=torch.float64)
        w = torch.rand(b, j, generator=gen, dtype=torch.float64) + 0.5
        if op == "soft_argmax_3d":
            return x, ()
        if op == "heatmap_mse_3d":
            # heatmaps near the target scale so that sum h^2 - 2 sum h t + sum t^2 is exercised
            return (x * 0.3 + 0.2).to(dtype), (mu, SIGMA, w, "mean")
        return x, (mu, SIGMA, w)
    if op in ("soft_argmax_2d", "heatmap_mse_2d"):
        b = IMG["B"] if batch is None else batch
        x = rnd(b, j, IMG["H"], IMG["W"], s=scale).to(dtype)
        mu = torch.rand(b, j, 2, generator=gen, dtype=torch.float64) * torch.tensor(
            [IMG["W"] - 1, IMG["H"] - 1], dtype=torch.float64)
        w = torch.rand(b, j, generator=gen, dtype=torch.float64) + 0.5
        if op == "soft_argmax_2d":
            return x, ()
        return (x * 0.3 + 0.2).to(dtype), (mu, SIGMA, w, "mean")
    # projection ops: points in front of the camera, some beyond the clamp |xy/z| > 1
    n = PTS["N"] if batch is None else batch
    xy = rnd(n, PTS["T"], j, 2, s=0.6)
    z = torch.rand(n, PTS["T"], j, 1, generator=gen, dtype=torch.float64) * 3 + 1.5
    pts = torch.cat([xy * z / 2, z], -1).to(dtype)
    pts[..., 0, 0] = pts[..., 0, 2] * 1.5  # a clamped point (|x/z| > 1) in every pose
    cam = H36M_CAMERA.expand(n, 1, 9).clone()  # one camera per sequence, broadcast over T
    cam[..., :4] += rnd(n, 1, 4, s=0.01)
    if op == "project_to_2d":
        return pts, (cam,)
    kp = R.project_to_2d(pts.double(), cam) + rnd(n, PTS["T"], j, 2, s=0.05)
    w = torch.rand(n, PTS["T"], j, generator=gen, dtype=torch.float64) + 0.5
    return pts, (cam, kp, w)


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
