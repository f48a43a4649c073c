"""One declaration per op: :class:`OpSpec` (the op contract of docs/ops.md, in code).

Each public op of :mod:`fastpose.ops` is declared once in :data:`SPECS`: its arguments (name,
shape in size symbols, dtype rule, which one gets a gradient), its outputs (name and shape), its
reference function (``fastpose.reference.<name>``), its saved state, the ``fastpose._C`` entry
points its native backends call (whose buffers are typed by the ``KernelSpec`` declarations of
``fastpose/ops/native/<stem>.py``), the Triton / native module that implements it (``stem``), the
reference custom ops an export of it contains (their ONNX lowering lives in
``fastpose/engine/_onnx_ops.py``), and how to build its inputs for tests, the self-check and the
benchmarks (``family`` + :func:`make_case`).

Everything that used to keep its own list of op names derives from here: the dispatch's
``OPS``, argument validation (:func:`validate`), the native backends' required ``fastpose._C``
functions and module registration, the Triton registration, ``fastpose.ops._selfcheck``, the
generic tests (``tests/ops/_cases.py``, ``tests/gpu``) and the benchmarks' cases and report order.
Adding an op: declare it here, write its reference (``fastpose/reference``), its public function
(validate + ``select_backend``) and backends (``fastpose/ops``, ``fastpose/ops/native``,
``kernels``), and the tests of its own math; the generic machinery picks the rest up.

Size symbols: ``B`` batch, ``J`` joints, ``D, H, W`` volume / image edges, ``*L`` any leading dims
(points ops). Argument kinds:

* ``main``: the op's first argument, float16/bfloat16/float32/float64; gradients flow to it only;
* ``tensor``: a secondary float tensor (target), cast to the accumulation dtype of the main input
  (float64 stays float64, everything else float32: ``fastpose.reference._rows.acc_dtype``);
  refused if it requires grad;
* ``camera``: (*C, 9) broadcasting to the points' leading dims torch-style;
* ``sigma``: a positive finite float (voxels / pixels); ``reduction``: ``mean`` | ``sum`` | ``none``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..reference._rows import acc_dtype
from . import _validation as _v

__all__ = ["SPECS", "Arg", "OpSpec", "make_case", "native_functions", "output_shapes", "spec", "validate"]


@dataclass(frozen=True)
class Arg:
    """One argument of an op. ``shape``: size symbols and ints (``()`` for scalars / strings)."""

    name: str
    kind: str  # "main" | "tensor" | "camera" | "sigma" | "reduction"
    shape: tuple = ()
    optional: bool = False  # may be None (defaults to None)
    default: object = None  # default of a non-tensor argument (reduction)

    @property
    def grad(self) -> bool:
        """Whether gradients flow to this argument (only the main input's)."""
        return self.kind == "main"


@dataclass(frozen=True)
class OpSpec:
    """The declaration of one op (see the module docstring)."""

    name: str
    stem: str  # module name in fastpose/ops, fastpose/ops/native and kernels
    family: str  # "volume" (B, J, D, H, W) | "image" (B, J, H, W) | "points" (*L, J, 3): inputs and cases
    args: tuple[Arg, ...]
    outputs: tuple[tuple[str, tuple], ...]  # (name, shape) in the logits' / points' dtype
    saved: str  # what the backward keeps between forward and backward (every backend)
    kernels: tuple[str, ...]  # fastpose._C entry points, without the _cpu / _cuda suffix
    cuda_workspaces: tuple[str, ...] = ()  # fastpose._C workspace-size queries (cuda only)
    exports: tuple[str, ...] = ()  # fastpose:: reference custom ops an export contains (ONNX lowering)
    report_rank: int = 0  # order in the benchmark report (BENCHMARKS.md)
    # Benchmark cases (benchmarks/_cases.py): every op has the CI "tiny" case (odd sizes) and the
    # family's paper case (volume: B x 18 x 64^3; image: 32 x 18 x 64^2; points: 1024 x 243 x 17);
    # these name the sweeps of `--bench-cases all`: "volume" (edge), "batch", "frames" (T).
    bench_sweeps: tuple[str, ...] = ()
    # The op whose torch.library custom ops serve this one (``fastpose::<op>_<backend>`` and
    # ``..._backward``): the op itself, unless it reuses another's (the 2D head: the 3D head, D = 1).
    served_by: str = ""

    @property
    def custom_op(self) -> str:
        """Stem of the custom ops of every backend: ``fastpose::<custom_op>_<backend>[_backward]``."""
        return self.served_by or self.name

    @property
    def reference(self):
        """The reference math, ``fastpose.reference.<name>`` (differentiable by autograd)."""
        import fastpose.reference as R

        return getattr(R, self.name)

    @property
    def main(self) -> Arg:
        return self.args[0]

    @property
    def ndim(self) -> int:
        """Spatial dimensions of a volume / image op (3 or 2); 0 for points ops."""
        return {"volume": 3, "image": 2}.get(self.family, 0)


_B_J = ("B", "J")
_VOL = ("B", "J", "D", "H", "W")
_IMG = ("B", "J", "H", "W")
_PTS = ("*L", "J", 3)

_SA_KERNELS = ("soft_argmax_forward", "soft_argmax_backward")
_HM_KERNELS = ("heatmap_mse_forward", "heatmap_mse_backward")
_FUSED_KERNELS = ("soft_argmax_heatmap_mse_forward", "soft_argmax_heatmap_mse_backward")
_SA_SAVED = "logits (the input) + stats (B, J, 5) = [m, log s, c_x, c_y, c_z] in the accumulation dtype"
_HM_SAVED = "the inputs only; the gradient 2 w (h - t) / N is recomputed in the backward"


def _soft_argmax(ndim: int, rank: int) -> OpSpec:
    shape = _VOL if ndim == 3 else _IMG
    return OpSpec(
        f"soft_argmax_{ndim}d", "soft_argmax", "volume" if ndim == 3 else "image",
        (Arg("logits", "main", shape),), (("coords", (*_B_J, ndim)),), _SA_SAVED, _SA_KERNELS,
        ("soft_argmax_workspace",), (f"soft_argmax_{ndim}d_reference",), rank, ("volume",) if ndim == 3 else ())


def _heatmap_mse(ndim: int, rank: int) -> OpSpec:
    shape = _VOL if ndim == 3 else _IMG
    return OpSpec(
        f"heatmap_mse_{ndim}d", "heatmap_mse", "volume" if ndim == 3 else "image",
        (Arg("heatmaps", "main", shape), Arg("joints", "tensor", (*_B_J, ndim)), Arg("sigma", "sigma"),
         Arg("weights", "tensor", _B_J, optional=True), Arg("reduction", "reduction", default="mean")),
        (("loss", ()),), _HM_SAVED, _HM_KERNELS, ("heatmap_mse_workspace",), (f"heatmap_mse_{ndim}d_reference",),
        rank, ("volume",) if ndim == 3 else ())


def _fused(ndim: int, rank: int) -> OpSpec:
    shape = _VOL if ndim == 3 else _IMG
    return OpSpec(
        f"soft_argmax_heatmap_mse_{ndim}d", "soft_argmax_heatmap_mse", "volume" if ndim == 3 else "image",
        (Arg("logits", "main", shape), Arg("joints", "tensor", (*_B_J, ndim)), Arg("sigma", "sigma"),
         Arg("weights", "tensor", _B_J, optional=True)),
        (("coords", (*_B_J, ndim)), ("mse", ())),
        _SA_SAVED + "; the MSE part saves nothing (recomputed)" + ("" if ndim == 3 else
                                                                  " (served by the 3D kernels with D = 1)"),
        _FUSED_KERNELS, ("soft_argmax_heatmap_mse_workspace",), ("soft_argmax_heatmap_mse_3d_reference",), rank,
        ("volume", "batch") if ndim == 3 else (), "" if ndim == 3 else "soft_argmax_heatmap_mse_3d")


_ALL = (
    _soft_argmax(2, 5),
    _soft_argmax(3, 1),
    _heatmap_mse(2, 6),
    _heatmap_mse(3, 2),
    _fused(3, 0),
    _fused(2, 4),
    OpSpec("project_to_2d", "projection", "points",
           (Arg("points", "main", _PTS), Arg("camera", "camera", ("*C", 9))), (("uv", ("*L", "J", 2)),),
           "the inputs only (points, camera); the gradient is recomputed", ("project_forward", "project_backward"),
           (), ("project_to_2d_reference",), 8, ("frames",)),
    OpSpec("reprojection_loss", "projection", "points",
           (Arg("points", "main", _PTS), Arg("camera", "camera", ("*C", 9)),
            Arg("keypoints_2d", "tensor", ("*L", "J", 2)), Arg("weights", "tensor", ("*L", "J"), optional=True)),
           (("loss", ()),), "the inputs only; the gradient is recomputed",
           ("project_forward", "project_backward", "reprojection_forward"), ("reprojection_workspace",),
           ("reprojection_loss_reference",), 7, ("frames",)),
)

SPECS: dict[str, OpSpec] = {s.name: s for s in _ALL}


def spec(op: str) -> OpSpec:
    """The declaration of ``op`` (ValueError naming the known ops otherwise)."""
    try:
        return SPECS[op]
    except KeyError:
        raise ValueError(f"unknown op {op!r}; expected one of {tuple(SPECS)}") from None


def native_functions(backend: str) -> tuple[str, ...]:
    """The ``fastpose._C`` functions the ``backend`` ("cpu" | "cuda") glue of every op calls."""
    names: list[str] = []
    for s in SPECS.values():
        names += [f"{k}_{backend}" for k in s.kernels]
        if backend == "cuda":
            names += [f"{k}_cuda" for k in s.cuda_workspaces]
    return tuple(dict.fromkeys(names))


# ---- validation ----------------------------------------------------------------------------------


def _bind(s: OpSpec, main: torch.Tensor) -> dict[str, object]:
    """Size symbols of the main input's declared shape -> their values (``*L``: a tuple)."""
    shape = s.main.shape
    if shape and shape[0] == "*L":
        tail = shape[1:]
        return {"*L": tuple(main.shape[: main.dim() - len(tail)]),
                **{sym: main.shape[main.dim() - len(tail) + i] for i, sym in enumerate(tail) if isinstance(sym, str)}}
    return {sym: main.shape[i] for i, sym in enumerate(shape)}


def _resolve(shape: tuple, sizes: dict[str, object]) -> tuple[int, ...]:
    out: list[int] = []
    for sym in shape:
        if sym == "*L":
            out += list(sizes["*L"])  # type: ignore[arg-type]
        else:
            out.append(sizes[sym] if isinstance(sym, str) else sym)  # type: ignore[arg-type]
    return tuple(out)


def validate(op: str, *values: object) -> tuple:
    """Check the public op's arguments against its spec and return them as the backends take them
    (positional, defaults resolved, secondary tensors cast to the accumulation dtype, sigma a
    float). Each error names the op, the argument, what was expected and what was received.

    Every call first tries :func:`_validate_fast` (the per-spec constants precomputed, ~1.5 us on
    the usual arguments); anything it does not accept outright goes through the full checks below,
    which return the same values or raise the error."""
    plan = _FAST_PLANS.get(op)
    if plan is not None:
        out = _validate_fast(plan, values)
        if out is not None:
            return out
    return _validate_full(op, *values)


def _validate_full(op: str, *values: object) -> tuple:
    """:func:`validate`, every check spelled out (the path of anything unusual, and of every error)."""
    s = spec(op)
    main = s.main
    if main.shape and main.shape[0] == "*L":
        fixed = main.shape[1:]
        x = _v.main_tensor(op, main.name, values[0], min_ndim=len(fixed),
                           last=fixed[-1] if isinstance(fixed[-1], int) else None)
    else:
        x = _v.main_tensor(op, main.name, values[0], ndim=len(main.shape))
    sizes = _bind(s, x)
    out: list[object] = [x]
    for a, val in zip(s.args[1:], values[1:], strict=True):
        if a.kind == "tensor":
            out.append(None if (a.optional and val is None) else
                       _v.secondary(op, a.name, val, x, _resolve(a.shape, sizes), main.name))
        elif a.kind == "camera":
            out.append(_v.camera_tensor(op, val, x))
        elif a.kind == "sigma":
            out.append(_v.sigma_value(op, val))
        elif a.kind == "reduction":
            out.append(_v.reduction_value(op, val))
        else:  # pragma: no cover - a spec declared an unknown kind
            raise ValueError(f"{op}: argument {a.name!r} has unknown kind {a.kind!r}")
    return tuple(out)


# ---- the validation fast path -------------------------------------------------------------------
#
# validate() runs on every call of a public op; on a tiny input the whole native forward is ~15 us,
# so the spec walk (symbol binding, shape resolution, per-kind dispatch) is precomputed per op:
# each secondary tensor's expected shape becomes a function of the main input's shape, e.g.
# joints (B, J, 2) of heatmaps (B, J, H, W) -> (*heatmaps.shape[0:2], 2).


def _slices(main_shape: tuple) -> dict[str, slice]:
    """Each size symbol of the main input's declared shape -> the slice of its actual shape it binds."""
    if main_shape and main_shape[0] == "*L":
        tail = main_shape[1:]
        out = {"*L": slice(0, -len(tail))}
        for i, sym in enumerate(tail):
            if isinstance(sym, str):
                out[sym] = slice(i - len(tail), (i - len(tail) + 1) or None)
        return out
    return {sym: slice(i, i + 1) for i, sym in enumerate(main_shape)}


def _shape_of(arg_shape: tuple, main_shape: tuple):
    """``main.shape -> expected shape`` of an argument declared ``arg_shape`` (symbols of the main
    input's declared ``main_shape``, and ints); adjacent symbols become one slice."""
    pos = _slices(main_shape)
    pieces: list[object] = []  # slices of the main's shape and int constants, in order
    for sym in arg_shape:
        if isinstance(sym, int):
            pieces.append(sym)
            continue
        sl = pos[sym]
        last = pieces[-1] if pieces else None
        if isinstance(last, slice) and last.stop is not None and last.stop == sl.start:
            pieces[-1] = slice(last.start, sl.stop)
        else:
            pieces.append(sl)
    if len(pieces) == 1 and isinstance(pieces[0], slice):
        (a,) = pieces
        return lambda shape: tuple(shape[a])
    if len(pieces) == 2 and isinstance(pieces[0], slice) and isinstance(pieces[1], int):
        a, c = pieces
        return lambda shape: (*shape[a], c)

    def general(shape):
        out: list[int] = []
        for p in pieces:
            if isinstance(p, slice):
                out += shape[p]
            else:
                out.append(p)
        return tuple(out)

    return general


def _fast_plan(s: OpSpec) -> tuple:
    """(main ndim or None, main min ndim, main last dim or None, ((kind, optional, shape fn), ...))."""
    shape = s.main.shape
    if shape and shape[0] == "*L":
        fixed = shape[1:]
        main = (None, len(fixed), fixed[-1] if isinstance(fixed[-1], int) else None)
    else:
        main = (len(shape), len(shape), None)
    rest = tuple((a.kind, a.optional, _shape_of(a.shape, shape) if a.kind == "tensor" else None)
                 for a in s.args[1:])
    return (*main, rest)


_FLOATS = frozenset(_v._FLOATS)
_REDUCTIONS = frozenset(("mean", "sum", "none"))
_INF = float("inf")


def _validate_fast(plan: tuple, values: tuple) -> tuple | None:
    """:func:`validate`'s result when every argument is of the usual form and valid (tensors of the
    right type, shape, device and grad state; sigma a finite positive Python float or int; a known
    reduction), else None: the caller then runs the full checks, which raise the right error (or
    return the same result for an unusual but valid argument, e.g. sigma as a one-element tensor)."""
    ndim, min_ndim, last, rest = plan
    if len(values) != len(rest) + 1:
        return None
    x = values[0]
    if not isinstance(x, torch.Tensor) or x.dtype not in _FLOATS:
        return None
    d = x.dim()
    if (d != ndim) if ndim is not None else (d < min_ndim or (last is not None and x.shape[-1] != last)):
        return None
    out: list[object] = [x]
    acc = acc_dtype(x.dtype)  # of the secondary tensors
    for (kind, optional, shape_of), val in zip(rest, values[1:], strict=True):
        if kind == "tensor":
            if val is None and optional:
                out.append(None)
                continue
            if (not isinstance(val, torch.Tensor) or not val.is_floating_point() or val.shape != shape_of(x.shape)
                    or val.device != x.device or (val.requires_grad and torch.is_grad_enabled())):
                return None
            out.append(val if val.dtype is acc else val.to(acc))  # .to returns val itself then too
        elif kind == "sigma":
            if type(val) is float or type(val) is int:  # exact types: bool is refused
                val = float(val)
                if 0.0 < val < _INF:
                    out.append(val)
                    continue
            return None
        elif kind == "reduction":
            if type(val) is not str or val not in _REDUCTIONS:
                return None
            out.append(val)
        elif kind == "camera":  # (*C, 9), leading dims broadcasting to the points' (_v.camera_tensor)
            if not isinstance(val, torch.Tensor) or not _v.camera_ok(val, x):
                return None
            out.append(val if val.dtype is acc else val.to(acc))
        else:  # a kind this fast path does not know: the full checks decide
            return None
    return tuple(out)


def output_shapes(op: str, sizes: dict[str, object]) -> list[tuple[int, ...]]:
    """Output shapes of ``op`` for the size symbols ``sizes`` (e.g. {"B": 8, "J": 18, ...};
    points ops: {"*L": (N, T), "J": 17})."""
    return [_resolve(shape, sizes) for _name, shape in spec(op).outputs]


_FAST_PLANS: dict[str, tuple] = {name: _fast_plan(s) for name, s in SPECS.items()}


# ---- inputs for tests, the self-check and benchmarks --------------------------------------------

# A real Human3.6M camera (54138969), normalised as in VideoPose3D: f' = 2f/w, c' = 2c/w - [1, h/w].
H36M_CAMERA = (2.290099, 2.2875624, 0.02508307, 0.0289107, -0.20709892, 0.24777518, -0.00307515, -0.0009757,
               -0.00142447)


def make_case(op: str, gen: torch.Generator, dtype: torch.dtype = torch.float32, *, batch: int, j: int,
              dims: Sequence[int], sigma: float = 1.7, scale: float = 1.0,
              sec_dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, tuple]:
    """(main input in ``dtype``, the op's other positional arguments) on the CPU.

    ``dims``: (D, H, W) for volume ops, (H, W) for image ops, (T,) for points ops (points
    (batch, T, j, 3) with one camera per sequence, (batch, 1, 9)). Secondary tensors are in
    ``sec_dtype`` (the public ops cast them). Volume / image values: logits ~ N(0, scale^2);
    heatmaps ``0.3 x + 0.2`` near the Gaussian target's scale (exercising direct differences);
    joints anywhere inside the volume (sub-voxel), weights in [0.5, 1.5). Points: 1.5-4.5 m in
    front of a perturbed Human3.6M camera, one clamped point (|x/z| > 1) per pose.
    """
    s = spec(op)

    def rnd(*shape, k=1.0):
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * k

    if s.family in ("volume", "image"):
        spatial = tuple(dims)
        if len(spatial) != s.ndim:
            raise ValueError(f"make_case: {op} needs dims of length {s.ndim}, got {tuple(dims)}")
        x = rnd(batch, j, *spatial, k=scale)
        extent = torch.tensor([e - 1 for e in reversed(spatial)], dtype=torch.float64)  # (x, y[, z])
        mu = torch.rand(batch, j, s.ndim, generator=gen, dtype=torch.float64) * extent
        w = torch.rand(batch, j, generator=gen, dtype=torch.float64) + 0.5
        if s.main.name == "heatmaps":
            x = x * 0.3 + 0.2
        tail: dict[str, object] = {"joints": mu.to(sec_dtype), "sigma": sigma, "weights": w.to(sec_dtype),
                                   "reduction": "mean"}
        return x.to(dtype), tuple(tail[a.name] for a in s.args[1:])
    (t,) = dims
    xy = rnd(batch, t, j, 2, k=0.6)
    z = torch.rand(batch, t, j, 1, generator=gen, dtype=torch.float64) * 3 + 1.5
    pts = torch.cat([xy * z / 2, z], -1)
    pts[..., 0, 0] = pts[..., 0, 2] * 1.5  # a clamped point (|x/z| > 1) in every pose
    cam = torch.tensor(H36M_CAMERA, dtype=torch.float64).expand(batch, 1, 9).clone()  # one per sequence
    cam[..., :4] += rnd(batch, 1, 4, k=0.01)
    import fastpose.reference as R

    kp = R.project_to_2d(pts, cam) + rnd(batch, t, j, 2, k=0.05)
    w = torch.rand(batch, t, j, generator=gen, dtype=torch.float64) + 0.5
    tail = {"camera": cam.to(sec_dtype), "keypoints_2d": kp.to(sec_dtype), "weights": w.to(sec_dtype)}
    return pts.to(dtype), tuple(tail[a.name] for a in s.args[1:])
