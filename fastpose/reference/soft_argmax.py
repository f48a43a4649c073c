"""Soft-argmax over 2D / 3D heatmap volumes: the reference math.

For one joint with logits ``z_v`` over the voxels ``v`` of a volume, the soft-argmax is the
expectation of the voxel index under the softmax distribution::

    m        = max_v z_v,   s = sum_v exp(z_v - m),   p_v = exp((z_v - m) - log s)
    coords_k = sum_v p_v * v_k        k = x (last axis W), y (H), z (D)

Coordinates are in voxel index units, so ``coords_x`` lies in ``[0, W - 1]``. The output is
ordered ``(x, y)`` in 2D and ``(x, y, z)`` in 3D, i.e. from the last array axis to the first.

Numerical stability: ``exp`` is always taken of ``z - max(z)`` (never of ``z`` itself), so logits of
``+-1e4`` neither overflow nor produce ``0 / 0``. float16 / bfloat16 inputs are computed in float32
and the public outputs are returned in the input dtype; float64 stays float64 (for gradcheck).

Saved state (the same layout on every backend, see docs/ops.md): ``stats`` (B, J, 5) in the
accumulation dtype, ``[m, log s, c_x, c_y, c_z]`` (``c_z = 0`` in 2D). ``m`` and ``log s`` are kept
apart rather than summed into ``lse = m + log s``: for logits of magnitude 1e4 one float32 ulp of
``lse`` is already 1e-3, which ``exp(z - lse)`` would turn into a 1e-3 relative error of ``p``.

Gradient (used by :func:`soft_argmax_backward` and by every fast backend)::

    d coords_k / d z_v = p_v * (v_k - coords_k)
    =>  dL/dz_v = p_v * sum_k g_k * (v_k - coords_k),     g = dL/dcoords

The bracket is a sum of one per-axis vector per spatial axis, so it is formed by broadcasting
three small vectors, never by materialising index grids. Forward and backward run on chunks of
whole (b, j) rows (:mod:`fastpose.reference._rows`), so their temporaries stay chunk-sized.
"""

from __future__ import annotations

import math

import torch

from fastpose.reference._rows import acc_dtype, eager, map_rows, row_chunks

__all__ = [
    "soft_argmax_2d",
    "soft_argmax_3d",
    "soft_argmax_forward",
    "soft_argmax_backward",
]


NSTATS = 5  # stats per (b, j): m, log s, c_x, c_y, c_z


def _axis_view(vec: torch.Tensor, axis: int, ndim: int) -> torch.Tensor:
    """Reshape a per-axis vector (..., S_axis) so it broadcasts along spatial ``axis`` of an
    ``ndim``-dimensional volume (..., S_0, ..., S_{ndim-1}); ``axis`` counts array axes (0 = D/H)."""
    # (..., S_axis) -> (..., 1, .., S_axis, .., 1) with S_axis at position ``axis`` of the volume dims
    return vec.reshape(vec.shape[:-1] + (1,) * axis + (vec.shape[-1],) + (1,) * (ndim - 1 - axis))


def _soft_argmax_acc(z: torch.Tensor, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-argmax of logits ``z`` (..., *S) already in the accumulation dtype, in one piece.

    Returns (coords (..., ndim) ordered x, y[, z]; stats (..., 5) = [m, log s, c_x, c_y, c_z]),
    both in ``z``'s dtype.
    """
    dims = tuple(range(-ndim, 0))  # the spatial dims, e.g. (-3, -2, -1)
    # The max is only a shift that makes exp() safe; the results do not depend on it, so it is
    # detached: autograd then sees exactly p = e / s (and lse' = p), without amax sub-gradients.
    m = z.amax(dim=dims, keepdim=True).detach()  # (..., 1, .., 1)
    e = z - m
    e = e.exp_() if eager(e) else e.exp()  # (..., *S) unnormalised probabilities, max entry exactly 1
    coords = []  # unnormalised x, y[, z] sums, each (...)
    rest = e  # (..., S_0, .., S_a): the volume with the axes already handled summed out
    for a in range(ndim - 1, -1, -1):  # array axis a = ndim-1 is x (W), then y (H), then z (D)
        size = rest.shape[-1]  # S_a
        # marginal along the last remaining axis: sum over every other remaining spatial axis
        marginal = rest.sum(dim=tuple(range(-a - 1, -1))) if a > 0 else rest  # (..., S_a)
        idx = torch.arange(size, device=z.device, dtype=z.dtype)  # (S_a,) voxel indices
        coords.append(marginal @ idx)  # (...,) unnormalised sum_v e_v * v_a
        if a > 0:
            rest = rest.sum(dim=-1)  # (..., S_0, .., S_{a-1}) drop the axis just handled
    s = marginal.sum(dim=-1)  # (...,) sum_v e_v, from the axis-0 marginal the loop ended on
    out = torch.stack(coords, dim=-1) / s.unsqueeze(-1)  # (..., ndim) E[x], E[y][, E[z]]
    pad = [torch.zeros_like(s)] * (3 - ndim)  # c_z = 0 in 2D
    stats = torch.stack([m.reshape(s.shape), torch.log(s), *out.unbind(-1), *pad], dim=-1)  # (..., 5)
    return out, stats


def _soft_argmax_rows(logits: torch.Tensor, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_soft_argmax_acc` of ``logits`` (B, J, *S), any float dtype, on chunks of rows (each
    converted to the accumulation dtype on its own). Returns (B, J, ndim), (B, J, 5) in acc."""
    acc = acc_dtype(logits.dtype)
    spatial = tuple(logits.shape[-ndim:])
    lead = logits.shape[: logits.dim() - ndim]
    rows, n_vox = math.prod(lead), math.prod(spatial)
    zr = logits.reshape((rows,) + spatial)  # (R, *S) a view for contiguous input

    def chunk(r0: int, r1: int) -> torch.Tensor:
        coords, stats = _soft_argmax_acc(zr[r0:r1].to(acc), ndim)  # (R_c, ndim), (R_c, 5)
        return torch.cat([coords, stats], dim=-1)  # (R_c, ndim + 5)

    both = map_rows(chunk, rows, n_vox, logits)  # (R, ndim + 5)
    # clones: both are tiny, and the outputs of a custom op must not alias each other
    return both[:, :ndim].reshape(lead + (ndim,)).clone(), both[:, ndim:].reshape(lead + (NSTATS,)).clone()


def soft_argmax_forward(logits: torch.Tensor, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-argmax forward for backends that store what their analytic backward needs.

    Args:
        logits: (B, J, *S) with ``len(S) == ndim`` (ndim 2: (H, W); ndim 3: (D, H, W)); any
            leading dims are accepted.
        ndim: 2 or 3, the number of spatial axes.

    Returns:
        coords: (B, J, ndim) ordered (x, y[, z]) in voxel units, in the accumulation dtype
            (float32, or float64 for float64 input).
        stats: (B, J, 5) ``[m, log s, c_x, c_y, c_z]`` in the accumulation dtype (the saved state of
            every backend), so that the backward can rebuild ``p = exp((logits - m) - log s)``
            without storing the probability volume.
    """
    return _soft_argmax_rows(logits, ndim)  # (B, J, ndim), (B, J, 5)


def _soft_argmax_backward_acc(
    grad_coords: torch.Tensor, z: torch.Tensor, stats: torch.Tensor, ndim: int
) -> torch.Tensor:
    """Analytic gradient in the accumulation dtype of ``z`` (R, *S) from ``stats`` (R, 5) and
    ``grad_coords`` (R, ndim); see the module docstring."""
    acc = z.dtype
    g = grad_coords.to(acc)  # (R, ndim)
    st = stats.to(acc)  # (R, 5)
    c = st[..., 2 : 2 + ndim]  # (R, ndim)
    one = (1,) * ndim
    p = (z - st[..., 0].reshape(st.shape[:-1] + one)).sub_(st[..., 1].reshape(st.shape[:-1] + one)).exp_()
    bracket = None  # (..., *S) after the loop: sum_k g_k * (v_k - c_k), built by broadcasting
    for k in range(ndim):  # coordinate k (x, y, z) lives on array axis ndim - 1 - k
        axis = ndim - 1 - k  # 0 = outermost spatial axis
        size = z.shape[z.dim() - ndim + axis]  # S_axis
        idx = torch.arange(size, device=z.device, dtype=acc)  # (S_axis,)
        term = g[..., k : k + 1] * (idx - c[..., k : k + 1])  # (..., S_axis) g_k (v_k - c_k)
        term = _axis_view(term, axis, ndim)  # (..., 1.., S_axis, ..1)
        bracket = term if bracket is None else bracket + term  # broadcasts up to (..., *S)
    return p.mul_(bracket)  # (R, *S) dL/dz, in place on the fresh softmax


def soft_argmax_backward(
    grad_coords: torch.Tensor | None,
    logits: torch.Tensor,
    stats: torch.Tensor,
) -> torch.Tensor:
    """Analytic gradient of the soft-argmax (no autograd)::

        p_v = exp((z_v - m) - log s);   dL/dz_v = p_v * sum_k g_k * (v_k - c_k)

    Args:
        grad_coords: (B, J, ndim) dL/dcoords, any float dtype, or None (treated as zeros).
        logits: (B, J, *S) the forward input (``len(S) == grad_coords.shape[-1]``).
        stats: (B, J, 5) ``[m, log s, c_x, c_y, c_z]`` from :func:`soft_argmax_forward`.

    Returns:
        (B, J, *S) dL/dlogits in ``logits``' dtype, computed chunk by chunk of rows (the only
        volume-sized allocation is the result).
    """
    out = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
    if grad_coords is None:
        return out.zero_()  # no gradient reached the coordinates
    ndim = grad_coords.shape[-1]
    return _backward_into(out, logits, ndim, lambda r0, r1, z: _soft_argmax_backward_acc(
        grad_coords.reshape(-1, ndim)[r0:r1], z, stats.reshape(-1, NSTATS)[r0:r1], ndim))


def _backward_into(out: torch.Tensor, logits: torch.Tensor, ndim: int, fn) -> torch.Tensor:
    """Fill ``out`` (B, J, *S) chunk by chunk of rows with ``fn(r0, r1, z)``, ``z`` the chunk's logits
    in the accumulation dtype (R_c, *S); returns ``out``."""
    acc = acc_dtype(logits.dtype)
    spatial = tuple(logits.shape[-ndim:])
    rows = math.prod(logits.shape[: logits.dim() - ndim])
    zr = logits.reshape((rows,) + spatial)  # (R, *S)
    outr = out.view((rows,) + spatial)  # out is fresh and contiguous: a view
    for r0, r1 in row_chunks(rows, math.prod(spatial), logits):
        outr[r0:r1].copy_(fn(r0, r1, zr[r0:r1].to(acc)))
    return out


def soft_argmax_2d(logits: torch.Tensor) -> torch.Tensor:
    """2D soft-argmax: logits (B, J, H, W) -> (B, J, 2) = (E[x], E[y]) in pixel index units,
    under a softmax over the H*W map of each joint. Differentiable by autograd."""
    coords, _ = soft_argmax_forward(logits, 2)  # (B, J, 2) accumulation dtype
    return coords.to(logits.dtype)  # (B, J, 2)


def soft_argmax_3d(logits: torch.Tensor) -> torch.Tensor:
    """3D soft-argmax: logits (B, J, D, H, W) -> (B, J, 3) = (E[x], E[y], E[z]) in voxel index
    units, under a softmax over the D*H*W volume of each joint. Differentiable by autograd."""
    coords, _ = soft_argmax_forward(logits, 3)  # (B, J, 3) accumulation dtype
    return coords.to(logits.dtype)  # (B, J, 3)
