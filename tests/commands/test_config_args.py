"""Presets, parse-time value checks, the torch-free copies of constants, the thread choice."""

from __future__ import annotations

import argparse

import pytest

from fastpose.train import args as train_args
from fastpose.train import config


def _spgnet(argv):
    p = argparse.ArgumentParser()
    train_args.add_spgnet_arguments(p)
    return train_args.spgnet_config(p.parse_args(argv))


def _demo_args(argv=()):
    from fastpose.commands import demo

    p = argparse.ArgumentParser()
    demo.add_parser(p.add_subparsers())
    return p.parse_args(["demo", *argv])


def test_demo_preset_is_the_make_demo_recipe():
    """One recipe: ``fastpose demo`` trains with exactly DEMO_PRESET + DEMO_DATA, and ``fastpose
    train spgnet --preset demo`` fills its flags from the same preset. The recipe itself is pinned
    here (27 frames, 256 channels, batch 256, Adam 4e-3 x0.8 per epoch, no dropout, 8 epochs over
    every 7th window of synthetic (600-frame sequences) + CMU motion, trajectory 0.05, no
    re-projection or bone term, weight averaging 0.998) so that a change to it is a deliberate one."""
    from fastpose.commands import demo

    args = _demo_args(["--out", "somewhere"])
    cfg = demo.demo_train_config(args)
    assert cfg.filter_widths == (3, 3, 3) and cfg.model_config.receptive_field == 27
    assert (cfg.channels, cfg.batch_size, cfg.lr, cfg.lr_decay, cfg.dropout, cfg.frame_stride, cfg.epochs) == (
        256, 256, 4e-3, 0.8, 0.0, 7, 8)
    assert (cfg.loss_pose, cfg.loss_trajectory, cfg.loss_reprojection, cfg.loss_bone, cfg.ema_decay) == (
        1.0, 0.05, 0.0, 0.0, 0.998)
    assert (cfg.data_config["data"], cfg.data_config["synthetic_frames"]) == ("synthetic+cmu", 600)
    # every preset value reaches the demo's config, and nothing else sets the recipe
    for name, value in config.DEMO_PRESET.items():
        assert getattr(cfg, name) == value, name
    for name, value in config.DEMO_DATA.items():
        assert cfg.data_config[name] == value, name
    assert (cfg.out_dir, cfg.time_limit, cfg.max_steps, cfg.device) == ("somewhere", args.minutes, None, "cpu")
    # the demo's flags still override the preset
    small = demo.demo_train_config(_demo_args(["--channels", "64", "--epochs", "2", "--frame-stride", "3"]))
    assert (small.channels, small.epochs, small.frame_stride, small.batch_size) == (64, 2, 3, 256)
    # the train command's preset: the same model and schedule values
    train = _spgnet(["--preset", "demo"])
    mapped = ("filter_widths", "channels", "dropout", "epochs", "batch_size", "lr", "lr_decay", "frame_stride",
              "loss_pose", "loss_trajectory", "loss_reprojection", "loss_bone", "ema_decay")
    assert {k: getattr(train, k) for k in mapped} == {k: getattr(cfg, k) for k in mapped}
    for name, value in config.DEMO_DATA.items():
        assert train.data_config[name] == value, name
    # without the preset: the paper's loss weights, no averaging, 300-frame synthetic sequences
    plain = _spgnet([])
    assert (plain.loss_trajectory, plain.loss_bone, plain.ema_decay, plain.data_config["synthetic_frames"]) == (
        0.1, 0.1, 0.0, 300)
    explicit = _spgnet(["--preset", "demo", "--loss-weights", "1,0.2,0.3,0.4", "--ema-decay", "0",
                        "--synthetic-frames", "120"])
    assert (explicit.loss_trajectory, explicit.loss_reprojection, explicit.loss_bone, explicit.ema_decay,
            explicit.data_config["synthetic_frames"]) == (0.2, 0.3, 0.4, 0.0, 120)


def test_explicit_flags_override_the_preset_and_paper_is_the_default():
    cfg = _spgnet(["--preset", "demo", "--channels", "64", "--epochs", "2"])
    assert (cfg.channels, cfg.epochs, cfg.batch_size) == (64, 2, 256)
    paper = _spgnet([])
    assert (paper.channels, paper.batch_size, paper.lr, paper.lr_decay, paper.dropout) == (1024, 1024, 1e-3, 0.95, 0.25)
    assert _spgnet(["--preset", "paper"]) == paper
    assert paper.data_config["data"] == "synthetic+cmu"  # issue 11: synthetic + real motion by default


def test_volumetric_demo_preset_is_the_tiny_model():
    p = argparse.ArgumentParser()
    train_args.add_volumetric_arguments(p)
    cfg = train_args.volumetric_config(p.parse_args(["--preset", "demo"]))
    assert (cfg.size, cfg.workers, cfg.epochs) == ("tiny", 0, 1)
    assert train_args.volumetric_config(p.parse_args([])).size == "paper"


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "argument --epochs: expected an integer >= 1, received 0"),
    (["--batch-size", "0"], "argument --batch-size: expected an integer >= 1, received 0"),
    (["--channels", "-3"], "argument --channels: expected an integer >= 1, received -3"),
    (["--dropout", "1.5"], "argument --dropout: expected a number in [0, 1), received '1.5'"),
    (["--lr", "0"], "argument --lr: expected a number > 0, received '0'"),
    (["--lr", "nan"], "argument --lr: expected a number > 0, received 'nan'"),
    (["--lr-decay", "2"], "argument --lr-decay: expected a factor in (0, 1], received '2'"),
    (["--arch", "3,x"], "argument --arch: expected comma-separated odd filter widths such as 3,3,3, received '3,x'"),
    (["--arch", "3,4"], "argument --arch: expected comma-separated odd filter widths"),
    (["--train-subjects", "9,11"], "argument --train-subjects: expected comma-separated subjects such as S9,S11"),
    (["--time-limit", "-1"], "argument --time-limit: expected a number > 0, received '-1'"),
    (["--max-steps", "0"], "argument --max-steps: expected an integer >= 1, received 0"),
    (["--device", "gpu"], "argument --device: expected auto, cpu, cuda or cuda:N, received 'gpu'"),
    (["--resume", "/no/such/checkpoint.pt"], "argument --resume: no such file: /no/such/checkpoint.pt"),
    (["--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
])
def test_nonsense_values_are_refused_at_parse_time(argv, message, capsys, tmp_path):
    from fastpose.cli import main

    out = tmp_path / "run"
    assert main(["train", "spgnet", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    assert err.startswith("fastpose train spgnet: error: ") and message in err
    assert not out.exists()  # refused before anything was created


def test_config_rejects_nonsense_from_python_too():
    with pytest.raises(ValueError, match="SPGNetTrainConfig: batch_size must be an integer >= 1, got 0"):
        config.SPGNetTrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="VolumetricTrainConfig: epochs must be an integer >= 1, got 0"):
        config.VolumetricTrainConfig(epochs=0)
    with pytest.raises(ValueError, match=r"SPGNetTrainConfig: dropout must be in \[0, 1\), got 1.0"):
        config.SPGNetTrainConfig(dropout=1.0)


def test_torch_free_constants_match_their_sources():
    from fastpose.data import TEST_SUBJECTS, TRAIN_SUBJECTS
    from fastpose.models.volumetric import ABLATIONS

    assert config.TRAIN_SUBJECTS == tuple(TRAIN_SUBJECTS) and config.TEST_SUBJECTS == tuple(TEST_SUBJECTS)
    assert config.ABLATION_NAMES == tuple(ABLATIONS)
    sizes = {s: config.VolumetricTrainConfig(size=s).model_config.input_size for s in config.VOLUMETRIC_SIZES}
    assert sizes == {"paper": 256, "tiny": 64}


def test_threads_follow_the_load(monkeypatch):
    import os

    from fastpose.train import common

    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 0.0, 0.0))
    assert common.threads_for_load(4) == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert common.threads_for_load(4) == 4
    with pytest.raises(ValueError, match="thread count must be >= 1, got 0"):
        common.set_threads(0)
