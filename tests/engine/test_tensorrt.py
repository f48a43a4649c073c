"""TensorRT: what can be checked without TensorRT, and the GPU tests that run where it is installed.

fastpose/engine/tensorrt.py has never been run in this repository (no TensorRT, no GPU): the
tests marked ``gpu`` that import tensorrt are its first real test on a GPU machine.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from fastpose.engine import EngineLoadError, TensorSpec
from fastpose.engine.tensorrt import TensorRTRunner, build_engine, import_tensorrt, profile_shapes
from tests.engine._fixtures import TINY

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def test_profile_shapes_replace_only_the_batch():
    spec = TensorSpec("images", ("batch", 3, 256, 256), "float16")
    assert profile_shapes(spec, 1, 8, 32) == ((1, 3, 256, 256), (8, 3, 256, 256), (32, 3, 256, 256))
    with pytest.raises(ValueError, match="min_batch <= opt_batch <= max_batch"):
        profile_shapes(spec, 4, 2, 32)


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed")
def test_missing_tensorrt_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match=r"TensorRT is not installed.*pip install tensorrt"):
        import_tensorrt()
    with pytest.raises(RuntimeError, match="TensorRT is not installed"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.plan")


def test_runner_missing_or_unreadable_plan_is_a_clear_error(tmp_path):
    # A plan without <plan>.json is now read through TensorRT itself (shapes and profile from the
    # engine), so without TensorRT the error is the install hint; with it, a garbage plan cannot
    # be deserialised.
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"\x00" * 64)
    if HAS_TRT:
        if torch.cuda.is_available():
            with pytest.raises(EngineLoadError, match="cannot be deserialised"):
                TensorRTRunner(plan)
    else:
        with pytest.raises(RuntimeError, match="TensorRT is not installed"):
            TensorRTRunner(plan)
    with pytest.raises(EngineLoadError, match="does not exist"):
        TensorRTRunner(tmp_path / "nope.plan")


def test_profile_shapes_with_frames():
    spec = TensorSpec("keypoints_2d", ("batch", "frames", 17, 2), "float32")
    lo, opt, hi = profile_shapes(spec, 1, 4, 8, {"frames": (1, 300, 4096)})
    assert (lo, opt, hi) == ((1, 1, 17, 2), (4, 300, 17, 2), (8, 4096, 17, 2))
    with pytest.raises(ValueError, match="dynamic dimension 'frames' but no"):
        profile_shapes(spec, 1, 4, 8)
    with pytest.raises(ValueError, match="1 <= min <= opt <= max for 'frames'"):
        profile_shapes(spec, 1, 4, 8, {"frames": (10, 5, 20)})


# ----------------------------------------------------------------------------- GPU + TensorRT
needs_trt = pytest.mark.skipif(not HAS_TRT, reason="tensorrt is not installed")


@pytest.fixture(scope="module")
def spgnet_engines(tmp_path_factory):
    from fastpose.engine import deployable
    from fastpose.engine.onnx import export_onnx

    work = tmp_path_factory.mktemp("trt")
    torch.manual_seed(0)
    out = {}
    for precision in ("fp32", "fp16"):
        dep = deployable("spgnet", config=TINY["spgnet"], precision=precision)
        onnx_path = work / f"s-{precision}.onnx"
        export_onnx(dep, onnx_path, max_batch=64, device="cuda")
        plan = work / f"s-{precision}.plan"
        meta = build_engine(onnx_path, plan, min_batch=1, opt_batch=8, max_batch=64,
                            workspace_gib=1.0, timing_cache=work / "timing.cache")
        out[precision] = (dep, plan, meta)
    return out


@pytest.mark.gpu
@needs_trt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_parity_and_metadata(precision, spgnet_engines):
    dep, plan, meta = spgnet_engines[precision]
    assert meta.precision == precision and meta.extra["profile"]["keypoints_2d"]["opt"][0] == 8
    runner = TensorRTRunner(plan)
    for batch in (1, 5):
        x = tuple(t.cuda() for t in dep.example_inputs(batch, seed=3))
        report = runner.parity(dep, x)
        assert report.ok, report.summary()


@pytest.mark.gpu
@needs_trt
def test_tensorrt_errors(spgnet_engines, tmp_path):
    dep, plan, _ = spgnet_engines["fp32"]
    runner = TensorRTRunner(plan)
    x = dep.example_inputs(2)[0].cuda()
    with pytest.raises(ValueError, match="must have dtype torch.float32"):
        runner(x.half())
    with pytest.raises(ValueError, match="must have shape"):
        runner(x[:, :-1])
    with pytest.raises(ValueError, match="must be on device 'cuda'"):
        runner(x.cpu())
    bad = tmp_path / "bad.plan"
    bad.write_bytes(plan.read_bytes()[:1000])
    (tmp_path / "bad.plan.json").write_text((plan.parent / (plan.name + ".json")).read_text())
    with pytest.raises(EngineLoadError, match="cannot be deserialised"):
        TensorRTRunner(bad)


@pytest.mark.gpu
@needs_trt
def test_tensorrt_video_engine_parity(tmp_path):
    """Full-video SPGNet (dynamic frames) through TensorRT, against the eager whole-sequence API."""
    from fastpose.engine import build_model, model_deployable
    from fastpose.engine.onnx import export_onnx

    torch.manual_seed(0)
    model = build_model("spgnet", config=TINY["spgnet"])
    dep = model_deployable(model, video=True)
    onnx_path = tmp_path / "v.onnx"
    export_onnx(dep, onnx_path, inputs=dep.example_inputs(2, frames=12), max_batch=8, device="cuda")
    plan = tmp_path / "v.plan"
    meta = build_engine(onnx_path, plan, max_batch=4, workspace_gib=1.0)
    assert meta.extra["dim_profiles"]["frames"] == [1, 300, 4096]
    runner = TensorRTRunner(plan)
    (x,) = dep.example_inputs(2, frames=50, seed=1)
    pose = runner(x.cuda())[0]
    torch.cuda.synchronize()
    want = torch.stack([model.predict(x[b]).pose for b in range(2)])
    assert (pose.cpu() - want).abs().max().item() <= 1e-4 + 1e-4 * want.abs().max().item()
