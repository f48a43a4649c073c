"""Training runs never lose work: Ctrl-C checkpoints, stopped runs are evaluated, resumes are checked;
``fastpose evaluate`` uses the checkpoint's data; real-motion evaluation (issue 11)."""

from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from fastpose.cli import main
from fastpose.data import SyntheticConfig, load_sequences
from fastpose.train import common
from fastpose.train import spgnet as spgnet_train
from fastpose.train.spgnet import SPGNetTrainConfig, train_spgnet

TINY = ["--data", "synthetic", "--synthetic-frames", "30", "--actions", "Walking", "--train-subjects", "S1",
        "--test-subjects", "S9", "--arch", "3,3", "--channels", "16", "--batch-size", "64", "--no-progress",
        "--threads", "1", "--eval-on", "synthetic"]


pytestmark = pytest.mark.usefixtures("one_thread")  # shared fixture, conftest.py


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _interrupt_at(monkeypatch, call: int, sig: int = signal.SIGINT) -> None:
    """Send ``sig`` (SIGINT: as Ctrl-C does) from inside the ``call``-th training step's loss."""
    original = spgnet_train.spgnet_loss
    calls = [0]

    def loss(*args, **kwargs):
        calls[0] += 1
        if calls[0] == call:
            signal.raise_signal(sig)
        return original(*args, **kwargs)

    monkeypatch.setattr(spgnet_train, "spgnet_loss", loss)


def _tiny_cfg(out, **kw) -> SPGNetTrainConfig:
    base = dict(filter_widths=(3, 3), channels=16, epochs=2, batch_size=64, frame_stride=2, out_dir=str(out),
                progress=False, device="cpu", seed=5)
    return SPGNetTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def data():
    syn = SyntheticConfig(seed=2, subjects=("S1",), actions=("Walking", "Sitting"), subactions=1, frames=40)
    return load_sequences("synthetic", ("S1",), synthetic=syn)


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(tmp_path, data, monkeypatch, capsys):
    full = train_spgnet(_tiny_cfg(tmp_path / "full"), data, log=lambda s: None)
    logged: list[str] = []
    _interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train_spgnet(_tiny_cfg(tmp_path / "part"), data, log=logged.append)
    monkeypatch.undo()
    ckpt = common.load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    assert ckpt["progress"]["global_step"] == 3 and ckpt["extra"]["reason"] == "interrupted"
    assert any("interrupted (Ctrl-C" in m and "--resume" in m for m in logged), logged
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers were restored
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    rest = train_spgnet(_tiny_cfg(tmp_path / "part", resume=str(tmp_path / "part" / "checkpoint.pt")), data,
                        log=lambda s: None)
    assert rest.finished and len(full.step_losses) > 4
    np.testing.assert_array_equal(rest.step_losses, full.step_losses[3:])
    for a, b in zip(full.model.state_dict().values(), rest.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_on_the_command_line_exits_130_and_says_how_to_resume(tmp_path, monkeypatch, capsys, sig):
    _interrupt_at(monkeypatch, 2, sig)
    out = tmp_path / "run"
    assert main(["train", "spgnet", *TINY, "--epochs", "2", "--out", str(out)]) == 130
    captured = capsys.readouterr()
    assert f"resume with: fastpose train spgnet <same flags> --resume {out / 'checkpoint.pt'}" in captured.out
    assert captured.err.strip().endswith("fastpose train spgnet: interrupted")
    assert common.load_checkpoint(out / "checkpoint.pt")["progress"]["global_step"] == 2
    assert not (out / "evaluation.json").exists()


def test_a_run_stopped_by_max_steps_is_still_evaluated(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "spgnet", *TINY, "--epochs", "3", "--max-steps", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "training stopped early (max_steps: step 2 of" in printed and "Protocol #1 MPJPE" in printed
    meta = json.loads((out / "evaluation.json").read_text())["meta"]
    assert meta["stop_reason"] == "max_steps" and meta["trained_steps"] == 2 and not meta["finished_schedule"]
    assert meta["data"] == "synthetic" and meta["synthetic_frames"] == 30 and meta["synthetic_seed"] == 0


def test_resume_with_other_settings_is_refused_unless_overridden(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(["train", "spgnet", *TINY, "--epochs", "2", "--max-steps", "1", "--no-eval", "--out", str(out)]) == 0
    ckpt = out / "checkpoint.pt"
    before = _digest(ckpt)
    capsys.readouterr()
    resume = ["train", "spgnet", *TINY, "--out", str(out), "--resume", str(ckpt), "--no-eval"]
    def no_data(*args, **kwargs):
        raise AssertionError("the data was loaded before the resume was checked")

    with monkeypatch.context() as m:
        m.setattr(spgnet_train, "load_data", no_data)  # refused before any data is loaded
        assert main([*resume, "--epochs", "3", "--synthetic-frames", "40"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot resume" in err, err
    assert "epochs: checkpoint 2, this run 3" in err and "synthetic_frames: checkpoint 30, this run 40" in err
    assert "--override epochs,synthetic_frames" in err
    assert _digest(ckpt) == before  # nothing was trained or written
    # run-control settings may change freely; named settings with --override
    assert main([*resume, "--epochs", "3", "--override", "epochs", "--max-steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert "resuming with overridden settings: epochs 2 -> 3" in printed
    assert common.load_checkpoint(ckpt)["progress"]["global_step"] == 2
    assert main([*resume, "--override", "no_such_setting"]) == 2
    assert "--override: unknown setting(s) ['no_such_setting']" in capsys.readouterr().err


def test_check_resume_config_rules():
    saved = {"epochs": 2, "lr": 1e-3, "out_dir": "a", "max_steps": 3, "data_config": {"data": "cmu", "noise_px": 0.0}}
    ckpt = {"extra": {"train_config": saved}}
    common.check_resume_config(ckpt, {**saved, "out_dir": "b", "max_steps": None}, "c.pt")  # run control: fine
    with pytest.raises(common.CheckpointError, match=r"data: checkpoint 'cmu', this run 'synthetic'"):
        common.check_resume_config(ckpt, {**saved, "data_config": {"data": "synthetic", "noise_px": 0.0}}, "c.pt")
    common.check_resume_config(ckpt, {**saved, "lr": 1e-4, "override": ("lr",)}, "c.pt", log=lambda s: None)
    notes: list[str] = []
    common.check_resume_config({"extra": {}}, saved, "old.pt", log=notes.append)
    assert "records no training configuration" in notes[0]


def test_evaluate_uses_the_checkpoints_data_by_default(tmp_path, capsys):
    """The checkpoint's data (frames, seed, actions, subjects) -- not the command's defaults -- is
    evaluated, and evaluation.json says which."""
    out = tmp_path / "run"
    assert main(["train", "spgnet", *TINY, "--epochs", "1", "--synthetic-seed", "3", "--out", str(out)]) == 0
    trained = json.loads((out / "evaluation.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--out", str(tmp_path / "ev"),
                 "--device", "cpu", "--threads", "1"]) == 0
    again = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert list(again["per_action"]) == ["Walking"]  # the defaults would evaluate 15 actions of S9 and S11
    assert again["meta"]["synthetic_seed"] == 3 and again["meta"]["synthetic_frames"] == 30
    assert again["meta"]["subjects"] == ["S9"] and again["meta"]["data"] == "synthetic"
    assert again["mean_over_actions"]["mpjpe"] == pytest.approx(trained["mean_over_actions"]["mpjpe"], rel=1e-6)
    # a flag changes one setting
    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--out", str(tmp_path / "ev2"),
                 "--synthetic-seed", "4", "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "ev2" / "evaluation.json").read_text())["meta"]["synthetic_seed"] == 4


def _motion_file(path: Path) -> Path:
    from fastpose.data.motion import builtin_motion, save_motion

    motion = builtin_motion("test")
    keys = sorted(motion.sequences)[:2]
    save_motion({k: motion.sequences[k][:120] for k in keys}, path)  # metres in, int16 mm in the file
    return path


def test_evaluate_a_motion_file_with_breakdowns(tmp_path, capsys):
    pytest.importorskip("fastpose.data.motion")
    out = tmp_path / "run"
    assert main(["train", "spgnet", *TINY, "--epochs", "1", "--no-eval", "--out", str(out)]) == 0
    motion = _motion_file(tmp_path / "walks.npz")
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--motion", str(motion), "--subjects",
                 "S9,S11", "--noise-px", "5", "--breakdown", "--out", str(tmp_path / "ev"), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "per joint (MPJPE, mm)" in printed and "per sequence (mm)" in printed
    report = json.loads((tmp_path / "ev" / "evaluation_walks.json").read_text())
    assert report["meta"]["data"] == str(motion) and report["meta"]["noise_px"] == 5.0
    assert report["meta"]["part"] == "all" and report["meta"]["subjects"] == ["S9", "S11"]
    assert {s["subject"] for s in report["per_sequence"]} == {"S9", "S11"}
    assert len(report["per_sequence"]) == 2 * 2 * 4  # sequences x subjects x cameras
    assert len(report["per_joint"]) == 17


def test_volumetric_evaluation_has_no_mpjve_and_follows_a_stop(tmp_path, capsys):
    out = tmp_path / "vol"
    flags = ["--synthetic-frames", "8", "--test-samples", "8", "--workers", "0", "--threads", "1"]
    assert main(["train", "volumetric", "--preset", "demo", "--train-samples", "8", "--batch-size", "4",
                 "--epochs", "2", "--max-steps", "1", "--device", "cpu", "--no-progress", "--out", str(out),
                 *flags]) == 0
    printed = capsys.readouterr().out
    assert "Protocol #1 MPJPE" in printed and "MPJVE" not in printed
    assert "training stopped early (max_steps: step 1 of 4)" in printed
    report = json.loads((out / "evaluation.json").read_text())
    assert report["metrics"] == ["mpjpe", "p_mpjpe", "n_mpjpe"]
    assert report["meta"]["test_samples"] == 8 and report["meta"]["synthetic_seed"] == 0
    assert report["meta"]["stop_reason"] == "max_steps" and report["meta"]["trained_steps"] == 1


def test_a_run_stopped_by_the_time_limit_is_still_evaluated(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "spgnet", *TINY, "--epochs", "3", "--time-limit", "1e-6", "--out", str(out)]) == 0
    assert "training stopped early (time_limit: step 1 of" in capsys.readouterr().out
    meta = json.loads((out / "evaluation.json").read_text())["meta"]
    assert meta["stop_reason"] == "time_limit" and meta["trained_steps"] == 1


def test_synthetic_plus_cmu_reports_each_held_out_set_separately(tmp_path, capsys):
    """Issue 11: --data synthetic+cmu trains on both; the synthetic held-out subjects and the real
    held-out CMU motion are evaluated and saved separately."""
    pytest.importorskip("fastpose.data.motion")
    out = tmp_path / "run"
    argv = ["train", "spgnet", "--data", "synthetic+cmu", "--synthetic-frames", "30", "--train-subjects", "S1",
            "--test-subjects", "S9", "--arch", "3", "--channels", "16", "--epochs", "1", "--batch-size", "1024",
            "--frame-stride", "16", "--no-progress", "--threads", "1", "--out", str(out), "--no-flip-test"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "held-out: synthetic held-out subjects S9" in printed
    assert "held-out: real held-out CMU motion (test part) through the cameras of S9" in printed
    syn = json.loads((out / "evaluation.json").read_text())
    real = json.loads((out / "evaluation_cmu.json").read_text())
    assert syn["meta"]["data"] == "synthetic" and real["meta"]["data"] == "cmu" and real["meta"]["part"] == "test"
    assert "Walking" in syn["per_action"] and "Walk" in real["per_action"]  # H3.6M actions vs CMU categories
    ckpt = common.load_checkpoint(out / "checkpoint.pt")
    assert ckpt["extra"]["train_config"]["data_config"]["data"] == "synthetic+cmu"


def test_train_on_a_motion_file(tmp_path, capsys):
    """--data FILE.npz: trains on the file's motion; its own held-out evaluation comes first
    (evaluation.json), then the requested built-in held-out sets."""
    pytest.importorskip("fastpose.data.motion")
    motion = _motion_file(tmp_path / "walks.npz")
    out = tmp_path / "run"
    assert main(["train", "spgnet", "--data", str(motion), "--train-subjects", "S1", "--test-subjects", "S9",
                 "--arch", "3,3", "--channels", "16", "--epochs", "1", "--batch-size", "256", "--no-progress",
                 "--threads", "1", "--eval-on", "synthetic", "--synthetic-frames", "30", "--out", str(out)]) == 0
    own = json.loads((out / "evaluation.json").read_text())
    syn = json.loads((out / "evaluation_synthetic.json").read_text())
    assert own["meta"]["data"] == str(motion) and own["meta"]["eval_set"] == "data"
    assert syn["meta"]["data"] == "synthetic" and syn["meta"]["subjects"] == ["S9"]
    assert len(own["per_sequence"]) == 2 * 4  # the file's 2 sequences through S9's 4 cameras
    assert f"held-out: {motion}, held-out subjects S9" in capsys.readouterr().out
