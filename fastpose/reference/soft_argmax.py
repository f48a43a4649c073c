"""Soft-argmax over 2D / 3D heatmap volumes: the reference math.

For one joint with logits ``z_v`` over the voxels ``v`` of a volume, the soft-argmax is the
expectation of the voxel index under the softmax distribution::

    p_v      = exp(z_v - lse),        lse = log sum_v exp(z_v)
    coords_k = sum_v p_v * v_k        k = x (last axis W), y (H), z (D)

Coordinates are in voxel index units, so ``coords_x`` lies in ``[0, W - 1]``. The output is
ordered ``(x, y)`` in 2D and ``(x, y, z)`` in 3D, i.e. from the last array axis to the first.

Numerical stability: ``exp`` is always taken of ``z - max(z)`` (never of ``z`` itself), so logits of
``+-1e4`` neither overflow nor produce ``0 / 0``. float16 / bfloat16 inputs are computed in float32
and the public outputs are returned in the input dtype; float64 stays float64 (for gradcheck).

Gradient (used by :func:`soft_argmax_backward` and by every fast backend)::

    d coords_k / d z_v = p_v * (v_k - coords_k)
    =>  dL/dz_v = p_v * sum_k g_k * (v_k - coords_k),     g = dL/dcoords

The bracket is a sum of one per-axis vector per spatial axis, so it is formed by broadcasting
three small vectors, never by materialising index grids.
"""

from __future__ import annotations

import torch

__all__ = [
    "soft_argmax_2d",
    "soft_argmax_3d",
    "soft_argmax_forward",
    "soft_argmax_backward",
]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: float64 stays float64, everything else is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _axis_view(vec: torch.Tensor, axis: int, ndim: int) -> torch.Tensor:
    """Reshape a per-axis vector (..., S_axis) so it broadcasts along spatial ``axis`` of an
    ``ndim``-dimensional volume (..., S_0, ..., S_{ndim-1}); ``axis`` counts array axes (0 = D/H)."""
    # (..., S_axis) -> (..., 1, .., S_axis, .., 1) with S_axis at position ``axis`` of the volume dims
    return vec.reshape(vec.shape[:-1] + (1,) * axis + (vec.shape[-1],) + (1,) * (ndim - 1 - axis))


def _soft_argmax_acc(z: torch.Tensor, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-argmax of logits ``z`` (..., *S) already in the accumulation dtype.

    Returns (coords (..., ndim) ordered x, y[, z]; lse (...)), both in ``z``'s dtype.
    """
    dims = tuple(range(-ndim, 0))  # the spatial dims, e.g. (-3, -2, -1)
    # The max is only a shift that makes exp() safe; the results do not depend on it, so it is
    # detached: autograd then sees exactly p = e / s (and lse' = p), without amax sub-gradients.
    m = z.amax(dim=dims, keepdim=True).detach()  # (..., 1, .., 1)
    e = torch.exp(z - m)  # (..., *S) unnormalised probabilities, max entry exactly 1
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
    lse = m.reshape(s.shape) + torch.log(s)  # (...,) log sum_v exp(z_v)
    return out, lse


def soft_argmax_forward(logits: torch.Tensor, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-argmax forward for backends that store what their analytic backward needs.

    Args:
        logits: (B, J, *S) with ``len(S) == ndim`` (ndim 2: (H, W); ndim 3: (D, H, W)); any
            leading dims are accepted.
        ndim: 2 or 3, the number of spatial axes.

    Returns:
        coords: (B, J, ndim) ordered (x, y[, z]) in voxel units, in the accumulation dtype
            (float32, or float64 for float64 input).
        lse: (B, J) ``log sum_v exp(logits_v)`` in the accumulation dtype, so that the backward can
            rebuild ``p = exp(logits - lse)`` without storing the probability volume.
    """
    z = logits.to(_compute_dtype(logits.dtype))  # (B, J, *S) accumulation dtype
    return _soft_argmax_acc(z, ndim)  # (B, J, ndim), (B, J)


def _soft_argmax_backward_acc(
    grad_coords: torch.Tensor | None, z: torch.Tensor, coords: torch.Tensor, lse: torch.Tensor
) -> torch.Tensor:
    """Analytic gradient in the accumulation dtype of ``z`` (..., *S); see the module docstring."""
    ndim = coords.shape[-1]
    if grad_coords is None:
        return torch.zeros_like(z)  # (..., *S) no gradient reached the coordinates
    acc = z.dtype
    g = grad_coords.to(acc)  # (..., ndim)
    c = coords.to(acc)  # (..., ndim)
    p = torch.exp(z - lse.to(acc).reshape(lse.shape + (1,) * ndim))  # (..., *S) softmax
    bracket = None  # (..., *S) after the loop: sum_k g_k * (v_k - c_k), built by broadcasting
    for k in range(ndim):  # coordinate k (x, y, z) lives on array axis ndim - 1 - k
        axis = ndim - 1 - k  # 0 = outermost spatial axis
        size = z.shape[z.dim() - ndim + axis]  # S_axis
        idx = torch.arange(size, device=z.device, dtype=acc)  # (S_axis,)
        term = g[..., k : k + 1] * (idx - c[..., k : k + 1])  # (..., S_axis) g_k (v_k - c_k)
        term = _axis_view(term, axis, ndim)  # (..., 1.., S_axis, ..1)
        bracket = term if bracket is None else bracket + term  # broadcasts up to (..., *S)
    return p * bracket  # (..., *S) dL/dz


def soft_argmax_backward(
    grad_coords: torch.Tensor | None,
    logits: torch.Tensor,
    coords: torch.Tensor,
    lse: torch.Tensor,
) -> torch.Tensor:
    """Analytic gradient of the soft-argmax (no autograd)::

        p_v = exp(z_v - lse);   dL/dz_v = p_v * sum_k g_k * (v_k - coords_k)

    Args:
        grad_coords: (B, J, ndim) dL/dcoords, any float dtype, or None (treated as zeros).
        logits: (B, J, *S) the forward input.
        coords: (B, J, ndim) the forward coordinates, preferably the accumulation-dtype ones
            returned by :func:`soft_argmax_forward` (a low-precision copy loses accuracy).
        lse: (B, J) from :func:`soft_argmax_forward`.

    Returns:
        (B, J, *S) dL/dlogits in ``logits``' dtype.
    """
    z = logits.to(_compute_dtype(logits.dtype))  # (B, J, *S) accumulation dtype
    return _soft_argmax_backward_acc(grad_coords, z, coords, lse).to(logits.dtype)  # (B, J, *S)


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
