"""``load_checkpoint(path)``: the public way to get a ready model from a ``fastpose train`` checkpoint.

A checkpoint written by ``fastpose train spgnet|volumetric`` (see
:func:`fastpose.train.common.save_checkpoint`) is a dict with the format tag
``"fastpose-checkpoint-v1"``, the architecture record ``arch`` (``arch["model"]`` names the model,
the other keys are its config), the model's ``state_dict`` under ``"model"``, and training state
(optimizer, scheduler, RNG, ``progress``, ``extra`` with the training config and history).

Here the file is read with ``torch.load(weights_only=True)`` (tensors and plain data only, plus
the NumPy array type of the stored RNG state): loading a model for inference never runs
arbitrary pickled code. Every failure is one line naming the file and what is wrong.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

__all__ = ["MODEL_KINDS", "load_checkpoint"]


def _build_spgnet(arch: dict) -> nn.Module:
    from .spgnet import SPGNet, SPGNetConfig

    return SPGNet(SPGNetConfig.from_dict(arch))


def _build_volumetric(arch: dict) -> nn.Module:
    from .volumetric import VolumetricConfig, VolumetricPoseNet

    return VolumetricPoseNet(VolumetricConfig.from_dict({k: v for k, v in arch.items() if k != "model"}))


#: arch["model"] -> builder of the (untrained) model from the architecture record
MODEL_KINDS: dict[str, Callable[[dict], nn.Module]] = {"spgnet": _build_spgnet, "volumetric": _build_volumetric}


def _numpy_globals() -> list:
    """The globals of a pickled NumPy array (the checkpoint's NumPy RNG state)."""
    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import _reconstruct
    return [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return f"{type(exc).__name__}: {line[:160]}" if line else type(exc).__name__


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Build the model a ``fastpose train`` checkpoint was trained as, load its weights, and
    return it on ``device`` in eval mode (an :class:`~fastpose.models.SPGNet` or a
    :class:`~fastpose.models.VolumetricPoseNet`, from the config stored in the checkpoint).

    The checkpoint's metadata is attached as ``model.checkpoint_info``: ``path``, ``model``
    (its kind), ``arch``, ``progress`` (epoch/step), and from ``extra`` the ``train_config``,
    ``history`` and the ``reason`` it was written (``"epoch"``, ``"final"``, ...), when present.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a directory, a corrupt
    or truncated file, a file that is not a fastpose checkpoint, a checkpoint of an unknown
    model kind, or weights that do not fit the stored architecture; each message names ``path``.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"load_checkpoint: {p}: no such file")
    if not p.is_file():
        raise ValueError(f"load_checkpoint: {p} is not a file (expected a checkpoint written by 'fastpose train')")
    try:
        with torch.serialization.safe_globals(_numpy_globals()), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's notes on foreign pickle protocols
            ckpt = torch.load(p, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if "Unsupported global" in msg:
            glob = msg.split("Unsupported global:", 1)[1].split(" was not")[0].strip()
            raise ValueError(f"load_checkpoint: {p} holds pickled Python objects other than tensors and plain "
                             f"data ({glob}); it was not written by 'fastpose train', and is not unpickled "
                             f"here") from None
        raise ValueError(f"load_checkpoint: {p} is corrupt, truncated or not a torch file") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError, IndexError, KeyError):
        raise ValueError(f"load_checkpoint: {p} is corrupt, truncated or not a torch file") from None
    from ..train.common import CHECKPOINT_FORMAT

    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"load_checkpoint: {p} is not a fastpose checkpoint (format {found!r}, "
                         f"expected {CHECKPOINT_FORMAT!r})")
    arch = ckpt.get("arch")
    kind = arch.get("model") if isinstance(arch, dict) else None
    if kind not in MODEL_KINDS:
        raise ValueError(f"load_checkpoint: {p} holds a model of unknown kind {kind!r}; known: {sorted(MODEL_KINDS)}")
    state = ckpt.get("ema_model") or ckpt.get("model")  # the averaged weights when the run kept them
    if not isinstance(state, dict):
        raise ValueError(f"load_checkpoint: {p} has no model weights (its 'model' entry is {type(state).__name__})")
    try:
        model = MODEL_KINDS[kind](dict(arch))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"load_checkpoint: {p}: its {kind!r} architecture record is invalid: {_first_line(exc)}") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
              if k in own and (not isinstance(v, torch.Tensor) or v.shape != own[k].shape)]
    if missing or unexpected or shapes:
        raise ValueError(f"load_checkpoint: {p}: the weights do not fit the stored {kind!r} architecture "
                         f"(missing {missing[:4]}, unexpected {unexpected[:4]}, shapes {shapes[:4]})")
    model.load_state_dict(state)
    extra = ckpt.get("extra") if isinstance(ckpt.get("extra"), dict) else {}
    model.checkpoint_info = {
        "path": str(p),
        "model": kind,
        "arch": dict(arch),
        "progress": dict(ckpt.get("progress") or {}),
        **{k: extra[k] for k in ("train_config", "history", "reason") if k in extra},
    }
    return model.to(device).eval()
