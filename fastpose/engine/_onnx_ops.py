"""ONNX lowering of the fused ops: ONE translation table, onnxscript functions -> standard operators.

How it works (torch 2.13 + onnxscript 0.7): ``torch.onnx.export(..., dynamo=True,
custom_translation_table=TRANSLATIONS)`` meets each ``fastpose::<op>_reference`` node of the exported
program (exports run under the reference backend, see ``_export.py``) and calls the Python function
registered for it here with symbolic tensors. The functions are *traced*: they may look at a
tensor's dtype and rank (``x.dtype``, ``len(x.shape)``) in plain Python, and every ``op.X(...)``
call becomes one node of the default ONNX domain (opset 18). Float/str arguments of the custom op
(``sigma``, ``reduction``) arrive as Python attributes (annotated ``float`` / ``str``).

Each function reproduces its op's reference math (``fastpose/reference``) and its output
dtypes exactly (the reference custom ops return some outputs in the accumulation dtype):

=====================================  ==============================================================
soft_argmax_{2,3}d_reference           Cast(f32) -> Reshape(B,J,V) -> Softmax / ReduceLogSumExp ->
                                       ReduceSum marginals -> MatMul with Range index vectors
heatmap_mse_{2,3}d_reference           per-axis Gaussians Exp(-(Range - mu)^2 / 2 s^2); sum h^2 by
                                       ReduceSum, sum h t by MatMul contractions (the target volume
                                       is never formed), sum t^2 = prod of per-axis sums
soft_argmax_heatmap_mse_3d_reference   the two above on one input
project_to_2d_reference                Div, Clip, polynomial distortion, Mul/Add
reprojection_loss_reference            projection -> Sqrt(ReduceSum(e^2)) -> weighted mean
=====================================  ==============================================================

Accumulation: float16 / bfloat16 / float32 inputs are computed in float32, float64 in float64
(as the reference does), so a half-precision engine (ONNX Runtime, TensorRT) keeps the
softmax and the reductions in float32.
"""

from __future__ import annotations

from onnxscript import ir
from onnxscript import opset18 as op
from onnxscript.onnx_types import TensorType

__all__ = ["OPSET", "TRANSLATIONS", "translation_table"]

OPSET = 18


def _acc(dtype) -> ir.DataType:
    """Accumulation dtype of an input dtype: DOUBLE stays DOUBLE, everything else FLOAT."""
    return ir.DataType.DOUBLE if dtype == ir.DataType.DOUBLE else ir.DataType.FLOAT


def _ints(values: list[int]):
    return op.Constant(value_ints=list(values))


def _scalar(value: float, like):
    """A scalar constant of ``like``'s dtype."""
    return op.CastLike(op.Constant(value_float=float(value)), like)


def _index_vector(x, axis: int):
    """(S,) = 0, 1, ..., S-1 in ``x``'s dtype, S = x.shape[axis] (read at run time: works for any size)."""
    size = op.Squeeze(op.Shape(x, start=axis, end=axis + 1))  # scalar int64
    idx = op.Range(op.Constant(value_int=0), size, op.Constant(value_int=1))  # (S,) int64
    return op.CastLike(idx, x)


# ---------------------------------------------------------------------------------- soft-argmax
def _soft_argmax(logits, ndim: int):
    """logits (B, J, *S) -> coords (B, J, ndim) ordered x, y[, z]; lse (B, J); accumulation dtype.

    p = Softmax over the flattened volume; coords_k = sum_i marginal_k[i] * i (MatMul with the
    index vector), marginal_k = p summed over every other spatial axis. The marginals are
    peeled off from the innermost axis outwards so the full volume is reduced only twice.
    """
    z = op.Cast(logits, to=_acc(logits.dtype))  # (B, J, *S)
    flat = op.Reshape(z, _ints([0, 0, -1]))  # (B, J, V)
    p = op.Reshape(op.Softmax(flat, axis=-1), op.Shape(z))  # (B, J, *S) probabilities
    lse = op.ReduceLogSumExp(flat, _ints([-1]), keepdims=0)  # (B, J) log sum exp
    coords = []
    rest = p  # (B, J, S_0 .. S_a): the axes already handled summed out
    for a in range(ndim - 1, -1, -1):  # array axis a: x (last) first, then y, then z
        others = [2 + i for i in range(a)]  # remaining spatial axes other than a
        marginal = op.ReduceSum(rest, _ints(others), keepdims=0) if others else rest  # (B, J, S_a)
        idx = _index_vector(z, 2 + a)  # (S_a,)
        coords.append(op.Unsqueeze(op.MatMul(marginal, idx), _ints([-1])))  # (B, J, 1)
        if a > 0:
            rest = op.ReduceSum(rest, _ints([-1]), keepdims=0)  # drop the axis just handled
    return op.Concat(*coords, axis=-1), lse  # (B, J, ndim), (B, J)


def soft_argmax_2d(logits: TensorType) -> tuple[TensorType, TensorType]:
    """fastpose::soft_argmax_2d_reference(logits (B, J, H, W)) -> (coords (B, J, 2), lse (B, J))."""
    return _soft_argmax(logits, 2)


def soft_argmax_3d(logits: TensorType) -> tuple[TensorType, TensorType]:
    """fastpose::soft_argmax_3d_reference(logits (B, J, D, H, W)) -> (coords (B, J, 3), lse (B, J))."""
    return _soft_argmax(logits, 3)


# ---------------------------------------------------------------------------------- heatmap MSE
def _heatmap_mse(heatmaps, joints, sigma: float, weights, reduction: str, ndim: int):
    """Weighted MSE against the on-the-fly Gaussian target, in the accumulation dtype.

    sum_v (h - t)^2 = sum h^2 - 2 sum h t + sum t^2 per joint (B, J); t = gx gy [gz] factorises.
    sum h t: h (B, J, .., W) MatMul gx (B, J, 1.., W, 1) contracts W; then H; the last axis by
    ReduceSum(r * g). Returns () for "mean" / "sum", (B, J) for "none".
    """
    acc = _acc(heatmaps.dtype)
    h = op.Cast(heatmaps, to=acc)  # (B, J, *S)
    mu = op.Cast(joints, to=acc)  # (B, J, ndim) x, y[, z]
    spatial = [2 + i for i in range(ndim)]
    inv_two_var = 1.0 / (2.0 * sigma * sigma)
    factors = []  # coordinate order gx, gy[, gz]: (B, J, S_axis)
    for k in range(ndim):
        axis = 2 + ndim - 1 - k  # coordinate k lives on array axis 2 + ndim - 1 - k
        idx = _index_vector(h, axis)  # (S,)
        mu_k = op.Slice(mu, _ints([k]), _ints([k + 1]), _ints([-1]))  # (B, J, 1)
        d = op.Sub(idx, mu_k)  # (B, J, S)
        factors.append(op.Exp(op.Mul(op.Mul(d, d), _scalar(-inv_two_var, h))))  # (B, J, S)
    sum_h2 = op.ReduceSum(op.Mul(h, h), _ints(spatial), keepdims=0)  # (B, J)
    r = h
    for i, g in enumerate(factors):
        remaining = ndim - i  # spatial axes left in r; g contracts the last one
        if remaining > 1:
            # g (B, J, S) -> (B, J, 1 x (remaining - 2), S, 1): batch dims broadcast against r's
            g_mat = op.Unsqueeze(g, _ints([2 + j for j in range(remaining - 2)] + [2 + remaining - 1]))
            r = op.Squeeze(op.MatMul(r, g_mat), _ints([-1]))  # (B, J, S_0..S_{remaining-2})
        else:
            r = op.ReduceSum(op.Mul(r, g), _ints([-1]), keepdims=0)  # (B, J)
    sum_ht = r  # (B, J)
    sum_t2 = None
    for g in factors:
        sq = op.ReduceSum(op.Mul(g, g), _ints([-1]), keepdims=0)  # (B, J)
        sum_t2 = sq if sum_t2 is None else op.Mul(sum_t2, sq)
    sse = op.Add(op.Sub(sum_h2, op.Mul(_scalar(2.0, h), sum_ht)), sum_t2)  # (B, J)
    if weights is not None:
        sse = op.Mul(sse, op.Cast(weights, to=acc))  # (B, J)
    if reduction == "none":
        n_vox = op.CastLike(op.ReduceProd(op.Shape(h, start=2), keepdims=0), h)  # D*H*W
        return op.Div(sse, n_vox)  # (B, J)
    total = op.ReduceSum(sse, keepdims=0)  # () over all (b, j); 0 for an empty batch
    if reduction == "sum":
        return total
    if reduction != "mean":
        raise ValueError(f"heatmap_mse ONNX lowering: reduction must be mean|sum|none, received {reduction!r}")
    count = op.Max(op.CastLike(op.Size(h), h), _scalar(1.0, h))  # max(B*J*D*H*W, 1)
    return op.Div(total, count)


def heatmap_mse_2d(heatmaps: TensorType, joints: TensorType, sigma: float, weights: TensorType | None,
                   reduction: str) -> TensorType:
    """fastpose::heatmap_mse_2d_reference -> loss in heatmaps' dtype."""
    out = _heatmap_mse(heatmaps, joints, sigma, weights, reduction, 2)
    return op.Cast(out, to=heatmaps.dtype)


def heatmap_mse_3d(heatmaps: TensorType, joints: TensorType, sigma: float, weights: TensorType | None,
                   reduction: str) -> TensorType:
    """fastpose::heatmap_mse_3d_reference -> loss in heatmaps' dtype."""
    out = _heatmap_mse(heatmaps, joints, sigma, weights, reduction, 3)
    return op.Cast(out, to=heatmaps.dtype)


def soft_argmax_heatmap_mse_3d(logits: TensorType, joints: TensorType, sigma: float,
                               weights: TensorType | None) -> tuple[TensorType, TensorType, TensorType]:
    """fastpose::soft_argmax_heatmap_mse_3d_reference -> (coords, lse, mse), accumulation dtype."""
    coords, lse = _soft_argmax(logits, 3)
    mse = _heatmap_mse(logits, joints, sigma, weights, "mean", 3)
    return coords, lse, mse


# ---------------------------------------------------------------------------------- projection
def _project(points, camera, acc):
    """VideoPose3D's distorted projection in ``acc``: points (*R, J, 3), camera (*C, 9) -> (*R, J, 2).

    The camera's leading dims broadcast against the points' leading dims *R by torch's rule
    (aligned from the right, size-1 or missing dims broadcast; fastpose.ops validates this
    before export). Inserting one axis for J, camera (*C, 1, 9), makes ONNX's numpy-style
    broadcasting do exactly that against (*R, J, .): no expanded camera is materialised.
    """
    pts = op.Cast(points, to=acc)
    c_rank = len(camera.shape)
    cam = op.Unsqueeze(op.Cast(camera, to=acc), _ints([c_rank - 1]))  # (*C, 1, 9)

    def cols(a: int, b: int):
        return op.Slice(cam, _ints([a]), _ints([b]), _ints([-1]))

    f, c, k1, k2, k3, p = cols(0, 2), cols(2, 4), cols(4, 5), cols(5, 6), cols(6, 7), cols(7, 9)
    xy = op.Slice(pts, _ints([0]), _ints([2]), _ints([-1]))  # (..., J, 2)
    z = op.Slice(pts, _ints([2]), _ints([3]), _ints([-1]))  # (..., J, 1)
    xx = op.Clip(op.Div(xy, z), _scalar(-1.0, pts), _scalar(1.0, pts))  # clamp(xy / z, -1, 1)
    r2 = op.ReduceSum(op.Mul(xx, xx), _ints([-1]), keepdims=1)  # (..., J, 1)
    radial = op.Add(_scalar(1.0, pts), op.Mul(r2, op.Add(k1, op.Mul(r2, op.Add(k2, op.Mul(r2, k3))))))
    tan = op.ReduceSum(op.Mul(p, xx), _ints([-1]), keepdims=1)  # p_a XX_x + p_b XX_y
    xxx = op.Add(op.Mul(xx, op.Add(radial, tan)), op.Mul(p, r2))  # (..., J, 2)
    return op.Add(op.Mul(f, xxx), c)  # f XXd + c


def project_to_2d(points: TensorType, camera: TensorType) -> TensorType:
    """fastpose::project_to_2d_reference(points (..., J, 3), camera (*C, 9)) -> (..., J, 2), points' dtype."""
    out = _project(points, camera, _acc(points.dtype))
    return op.Cast(out, to=points.dtype)


def reprojection_loss(points: TensorType, camera: TensorType, keypoints_2d: TensorType,
                      weights: TensorType | None) -> TensorType:
    """fastpose::reprojection_loss_reference -> () mean of w |proj - kp|_2, points' dtype (0 if empty)."""
    acc = _acc(points.dtype)
    e = op.Sub(_project(points, camera, acc), op.Cast(keypoints_2d, to=acc))  # (..., J, 2)
    dist = op.Sqrt(op.ReduceSum(op.Mul(e, e), _ints([-1]), keepdims=0))  # (..., J)
    if weights is not None:
        dist = op.Mul(dist, op.Cast(weights, to=acc))
    count = op.Max(op.CastLike(op.Size(dist), dist), _scalar(1.0, dist))
    return op.Cast(op.Div(op.ReduceSum(dist, keepdims=0), count), to=points.dtype)


# ---------------------------------------------------------------------------------- the table
_FUNCTIONS = {
    "soft_argmax_2d_reference": soft_argmax_2d,
    "soft_argmax_3d_reference": soft_argmax_3d,
    "heatmap_mse_2d_reference": heatmap_mse_2d,
    "heatmap_mse_3d_reference": heatmap_mse_3d,
    "soft_argmax_heatmap_mse_3d_reference": soft_argmax_heatmap_mse_3d,
    "project_to_2d_reference": project_to_2d,
    "reprojection_loss_reference": reprojection_loss,
}


def translation_table() -> dict:
    """{torch.ops.fastpose.<op>_reference.default: onnxscript function} for torch.onnx.export."""
    from ..ops._spec import SPECS
    from ._export import REFERENCE_OPS, reference_overload

    # every reference custom op an export can contain: the export's list and the ops' declarations
    declared = set(REFERENCE_OPS) | {name for spec in SPECS.values() for name in spec.exports}
    missing = sorted(declared - set(_FUNCTIONS))
    if missing:  # keeps the lists in step
        raise RuntimeError(f"ONNX translation table lacks {missing}")
    return {reference_overload(name): fn for name, fn in _FUNCTIONS.items()}


TRANSLATIONS = _FUNCTIONS  # op name -> translation function (the table, keyed by name)
