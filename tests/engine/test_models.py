"""Both models through the engines on the CPU: ONNX Runtime and AOTInductor parity, clear errors.

Small configurations (tests/engine/_fixtures.py) with re-drawn weights, exported through the
command line (``fastpose export --checkpoint ...``) once per module; every test reuses the files.
Tolerances: PARITY_TOLERANCES["fp32"] of fastpose.engine.onnx, max|engine - torch| <=
1e-4 + 1e-4 * max|torch| per output, against PyTorch eager float32 on the same weights.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

pytest.importorskip("onnxruntime")

from fastpose import cli  # noqa: E402
from fastpose.engine import EngineLoadError, deployable  # noqa: E402
from fastpose.engine.aoti import AotiRunner  # noqa: E402
from fastpose.engine.onnx import OnnxRunner  # noqa: E402
from tests.engine._fixtures import TINY, save_tiny_checkpoint  # noqa: E402

MODELS = ("spgnet", "volumetric")

# Test-time savings, same generated kernels: AOTInductor probes the compiler for every SIMD ISA the
# CPU lists before compiling (~6 small C++ builds, ~15 s on 2 cores): skipped, the CPU's flags are
# trusted; the wrapper (host code calling the kernels) is compiled at -O0 instead of -O1; no
# precompiled header (building it costs ~14 s on a fresh machine, it saves ~2 s per package here).
_AOTI_TEST_CONFIG = {"cpp.vec_isa_ok": True, "aot_inductor.compile_wrapper_opt_level": "O0",
                     "aot_inductor.precompile_headers": False}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="module")
def checkpoints(workdir):
    return {m: save_tiny_checkpoint(m, workdir / f"{m}.ckpt", seed=11 + i) for i, m in enumerate(MODELS)}


@pytest.fixture(scope="module")
def deps(checkpoints):
    return {m: deployable(m, checkpoint=checkpoints[m]) for m in MODELS}


@pytest.fixture(scope="module")
def onnx_files(workdir, checkpoints):
    """fastpose export --format onnx for both models (the CLI also prints its own parity check)."""
    out = {}
    for m in MODELS:
        path = workdir / f"{m}.onnx"
        rc = cli.main(["export", "--model", m, "--checkpoint", str(checkpoints[m]), "--format", "onnx",
                       "--output", str(path), "--max-batch", "64"])
        assert rc == 0, f"fastpose export {m} onnx failed"
        out[m] = path
    return out


@pytest.fixture(scope="module")
def aoti_files(workdir, checkpoints):
    out = {}
    for m in MODELS:
        path = workdir / f"{m}.pt2"
        with torch._inductor.config.patch(_AOTI_TEST_CONFIG):
            rc = cli.main(["export", "--model", m, "--checkpoint", str(checkpoints[m]), "--format", "aoti",
                           "--device", "cpu", "--output", str(path), "--max-batch", "64"])
        assert rc == 0, f"fastpose export {m} aoti failed"
        out[m] = path
    return out


def _inputs(dep, batch, seed=5):
    return dep.example_inputs(batch, seed=seed)


# ------------------------------------------------------------------------------------------ parity
@pytest.mark.parametrize("model", MODELS)
def test_onnx_runtime_parity(model, deps, onnx_files):
    dep, runner = deps[model], OnnxRunner(onnx_files[model])
    assert runner.metadata.model == model and runner.metadata.precision == "fp32"
    assert runner.metadata.model_config["model"] == model
    for batch in (1, 4):
        x = _inputs(dep, batch)
        report = runner.parity(dep, x)
        assert report.ok, f"{model} batch {batch}: {report.summary()}"
        # not a vacuous comparison: every output varies across the batch and the joints
        for name, o in zip(runner.output_names, runner(*x), strict=True):
            assert o.shape[0] == batch
            assert o.float().std() > 1e-2, f"{name} is (nearly) constant"


@pytest.mark.parametrize("model", MODELS)
def test_aoti_parity(model, deps, aoti_files):
    dep, runner = deps[model], AotiRunner(aoti_files[model])
    assert runner.metadata.format == "aoti" and runner.metadata.device == "cpu"
    for batch in (1, 4):
        x = _inputs(dep, batch, seed=6)
        report = runner.parity(dep, x)
        assert report.ok, f"{model} batch {batch}: {report.summary()}"
        for o in runner(*x):
            assert o.float().std() > 1e-2


def test_volumetric_outputs_are_not_the_centre(deps):
    """The parity tests would be weak on a flat volume: the soft-argmax must move off the centre."""
    dep = deps["volumetric"]
    coords, _pose = dep(*_inputs(dep, 2))
    centre = (TINY["volumetric"]["input_size"] // 32 * 8 - 1) / 2
    assert (coords[..., :2] - centre).abs().max() > 1.0


def test_aoti_package_runs_without_fastpose(aoti_files, deps, workdir):
    """The package is loaded and run by a Python process that never imports fastpose."""
    dep = deps["spgnet"]
    x = _inputs(dep, 3, seed=9)
    torch.save({"x": x[0], "expected": dep(*x)}, workdir / "io.pt")
    code = (
        "import sys, torch\n"
        f"d = torch.load({str(workdir / 'io.pt')!r})\n"
        f"m = torch._inductor.aoti_load_package({str(aoti_files['spgnet'])!r})\n"
        "out = m(d['x'])\n"
        "err = max((a - b).abs().max().item() for a, b in zip(out, d['expected']))\n"
        "assert not any(k == 'fastpose' or k.startswith('fastpose.') for k in sys.modules), 'fastpose imported'\n"
        "print('maxerr', err)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=str(workdir))
    assert res.returncode == 0, res.stderr[-2000:]
    err = float(res.stdout.split("maxerr")[-1])
    assert err < 1e-4


# ------------------------------------------------------------------------------------------ errors
@pytest.fixture(scope="module")
def runners(onnx_files, aoti_files):
    return {"onnx": OnnxRunner(onnx_files["spgnet"]), "aoti": AotiRunner(aoti_files["spgnet"])}


@pytest.mark.parametrize("engine", ["onnx", "aoti"])
def test_wrong_input_shape_is_a_clear_error(engine, runners, deps):
    runner = runners[engine]
    r, j = deps["spgnet"].config["filter_widths"], deps["spgnet"].config["num_joints"]
    frames = r[0] * r[1]
    bad = torch.rand(2, frames + 1, j, 2)  # one frame too many
    with pytest.raises(ValueError, match=rf"'keypoints_2d' must have shape \(batch, {frames}, {j}, 2\), "
                                         rf"received \(2, {frames + 1}, {j}, 2\)"):
        runner(bad)
    with pytest.raises(ValueError, match=r"expected 1 input\(s\) \(keypoints_2d\), received 2"):
        runner(torch.rand(2, frames, j, 2), torch.rand(2, frames, j, 2))
    with pytest.raises(ValueError, match=r"batch size must be in \[1, 64\].*received 65"):
        runner(torch.rand(65, frames, j, 2))


@pytest.mark.parametrize("engine", ["onnx", "aoti"])
def test_wrong_dtype_is_a_clear_error(engine, runners, deps):
    runner = runners[engine]
    x = _inputs(deps["spgnet"], 2)[0]
    with pytest.raises(ValueError, match=r"'keypoints_2d' must have dtype torch.float32, received torch.float64"):
        runner(x.double())
    with pytest.raises(TypeError, match=r"'keypoints_2d' must be a torch.Tensor, received ndarray"):
        runner(x.numpy())


@pytest.mark.parametrize("engine", ["onnx", "aoti"])
def test_corrupt_engine_file_is_a_clear_error(engine, onnx_files, aoti_files, tmp_path):
    src = onnx_files["spgnet"] if engine == "onnx" else aoti_files["spgnet"]
    data = src.read_bytes()
    bad = tmp_path / src.name
    bad.write_bytes(data[: len(data) // 3])  # truncated
    (tmp_path / (src.name + ".json")).write_text((src.parent / (src.name + ".json")).read_text())
    runner_cls = OnnxRunner if engine == "onnx" else AotiRunner
    with pytest.raises(EngineLoadError, match=rf"{bad.name}.*cannot be loaded"):
        runner_cls(bad)
    garbage = tmp_path / ("garbage" + src.suffix)
    garbage.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(EngineLoadError, match="cannot be loaded"):
        runner_cls(garbage)
    with pytest.raises(EngineLoadError, match="does not exist"):
        runner_cls(tmp_path / ("missing" + src.suffix))


def test_corrupt_metadata_is_a_clear_error(onnx_files, tmp_path):
    src = onnx_files["spgnet"]
    dst = tmp_path / "m.onnx"
    dst.write_bytes(src.read_bytes())
    (tmp_path / "m.onnx.json").write_text("{not json")
    with pytest.raises(EngineLoadError, match="not valid JSON"):
        OnnxRunner(dst)
    # without the sidecar, the copy of the metadata inside the file is used
    (tmp_path / "m.onnx.json").unlink()
    assert OnnxRunner(dst).metadata.model == "spgnet"


def test_metadata_records_versions_shapes_precision(onnx_files, aoti_files):
    for path in (onnx_files["volumetric"], aoti_files["volumetric"]):
        meta = json.loads((path.parent / (path.name + ".json")).read_text())
        assert meta["precision"] == "fp32"
        assert meta["inputs"] == [{"name": "images", "shape": ["batch", 3, 64, 64], "dtype": "float32"}]
        assert [o["name"] for o in meta["outputs"]] == ["coords", "pose"]
        assert meta["outputs"][0]["shape"] == ["batch", 18, 3]
        assert meta["versions"]["torch"] == torch.__version__
        assert meta["batch_range"] == [1, 64]


# ------------------------------------------------------------------------------------------ CLI
def test_export_cli_rejects_bad_arguments(tmp_path, capsys):
    rc = cli.main(["export", "--model", "spgnet", "--format", "onnx", "--output", str(tmp_path / "x.pt2")])
    assert rc == 2 and "must end in .onnx" in capsys.readouterr().err
    rc = cli.main(["export", "--model", "spgnet", "--format", "onnx", "--output", str(tmp_path / "x.onnx"),
                   "--config", '{"no_such_field": 1}'])
    assert rc == 2 and "unknown SPGNet fields ['no_such_field']" in capsys.readouterr().err
    # an argument error: one line naming the flag, exit status 2 (fastpose.cli turns argparse's exit into it)
    rc = cli.main(["export", "--model", "spgnet", "--format", "onnx", "--output", "x.onnx", "--config", "[1]"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--config must be a JSON object" in err


def test_export_cli_tensorrt_without_tensorrt_says_how_to_get_it(tmp_path, capsys):
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    rc = cli.main(["export", "--model", "spgnet", "--config", json.dumps(TINY["spgnet"]), "--format", "tensorrt",
                   "--output", str(tmp_path / "s.plan")])
    err = capsys.readouterr().err
    assert rc == 1 and "TensorRT is not installed" in err and "pip install tensorrt" in err


# ------------------------------------------------------------------------------------------ half precision
def test_half_precision_onnx(deps, tmp_path):
    """fp16: ONNX Runtime parity against float32 PyTorch (fp16 tolerance); bf16: a valid opset-22
    file whose Conv weights stay bfloat16 (ONNX Runtime has no bf16 kernels; it is for TensorRT)."""
    import onnx

    from fastpose.engine.onnx import export_onnx

    dep = deps["spgnet"]
    export_onnx(dep.to(torch.float16), tmp_path / "s16.onnx", max_batch=8)
    runner = OnnxRunner(tmp_path / "s16.onnx")
    x = _inputs(dep, 3)
    report = runner.parity(dep, tuple(t.half() for t in x))
    assert report.ok and report.rtol == 2e-2, report.summary()
    meta = export_onnx(dep.to(torch.bfloat16), tmp_path / "sbf16.onnx", max_batch=8)  # runs onnx.checker
    assert meta.extra["opset"] == 22 and meta.inputs[0].dtype == "bfloat16"
    model = onnx.load(str(tmp_path / "sbf16.onnx"))
    inits = {i.name: i.data_type for i in model.graph.initializer}
    # SPGNet's windows model is exported as MatMuls (the GEMM rewrite): their weights stay bfloat16
    mm_w = [n.input[1] for n in model.graph.node if n.op_type in ("MatMul", "Gemm", "Conv")]
    assert mm_w and all(inits.get(w, onnx.TensorProto.BFLOAT16) == onnx.TensorProto.BFLOAT16 for w in mm_w)
    assert {i.data_type for i in model.graph.initializer if i.name in mm_w} == {onnx.TensorProto.BFLOAT16}
    with pytest.raises(EngineLoadError, match="no kernel"):
        OnnxRunner(tmp_path / "sbf16.onnx")
