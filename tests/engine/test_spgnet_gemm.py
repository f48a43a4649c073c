"""SPGNet's windows model as channels-last GEMMs (what the ONNX export writes): same function.

Expected values: SPGNet's own strided path (``model(x, strided=True)``, eval mode) and its full
dilated path on the same windows -- the rewrite never serves as its own reference.
"""

from __future__ import annotations

import pytest
import torch

from fastpose.engine import build_model, model_deployable
from fastpose.engine._models import _SPGNetWindowsGemm
from tests.engine._fixtures import randomise_


@pytest.mark.parametrize("config", [
    {"channels": 32, "filter_widths": [3, 3, 3]},
    {"channels": 24, "filter_widths": [5, 3], "trajectory": False},
    {"channels": 16, "filter_widths": [1, 3], "num_joints": 5},
])
def test_gemm_rewrite_equals_strided_and_full_model(config):
    model = randomise_(build_model("spgnet", config=config), seed=4)
    gemm = _SPGNetWindowsGemm(model).eval()
    r, j = model.receptive_field, model.config.num_joints
    x = torch.rand(6, r, j, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        strided = model(x, strided=True)
        full = model(x, strided=False)
        got = gemm(x)
    want = (strided.pose[:, 0],) + ((strided.trajectory[:, 0],) if strided.trajectory is not None else ())
    whole = (full.pose[:, 0],) + ((full.trajectory[:, 0],) if full.trajectory is not None else ())
    assert len(got) == len(want) == len(whole) == (2 if config.get("trajectory", True) else 1)
    for g, w, f in zip(got, want, whole, strict=True):
        assert g.shape == w.shape and w.std() > 1e-2
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(g, f, atol=1e-4, rtol=1e-4)


def test_gemm_rewrite_folds_batchnorm_and_has_no_convolutions():
    model = randomise_(build_model("spgnet", config={"channels": 8, "filter_widths": [3, 3]}), seed=2)
    gemm = _SPGNetWindowsGemm(model)
    assert not any(isinstance(m, (torch.nn.Conv1d, torch.nn.BatchNorm1d)) for m in gemm.modules())
    # the expand layer: W_mat[k C + c, o] = W[o, c, k] * gamma_o / sqrt(var_o + eps)
    bn, w = model.expand_bn, model.expand_conv.weight
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    o, c, k = 5, 7, 2
    assert gemm.w0[k * w.shape[1] + c, o].item() == pytest.approx((w[o, c, k] * scale[o]).item(), rel=1e-5)
    assert gemm.b0[o].item() == pytest.approx((bn.bias[o] - bn.running_mean[o] * scale[o]).item(), rel=1e-5)


def test_onnx_export_writes_the_gemm_graph_and_both_forms_match(tmp_path):
    pytest.importorskip("onnxruntime")
    import onnx

    from fastpose.engine.onnx import OnnxRunner, export_onnx

    model = randomise_(build_model("spgnet", config={"channels": 32, "filter_widths": [3, 3]}), seed=9)
    dep = model_deployable(model)
    x = dep.example_inputs(4, seed=2)
    ops_of = {}
    for rewrite in (True, False):
        path = tmp_path / f"s-{rewrite}.onnx"
        meta = export_onnx(dep, path, max_batch=16, rewrite=rewrite)
        ops_of[rewrite] = {n.op_type for n in onnx.load(str(path)).graph.node}
        assert ("SPGNetWindowsGemm" in meta.extra["graph"]) == rewrite
        report = OnnxRunner(path).parity(dep, x)  # against the eager model as written
        assert report.ok, report.summary()
    assert "MatMul" in ops_of[True] and not ops_of[True] & {"Conv", "BatchNormalization"}, ops_of[True]
    assert "Conv" in ops_of[False]
