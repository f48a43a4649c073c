"""Providers: who computes an op in a benchmark row.

The peer-style providers (``peer``, ``peer-compiled``, ``peer+target``, ``peer+target-compiled``,
``peer-target``: the code users run today, see :mod:`benchmarks._peers`) are the baselines the
report's headline ratios are taken against; ``reference`` (the plain :mod:`fastpose.reference` functions, differentiated by autograd),
``reference-compiled`` (the same functions under ``torch.compile(dynamic=False)``), and every
backend registered in :mod:`fastpose.ops._dispatch` for the device except the ``reference``
backend (``cpu``, ``cuda``, ``triton``), called through the public op with ``backend=``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

import fastpose.reference as R
from benchmarks._peers import PEER_PROVIDERS, peer_providers_for, peer_row
from fastpose import ops as _ops
from fastpose.ops import _dispatch

__all__ = ["BACKENDS", "PROVIDERS", "not_supported", "prepare_args", "provider_fn", "provider_modes",
           "providers_for", "target_only"]

# Provider names. "reference" is the plain math (not the dispatch's ``reference`` backend, whose
# analytic backward is a test vehicle); the others come from the registry.
BACKENDS = ("cpu", "cuda", "triton")
PROVIDERS = (*PEER_PROVIDERS, "reference", "reference-compiled", *BACKENDS)
_MODES = ("forward", "backward", "forward+backward")


def providers_for(op: str, device: str, *, timing: bool) -> list[str]:
    """Providers of ``op`` on ``device``: the peer-style providers, the two reference flavours and
    every registered backend that declares the device. Under the CPU, ``triton`` runs only in the
    interpreter, which is for correctness: it is left out of timing runs (``timing=True``)."""
    out = [*peer_providers_for(op, timing=timing), "reference", "reference-compiled"]
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
    if provider in PEER_PROVIDERS:
        return peer_row(op, provider).fn
    public = getattr(_ops, op)
    return functools.partial(public, backend=provider)


def not_supported(op: str, provider: str, x: torch.Tensor, args: tuple) -> list[str]:
    """Why ``provider`` cannot serve these inputs (empty: it can)."""
    if provider.startswith("reference") or provider in PEER_PROVIDERS:
        return []
    return _dispatch.not_supported_reasons(op, provider, x, x, *args)


def prepare_args(op: str, provider: str, x: torch.Tensor, args: tuple) -> tuple:
    """The arguments ``provider`` is called with, prepared once and untimed from the op's own
    ``args`` (a peer's precomputed Gaussian target, VideoPose3D's camera layout); ``args`` itself
    for every other provider."""
    if provider in PEER_PROVIDERS:
        return peer_row(op, provider).prepare(x, args)
    return args


def provider_modes(op: str, provider: str) -> tuple[str, ...]:
    """The modes a provider has rows in (``peer-target``: forward only, a target has no gradient)."""
    if provider in PEER_PROVIDERS:
        return peer_row(op, provider).modes
    return _MODES


def target_only(op: str, provider: str) -> bool:
    """True for rows that time the Gaussian target generation alone (checked on their own)."""
    return provider in PEER_PROVIDERS and peer_row(op, provider).target_only

