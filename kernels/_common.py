"""Host and device helpers shared by the Triton kernels of every op stem.

Volumes are seen as ``(BJ, R, W)``: one contiguous ``R x W`` slab per (batch, joint), where
``W`` is the last (x) axis and ``R = D*H`` (3D) or ``H`` (2D) counts rows. A row index ``r`` gives
``y = r % H`` and ``z = r // H``, so the integer divisions are paid once per row, not per voxel, and
per-axis quantities (voxel x, Gaussian factor along x) are vectors broadcast over a 2D tile
``[BLOCK_R, BLOCK_W]``.

Large volumes are split along rows across ``S`` programs per (batch, joint) (grid ``(BJ, S)``); a
reduction over the volume then writes one partial per program and a second kernel combines the
``S`` partials of each (batch, joint) in a fixed order (no atomics).

Reproducibility: the reductions (forward kernels) run one fixed configuration (REDUCE_CONFIG) and
a split that depends only on the shape and the device, and the backward kernels are elementwise
(their autotuned tile changes no bit), so the same input on the same device and Triton version
gives the same bits in any process (docs/ops.md, "Determinism").

All element offsets are 64-bit: program ids are cast to ``tl.int64`` before they multiply a size.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable

import torch
import triton
import triton.language as tl

from fastpose.reference._rows import acc_dtype  # the one "float64 stays float64, else float32" rule

__all__ = [
    "INTERPRET",
    "MAX_SPLITS",
    "acc_dtype",
    "REDUCE_CONFIG",
    "volume_configs",
    "volume_reduce_configs",
    "volume_dims",
    "block_w",
    "define_op",
    "gaussian_params",
    "plan_rows",
    "store_dtype",
    "unused_pointer",
]

# Read once, at import: ``@triton.jit`` itself decides at decoration time whether it builds an
# interpreted function, so the flag cannot meaningfully change later in the process.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

# At most this many row splits per (batch, joint): the second stage reduces them in one tile.
MAX_SPLITS = 1024
# A split should stream at least this many voxels, or the partials cost more than they save.
_MIN_SPLIT_VOXELS = 32768
# Width of the column tile: the next power of two of W, capped (wider rows loop over columns).
# Every TILE of the autotune configurations must be >= this, so BLOCK_R = TILE // BLOCK_W >= 1.
MAX_BLOCK_W = 256


# The one configuration of the volume REDUCTIONS (the forward kernels). A forward kernel keeps
# BLOCK_R = TILE // BLOCK_W per-row partial sums and adds them at the end, so the tile decides the
# order of the float additions: an autotuner choosing the tile by timing could pick another tile in
# another process and change the last bits. The forwards therefore always run this configuration
# (a one-entry autotune list: no timing), and the split of a volume across programs depends only on
# the shape and the device (plan_rows). Same input, device and Triton version -> the same bits, in
# any process. The backward kernels are elementwise (each voxel's gradient is computed on its own),
# so their tile changes no bit and they keep autotuning (tests/triton/test_determinism.py).
REDUCE_CONFIG = {"TILE": 4096, "num_warps": 8}


def volume_reduce_configs() -> list[triton.Config]:
    """The single configuration of the volume forward (reduction) kernels (see REDUCE_CONFIG)."""
    warps = 4 if INTERPRET else REDUCE_CONFIG["num_warps"]
    return [triton.Config({"TILE": REDUCE_CONFIG["TILE"]}, num_warps=warps)]


def volume_configs() -> list[triton.Config]:
    """Autotune configurations of the elementwise volume kernels (the backwards of soft-argmax,
    heatmap MSE and the fused head): TILE voxels per loop step (BLOCK_R = TILE // BLOCK_W rows),
    keyed on (R, W). One configuration under the interpreter (autotuning there would only multiply
    the run time)."""
    if INTERPRET:
        return [triton.Config({"TILE": 4096}, num_warps=4)]
    return [
        triton.Config({"TILE": tile}, num_warps=warps)
        for tile, warps in ((1024, 4), (2048, 4), (2048, 8), (4096, 8), (4096, 16))
    ]


def volume_dims(t: torch.Tensor) -> tuple[int, int, int, int, int]:
    """(BJ, N, R, H, W) of a (B, J, [D,] H, W) tensor: BJ volumes of N = R * W voxels, R = D*H rows
    (3D) or H (2D) of W voxels."""
    bj = t.shape[0] * t.shape[1]
    h, w = t.shape[-2], t.shape[-1]
    rows = math.prod(t.shape[2:-1])
    return bj, rows * w, rows, h, w


def store_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a kernel writes for an output of ``dtype``: ``dtype`` itself, except bfloat16
    under the interpreter, where the output is written in float32 and rounded by torch.

    Why: the Triton interpreter (3.6 and 3.7) converts float32 -> bfloat16 in ``.to()`` by
    truncating the mantissa (and its ``fp_downcast_rounding="rtne"`` loses the carry when the
    mantissa overflows), while the GPU rounds to nearest even; truncation doubles the rounding
    error of bfloat16 outputs. On GPUs the kernels store bfloat16 directly.
    """
    return torch.float32 if INTERPRET and dtype == torch.bfloat16 else dtype


def block_w(w: int) -> int:
    """Column-tile width for rows of ``w`` voxels (a power of two in [1, MAX_BLOCK_W])."""
    return min(triton.next_power_of_2(max(int(w), 1)), MAX_BLOCK_W)


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def plan_rows(bj: int, rows: int, width: int, device: torch.device,
              rows_per_split: int | None = None) -> tuple[int, int]:
    """Split each (batch, joint) volume of ``rows x width`` voxels into ``S`` row ranges.

    Returns ``(S, rows_per_split)`` with ``S = cdiv(rows, rows_per_split)``. By default a single
    split unless ``bj`` programs would leave a GPU idle (fewer than ~4 programs per SM), and never
    splits below ``_MIN_SPLIT_VOXELS`` voxels each. The choice depends only on the shape and the
    device, so the (two-stage) reduction order is reproducible. ``rows_per_split`` forces the
    split size (tests use it to exercise the two-stage path on tiny volumes); it is raised if
    needed so that ``S <= MAX_SPLITS``.
    """
    if rows_per_split is None:
        splits = 1
        if device.type == "cuda" and not INTERPRET:
            index = device.index if device.index is not None else torch.cuda.current_device()
            want = triton.cdiv(4 * _sm_count(index), max(bj, 1))
            splits = max(1, min(want, (rows * width) // _MIN_SPLIT_VOXELS))
        rows_per_split = triton.cdiv(rows, splits)
    elif rows_per_split < 1:
        raise ValueError(f"rows_per_split must be >= 1, got {rows_per_split}")
    rows_per_split = max(int(rows_per_split), triton.cdiv(rows, MAX_SPLITS), 1)
    return triton.cdiv(rows, rows_per_split), rows_per_split


def unused_pointer(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A 1-element buffer for a pointer argument the kernel will not touch (a constexpr switches
    its use off). Never another argument in its place: under ``torch.compile`` the functional
    kernel wrapper clones each argument it may write separately, and two names for one tensor
    could write a stale clone back over the real result."""
    return torch.empty((1,), dtype=dtype, device=device)


def gaussian_params(joints: torch.Tensor, weights: torch.Tensor | None, sigma: float,
                    acc: torch.dtype) -> torch.Tensor:
    """Per-(batch, joint) constants of the Gaussian-target kernels, (BJ, 5) in ``acc``:
    ``(mu_x, mu_y, mu_z, w, 1 / (2 sigma^2))`` (``mu_z = 0`` in 2D, ``w = 1`` without weights).

    ``1 / (2 sigma^2)`` travels in a tensor, not as a scalar argument, because Triton passes
    Python floats as float32, which would cost float64 inputs their precision.
    """
    b, j, n = joints.shape
    bj = b * j
    cols = [joints.reshape(bj, n).to(acc)]
    if n == 2:
        cols.append(torch.zeros((bj, 1), dtype=acc, device=joints.device))
    if weights is None:
        cols.append(torch.ones((bj, 1), dtype=acc, device=joints.device))
    else:
        cols.append(weights.reshape(bj, 1).to(acc))
    cols.append(torch.full((bj, 1), 1.0 / (2.0 * sigma * sigma), dtype=acc, device=joints.device))
    return torch.cat(cols, dim=1).contiguous()


def define_op(name: str, impl: Callable, fake: Callable):
    """Register ``impl`` as the operator ``fastpose::<name>`` and return it.

    On GPUs it is a :func:`torch.library.triton_op`: ``torch.compile`` traces through the host
    code into the Triton kernels (their launches must use ``torch.library.wrap_triton``) and the
    fake implementation is ``impl`` itself, traced with fake tensors.

    Under ``TRITON_INTERPRET=1`` ``@triton.jit`` yields interpreted functions, which
    ``wrap_triton`` passes through unwrapped; a triton_op would then run the interpreter on
    FakeTensors (opcheck's fake-tensor test and dynamo fail with "Cannot access data pointer of
    Tensor"). There the op is an opaque :func:`torch.library.custom_op` with the explicit
    ``fake`` (shapes only), which opcheck and ``torch.compile(fullgraph=True)`` accept.
    """
    qualname = f"fastpose::{name}"
    if INTERPRET:
        op = torch.library.custom_op(qualname, impl, mutates_args=())
        op.register_fake(fake)
        return op
    return torch.library.triton_op(qualname, impl, mutates_args=())


# ---- device helpers --------------------------------------------------------------------------


@triton.jit
def _tile_offsets(bj, rows, cols, R, W):
    """Element offsets of a ``[BLOCK_R, BLOCK_W]`` tile of volume ``bj`` in a contiguous
    ``(BJ, R, W)`` tensor, in int64: ``(bj * R + rows) * W + cols`` (``bj`` is an int64 scalar)."""
    return (bj * R + rows.to(tl.int64))[:, None] * W + cols[None, :]


@triton.jit
def _load_gaussian_params(params_ptr, bj):
    """(mu_x, mu_y, mu_z, w, 1 / (2 sigma^2)) of volume ``bj`` from :func:`gaussian_params`."""
    p = params_ptr + bj * 5
    return tl.load(p + 0), tl.load(p + 1), tl.load(p + 2), tl.load(p + 3), tl.load(p + 4)


@triton.jit
def _row_gaussian(rows, H, my, mz, coef, acc: tl.constexpr, HAS_Z: tl.constexpr):
    """Per-row factor of the target, gy(y) * gz(z) = exp(-((y - mu_y)^2 + (z - mu_z)^2) coef),
    for rows ``r`` with y = r % H, z = r // H.  [BLOCK_R]"""
    dy = (rows % H).to(acc) - my
    e = dy * dy
    if HAS_Z:
        dz = (rows // H).to(acc) - mz
        e += dz * dz
    return tl.exp(-e * coef)


@triton.jit
def _col_gaussian(cols, mx, coef, acc: tl.constexpr):
    """Per-column factor of the target, gx(x) = exp(-(x - mu_x)^2 coef).  [BLOCK_W]"""
    dx = cols.to(acc) - mx
    return tl.exp(-(dx * dx) * coef)


@triton.jit
def _online_softmax_update(m, s, sx, sy, sz, l, x, y, z, HAS_Z: tl.constexpr):
    """One tile step of the per-row online softmax (the "slots" are the tile's BLOCK_R rows).

    ``m, s, sx, sy, sz`` are ``[BLOCK_R]`` states: running max and ``sum exp(l - m)`` (times x, y,
    z); ``l`` is the ``[BLOCK_R, BLOCK_W]`` tile of logits (masked voxels = -inf), ``x`` its
    ``[BLOCK_W]`` column indices, ``y``/``z`` its ``[BLOCK_R]`` row coordinates. Reductions run
    along the row only (within a warp), and there is one ``exp`` per voxel plus one per row.
    """
    m_new = tl.maximum(m, tl.max(l, axis=1))
    # A row with no voxel yet keeps m = -inf: shift by 0 there so exp(-inf - 0) = 0, not NaN.
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp(m - m_safe)  # [BLOCK_R] rescale of the old sums
    e = tl.exp(l - m_safe[:, None])  # [BLOCK_R, BLOCK_W]
    es = tl.sum(e, axis=1)
    s = s * alpha + es
    sx = sx * alpha + tl.sum(e * x[None, :], axis=1)
    sy = sy * alpha + es * y
    if HAS_Z:
        sz = sz * alpha + es * z
    return m_new, s, sx, sy, sz


@triton.jit
def _merge_softmax(m, s, sx, sy, sz):
    """Merge online-softmax states (any shape, merged over all elements) into scalars.

    Each state holds a running max ``m`` and sums scaled by ``exp(-m)``: ``s = sum exp(l - m)``,
    ``sx = sum x exp(l - m)``... The merge rescales them to the common max ``M``:
    ``S = sum_i s_i exp(m_i - M)`` etc. Empty states (``m = -inf``, sums 0) contribute 0; if all
    are empty, ``M = -inf`` and the sums are 0.
    """
    M = tl.max(m)
    M_safe = tl.where(M == float("-inf"), 0.0, M)
    f = tl.exp(m - M_safe)
    return M, tl.sum(s * f), tl.sum(sx * f), tl.sum(sy * f), tl.sum(sz * f)
