"""The fast path of argument validation (fastpose/ops/_spec.py: ``_validate_fast``, issue 14).

``validate`` first tries a precomputed per-op check and falls back to the full one for anything it
does not accept outright. The fast path must never accept what the full checks refuse, and must
return exactly what they return (the same tensor objects when no cast is needed).
"""

from __future__ import annotations

import pytest
import torch

from fastpose.ops import _spec
from tests.ops._cases import make_inputs

OPS = list(_spec.SPECS)  # parametrises `op` (tests/ops/conftest.py)


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    return type(a) is type(b) and a == b


def _full(op, values):
    """The full checks' result, or the exception type they raise."""
    try:
        return _spec._validate_full(op, *values)
    except (TypeError, ValueError) as exc:
        return type(exc)


def _fast(op, values):
    return _spec._validate_fast(_spec._FAST_PLANS[op], tuple(values))


def _valid_variants(op, dtype):
    x, args = make_inputs(op, torch.Generator().manual_seed(11), dtype, j=3)
    names = [a.name for a in _spec.spec(op).args[1:]]
    out = [(x, *args)]
    cast = tuple(a.to(torch.float32) if isinstance(a, torch.Tensor) else a for a in args)
    out.append((x, *cast))  # secondary tensors already in (or cast to) the accumulation dtype
    if "weights" in names:
        k = names.index("weights") + 1
        v = list(out[0])
        v[k] = None
        out.append(tuple(v))
    if "sigma" in names:
        k = names.index("sigma") + 1
        v = list(out[0])
        v[k] = 2  # an int sigma
        out.append(tuple(v))
    if "camera" in names:
        k = names.index("camera") + 1
        c = args[k - 1]  # (N, 1, 9) for points (N, T, J, 3)
        # (9,) one camera, (N, T, 9) per frame, (T, 9) per frame index
        for cam in (c[0, 0], c.expand(x.shape[0], x.shape[1], 9), c[0, 0].expand(x.shape[1], 9)):
            v = list(out[0])
            v[k] = cam
            out.append(tuple(v))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16], ids=str)
def test_fast_path_accepts_usual_arguments_and_agrees(op, dtype):
    for values in _valid_variants(op, dtype):
        fast = _fast(op, values)
        assert fast is not None, f"{op}: the fast path refused valid arguments"
        full = _full(op, values)
        assert isinstance(full, tuple) and len(fast) == len(full)
        for k, (a, b) in enumerate(zip(fast, full, strict=True)):
            assert _same(a, b), f"{op} argument {k}: fast {a!r} != full {b!r}"
            if isinstance(b, torch.Tensor):
                # a tensor needing no cast is passed on as is, by both
                assert (a is values[k]) == (b is values[k])


def _invalid_variants(op):
    x, args = make_inputs(op, torch.Generator().manual_seed(12), torch.float32, j=3)
    spec = _spec.spec(op)
    out = [(x.to(torch.int32), *args), (x[0], *args), (x.numpy(), *args), (x, *args, None)]
    for k, a in enumerate(spec.args[1:], start=1):
        bad = []
        if a.kind in ("tensor", "camera"):
            t = args[k - 1]
            bad += [t[..., :1], t.to(torch.int64), t.tolist(), t.to("meta"), t.clone().requires_grad_(True)]
            if not a.optional:
                bad.append(None)
        elif a.kind == "sigma":
            bad += [0.0, -1.0, float("inf"), float("nan"), True, "2", None]
        elif a.kind == "reduction":
            bad += ["avg", None, 1]
        for b in bad:
            v = list((x, *args))
            v[k] = b
            out.append(tuple(v))
    if any(a.kind == "camera" for a in spec.args):
        cam = args[0]
        for c in (cam.expand(2, *cam.shape).clone(), cam[:1].expand(x.shape[0] + 1, 1, 9).clone(),
                  torch.zeros(x.shape[0], 1, 8, dtype=cam.dtype), cam[:, 0].clone()):  # ..., (N, 9): N != T
            out.append((x, c, *args[1:]))
    return out


def test_fast_path_never_accepts_what_the_full_checks_refuse(op):
    n_refused = 0
    for values in _invalid_variants(op):
        full = _full(op, values)
        if isinstance(full, tuple):  # valid after all (e.g. a secondary in float64 is cast): must agree
            fast = _fast(op, values)
            assert fast is None or all(_same(a, b) for a, b in zip(fast, full, strict=True))
            continue
        n_refused += 1
        assert _fast(op, values) is None, f"{op}: the fast path accepted arguments the full checks refuse"
        with pytest.raises(full):
            _spec.validate(op, *values)
    assert n_refused >= 4 + 4 * (len(_spec.spec(op).args) - 1)
