"""Training and evaluation of SPGNet (``fastpose train spgnet``, ``fastpose evaluate``).

The schedule of the paper: Adam, learning rate 1e-3 decaying exponentially (x0.95 per epoch,
applied smoothly per step), batch 1024 single-frame windows through the strided model,
horizontal flip augmentation, BatchNorm momentum decaying from 0.1 to 0.001 over the run (as
in VideoPose3D). One code path for one process and for ``torchrun`` (DDP, a
``DistributedSampler`` shards the windows; rank 0 prints, checkpoints and evaluates).

A run can stop early (``max_steps``, ``time_limit``, Ctrl-C / SIGTERM) and be resumed from its
checkpoint: the sampler order and flips depend only on (seed, epoch), the checkpoint holds the
model, optimizer, scheduler, grad-scaler and RNG states and the position inside the epoch, so a
resumed run continues with exactly the losses of an uninterrupted one (the loop is
:func:`fastpose.train.common.run_training`, shared with the volumetric trainer). A resume with
other data or schedule settings is refused unless ``override`` names them.

Data (``--data``): the built-in synthetic set, the built-in real CMU motion, both (the default),
a Human3.6M directory or a motion file; after training, ``run`` evaluates the synthetic held-out
subjects and the real held-out CMU motion separately (``evaluation.json``,
``evaluation_cmu.json``), also when the run was stopped early (the report says so).
"""

from __future__ import annotations

import argparse
import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..commands import CommandError
from ..data import PoseSequence, SyntheticConfig, WindowDataset, load_sequences
from ..evaluate import EvaluationReport, evaluate_sequences
from ..models.spgnet import SPGNet, SPGNetConfig, spgnet_loss
from . import common
from .args import BUILTIN_DATA, add_data_arguments, data_config_from_args, spgnet_config
from .args import add_spgnet_arguments as add_arguments
from .config import DEMO_PRESET, PAPER_PRESET, TEST_SUBJECTS, SPGNetTrainConfig

__all__ = [
    "DEMO_PRESET",
    "PAPER_PRESET",
    "SPGNetTrainConfig",
    "TrainResult",
    "add_arguments",
    "add_data_arguments",
    "add_evaluate_arguments",
    "config_from_args",
    "evaluate_checkpoint",
    "evaluate_checkpoint_sets",
    "evaluate_spgnet",
    "load_data",
    "load_spgnet",
    "predict_for_figure",
    "run",
    "train_spgnet",
]

_BN_MOMENTUM = (0.1, 0.001)  # initial, final (VideoPose3D)


@dataclass
class TrainResult:
    model: SPGNet  # the plain (unwrapped) model, in eval mode
    history: list[dict] = field(default_factory=list)  # one dict per finished epoch
    step_losses: list[float] = field(default_factory=list)  # total loss of every step of this call
    checkpoint: Path | None = None
    finished: bool = False  # all epochs done (False: stopped by max_steps/time_limit)
    seconds: float = 0.0
    frames_per_second: float = 0.0
    stop_reason: str = "finished"  # "finished", "max_steps" or "time_limit" (common.STOP_REASONS)
    global_step: int = 0  # optimizer steps in all (including a resumed run's earlier ones)
    steps_total: int = 0  # optimizer steps of the whole schedule (epochs x steps per epoch)


def train_spgnet(
    cfg: SPGNetTrainConfig,
    train_sequences: Sequence[PoseSequence],
    *,
    runtime: common.Runtime | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train (or resume training of) SPGNet on ``train_sequences``; see the module docstring.

    The loop (epochs, checkpoints, ``max_steps`` / ``time_limit`` / Ctrl-C stops, exact resume)
    is :func:`fastpose.train.common.run_training`; this function builds the model, the windows
    (``WindowDataset``: receptive-field windows, ``frames_out`` output frames, flips) and the step.
    Ctrl-C saves a resumable checkpoint, logs how to resume and raises KeyboardInterrupt.
    """
    rt = runtime or common.init_runtime(cfg.device)
    common.seed_everything(cfg.seed)
    mcfg = cfg.model_config
    model = SPGNet(mcfg).to(rt.device)
    weights = cfg.loss_weights
    frames_out = 2 if weights.bone > 0 else 1  # the bone term compares consecutive frames
    dataset = WindowDataset(train_sequences, mcfg.receptive_field, frames_out=frames_out,
                            frame_stride=cfg.frame_stride, flip=cfg.flip, seed=cfg.seed)
    mean_root = dataset.positions[:, :1].mean(dim=0)  # (1, 3) camera frame
    model.init_output_bias((dataset.positions - dataset.positions[:, :1]).mean(dim=0), mean_root)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, amsgrad=True)
    steps_per_epoch = math.ceil(math.ceil(len(dataset) / rt.world_size) / cfg.batch_size)
    scheduler = common.make_lr_scheduler(optimizer, "exponential", steps_per_epoch, gamma=cfg.lr_decay)
    scaler = common.make_grad_scaler(rt.device, cfg.amp)
    ckpt_path = Path(cfg.out_dir) / "checkpoint.pt"
    arch = mcfg.to_dict()
    config = asdict(cfg)

    state = common.LoopState()
    if cfg.resume:
        state = common.resume_training(cfg.resume, arch=arch, config=config, model=model, optimizer=optimizer,
                                       scheduler=scheduler, scaler=scaler, rt=rt, steps_per_epoch=steps_per_epoch,
                                       log=log)

    net = common.wrap_model(model, rt, compile=cfg.compile)
    ema = _WeightAverage(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    if ema is not None:  # after every optimizer step (the loop calls optimizer.step through the grad scaler)
        optimizer.register_step_post_hook(lambda *_: ema.update(model))
    pad = mcfg.receptive_field // 2
    if rt.is_main:
        n_par = sum(p.numel() for p in model.parameters())
        log(f"SPGNet {list(mcfg.filter_widths)} (receptive field {mcfg.receptive_field}, {mcfg.channels} channels, "
            f"{n_par / 1e6:.2f} M parameters) on {rt.device} x{rt.world_size}; {len(dataset)} windows, "
            f"{steps_per_epoch} steps/epoch, {cfg.epochs} epochs")

    def start_epoch(epoch: int) -> None:
        dataset.set_epoch(epoch)  # flips depend on (seed, epoch)
        mom = _BN_MOMENTUM[0] * math.exp(-epoch / cfg.epochs * math.log(_BN_MOMENTUM[0] / _BN_MOMENTUM[1]))
        model.set_bn_momentum(mom)

    def loader_for_epoch(epoch: int, skip: int):
        return common.make_loader(dataset, cfg.batch_size, rt, seed=cfg.seed, shuffle=True, epoch=epoch,
                                  skip_batches=skip)

    def step(batch) -> common.StepOutput:
        kp = batch["keypoints_2d"].to(rt.device, non_blocking=True)  # (B, R + k - 1, J, 2)
        gt = batch["positions_3d"].to(rt.device, non_blocking=True)  # (B, k, J, 3)
        cam = batch["camera"].to(rt.device, non_blocking=True)  # (B, 9)
        with common.autocast(rt.device, cfg.amp):
            out = net(kp, strided=True)
        # the loss is computed in float32 outside autocast; its 2D term compares the
        # re-projection with the input keypoints of the k output frames
        loss, terms = spgnet_loss(out, gt, kp[:, pad : pad + frames_out], cam, weights)
        return common.StepOutput(loss, terms, kp.shape[0], kp.shape[0] * frames_out)

    res = common.run_training(
        state=state, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch, net=net, model=model, optimizer=optimizer,
        scheduler=scheduler, scaler=scaler, rt=rt, loader_for_epoch=loader_for_epoch, step=step,
        keys=("loss", "pose", "trajectory", "reprojection", "bone"), checkpoint_path=ckpt_path, arch=arch,
        config=config, start_epoch=start_epoch,
        describe_epoch=lambda e, m: (f"epoch {e}: loss {m['loss']:.4f}  pose MPJPE {1000 * m['pose']:.1f} mm  "
                                     f"traj {1000 * m['trajectory']:.1f} mm  2D {m['reprojection']:.4f}  "
                                     f"bone {1000 * m['bone']:.2f} mm"),
        postfix=lambda m: {"loss": f"{m['loss']:.4f}", "mpjpe": f"{1000 * m['pose']:.1f}mm",
                           "lr": f"{scheduler.get_last_lr()[0]:.2e}"},
        checkpoint_every=cfg.checkpoint_every, max_steps=cfg.max_steps, time_limit=cfg.time_limit,
        progress=cfg.progress, resume_command="fastpose train spgnet <same flags> --resume", log=log,
    )
    model.eval()
    if ema is not None:
        model = ema.model
        if res.checkpoint is not None and rt.is_main:
            _store_average(res.checkpoint, ema)
    return TrainResult(
        model=model, history=res.history, step_losses=res.step_losses, checkpoint=res.checkpoint,
        finished=res.finished, seconds=res.seconds,
        frames_per_second=res.count * rt.world_size / max(res.seconds, 1e-9), stop_reason=res.stop_reason,
        global_step=res.state.global_step, steps_total=cfg.epochs * steps_per_epoch,
    )


class _WeightAverage:
    """Exponential moving average of a model's parameters (``SPGNetTrainConfig.ema_decay``).

    After the n-th update: ``avg = d * avg + (1 - d) * w`` with ``d = min(decay, (1 + n) / (10 + n))``
    (the usual warm-up: the first updates follow the weights closely). Buffers (BatchNorm running
    statistics, already running averages) are copied from the model. A resumed run restarts the
    average from the checkpoint's weights.
    """

    def __init__(self, model: SPGNet, decay: float) -> None:
        self.decay = float(decay)
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: SPGNet) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        for avg, w in zip(self.model.parameters(), model.parameters(), strict=True):
            avg.lerp_(w.detach(), 1.0 - d)
        for avg, b in zip(self.model.buffers(), model.buffers(), strict=True):
            avg.copy_(b)


def _store_average(path: Path, ema: _WeightAverage) -> None:
    """Add the averaged weights to the run's last checkpoint as ``ema_model`` (the raw weights stay
    in ``model`` so that a resume continues the optimisation exactly); :func:`load_spgnet` prefers
    them. Written to a temporary file and renamed, like every checkpoint."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    ckpt["ema_model"] = {k: v.detach().cpu() for k, v in ema.model.state_dict().items()}
    ckpt["ema_updates"] = ema.updates
    tmp = path.with_name(f".{path.name}.ema.tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)


def evaluate_spgnet(
    model: SPGNet,
    sequences: Sequence[PoseSequence],
    *,
    flip_test: bool = True,
    progress: bool = False,
    meta: dict | None = None,
    protocol: str = "videopose3d",
) -> tuple[EvaluationReport, dict[tuple[str, str, int], np.ndarray]]:
    """Per-action report of ``model`` on ``sequences`` (with per-joint and per-sequence
    breakdowns, :mod:`fastpose.evaluate`) and the predictions (root-relative, metres) keyed by
    (subject, sequence name, camera) -- the name is the action for Human3.6M-style data, the
    sequence's key for motion files."""
    model.eval()
    preds: dict[tuple[str, str, int], np.ndarray] = {}

    def predict(seq: PoseSequence) -> np.ndarray:
        pose = model.predict(seq.keypoints_2d, flip_test=flip_test).pose.float().cpu().numpy()  # (T, J, 3)
        preds[(seq.subject, getattr(seq, "name", "") or seq.action, seq.camera_index)] = pose
        return pose

    meta = {"model": "spgnet", "flip_test": flip_test, **(meta or {})}
    report = evaluate_sequences(sequences, predict, progress=progress, meta=meta, protocol=protocol)
    return report, preds


def load_spgnet(path: str | Path, device: str | torch.device = "cpu") -> tuple[SPGNet, dict]:
    """Build SPGNet from a checkpoint's architecture record and load its weights (eval mode)."""
    ckpt = common.load_checkpoint(path, expected_model="spgnet", map_location=device)
    model = SPGNet(SPGNetConfig.from_dict(ckpt["arch"])).to(device)
    # a run with weight averaging (ema_decay > 0) is evaluated with its averaged weights
    model.load_state_dict(ckpt.get("ema_model") or ckpt["model"])
    return model.eval(), ckpt


# ============================================================================================
# command line
# ============================================================================================
def config_from_args(args: argparse.Namespace) -> SPGNetTrainConfig:
    """The :class:`SPGNetTrainConfig` of parsed ``fastpose train spgnet`` flags (a bad combination
    raises :class:`fastpose.commands.CommandError`)."""
    try:
        return spgnet_config(args)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def load_data(args: argparse.Namespace | dict, subjects: Sequence[str], *, part: str = "train") -> list[PoseSequence]:
    """Lifting sequences of ``subjects`` from parsed data flags or a checkpoint's ``data_config``.

    ``part``: which part of a built-in or split motion set ("train", "test", "all"); the
    synthetic set and Human3.6M directories choose by subject alone.
    """
    dc = args if isinstance(args, dict) else data_config_from_args(args)
    syn = SyntheticConfig(seed=dc["synthetic_seed"], frames=dc["synthetic_frames"], noise_px=dc["noise_px"],
                          drop_prob=dc["synthetic_drop"])
    data = dc["data"]
    if data not in BUILTIN_DATA and not Path(data).exists():
        raise CommandError(f"--data: expected 'synthetic', 'cmu', 'synthetic+cmu', a Human3.6M directory or a motion "
                           f"file (.npz), received {data!r} (no such file or directory)")
    return load_sequences(data, subjects, keypoints=dc["keypoints"], actions=dc.get("actions"), synthetic=syn,
                          part=part, noise_px=dc["noise_px"], seed=dc["synthetic_seed"])


def _eval_sets(dc: dict, eval_on: Sequence[str]) -> list[tuple[str, dict, str, str]]:
    """(name, data config, part, description) of each held-out set evaluated after training.

    The training data's own held-out part comes first when it is a user's directory or motion
    file; then ``eval_on``: "synthetic" (the synthetic test subjects) and "cmu" (the built-in real
    motion's held-out part seen through the test subjects' cameras).
    """
    bad = [n for n in eval_on if n not in ("synthetic", "cmu")]
    if bad:
        raise CommandError(f"--eval-on: expected names from ['synthetic', 'cmu'], received {','.join(eval_on)!r}")
    subjects = ",".join(dc["test_subjects"])
    sets = []
    if dc["data"] not in BUILTIN_DATA:
        # a motion file: its "test" part when it has a split (else all of it); a directory: by subject
        sets.append(("data", dc, "test", f"{dc['data']}, held-out subjects {subjects}"))
    for name in eval_on:
        desc = {"synthetic": f"synthetic held-out subjects {subjects}",
                "cmu": f"real held-out CMU motion (test part) through the cameras of {subjects}"}[name]
        # an --actions filter names the training data's actions: it applies to this set only if the
        # training data includes it (Human3.6M names vs CMU motion categories such as "Walk")
        actions = dc.get("actions") if name in str(dc["data"]).split("+") else None
        sets.append((name, {**dc, "data": name, "actions": actions}, "test", desc))
    return sets


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def run(args: argparse.Namespace) -> int:
    """``fastpose train spgnet``: check the output, train, checkpoint, then evaluate every held-out set.

    A run stopped by ``--max-steps`` / ``--time-limit`` is evaluated too (and says so); Ctrl-C
    saves a resumable checkpoint and exits (status 130) without evaluating.
    """
    cfg = config_from_args(args)
    eval_sets = [] if args.no_eval else _eval_sets(cfg.data_config, args.eval_on)
    common.check_writable_dir(cfg.out_dir)
    common.refuse_to_overwrite(cfg.out_dir, cfg.resume, args.overwrite, "fastpose train spgnet")
    if cfg.resume:  # a wrong checkpoint or changed settings: said now, not after loading the data
        common.check_resume(cfg.resume, arch=cfg.model_config.to_dict(), config=asdict(cfg))
    rt = common.init_runtime(cfg.device)
    try:
        if rt.is_main and rt.device.type == "cpu" and cfg.channels >= PAPER_PRESET["channels"]:
            common.warn_paper_size_on_cpu(f"SPGNet with {cfg.channels} channels and batch {cfg.batch_size}",
                                          "fastpose train spgnet --preset demo")
        train_seqs = load_data(cfg.data_config, cfg.data_config["train_subjects"], part="train")
        result = train_spgnet(cfg, train_seqs, runtime=rt)
        if rt.is_main:
            print(f"checkpoint: {result.checkpoint}  ({result.frames_per_second:.0f} frames/s)")
            if not result.finished:
                print(f"note: training stopped early ({result.stop_reason}: step {result.global_step} of "
                      f"{result.steps_total}); evaluating the partly trained model")
            for i, (name, dc, part, desc) in enumerate(eval_sets):
                _evaluate_set(result, cfg, args, name, dc, part, desc, stem="evaluation" if i == 0 else
                              f"evaluation_{name}")
    finally:
        common.shutdown_runtime(rt)
    return 0


def _evaluate_set(result: TrainResult, cfg: SPGNetTrainConfig, args, name: str, dc: dict, part: str, desc: str,
                  stem: str) -> None:
    from ..data import DataError

    print(f"\n=== held-out: {desc}")
    try:
        seqs = load_data(dc, dc["test_subjects"], part=part)
    except (DataError, FileNotFoundError) as exc:  # e.g. no built-in real motion in this installation
        print(f"not evaluated: {exc}")
        return
    meta = {"checkpoint": str(result.checkpoint), "eval_set": name, "description": desc, **_data_meta(dc, part),
            "finished_schedule": result.finished, "stop_reason": result.stop_reason,
            "trained_steps": result.global_step, "schedule_steps": result.steps_total}
    report, _ = evaluate_spgnet(result.model, seqs, flip_test=not args.no_flip_test, progress=cfg.progress, meta=meta)
    print(report.table())
    pj, pm = report.save(cfg.out_dir, stem=stem)
    print(f"evaluation ({name}): {pj}, {pm}")


def _data_meta(dc: dict, part: str) -> dict:
    """What evaluation.json records about the data: source, part, keypoints, synthetic frames/seed, noise."""
    return {"data": dc["data"], "part": part, "keypoints": dc["keypoints"], "actions": dc.get("actions"),
            "subjects": list(dc["test_subjects"]), "synthetic_frames": dc["synthetic_frames"],
            "synthetic_seed": dc["synthetic_seed"], "noise_px": dc["noise_px"],
            "synthetic_drop": dc["synthetic_drop"]}


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Data flags of ``fastpose evaluate`` (every model; defaults: as the checkpoint was trained)."""
    from .args import add_evaluate_arguments as add

    add(parser)


def _checkpoint_data_config(ckpt: dict) -> dict:
    """The data the checkpoint was trained on (``train_config.data_config``); older checkpoints
    that do not record it read as the built-in synthetic set with the old defaults."""
    saved = ((ckpt.get("extra") or {}).get("train_config") or {}).get("data_config") or {}
    base = {"data": "synthetic", "keypoints": "gt", "actions": None, "synthetic_frames": 300, "synthetic_seed": 0,
            "noise_px": 0.0, "synthetic_drop": 0.0, "train_subjects": ["S1", "S5", "S6", "S7", "S8"],
            "test_subjects": list(TEST_SUBJECTS)}
    return {**base, **saved}


def evaluate_checkpoint_sets(args: argparse.Namespace, model: SPGNet | None = None
                             ) -> list[tuple[str, EvaluationReport]]:
    """``fastpose evaluate`` for an SPGNet checkpoint: [(name, report)] with per-action tables and
    per-joint / per-sequence breakdowns.

    The data is the checkpoint's (its ``data_config``) unless flags say otherwise; the built-in
    sources and split motion files are scored on their held-out ("test") part, one report per
    source ("synthetic+cmu": the synthetic test subjects, then the real CMU motion). ``--motion
    FILE`` scores a motion file (all of it, or ``--part``) through ``--subjects``' cameras.
    """
    from ..models import load_checkpoint

    if model is None:  # weights-only read: evaluating never unpickles arbitrary objects
        model = load_checkpoint(args.checkpoint, device=_resolve_device(args.device))
    info = getattr(model, "checkpoint_info", {})
    if info.get("model", "spgnet") != "spgnet":
        raise CommandError(f"--checkpoint {args.checkpoint}: a {info.get('model')!r} checkpoint, not an SPGNet one")
    dc = _checkpoint_data_config({"extra": {"train_config": info.get("train_config")}})
    trained_on = dc["data"]
    for key in ("data", "keypoints", "synthetic_frames", "synthetic_seed", "noise_px", "synthetic_drop"):
        if getattr(args, key, None) is not None:
            dc[key] = getattr(args, key)
    if args.actions is not None:
        dc["actions"] = list(args.actions)
    if args.motion is not None:
        dc["data"] = str(args.motion)
    if args.subjects is not None:
        dc["test_subjects"] = list(args.subjects)
    sources = ["synthetic", "cmu"] if dc["data"] == "synthetic+cmu" else [dc["data"]]
    reports = []
    for source in sources:
        # the training data's held-out part (a file without a split: all of it); --motion: all of the file
        part = args.part or ("all" if args.motion is not None else "test")
        sdc = {**dc, "data": source}
        if args.actions is None and source not in str(trained_on).split("+"):
            sdc["actions"] = None  # the training run's action filter names another data set's actions
        seqs = load_data(sdc, sdc["test_subjects"], part=part)
        meta = {"checkpoint": str(args.checkpoint), **_data_meta(sdc, part)}
        report, _ = evaluate_spgnet(model, seqs, flip_test=not args.no_flip_test, progress=True, meta=meta,
                                    protocol=args.protocol)
        reports.append((source if len(sources) > 1 else "", report))
    return reports


def evaluate_checkpoint(args: argparse.Namespace, model: SPGNet | None = None) -> EvaluationReport:
    """The first report of :func:`evaluate_checkpoint_sets` (the checkpoint's own held-out data)."""
    return evaluate_checkpoint_sets(args, model)[0][1]


def predict_for_figure(args: argparse.Namespace, seq: PoseSequence) -> np.ndarray:
    """``fastpose visualize`` for an SPGNet checkpoint: the root-relative prediction (T, J, 3)."""
    model, _ = load_spgnet(args.checkpoint, device="cpu")
    return model.predict(seq.keypoints_2d, flip_test=not args.no_flip_test).pose.numpy()
