"""fastpose.models.load_checkpoint: the model of a 'fastpose train' checkpoint, in eval mode, with
its metadata; one-line errors naming the file for everything else."""

from __future__ import annotations

import pytest
import torch

from fastpose.models import SPGNet, VolumetricConfig, VolumetricPoseNet, load_checkpoint
from fastpose.train import common


def _spgnet_checkpoint(path, channels=16):
    """A checkpoint written exactly as 'fastpose train spgnet' writes it (after one Adam step)."""
    torch.manual_seed(0)
    model = SPGNet(filter_widths=(3, 3), channels=channels)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(torch.randn(4, 9, 17, 2)).pose.square().mean().backward()  # train mode: BN statistics move
    opt.step()
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, 0.9)
    common.save_checkpoint(path, arch=model.config.to_dict(), model=model, optimizer=opt, scheduler=sched,
                           progress={"epoch": 3, "step_in_epoch": 0, "global_step": 30},
                           extra={"history": [{"epoch": 3, "loss": 0.5}], "train_config": {"epochs": 8},
                                  "reason": "epoch"})
    return model.eval()


def test_spgnet_checkpoint_gives_the_trained_model_in_eval_mode(tmp_path):
    path = tmp_path / "checkpoint.pt"
    trained = _spgnet_checkpoint(path)
    model = load_checkpoint(path)
    assert isinstance(model, SPGNet) and not model.training
    assert model.config == trained.config
    for k, v in trained.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0)
    kp = torch.randn(12, 17, 2) * 0.3
    torch.testing.assert_close(model.predict(kp).pose, trained.predict(kp).pose, rtol=0, atol=0)
    info = model.checkpoint_info
    assert info["model"] == "spgnet" and info["path"] == str(path) and info["arch"]["channels"] == 16
    assert info["progress"]["epoch"] == 3 and info["reason"] == "epoch" and info["train_config"] == {"epochs": 8}
    assert next(load_checkpoint(str(path), device="cpu").parameters()).device.type == "cpu"


def test_volumetric_checkpoint(tmp_path):
    torch.manual_seed(1)
    cfg = VolumetricConfig.tiny()
    trained = VolumetricPoseNet(cfg).eval()
    path = tmp_path / "vol.pt"
    common.save_checkpoint(path, arch={"model": "volumetric", **cfg.to_dict()}, model=trained)
    model = load_checkpoint(path)
    assert isinstance(model, VolumetricPoseNet) and not model.training and model.config == cfg
    x = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(model(x)["pose"], trained(x)["pose"], rtol=0, atol=0)


def _one_line(exc: pytest.ExceptionInfo, path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg, msg
    assert "weights_only" not in msg, msg  # never torch's misleading advice
    return msg


def test_missing_directory_corrupt_and_truncated_files(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_checkpoint(tmp_path / "nope.pt")
    assert "no such file" in _one_line(e, tmp_path / "nope.pt")
    with pytest.raises(ValueError) as e:
        load_checkpoint(tmp_path)
    assert "is not a file" in _one_line(e, tmp_path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint at all" * 20)
    with pytest.raises(ValueError) as e:
        load_checkpoint(junk)
    assert "corrupt" in _one_line(e, junk)
    good = tmp_path / "good.pt"
    _spgnet_checkpoint(good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError) as e:
        load_checkpoint(cut)
    assert "corrupt, truncated" in _one_line(e, cut)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError) as e:
        load_checkpoint(empty)
    _one_line(e, empty)


class _Payload:
    """An arbitrary pickled object: never unpickled by load_checkpoint."""


def test_foreign_unknown_and_mismatched_checkpoints(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, plain)
    with pytest.raises(ValueError) as e:
        load_checkpoint(plain)
    assert "not a fastpose checkpoint (format None" in _one_line(e, plain)
    other = tmp_path / "other.pt"
    common.save_checkpoint(other, arch={"model": "transformer", "depth": 3}, model=torch.nn.Linear(2, 2))
    with pytest.raises(ValueError) as e:
        load_checkpoint(other)
    assert "unknown kind 'transformer'; known: ['spgnet', 'volumetric']" in _one_line(e, other)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "fastpose-checkpoint-v1", "payload": _Payload()}, pickled)
    with pytest.raises(ValueError) as e:
        load_checkpoint(pickled)
    assert "pickled Python objects" in _one_line(e, pickled) and "_Payload" in str(e.value)
    wrong = tmp_path / "wrong.pt"
    model = SPGNet(filter_widths=(3, 3), channels=32)
    common.save_checkpoint(wrong, arch={**model.config.to_dict(), "channels": 16}, model=model)
    with pytest.raises(ValueError) as e:
        load_checkpoint(wrong)
    assert "do not fit the stored 'spgnet' architecture" in _one_line(e, wrong) and "(32, 34, 3)" in str(e.value)


def test_averaged_weights_are_preferred_when_the_run_kept_them(tmp_path):
    """A run with weight averaging (ema_decay > 0) stores the averaged weights as ``ema_model`` beside
    the raw ``model`` (kept for exact resuming); the public loader gives the averaged model."""
    path = tmp_path / "checkpoint.pt"
    trained = _spgnet_checkpoint(path)
    ckpt = torch.load(path, weights_only=False)  # our own test file (it holds numpy RNG state)
    averaged = {k: (v * 0.5 if v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    ckpt["ema_model"] = averaged
    torch.save(ckpt, path)
    model = load_checkpoint(path)
    for k, v in averaged.items():
        torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0)
    weight = next(k for k, v in averaged.items() if v.is_floating_point() and v.abs().sum() > 0)
    assert not torch.equal(model.state_dict()[weight], trained.state_dict()[weight])
