"""select_backend's hot path (fastpose/ops/_dispatch.py, issue 14): the boolean checks of
``Impl.serves`` pick the same implementation as the explained selection, and every refusal still
goes through the explained path, naming where the backend came from."""

from __future__ import annotations

import pytest
import torch

import fastpose
from fastpose.ops import _dispatch, _spec
from tests.ops._cases import backends, make_inputs


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("FASTPOSE_BACKEND", raising=False)
    monkeypatch.delenv("FASTPOSE_STRICT", raising=False)


@pytest.mark.parametrize("op", list(_spec.SPECS))
def test_fast_choice_is_the_explained_choice(op, clean_env, monkeypatch):
    x, args = make_inputs(op, torch.Generator().manual_seed(1), torch.float32, j=3)
    vals = _spec.validate(op, x, *args)
    for dtype in (torch.float32, torch.float64):
        for backend in (None, *backends(op, "cpu", dtype)):
            xv = vals[0].to(dtype)
            chosen = _dispatch.select_backend(op, xv, (xv, *vals[1:]), backend)
            assert chosen is _dispatch._select_explained(op, xv, (xv, *vals[1:]), backend)
    for name in backends(op, "cpu"):
        with fastpose.use_backend(name):
            assert _dispatch.select_backend(op, vals[0], vals, None).backend == name
        monkeypatch.setenv("FASTPOSE_BACKEND", name)
        assert _dispatch.select_backend(op, vals[0], vals, None).backend == name
        monkeypatch.delenv("FASTPOSE_BACKEND")


def test_refusals_name_their_source(clean_env, monkeypatch):
    x = torch.randn(1, 2, 4, 5, device="meta")
    args = (x,)
    with pytest.raises(_dispatch.BackendNotSupportedError, match=r"backend 'cpu' \(from backend=\)"):
        _dispatch.select_backend("soft_argmax_2d", x, args, "cpu")
    with fastpose.use_backend("cpu"), pytest.raises(_dispatch.BackendNotSupportedError,
                                                    match=r"backend 'cpu' \(from fastpose.use_backend\)"):
        _dispatch.select_backend("soft_argmax_2d", x, args, None)
    monkeypatch.setenv("FASTPOSE_BACKEND", "cpu")
    with pytest.raises(_dispatch.BackendNotSupportedError, match=r"backend 'cpu' \(from FASTPOSE_BACKEND\)"):
        _dispatch.select_backend("soft_argmax_2d", x, args, None)
    monkeypatch.setenv("FASTPOSE_BACKEND", "fast")
    with pytest.raises(ValueError, match="FASTPOSE_BACKEND: unknown backend 'fast'"):
        _dispatch.select_backend("soft_argmax_2d", torch.randn(1, 2, 4, 5), args, None)
    monkeypatch.delenv("FASTPOSE_BACKEND")
    with pytest.raises(ValueError, match="unknown op 'nope'"):
        _dispatch.select_backend("nope", torch.randn(1, 2, 4, 5), args, None)
