"""User errors: one clear line on stderr, exit status 2, ``--debug`` for the traceback, nothing on disk lost."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
import torch

from fastpose.cli import main
from fastpose.train import common

TINY = ["--data", "synthetic", "--synthetic-frames", "30", "--actions", "Walking", "--train-subjects", "S1",
        "--test-subjects", "S9", "--arch", "3,3", "--channels", "16", "--epochs", "1", "--batch-size", "64",
        "--no-progress", "--threads", "1", "--eval-on", "synthetic"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line(err: str, start: str, *needles: str) -> None:
    assert err.count("\n") == 1, err
    assert err.startswith(start), err
    for n in needles:
        assert n in err, err
    assert "Traceback" not in err and "weights_only" not in err


@pytest.fixture
def trained(tmp_path_factory):
    """A real (tiny) SPGNet checkpoint written by the command line."""
    out = tmp_path_factory.mktemp("trained")
    assert main(["train", "spgnet", *TINY, "--out", str(out), "--no-eval"]) == 0
    return out / "checkpoint.pt"


def test_out_that_is_a_file_is_refused_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    assert main(["train", "spgnet", *TINY, "--out", str(blocker / "run")]) == 2
    _one_line(capsys.readouterr().err, "fastpose train spgnet: error: --out", str(blocker / "run"))
    assert blocker.read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only directory")
def test_read_only_out_is_refused_before_training(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert main(["train", "spgnet", *TINY, "--out", str(ro)]) == 2
    finally:
        ro.chmod(stat.S_IRWXU)
    _one_line(capsys.readouterr().err, "fastpose train spgnet: error: --out", "not writable")


def test_check_writable_dir_probes_by_writing(tmp_path, monkeypatch):
    """The probe is a real write: a directory where creating a file fails is refused (as root too)."""
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(common.OutputDirError, match=r"--out .*: the directory is not writable \(Permission denied\)"):
        common.check_writable_dir(tmp_path)


def test_a_fresh_run_does_not_overwrite_another_runs_checkpoint(trained, capsys):
    before = _digest(trained)
    assert main(["train", "spgnet", *TINY, "--out", str(trained.parent)]) == 2
    _one_line(capsys.readouterr().err, "fastpose train spgnet: error: --out", "already holds a checkpoint.pt",
              "--resume", "--overwrite")
    assert _digest(trained) == before


def test_corrupt_or_missing_checkpoints_are_one_line(trained, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(trained.read_bytes()[:2000])
    assert main(["evaluate", "--checkpoint", str(corrupt), "--out", str(tmp_path / "ev")]) == 2
    _one_line(capsys.readouterr().err, "fastpose evaluate: error: ", str(corrupt), "corrupt")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    _one_line(capsys.readouterr().err, "fastpose evaluate: error: argument --checkpoint: no such file")
    # resuming from a corrupt file: one line, and nothing is written
    assert main(["train", "spgnet", *TINY, "--out", str(tmp_path / "new"), "--resume", str(corrupt)]) == 2
    _one_line(capsys.readouterr().err, "fastpose train spgnet: error: ", "cannot be read")
    assert not (tmp_path / "new" / "checkpoint.pt").exists()
    assert main(["export", "--model", "spgnet", "--checkpoint", str(corrupt), "--format", "onnx",
                 "--output", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(corrupt) in err and "Traceback" not in err, err


def test_debug_shows_the_traceback(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        main(["evaluate", "--checkpoint", str(corrupt), "--debug"])


def test_pretrained_missing_or_corrupt_is_one_line(tmp_path, capsys):
    bad = tmp_path / "resnet50.pth"
    bad.write_bytes(b"\x80\x02 not torch")
    run = ["train", "volumetric", "--preset", "demo", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "v")]
    assert main([*run, "--pretrained", str(bad)]) == 2
    _one_line(capsys.readouterr().err, "fastpose train volumetric: error: --pretrained", "cannot be read")
    assert main([*run, "--pretrained", str(tmp_path / "missing.pth")]) == 2
    _one_line(capsys.readouterr().err, "fastpose train volumetric: error: argument --pretrained: no such file")
    foreign = tmp_path / "foreign.pth"
    torch.save({"step": 3}, foreign)
    assert main([*run, "--pretrained", str(foreign)]) == 2
    _one_line(capsys.readouterr().err, "fastpose train volumetric: error: --pretrained", "expected a state dict")
    assert not (tmp_path / "v" / "checkpoint.pt").exists()


def test_other_commands_errors_are_one_line(capsys):
    assert main(["bench", "--device", "tpu"]) == 2
    _one_line(capsys.readouterr().err, "fastpose bench: ", "--device must be 'cpu' or 'cuda'")
    assert main(["train"]) == 2
    _one_line(capsys.readouterr().err, "fastpose train: error: ", "MODEL")
    assert main(["nonsense"]) == 2
    _one_line(capsys.readouterr().err, "fastpose: error: ", "invalid choice")


def test_checkpoints_get_the_umasks_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = common.save_checkpoint(tmp_path / "c.pt", arch={"model": "x"}, model=torch.nn.Linear(2, 2))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind
    assert common.load_checkpoint(path)["arch"] == {"model": "x"}


def test_unknown_data_source_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "spgnet", *TINY, "--data", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, "fastpose train spgnet: error: --data: expected 'synthetic', 'cmu'",
              "no such file or directory")
    assert not (out / "checkpoint.pt").exists()


def test_paper_size_on_a_cpu_warns(tmp_path, capsys):
    """The paper's 1024 channels on a CPU: a warning naming the demo preset before training starts."""
    argv = ["train", "spgnet", *TINY, "--channels", "1024", "--max-steps", "1", "--no-eval", "--device", "cpu",
            "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "warning: training SPGNet with 1024 channels and batch 64 on the CPU takes hours" in err
    assert "--preset demo" in err
    assert main([*argv[:-1], str(tmp_path / "run2"), "--channels", "256"]) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_one_line(trained, tmp_path, capsys):
    assert main(["train", "spgnet", *TINY, "--device", "cuda", "--out", str(tmp_path / "run")]) == 2
    _one_line(capsys.readouterr().err, "fastpose train spgnet: error: --device cuda: CUDA is not available")
    assert main(["evaluate", "--checkpoint", str(trained), "--device", "cuda:0", "--out", str(tmp_path / "ev")]) == 2
    _one_line(capsys.readouterr().err, "fastpose evaluate: error: --device cuda:0: CUDA is not available")


def test_export_to_an_unwritable_place_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    assert main(["export", "--model", "spgnet", "--format", "onnx", "--output", str(blocker / "m.onnx")]) == 2
    _one_line(capsys.readouterr().err, "fastpose export: error: --output's directory", str(blocker))
    assert blocker.read_text() == "keep me"
