"""Training and evaluation of SPGNet (``fastpose train spgnet``, ``fastpose evaluate``).

The schedule of the paper: Adam, learning rate 1e-3 decaying exponentially (x0.95 per epoch,
applied smoothly per step), batch 1024 single-frame windows through the strided model,
horizontal flip augmentation, BatchNorm momentum decaying from 0.1 to 0.001 over the run (as
in VideoPose3D). One code path for one process and for ``torchrun`` (DDP, a
``DistributedSampler`` shards the windows; rank 0 prints, checkpoints and evaluates).

A run can stop early (``max_steps``, ``time_limit``) and be resumed from its checkpoint:
the sampler order and flips depend only on (seed, epoch), the checkpoint holds the model,
optimizer, scheduler, grad-scaler and RNG states and the position inside the epoch, so a
resumed run continues with exactly the losses of an uninterrupted one.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data import TEST_SUBJECTS, TRAIN_SUBJECTS, PoseSequence, SyntheticConfig, WindowDataset, load_sequences
from ..evaluate import EvaluationReport, evaluate_sequences
from ..models.spgnet import SPGNet, SPGNetConfig, SPGNetLossWeights, spgnet_loss
from . import common

__all__ = [
    "SPGNetTrainConfig",
    "TrainResult",
    "add_arguments",
    "add_evaluate_arguments",
    "evaluate_checkpoint",
    "evaluate_spgnet",
    "load_spgnet",
    "predict_for_figure",
    "run",
    "train_spgnet",
]

_BN_MOMENTUM = (0.1, 0.001)  # initial, final (VideoPose3D)


@dataclass
class SPGNetTrainConfig:
    """Everything that defines a training run (the CLI flags map one to one)."""

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

    @property
    def model_config(self) -> SPGNetConfig:
        return SPGNetConfig(filter_widths=tuple(self.filter_widths), channels=self.channels,
                            dropout=self.dropout, trajectory=self.trajectory)

    @property
    def loss_weights(self) -> SPGNetLossWeights:
        return SPGNetLossWeights(self.loss_pose, self.loss_trajectory, self.loss_reprojection, self.loss_bone)


@dataclass
class TrainResult:
    model: SPGNet  # the plain (unwrapped) model, in eval mode
    history: list[dict] = field(default_factory=list)  # one dict per finished epoch
    step_losses: list[float] = field(default_factory=list)  # total loss of every step of this call
    checkpoint: Path | None = None
    finished: bool = False  # all epochs done (False: stopped by max_steps/time_limit)
    seconds: float = 0.0
    frames_per_second: float = 0.0


def train_spgnet(
    cfg: SPGNetTrainConfig,
    train_sequences: Sequence[PoseSequence],
    *,
    runtime: common.Runtime | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train (or resume training of) SPGNet on ``train_sequences``; see the module docstring."""
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
    out_dir = Path(cfg.out_dir)
    ckpt_path = out_dir / "checkpoint.pt"

    epoch, step_in_epoch, global_step = 0, 0, 0
    history: list[dict] = []
    resumed_sums: dict | None = None  # running sums of an epoch interrupted by a checkpoint
    if cfg.resume:
        ckpt = common.load_checkpoint(cfg.resume, expected_arch=mcfg.to_dict(), map_location=rt.device)
        prog = common.restore_training_state(ckpt, model, optimizer, scheduler, scaler)
        epoch, step_in_epoch, global_step = prog["epoch"], prog["step_in_epoch"], prog["global_step"]
        resumed_sums = prog.get("epoch_sums")
        history = list(ckpt.get("extra", {}).get("history", []))
        if rt.is_main:
            log(f"resumed from {cfg.resume}: epoch {epoch + 1}, step {step_in_epoch} of {steps_per_epoch}")

    net = common.wrap_model(model, rt, compile=cfg.compile)
    pad = mcfg.receptive_field // 2
    if rt.is_main:
        n_par = sum(p.numel() for p in model.parameters())
        log(f"SPGNet {list(mcfg.filter_widths)} (receptive field {mcfg.receptive_field}, {mcfg.channels} channels, "
            f"{n_par / 1e6:.2f} M parameters) on {rt.device} x{rt.world_size}; {len(dataset)} windows, "
            f"{steps_per_epoch} steps/epoch, {cfg.epochs} epochs")

    def save(reason: str) -> Path:
        progress = {"epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
                    "epoch_sums": ({**{k: float(v) for k, v in sums.items()}, "n_seen": n_seen}
                                   if step_in_epoch else None)}
        extra = {"history": history, "train_config": common.jsonable(asdict(cfg)), "reason": reason}
        return common.save_checkpoint(ckpt_path, arch=mcfg.to_dict(), model=model, optimizer=optimizer,
                                      scheduler=scheduler, scaler=scaler, progress=progress, extra=extra)

    step_losses: list[torch.Tensor] = []
    t0 = time.perf_counter()
    frames_seen = 0
    stopped = False
    while epoch < cfg.epochs:
        dataset.set_epoch(epoch)
        mom = _BN_MOMENTUM[0] * math.exp(-epoch / cfg.epochs * math.log(_BN_MOMENTUM[0] / _BN_MOMENTUM[1]))
        model.set_bn_momentum(mom)
        loader = common.make_loader(dataset, cfg.batch_size, rt, seed=cfg.seed, shuffle=True, epoch=epoch,
                                    skip_batches=step_in_epoch)
        net.train()
        sums = dict.fromkeys(("loss", "pose", "trajectory", "reprojection", "bone"), 0.0)
        n_seen = 0
        if resumed_sums is not None and step_in_epoch:  # continue this epoch's running means
            n_seen = resumed_sums.pop("n_seen")
            sums.update(resumed_sums)
        resumed_sums = None
        bar = common.progress_bar(loader, total=steps_per_epoch, initial=step_in_epoch,
                                  desc=f"epoch {epoch + 1}/{cfg.epochs}", enabled=rt.is_main and cfg.progress)
        for batch in bar:
            kp = batch["keypoints_2d"].to(rt.device, non_blocking=True)  # (B, R + k - 1, J, 2)
            gt = batch["positions_3d"].to(rt.device, non_blocking=True)  # (B, k, J, 3)
            cam = batch["camera"].to(rt.device, non_blocking=True)  # (B, 9)
            with common.autocast(rt.device, cfg.amp):
                out = net(kp, strided=True)
            # the loss is computed in float32 outside autocast; its 2D term compares the
            # re-projection with the input keypoints of the k output frames
            loss, terms = spgnet_loss(out, gt, kp[:, pad : pad + frames_out], cam, weights)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step_in_epoch += 1
            global_step += 1
            b = kp.shape[0]
            n_seen += b
            frames_seen += b * frames_out
            step_losses.append(loss.detach())
            common.accumulate(sums, {"loss": loss, **terms}, b)
            if step_in_epoch % 10 == 0 or step_in_epoch == steps_per_epoch:
                bar.set_postfix(loss=f"{sums['loss'] / n_seen:.4f}", mpjpe=f"{1000 * sums['pose'] / n_seen:.1f}mm",
                                lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if cfg.checkpoint_every and global_step % cfg.checkpoint_every == 0 and rt.is_main:
                save("periodic")
            over_time = cfg.time_limit is not None and time.perf_counter() - t0 > 60 * cfg.time_limit
            if cfg.time_limit is not None:
                over_time = common.any_rank(over_time, rt)  # every rank stops at the same step
            if (cfg.max_steps is not None and global_step >= cfg.max_steps) or over_time:
                stopped = True
                break
        bar.close()
        if step_in_epoch >= steps_per_epoch:  # the epoch is complete
            means = {k: common.all_reduce_mean(v / max(n_seen, 1), rt) for k, v in sums.items()}
            history.append({"epoch": epoch + 1, **means, "lr": scheduler.get_last_lr()[0],
                            "seconds": time.perf_counter() - t0})
            if rt.is_main:
                log(f"epoch {epoch + 1}: loss {means['loss']:.4f}  pose MPJPE {1000 * means['pose']:.1f} mm  "
                    f"traj {1000 * means['trajectory']:.1f} mm  2D {means['reprojection']:.4f}  "
                    f"bone {1000 * means['bone']:.2f} mm")
            epoch += 1
            step_in_epoch = 0
        if rt.is_main:
            save("stopped" if stopped else "epoch")
        if stopped:
            break
    seconds = time.perf_counter() - t0
    finished = epoch >= cfg.epochs
    if not finished and rt.is_main:
        log(f"stopped at epoch {epoch + 1}, step {step_in_epoch} of {steps_per_epoch} (max_steps/time_limit); "
            f"resume with --resume {ckpt_path}")
    model.eval()
    return TrainResult(
        model=model,
        history=history,
        step_losses=[float(v) for v in step_losses],
        checkpoint=ckpt_path if rt.is_main else None,
        finished=finished,
        seconds=seconds,
        frames_per_second=frames_seen * rt.world_size / max(seconds, 1e-9),
    )


def evaluate_spgnet(
    model: SPGNet,
    sequences: Sequence[PoseSequence],
    *,
    flip_test: bool = True,
    progress: bool = False,
    meta: dict | None = None,
) -> tuple[EvaluationReport, dict[tuple[str, str, int], np.ndarray]]:
    """Per-action report of ``model`` on ``sequences`` and the predictions (root-relative, metres)
    keyed by (subject, action, camera)."""
    model.eval()
    preds: dict[tuple[str, str, int], np.ndarray] = {}

    def predict(seq: PoseSequence) -> np.ndarray:
        pose = model.predict(seq.keypoints_2d, flip_test=flip_test).pose.float().cpu().numpy()  # (T, J, 3)
        preds[(seq.subject, seq.action, seq.camera_index)] = pose
        return pose

    meta = {"model": "spgnet", "flip_test": flip_test, **(meta or {})}
    report = evaluate_sequences(sequences, predict, progress=progress, meta=meta)
    return report, preds


def load_spgnet(path: str | Path, device: str | torch.device = "cpu") -> tuple[SPGNet, dict]:
    """Build SPGNet from a checkpoint's architecture record and load its weights (eval mode)."""
    ckpt = common.load_checkpoint(path, expected_model="spgnet", map_location=device)
    model = SPGNet(SPGNetConfig.from_dict(ckpt["arch"])).to(device)
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


# ============================================================================================
# command line
# ============================================================================================
def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """--data/--keypoints/--synthetic-* (shared by train, evaluate, visualize)."""
    g = parser.add_argument_group("data")
    g.add_argument("--data", default="synthetic",
                   help="'synthetic' (built-in, generated in memory) or a directory with data_3d_h36m.npz "
                        "and data_2d_h36m_<keypoints>.npz (VideoPose3D layout)")
    g.add_argument("--keypoints", default="gt", help="2D detections name: data_2d_h36m_<keypoints>.npz")
    g.add_argument("--actions", default=None, help="comma-separated action groups (default: all)")
    g.add_argument("--synthetic-frames", type=int, default=300, help="mean frames per synthetic sequence")
    g.add_argument("--synthetic-seed", type=int, default=0)
    g.add_argument("--synthetic-noise", type=float, default=0.0, help="2D noise std in pixels (synthetic)")
    g.add_argument("--synthetic-drop", type=float, default=0.0, help="dropped-joint probability (synthetic)")


def load_data(args: argparse.Namespace, subjects: Sequence[str]) -> list[PoseSequence]:
    syn = SyntheticConfig(seed=args.synthetic_seed, frames=args.synthetic_frames,
                          noise_px=args.synthetic_noise, drop_prob=args.synthetic_drop)
    actions = args.actions.split(",") if args.actions else None
    return load_sequences(args.data, subjects, keypoints=args.keypoints, actions=actions, synthetic=syn)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``fastpose train spgnet``."""
    d = SPGNetTrainConfig()
    add_data_arguments(parser)
    parser.add_argument("--train-subjects", default=",".join(TRAIN_SUBJECTS))
    parser.add_argument("--test-subjects", default=",".join(TEST_SUBJECTS))
    g = parser.add_argument_group("model")
    g.add_argument("--arch", default="3,3,3", help="filter widths: 3,3,3 (27 frames), 3,3,3,3 (81), "
                                                   "3,3,3,3,3 (243)")
    g.add_argument("--channels", type=int, default=d.channels)
    g.add_argument("--dropout", type=float, default=d.dropout)
    g.add_argument("--no-trajectory", action="store_true", help="no global-position head (and no 2D loss)")
    g = parser.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=d.epochs)
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--lr", type=float, default=d.lr)
    g.add_argument("--lr-decay", type=float, default=d.lr_decay, help="exponential decay per epoch")
    g.add_argument("--frame-stride", type=int, default=d.frame_stride, help="train on every N-th frame")
    g.add_argument("--no-flip", action="store_true", help="no horizontal flip augmentation")
    g.add_argument("--loss-weights", default="1,0.1,0.1,0.1",
                   help="pose,trajectory,reprojection,bone weights of the loss terms")
    common.add_run_arguments(g, d)
    g = common.add_run_group(parser, d)
    g.add_argument("--no-flip-test", action="store_true", help="no test-time flip augmentation")


def config_from_args(args: argparse.Namespace) -> SPGNetTrainConfig:
    try:
        widths = tuple(int(w) for w in args.arch.split(","))
        lw = [float(w) for w in args.loss_weights.split(",")]
    except ValueError as exc:
        raise SystemExit(f"fastpose train spgnet: --arch/--loss-weights must be comma-separated numbers: {exc}") from None
    if len(lw) != 4:
        raise SystemExit(f"fastpose train spgnet: --loss-weights needs 4 values (pose,trajectory,reprojection,"
                         f"bone), got {args.loss_weights!r}")
    return SPGNetTrainConfig(
        filter_widths=widths, channels=args.channels, dropout=args.dropout, trajectory=not args.no_trajectory,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_decay=args.lr_decay,
        frame_stride=args.frame_stride, flip=not args.no_flip, loss_pose=lw[0], loss_trajectory=lw[1],
        loss_reprojection=lw[2], loss_bone=lw[3], seed=args.seed, amp=args.amp, compile=args.compile,
        device=args.device, out_dir=args.out, resume=args.resume, checkpoint_every=args.checkpoint_every,
        max_steps=args.max_steps, time_limit=args.time_limit, progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> int:
    """``fastpose train spgnet``: train, checkpoint, then evaluate per action on the test subjects."""
    cfg = config_from_args(args)
    rt = common.init_runtime(cfg.device)
    try:
        train_seqs = load_data(args, args.train_subjects.split(","))
        result = train_spgnet(cfg, train_seqs, runtime=rt)
        if rt.is_main:
            print(f"checkpoint: {result.checkpoint}  ({result.frames_per_second:.0f} frames/s)")
            if not args.no_eval and result.finished:
                test_seqs = load_data(args, args.test_subjects.split(","))
                report, _ = evaluate_spgnet(result.model, test_seqs, flip_test=not args.no_flip_test,
                                            progress=cfg.progress, meta={"checkpoint": str(result.checkpoint)})
                print(report.table())
                pj, pm = report.save(cfg.out_dir)
                print(f"evaluation: {pj}, {pm}")
    finally:
        common.shutdown_runtime(rt)
    return 0


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Data flags of ``fastpose evaluate`` / ``fastpose visualize`` for an SPGNet checkpoint."""
    add_data_arguments(parser)
    parser.add_argument("--subjects", default=",".join(TEST_SUBJECTS), help="subjects to evaluate")


def evaluate_checkpoint(args: argparse.Namespace) -> EvaluationReport:
    """``fastpose evaluate`` for an SPGNet checkpoint: per-action report on ``args.subjects``."""
    model, _ = load_spgnet(args.checkpoint, device=args.device if args.device != "auto" else "cpu")
    seqs = load_data(args, args.subjects.split(","))
    report, _ = evaluate_spgnet(model, seqs, flip_test=not args.no_flip_test, progress=True,
                                meta={"checkpoint": str(args.checkpoint), "data": str(args.data),
                                      "keypoints": args.keypoints})
    return report


def predict_for_figure(args: argparse.Namespace, seq: PoseSequence) -> np.ndarray:
    """``fastpose visualize`` for an SPGNet checkpoint: the root-relative prediction (T, J, 3)."""
    model, _ = load_spgnet(args.checkpoint, device="cpu")
    return model.predict(seq.keypoints_2d, flip_test=not args.no_flip_test).pose.numpy()


