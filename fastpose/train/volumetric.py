"""Training and evaluation of the volumetric image model (``fastpose train volumetric``).

The schedule of the paper (Tsai & Luo) is the default: Adam, learning rate 1e-3 divided by 10 at
epoch 11, 25 epochs, batch 32, colour jitter. Data:

* ``--data synthetic``: crops rendered on the fly in the DataLoader workers
  (:class:`fastpose.data.images.SyntheticImageDataset`) from the built-in synthetic motion of the
  training subjects (S1, S5-S8) seen by their calibrated cameras; every epoch draws fresh renders
  (``--train-samples`` per epoch). The test set renders the test subjects' motion (S9, S11)
  without augmentation, deterministically.
* ``--data PATH``: Human3.6M frames in the layout of :class:`fastpose.data.images.H36MImageDataset`
  (``PATH/data_3d_h36m.npz`` + ``PATH/images/<subject>/<action>.<camera>/<frame:06d>.jpg``).

One code path for one process and for ``torchrun`` (:mod:`fastpose.train.common`: DDP, a
``DistributedSampler`` shards the samples, rank 0 prints, checkpoints and evaluates). A run can
stop early (``max_steps``, ``time_limit``) and resume from its checkpoint mid-epoch with the
same batches. Ablations of the paper's Table II: ``--ablation A|A+B|A+C|A+B+C`` (or
``--no-volumetric-loss`` / ``--no-refinement``).

Evaluation (:func:`evaluate_volumetric`): predictions are back-projected to metres with the
ground-truth root depth (:meth:`VolumetricPoseNet.to_camera`) and scored on the 17 Human3.6M
joints (the added thorax, joint 17, is excluded) with the per-action Protocol #1/#2/#3 tables of
:mod:`fastpose.evaluate`. There is no MPJVE: consecutive samples of an action are unrelated
renders (synthetic) or frames ``--test-frame-stride`` apart (Human3.6M), not a video.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..commands import CommandError
from ..data.h36m import TEST_SUBJECTS, TRAIN_SUBJECTS
from ..data.images import H36MImageDataset, SyntheticImageDataset, synthetic_poses
from ..evaluate import ActionAccumulator, EvaluationReport
from ..models.volumetric import VolumetricConfig, VolumetricPoseNet
from . import common
from .args import add_evaluate_arguments as _add_evaluate_arguments
from .args import add_volumetric_arguments as add_arguments
from .args import volumetric_config
from .config import VOLUMETRIC_DEMO_PRESET, VolumetricTrainConfig

__all__ = [
    "VOLUMETRIC_DEMO_PRESET",
    "VolumetricTrainConfig",
    "VolumetricTrainResult",
    "add_arguments",
    "add_evaluate_arguments",
    "build_datasets",
    "config_from_args",
    "evaluate_checkpoint",
    "evaluate_volumetric",
    "load_pretrained_backbone",
    "read_pretrained",
    "load_volumetric",
    "run",
    "targets_from_batch",
    "train_volumetric",
]

_EVAL_JOINTS = tuple(range(17))  # joint 17 (thorax between the shoulders) is not evaluated
# MPJVE is left out: consecutive samples of an action are unrelated renders (synthetic) or frames
# --test-frame-stride apart (Human3.6M), so their "velocity" error measures nothing.
_EVAL_METRICS = ("mpjpe", "p_mpjpe", "n_mpjpe")


@dataclass
class VolumetricTrainResult:
    model: VolumetricPoseNet  # the plain (unwrapped) model, in eval mode
    history: list[dict] = field(default_factory=list)  # one dict per finished epoch
    step_losses: list[float] = field(default_factory=list)  # total loss of every step of this call
    checkpoint: Path | None = None
    finished: bool = False
    seconds: float = 0.0
    images_per_second: float = 0.0
    stop_reason: str = "finished"  # common.STOP_REASONS
    global_step: int = 0
    steps_total: int = 0


def build_datasets(cfg: VolumetricTrainConfig, train: bool = True, test: bool = True
                   ) -> tuple[Dataset | None, Dataset | None]:
    """(train, test) image datasets of ``cfg.data`` at the model's input size."""
    size = cfg.model_config.input_size
    train_ds = test_ds = None
    if cfg.data == "synthetic":
        if train:
            poses, actions = synthetic_poses(TRAIN_SUBJECTS, cfg.synthetic_seed, cfg.synthetic_frames,
                                             cfg.synthetic_stride)
            train_ds = SyntheticImageDataset(poses, actions, length=cfg.train_samples, seed=cfg.seed, size=size,
                                             augment=True, subjects=TRAIN_SUBJECTS)
        if test:
            poses, actions = synthetic_poses(TEST_SUBJECTS, cfg.synthetic_seed, cfg.synthetic_frames,
                                             cfg.synthetic_stride)
            test_ds = SyntheticImageDataset(poses, actions, length=cfg.test_samples, seed=cfg.seed + 1,
                                            size=size, augment=False, subjects=TEST_SUBJECTS)
    else:
        if train:
            train_ds = H36MImageDataset(cfg.data, TRAIN_SUBJECTS, frame_stride=cfg.frame_stride, size=size,
                                        augment=True, seed=cfg.seed)
        if test:
            test_ds = H36MImageDataset(cfg.data, TEST_SUBJECTS, frame_stride=cfg.test_frame_stride, size=size,
                                       augment=False)
    return train_ds, test_ds


def targets_from_batch(model: VolumetricPoseNet, batch: dict, device: torch.device) -> dict[str, torch.Tensor]:
    """Voxel ground truth and joint weights of a collated batch.

    weights (B, J): 1 for a joint inside the crop and inside the depth range of the volume, else 0
    (its Gaussian target would lie outside the heatmaps). The pose loss uses every joint.
    """
    j2 = batch["joints_2d"].to(device, non_blocking=True)
    j3 = batch["joints_3d"].to(device, non_blocking=True)
    vox = model.voxel_targets(j2, j3)
    d = model.config.depth
    in_depth = ((vox[..., 2] >= -0.5) & (vox[..., 2] <= d - 0.5)).float()
    weights = batch["visible"].to(device, non_blocking=True) * in_depth
    return {"joints_vox": vox, "weights": weights}


def _metric_poses(model: VolumetricPoseNet, out: dict, batch: dict, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted, ground truth) root-relative camera-frame poses in metres, (B, J, 3)."""
    j3 = batch["joints_3d"].to(device).float()
    r = model.config.root_joint
    pred = model.to_camera(out["pose"].float(), out["coords"][:, r].float(), j3[:, r, 2],
                           batch["camera"].to(device).float())
    return pred, j3 - j3[:, r : r + 1]


def read_pretrained(path: str | Path) -> dict:
    """The state dict of a torchvision-format ResNet-50 weights file (``--pretrained``).

    A missing, truncated or foreign file raises one clear ``FileNotFoundError`` / ``ValueError``
    naming ``--pretrained`` (not torch's unpickling messages). Read with ``weights_only=True``:
    a weights file holds tensors only, and nothing in it is executed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--pretrained {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises many types for a truncated or foreign file
        raise ValueError(f"--pretrained {path}: cannot be read as a torch state dict of tensors (truncated, or not "
                         f"a torchvision ResNet-50 .pth file?)") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"--pretrained {path}: expected a state dict (parameter name -> tensor), "
                         f"got {type(state).__name__}")
    return state


def load_pretrained_backbone(model: VolumetricPoseNet, path: str | Path) -> dict:
    """Initialise ``model``'s backbone from the file :func:`read_pretrained` reads; returns the
    backbone loader's report (``ignored`` keys). Weights of another network: one-line ValueError."""
    state = read_pretrained(path)
    try:
        return model.load_backbone_torchvision(state)
    except (KeyError, RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ValueError(f"--pretrained {path}: not ResNet-50 weights in torchvision's layout "
                         f"({type(exc).__name__}: {first})") from None


def train_volumetric(
    cfg: VolumetricTrainConfig,
    train_dataset: Dataset,
    *,
    runtime: common.Runtime | None = None,
    log: Callable[[str], None] = print,
) -> VolumetricTrainResult:
    """Train (or resume training of) the volumetric model on ``train_dataset`` (samples as in
    :mod:`fastpose.data.images`); see the module docstring. The loop is
    :func:`fastpose.train.common.run_training` (Ctrl-C: checkpoint, then KeyboardInterrupt)."""
    rt = runtime or common.init_runtime(cfg.device)
    common.seed_everything(cfg.seed)
    mcfg = cfg.model_config
    arch = {"model": "volumetric", **mcfg.to_dict()}
    model = VolumetricPoseNet(mcfg)
    if cfg.pretrained and not cfg.resume:
        report = load_pretrained_backbone(model, cfg.pretrained)
        if rt.is_main:
            log(f"backbone initialised from {cfg.pretrained} (ignored: {report['ignored']})")
    model.to(rt.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps_per_epoch = math.ceil(math.ceil(len(train_dataset) / rt.world_size) / cfg.batch_size)
    scheduler = common.make_lr_scheduler(optimizer, "step", steps_per_epoch, milestones=(cfg.lr_step_epoch - 1,),
                                         factor=cfg.lr_factor)
    scaler = common.make_grad_scaler(rt.device, cfg.amp)
    ckpt_path = Path(cfg.out_dir) / "checkpoint.pt"
    config = asdict(cfg)

    state = common.LoopState()
    if cfg.resume:
        state = common.resume_training(cfg.resume, arch=arch, config=config, model=model, optimizer=optimizer,
                                       scheduler=scheduler, scaler=scaler, rt=rt, steps_per_epoch=steps_per_epoch,
                                       log=log)

    net = common.wrap_model(model, rt, compile=cfg.compile)
    if rt.is_main:
        n_par = sum(p.numel() for p in model.parameters())
        log(f"VolumetricPoseNet {cfg.size} ({cfg.ablation}; {mcfg.input_size}px -> {mcfg.num_joints} x "
            f"{mcfg.depth} x {mcfg.heatmap_size}^2, {n_par / 1e6:.2f} M parameters) on {rt.device} "
            f"x{rt.world_size}; {len(train_dataset)} samples, {steps_per_epoch} steps/epoch, {cfg.epochs} epochs")

    def start_epoch(epoch: int) -> None:
        if hasattr(train_dataset, "set_epoch"):
            train_dataset.set_epoch(epoch)  # fresh renders / augmentation every epoch

    def loader_for_epoch(epoch: int, skip: int):
        # make_loader's private generator (seeded by seed and epoch) gives the workers their base
        # seed, so a resumed run (global RNG restored from the checkpoint) draws the same samples.
        return common.make_loader(train_dataset, cfg.batch_size, rt, seed=cfg.seed, shuffle=True, epoch=epoch,
                                  skip_batches=skip, num_workers=cfg.workers)

    def step(batch) -> common.StepOutput:
        images = batch["image"].to(rt.device, non_blocking=True)
        with torch.no_grad():
            targets = targets_from_batch(model, batch, rt.device)
        with common.autocast(rt.device, cfg.amp):
            out = net(images, targets)
        with torch.no_grad():
            pred, gt = _metric_poses(model, out, batch, rt.device)
            mpjpe = (pred - gt)[:, list(_EVAL_JOINTS)].norm(dim=-1).mean()
        terms = {"loss_2d": out["loss_2d"], "loss_3d": out["loss_3d"], "loss_pose": out["loss_pose"], "mpjpe": mpjpe}
        return common.StepOutput(out["loss"], terms, images.shape[0], images.shape[0])

    res = common.run_training(
        state=state, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch, net=net, model=model, optimizer=optimizer,
        scheduler=scheduler, scaler=scaler, rt=rt, loader_for_epoch=loader_for_epoch, step=step,
        keys=("loss", "loss_2d", "loss_3d", "loss_pose", "mpjpe"), checkpoint_path=ckpt_path, arch=arch,
        config=config, start_epoch=start_epoch,
        describe_epoch=lambda e, m: (f"epoch {e}: loss {m['loss']:.4f} (2D {m['loss_2d']:.2e}, 3D {m['loss_3d']:.2e}, "
                                     f"pose {m['loss_pose']:.2e})  train MPJPE {1000 * m['mpjpe']:.1f} mm"),
        postfix=lambda m: {"loss": f"{m['loss']:.4f}", "mpjpe": f"{1000 * m['mpjpe']:.1f}mm",
                           "lr": f"{scheduler.get_last_lr()[0]:.1e}"},
        checkpoint_every=cfg.checkpoint_every, max_steps=cfg.max_steps, time_limit=cfg.time_limit,
        progress=cfg.progress, resume_command="fastpose train volumetric <same flags> --resume", log=log,
    )
    model.eval()
    return VolumetricTrainResult(
        model=model, history=res.history, step_losses=res.step_losses, checkpoint=res.checkpoint,
        finished=res.finished, seconds=res.seconds, images_per_second=res.count * rt.world_size / max(res.seconds, 1e-9),
        stop_reason=res.stop_reason, global_step=res.state.global_step, steps_total=cfg.epochs * steps_per_epoch,
    )


@torch.no_grad()
def evaluate_volumetric(
    model: VolumetricPoseNet,
    dataset: Dataset,
    *,
    batch_size: int = 32,
    workers: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
    meta: dict | None = None,
) -> EvaluationReport:
    """Per-action Protocol #1/#2 report (mm) of ``model`` on an image dataset.

    Metric poses come from :meth:`VolumetricPoseNet.to_camera` with the ground-truth root depth;
    the 17 Human3.6M joints are scored (root-relative), the added thorax is not.
    """
    model.eval()
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    it = loader
    if progress:
        it = common.progress_bar(loader, desc="evaluate")
    preds: dict[str, list[torch.Tensor]] = {}
    gts: dict[str, list[torch.Tensor]] = {}
    for batch in it:
        out = model(batch["image"].to(dev))
        pred, gt = _metric_poses(model, out, batch, dev)
        for i, action in enumerate(batch["action"]):
            preds.setdefault(action, []).append(pred[i].cpu())
            gts.setdefault(action, []).append(gt[i].cpu())
    # One "sequence" per action, samples in dataset order (independent of the batch size).
    acc = ActionAccumulator(root=model.config.root_joint, joints=_EVAL_JOINTS, metrics=_EVAL_METRICS)
    for action in preds:
        acc.add(action, torch.stack(preds[action]), torch.stack(gts[action]))
    return acc.report({"model": "volumetric", **(meta or {})})


def load_volumetric(path: str | Path, device: str | torch.device = "cpu") -> tuple[VolumetricPoseNet, dict]:
    """Build the model from a checkpoint's architecture record and load its weights (eval mode)."""
    ckpt = common.load_checkpoint(path, expected_model="volumetric", map_location=device)
    arch = {k: v for k, v in ckpt["arch"].items() if k != "model"}
    model = VolumetricPoseNet(VolumetricConfig.from_dict(arch)).to(device)
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


# ============================================================================================
# command line
# ============================================================================================
def config_from_args(args: argparse.Namespace) -> VolumetricTrainConfig:
    """The :class:`VolumetricTrainConfig` of parsed ``fastpose train volumetric`` flags (a bad
    combination raises :class:`fastpose.commands.CommandError`)."""
    try:
        return volumetric_config(args)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    """``fastpose train volumetric``: check the output, train, checkpoint, then evaluate per action
    on the test subjects (also after a ``--max-steps`` / ``--time-limit`` stop, saying so)."""
    cfg = config_from_args(args)
    common.check_writable_dir(cfg.out_dir)
    common.refuse_to_overwrite(cfg.out_dir, cfg.resume, args.overwrite, "fastpose train volumetric")
    if cfg.pretrained and not cfg.resume:
        read_pretrained(cfg.pretrained)  # a bad file is reported now, not after building the data
    if cfg.resume:  # a wrong checkpoint or changed settings: said now, not after building the data
        common.check_resume(cfg.resume, arch={"model": "volumetric", **cfg.model_config.to_dict()},
                            config=asdict(cfg))
    rt = common.init_runtime(cfg.device)
    try:
        if rt.is_main and rt.device.type == "cpu" and cfg.size == "paper":
            common.warn_paper_size_on_cpu(f"the paper-size volumetric model ({cfg.train_samples} renders per epoch, "
                                          f"{cfg.epochs} epochs)", "fastpose train volumetric --preset demo")
        train_ds, _ = build_datasets(cfg, train=True, test=False)
        result = train_volumetric(cfg, train_ds, runtime=rt)
        if rt.is_main:
            print(f"checkpoint: {result.checkpoint}  ({result.images_per_second:.1f} images/s)")
            if not args.no_eval:
                if not result.finished:
                    print(f"note: training stopped early ({result.stop_reason}: step {result.global_step} of "
                          f"{result.steps_total}); evaluating the partly trained model")
                _, test_ds = build_datasets(cfg, train=False, test=True)
                meta = {"checkpoint": str(result.checkpoint), "ablation": cfg.ablation, **_data_meta(cfg),
                        "finished_schedule": result.finished, "stop_reason": result.stop_reason,
                        "trained_steps": result.global_step, "schedule_steps": result.steps_total}
                report = evaluate_volumetric(result.model, test_ds, batch_size=cfg.batch_size, workers=cfg.workers,
                                             progress=cfg.progress, meta=meta)
                print(report.table())
                pj, pm = report.save(cfg.out_dir)
                print(f"evaluation: {pj}, {pm}")
    finally:
        common.shutdown_runtime(rt)
    return 0


def _data_meta(cfg: VolumetricTrainConfig, subjects=TEST_SUBJECTS) -> dict:
    """What evaluation.json records about the test data (source, subjects, synthetic frames/seed ...)."""
    return {"data": cfg.data, "subjects": list(subjects), "synthetic_frames": cfg.synthetic_frames,
            "synthetic_stride": cfg.synthetic_stride, "synthetic_seed": cfg.synthetic_seed,
            "test_samples": cfg.test_samples, "test_frame_stride": cfg.test_frame_stride, "seed": cfg.seed}


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Data flags of ``fastpose evaluate`` (every model; defaults: as the checkpoint was trained)."""
    _add_evaluate_arguments(parser)


def evaluate_checkpoint(args: argparse.Namespace, model: VolumetricPoseNet | None = None) -> EvaluationReport:
    """``fastpose evaluate`` for a volumetric checkpoint: per-action Protocol #1-#3 report.

    By default the test data of the checkpoint's own run (its ``train_config``: the data source,
    synthetic frames / stride / seed, test renders and their seed), so the numbers reproduce the
    training run's evaluation; flags change single settings. No MPJVE (see :data:`_EVAL_METRICS`).
    """
    from ..models import load_checkpoint

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if model is None:  # weights-only read: evaluating never unpickles arbitrary objects
        model = load_checkpoint(args.checkpoint, device=device)
    info = getattr(model, "checkpoint_info", {})
    if info.get("model", "volumetric") != "volumetric":
        raise CommandError(f"--checkpoint {args.checkpoint}: a {info.get('model')!r} checkpoint, not a volumetric one")
    saved = dict(info.get("train_config") or {})
    known = {f for f in VolumetricTrainConfig.__dataclass_fields__}
    cfg = VolumetricTrainConfig(**{k: v for k, v in saved.items() if k in known and k != "override"})
    for key in ("data", "synthetic_frames", "synthetic_seed", "synthetic_stride", "test_samples", "test_frame_stride"):
        if getattr(args, key, None) is not None:
            setattr(cfg, key, getattr(args, key))
    subjects = tuple(args.subjects) if args.subjects else TEST_SUBJECTS
    size = model.config.input_size
    if cfg.data == "synthetic":
        poses, actions = synthetic_poses(subjects, cfg.synthetic_seed, cfg.synthetic_frames, cfg.synthetic_stride)
        dataset = SyntheticImageDataset(poses, actions, length=cfg.test_samples, seed=cfg.seed + 1, size=size,
                                        augment=False, subjects=subjects)
    else:
        dataset = H36MImageDataset(cfg.data, subjects, frame_stride=cfg.test_frame_stride, size=size, augment=False)
    return evaluate_volumetric(model, dataset, batch_size=args.eval_batch_size, workers=args.workers, device=device,
                               progress=True, meta={"checkpoint": str(args.checkpoint), **_data_meta(cfg, subjects)})
