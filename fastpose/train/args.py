"""Command-line flags of ``fastpose train MODEL`` and ``fastpose evaluate``, without importing torch.

Every value is checked when the command line is parsed (``--epochs 0``, ``--batch-size 0``,
``--dropout 1.5``, ``--arch 3,x`` ... are refused with one line naming the flag, what it expects
and what it received), so that a run never starts -- or trains for an hour -- with a setting
that cannot work. Flags that a ``--preset`` sets default to ``None`` here; :func:`spgnet_config`
and :func:`volumetric_config` fill them: explicit flag > preset > the config's default.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from .config import (
    ABLATION_NAMES,
    DEMO_DATA,
    SPGNET_PRESETS,
    TEST_SUBJECTS,
    TRAIN_SUBJECTS,
    VOLUMETRIC_PRESETS,
    VOLUMETRIC_SIZES,
    SPGNetTrainConfig,
    VolumetricTrainConfig,
)

__all__ = [
    "BUILTIN_DATA",
    "add_data_arguments",
    "add_evaluate_arguments",
    "add_run_arguments",
    "add_run_group",
    "add_spgnet_arguments",
    "add_volumetric_arguments",
    "data_config_from_args",
    "device_name",
    "existing_file",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "spgnet_config",
    "volumetric_config",
]

#: --data values that need no files: generated synthetic motion, the built-in CMU motion, or both
BUILTIN_DATA: tuple[str, ...] = ("synthetic", "cmu", "synthetic+cmu")


# ============================================================================================
# value types (argparse calls them; ArgumentTypeError -> "argument --x: <message>", exit 2)
# ============================================================================================
def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, received {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, received {value}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _int_at_least(text, 0)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _float(text, "a number > 0")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, received {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    value = _float(text, "a number >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, received {text!r}")
    return value


def _fraction(text: str) -> float:
    """A probability in [0, 1) (dropout, dropped-joint rate)."""
    value = _float(text, "a number in [0, 1)")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), received {text!r}")
    return value


def _decay(text: str) -> float:
    value = _float(text, "a factor in (0, 1]")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a factor in (0, 1], received {text!r}")
    return value


def _float(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, received {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected {what}, received {text!r}")
    return value


def _widths(text: str) -> tuple[int, ...]:
    """Filter widths: odd integers >= 1 separated by commas, e.g. 3,3,3."""
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated odd filter widths such as 3,3,3, "
                                         f"received {text!r}") from None
    if any(w < 1 or w % 2 == 0 for w in widths):
        raise argparse.ArgumentTypeError(f"expected comma-separated odd filter widths such as 3,3,3, received {text!r}")
    return widths


def _loss_weights(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(w) for w in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or any(not (v >= 0) for v in values):
        raise argparse.ArgumentTypeError(f"needs 4 values >= 0 (pose,trajectory,reprojection,bone), "
                                         f"received {text!r}")
    return values  # type: ignore[return-value]


_SUBJECT = re.compile(r"^S\d+$")


def _subjects(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    if not names or any(not _SUBJECT.match(s) for s in names):
        raise argparse.ArgumentTypeError(f"expected comma-separated subjects such as S9,S11, received {text!r}")
    return names


def _names(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, received {text!r}")
    return names


def device_name(text: str) -> str:
    """auto, cpu, cuda or cuda:N."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, received {text!r}")
    return text


def existing_file(text: str) -> str:
    """A path to an existing file (checked at parse time, before anything slow happens)."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}" if not path.exists() else f"not a file: {text}")
    return text


# ============================================================================================
# flag groups
# ============================================================================================
def _preset_help(text: str, name: str, presets: dict[str, dict[str, Any]], default: Any) -> str:
    """``text`` + the value of each preset, e.g. "(default: 1024; --preset demo: 256)"."""
    shown = lambda v: ",".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)
    parts = [f"default: {shown(default)}"]
    parts += [f"--preset {p}: {shown(v[name])}" for p, v in presets.items() if name in v and v[name] != default]
    return f"{text} ({'; '.join(parts)})"


def add_data_arguments(parser: argparse.ArgumentParser, *, default_data: str | None = "synthetic+cmu",
                       from_checkpoint: bool = False) -> argparse._ArgumentGroup:
    """--data / --keypoints / --actions / --synthetic-* / --noise-px of the lifting model.

    ``from_checkpoint=True`` (``fastpose evaluate``): every default is ``None``, meaning "as the
    checkpoint's training run"; the help says so.
    """
    g = parser.add_argument_group("data")
    ck = " (default: as the checkpoint was trained)" if from_checkpoint else ""
    g.add_argument("--data", default=None if from_checkpoint else default_data, metavar="SOURCE",
                   help="'synthetic' (generated in memory), 'cmu' (the built-in real CMU motion), 'synthetic+cmu' "
                        "(both), a directory with data_3d_h36m.npz and data_2d_h36m_<keypoints>.npz (VideoPose3D "
                        "layout), or a motion file (.npz, one (T, 17, 3) array per sequence)" + ck)
    g.add_argument("--keypoints", default=None if from_checkpoint else "gt",
                   help="2D keypoints of a Human3.6M directory: data_2d_h36m_<keypoints>.npz" + ck)
    g.add_argument("--actions", default=None, type=_names,
                   help="comma-separated action groups, e.g. Walking,Eating (Human3.6M names) or Walk,Run (motion "
                        "categories)" + (" (default: as the checkpoint was trained, on its own data; else all)"
                                         if from_checkpoint else " (default: all)"))
    g.add_argument("--synthetic-frames", type=positive_int, default=None,
                   help="mean frames per synthetic sequence" + (ck or f" (default: 300; --preset demo: "
                                                                  f"{DEMO_DATA['synthetic_frames']})"))
    g.add_argument("--synthetic-seed", type=int, default=None if from_checkpoint else 0,
                   help="seed of the synthetic motion generator" + ck)
    g.add_argument("--noise-px", "--synthetic-noise", dest="noise_px", type=_non_negative_float,
                   default=None if from_checkpoint else 0.0,
                   help="std of Gaussian noise added to the 2D keypoints, pixels (detector-like input)" + ck)
    g.add_argument("--synthetic-drop", type=_fraction, default=None if from_checkpoint else 0.0,
                   help="probability that a synthetic 2D joint is dropped (set to the root)" + ck)
    return g


def add_run_arguments(parser, defaults) -> None:
    """Seed, AMP, compile, device: shared by every ``fastpose train MODEL`` (added to ``parser``,
    usually the "optimisation" group). ``defaults``: the model's train-config (fields seed, device)."""
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed of the weights, the batch order, the augmentation and dropout")
    parser.add_argument("--amp", action="store_true", help="mixed precision (bfloat16 on CPU, float16 on CUDA)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--device", default=defaults.device, type=device_name, help="auto, cpu, cuda or cuda:N "
                        "(auto: CUDA when available)")


def add_run_group(parser, defaults) -> argparse._ArgumentGroup:
    """The "run" argument group shared by every ``fastpose train MODEL``; returns the group."""
    g = parser.add_argument_group("run")
    g.add_argument("--out", default=defaults.out_dir,
                   help="output directory (checkpoint.pt, evaluation.json/.md); checked writable before training")
    g.add_argument("--resume", default=None, metavar="CHECKPOINT", type=existing_file,
                   help="continue the run of this checkpoint (same data and schedule; see --override)")
    g.add_argument("--override", default=(), type=_names, metavar="KEY[,KEY]",
                   help="with --resume: settings that may differ from the checkpoint's run, e.g. epochs,lr")
    g.add_argument("--overwrite", action="store_true",
                   help="start afresh even though --out already holds a checkpoint.pt (it is replaced)")
    g.add_argument("--checkpoint-every", type=non_negative_int, default=0,
                   help="also checkpoint every N steps (0: at the end of each epoch only)")
    g.add_argument("--max-steps", type=positive_int, default=None,
                   help="stop after this many optimizer steps in all (resumable; the model is still evaluated)")
    g.add_argument("--time-limit", type=positive_float, default=None, metavar="MINUTES",
                   help="stop after this many minutes of training (resumable; the model is still evaluated)")
    g.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation after training")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    return g


def add_spgnet_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``fastpose train spgnet``."""
    d = SPGNetTrainConfig()
    pre = lambda text, name: _preset_help(text, name, SPGNET_PRESETS, getattr(d, name))
    parser.add_argument("--preset", choices=sorted(SPGNET_PRESETS), default=None,
                        help="'demo': the make-demo recipe (27 frames, 256 channels, batch 256, 8 epochs; "
                             "minutes on a CPU); 'paper': the paper's sizes (hours on a CPU). Flags given "
                             "explicitly override the preset (default: paper)")
    g = add_data_arguments(parser)
    g.add_argument("--train-subjects", type=_subjects, default=TRAIN_SUBJECTS,
                   help=f"subjects whose cameras (and synthetic people) train the model (default: "
                        f"{','.join(TRAIN_SUBJECTS)})")
    g.add_argument("--test-subjects", type=_subjects, default=TEST_SUBJECTS,
                   help=f"held-out subjects of the evaluation (default: {','.join(TEST_SUBJECTS)})")
    g.add_argument("--eval-on", type=_names, default=("synthetic", "cmu"), metavar="SET[,SET]",
                   help="held-out sets evaluated after training: 'synthetic' (synthetic test subjects), 'cmu' "
                        "(held-out real CMU motion through the test subjects' cameras); with --data DIR or FILE "
                        "that data's test subjects are evaluated first (default: synthetic,cmu)")
    g = parser.add_argument_group("model")
    g.add_argument("--arch", type=_widths, default=None,
                   help=pre("filter widths of the temporal convolutions: 3,3,3 (27 frames), 3,3,3,3 (81), "
                            "3,3,3,3,3 (243)", "filter_widths"))
    g.add_argument("--channels", type=positive_int, default=None, help=pre("channels of every convolution", "channels"))
    g.add_argument("--dropout", type=_fraction, default=None, help=pre("dropout probability", "dropout"))
    g.add_argument("--no-trajectory", action="store_true", help="no global-position head (and no 2D loss)")
    g = parser.add_argument_group("optimisation")
    g.add_argument("--epochs", type=positive_int, default=None, help=pre("passes over the training windows", "epochs"))
    g.add_argument("--batch-size", type=positive_int, default=None, help=pre("windows per step", "batch_size"))
    g.add_argument("--lr", type=positive_float, default=None, help=pre("Adam learning rate", "lr"))
    g.add_argument("--lr-decay", type=_decay, default=None,
                   help=pre("learning-rate factor per epoch (applied smoothly per step)", "lr_decay"))
    g.add_argument("--frame-stride", type=positive_int, default=None,
                   help=pre("train on every N-th frame", "frame_stride"))
    g.add_argument("--no-flip", action="store_true", help="no horizontal flip augmentation")
    g.add_argument("--loss-weights", default=None, type=_loss_weights,
                   help="pose,trajectory,reprojection,bone weights of the loss terms (default: "
                        f"{','.join(f'{w:g}' for w in _preset_loss_weights('paper'))}; --preset demo: "
                        f"{','.join(f'{w:g}' for w in _preset_loss_weights('demo'))})")
    g.add_argument("--ema-decay", type=_fraction, default=None,
                   help=pre("evaluate and return an exponential moving average of the weights with this decay "
                            "(0: off; the checkpoint keeps the raw weights too, so resuming stays exact)",
                            "ema_decay"))
    add_run_arguments(g, d)
    g = add_run_group(parser, d)
    g.add_argument("--no-flip-test", action="store_true", help="no test-time flip augmentation")


def add_volumetric_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``fastpose train volumetric``."""
    d = VolumetricTrainConfig()
    pre = lambda text, name: _preset_help(text, name, VOLUMETRIC_PRESETS, getattr(d, name))
    parser.add_argument("--preset", choices=sorted(VOLUMETRIC_PRESETS), default=None,
                        help="'demo': the tiny 64x64 model of the CPU tests (a pipeline check, about 20 s); "
                             "'paper': 256x256 ResNet-50, 32,000 renders per epoch (hours on a CPU). Flags given "
                             "explicitly override the preset (default: paper)")
    g = parser.add_argument_group("data")
    g.add_argument("--data", default=d.data,
                   help="'synthetic' (rendered on the fly) or a Human3.6M directory: data_3d_h36m.npz + "
                        "images/<subject>/<action>.<camera>/<frame:06d>.jpg")
    g.add_argument("--train-samples", type=positive_int, default=None,
                   help=pre("synthetic renders per epoch", "train_samples"))
    g.add_argument("--test-samples", type=positive_int, default=None, help=pre("synthetic test renders", "test_samples"))
    g.add_argument("--synthetic-frames", type=positive_int, default=d.synthetic_frames,
                   help="mean frames per synthetic motion sequence")
    g.add_argument("--synthetic-stride", type=positive_int, default=d.synthetic_stride,
                   help="keep every N-th synthetic motion frame as a pose")
    g.add_argument("--synthetic-seed", type=int, default=d.synthetic_seed, help="seed of the synthetic motion")
    g.add_argument("--frame-stride", type=positive_int, default=d.frame_stride,
                   help="Human3.6M: every N-th training frame")
    g.add_argument("--test-frame-stride", type=positive_int, default=d.test_frame_stride,
                   help="Human3.6M: every N-th test frame")
    g.add_argument("--workers", type=non_negative_int, default=None,
                   help=pre("DataLoader worker processes (rendering)", "workers"))
    g = parser.add_argument_group("model")
    g.add_argument("--size", choices=VOLUMETRIC_SIZES, default=None,
                   help=pre("'paper': 256x256 ResNet-50, 64^3 volumes; 'tiny': 64x64, for CPU checks", "size"))
    g.add_argument("--ablation", choices=ABLATION_NAMES, default=d.ablation,
                   help="paper Table II: A baseline, B volumetric heatmap loss, C refinement block")
    g.add_argument("--no-volumetric-loss", action="store_true", help="drop B from --ablation")
    g.add_argument("--no-refinement", action="store_true", help="drop C from --ablation")
    g.add_argument("--depth-range", type=positive_float, default=d.depth_range,
                   help="metres of root-relative depth covered by the volume's D bins")
    g.add_argument("--pretrained", default=None, type=existing_file,
                   help="torchvision-format ResNet-50 weights (.pth) for the backbone (default: random init)")
    g = parser.add_argument_group("optimisation")
    g.add_argument("--epochs", type=positive_int, default=None, help=pre("passes over the training renders", "epochs"))
    g.add_argument("--batch-size", type=positive_int, default=None, help=pre("images per step", "batch_size"))
    g.add_argument("--lr", type=positive_float, default=d.lr, help="Adam learning rate")
    g.add_argument("--lr-step-epoch", type=positive_int, default=d.lr_step_epoch,
                   help="1-based epoch from which the learning rate is multiplied by --lr-factor")
    g.add_argument("--lr-factor", type=_decay, default=d.lr_factor, help="learning-rate factor of the step")
    add_run_arguments(g, d)
    add_run_group(parser, d)


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Data flags of ``fastpose evaluate`` for every model; each defaults to the checkpoint's run."""
    g = add_data_arguments(parser, from_checkpoint=True)
    g.add_argument("--subjects", type=_subjects, default=None,
                   help="subjects to evaluate (default: the checkpoint run's test subjects)")
    g.add_argument("--motion", default=None, metavar="FILE.npz", type=existing_file,
                   help="evaluate on this motion file (one (T, 17, 3) array per sequence, mm or m, Z up), placed "
                        "in the Human3.6M room and projected through --subjects' cameras (SPGNet)")
    g.add_argument("--part", choices=("train", "test", "all"), default=None,
                   help="part of a motion set to evaluate (default: 'test' for the built-in sets, 'all' of a file)")
    g.add_argument("--protocol", choices=("videopose3d", "root-aligned"), default="videopose3d",
                   help="'videopose3d': ground-truth root zeroed, predicted root kept (the papers' tables); "
                        "'root-aligned': both roots subtracted (MotionBERT-style)")
    g = parser.add_argument_group("volumetric model")
    g.add_argument("--synthetic-stride", type=positive_int, default=None,
                   help="keep every N-th synthetic motion frame as a pose (default: as trained)")
    g.add_argument("--test-samples", type=positive_int, default=None,
                   help="synthetic test renders (default: as trained)")
    g.add_argument("--test-frame-stride", type=positive_int, default=None,
                   help="every N-th Human3.6M frame (default: as trained)")
    g.add_argument("--eval-batch-size", type=positive_int, default=32, help="images per forward pass")
    g.add_argument("--workers", type=non_negative_int, default=0, help="DataLoader worker processes")


# ============================================================================================
# flags -> configs
# ============================================================================================
def _preset_values(args: argparse.Namespace, presets: dict[str, dict[str, Any]], names: dict[str, str]) -> dict:
    """{config field: value} from explicit flags over the preset (``names``: config field -> dest)."""
    preset = presets.get(getattr(args, "preset", None) or "paper", {})
    out = {}
    for fld, dest in names.items():
        value = getattr(args, dest, None)
        if value is not None:
            out[fld] = value
        elif fld in preset:
            out[fld] = preset[fld]
    return out


def _preset_loss_weights(preset: str) -> tuple[float, float, float, float]:
    """(pose, trajectory, reprojection, bone) of a preset, the config's defaults where it is silent."""
    values = SPGNET_PRESETS.get(preset, {})
    return tuple(float(values.get(k, getattr(SPGNetTrainConfig, k)))
                 for k in ("loss_pose", "loss_trajectory", "loss_reprojection", "loss_bone"))


def data_config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON-friendly record of the lifting data flags (stored in checkpoints as ``data_config``)."""
    frames = args.synthetic_frames
    if frames is None:  # the preset's synthetic sequence length (the demo trains on longer ones)
        frames = DEMO_DATA["synthetic_frames"] if getattr(args, "preset", None) == "demo" else 300
    return {
        "data": str(args.data), "keypoints": args.keypoints,
        "actions": list(args.actions) if args.actions else None,
        "synthetic_frames": frames, "synthetic_seed": args.synthetic_seed,
        "noise_px": args.noise_px, "synthetic_drop": args.synthetic_drop,
        "train_subjects": list(getattr(args, "train_subjects", TRAIN_SUBJECTS)),
        "test_subjects": list(getattr(args, "test_subjects", TEST_SUBJECTS)),
    }


def spgnet_config(args: argparse.Namespace) -> SPGNetTrainConfig:
    """The :class:`SPGNetTrainConfig` of parsed ``fastpose train spgnet`` flags."""
    values = _preset_values(args, SPGNET_PRESETS, {
        "filter_widths": "arch", "channels": "channels", "dropout": "dropout", "epochs": "epochs",
        "batch_size": "batch_size", "lr": "lr", "lr_decay": "lr_decay", "frame_stride": "frame_stride",
        "ema_decay": "ema_decay"})
    lw = args.loss_weights or _preset_loss_weights(getattr(args, "preset", None) or "paper")
    return SPGNetTrainConfig(
        **values, trajectory=not args.no_trajectory, flip=not args.no_flip, loss_pose=lw[0],
        loss_trajectory=lw[1], loss_reprojection=lw[2], loss_bone=lw[3], seed=args.seed, amp=args.amp,
        compile=args.compile, device=args.device, out_dir=args.out, resume=args.resume,
        checkpoint_every=args.checkpoint_every, max_steps=args.max_steps, time_limit=args.time_limit,
        progress=not args.no_progress, data_config=data_config_from_args(args), override=tuple(args.override),
    )


def volumetric_config(args: argparse.Namespace) -> VolumetricTrainConfig:
    """The :class:`VolumetricTrainConfig` of parsed ``fastpose train volumetric`` flags."""
    values = _preset_values(args, VOLUMETRIC_PRESETS, {
        "size": "size", "train_samples": "train_samples", "test_samples": "test_samples", "epochs": "epochs",
        "batch_size": "batch_size", "workers": "workers"})
    flags = {"volumetric_loss": "B" in args.ablation, "refinement": "C" in args.ablation}
    if args.no_volumetric_loss:
        flags["volumetric_loss"] = False
    if args.no_refinement:
        flags["refinement"] = False
    ablation = "A" + ("+B" if flags["volumetric_loss"] else "") + ("+C" if flags["refinement"] else "")
    return VolumetricTrainConfig(
        **values, ablation=ablation, depth_range=args.depth_range, pretrained=args.pretrained, data=args.data,
        synthetic_frames=args.synthetic_frames, synthetic_stride=args.synthetic_stride,
        synthetic_seed=args.synthetic_seed, frame_stride=args.frame_stride, test_frame_stride=args.test_frame_stride,
        lr=args.lr, lr_step_epoch=args.lr_step_epoch, lr_factor=args.lr_factor, seed=args.seed, amp=args.amp,
        compile=args.compile, device=args.device, out_dir=args.out, resume=args.resume,
        checkpoint_every=args.checkpoint_every, max_steps=args.max_steps, time_limit=args.time_limit,
        progress=not args.no_progress, override=tuple(args.override),
    )
