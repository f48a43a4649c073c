"""The ``triton`` backend of fastpose (installed as ``fastpose.kernels``).

One module per op stem (the ``stem`` of the op's declaration in ``fastpose/ops/_spec.py``), each holding its private ``@triton.jit`` kernels, host launchers and
``torch.library`` operators ``fastpose::<op>_triton`` / ``fastpose::<op>_triton_backward``, and a
table ``IMPLS`` of ``(op, implementation, reasons)``.

This package does not import :mod:`fastpose.ops` and registers nothing by itself: the dispatcher
(``fastpose.ops._load_backends``) imports it and registers :func:`implementations` of its declared ops with
``register_impl(op, "triton", fn, devices=DEVICES, dtypes=DTYPES, reasons=reasons, note=NOTE)``.
So the dependency goes one way, ``fastpose.ops`` -> ``kernels``, and importing the kernels alone
(tests, the compile checks) has no side effect on the dispatch.

Devices: CUDA; and the CPU only under ``TRITON_INTERPRET=1`` (the Triton interpreter, for tests;
it must be set before this package is imported). dtypes: float16, bfloat16, float32 (float32
accumulation) and float64 (float64 accumulation, e.g. for gradcheck).

Without triton this package raises ImportError (the caller records it; the other backends work).
"""

from __future__ import annotations

try:
    import triton  # noqa: F401
    import triton.language  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"the fastpose triton backend needs the 'triton' package ({exc}); "
        "install it with: pip install 'fastpose[triton]'"
    ) from exc

import importlib
from collections.abc import Callable, Iterable

import torch

from . import heatmap_mse, projection, soft_argmax, soft_argmax_heatmap_mse
from ._common import INTERPRET

__all__ = ["DEVICES", "DTYPES", "NOTE", "heatmap_mse", "implementations", "projection", "soft_argmax",
           "soft_argmax_heatmap_mse"]

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# The CPU is served only by the interpreter: slow, meant for tests, never picked automatically
# (the CPU priority list of the dispatcher does not name "triton").
DEVICES = ("cuda", "cpu") if INTERPRET else ("cuda",)
NOTE = "Triton interpreter (TRITON_INTERPRET=1)" if INTERPRET else ""


def implementations(ops: Iterable[tuple[str, str]]) -> list[tuple[str, Callable, Callable[..., list[str]] | None]]:
    """``(op, implementation, reasons)`` for each ``(op, stem)`` asked for (the dispatcher passes its
    op declarations, fastpose/ops/_spec.py, and registers the result): the entry of ``op`` in the
    ``IMPLS`` table of the module ``kernels.<stem>``. ``reasons`` says why an input cannot be
    served beyond device and dtype, or is None. An op whose module has no entry raises LookupError
    (a declared op without its Triton implementation is a bug, not a silent gap)."""
    out = []
    for op, stem in ops:
        module = importlib.import_module(f"{__name__}.{stem}")
        found = [entry for entry in module.IMPLS if entry[0] == op]
        if not found:
            raise LookupError(f"kernels.{stem} has no Triton implementation of {op!r} in its IMPLS table")
        out.append(found[0])
    return out
