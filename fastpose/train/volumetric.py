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
joints (the added thorax, joint 17, is excluded) with the per-action Protocol #1/#2 tables of
:mod:`fastpose.evaluate`. The MPJVE row of those tables compares consecutive samples of an
action in dataset order (Human3.6M: frames ``--test-frame-stride`` apart; synthetic: unrelated
renders), so it is not the video velocity error; read Protocols #1-#3.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..data.h36m import TEST_SUBJECTS, TRAIN_SUBJECTS
from ..data.images import H36MImageDataset, SyntheticImageDataset, synthetic_poses
from ..evaluate import ActionAccumulator, EvaluationReport
from ..models.volumetric import ABLATIONS, VolumetricConfig, VolumetricPoseNet, ablation_config
from . import common

__all__ = [
    "VolumetricTrainConfig",
    "VolumetricTrainResult",
    "add_arguments",
    "add_evaluate_arguments",
    "build_datasets",
    "config_from_args",
    "evaluate_checkpoint",
    "evaluate_volumetric",
    "load_volumetric",
    "run",
    "targets_from_batch",
    "train_volumetric",
]

_EVAL_JOINTS = tuple(range(17))  # joint 17 (thorax between the shoulders) is not evaluated
_SIZES = {"paper": VolumetricConfig(), "tiny": VolumetricConfig.tiny()}


@dataclass
class VolumetricTrainConfig:
    """Everything that defines a training run (the CLI flags map one to one)."""

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

    def __post_init__(self) -> None:
        if self.size not in _SIZES:
            raise ValueError(f"VolumetricTrainConfig: size must be one of {list(_SIZES)}, got {self.size!r}")
        if self.ablation.upper().replace(" ", "") not in ABLATIONS:
            raise ValueError(f"VolumetricTrainConfig: ablation must be one of {list(ABLATIONS)}, got {self.ablation!r}")
        for name in ("train_samples", "test_samples", "epochs", "batch_size", "synthetic_stride",
                     "frame_stride", "test_frame_stride", "lr_step_epoch"):
            if getattr(self, name) < 1:
                raise ValueError(f"VolumetricTrainConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ValueError(f"VolumetricTrainConfig: workers must be >= 0, got {self.workers}")

    @property
    def model_config(self) -> VolumetricConfig:
        return ablation_config(self.ablation, _SIZES[self.size]).replace(depth_range=self.depth_range)


@dataclass
class VolumetricTrainResult:
    model: VolumetricPoseNet  # the plain (unwrapped) model, in eval mode
    history: list[dict] = field(default_factory=list)  # one dict per finished epoch
    step_losses: list[float] = field(default_factory=list)  # total loss of every step of this call
    checkpoint: Path | None = None
    finished: bool = False
    seconds: float = 0.0
    images_per_second: float = 0.0


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


def train_volumetric(
    cfg: VolumetricTrainConfig,
    train_dataset: Dataset,
    *,
    runtime: common.Runtime | None = None,
    log: Callable[[str], None] = print,
) -> VolumetricTrainResult:
    """Train (or resume training of) the volumetric model on ``train_dataset`` (samples as in
    :mod:`fastpose.data.images`); see the module docstring."""
    rt = runtime or common.init_runtime(cfg.device)
    common.seed_everything(cfg.seed)
    mcfg = cfg.model_config
    arch = {"model": "volumetric", **mcfg.to_dict()}
    model = VolumetricPoseNet(mcfg)
    if cfg.pretrained:
        report = model.load_backbone_torchvision(torch.load(cfg.pretrained, map_location="cpu"))
        if rt.is_main:
            log(f"backbone initialised from {cfg.pretrained} (ignored: {report['ignored']})")
    model.to(rt.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps_per_epoch = math.ceil(math.ceil(len(train_dataset) / rt.world_size) / cfg.batch_size)
    scheduler = common.make_lr_scheduler(optimizer, "step", steps_per_epoch, milestones=(cfg.lr_step_epoch - 1,),
                                         factor=cfg.lr_factor)
    scaler = common.make_grad_scaler(rt.device, cfg.amp)
    ckpt_path = Path(cfg.out_dir) / "checkpoint.pt"

    epoch, step_in_epoch, global_step = 0, 0, 0
    history: list[dict] = []
    if cfg.resume:
        ckpt = common.load_checkpoint(cfg.resume, expected_arch=arch, map_location=rt.device)
        prog = common.restore_training_state(ckpt, model, optimizer, scheduler, scaler)
        epoch, step_in_epoch, global_step = prog["epoch"], prog["step_in_epoch"], prog["global_step"]
        history = list(ckpt.get("extra", {}).get("history", []))
        if rt.is_main:
            log(f"resumed from {cfg.resume}: epoch {epoch + 1}, step {step_in_epoch} of {steps_per_epoch}")

    net = common.wrap_model(model, rt, compile=cfg.compile)
    if rt.is_main:
        n_par = sum(p.numel() for p in model.parameters())
        log(f"VolumetricPoseNet {cfg.size} ({cfg.ablation}; {mcfg.input_size}px -> {mcfg.num_joints} x "
            f"{mcfg.depth} x {mcfg.heatmap_size}^2, {n_par / 1e6:.2f} M parameters) on {rt.device} "
            f"x{rt.world_size}; {len(train_dataset)} samples, {steps_per_epoch} steps/epoch, {cfg.epochs} epochs")

    def save(reason: str) -> Path:
        progress = {"epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step}
        extra = {"history": history, "train_config": common.jsonable(asdict(cfg)), "reason": reason}
        return common.save_checkpoint(ckpt_path, arch=arch, model=model, optimizer=optimizer,
                                      scheduler=scheduler, scaler=scaler, progress=progress, extra=extra)

    keys = ("loss", "loss_2d", "loss_3d", "loss_pose", "mpjpe")
    step_losses: list[torch.Tensor] = []
    t0 = time.perf_counter()
    images_seen = 0
    stopped = False
    while epoch < cfg.epochs and not stopped:
        if hasattr(train_dataset, "set_epoch"):
            train_dataset.set_epoch(epoch)  # fresh renders / augmentation every epoch
        loader = common.make_loader(train_dataset, cfg.batch_size, rt, seed=cfg.seed, shuffle=True, epoch=epoch,
                                    skip_batches=step_in_epoch, num_workers=cfg.workers)
        # The iterator draws its base seed from this generator instead of the global RNG, so a
        # resumed run (global RNG restored from the checkpoint) draws the same dropout masks.
        loader.generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        net.train()
        sums = dict.fromkeys(keys, 0.0)
        n_seen = 0
        bar = common.progress_bar(loader, total=steps_per_epoch, initial=step_in_epoch,
                                  desc=f"epoch {epoch + 1}/{cfg.epochs}", enabled=rt.is_main and cfg.progress)
        for batch in bar:
            images = batch["image"].to(rt.device, non_blocking=True)
            with torch.no_grad():
                targets = targets_from_batch(model, batch, rt.device)
            with common.autocast(rt.device, cfg.amp):
                out = net(images, targets)
            loss = out["loss"]
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step_in_epoch += 1
            global_step += 1
            b = images.shape[0]
            n_seen += b
            images_seen += b
            step_losses.append(loss.detach())
            with torch.no_grad():
                pred, gt = _metric_poses(model, out, batch, rt.device)
                mpjpe = (pred - gt)[:, list(_EVAL_JOINTS)].norm(dim=-1).mean()
            common.accumulate(sums, {"loss": loss, "loss_2d": out["loss_2d"], "loss_3d": out["loss_3d"],
                                     "loss_pose": out["loss_pose"], "mpjpe": mpjpe}, b)
            if step_in_epoch % 10 == 0 or step_in_epoch == steps_per_epoch:
                bar.set_postfix(loss=f"{sums['loss'] / n_seen:.4f}", mpjpe=f"{1000 * sums['mpjpe'] / n_seen:.1f}mm",
                                lr=f"{scheduler.get_last_lr()[0]:.1e}")
            if cfg.checkpoint_every and global_step % cfg.checkpoint_every == 0 and rt.is_main:
                save("periodic")
            over_time = cfg.time_limit is not None and time.perf_counter() - t0 > 60 * cfg.time_limit
            if (cfg.max_steps is not None and global_step >= cfg.max_steps) or over_time:
                stopped = step_in_epoch < steps_per_epoch or epoch + 1 < cfg.epochs
                if stopped:
                    break
        bar.close()
        if not stopped or step_in_epoch >= steps_per_epoch:
            means = {k: common.all_reduce_mean(v / max(n_seen, 1), rt) for k, v in sums.items()}
            history.append({"epoch": epoch + 1, **means, "lr": scheduler.get_last_lr()[0],
                            "seconds": time.perf_counter() - t0})
            if rt.is_main:
                log(f"epoch {epoch + 1}: loss {means['loss']:.4f} (2D {means['loss_2d']:.2e}, 3D "
                    f"{means['loss_3d']:.2e}, pose {means['loss_pose']:.2e})  train MPJPE "
                    f"{1000 * means['mpjpe']:.1f} mm")
            epoch += 1
            step_in_epoch = 0
            stopped = stopped and epoch < cfg.epochs
        if rt.is_main:
            save("stopped" if stopped else "epoch")
    seconds = time.perf_counter() - t0
    if stopped and rt.is_main:
        log(f"stopped at epoch {epoch + 1}, step {step_in_epoch} (max_steps/time_limit); "
            f"resume with --resume {ckpt_path}")
    model.eval()
    return VolumetricTrainResult(
        model=model,
        history=history,
        step_losses=[float(v) for v in step_losses],
        checkpoint=ckpt_path if rt.is_main else None,
        finished=not stopped,
        seconds=seconds,
        images_per_second=images_seen * rt.world_size / max(seconds, 1e-9),
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
    acc = ActionAccumulator(root=model.config.root_joint, joints=_EVAL_JOINTS)
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
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``fastpose train volumetric``."""
    d = VolumetricTrainConfig()
    g = parser.add_argument_group("data")
    g.add_argument("--data", default=d.data,
                   help="'synthetic' (rendered on the fly) or a Human3.6M directory: data_3d_h36m.npz + "
                        "images/<subject>/<action>.<camera>/<frame:06d>.jpg")
    g.add_argument("--train-samples", type=int, default=d.train_samples, help="synthetic renders per epoch")
    g.add_argument("--test-samples", type=int, default=d.test_samples, help="synthetic test renders")
    g.add_argument("--synthetic-frames", type=int, default=d.synthetic_frames,
                   help="mean frames per synthetic motion sequence")
    g.add_argument("--synthetic-stride", type=int, default=d.synthetic_stride,
                   help="keep every N-th synthetic motion frame as a pose")
    g.add_argument("--synthetic-seed", type=int, default=d.synthetic_seed)
    g.add_argument("--frame-stride", type=int, default=d.frame_stride, help="Human3.6M: every N-th training frame")
    g.add_argument("--test-frame-stride", type=int, default=d.test_frame_stride,
                   help="Human3.6M: every N-th test frame")
    g.add_argument("--workers", type=int, default=d.workers, help="DataLoader worker processes (rendering)")
    g = parser.add_argument_group("model")
    g.add_argument("--size", choices=sorted(_SIZES), default=d.size,
                   help="'paper': 256x256 ResNet-50, 64^3 volumes; 'tiny': 64x64, for CPU checks")
    g.add_argument("--ablation", choices=list(ABLATIONS), default=d.ablation,
                   help="paper Table II: A baseline, B volumetric heatmap loss, C refinement block")
    g.add_argument("--no-volumetric-loss", action="store_true", help="drop B from --ablation")
    g.add_argument("--no-refinement", action="store_true", help="drop C from --ablation")
    g.add_argument("--depth-range", type=float, default=d.depth_range,
                   help="metres of root-relative depth covered by the volume's D bins")
    g.add_argument("--pretrained", default=None, help="torchvision-format ResNet-50 weights (.pth) for the backbone")
    g = parser.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=d.epochs)
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--lr", type=float, default=d.lr)
    g.add_argument("--lr-step-epoch", type=int, default=d.lr_step_epoch,
                   help="1-based epoch from which the learning rate is multiplied by --lr-factor")
    g.add_argument("--lr-factor", type=float, default=d.lr_factor)
    common.add_run_arguments(g, d)
    g = common.add_run_group(parser, d)


def config_from_args(args: argparse.Namespace) -> VolumetricTrainConfig:
    flags = dict(ABLATIONS[args.ablation])
    if args.no_volumetric_loss:
        flags["volumetric_loss"] = False
    if args.no_refinement:
        flags["refinement"] = False
    ablation = next(name for name, f in ABLATIONS.items() if f == flags)
    try:
        return VolumetricTrainConfig(
            size=args.size, ablation=ablation, depth_range=args.depth_range, pretrained=args.pretrained,
            data=args.data, train_samples=args.train_samples, test_samples=args.test_samples,
            synthetic_frames=args.synthetic_frames, synthetic_stride=args.synthetic_stride,
            synthetic_seed=args.synthetic_seed, frame_stride=args.frame_stride,
            test_frame_stride=args.test_frame_stride, workers=args.workers, epochs=args.epochs,
            batch_size=args.batch_size, lr=args.lr, lr_step_epoch=args.lr_step_epoch, lr_factor=args.lr_factor,
            seed=args.seed, amp=args.amp, compile=args.compile, device=args.device, out_dir=args.out,
            resume=args.resume, checkpoint_every=args.checkpoint_every, max_steps=args.max_steps,
            time_limit=args.time_limit, progress=not args.no_progress,
        )
    except ValueError as exc:
        raise SystemExit(f"fastpose train volumetric: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    """``fastpose train volumetric``: train, checkpoint, then evaluate per action on the test subjects."""
    cfg = config_from_args(args)
    rt = common.init_runtime(cfg.device)
    try:
        train_ds, _ = build_datasets(cfg, train=True, test=False)
        result = train_volumetric(cfg, train_ds, runtime=rt)
        if rt.is_main:
            print(f"checkpoint: {result.checkpoint}  ({result.images_per_second:.1f} images/s)")
            if not args.no_eval and result.finished:
                _, test_ds = build_datasets(cfg, train=False, test=True)
                report = evaluate_volumetric(result.model, test_ds, batch_size=cfg.batch_size, workers=cfg.workers,
                                             progress=cfg.progress, meta={"checkpoint": str(result.checkpoint),
                                                                          "ablation": cfg.ablation,
                                                                          "data": cfg.data})
                print(report.table())
                pj, pm = report.save(cfg.out_dir)
                print(f"evaluation: {pj}, {pm}")
    finally:
        common.shutdown_runtime(rt)
    return 0


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Data flags of ``fastpose evaluate`` for a volumetric checkpoint.

    ``--data``, ``--subjects``, ``--synthetic-frames`` and ``--synthetic-seed`` mean what they
    mean for SPGNet (the evaluate parser resolves the shared names); the others are the image
    model's: how many synthetic renders, which Human3.6M frames, the batch and the workers.
    """
    parser.add_argument("--data", default="synthetic",
                        help="'synthetic' or a Human3.6M directory (SPGNet: data_3d_h36m.npz + data_2d_h36m_<kp>.npz; "
                             "volumetric: data_3d_h36m.npz + images/<subject>/<action>.<camera>/<frame:06d>.jpg)")
    parser.add_argument("--subjects", default=",".join(TEST_SUBJECTS), help="subjects to evaluate")
    parser.add_argument("--synthetic-frames", type=int, default=300, help="mean frames per synthetic sequence")
    parser.add_argument("--synthetic-seed", type=int, default=0)
    parser.add_argument("--synthetic-stride", type=int, default=2,
                        help="volumetric: keep every N-th synthetic motion frame as a pose")
    parser.add_argument("--test-samples", type=int, default=2_000, help="volumetric: synthetic test renders")
    parser.add_argument("--test-frame-stride", type=int, default=64, help="volumetric: every N-th Human3.6M frame")
    parser.add_argument("--eval-batch-size", type=int, default=32, help="volumetric: images per forward pass")
    parser.add_argument("--workers", type=int, default=4, help="volumetric: DataLoader worker processes")


def evaluate_checkpoint(args: argparse.Namespace) -> EvaluationReport:
    """``fastpose evaluate`` for a volumetric checkpoint: per-action report on ``args.subjects``.

    Synthetic data reproduces the training run's test renders (same seed) for the given subjects.
    """
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    model, ckpt = load_volumetric(args.checkpoint, device=device)
    subjects = tuple(s for s in args.subjects.split(",") if s)
    size = model.config.input_size
    if args.data == "synthetic":
        seed = int(ckpt.get("extra", {}).get("train_config", {}).get("seed", 0)) + 1
        poses, actions = synthetic_poses(subjects, args.synthetic_seed, args.synthetic_frames, args.synthetic_stride)
        dataset = SyntheticImageDataset(poses, actions, length=args.test_samples, seed=seed, size=size,
                                        augment=False, subjects=subjects)
    else:
        dataset = H36MImageDataset(args.data, subjects, frame_stride=args.test_frame_stride, size=size, augment=False)
    return evaluate_volumetric(model, dataset, batch_size=args.eval_batch_size, workers=args.workers, device=device,
                               progress=True, meta={"checkpoint": str(args.checkpoint), "data": str(args.data),
                                                    "subjects": list(subjects)})

