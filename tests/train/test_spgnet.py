"""SPGNet training: accuracy on held-out synthetic subjects, resume, checkpoints, schedules, CLI."""

import json

import numpy as np
import pytest
import torch

from fastpose.data import SyntheticConfig, load_sequences
from fastpose.train import common
from fastpose.train.spgnet import SPGNetTrainConfig, evaluate_spgnet, load_spgnet, train_spgnet


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine two OpenMP threads make these small
    kernels ~10x slower (they wait for each other), and on an idle one they gain little."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny_data():
    cfg = SyntheticConfig(seed=1, subjects=("S1", "S5"), actions=("Walking", "Sitting"), subactions=1, frames=40)
    return load_sequences("synthetic", ("S1", "S5"), synthetic=cfg)


def _tiny_cfg(out, **kw):
    base = dict(filter_widths=(3, 3), channels=32, epochs=2, batch_size=64, lr=1e-3, frame_stride=2,
                out_dir=str(out), progress=False, device="cpu", seed=11)
    return SPGNetTrainConfig(**{**base, **kw})


def test_short_training_reaches_60mm_on_held_out_subjects(tmp_path):
    """Quality bar: ground-truth 2D, held-out subjects S9/S11, < 60 mm MPJPE after a short CPU run.

    Reduced schedule (about 700 steps): 9-frame SPGNet, 256 channels, no dropout, batch 256,
    Adam 3e-3 decaying x0.7 per epoch for 8 epochs, every 4th frame of 5 training subjects x 15
    actions x 2 sequences x ~150 frames x 4 cameras; bone term off (it doubles the cost).
    """
    syn = SyntheticConfig(seed=0, frames=150)
    train = load_sequences("synthetic", ("S1", "S5", "S6", "S7", "S8"), synthetic=syn)
    test = load_sequences("synthetic", ("S9", "S11"), synthetic=SyntheticConfig(seed=0, frames=100, subactions=1))
    cfg = SPGNetTrainConfig(filter_widths=(3, 3), channels=256, dropout=0.0, epochs=8, batch_size=256, lr=3e-3,
                            lr_decay=0.7, frame_stride=4, loss_bone=0.0, out_dir=str(tmp_path), progress=False,
                            device="cpu", seed=0)
    result = train_spgnet(cfg, train, log=lambda s: None)
    assert result.finished and len(result.history) == 8
    report, preds = evaluate_spgnet(result.model, test, flip_test=True)
    print(f"\nheld-out MPJPE {report.mean['mpjpe']:.1f} mm, P-MPJPE {report.mean['p_mpjpe']:.1f} mm "
          f"({result.seconds:.0f} s, {result.frames_per_second:.0f} frames/s)")
    assert report.mean["mpjpe"] < 60.0
    assert report.mean["p_mpjpe"] < report.mean["mpjpe"]
    assert len(report.actions) == 15 and len(preds) == len(test)


def test_resume_continues_with_the_same_losses(tmp_path):
    """Uninterrupted run == run stopped mid-epoch + resumed from its checkpoint (bit for bit)."""
    data = _tiny_data()
    full = train_spgnet(_tiny_cfg(tmp_path / "full"), data, log=lambda s: None)
    part = train_spgnet(_tiny_cfg(tmp_path / "part", max_steps=3), data, log=lambda s: None)
    assert not part.finished and len(part.step_losses) == 3
    rest = train_spgnet(_tiny_cfg(tmp_path / "rest", resume=str(part.checkpoint)), data, log=lambda s: None)
    assert rest.finished
    assert len(full.step_losses) > 6  # the resume crossed an epoch boundary
    np.testing.assert_array_equal(part.step_losses + rest.step_losses, full.step_losses)
    for a, b in zip(full.model.state_dict().values(), rest.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [h["loss"] for h in rest.history] == [h["loss"] for h in full.history]
    assert full.step_losses[-1] < full.step_losses[0]  # it learns


def test_checkpoint_of_another_architecture_or_corrupt_file_fails_clearly(tmp_path):
    data = _tiny_data()
    res = train_spgnet(_tiny_cfg(tmp_path / "a", epochs=1, max_steps=1), data, log=lambda s: None)
    with pytest.raises(common.CheckpointError, match=r"another 'spgnet' architecture; differing fields: "
                                                     r"channels: checkpoint 32 vs requested 16"):
        train_spgnet(_tiny_cfg(tmp_path / "b", channels=16, resume=str(res.checkpoint)), data, log=lambda s: None)
    other = tmp_path / "volumetric.pt"
    common.save_checkpoint(other, arch={"model": "volumetric", "joints": 18}, model=torch.nn.Linear(2, 2))
    with pytest.raises(common.CheckpointError, match="saved for model 'volumetric', but 'spgnet' was requested"):
        load_spgnet(other)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(res.checkpoint.read_bytes()[:1000])
    with pytest.raises(common.CheckpointError, match="cannot be read"):
        load_spgnet(broken)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(common.CheckpointError, match="not a fastpose checkpoint"):
        load_spgnet(foreign)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_spgnet(tmp_path / "missing.pt")
    model, ckpt = load_spgnet(res.checkpoint)
    assert model.config.channels == 32 and ckpt["progress"]["global_step"] == 1


def test_lr_schedules():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = common.make_lr_scheduler(opt, "exponential", steps_per_epoch=4, gamma=0.5)
    lrs = []
    for _ in range(8):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    np.testing.assert_allclose(lrs[3], 0.5) and np.testing.assert_allclose(lrs[7], 0.25)
    np.testing.assert_allclose(lrs[1], 0.5**0.5)  # smooth within the epoch
    opt2 = torch.optim.SGD([p], lr=1.0)
    step = common.make_lr_scheduler(opt2, "step", steps_per_epoch=2, milestones=(2,), factor=0.1)
    got = []
    for _ in range(6):
        opt2.step()
        step.step()
        got.append(step.get_last_lr()[0])
    np.testing.assert_allclose(got, [1, 1, 1, 0.1, 0.1, 0.1])
    restored = common.make_lr_scheduler(torch.optim.SGD([p], lr=1.0), "step", 2, milestones=(2,))
    restored.load_state_dict(step.state_dict())
    assert restored.get_last_lr() == step.get_last_lr()
    with pytest.raises(ValueError, match="kind must be"):
        common.make_lr_scheduler(opt, "cosine", 4)


def test_command_line_train_evaluate_visualize(tmp_path, capsys):
    from fastpose.cli import main

    data = ["--data", "synthetic", "--synthetic-frames", "30", "--actions", "Walking,Eating"]
    out = tmp_path / "run"
    assert main(["train", "spgnet", *data, "--train-subjects", "S1", "--test-subjects", "S9", "--arch", "3,3",
                 "--channels", "16", "--epochs", "1", "--batch-size", "128", "--out", str(out), "--no-progress",
                 "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "Protocol #1 MPJPE" in printed and (out / "checkpoint.pt").exists()
    assert json.loads((out / "evaluation.json").read_text())["per_action"].keys() == {"Eating", "Walking"}
    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), *data, "--subjects", "S11",
                 "--out", str(tmp_path / "ev")]) == 0
    assert "Protocol #2 P-MPJPE" in capsys.readouterr().out and (tmp_path / "ev" / "evaluation.md").exists()
    assert main(["visualize", "--checkpoint", str(out / "checkpoint.pt"), *data, "--subject", "S9",
                 "--action", "Walking", "--camera", "2", "--frames", "0:6", "--out", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig" / "S9_Walking_cam2.png").stat().st_size > 1000
    assert (tmp_path / "fig" / "S9_Walking_cam2.gif").read_bytes()[:6] == b"GIF89a"
    assert main(["train", "spgnet", "--loss-weights", "1,2", "--out", str(tmp_path / "x")]) == 2
    assert "argument --loss-weights: needs 4 values" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_demo_quick(tmp_path, capsys):
    from fastpose.cli import main

    assert main(["demo", "--quick", "--out", str(tmp_path), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "reprojection_loss" in printed and "reference" in printed  # the ops table
    for name in ("checkpoint.pt", "evaluation.json", "evaluation.md", "data/data_3d_h36m.npz",
                 "data/data_2d_h36m_gt.npz", "figures/S9_Walking_cam0.png", "figures/S9_Walking_cam0.gif"):
        assert (tmp_path / name).exists(), name


def test_weight_average_formula_and_warm_up():
    """avg <- d * avg + (1 - d) * w with d = min(decay, (1 + n) / (10 + n)) after n updates; the
    expected values are worked out by hand; buffers are copied, not averaged."""
    from fastpose.train.spgnet import _WeightAverage

    model = torch.nn.BatchNorm1d(1)  # one weight, one bias, running statistics as buffers
    with torch.no_grad():
        model.weight.fill_(0.0)
        model.bias.fill_(0.0)
    avg = _WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(10.0)
        model.running_mean.fill_(3.0)
    avg.update(model)  # n = 0: d = min(0.5, 1/10) = 0.1 -> 0.1 * 0 + 0.9 * 10 = 9
    assert avg.model.weight.item() == pytest.approx(9.0) and avg.model.bias.item() == 0.0
    assert avg.model.running_mean.item() == 3.0
    with torch.no_grad():
        model.weight.fill_(20.0)
    avg.update(model)  # n = 1: d = min(0.5, 2/11) -> 2/11 * 9 + 9/11 * 20 = 18
    assert avg.model.weight.item() == pytest.approx(18.0)
    for _ in range(8):  # n = 2..9: d = 3/12 ... 10/19, the last capped at 0.5
        avg.update(model)
    with torch.no_grad():
        model.weight.fill_(0.0)
    before = avg.model.weight.item()
    avg.update(model)  # n = 10: d = min(0.5, 11/20) = 0.5
    assert avg.model.weight.item() == pytest.approx(0.5 * before)
    assert not any(p.requires_grad for p in avg.model.parameters())


def test_weight_averaging_leaves_training_alone_and_is_the_result(tmp_path):
    """ema_decay > 0: the same optimisation (step losses), the averaged model is returned, stored as
    the checkpoint's ``ema_model`` next to the raw weights, and loaded by load_spgnet."""
    data = _tiny_data()
    plain = train_spgnet(_tiny_cfg(tmp_path / "plain"), data, log=lambda s: None)
    avg = train_spgnet(_tiny_cfg(tmp_path / "avg", ema_decay=0.9), data, log=lambda s: None)
    np.testing.assert_array_equal(plain.step_losses, avg.step_losses)
    ckpt = torch.load(avg.checkpoint, map_location="cpu", weights_only=False)
    assert ckpt["ema_updates"] == len(avg.step_losses)
    raw, ema = ckpt["model"], ckpt["ema_model"]
    for k, v in plain.model.state_dict().items():  # the raw weights are the plain run's
        torch.testing.assert_close(raw[k], v, rtol=0, atol=0)
    for k, v in avg.model.state_dict().items():  # the result is the average
        torch.testing.assert_close(ema[k], v, rtol=0, atol=0)
    assert not torch.equal(raw["shrink.weight"], ema["shrink.weight"])
    loaded, _ = load_spgnet(avg.checkpoint)
    for k, v in loaded.state_dict().items():
        torch.testing.assert_close(v, ema[k], rtol=0, atol=0)
    with pytest.raises(ValueError, match="ema_decay must be in"):
        _tiny_cfg(tmp_path, ema_decay=1.0)
