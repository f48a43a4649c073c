"""What defines a training run, without importing torch: the trainers' configs and presets.

The command line builds its parsers from these dataclasses (defaults, presets) before any heavy
import, so ``fastpose train spgnet --help`` answers in a fraction of a second;
:mod:`fastpose.train.spgnet` and :mod:`fastpose.train.volumetric` re-export them.

A training checkpoint stores ``asdict(config)`` as ``extra["train_config"]``. On ``--resume`` every
field that changes what is learned (data, schedule, seed, ...) must match the checkpoint's, unless
the run names it in ``override``; the run-control fields of :data:`RUN_CONTROL_FIELDS` (where to
write, when to stop, how to show progress) may always change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ABLATION_NAMES",
    "DEMO_DATA",
    "DEMO_PRESET",
    "PAPER_PRESET",
    "RUN_CONTROL_FIELDS",
    "SPGNET_PRESETS",
    "TEST_SUBJECTS",
    "TRAIN_SUBJECTS",
    "VOLUMETRIC_DEMO_PRESET",
    "VOLUMETRIC_PRESETS",
    "VOLUMETRIC_SIZES",
    "SPGNetTrainConfig",
    "VolumetricTrainConfig",
]

# Human3.6M protocol subjects (the same tuples as fastpose.data.h36m; a test checks they agree --
# importing fastpose.data here would import torch).
TRAIN_SUBJECTS: tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS: tuple[str, ...] = ("S9", "S11")

# Names of fastpose.models.volumetric.ABLATIONS and of the volumetric trainer's model sizes
# (same reason; a test checks they agree).
ABLATION_NAMES: tuple[str, ...] = ("A", "A+B", "A+C", "A+B+C")
VOLUMETRIC_SIZES: tuple[str, ...] = ("paper", "tiny")

#: fields that do not change what is learned -- where to write, when to stop, how to show progress,
#: which held-out data to evaluate afterwards: a resumed run may change them freely
RUN_CONTROL_FIELDS: frozenset[str] = frozenset({
    "out_dir", "resume", "checkpoint_every", "max_steps", "time_limit", "progress", "device", "compile",
    "override", "workers", "pretrained", "test_subjects", "test_samples", "test_frame_stride",
})


@dataclass
class SPGNetTrainConfig:
    """Everything that defines an SPGNet training run (the CLI flags map one to one).

    ``data_config`` records where the training data came from (the ``--data`` source, keypoints,
    actions, subjects, synthetic frames / seed / 2D noise) so that a resume and ``fastpose
    evaluate`` can use -- or check against -- the same data. ``override`` names the fields a
    ``resume`` may change although they differ from the checkpoint's (e.g. ``("epochs",)``).
    """

    # model
    filter_widths: tuple[int, ...] = (3, 3, 3)
    channels: int = 1024
    dropout: float = 0.25
    trajectory: bool = True
    # optimisation
    epochs: int = 20
    batch_size: int = 1024
    lr: float = 1e-3
    lr_decay: float = 0.95
    frame_stride: int = 1
    flip: bool = True
    # Loss weights. The auxiliary terms share the trunk with the pose: at weight 1 the
    # trajectory and re-projection terms cost ~10 mm of pose MPJPE in short runs on the
    # synthetic set (measured: 57.8 -> 47.7 mm train MPJPE after 6 epochs with 0.1), so they
    # default to 0.1.
    loss_pose: float = 1.0
    loss_trajectory: float = 0.1
    loss_reprojection: float = 0.1
    loss_bone: float = 0.1
    seed: int = 0
    amp: bool = False
    compile: bool = False
    device: str = "auto"
    # run control
    out_dir: str = "outputs/spgnet"
    resume: str | None = None
    checkpoint_every: int = 0  # also checkpoint every N steps (0: at epoch ends only)
    max_steps: int | None = None  # stop after this many optimizer steps in total
    time_limit: float | None = None  # stop after this many minutes (checkpointed, resumable)
    progress: bool = True
    # additions (keep positional construction of the fields above working)
    data_config: dict[str, Any] = field(default_factory=dict)
    override: tuple[str, ...] = ()
    # Exponential moving average of the weights (Polyak averaging), 0 = off: after every optimizer
    # step avg <- d * avg + (1 - d) * weights with d = min(ema_decay, (1 + n) / (10 + n)) after n
    # updates (the warm-up keeps the random initial weights from dominating early); the averaged
    # model is the run's result (returned, evaluated, stored as ``ema_model`` in the checkpoint).
    # It smooths the noise of the last steps of a short run at the cost of one copy of the weights.
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        _check_positive(self, "SPGNetTrainConfig", ("channels", "epochs", "batch_size", "frame_stride"))
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"SPGNetTrainConfig: ema_decay must be in [0, 1) (0: no weight averaging), "
                             f"got {self.ema_decay}")
        if not self.filter_widths or any(int(w) < 1 for w in self.filter_widths):
            raise ValueError(f"SPGNetTrainConfig: filter_widths must be positive integers, got {self.filter_widths}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"SPGNetTrainConfig: dropout must be in [0, 1), got {self.dropout}")
        if not self.lr > 0:
            raise ValueError(f"SPGNetTrainConfig: lr must be > 0, got {self.lr}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"SPGNetTrainConfig: lr_decay must be in (0, 1], got {self.lr_decay}")
        _check_run_control(self, "SPGNetTrainConfig")

    @property
    def model_config(self):
        """The :class:`fastpose.models.SPGNetConfig` of this run."""
        from ..models.spgnet import SPGNetConfig

        return SPGNetConfig(filter_widths=tuple(self.filter_widths), channels=self.channels,
                            dropout=self.dropout, trajectory=self.trajectory)

    @property
    def loss_weights(self):
        """The :class:`fastpose.models.SPGNetLossWeights` of this run."""
        from ..models.spgnet import SPGNetLossWeights

        return SPGNetLossWeights(self.loss_pose, self.loss_trajectory, self.loss_reprojection, self.loss_bone)


#: The ``make demo`` / ``fastpose demo`` recipe, one definition (``fastpose demo`` builds its
#: training config from it; ``fastpose train spgnet --preset demo`` fills its flags from it): a
#: 27-frame model with 256 channels, batch 256, Adam 4e-3 decaying x0.8 per epoch (applied smoothly
#: per step; x0.17 at the end), no dropout (the model underfits this much data in a few minutes),
#: 8 epochs over every 7th window of synthetic + the CMU training motion (:data:`DEMO_DATA`: about
#: 151k windows -> 590 steps of 256 per epoch, 4,720 steps; 114 s on 2 CPU cores, ``fastpose demo`` 148 s).
#: Loss: pose + 0.05 x trajectory; no re-projection term and no bone term (both share the trunk with
#: the pose; the bone term compares two output frames, which doubles the cost of a step: without it
#: the same time box holds twice the steps). Evaluated with the moving average of the weights
#: (``ema_decay``; in a run this short the warm-up d = (1 + n) / (10 + n) sets the decay for all but
#: the last ~200 steps, i.e. an average weighted towards the last ~10 % of the steps).
#: Measured at a fixed number of steps (driver: train_spgnet + evaluate_spgnet with flip test, ground-truth
#: 2D, synthetic held-out S9/S11 | real held-out CMU motion, mm): the earlier recipe (stride 14, decay
#: 0.7, bone 0.1, no averaging, 2,376 steps) 45.7 | 59.5; + averaging 45.0 | 58.3; stride 7, 4 epochs,
#: decay 0.64, averaging: 43.6 | 58.1, the same without the bone term 44.3 | 57.7 at 2.1x the steps/s;
#: 6 epochs (3,540 steps, decay 0.74) 42.1 | 55.4; this recipe (8 epochs, 4,720 steps) 42.4 | 54.4,
#: training seed 1: 41.6 | 53.5; ``fastpose demo``: 41.4 | 54.1 (with 5 px 2D noise 48.6 | 59.7).
DEMO_PRESET: dict[str, Any] = {
    "filter_widths": (3, 3, 3), "channels": 256, "dropout": 0.0, "epochs": 8, "batch_size": 256,
    "lr": 4e-3, "lr_decay": 0.8, "frame_stride": 7, "loss_trajectory": 0.05, "loss_reprojection": 0.0,
    "loss_bone": 0.0, "ema_decay": 0.998,
}
#: The data of the demo recipe (the ``--data`` / ``--synthetic-frames`` flags): the built-in
#: synthetic set with 600 mean frames per sequence + the built-in CMU training motion.
DEMO_DATA: dict[str, Any] = {"data": "synthetic+cmu", "synthetic_frames": 600}
#: The paper's sizes (the dataclass defaults): 1024 channels, batch 1024, Adam 1e-3 x0.95 per epoch,
#: dropout 0.25, loss weights 0.1.
PAPER_PRESET: dict[str, Any] = {k: getattr(SPGNetTrainConfig, k) for k in DEMO_PRESET}
SPGNET_PRESETS: dict[str, dict[str, Any]] = {"paper": PAPER_PRESET, "demo": DEMO_PRESET}


@dataclass
class VolumetricTrainConfig:
    """Everything that defines a volumetric training run (the CLI flags map one to one)."""

    # model
    size: str = "paper"  # "paper" (256 x 256, ResNet-50, 64^3) or "tiny" (64 x 64, CPU tests)
    ablation: str = "A+B+C"
    depth_range: float = 2.0
    pretrained: str | None = None  # torchvision ResNet-50 state dict for the backbone
    # data
    data: str = "synthetic"
    train_samples: int = 32_000  # synthetic renders per epoch
    test_samples: int = 2_000
    synthetic_frames: int = 300
    synthetic_stride: int = 2
    synthetic_seed: int = 0
    frame_stride: int = 5  # Human3.6M training frames
    test_frame_stride: int = 64  # Human3.6M test frames
    workers: int = 4
    # optimisation
    epochs: int = 25
    batch_size: int = 32
    lr: float = 1e-3
    lr_step_epoch: int = 11  # divide by lr_factor from this (1-based) epoch on
    lr_factor: float = 0.1
    seed: int = 0
    amp: bool = False
    compile: bool = False
    device: str = "auto"
    # run control
    out_dir: str = "outputs/volumetric"
    resume: str | None = None
    checkpoint_every: int = 0
    max_steps: int | None = None
    time_limit: float | None = None  # minutes
    progress: bool = True
    override: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.size not in VOLUMETRIC_SIZES:
            raise ValueError(f"VolumetricTrainConfig: size must be one of {list(VOLUMETRIC_SIZES)}, got {self.size!r}")
        if self.ablation.upper().replace(" ", "") not in ABLATION_NAMES:
            raise ValueError(f"VolumetricTrainConfig: ablation must be one of {list(ABLATION_NAMES)}, "
                             f"got {self.ablation!r}")
        _check_positive(self, "VolumetricTrainConfig", (
            "train_samples", "test_samples", "epochs", "batch_size", "synthetic_stride", "synthetic_frames",
            "frame_stride", "test_frame_stride", "lr_step_epoch"))
        if self.workers < 0:
            raise ValueError(f"VolumetricTrainConfig: workers must be >= 0, got {self.workers}")
        if not self.lr > 0:
            raise ValueError(f"VolumetricTrainConfig: lr must be > 0, got {self.lr}")
        if not self.depth_range > 0:
            raise ValueError(f"VolumetricTrainConfig: depth_range must be > 0 metres, got {self.depth_range}")
        _check_run_control(self, "VolumetricTrainConfig")

    @property
    def model_config(self):
        """The :class:`fastpose.models.VolumetricConfig` of this run (size, ablation, depth range)."""
        from ..models.volumetric import VolumetricConfig, ablation_config

        base = VolumetricConfig() if self.size == "paper" else VolumetricConfig.tiny()
        return ablation_config(self.ablation, base).replace(depth_range=self.depth_range)


#: ``fastpose train volumetric --preset demo``: the tiny model of the CPU tests (64 x 64 renders,
#: 150 steps x 16 images, about 20 s on one core), a check of the whole pipeline, not a pose model.
VOLUMETRIC_DEMO_PRESET: dict[str, Any] = {
    "size": "tiny", "train_samples": 2_400, "test_samples": 256, "epochs": 1, "batch_size": 16, "workers": 0,
}
VOLUMETRIC_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {k: getattr(VolumetricTrainConfig, k) for k in VOLUMETRIC_DEMO_PRESET},
    "demo": VOLUMETRIC_DEMO_PRESET,
}


def _check_positive(cfg, owner: str, names) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{owner}: {name} must be an integer >= 1, got {value!r}")


def _check_run_control(cfg, owner: str) -> None:
    if cfg.checkpoint_every < 0:
        raise ValueError(f"{owner}: checkpoint_every must be >= 0 (0: at epoch ends only), got {cfg.checkpoint_every}")
    if cfg.max_steps is not None and cfg.max_steps < 1:
        raise ValueError(f"{owner}: max_steps must be >= 1 or None, got {cfg.max_steps}")
    if cfg.time_limit is not None and not cfg.time_limit > 0:
        raise ValueError(f"{owner}: time_limit must be > 0 minutes or None, got {cfg.time_limit}")
    cfg.override = tuple(cfg.override)
