"""The training fast path of SPGNet's strided trunk: channels-last GEMMs and a cheap dropout mask.

Why: in training, :meth:`fastpose.models.SPGNet.forward` with ``strided=True`` computes every
window of R frames independently (VideoPose3D's ``TemporalModelOptimized1f``). With the input of a
layer exactly a multiple of its filter width ``w`` long and stride ``w``, the convolution is a
reshape plus one matrix product, so the trunk runs as GEMMs on row-major ``(rows, C)`` activations
(one row per window position, channels contiguous) with no transposes between layers:

* layer input ``(B, P, C)`` rows -> ``(B * P / w, w * C)`` (a view: the ``w`` consecutive positions a
  kernel reads are adjacent rows), times the conv weight ``(C_out, C_in, w)`` permuted to
  ``(C_out, w, C_in)`` and flattened to ``(C_out, w * C_in)``: ``y = x @ W^T``;
* a 1x1 convolution is ``y = x @ W[:, :, 0]^T``;
* the residual of a block is the centre row of every group of ``w``: ``x.view(-1, w, C)[:, w // 2]``;
* BatchNorm over ``(rows, C)`` normalises every channel over all rows, which is exactly the set of
  values ``nn.BatchNorm1d`` normalises over for ``(B, C, P)`` (same ``n``, so the same unbiased
  running variance); the modules themselves are called (their momentum, ``num_batches_tracked``,
  ``eps``).

Dropout (``_relu_dropout``): ``nn.Dropout``'s ``bernoulli_`` draws one random number per element
(~8 ms for 4608 x 256 on this project's 2-core CPU, more than the BatchNorm). Here the keep mask
comes from raw random bits of torch's generator (so ``torch.manual_seed`` still makes a run
reproducible): when ``256 p`` is an integer (``p = 0.25`` -> 64) one random *byte* ``u`` per
element, ``keep = u >= 256 p`` (exactly ``P(keep) = 1 - p``); otherwise one random 32-bit word,
``keep = u >= round(p 2^32)`` (``P(keep)`` within ``2^-32`` of ``1 - p``). The bits come 8 bytes per
draw (``int64.random_`` over the full range), ~20x cheaper than ``bernoulli_``. ReLU and dropout share
one float mask ``m = keep * step(z) / (1 - p)``: ``y = m * z``, ``dL/dz = m * dL/dy``.

Only the training forward of the strided path on the CPU uses this module; eval mode, the full
(dilated) path and other devices keep ``nn.Conv1d`` / ``nn.BatchNorm1d`` / ``nn.Dropout`` unchanged
(export, ``predict`` and checkpoints depend on them; the GPU speed of this form is unmeasured).
Everything is plain torch: it autocasts (bfloat16), compiles (``torch.compile`` traces the mask
draw, so a seeded compiled run draws the eager run's masks) and runs under DDP.

Measured (27 frames, 256 channels, 512 windows, dropout 0.25, forward + backward of the trunk and
heads, 2 threads, interleaved, a shared and busy 2-core VM): 1.6-1.9x the ``nn.Conv1d`` path (e.g.
165 -> 103 ms under load); the matrix products are then ~75 % of the time (~100 GFLOP/s, MKL),
BatchNorm ~7 %, the dropout mask + ReLU ~5 %.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["strided_trunk_rows"]  # the entry point fastpose.models.spgnet uses; the rest is private


def _dropout_mask(shape: tuple[int, ...], p: float, device: torch.device) -> torch.Tensor:
    """The scaled dropout mask: float32 of ``shape``, each element ``1 / (1 - p)`` with probability
    ``1 - p``, else 0, from raw random bits (see the module docstring); ``p`` in (0, 1). Draws from
    torch's default generator of ``device`` (``torch.manual_seed`` reproduces it).

    With ``t = 256 p`` an integer, a random byte ``u`` is kept iff ``u >= t``, computed in float
    arithmetic as ``clamp(u - (t - 1), 0, 1)`` (exact: u is an integer; on the CPU a uint8 -> float
    conversion and three float passes cost ~1/6 of a bool comparison plus a bool -> float
    conversion). Otherwise a random 32-bit word ``u`` is kept iff ``u >= round(p 2^32)``."""
    n = math.prod(shape)
    scale = 1.0 / (1.0 - p)
    byte_threshold = p * 256.0
    if byte_threshold == int(byte_threshold):  # exact with one byte per element
        words = torch.empty((n + 7) // 8, dtype=torch.int64, device=device).random_(-(2**63), None)
        u = words.view(torch.uint8)[:n].view(shape)
        return u.to(torch.float32).sub_(int(byte_threshold) - 1).clamp_(0.0, 1.0).mul_(scale)
    # one 32-bit word per element: u uniform on [0, 2^32); as int32 s = u - 2^31
    words = torch.empty((n + 1) // 2, dtype=torch.int64, device=device).random_(-(2**63), None)
    s = words.view(torch.int32)[:n].view(shape)
    threshold = round(p * 2.0**32) - 2**31
    return (s >= threshold).to(torch.float32).mul_(scale)


class _ReLUDropout(torch.autograd.Function):
    """``y = relu(z) * k`` with k the scaled dropout mask (0 or 1 / (1 - p)); backward
    ``dL/dz = dL/dy * m`` with ``m = k * step(z)`` (``step(z) = sign(relu(z))``, 0 or 1), the one
    saved tensor: ReLU and dropout in one product each way, no bool tensors (slow on the CPU)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, k: torch.Tensor, inplace: bool) -> torch.Tensor:
        # in place when z is a BatchNorm output, which its backward does not read (no fresh pages)
        if inplace:
            ctx.mark_dirty(z)
            r = z.relu_()
        else:
            r = torch.relu(z)
        m = k.mul_(torch.sign(r))  # k is this call's own mask (_relu_dropout made it)
        ctx.save_for_backward(m)
        return r.mul_(m)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (m,) = ctx.saved_tensors
        return g * m, None, None


class _GroupedLinear(torch.autograd.Function):
    """A stride-``w`` convolution of channels-last rows and the block's residual tap, one node:

    h (rows, C) -> z = h.view(rows / w, w C) @ wmat^T (rows / w, C_out), res = h.view(rows / w, w, C)[:, w // 2].

    Backward: ``dh = (dz @ wmat).view(rows, C)`` with ``dres`` added in place at the centre rows,
    ``dwmat = dz^T @ h.view(rows / w, w C)``. Written out so the residual's gradient lands in the
    matrix product's output: autograd would build a zero tensor of h's size for the slice's
    gradient and add the two (two extra full-size tensors, ~5 % of a training step)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, h: torch.Tensor, wmat: torch.Tensor, w: int):
        rows, C = h.shape
        hg = h.view(rows // w, w * C)
        ctx.save_for_backward(hg, wmat)
        ctx.w = w
        return F.linear(hg, wmat), h.view(rows // w, w, C)[:, w // 2].clone()

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, g_z: torch.Tensor, g_res: torch.Tensor | None):
        hg, wmat = ctx.saved_tensors
        w = ctx.w
        dh = dw = None
        if ctx.needs_input_grad[0]:
            dh = torch.mm(g_z, wmat.to(g_z.dtype))  # (rows / w, w C)
            if g_res is not None:
                dh.view(hg.shape[0], w, -1)[:, w // 2] += g_res
            dh = dh.view(-1, hg.shape[1] // w)
        if ctx.needs_input_grad[1]:
            dw = torch.mm(g_z.t(), hg.to(g_z.dtype))
        return dh, dw, None


def _relu_dropout(z: torch.Tensor, p: float, inplace: bool = False) -> torch.Tensor:
    """Training-mode ``dropout(relu(z), p)`` with the cheap mask; z (rows, C) any float dtype.
    ``inplace``: overwrite z (only for a z that no backward reads, e.g. a BatchNorm output)."""
    if p == 0.0:
        return torch.relu_(z) if inplace else F.relu(z)
    return _ReLUDropout.apply(z, _dropout_mask(tuple(z.shape), p, z.device), inplace)


def _conv_as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """Conv1d weight (C_out, C_in, w) -> (C_out, w * C_in), column ``k * C_in + c`` = ``weight[:, c, k]``
    (the order of a row of ``w`` adjacent positions of channels-last input)."""
    c_out, c_in, w = weight.shape
    if w == 1:
        return weight.view(c_out, c_in)
    return weight.permute(0, 2, 1).reshape(c_out, w * c_in)


def _bn_relu_drop(bn: nn.BatchNorm1d, x: torch.Tensor, p: float) -> torch.Tensor:
    """``dropout(relu(bn(x)))`` in training mode for rows x (rows, C)."""
    return _relu_dropout(bn(x), p, inplace=True)


def strided_trunk_rows(model, x: torch.Tensor) -> torch.Tensor:
    """The strided trunk of ``model`` (an :class:`~fastpose.models.SPGNet` in training mode) in
    channels-last GEMM form.

    x: (N, T, J*2) keypoints, T >= R -> (N * W, C) features of the W = T - R + 1 windows (row
    ``n * W + t`` = window starting at frame t of sample n), equal to
    ``model._trunk_strided`` on the unfolded windows up to float summation order (and the dropout
    mask, drawn differently).
    """
    fw = model.config.filter_widths
    R = model.receptive_field
    p = float(model.drop.p)
    N, T, D = x.shape
    W = T - R + 1
    # windows (N, W, R * D) (overlapping view) -> rows of fw[0] adjacent frames: (N * W * R / fw0, fw0 * D)
    rows = x.reshape(N, T * D).unfold(1, R * D, D).reshape(N * W * (R // fw[0]), fw[0] * D)
    h = _bn_relu_drop(model.expand_bn, F.linear(rows, _conv_as_matrix(model.expand_conv.weight)), p)
    for i in range(len(fw) - 1):
        w = fw[i + 1]
        # w adjacent positions of a window per row times the conv matrix; the centre of every group
        z, res = _GroupedLinear.apply(h, _conv_as_matrix(model.layers_conv[2 * i].weight), w)
        h = _bn_relu_drop(model.layers_bn[2 * i], z, p)
        h = res + _bn_relu_drop(model.layers_bn[2 * i + 1],
                                F.linear(h, _conv_as_matrix(model.layers_conv[2 * i + 1].weight)), p)
    return h  # (N * W, C)
