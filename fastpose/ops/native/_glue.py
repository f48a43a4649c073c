"""Plumbing shared by the native (``cpu`` / ``cuda``) op modules: dtype codes, buffer preparation
and the launch arguments of the framework-free kernels of ``fastpose._C``.

A kernel function of ``fastpose._C`` takes ``(dtype_code, pointers..., sizes..., *launch)`` where
pointers are ``Tensor.data_ptr()`` integers (0 = absent) and ``launch`` is ``(threads,)`` on the
CPU or ``(device_index, cuda_stream_handle)`` on CUDA. Every buffer, outputs and workspaces
included, is allocated here with torch (so the ops are capturable in CUDA graphs and traceable by
``torch.compile`` through their fake kernels).

The typed kernel boundary (:class:`KernelSpec`): each kernel entry point declares its buffers
(name, role, shape, which backends pass it); :meth:`KernelSpec.launch` checks every buffer's dtype,
shape, contiguity and device against the declaration, then makes the call. Roles:

* ``"storage"``: the kernel's storage dtype ``T`` (the dtype code sent; on the CPU float16/bfloat16
  are upcast, so ``T`` is float32/float64 there);
* ``"acc"``: the accumulation dtype of ``T`` (float64 for float64, float32 otherwise).

The C++ side declares the same roles next to the kernels (``csrc/row_scale/buffer_roles.h``,
exported as ``fastpose._C.buffer_roles()``) and types its pointers from them; a CPU test compares
the two, and :func:`dry_run` lets a CPU test run the CUDA glue on the meta device (checks only).
An op adopts the boundary by adding ``declare(...)`` for each of its entry points (and, for the
CPU role test, a ``k<Name>Buffers`` table in its header exported by ``buffer_roles()`` in
csrc/bindings.cpp) and calling ``SPEC.launch(...)`` instead of ``kernel(...)(...)``; the older
helpers (``kernel``, ``ptr``, ...) keep working for ops that have not moved yet. Example::

    SPEC = declare("my_op_forward",
                   Buffer("x", "storage", ("rows", "n")), Buffer("out", "acc", ("rows",)),
                   Buffer("workspace", "acc", ("WS",), backends=("cuda",)),
                   args=("x", "rows", "n", "out", "workspace"))
    bufs = {"x": x, "out": out} | ({"workspace": ws} if backend == "cuda" else {})
    SPEC.launch(backend, x.dtype, x.device, {"rows": r, "n": n, "WS": ws.numel()}, bufs)
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from ... import _ext
from ...reference._rows import acc_dtype

__all__ = ["Buffer", "KernelSpec", "SPECS", "backward_caller", "custom_ops_only", "declare", "direct_function",
           "direct_ok", "dry_run", "eager_op", "any_requires_grad"]

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

_DTYPE_CODE = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}


def ext():
    """The loaded ``fastpose._C`` module (the native package only registers ops when it loaded)."""
    mod = _ext.get()
    if mod is None:  # pragma: no cover - registration is skipped in that case
        raise RuntimeError(f"fastpose._C is not loaded: {_ext.error()}; fix: {_ext.fix()}")
    return mod


def kernel(name: str, backend: str):
    """``fastpose._C.<name>_<backend>``, e.g. ``kernel("soft_argmax_forward", "cpu")``."""
    return getattr(ext(), f"{name}_{backend}")


def code(dtype: torch.dtype) -> int:
    return _DTYPE_CODE[dtype]


# acc_dtype (float64 stays float64, everything else accumulates in float32) is the one definition of
# fastpose.reference._rows, imported above and re-exported here for the native op modules.


def kernel_dtype(backend: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype a kernel reads and writes: the CPU kernels are float32/float64 only, so float16 and
    bfloat16 are upcast on entry (and the results cast back); the CUDA kernels take all four."""
    if backend == "cpu" and dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return dtype


def main_input(t: Tensor, backend: str) -> Tensor:
    """The op's big input as the kernel wants it: contiguous, in the kernel dtype and, on CUDA,
    16-byte aligned (the kernels move 16-byte packs; a view at an odd offset is copied)."""
    kd = kernel_dtype(backend, t.dtype)
    if backend == "cpu" and t.dtype == kd and t.is_contiguous():
        return t  # hot path: no conversion needed (skips two dispatcher round trips, ~1 us)
    t = t.to(kd).contiguous()
    if backend == "cuda" and t.data_ptr() % 16 != 0:
        t = t.clone()
    return t


def small(t: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """A small constant input (joints, weights, camera, keypoints, incoming gradients) in ``dtype``."""
    if t is None:
        return None
    if t.requires_grad:  # (a tensor that does not require grad needs no detached alias: ~0.4 us)
        t = t.detach()
    # Hot path: already in `dtype` and contiguous (the usual case) -> no dispatcher calls.
    return t if t.dtype == dtype and t.is_contiguous() else t.to(dtype).contiguous()


def ptr(t: Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


def launch(backend: str, device: torch.device) -> tuple[int, ...]:
    """Trailing launch arguments: (threads,) on the CPU, (device, stream) on CUDA (no host sync)."""
    if backend == "cpu":
        return (torch.get_num_threads(),)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return (index, torch.cuda.current_stream(device).cuda_stream)


def workspace(backend: str, elems: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Scratch buffer of the CUDA two-stage reductions (per-chunk partials)."""
    return torch.empty(max(int(elems), 1), dtype=dtype, device=device)


def volume_dims(op: str, x: Tensor, ndim: int) -> tuple[int, int, int, int, int, int]:
    """(B, J, D, H, W, rows) of a (B, J, [D,] H, W) volume; 2D maps are D = 1."""
    b, j = x.shape[0], x.shape[1]
    spatial = tuple(x.shape[2:])
    d, h, w = (1, *spatial) if ndim == 2 else spatial
    if b * j > 0 and d * h * w == 0:
        raise ValueError(f"{op}: the volume must not be empty, got spatial shape {spatial}")
    return b, j, d, h, w, b * j


def row_scale(backend: str, saved: Tensor, scale: Tensor, out_dtype: torch.dtype) -> Tensor:
    """out = saved * scale[r] per row (rows = scale.numel()) in ``out_dtype``: the backward of the
    loss kernels that write their gradient in the forward (csrc/row_scale, the skeleton kernel).
    ``saved`` is in the accumulation dtype of the kernel dtype (checked by :data:`ROW_SCALE`)."""
    kd = kernel_dtype(backend, out_dtype)
    s = small(scale, acc_dtype(kd)).reshape(-1)
    out = torch.empty(saved.shape, dtype=kd, device=saved.device)
    rows = s.numel()
    if saved.numel() and rows:
        cols = saved.numel() // rows
        # flat (rows, cols) views; a non-contiguous `saved` is passed as is and refused by the check
        src = saved.view(rows, cols) if saved.is_contiguous() else saved
        ROW_SCALE.launch(backend, kd, saved.device, {"rows": rows, "cols": cols},
                         {"src": src, "scale": s, "out": out.view(rows, cols)})
    return out.to(out_dtype)


# ---- the typed kernel boundary ------------------------------------------------------------------

_ROLES = ("storage", "acc")
_BACKENDS = ("cpu", "cuda")
_DRY_RUN: contextvars.ContextVar[bool] = contextvars.ContextVar("fastpose_native_dry_run", default=False)


@contextlib.contextmanager
def dry_run() -> Iterator[None]:
    """Within this block :meth:`KernelSpec.launch` checks its buffers and returns without calling
    ``fastpose._C`` (outputs stay uninitialised). A test hook: it lets a CPU-only test run the CUDA
    glue on ``meta`` tensors and see every buffer the CUDA kernels would receive."""
    token = _DRY_RUN.set(True)
    try:
        yield
    finally:
        _DRY_RUN.reset(token)


@dataclass(frozen=True)
class Buffer:
    """One raw buffer of a kernel entry point.

    ``shape`` holds ints and size names resolved at launch (``("P", 3)``: P points of 3 values);
    ``optional`` buffers may be None (a null pointer); ``backends`` names the backends whose entry
    point takes this buffer at all (a workspace exists only on CUDA).
    """

    name: str
    role: str
    shape: tuple[int | str, ...]
    optional: bool = False
    backends: tuple[str, ...] = _BACKENDS

    def __post_init__(self) -> None:
        if self.role not in _ROLES:
            raise ValueError(f"Buffer {self.name!r}: role must be one of {_ROLES}, got {self.role!r}")
        bad = [b for b in self.backends if b not in _BACKENDS]
        if bad:
            raise ValueError(f"Buffer {self.name!r}: backends must be among {_BACKENDS}, got {self.backends}")


@dataclass(frozen=True)
class KernelSpec:
    """The declaration of a kernel entry point ``fastpose._C.<name>_<backend>``.

    ``args`` is the positional order of its arguments after the dtype code and before the launch
    arguments: buffer names (passed as pointers) and scalar names (passed from ``scalars``).
    """

    name: str
    buffers: tuple[Buffer, ...]
    args: tuple[str, ...]

    def __post_init__(self) -> None:
        names = [b.name for b in self.buffers]
        if len(set(names)) != len(names):
            raise ValueError(f"KernelSpec {self.name!r}: duplicate buffer names {names}")
        missing = [n for n in names if n not in self.args]
        if missing:
            raise ValueError(f"KernelSpec {self.name!r}: buffers {missing} are not placed in args {self.args}")

    def _plan(self, backend: str) -> _Plan:
        """The per-launch work of ``backend``'s entry point, derived from the declaration once (the
        launch is on the hot path: a tiny op's whole kernel call is ~2 us)."""
        plan = _PLANS.get((self.name, backend))
        if plan is None:
            mine = [b for b in self.buffers if backend in b.backends]
            names = frozenset(b.name for b in mine)
            other = {b.name for b in self.buffers} - names  # buffers of the other backend only
            args = tuple((a in names, a) for a in self.args if a not in other)
            checks = tuple((b.name, b.role == "acc", _shape_getter(b.shape), b.optional) for b in mine)
            plan = _PLANS[(self.name, backend)] = _Plan(names, checks, args)
        return plan

    def _ok(self, backend: str, dtype: torch.dtype, device: torch.device, sizes: Mapping[str, int],
            buffers: Mapping[str, Tensor | None]) -> bool:
        """The fast pass of :meth:`check` (no messages): True when everything matches. The same
        conditions as :meth:`check`, one attribute read each: exactly the declared buffers of this
        backend, each None only if optional, else a ``Tensor`` of its role's dtype (``is``: dtypes
        are singletons), on ``device``, of the declared shape (a precomputed getter of the size
        names), contiguous."""
        if backend == "cpu":
            if dtype is not torch.float32 and dtype is not torch.float64:
                return False
        elif backend != "cuda":
            return False
        names, checks, _ = self._plan(backend)
        if buffers.keys() != names:
            return False
        acc = acc_dtype(dtype)
        for name, is_acc, shape, optional in checks:
            t = buffers[name]
            if t is None:
                if optional:
                    continue
                return False
            if (not isinstance(t, Tensor) or t.dtype is not (acc if is_acc else dtype) or t.device != device
                    or t.shape != shape(sizes) or not t.is_contiguous()):
                return False
        return True

    def roles(self) -> dict[str, str]:
        """{buffer: role}: compared with ``fastpose._C.buffer_roles()[name]`` by the tests."""
        return {b.name: b.role for b in self.buffers}

    def check(self, backend: str, dtype: torch.dtype, device: torch.device, sizes: Mapping[str, int],
              buffers: Mapping[str, Tensor | None]) -> None:
        """Raise ValueError unless ``buffers`` are exactly what the kernel expects: every declared
        buffer of this backend given (None only if optional), no other, each a tensor of its role's
        dtype (``dtype`` is the storage dtype T), of its declared shape, contiguous and on ``device``."""
        if self._ok(backend, dtype, device, sizes, buffers):
            return
        where = f"{self.name}_{backend}"
        if backend not in _BACKENDS:
            raise ValueError(f"{where}: backend must be one of {_BACKENDS}, got {backend!r}")
        if backend == "cpu" and dtype not in (torch.float32, torch.float64):
            raise ValueError(f"{where}: the CPU kernels take float32 or float64 storage, got {dtype} "
                             "(float16/bfloat16 are upcast by the glue before the launch)")
        mine = [b for b in self.buffers if backend in b.backends]
        unknown = sorted(set(buffers) - {b.name for b in mine})
        if unknown:
            raise ValueError(f"{where}: unexpected buffers {unknown}; it takes {[b.name for b in mine]}")
        acc = acc_dtype(dtype)
        for b in mine:
            if b.name not in buffers:
                raise ValueError(f"{where}: buffer {b.name!r} was not given")
            t = buffers[b.name]
            if t is None:
                if not b.optional:
                    raise ValueError(f"{where}: buffer {b.name!r} is required, got None")
                continue
            if not isinstance(t, Tensor):
                raise ValueError(f"{where}: buffer {b.name!r} must be a torch.Tensor, got {type(t).__name__}")
            want_dtype = dtype if b.role == "storage" else acc
            if t.dtype != want_dtype:
                raise ValueError(f"{where}: buffer {b.name!r} (role {b.role}, storage dtype {dtype}) must be "
                                 f"{want_dtype}, got {t.dtype}")
            want_shape = tuple(sizes[d] if isinstance(d, str) else d for d in b.shape)
            if tuple(t.shape) != want_shape:
                raise ValueError(f"{where}: buffer {b.name!r} must have shape {want_shape}, got {tuple(t.shape)}")
            if not t.is_contiguous():
                raise ValueError(f"{where}: buffer {b.name!r} must be contiguous, got strides {t.stride()} "
                                 f"for shape {tuple(t.shape)}")
            if t.device != device:
                raise ValueError(f"{where}: buffer {b.name!r} must be on {device}, got {t.device}")

    def launch(self, backend: str, dtype: torch.dtype, device: torch.device, sizes: Mapping[str, int],
               buffers: Mapping[str, Tensor | None], scalars: Mapping[str, int | float] | None = None) -> None:
        """:meth:`check`, then ``fastpose._C.<name>_<backend>(code(dtype), *args, *launch)`` with
        buffers as pointers (0 for None) and the other ``args`` from ``scalars`` (then ``sizes``)."""
        if not self._ok(backend, dtype, device, sizes, buffers):
            self.check(backend, dtype, device, sizes, buffers)  # raises, naming what is wrong
        if _DRY_RUN.get():
            return
        values = [code(dtype)]
        for is_buf, a in self._plan(backend).args:
            if is_buf:
                t = buffers[a]
                values.append(0 if t is None else t.data_ptr())
            else:
                values.append(scalars[a] if scalars is not None and a in scalars else sizes[a])
        if backend == "cpu":
            values.append(torch.get_num_threads())
        else:
            values += launch(backend, device)
        kernel(self.name, backend)(*values)


class _Plan(NamedTuple):
    """What a launch of one entry point does, derived from its :class:`KernelSpec` once."""

    names: frozenset[str]  # the buffers this backend's entry point takes
    checks: tuple  # (name, is_acc, shape getter: sizes -> expected shape tuple, optional) per buffer
    args: tuple  # (is_buffer, name) per positional argument after the dtype code


def _shape_getter(shape: tuple[int | str, ...]) -> Callable[[Mapping[str, int]], tuple[int, ...]]:
    """``sizes -> tuple(sizes[d] if d is a name else d for d in shape)``, specialised for the 0-2
    dimensional shapes the kernels declare (a generic comprehension costs ~0.4 us a buffer)."""
    shape = tuple(shape)
    is_name = tuple(isinstance(d, str) for d in shape)
    if not any(is_name):
        return lambda sizes: shape
    if len(shape) == 1:
        (a,) = shape
        return lambda sizes: (sizes[a],)
    if len(shape) == 2:
        a, b = shape
        if is_name == (True, True):
            return lambda sizes: (sizes[a], sizes[b])
        if is_name == (True, False):
            return lambda sizes: (sizes[a], b)
        return lambda sizes: (a, sizes[b])
    return lambda sizes: tuple([sizes[d] if n else d for d, n in zip(shape, is_name, strict=True)])


# (kernel name, backend) -> KernelSpec._plan: module level because the dataclass is frozen.
_PLANS: dict[tuple[str, str], _Plan] = {}

SPECS: dict[str, KernelSpec] = {}


def declare(name: str, *buffers: Buffer, args: tuple[str, ...]) -> KernelSpec:
    """Declare (once) the entry point ``name`` (without its _cpu/_cuda suffix) and return its spec."""
    if name in SPECS:
        raise ValueError(f"declare: kernel {name!r} is already declared")
    spec = KernelSpec(name, tuple(buffers), tuple(args))
    SPECS[name] = spec
    return spec


def workspace_elems(fn: str, *args: int) -> int:
    """Elements of a CUDA workspace from ``fastpose._C.<fn>(*args)``; 1 under :func:`dry_run` when
    the extension has no CUDA kernels (the CPU test of the CUDA glue)."""
    mod = _ext.get()
    if _DRY_RUN.get() and (mod is None or not hasattr(mod, fn)):
        return 1
    return max(int(getattr(ext(), fn)(*args)), 1)


ROW_SCALE = declare(
    "row_scale",
    Buffer("src", "acc", ("rows", "cols")),
    Buffer("scale", "acc", ("rows",)),
    Buffer("out", "storage", ("rows", "cols")),
    args=("src", "scale", "out", "rows", "cols"),
)


# ---- the eager fast path around the custom ops ---------------------------------------------------
#
# Every native op is a ``torch.library`` custom op (``fastpose::<op>_<backend>`` + ``_backward``) with
# fake kernels and ``register_autograd``: that is what torch.compile, torch.export / AOTInductor, ONNX
# export, opcheck, FakeTensor and functorch see. In plain eager mode the same op costs ~70 us of
# Python around ~10 us of kernel calls on a tiny input (issue 14: cProfile of a forward + backward of
# heatmap_mse_2d on (1, 1, 8, 8): the custom-op machinery -- ``_ops.redispatch``, the dynamo-disable
# wrapper ``eval_frame._fn`` around every impl, ``_library/autograd.autograd_impl``, ``fill_defaults``,
# ``custom_ops.backend_impl`` -- in both directions). :func:`eager_op` calls the same Python forward
# and backward directly (through one ``torch.autograd.Function`` when an input requires grad, with no
# autograd node otherwise) whenever nothing could observe the difference, and the registered custom
# op otherwise. Both run the same functions on the same arguments, so the results are bitwise equal
# (tests/ops/test_eager_path.py).

_CUSTOM_OPS_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("fastpose_custom_ops_only", default=False)
_PLAIN_TENSORS = (Tensor, torch.nn.Parameter)
# torch.autograd.Function.apply in Python binds defaults when setup_context is overridden, routes
# through functorch when a transform is active and unwraps dead functorch wrappers; none applies to
# the functions made below (no setup_context override; :func:`direct_ok` refuses active transforms
# and wrapped tensors), so they call the C implementation it ends in directly
# (``_FunctionBase.apply``, a classmethod; ~1.5 us less).
_C_APPLY = getattr(torch._C, "_FunctionBase", None)
_C_APPLY = None if _C_APPLY is None else _C_APPLY.__dict__.get("apply")
_is_functorch_wrapped = torch._C._functorch.is_functorch_wrapped_tensor


def _any_requires_grad_py(*args) -> bool:
    return any(isinstance(a, Tensor) and a.requires_grad for a in args)


# torch's own custom-op autograd uses this C helper; a torch without it gets the Python equivalent
any_requires_grad = getattr(torch._C, "_any_requires_grad", None) or _any_requires_grad_py


@contextlib.contextmanager
def custom_ops_only() -> Iterator[None]:
    """Within this block every native op runs through its registered ``torch.library`` custom op (the
    path torch.compile and export take) even in plain eager mode: a switch for tests and for debugging
    (e.g. to see ``fastpose::`` op names in a trace without the profiler)."""
    token = _CUSTOM_OPS_ONLY.set(True)
    try:
        yield
    finally:
        _CUSTOM_OPS_ONLY.reset(token)


def direct_ok(args: tuple) -> bool:
    """Whether a direct call of the op's Python forward / backward is indistinguishable from the
    registered custom op for these arguments: not under torch.compile / torch.export tracing
    (dynamo), ``torch.jit`` tracing (TorchScript ONNX export), a ``TorchDispatchMode`` (FakeTensor,
    make_fx, non-strict export, functionalisation, opcheck's and tests' op capture, selective
    checkpointing) or ``TorchFunctionMode``, a functorch transform (vmap, grad, jvp), or the autograd
    profiler (whose trace names the ``fastpose::`` ops); no tensor argument of a subclass (FakeTensor,
    FunctionalTensor, DTensor, ...: their ``__torch_dispatch__`` must see the op) and none on the
    ``meta`` device (the fake kernel serves it); and not inside :func:`custom_ops_only`. Cost ~0.5 us
    (each test is one C call)."""
    if (torch.compiler.is_compiling() or torch._C._is_tracing() or torch._C._len_torch_dispatch_stack()
            or torch._C._is_torch_function_mode_enabled() or torch._C._are_functorch_transforms_active()
            or torch._C._autograd._profiler_enabled() or _CUSTOM_OPS_ONLY.get()):
        return False
    for a in args:
        # a functorch wrapper left over from a finished transform is a plain-typed tensor too; a meta
        # tensor gets the custom op's fake kernel (shape inference), as it always did
        if isinstance(a, Tensor) and (type(a) not in _PLAIN_TENSORS or _is_functorch_wrapped(a) or a.is_meta):
            return False
    return True


def eager_op(fwd, bwd, *, forward: Callable, backward: Callable, setup_context: Callable,
             autograd_backward: Callable[[Callable], Callable]) -> Callable:
    """Register the autograd of the custom op ``fwd`` and return the function the dispatch calls.

    ``fwd`` / ``bwd``: the op's custom ops (``torch.library.custom_op``, schema from ``forward`` /
    ``backward``); ``forward(*args)`` / ``backward(*args)``: the plain Python functions they wrap (the
    kernel glue); ``setup_context(ctx, inputs, output)``: what the backward keeps;
    ``autograd_backward(call_bwd)`` -> ``backward(ctx, *grads)``: the op's backward formula, calling
    ``call_bwd(*args)`` for the backward op. This registers
    ``fwd.register_autograd(autograd_backward(bwd), setup_context=setup_context)`` (the path of
    torch.compile, export, FakeTensor, functorch and opcheck), and returns ``call(*args)`` with
    ``fwd``'s signature and outputs that

    * calls ``fwd`` (the custom op) whenever :func:`direct_ok` says something could observe it;
    * otherwise, when grad mode is on and a tensor argument requires grad, applies one
      ``torch.autograd.Function`` whose forward is ``forward`` + ``setup_context`` (run under no-grad,
      as the custom op's is) and whose backward is ``autograd_backward(call_bwd)``, where ``call_bwd``
      is ``backward`` directly, or the custom op ``bwd`` when the backward builds a graph
      (``create_graph=True``: a second backward then raises as through the custom op) or runs where
      :func:`direct_ok` refuses;
    * otherwise calls ``forward`` directly: no autograd node, as the custom op makes none then.

    Saved tensors, non-differentiable outputs and ``set_materialize_grads`` behave as through the
    custom op (both are ``torch.autograd.Function`` underneath, with the same ``setup_context``).
    """
    fwd.register_autograd(autograd_backward(bwd), setup_context=setup_context)
    call_bwd = backward_caller(bwd, backward)

    def _fn_forward(ctx, *args):
        out = forward(*args)
        setup_context(ctx, args, out)
        return out

    name = str(getattr(fwd, "_name", getattr(forward, "__name__", "op"))).replace("::", "_")
    apply, function = direct_function(name, _fn_forward, autograd_backward(call_bwd))

    def call(*args):
        if not direct_ok(args):
            return fwd(*args)
        if torch.is_grad_enabled() and any_requires_grad(*args):
            return apply(*args)
        return forward(*args)

    call.autograd_function = function  # the node class of the direct path (tests check which path ran)
    call.custom_op = fwd
    call.custom_backward = bwd
    call.forward, call.backward, call.call_backward = forward, backward, call_bwd
    return call


def backward_caller(bwd, backward: Callable) -> Callable:
    """``call_bwd(*args)`` for a direct path's backward formula: ``backward(*args)`` (the plain
    Python backward), or the backward custom op ``bwd`` when the backward builds a graph
    (``create_graph=True``: a second backward then raises, as it does through the custom op) or runs
    where :func:`direct_ok` refuses (compiled autograd, a dispatch mode, the profiler, ...)."""

    def call_bwd(*args):
        if torch.is_grad_enabled() or not direct_ok(args):
            return bwd(*args)
        return backward(*args)

    return call_bwd


def direct_function(name: str, forward: Callable, backward: Callable) -> tuple[Callable, type]:
    """``(apply, cls)``: a ``torch.autograd.Function`` subclass ``FastposeEager_<name>`` with
    ``forward(ctx, *args)`` / ``backward(ctx, *grads)`` and its apply (see :data:`_C_APPLY`). The node
    class name marks the direct path in autograd graphs (tests/ops/test_eager_path.py)."""
    cls = type("FastposeEager_" + name, (torch.autograd.Function,), {
        "forward": staticmethod(forward),
        "backward": staticmethod(backward),
    })
    return (cls.apply if _C_APPLY is None else _C_APPLY.__get__(None, cls)), cls
