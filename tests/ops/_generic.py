"""Test bodies shared by every op stem: each ``tests/ops/test_<stem>.py`` imports them and sets
``OPS``; ``tests/ops/conftest.py`` parametrises ``op`` and ``backend`` from the registry, so a
backend that registers itself is tested with no further edits.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tests._tolerances import assert_close, assert_low_precision
from tests.ops._cases import as_outputs, backends, cast_args, make_inputs, public, reference_fn, run

__all__ = [
    "test_compile_fullgraph",
    "test_empty_batch",
    "test_float64_matches_reference",
    "test_gradcheck_float64",
    "test_low_precision",
    "test_matches_reference",
    "test_non_contiguous",
    "test_opcheck",
]


def _expected(op, x, args):
    """Plain reference math in float64, differentiated by autograd."""
    return run(reference_fn(op), x.double(), cast_args(args, torch.float64))


@pytest.mark.parametrize("j", [17, 18])
def test_matches_reference(op, backend, j, fresh_seed):
    gen = torch.Generator().manual_seed(fresh_seed)
    x, args = make_inputs(op, gen, torch.float32, j=j)
    exp_out, exp_grad = _expected(op, x, args)
    out, grad = run(public(op), x, args, backend=backend)
    for k, (o, e) in enumerate(zip(out, exp_out, strict=True)):
        assert o.dtype == torch.float32
        assert_close(o, e, torch.float32, f"{op}[{backend}] output {k} (seed {fresh_seed})")
    assert_close(grad, exp_grad, torch.float32, f"{op}[{backend}] gradient (seed {fresh_seed})")


def test_float64_matches_reference(op, backend, fresh_seed):
    if backend not in backends(op, "cpu", torch.float64):
        pytest.skip(f"{backend} does not declare float64 for {op}")
    gen = torch.Generator().manual_seed(fresh_seed)
    x, args = make_inputs(op, gen, torch.float64, j=18)
    exp_out, exp_grad = _expected(op, x, args)
    out, grad = run(public(op), x, args, backend=backend)
    for k, (o, e) in enumerate(zip(out, exp_out, strict=True)):
        assert_close(o, e, torch.float64, f"{op}[{backend}] output {k}")
    assert_close(grad, exp_grad, torch.float64, f"{op}[{backend}] gradient")


def test_gradcheck_float64(op, backend, fresh_seed):
    if backend not in backends(op, "cpu", torch.float64):
        pytest.skip(f"{backend} does not declare float64 for {op}")
    gen = torch.Generator().manual_seed(fresh_seed)
    x, args = make_inputs(op, gen, torch.float64, j=2, batch=1)
    fn = public(op)
    assert torch.autograd.gradcheck(
        lambda t: fn(t, *args, backend=backend), (x.requires_grad_(True),), fast_mode=True, atol=1e-6
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_low_precision(op, backend, dtype, fresh_seed):
    if backend not in backends(op, "cpu", dtype):
        pytest.skip(f"{backend} does not declare {dtype} for {op}")
    gen = torch.Generator().manual_seed(fresh_seed)
    x, args = make_inputs(op, gen, dtype, j=17)
    exp_out, exp_grad = _expected(op, x, args)  # float64 math on the rounded inputs
    ref_out, ref_grad = run(reference_fn(op), x, cast_args(args, torch.float32))  # reference in `dtype`
    out, grad = run(public(op), x, args, backend=backend)
    for k, (o, r, e) in enumerate(zip(out, ref_out, exp_out, strict=True)):
        assert o.dtype == dtype, f"{op}[{backend}] output {k} dtype {o.dtype}"
        assert_low_precision(o, r, e, f"{op}[{backend}] {dtype} output {k}")
    assert grad.dtype == dtype
    assert_low_precision(grad, ref_grad, exp_grad, f"{op}[{backend}] {dtype} gradient")


def _non_contiguous(t: torch.Tensor) -> torch.Tensor:
    """Same values, non-contiguous strides (a strided view into a bigger buffer)."""
    big = torch.empty(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype).fill_(float("nan"))
    big[..., ::2] = t
    out = big[..., ::2]
    assert not out.is_contiguous()
    return out


def test_non_contiguous(op, backend, fresh_seed):
    gen = torch.Generator().manual_seed(fresh_seed)
    x, args = make_inputs(op, gen, torch.float32, j=17)
    exp_out, exp_grad = _expected(op, x, args)
    xs = _non_contiguous(x)
    args_nc = tuple(_non_contiguous(a) if isinstance(a, torch.Tensor) and a.dim() > 1 else a for a in args)
    out, grad = run(public(op), xs, args_nc, backend=backend)
    for k, (o, e) in enumerate(zip(out, exp_out, strict=True)):
        assert_close(o, e, torch.float32, f"{op}[{backend}] non-contiguous output {k}")
    assert_close(grad, exp_grad, torch.float32, f"{op}[{backend}] non-contiguous gradient")


def test_empty_batch(op, backend):
    gen = torch.Generator().manual_seed(0)
    x, args = make_inputs(op, gen, torch.float32, j=17, batch=0)
    exp_out, _ = _expected(op, x, args)
    out, grad = run(public(op), x, args, backend=backend)
    assert grad.shape == x.shape
    for o, e in zip(out, exp_out, strict=True):
        assert o.shape == e.shape
        assert torch.isfinite(o).all(), f"{op}[{backend}] empty batch gave non-finite {o}"
        if o.dim() == 0:
            assert o.item() == 0.0, f"{op}[{backend}]: a mean over an empty batch must be 0"


class _Capture(TorchDispatchMode):
    """Records every ``fastpose::`` op call (forward and backward) with its arguments."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace == "fastpose":
            self.calls.append((func, args, kwargs))
        return func(*args, **kwargs)


def test_opcheck(op, backend):
    gen = torch.Generator().manual_seed(1)
    x, args = make_inputs(op, gen, torch.float32, j=17)
    x.requires_grad_(True)
    with _Capture() as cap:
        outs = as_outputs(public(op)(x, *args, backend=backend))
        sum(o.float().sum() for o in outs).backward()
    assert cap.calls, f"{op}[{backend}] called no fastpose:: op (not registered through torch.library?)"
    seen = set()
    for func, a, kw in cap.calls:
        if func in seen:
            continue
        seen.add(func)
        # Backward ops are not differentiable themselves (no double backward): detach their inputs.
        differentiable = not func.name().endswith("_backward")
        a = tuple(t.detach().clone().requires_grad_(t.requires_grad and differentiable)
                  if isinstance(t, torch.Tensor) else t for t in a)
        torch.library.opcheck(func, a, kw)


def test_compile_fullgraph(op, backend):
    gen = torch.Generator().manual_seed(2)
    x, args = make_inputs(op, gen, torch.float32, j=17)
    torch._dynamo.reset()
    fn = public(op)
    compiled = torch.compile(lambda t: fn(t, *args, backend=backend), fullgraph=True, backend="aot_eager")
    out, grad = run(lambda t: compiled(t), x, ())
    exp_out, exp_grad = run(fn, x, args, backend=backend)
    for o, e in zip(out, exp_out, strict=True):
        assert_close(o, e, torch.float32, f"{op}[{backend}] compiled output")
    assert_close(grad, exp_grad, torch.float32, f"{op}[{backend}] compiled gradient")
