"""Each fused op exported alone to ONNX (through the one translation table) matches PyTorch in ONNX Runtime.

Exported with an example batch of 3, run at batches 5 and 1 (dynamic batch). Tolerance: fp32
PARITY_TOLERANCES of fastpose.engine.onnx, i.e. max|ORT - torch| <= 1e-4 + 1e-4 * max|torch|.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import onnx  # noqa: E402

from fastpose import ops  # noqa: E402
from fastpose.engine import op_deployable  # noqa: E402
from fastpose.engine.onnx import PARITY_TOLERANCES, OnnxRunner, check_onnx, export_onnx  # noqa: E402
from fastpose.ops import _spec  # noqa: E402

B, J = 3, 5


def _cases(g: torch.Generator) -> dict:
    def rn(*s):
        return torch.randn(*s, generator=g)

    def ru(*s):
        return torch.rand(*s, generator=g)

    pts = torch.cat([rn(B, 4, J, 2) * 0.6, ru(B, 4, J, 1) + 2.0], dim=-1)  # (B, T, J, 3), z in [2, 3]
    # fx, fy, cx, cy, k1, k2, k3, p_a, p_b: focal ~1, centre ~0, small distortion; one camera per
    # sequence, (B, 1, 9), broadcast over the T frames by torch's rule (right-aligned leading dims)
    cam = torch.cat([ru(B, 2) * 0.5 + 1.0, rn(B, 2) * 0.1, rn(B, 3) * 0.2, rn(B, 2) * 0.05], dim=-1)[:, None]
    # one camera per frame, (B, T, 9)
    cam_t = torch.cat([ru(B, 4, 2) * 0.5 + 1.0, rn(B, 4, 2) * 0.1, rn(B, 4, 3) * 0.2, rn(B, 4, 2) * 0.05], dim=-1)
    return {
        # (id, op, tensors, sigma, reduction)
        "soft_argmax_2d": ("soft_argmax_2d", (rn(B, J, 6, 7) * 3,), 2.0, "mean"),
        "soft_argmax_3d": ("soft_argmax_3d", (rn(B, J, 4, 6, 7) * 3,), 2.0, "mean"),
        "heatmap_mse_2d-weights-none": ("heatmap_mse_2d", (ru(B, J, 6, 7), ru(B, J, 2) * 6, ru(B, J)), 1.5, "none"),
        "heatmap_mse_3d-mean": ("heatmap_mse_3d", (ru(B, J, 4, 6, 7), ru(B, J, 3) * 4), 1.5, "mean"),
        "heatmap_mse_3d-weights-sum": ("heatmap_mse_3d", (ru(B, J, 4, 6, 7), ru(B, J, 3) * 4, ru(B, J)), 0.8, "sum"),
        "soft_argmax_heatmap_mse_3d": ("soft_argmax_heatmap_mse_3d",
                                       (rn(B, J, 4, 6, 7) * 2, ru(B, J, 3) * 4, ru(B, J)), 1.2, "mean"),
        # the 2D head: exported through the 3D head's reference op with D = 1 (its declared exports)
        "soft_argmax_heatmap_mse_2d": ("soft_argmax_heatmap_mse_2d",
                                       (rn(B, J, 6, 7) * 2, ru(B, J, 2) * 5, ru(B, J)), 1.2, "mean"),
        "soft_argmax_heatmap_mse_2d-unweighted": ("soft_argmax_heatmap_mse_2d",
                                                  (rn(B, J, 6, 7) * 2, ru(B, J, 2) * 5), 0.9, "mean"),
        "project_to_2d": ("project_to_2d", (pts, cam), 2.0, "mean"),
        "project_to_2d-per-frame": ("project_to_2d", (pts, cam_t), 2.0, "mean"),
        "reprojection_loss": ("reprojection_loss", (pts, cam, rn(B, 4, J, 2) * 0.5, ru(B, 4, J)), 2.0, "mean"),
    }


CASE_IDS = list(_cases(torch.Generator().manual_seed(0)))


@pytest.fixture(scope="module")
def cases():
    return _cases(torch.Generator().manual_seed(1234))


@pytest.mark.parametrize("case", CASE_IDS)
def test_op_exported_alone_matches_pytorch(case, cases, tmp_path):
    op, tensors, sigma, reduction = cases[case]
    dep = op_deployable(op, tensors, sigma=sigma, reduction=reduction)
    path = tmp_path / f"{case}.onnx"
    meta = export_onnx(dep, path, inputs=tensors)  # runs onnx.checker + the standard-domain check
    model = onnx.load(str(path))
    used = {n.op_type for n in model.graph.node}
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node), "custom-domain node in the graph"
    if op.startswith("soft_argmax"):
        assert {"Softmax", "MatMul", "ReduceSum"} <= used, used
    if op.startswith("heatmap_mse"):
        assert "MatMul" in used or op == "heatmap_mse_2d", used
    assert meta.inputs[0].shape[0] == "batch"
    runner = OnnxRunner(path)
    atol, rtol = PARITY_TOLERANCES["fp32"]
    for batch in (5, 1):  # dynamic batch: neither is the export's batch of 3
        x = dep.example_inputs(batch)
        report = runner.parity(dep, x)
        assert report.ok, f"{case} batch {batch}: {report.summary()}"
        # the comparison is not vacuous: outputs vary and are finite
        out = runner(*x)
        assert all(torch.isfinite(o).all() for o in out)
    # and against the public op called directly (not through the deployable module)
    direct = getattr(ops, op)
    if op == "project_to_2d":
        expected = (direct(*tensors),)
    elif op.startswith("soft_argmax_2d") or op == "soft_argmax_3d":
        expected = (direct(tensors[0]),)
    elif op.startswith("heatmap_mse"):
        expected = (direct(tensors[0], tensors[1], sigma, tensors[2] if len(tensors) > 2 else None, reduction),)
    elif op.startswith("soft_argmax_heatmap_mse"):
        expected = direct(tensors[0], tensors[1], sigma, tensors[2] if len(tensors) > 2 else None)
    else:
        expected = (direct(*tensors),)
    got = runner(*tensors)
    for e, a in zip(expected, got, strict=True):
        torch.testing.assert_close(a, e, atol=atol, rtol=1e-4)


def test_soft_argmax_translation_keeps_float32_accumulation_for_half_inputs(tmp_path):
    """A float16 soft-argmax lowers with the softmax in float32 (the reference accumulates in fp32)."""
    g = torch.Generator().manual_seed(7)
    logits = (torch.randn(3, 4, 5, 6, 7, generator=g) * 4).half()
    dep = op_deployable("soft_argmax_3d", (logits,))
    path = tmp_path / "sa16.onnx"
    export_onnx(dep, path, inputs=(logits,))
    model = onnx.load(str(path))
    softmax_inputs = {n.input[0] for n in model.graph.node if n.op_type == "Softmax"}
    assert softmax_inputs, "no Softmax node"
    # the value feeding the Softmax is produced by a Reshape of a Cast-to-float32
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    assert any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for n in casts for a in n.attribute)
    out = OnnxRunner(path)(logits)[0]
    ref64 = ops.soft_argmax_3d(logits.double())
    ref16 = ops.soft_argmax_3d(logits)
    assert out.dtype == torch.float16
    # no worse than 2x PyTorch's own half-precision result (+ half an ulp of the output range)
    err = (out.double() - ref64).abs().max().item()
    ref_err = (ref16.double() - ref64).abs().max().item()
    assert err <= 2 * ref_err + 4e-3, (err, ref_err)


def test_check_onnx_rejects_a_custom_domain_node(tmp_path):
    from onnx import helper

    node = helper.make_node("SoftArgmax3d", ["x"], ["y"], domain="fastpose")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("fastpose", 1)])
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    from fastpose.engine import EngineLoadError

    with pytest.raises(EngineLoadError, match="non-standard operators"):
        check_onnx(path)


def test_public_exporter_path_gives_the_same_model(tmp_path, monkeypatch, cases):
    """The cached-registry shortcut and torch.onnx.export(custom_translation_table=...) agree."""
    import fastpose.engine.onnx as eo

    op, tensors, sigma, reduction = cases["soft_argmax_heatmap_mse_3d"]
    dep = op_deployable(op, tensors, sigma=sigma, reduction=reduction)
    export_onnx(dep, tmp_path / "cached.onnx", inputs=tensors)
    monkeypatch.setattr(eo, "_USE_CACHED_REGISTRY", False)
    export_onnx(dep, tmp_path / "public.onnx", inputs=tensors)
    a, b = onnx.load(str(tmp_path / "cached.onnx")), onnx.load(str(tmp_path / "public.onnx"))
    assert [n.op_type for n in a.graph.node] == [n.op_type for n in b.graph.node]
    x = dep.example_inputs(4)
    for o1, o2 in zip(OnnxRunner(tmp_path / "cached.onnx")(*x), OnnxRunner(tmp_path / "public.onnx")(*x), strict=True):
        assert torch.equal(o1, o2)


@pytest.mark.parametrize("op", sorted(_spec.SPECS))
def test_every_declared_op_runs_as_a_deployable(op):
    """op_deployable builds any declared op's module from its declaration (tensor inputs in call
    order, sigma / reduction fixed); eager, weighted and unweighted, against the public op called
    with its positional arguments directly."""
    spec = _spec.SPECS[op]
    dims = {"volume": (3, 4, 5), "image": (4, 5), "points": (3,)}[spec.family]
    x, rest = _spec.make_case(op, torch.Generator().manual_seed(3), batch=2, j=3, dims=dims,
                              sec_dtype=torch.float32)
    tensors = (x, *(v for v in rest if isinstance(v, torch.Tensor)))
    expected = getattr(ops, op)(x, *rest)
    expected = tuple(expected) if isinstance(expected, tuple) else (expected,)
    dep = op_deployable(op, tensors, sigma=1.7)
    assert dep.output_names == [name for name, _ in spec.outputs]
    got = dep(*tensors)
    assert len(got) == len(expected) == len(spec.outputs)
    for e, a in zip(expected, got, strict=True):
        torch.testing.assert_close(a, e, rtol=0, atol=0)
    optional = [a.name for a in spec.args if a.optional]
    if optional:  # the trailing weights left out: the op runs unweighted
        unweighted = getattr(ops, op)(x, *(None if a.optional else v for a, v in zip(spec.args[1:], rest, strict=True)))
        unweighted = tuple(unweighted) if isinstance(unweighted, tuple) else (unweighted,)
        dep = op_deployable(op, tensors[: len(tensors) - len(optional)], sigma=1.7)
        assert not dep.config["weighted"]
        for e, a in zip(unweighted, dep(*tensors[: len(tensors) - len(optional)]), strict=True):
            torch.testing.assert_close(a, e, rtol=0, atol=0)
    with pytest.raises(ValueError, match="argument 'example'"):
        op_deployable(op, tensors + tensors)
