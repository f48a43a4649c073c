"""The fused ops of fastpose (the op contract: docs/ops.md).

Each op picks a backend (``reference``, ``cpu``, ``cuda``, ``triton``) per call: the
``backend=`` argument, ``with fastpose.use_backend(...)``, ``FASTPOSE_BACKEND``, else the fastest
available for the device (:data:`fastpose.ops._dispatch.PRIORITY`).
"""

from __future__ import annotations

import os as _os

from . import _dispatch, _spec
from ._dispatch import (
    BackendNotSupportedError,
    available_backends,
    not_supported_reasons,
    use_backend,
)
from ._selfcheck import backend_table
from .heatmap_mse import heatmap_mse_2d, heatmap_mse_3d
from .projection import project_to_2d, reprojection_loss
from .soft_argmax import soft_argmax_2d, soft_argmax_3d
from .soft_argmax_heatmap_mse import soft_argmax_heatmap_mse_2d, soft_argmax_heatmap_mse_3d

__all__ = [
    "BackendNotSupportedError",
    "available_backends",
    "backend_table",
    "heatmap_mse_2d",
    "heatmap_mse_3d",
    "not_supported_reasons",
    "project_to_2d",
    "reprojection_loss",
    "soft_argmax_2d",
    "soft_argmax_3d",
    "soft_argmax_heatmap_mse_2d",
    "soft_argmax_heatmap_mse_3d",
    "use_backend",
]


def _load_backends() -> None:
    """Register the compiled (cpu/cuda) and Triton backends when they can be loaded.

    A backend that cannot be loaded registers nothing; the reason is kept for ``fastpose info``.
    """
    try:
        from . import native  # noqa: F401  (registers "cpu", and "cuda" when built with CUDA)
    except Exception as exc:  # the extension is optional: reference keeps working
        _dispatch.record_load_error("cpu", f"{type(exc).__name__}: {exc}")
    if _os.environ.get("FASTPOSE_DISABLE_TRITON", "0") not in ("", "0"):
        _dispatch.record_load_error("triton", "disabled by FASTPOSE_DISABLE_TRITON")
        return
    try:
        from .. import kernels  # the kernels never import fastpose.ops: registration happens here
    except Exception as exc:
        msg = f"{type(exc).__name__}: {exc}"
        if "fastpose[triton]" not in msg:
            msg += " (install the extra: pip install 'fastpose[triton]')"
        _dispatch.record_load_error("triton", msg)
        return
    for op, fn, reasons in kernels.implementations((s.name, s.stem) for s in _spec.SPECS.values()):
        _dispatch.register_impl(op, "triton", fn, devices=kernels.DEVICES, dtypes=kernels.DTYPES, reasons=reasons,
                                note=kernels.NOTE)


_load_backends()
