"""The op declarations (fastpose/ops/_spec.py) agree with what the ops do: every declared op is public,
registered, has its reference, produces the declared output shapes, and its native entry points and
ONNX lowerings exist; validation errors come from the declared shapes."""

from __future__ import annotations

import pytest
import torch

import fastpose.reference as R
from fastpose import _ext, ops
from fastpose.ops import _dispatch, _spec
from tests.ops._cases import IMG, PTS, VOL, make_inputs

SPECS = list(_spec.SPECS)


def test_every_declared_op_is_public_and_dispatched():
    assert tuple(_dispatch.OPS) == tuple(_spec.SPECS)
    for op in SPECS:
        assert op in ops.__all__ and callable(getattr(ops, op)), op
        assert "reference" in _dispatch.available_backends(op), op
        assert _spec.spec(op).reference is getattr(R, op)


@pytest.mark.parametrize("op", SPECS)
def test_declared_output_shapes(op):
    x, args = make_inputs(op, torch.Generator().manual_seed(0), torch.float32, j=5)
    out = getattr(ops, op)(x, *args, backend="reference")
    out = out if isinstance(out, tuple) else (out,)
    spec = _spec.spec(op)
    sizes = {"volume": {"B": VOL["B"], "J": 5, "D": VOL["D"], "H": VOL["H"], "W": VOL["W"]},
             "image": {"B": IMG["B"], "J": 5, "H": IMG["H"], "W": IMG["W"]},
             "points": {"*L": (PTS["N"], PTS["T"]), "J": 5}}[spec.family]
    assert [tuple(o.shape) for o in out] == _spec.output_shapes(op, sizes)
    assert all(o.dtype == torch.float32 for o in out)


def test_native_entry_points_exist():
    if not _ext.loaded():
        pytest.skip(f"fastpose._C not loaded: {_ext.error()}")
    mod = _ext.get()
    missing = [n for n in _spec.native_functions("cpu") if not hasattr(mod, n)]
    assert not missing, missing
    if _ext.cuda_built():
        missing = [n for n in _spec.native_functions("cuda") if not hasattr(mod, n)]
        assert not missing, missing


def test_every_export_op_has_an_onnx_lowering():
    pytest.importorskip("onnxscript")
    from fastpose.engine._onnx_ops import TRANSLATIONS

    for op in SPECS:
        for name in _spec.spec(op).exports:
            assert name in TRANSLATIONS, (op, name)


def test_validation_uses_the_declared_shapes():
    x = torch.zeros(2, 3, 4, 5, 6)
    with pytest.raises(ValueError, match=r"soft_argmax_heatmap_mse_3d: joints must have shape \(2, 3, 3\) to "
                                         r"match logits \(2, 3, 4, 5, 6\), got \(2, 3\)"):
        _spec.validate("soft_argmax_heatmap_mse_3d", x, torch.zeros(2, 3), 1.0, None)
    with pytest.raises(ValueError, match=r"reprojection_loss: keypoints_2d must have shape \(4, 7, 2\)"):
        _spec.validate("reprojection_loss", torch.ones(4, 7, 3), torch.ones(9), torch.zeros(4, 7, 3), None)
    with pytest.raises(ValueError, match=r"unknown op 'nope'"):
        _spec.spec("nope")
    joints = _spec.validate("heatmap_mse_2d", torch.zeros(1, 2, 3, 4, dtype=torch.float16),
                            torch.zeros(1, 2, 2, dtype=torch.float64), 1.0, None, "mean")[1]
    assert joints.dtype == torch.float32  # targets in the accumulation dtype, never half precision
