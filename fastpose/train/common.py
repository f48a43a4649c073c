"""Training infrastructure shared by the models' training loops.

One code path for one process and for ``torchrun`` (DistributedDataParallel, gloo on the CPU,
nccl on CUDA), plus the small pieces every loop needs::

    rt = init_runtime(device="auto")                 # reads torchrun's RANK/WORLD_SIZE/LOCAL_RANK
    seed_everything(seed)
    loader = make_loader(dataset, batch_size, rt, seed=seed, shuffle=True)
    model = wrap_model(model.to(rt.device), rt, compile=False)   # DDP when distributed
    scheduler = make_lr_scheduler(optimizer, "exponential", steps_per_epoch, gamma=0.95)
    with autocast(rt.device, amp): loss = ...
    scaler = make_grad_scaler(rt.device, amp)        # fp16 loss scaling on CUDA only
    save_checkpoint(path, arch=..., model=..., optimizer=..., progress={...})
    ckpt = load_checkpoint(path, expected_arch=arch)  # CheckpointError on another architecture
    restore_training_state(ckpt, model, optimizer, scheduler, scaler)
    shutdown_runtime(rt)

The loop itself is shared too: a trainer builds its model, optimizer, scheduler and data, then
calls :func:`resume_training` (with ``--resume``) and :func:`run_training` with a ``step(batch)``
function (forward pass + loss) -- epochs, steps, checkpoints, ``max_steps`` / ``time_limit`` /
Ctrl-C stops and exact resumption live here once.

Checkpoints are dicts with a ``format`` tag, the architecture record ``arch`` (a JSON-friendly
dict whose ``"model"`` key names the model; two checkpoints are compatible iff their ``arch``
dicts are equal), the model/optimizer/scheduler/grad-scaler states, ``progress`` (epoch, step),
the RNG states (so a resumed run draws the same dropout masks) and free-form ``extra``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .args import add_run_arguments, add_run_group
from .config import RUN_CONTROL_FIELDS

__all__ = [
    "CHECKPOINT_FORMAT",
    "STOP_REASONS",
    "accumulate",
    "add_run_arguments",
    "add_run_group",
    "check_resume",
    "check_resume_config",
    "check_writable_dir",
    "jsonable",
    "CheckpointError",
    "LoopResult",
    "LoopState",
    "OutputDirError",
    "Runtime",
    "StepOutput",
    "all_reduce_mean",
    "any_rank",
    "autocast",
    "init_runtime",
    "load_checkpoint",
    "refuse_to_overwrite",
    "resume_training",
    "run_training",
    "set_threads",
    "threads_for_load",
    "make_grad_scaler",
    "make_loader",
    "make_lr_scheduler",
    "progress_bar",
    "restore_training_state",
    "save_checkpoint",
    "seed_everything",
    "shutdown_runtime",
    "unwrap",
    "warn_paper_size_on_cpu",
    "wrap_model",
]

CHECKPOINT_FORMAT = "fastpose-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable, not a fastpose checkpoint, or for another architecture."""


# ============================================================================================
# processes and devices
# ============================================================================================
@dataclass(frozen=True)
class Runtime:
    """Where this process runs: device, rank and world size (1 without torchrun)."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints, writes checkpoints and reports."""
        return self.rank == 0


def init_runtime(device: str = "auto") -> Runtime:
    """Pick the device and, under ``torchrun`` (``WORLD_SIZE`` > 1), join the process group.

    ``device``: "auto" (CUDA if available, else CPU), "cpu", "cuda" or "cuda:N". Under torchrun
    each process takes ``cuda:LOCAL_RANK`` and the nccl backend on CUDA; gloo on the CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():  # a user's choice that cannot work: ValueError (one line in the CLI)
            raise ValueError(f"--device {device}: CUDA is not available here (torch.cuda.is_available() is False, "
                             f"torch {torch.__version__}); use --device cpu or auto")
        if dev.index is None:
            dev = torch.device("cuda", local if world > 1 else torch.cuda.current_device())
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Runtime(dev, rank, world, local)


def shutdown_runtime(rt: Runtime) -> None:
    """Leave the process group (no-op for a single process)."""
    if rt.distributed and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices). Every rank uses the same seed: the
    model starts identical everywhere, and the sampler shards the data."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def any_rank(flag: bool, rt: Runtime) -> bool:
    """True on every rank if ``flag`` is True on any rank (keeps ranks in step when one decides to stop)."""
    if not rt.distributed:
        return bool(flag)
    t = torch.tensor(float(flag), device=rt.device if rt.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def accumulate(sums: dict, values: Mapping, weight: float) -> None:
    """``sums[k] += weight * values[k]`` without a host synchronisation per step: tensor values stay
    on their device (as float64) until a caller reads them -- the progress bar every few steps, the
    epoch means, a checkpoint -- instead of a ``float(loss)`` that waits for the GPU every step."""
    for k, v in values.items():
        v = v.detach().double() if isinstance(v, torch.Tensor) else float(v)
        sums[k] = sums[k] + v * weight


def all_reduce_mean(value: float | torch.Tensor, rt: Runtime) -> float:
    """Mean of a scalar over all ranks (the value itself for a single process)."""
    t = torch.as_tensor(value, dtype=torch.float64, device=rt.device if rt.device.type == "cuda" else "cpu")
    if rt.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t = t / rt.world_size
    return float(t)


# ============================================================================================
# data, model wrappers
# ============================================================================================
def make_loader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    rt: Runtime,
    *,
    seed: int = 0,
    shuffle: bool = True,
    drop_last: bool = False,
    epoch: int = 0,
    skip_batches: int = 0,
    collate_fn=None,
    num_workers: int = 0,
) -> torch.utils.data.DataLoader:
    """A DataLoader over this rank's shard (``DistributedSampler``, also for one process).

    The order depends only on (seed, epoch), so a resumed run sees the same batches;
    ``skip_batches`` drops the first batches of the epoch (resuming mid-epoch). ``collate_fn``
    defaults to identity when the dataset has ``__getitems__`` (batched fetch), else torch's.
    """
    if batch_size < 1:
        raise ValueError(f"make_loader: batch_size must be >= 1, got {batch_size}")
    sampler = torch.utils.data.DistributedSampler(
        dataset, num_replicas=rt.world_size, rank=rt.rank, shuffle=shuffle, seed=seed, drop_last=drop_last
    )
    sampler.set_epoch(epoch)
    batches = list(torch.utils.data.BatchSampler(sampler, batch_size, drop_last))[skip_batches:]
    if collate_fn is None and hasattr(dataset, "__getitems__"):
        collate_fn = _identity
    # A private generator: the DataLoader draws a base seed when iterated, which must not come
    # from the global RNG (a resumed run would then draw different dropout masks).
    gen = torch.Generator().manual_seed(seed * 1000003 + epoch)
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=batches, collate_fn=collate_fn, num_workers=num_workers, generator=gen
    )


def _identity(batch):
    return batch


def wrap_model(model: nn.Module, rt: Runtime, compile: bool = False) -> nn.Module:
    """DistributedDataParallel when distributed, then ``torch.compile`` if asked.

    Keep a reference to the plain module (or use :func:`unwrap`) for checkpoints.
    """
    if rt.distributed:
        ids = [rt.device.index] if rt.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if compile:
        model = torch.compile(model)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under torch.compile / DDP wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def autocast(device: torch.device, enabled: bool):
    """Mixed precision context: bfloat16 on the CPU, float16 on CUDA; a no-op when disabled."""
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_grad_scaler(device: torch.device, enabled: bool) -> torch.amp.GradScaler:
    """Loss scaling for float16 (CUDA + AMP); disabled (a pass-through) otherwise."""
    return torch.amp.GradScaler(device.type, enabled=enabled and device.type == "cuda")


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 enabled: bool = True, **kwargs):
    """A tqdm progress bar (disabled on ranks other than 0 by passing ``enabled=rt.is_main``)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not enabled, dynamic_ncols=True,
                leave=kwargs.pop("leave", True), **kwargs)


# ============================================================================================
# learning-rate schedules
# ============================================================================================
class _Schedule:
    """Multiplicative LR factor as a function of the optimizer step (picklable, no state)."""

    def __init__(self, kind: str, steps_per_epoch: int, gamma: float, milestones: tuple[int, ...],
                 factor: float) -> None:
        self.kind, self.steps_per_epoch = kind, steps_per_epoch
        self.gamma, self.milestones, self.factor = gamma, milestones, factor

    def __call__(self, step: int) -> float:
        epoch = step / self.steps_per_epoch  # fractional epochs done
        if self.kind == "exponential":
            return self.gamma**epoch
        if self.kind == "step":
            return self.factor ** sum(int(epoch) >= m for m in self.milestones)
        return 1.0


def make_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    kind: str,
    steps_per_epoch: int,
    *,
    gamma: float = 0.95,
    milestones: Iterable[int] = (),
    factor: float = 0.1,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler stepped once per optimizer step (``scheduler.step()`` after ``optimizer.step()``).

    - ``"exponential"``: ``lr = lr0 * gamma ** (steps / steps_per_epoch)``, a smooth per-epoch
      decay by ``gamma`` (SPGNet / VideoPose3D: Adam 1e-3, gamma 0.95);
    - ``"step"``: ``lr = lr0 * factor ** (number of milestones <= epoch)`` (the volumetric
      model: /10 at epoch 11 -> ``milestones=(10,)`` counting epochs from 0);
    - ``"constant"``.
    """
    if kind not in ("exponential", "step", "constant"):
        raise ValueError(f"make_lr_scheduler: kind must be 'exponential', 'step' or 'constant', got {kind!r}")
    if steps_per_epoch < 1:
        raise ValueError(f"make_lr_scheduler: steps_per_epoch must be >= 1, got {steps_per_epoch}")
    if not 0 < gamma <= 1:
        raise ValueError(f"make_lr_scheduler: gamma must be in (0, 1], got {gamma}")
    sched = _Schedule(kind, steps_per_epoch, gamma, tuple(int(m) for m in milestones), factor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, sched)


# ============================================================================================
# checkpoints
# ============================================================================================
def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping) -> None:
    # RNG states are CPU byte tensors; a checkpoint loaded with map_location="cuda" moved them.
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_checkpoint(
    path: str | Path,
    *,
    arch: Mapping[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    scaler: torch.amp.GradScaler | None = None,
    progress: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file + rename) and return its path.

    ``arch`` must contain ``"model"`` (the model's name) and every constructor argument that
    changes the parameters. Call from the main rank only.
    """
    if "model" not in arch:
        raise ValueError("save_checkpoint: arch must contain 'model' (the model's name)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "arch": dict(arch),
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "progress": dict(progress or {}),
        "rng": _rng_state(),
        "extra": dict(extra or {}),
    }
    # A unique temporary name in the same directory, created with mode 0o666 so that the umask
    # gives the file the permissions of every other output (mkstemp would make it 0600), then an
    # atomic rename: a crash never leaves a half-written checkpoint under ``path``.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(
    path: str | Path, *, expected_arch: Mapping[str, Any] | None = None, expected_model: str | None = None,
    map_location: str | torch.device = "cpu",
) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` and check what it is for.

    ``expected_model`` checks only the model's name; ``expected_arch`` the whole architecture
    record. A mismatch raises :class:`CheckpointError` listing the differing fields. Checkpoints
    contain pickled optimizer/RNG state (``weights_only=False``): load only files you trust.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path}: file not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"checkpoint {path}: cannot be read (truncated or not a torch file?): "
                              f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"checkpoint {path}: not a fastpose checkpoint (format {found!r}, "
                              f"expected {CHECKPOINT_FORMAT!r})")
    arch = ckpt.get("arch") or {}
    want_model = expected_model or (expected_arch or {}).get("model")
    if want_model is not None and arch.get("model") != want_model:
        raise CheckpointError(
            f"checkpoint {path}: saved for model {arch.get('model')!r}, but {want_model!r} was requested"
        )
    if expected_arch is not None:
        diffs = [
            f"{k}: checkpoint {arch.get(k, '<missing>')!r} vs requested {expected_arch.get(k, '<missing>')!r}"
            for k in sorted(set(arch) | set(expected_arch))
            if _norm(arch.get(k)) != _norm(expected_arch.get(k))
        ]
        if diffs:
            raise CheckpointError(
                f"checkpoint {path}: saved for another {arch.get('model')!r} architecture; differing fields: "
                + "; ".join(diffs)
            )
    return ckpt


def _norm(v):
    """Compare tuples and lists alike (JSON round trips turn tuples into lists)."""
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, float) and math.isfinite(v) and v == int(v):
        return int(v)
    return v


def restore_training_state(
    ckpt: Mapping,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    scaler: torch.amp.GradScaler | None = None,
    restore_rng: bool = True,
) -> dict:
    """Load the states of ``ckpt`` into the given objects; returns ``ckpt["progress"]``."""
    unwrap(model).load_state_dict(ckpt["model"])
    if optimizer is not None and ckpt.get("optimizer") is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    if scaler is not None and ckpt.get("scaler") is not None:
        scaler.load_state_dict(ckpt["scaler"])
    if restore_rng and ckpt.get("rng") is not None:
        _set_rng_state(ckpt["rng"])
    return dict(ckpt.get("progress") or {})


def jsonable(d: dict) -> dict:
    """``d`` with tuples turned into lists, as it reads back from a checkpoint's JSON-like config."""
    return json.loads(json.dumps(d, default=list))


# ============================================================================================
# threads, output directories
# ============================================================================================
def threads_for_load(default: int) -> int:
    """One thread on a busy machine, else ``default`` (torch's choice).

    When the 1-minute load average reaches the number of cores, OpenMP threads wait for each other
    at every small kernel (we measured a 10x slower training step with 2 threads than with 1 on
    a 2-core machine running other jobs).
    """
    try:
        busy = os.getloadavg()[0] >= (os.cpu_count() or 1)
    except OSError:  # not available on this platform
        busy = False
    return 1 if busy else default


def set_threads(n: int | None) -> int:
    """``torch.set_num_threads(n)``, or :func:`threads_for_load` of torch's default when ``n`` is None."""
    if n is not None and n < 1:
        raise ValueError(f"set_threads: the thread count must be >= 1, got {n}")
    n = n if n is not None else threads_for_load(torch.get_num_threads())
    torch.set_num_threads(n)
    return n


def warn_paper_size_on_cpu(what: str, instead: str) -> None:
    """Warn (stderr) that a paper-size run is starting on a CPU, where it takes hours."""
    print(f"warning: training {what} on the CPU takes hours; for minutes use '{instead}' "
          f"(or a GPU: --device cuda)", file=sys.stderr, flush=True)


class OutputDirError(OSError):
    """An output directory that cannot be used: not creatable, not a directory, not writable, or
    holding another run's checkpoint. The message names the flag and the path."""


def check_writable_dir(path: str | Path, flag: str = "--out") -> Path:
    """Create ``path`` if needed and prove it writable by writing and removing a probe file.

    Called before any training, so that an unwritable output directory is found in a second, not
    after hours of training at the first checkpoint. Raises :class:`OutputDirError` whose message
    names ``flag`` and the path.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputDirError(f"{flag} {path}: exists and is not a directory") from None
    except OSError as exc:
        raise OutputDirError(f"{flag} {path}: cannot create the directory ({exc.strerror or exc})") from None
    if not path.is_dir():
        raise OutputDirError(f"{flag} {path}: exists and is not a directory")
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise OutputDirError(f"{flag} {path}: the directory is not writable ({exc.strerror or exc})") from None
    return path


def refuse_to_overwrite(out_dir: str | Path, resume: str | None, overwrite: bool, command: str) -> None:
    """Refuse a fresh run whose ``--out`` already holds another run's ``checkpoint.pt``.

    Resuming that very checkpoint is fine, and so is ``--overwrite``; otherwise a new run would
    silently replace the old one's weights (and evaluation) with its first epoch.
    """
    existing = Path(out_dir) / "checkpoint.pt"
    if overwrite or not existing.exists():
        return
    if resume is not None and Path(resume).resolve() == existing.resolve():
        return
    raise OutputDirError(f"--out {out_dir} already holds a checkpoint.pt of another run: resume it with "
                          f"'{command} --resume {existing}', choose another --out, or pass --overwrite to replace it")


# ============================================================================================
# the training loop shared by every model
# ============================================================================================
STOP_REASONS = ("finished", "max_steps", "time_limit", "interrupted")


@dataclass
class StepOutput:
    """What a model's step function returns for one batch (before the optimizer step).

    ``loss``: the scalar to back-propagate; ``terms``: scalars to average over the epoch (tensors
    stay on the device, see :func:`accumulate`); ``batch_size``: the weight of these terms;
    ``count``: samples for the throughput (e.g. frames = windows x output frames).
    """

    loss: torch.Tensor
    terms: Mapping[str, Any]
    batch_size: int
    count: int


@dataclass
class LoopState:
    """Position of a run: finished epochs, steps into the current epoch, steps in all, history."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    history: list[dict] = field(default_factory=list)
    epoch_sums: dict | None = None  # running sums of an epoch interrupted by a checkpoint (+ "n_seen")


@dataclass
class LoopResult:
    """What :func:`run_training` did in this call."""

    history: list[dict]
    step_losses: list[float]
    checkpoint: Path | None
    finished: bool  # every epoch done
    stop_reason: str  # one of STOP_REASONS
    seconds: float
    count: int  # samples (StepOutput.count) processed by this process
    state: LoopState


def _flatten_config(config: Mapping) -> dict:
    """A train config with its nested ``data_config`` lifted to the top level (the flags' names)."""
    flat = {k: v for k, v in config.items() if k != "data_config"}
    for k, v in (config.get("data_config") or {}).items():
        flat[k] = v
    return flat


def check_resume_config(ckpt: Mapping, config: Mapping, path: str | Path, log: Callable[[str], None] = print) -> None:
    """Refuse to resume a run with settings that differ from the checkpoint's ``train_config``.

    Compared: every field except :data:`fastpose.train.config.RUN_CONTROL_FIELDS` and those named in
    ``config["override"]`` (flag names with '-' or '_'; the data flags by their own names:
    ``data``, ``synthetic_frames``, ``train_subjects``, ...). A resumed run with another dataset or
    schedule would mix two trainings and report a position (``step 23 of 174``) that means nothing.
    """
    saved = (ckpt.get("extra") or {}).get("train_config")
    if saved is None:
        log(f"warning: {path} records no training configuration (an older checkpoint): the settings of this "
            f"run cannot be checked against it")
        return
    now, then = _flatten_config(jsonable(dict(config))), _flatten_config(saved)
    override = {o.replace("-", "_") for o in config.get("override") or ()}
    unknown = sorted(override - (set(now) | set(then)))
    if unknown:
        raise ValueError(f"--override: unknown setting(s) {unknown}; settings: {sorted(set(now) - RUN_CONTROL_FIELDS)}")
    diffs = [k for k in sorted(set(now) | set(then))
             if k not in RUN_CONTROL_FIELDS and k not in override and _norm(now.get(k)) != _norm(then.get(k))]
    if diffs:
        detail = "; ".join(f"{k}: checkpoint {then.get(k, '<missing>')!r}, this run {now.get(k, '<missing>')!r}"
                           for k in diffs)
        raise CheckpointError(f"cannot resume {path}: this run's settings differ from the checkpoint's ({detail}); "
                              f"use the checkpoint's settings, or allow the change with --override {','.join(diffs)}")
    changed = [k for k in sorted(override) if _norm(now.get(k)) != _norm(then.get(k))]
    if changed:
        log("resuming with overridden settings: " + ", ".join(f"{k} {then.get(k)!r} -> {now.get(k)!r}"
                                                            for k in changed))


def check_resume(path: str | Path, *, arch: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """The checks of :func:`resume_training` (architecture, settings) without restoring anything:
    the command line runs them before loading data, so a mismatch is reported in seconds."""
    ckpt = load_checkpoint(path, expected_arch=arch, map_location="cpu")
    check_resume_config(ckpt, config, path, log=lambda s: None)


def resume_training(
    path: str | Path,
    *,
    arch: Mapping[str, Any],
    config: Mapping[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
    rt: Runtime,
    steps_per_epoch: int,
    log: Callable[[str], None] = print,
) -> LoopState:
    """Load a checkpoint into the training objects and return where the run stopped.

    Checks the architecture (:func:`load_checkpoint`) and the data/schedule settings
    (:func:`check_resume_config`). When an override changed the steps per epoch (other data, batch
    size or number of processes), the position inside the epoch cannot carry over: the run goes on
    from the start of the next epoch.
    """
    ckpt = load_checkpoint(path, expected_arch=arch, map_location=rt.device)
    check_resume_config(ckpt, config, path, log=log if rt.is_main else (lambda s: None))
    prog = restore_training_state(ckpt, model, optimizer, scheduler, scaler)
    state = LoopState(prog["epoch"], prog["step_in_epoch"], prog["global_step"],
                      list((ckpt.get("extra") or {}).get("history", [])), prog.get("epoch_sums"))
    saved_steps = prog.get("steps_per_epoch")
    if saved_steps is not None and saved_steps != steps_per_epoch and state.step_in_epoch:
        if rt.is_main:
            log(f"the checkpoint stopped at step {state.step_in_epoch} of {saved_steps} per epoch, this run has "
                f"{steps_per_epoch}: continuing from the start of epoch {state.epoch + 2}")
        state.epoch, state.step_in_epoch, state.epoch_sums = state.epoch + 1, 0, None
    if rt.is_main:
        log(f"resumed from {path}: epoch {state.epoch + 1}, step {state.step_in_epoch} of {steps_per_epoch}")
    return state


class _InterruptFlag:
    """While active, the first SIGINT (Ctrl-C) or SIGTERM (a scheduler's pre-emption, torchrun
    stopping its workers) only sets ``self.set``: the loop stops at the end of the current step --
    model, optimizer and scheduler consistent -- and checkpoints. A second signal of that kind
    acts at once (its previous handler is restored after the first: Ctrl-C then raises
    KeyboardInterrupt). Handlers can only be installed from the main thread; elsewhere the
    process's own handling applies."""

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.set = False
        self._previous: dict = {}

    def __enter__(self) -> _InterruptFlag:
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self._SIGNALS}
        return self

    def _handle(self, signum, frame) -> None:
        self.set = True
        signal.signal(signum, self._previous[signum])
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"\n{name}: stopping after this step and saving a checkpoint ({name} again to stop at once)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


# Under torchrun the ranks agree on Ctrl-C / time-limit stops every this many steps (one small
# all-reduce that waits for the device); a single process checks every step without a sync.
_STOP_SYNC_EVERY = 10


def run_training(
    *,
    state: LoopState,
    epochs: int,
    steps_per_epoch: int,
    net: nn.Module,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    rt: Runtime,
    loader_for_epoch: Callable[[int, int], Iterable],
    step: Callable[[Any], StepOutput],
    keys: Sequence[str],
    checkpoint_path: Path,
    arch: Mapping[str, Any],
    config: Mapping[str, Any],
    start_epoch: Callable[[int], None] | None = None,
    describe_epoch: Callable[[int, dict], str] | None = None,
    postfix: Callable[[dict], dict] | None = None,
    checkpoint_every: int = 0,
    max_steps: int | None = None,
    time_limit: float | None = None,
    progress: bool = True,
    resume_command: str = "fastpose train ... --resume",
    log: Callable[[str], None] = print,
) -> LoopResult:
    """The epoch / step / checkpoint / stop loop of every trainer.

    Per epoch: ``start_epoch(epoch)`` (augmentation seed, BatchNorm momentum ...), then
    ``loader_for_epoch(epoch, skip)`` -- a loader whose order depends only on (seed, epoch), with
    the first ``skip`` batches dropped when resuming mid-epoch. Per batch: ``step(batch)`` runs
    the forward pass and the loss; the loop zeroes the gradients, back-propagates (through the
    grad scaler), steps the optimizer and the per-step scheduler, and averages ``keys`` of
    ``{"loss": loss, **terms}`` weighted by the batch size.

    Checkpoints (rank 0): at the end of every epoch, every ``checkpoint_every`` steps, and when
    the run stops early -- ``max_steps`` optimizer steps in all, ``time_limit`` minutes of this
    call, or Ctrl-C / SIGTERM (the step in progress completes first). The checkpoint holds the
    position, the running sums of the epoch and the RNG states, so a resumed run continues with
    exactly the losses of an uninterrupted one. Under torchrun every rank stops at the same step.
    After Ctrl-C the checkpoint is written, the resume command is logged and KeyboardInterrupt is
    raised.
    """
    step_losses: list[torch.Tensor] = []
    t0 = time.perf_counter()
    count = 0
    reason: str | None = None
    sums: dict = {}
    n_seen = 0

    def save(why: str) -> Path:
        progress_ = {"epoch": state.epoch, "step_in_epoch": state.step_in_epoch, "global_step": state.global_step,
                     "steps_per_epoch": steps_per_epoch,
                     "epoch_sums": ({**{k: float(v) for k, v in sums.items()}, "n_seen": n_seen}
                                    if state.step_in_epoch else None)}
        extra = {"history": state.history, "train_config": jsonable(dict(config)), "reason": why}
        return save_checkpoint(checkpoint_path, arch=arch, model=model, optimizer=optimizer, scheduler=scheduler,
                               scaler=scaler, progress=progress_, extra=extra)

    with _InterruptFlag() as interrupt:
        while state.epoch < epochs:
            if start_epoch is not None:
                start_epoch(state.epoch)
            loader = loader_for_epoch(state.epoch, state.step_in_epoch)
            net.train()
            sums = dict.fromkeys(keys, 0.0)
            n_seen = 0
            if state.epoch_sums is not None and state.step_in_epoch:  # continue this epoch's running means
                resumed = dict(state.epoch_sums)
                n_seen = int(resumed.pop("n_seen"))
                sums.update({k: v for k, v in resumed.items() if k in sums})
            state.epoch_sums = None
            bar = progress_bar(loader, total=steps_per_epoch, initial=state.step_in_epoch,
                               desc=f"epoch {state.epoch + 1}/{epochs}", enabled=rt.is_main and progress)
            for batch in bar:
                out = step(batch)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(out.loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                state.step_in_epoch += 1
                state.global_step += 1
                n_seen += out.batch_size
                count += out.count
                step_losses.append(out.loss.detach())
                accumulate(sums, {"loss": out.loss, **out.terms}, out.batch_size)
                if postfix is not None and (state.step_in_epoch % 10 == 0 or state.step_in_epoch == steps_per_epoch):
                    bar.set_postfix(postfix({k: float(v) / max(n_seen, 1) for k, v in sums.items()}))
                if checkpoint_every and state.global_step % checkpoint_every == 0 and rt.is_main:
                    save("periodic")
                reason = _stop_reason(state.global_step, max_steps, time_limit, t0, interrupt.set, rt)
                if reason is not None:
                    break
            bar.close()
            if state.step_in_epoch >= steps_per_epoch:  # the epoch is complete
                means = {k: all_reduce_mean(v / max(n_seen, 1), rt) for k, v in sums.items()}
                state.history.append({"epoch": state.epoch + 1, **means, "lr": scheduler.get_last_lr()[0],
                                      "seconds": time.perf_counter() - t0})
                if rt.is_main and describe_epoch is not None:
                    log(describe_epoch(state.epoch + 1, means))
                state.epoch += 1
                state.step_in_epoch = 0
            if rt.is_main:
                save(reason or "epoch")
            if reason is not None:
                break
    seconds = time.perf_counter() - t0
    finished = state.epoch >= epochs
    stop_reason = "finished" if finished else (reason or "finished")
    if not finished and rt.is_main:
        why = {"max_steps": f"max_steps={max_steps} reached", "time_limit": f"time_limit={time_limit} min reached",
               "interrupted": "interrupted (Ctrl-C / SIGTERM)"}[stop_reason]
        log(f"stopped at epoch {state.epoch + 1}, step {state.step_in_epoch} of {steps_per_epoch}: {why}; "
            f"checkpoint {checkpoint_path} saved; resume with: {resume_command} {checkpoint_path}")
    if stop_reason == "interrupted":
        raise KeyboardInterrupt(f"training interrupted; checkpoint {checkpoint_path} saved")
    return LoopResult(history=state.history, step_losses=[float(v) for v in step_losses],
                      checkpoint=checkpoint_path if rt.is_main else None, finished=finished, stop_reason=stop_reason,
                      seconds=seconds, count=count, state=state)


def _stop_reason(global_step: int, max_steps: int | None, time_limit: float | None, t0: float,
                 interrupted: bool, rt: Runtime) -> str | None:
    """Why to stop after this step (None: go on); the same answer on every rank (max_steps is the
    same everywhere; the signal and clock flags are agreed every ``_STOP_SYNC_EVERY`` steps)."""
    flags = [interrupted, time_limit is not None and time.perf_counter() - t0 > 60 * time_limit]
    if rt.distributed and global_step % _STOP_SYNC_EVERY:
        flags = [False, False]
    elif rt.distributed:
        t = torch.tensor([float(f) for f in flags], device=rt.device if rt.device.type == "cuda" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        flags = [bool(v > 0) for v in t.tolist()]
    if flags[0]:
        return "interrupted"
    if max_steps is not None and global_step >= max_steps:
        return "max_steps"
    if flags[1]:
        return "time_limit"
    return None
