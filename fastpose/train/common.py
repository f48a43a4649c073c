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
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "CHECKPOINT_FORMAT",
    "accumulate",
    "add_run_arguments",
    "add_run_group",
    "jsonable",
    "CheckpointError",
    "Runtime",
    "all_reduce_mean",
    "any_rank",
    "autocast",
    "init_runtime",
    "load_checkpoint",
    "make_grad_scaler",
    "make_loader",
    "make_lr_scheduler",
    "progress_bar",
    "restore_training_state",
    "save_checkpoint",
    "seed_everything",
    "shutdown_runtime",
    "unwrap",
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
        if not torch.cuda.is_available():
            raise RuntimeError(f"init_runtime: device {device!r} requested but CUDA is not available")
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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
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


def add_run_arguments(parser, defaults) -> None:
    """The flags every ``fastpose train MODEL`` shares: seed, AMP, compile, device (appended to the
    current "optimisation" group's parser) and the "run" group (output, resume, checkpoints, limits).

    ``defaults`` is the model's train-config instance (fields seed, device, out_dir)."""
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--amp", action="store_true", help="mixed precision (bfloat16 on CPU, float16 on CUDA)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--device", default=defaults.device, help="auto, cpu, cuda, cuda:N")


def add_run_group(parser, defaults):
    """The "run" argument group shared by every ``fastpose train MODEL``; returns the group."""
    g = parser.add_argument_group("run")
    g.add_argument("--out", default=defaults.out_dir, help="output directory (checkpoint, evaluation)")
    g.add_argument("--resume", default=None, help="checkpoint to resume from")
    g.add_argument("--checkpoint-every", type=int, default=0, help="also checkpoint every N steps")
    g.add_argument("--max-steps", type=int, default=None)
    g.add_argument("--time-limit", type=float, default=None, help="minutes; stops resumably")
    g.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    g.add_argument("--no-progress", action="store_true")
    return g
