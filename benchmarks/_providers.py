"""Providers: who computes an op in a benchmark row.

``reference`` (the plain :mod:`fastpose.reference` functions, differentiated by autograd),
``reference-compiled`` (the same functions under ``torch.compile(dynamic=False)``), and every
backend registered in :mod:`fastpose.ops._dispatch` for the device except the ``reference``
backend (``cpu``, ``cuda``, ``triton``), called through the public op with ``backend=``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

import fastpose.reference as R
from fastpose import ops as _ops
from fastpose.ops import _dispatch

__all__ = ["PROVIDERS", "not_supported", "provider_fn", "providers_for"]

# Provider names. "reference" is the plain math (not the dispatch's ``reference`` backend, whose
# analytic backward is a test vehicle); the others come from the registry.
PROVIDERS = ("reference", "reference-compiled", "cpu", "cuda", "triton")


def providers_for(op: str, device: str, *, timing: bool) -> list[str]:
    """Providers of ``op`` on ``device``: the two reference flavours plus every registered backend
    that declares the device. Under the CPU, ``triton`` runs only in the interpreter, which is for
    correctness: it is left out of timing runs (``timing=True``)."""
    out = ["reference", "reference-compiled"]
    for be in _dispatch.available_backends(op):
        if be == "reference":
            continue
        impl = _dispatch.get_impl(op, be)
        if impl.devices is not None and device not in impl.devices:
            continue
        if timing and device == "cpu" and be == "triton":
            continue
        out.append(be)
    return out


@functools.cache
def _compiled(op: str) -> Callable:
    import torch._dynamo

    # dynamic=False: one specialised graph per shape, as a training loop with a fixed batch gets.
    # The sweeps compile ~12 shapes of one function: raise dynamo's per-function limit (8).
    cfg = torch._dynamo.config
    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
    setattr(cfg, name, max(getattr(cfg, name), 64))
    return torch.compile(getattr(R, op), dynamic=False)


def provider_fn(op: str, provider: str) -> Callable:
    """A callable ``fn(x, *args)`` computing ``op`` with ``provider``."""
    if provider == "reference":
        return getattr(R, op)
    if provider == "reference-compiled":
        return _compiled(op)
    public = getattr(_ops, op)
    return functools.partial(public, backend=provider)


def not_supported(op: str, provider: str, x: torch.Tensor, args: tuple) -> list[str]:
    """Why ``provider`` cannot serve these inputs (empty: it can)."""
    if provider.startswith("reference"):
        return []
    return _dispatch.not_supported_reasons(op, provider, x, x, *args)

