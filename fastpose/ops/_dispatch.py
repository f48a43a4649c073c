"""Backend dispatch for the fused ops.

Every public op of :mod:`fastpose.ops` is served by one of four backends:

=============  ===========================================================
``reference``  pure PyTorch (``fastpose/reference``), any device and dtype
``cpu``        C++/OpenMP kernels of ``fastpose._C`` (``csrc/**/*_cpu.cpp``)
``cuda``       CUDA kernels of ``fastpose._C`` (``csrc/**/*.cu``)
``triton``     Triton kernels (``kernels/``, installed as ``fastpose.kernels``)
=============  ===========================================================

A backend *registers* an implementation of an op with :func:`register_impl`,
declaring the devices and dtypes it serves and, optionally, a function that
returns the reasons it cannot serve a particular input (sizes, layouts...).
A backend that is not built or not importable registers nothing: it is never
faked.

Choice, in order (docs/ops.md, "Backends and dispatch"):

1. the ``backend=`` argument of the op;
2. the innermost ``with fastpose.use_backend(name)`` block of the current thread / asyncio task
   (the stack lives in a :class:`contextvars.ContextVar`: a block in one thread or task never
   leaks into another, and a new thread starts with no block);
3. the ``FASTPOSE_BACKEND`` environment variable;
4. the first backend of the op's priority list for the input's device that
   can serve the input (priority lists live in :data:`PRIORITY`, each with
   the measurement that set it).

A backend named in 1-3 that cannot serve the input raises
:class:`BackendNotSupportedError` listing why. In 4, skipping a registered
higher-priority backend and landing on ``reference`` is a *silent fallback*;
with ``FASTPOSE_STRICT=1`` it raises instead (CI runs strict).

Selection is plain Python on shapes, dtypes and devices, so under
``torch.compile`` it runs once at trace time and guards on those properties. The
``use_backend`` block in force while a graph is traced is part of that choice but not guarded
(torch.compile cannot read a ContextVar): a compiled function keeps the backend it was traced
with; pass ``backend=`` (or compile inside the block you will run it in) to pin it.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from ._spec import SPECS

__all__ = [
    "BACKENDS",
    "OPS",
    "PRIORITY",
    "BackendNotSupportedError",
    "Impl",
    "available_backends",
    "not_supported_reasons",
    "register_impl",
    "select_backend",
    "use_backend",
]

BACKENDS = ("reference", "cpu", "cuda", "triton")

# Every op declared in fastpose/ops/_spec.py (one OpSpec per op), in declaration order.
OPS: tuple[str, ...] = tuple(SPECS)

# Per device type, the order in which backends are tried when none is named.
# CPU: the OpenMP kernels first -- BENCHMARKS.md, machine cpu-vm (2 threads, forward+backward
# at B=8, J=18, 64^3 and 1024x243x17 points, `make bench`): cpu vs reference eager 15x for the fused
# head, 8.4x soft_argmax_3d, 14x heatmap_mse_3d, 28x reprojection_loss, 21x project_to_2d. The
# Triton interpreter is for tests only and is never chosen automatically on the CPU.
# CUDA: not yet measured on a GPU. Triton first because torch.compile traces into its kernels;
# cuda second. benchmarks/gpu_run.sh measures both side by side: set this from its results
# (benchmarks/results/<gpu>/) and cite them here.
PRIORITY: dict[str, tuple[str, ...]] = {
    "cpu": ("cpu", "reference"),
    "cuda": ("triton", "cuda", "reference"),
}
_DEFAULT_PRIORITY: tuple[str, ...] = ("reference",)

_FLOAT_DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})


class BackendNotSupportedError(RuntimeError):
    """Raised when the requested (or, in strict mode, the preferred) backend cannot serve an input."""


@dataclass(frozen=True)
class Impl:
    """One backend's implementation of one op.

    ``fn`` takes the op's validated arguments (positional, defaults resolved,
    no ``backend``) and returns what the public op returns; it carries its own
    autograd (usually a ``torch.library`` custom op with ``register_autograd``).
    ``reasons`` takes the same arguments and returns a list of human-readable
    reasons it cannot serve them beyond device/dtype (empty list = can serve).
    """

    op: str
    backend: str
    fn: Callable
    devices: frozenset[str] | None  # None: any device
    dtypes: frozenset[torch.dtype]
    reasons: Callable[..., list[str]] | None = None
    note: str = ""

    def serves(self, device_type: str, tensor: torch.Tensor, args: tuple) -> bool:
        """``not self.not_supported_reasons(tensor, *args)`` without building messages (the hot path
        of :func:`select_backend`); ``device_type`` is ``tensor.device.type``, read once by the caller."""
        return ((self.devices is None or device_type in self.devices) and tensor.dtype in self.dtypes
                and (self.reasons is None or not self.reasons(*args)))

    def not_supported_reasons(self, tensor: torch.Tensor, *args, **kwargs) -> list[str]:
        out: list[str] = []
        if self.devices is not None and tensor.device.type not in self.devices:
            out.append(
                f"{self.backend}: device {tensor.device.type!r} not served "
                f"(serves {sorted(self.devices)})"
            )
        if tensor.dtype not in self.dtypes:
            out.append(
                f"{self.backend}: dtype {tensor.dtype} not served "
                f"(serves {sorted(str(d) for d in self.dtypes)})"
            )
        if not out and self.reasons is not None:
            out.extend(f"{self.backend}: {r}" for r in self.reasons(*args, **kwargs))
        return out


@dataclass
class _Registry:
    impls: dict[str, dict[str, Impl]] = field(default_factory=lambda: {op: {} for op in OPS})
    load_errors: dict[str, str] = field(default_factory=dict)


_REGISTRY = _Registry()
# The names of the enclosing use_backend blocks, innermost last, as an immutable tuple per context:
# each thread starts from the default (no block), and an asyncio task runs in a copy of the context
# of its creator, so concurrent tasks never see each other's blocks.
_BACKEND_STACK: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("fastpose_backend_stack",
                                                                                default=())


def register_impl(
    op: str,
    backend: str,
    fn: Callable,
    *,
    devices: Sequence[str] | None,
    dtypes: Sequence[torch.dtype] = tuple(_FLOAT_DTYPES),
    reasons: Callable[..., list[str]] | None = None,
    note: str = "",
) -> None:
    """Register ``fn`` as ``backend``'s implementation of ``op`` (see :class:`Impl`).

    ``devices``: device types served (``None``: any); ``dtypes``: dtypes of the op's first argument.
    """
    if op not in OPS:
        raise ValueError(f"register_impl: unknown op {op!r}; expected one of {OPS}")
    if backend not in BACKENDS:
        raise ValueError(f"register_impl: unknown backend {backend!r}; expected one of {BACKENDS}")
    _REGISTRY.impls[op][backend] = Impl(
        op, backend, fn, None if devices is None else frozenset(devices), frozenset(dtypes), reasons, note
    )


def record_load_error(backend: str, message: str) -> None:
    """Remember why a backend could not be loaded (shown by ``fastpose info``)."""
    _REGISTRY.load_errors[backend] = message


def load_errors() -> dict[str, str]:
    return dict(_REGISTRY.load_errors)


def available_backends(op: str | None = None) -> list[str]:
    """Backends registered for ``op`` (or for any op when ``op`` is None), in :data:`BACKENDS` order."""
    if op is None:
        names = {b for impls in _REGISTRY.impls.values() for b in impls}
    else:
        names = set(_REGISTRY.impls[_check_op(op)])
    return [b for b in BACKENDS if b in names]


def get_impl(op: str, backend: str) -> Impl:
    impls = _REGISTRY.impls[_check_op(op)]
    if backend not in impls:
        why = _REGISTRY.load_errors.get(backend)
        hint = f" ({why})" if why else ""
        raise BackendNotSupportedError(
            f"{op}: backend {backend!r} is not available{hint}; available: {available_backends(op)}"
        )
    return impls[backend]


def _check_op(op: str) -> str:
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; expected one of {OPS}")
    return op


def _check_backend_name(name: str, source: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"{source}: unknown backend {name!r}; expected one of {BACKENDS}")
    return name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run the ops inside the block on backend ``name`` unless an op names its own ``backend=``.

    Thread- and task-safe: the block applies to the current thread (or asyncio task) only."""
    token = _BACKEND_STACK.set(_BACKEND_STACK.get() + (_check_backend_name(name, "use_backend"),))
    try:
        yield
    finally:
        _BACKEND_STACK.reset(token)


@torch.compiler.assume_constant_result
def _current_stack() -> tuple[str, ...]:
    """The enclosing use_backend names, innermost last. torch.compile cannot trace
    ``ContextVar.get``, so under tracing this is called once and its result is a constant of the
    graph: the block in force while tracing is baked in (see the module docstring)."""
    return _BACKEND_STACK.get()


def _strict() -> bool:
    return os.environ.get("FASTPOSE_STRICT", "0") not in ("", "0", "false", "False")


def not_supported_reasons(op: str, backend: str, tensor: torch.Tensor, *args, **kwargs) -> list[str]:
    """Why ``backend`` cannot serve ``op`` on these arguments (empty list: it can).

    ``tensor`` is the op's main input (it decides device and dtype); ``args``
    are the op's validated arguments as passed to the implementation.
    """
    impls = _REGISTRY.impls[_check_op(op)]
    if backend not in impls:
        why = _REGISTRY.load_errors.get(backend, "not registered for this op")
        return [f"{backend}: not available ({why})"]
    return impls[backend].not_supported_reasons(tensor, *args, **kwargs)


def select_backend(op: str, tensor: torch.Tensor, args: tuple, backend: str | None = None) -> Impl:
    """Pick the implementation of ``op`` for these arguments (see the module docstring).

    Runs on every op call, so the usual outcome (the requested or first-priority backend serves the
    input) is decided with boolean checks (:meth:`Impl.serves`); anything else -- a skipped backend,
    an unknown name, an input no backend serves -- goes through :func:`_select_explained`, which
    makes the same choice and builds the messages."""
    requested = backend
    if requested is None:
        stack = _current_stack()
        requested = stack[-1] if stack else (os.environ.get("FASTPOSE_BACKEND", "") or None)
    impls = _REGISTRY.impls.get(op)
    if impls is not None:
        device_type = tensor.device.type
        if requested is None:  # the preferred backend, when it serves the input (nothing skipped)
            requested = PRIORITY.get(device_type, _DEFAULT_PRIORITY)[0]
        impl = impls.get(requested)
        if impl is not None and impl.serves(device_type, tensor, args):
            return impl
    return _select_explained(op, tensor, args, backend)


def _select_explained(op: str, tensor: torch.Tensor, args: tuple, backend: str | None) -> Impl:
    """:func:`select_backend` spelled out, with the reasons of every refusal and skip."""
    _check_op(op)
    requested, source = backend, "backend="
    stack = _current_stack() if requested is None else ()
    if requested is None and stack:
        requested, source = stack[-1], "fastpose.use_backend"
    if requested is None:
        env = os.environ.get("FASTPOSE_BACKEND", "")
        if env:
            requested, source = env, "FASTPOSE_BACKEND"
    if requested is not None:
        _check_backend_name(requested, source)
        reasons = not_supported_reasons(op, requested, tensor, *args)
        if reasons:
            raise BackendNotSupportedError(
                f"{op}: backend {requested!r} (from {source}) cannot serve this input:\n  "
                + "\n  ".join(reasons)
            )
        return _REGISTRY.impls[op][requested]

    skipped: list[str] = []
    for name in PRIORITY.get(tensor.device.type, _DEFAULT_PRIORITY):
        if name not in _REGISTRY.impls[op]:
            # A backend that failed to build/load counts as skipped (strict mode
            # must notice a missing extension); one that simply has no
            # implementation of this op is not a fallback.
            if name in _REGISTRY.load_errors:
                skipped.append(f"{name}: not available ({_REGISTRY.load_errors[name]})")
            continue
        reasons = not_supported_reasons(op, name, tensor, *args)
        if not reasons:
            if name == "reference" and skipped and _strict():
                raise BackendNotSupportedError(
                    f"{op}: FASTPOSE_STRICT=1 forbids falling back to 'reference'; "
                    "the preferred backends cannot serve this input:\n  " + "\n  ".join(skipped)
                )
            return _REGISTRY.impls[op][name]
        skipped.extend(reasons)
    raise BackendNotSupportedError(
        f"{op}: no backend can serve this input:\n  " + "\n  ".join(skipped or ["none registered"])
    )
