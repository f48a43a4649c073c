"""Training the volumetric model on rendered images: it learns, resumes exactly, evaluates per action."""

from __future__ import annotations

import argparse

import pytest
import torch

from fastpose.data.images import SyntheticImageDataset, synthetic_poses
from fastpose.models.volumetric import VolumetricPoseNet
from fastpose.train.volumetric import (
    VolumetricTrainConfig,
    add_arguments,
    config_from_args,
    evaluate_volumetric,
    load_volumetric,
    train_volumetric,
)

_ACTIONS = ("Walking", "Directions", "Sitting", "Greeting")


pytestmark = pytest.mark.usefixtures("one_thread")  # shared fixture, conftest.py


@pytest.fixture(scope="module")
def data():
    train = synthetic_poses(("S1", "S5"), seed=0, frames=40, stride=2, actions=_ACTIONS)
    test = synthetic_poses(("S9",), seed=0, frames=40, stride=2, actions=_ACTIONS)
    return train, test


def _cfg(tmp_path, **kw) -> VolumetricTrainConfig:
    base = dict(size="tiny", epochs=1, batch_size=16, lr=1e-3, workers=0, device="cpu", out_dir=str(tmp_path),
                progress=False)
    base.update(kw)
    return VolumetricTrainConfig(**base)


def test_short_cpu_training_lowers_loss_and_mpjpe(tmp_path, data):
    """150 steps of 16 rendered 64 x 64 crops (about 20 s on one core): the held-out MPJPE of the
    untrained model (every joint at the root, about 400 mm) falls clearly, and so does the loss."""
    (tr_p, tr_a), (te_p, te_a) = data
    steps, batch = 150, 16
    train_ds = SyntheticImageDataset(tr_p, tr_a, length=steps * batch, seed=0, size=64, augment=True)
    test_ds = SyntheticImageDataset(te_p, te_a, length=64, seed=1, size=64, augment=False, subjects=("S9", "S11"))
    cfg = _cfg(tmp_path)
    torch.manual_seed(0)
    before = evaluate_volumetric(VolumetricPoseNet(cfg.model_config), test_ds, batch_size=64)
    result = train_volumetric(cfg, train_ds, log=lambda s: None)
    after = evaluate_volumetric(result.model, test_ds, batch_size=64)
    losses = result.step_losses
    assert len(losses) == steps and result.finished
    first, last = sum(losses[:15]) / 15, sum(losses[-15:]) / 15
    b1, a1 = before.mean["mpjpe"], after.mean["mpjpe"]
    b2, a2 = before.mean["p_mpjpe"], after.mean["p_mpjpe"]
    print(f"\nloss {first:.3f} -> {last:.3f}; MPJPE {b1:.1f} -> {a1:.1f} mm; P-MPJPE {b2:.1f} -> {a2:.1f} mm; "
          f"{result.images_per_second:.0f} images/s")
    assert last < 0.75 * first
    assert a1 < 0.7 * b1 and a2 < 0.7 * b2
    assert set(after.actions) == set(_ACTIONS)
    assert "Protocol #1 MPJPE" in after.table() and "Protocol #2 P-MPJPE" in after.table()
    # The checkpoint rebuilds the same model.
    model, ckpt = load_volumetric(result.checkpoint)
    assert ckpt["arch"]["model"] == "volumetric" and ckpt["progress"]["epoch"] == 1
    again = evaluate_volumetric(model, test_ds, batch_size=64)
    assert again.mean["mpjpe"] == pytest.approx(a1, rel=1e-5)


def test_stopped_run_resumes_with_the_same_losses(tmp_path, data):
    (tr_p, tr_a), _ = data
    ds = SyntheticImageDataset(tr_p, tr_a, length=8, seed=2, size=64)
    full = train_volumetric(_cfg(tmp_path / "full", epochs=2, batch_size=2), ds, log=lambda s: None)
    part = train_volumetric(_cfg(tmp_path / "part", epochs=2, batch_size=2, max_steps=3), ds, log=lambda s: None)
    assert not part.finished and len(part.step_losses) == 3
    rest = train_volumetric(_cfg(tmp_path / "part", epochs=2, batch_size=2, resume=str(part.checkpoint)), ds,
                            log=lambda s: None)
    assert rest.finished and len(rest.history) == 2
    assert part.step_losses + rest.step_losses == pytest.approx(full.step_losses, rel=1e-5)
    for p, q in zip(full.model.parameters(), rest.model.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_command_line_flags_map_to_the_config():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    d = config_from_args(parser.parse_args([]))
    assert (d.lr, d.lr_step_epoch, d.lr_factor, d.epochs, d.batch_size) == (1e-3, 11, 0.1, 25, 32)
    assert d.ablation == "A+B+C" and d.model_config.input_size == 256 and d.model_config.depth == 64
    c = config_from_args(parser.parse_args(["--size", "tiny", "--no-refinement", "--amp", "--data", "/x"]))
    assert c.ablation == "A+B" and c.model_config.refinement is False and c.amp and c.data == "/x"
    c = config_from_args(parser.parse_args(["--ablation", "A+C", "--no-refinement"]))
    assert c.ablation == "A" and not c.model_config.volumetric_loss
    with pytest.raises(SystemExit):  # refused when parsing (argparse prints the one-line reason)
        parser.parse_args(["--batch-size", "0"])


def test_fastpose_train_and_evaluate_volumetric_commands(tmp_path):
    """``fastpose train volumetric`` then ``fastpose evaluate``: the same per-action tables."""
    import json

    from fastpose.cli import main

    out = tmp_path / "run"
    common = ["--synthetic-frames", "8", "--test-samples", "12", "--workers", "0", "--threads", "1"]
    assert main(["train", "volumetric", "--size", "tiny", "--ablation", "A+C", "--train-samples", "8",
                 "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--out", str(out), "--no-progress",
                 *common]) == 0
    trained = json.loads((out / "evaluation.json").read_text())
    assert trained["meta"]["ablation"] == "A+C"
    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--out", str(tmp_path / "ev"),
                 "--device", "cpu", *common]) == 0
    again = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert again["per_action"].keys() == trained["per_action"].keys()
    for metric in ("mpjpe", "p_mpjpe"):
        assert again["mean_over_actions"][metric] == pytest.approx(trained["mean_over_actions"][metric], rel=1e-5)
    assert 50 < again["mean_over_actions"]["mpjpe"] < 2000  # millimetres
