"""Full-video SPGNet through the engines: a dilated export with a dynamic frame count.

The expected values come from the eager model's own whole-sequence API, ``SPGNet.predict``
(edge padding by ``fastpose.data.pad_sequence``, then the full model), one sequence at a time, and
from the sliding-window model on explicitly padded windows -- never from the exported module.
Tolerance: PARITY_TOLERANCES["fp32"] (max|engine - torch| <= 1e-4 + 1e-4 max|torch|).
"""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("onnxruntime")

from fastpose import cli  # noqa: E402
from fastpose.data.batching import pad_sequence  # noqa: E402
from fastpose.engine import EngineLoadError, build_model, model_deployable  # noqa: E402
from fastpose.engine.onnx import PARITY_TOLERANCES, OnnxRunner, export_onnx  # noqa: E402
from tests.engine._fixtures import TINY, randomise_  # noqa: E402

# receptive field of the tiny model: 3 x 3 = 9 frames, 4 frames of padding on each side
R = 9
ATOL, RTOL = PARITY_TOLERANCES["fp32"]
_AOTI_TEST_CONFIG = {"cpp.vec_isa_ok": True, "aot_inductor.compile_wrapper_opt_level": "O0",
                     "aot_inductor.precompile_headers": False}


@pytest.fixture(scope="module")
def model():
    m = randomise_(build_model("spgnet", config=TINY["spgnet"]), seed=21)
    assert m.receptive_field == R
    return m


@pytest.fixture(scope="module")
def video(model):
    return model_deployable(model, video=True)


@pytest.fixture(scope="module")
def onnx_file(video, tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "spgnet-video.onnx"
    export_onnx(video, path, inputs=video.example_inputs(2, frames=12), max_batch=8)
    return path


def _expected(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager whole-sequence inference, one sequence at a time: (B, T, J, 3), (B, T, 1, 3)."""
    outs = [model.predict(x[b]) for b in range(x.shape[0])]
    return torch.stack([o.pose for o in outs]), torch.stack([o.trajectory for o in outs])


def _assert_close(got, want, what):
    err = (got.double() - want.double()).abs().max().item()
    bound = ATOL + RTOL * want.double().abs().max().item()
    assert err <= bound, f"{what}: max|diff| {err:.3e} > {bound:.3e}"


def test_video_metadata_has_dynamic_frames(video, onnx_file):
    meta = json.loads(onnx_file.with_name(onnx_file.name + ".json").read_text())
    assert meta["model"] == "spgnet-video"
    assert meta["inputs"] == [{"name": "keypoints_2d", "shape": ["batch", "frames", 17, 2], "dtype": "float32"}]
    assert [o["shape"] for o in meta["outputs"]] == [["batch", "frames", 17, 3], ["batch", "frames", 1, 3]]
    assert meta["dims"]["frames"]["min"] == 1 and meta["dims"]["frames"]["default"] == 300
    assert meta["model_config"]["padding"] == "edge" and meta["model_config"]["pad_frames"] == (R - 1) // 2


@pytest.mark.parametrize("frames,batch", [(40, 2), (R + 1, 1), (3, 2)])
def test_onnx_video_matches_eager_whole_sequence(model, video, onnx_file, frames, batch):
    """Sequences longer than the receptive field (40, 10 frames) and shorter (3): every frame predicted."""
    runner = OnnxRunner(onnx_file)
    (x,) = video.example_inputs(batch, frames=frames, seed=frames)
    pose, traj = runner(x)
    assert pose.shape == (batch, frames, 17, 3) and traj.shape == (batch, frames, 1, 3)
    want_pose, want_traj = _expected(model, x)
    assert want_pose.std() > 1e-2  # not a vacuous comparison
    _assert_close(pose, want_pose, "pose")
    _assert_close(traj, want_traj, "trajectory")


def test_video_frames_equal_windows_of_the_padded_sequence(model, video, onnx_file):
    """Frame t of the video engine = the sliding-window model on frames t .. t + R - 1 of the
    edge-padded sequence (the strided path, a different code path and graph)."""
    (x,) = video.example_inputs(1, frames=25, seed=3)
    padded = pad_sequence(x[0], (R - 1) // 2)  # (25 + 8, J, 2)
    windows = padded.unfold(0, R, 1).permute(0, 3, 1, 2).contiguous()  # (25, R, J, 2)
    with torch.inference_mode():
        want = model(windows, strided=True).pose[:, 0]  # (25, J, 3)
    _assert_close(OnnxRunner(onnx_file)(x)[0][0], want, "pose vs windows")


def test_video_engine_checks_frames(onnx_file):
    runner = OnnxRunner(onnx_file)
    with pytest.raises(ValueError, match=r"dimension 'frames' must be in \[1, 100000\].*received 0"):
        runner(torch.zeros(1, 0, 17, 2))
    with pytest.raises(ValueError, match=r"must have shape \(batch, frames, 17, 2\), received \(1, 5, 16, 2\)"):
        runner(torch.zeros(1, 5, 16, 2))


def test_video_is_spgnet_only():
    vol = build_model("volumetric", config=TINY["volumetric"])
    with pytest.raises(ValueError, match="argument 'video'.*SPGNet only"):
        model_deployable(vol, video=True)


def test_video_example_inputs_check_frames(video):
    with pytest.raises(ValueError, match=r"argument 'frames': expected 1 <= frames <= 100000, received 0"):
        video.example_inputs(1, frames=0)
    with pytest.raises(ValueError, match=r"argument\(s\) \['height'\]"):
        video.example_inputs(1, height=3)


@pytest.mark.slow
def test_aoti_video_matches_eager_and_times_from_file(model, video, tmp_path):
    """AOTInductor with dynamic batch and frames: parity on two lengths, then `fastpose latency FILE`."""
    from fastpose.engine.aoti import AotiRunner, export_aoti

    path = tmp_path / "spgnet-video.pt2"
    with torch._inductor.config.patch(_AOTI_TEST_CONFIG):
        export_aoti(video, path, inputs=video.example_inputs(2, frames=12), max_batch=4)
    runner = AotiRunner(path)
    for frames, batch in ((31, 2), (5, 1)):
        (x,) = video.example_inputs(batch, frames=frames, seed=frames)
        pose, traj = runner(x)
        want_pose, want_traj = _expected(model, x)
        _assert_close(pose, want_pose, f"aoti pose T={frames}")
        _assert_close(traj, want_traj, f"aoti trajectory T={frames}")
    with pytest.raises(ValueError, match=r"batch size must be in \[1, 4\]"):
        runner(torch.zeros(5, 10, 17, 2))
    # the package's metadata gives the shapes; frames from --frames, batch from its default
    out = tmp_path / "lat.json"
    rc = cli.main(["latency", str(path), "--frames", "16", "--warmup", "1", "--iters", "2", "--threads", "1",
                   "--json", str(out)])
    assert rc == 0
    (row,) = json.loads(out.read_text())["results"]
    assert row["engine"] == "aoti" and row["sizes"] == {"batch": 1, "frames": 16} and row["items_per_call"] == 16


def test_corrupt_video_file_is_a_clear_error(onnx_file, tmp_path):
    bad = tmp_path / "v.onnx"
    bad.write_bytes(onnx_file.read_bytes()[:500])
    with pytest.raises(EngineLoadError, match="cannot be loaded"):
        OnnxRunner(bad)
