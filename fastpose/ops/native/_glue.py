"""Plumbing shared by the native (``cpu`` / ``cuda``) op modules: dtype codes, buffer preparation
and the launch arguments of the framework-free kernels of ``fastpose._C``.

A kernel function of ``fastpose._C`` takes ``(dtype_code, pointers..., sizes..., *launch)`` where
pointers are ``Tensor.data_ptr()`` integers (0 = absent) and ``launch`` is ``(threads,)`` on the
CPU or ``(device_index, cuda_stream_handle)`` on CUDA. Every buffer, outputs and workspaces
included, is allocated here with torch (so the ops are capturable in CUDA graphs and traceable by
``torch.compile`` through their fake kernels).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ... import _ext

__all__: list[str] = []

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

_DTYPE_CODE = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}


def ext():
    """The loaded ``fastpose._C`` module (the native package only registers ops when it loaded)."""
    mod = _ext.get()
    if mod is None:  # pragma: no cover - registration is skipped in that case
        raise RuntimeError(f"fastpose._C is not loaded: {_ext.error()}; fix: {_ext.fix()}")
    return mod


def kernel(name: str, backend: str):
    """``fastpose._C.<name>_<backend>``, e.g. ``kernel("soft_argmax_forward", "cpu")``."""
    return getattr(ext(), f"{name}_{backend}")


def code(dtype: torch.dtype) -> int:
    return _DTYPE_CODE[dtype]


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: float64 stays float64, everything else accumulates in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def kernel_dtype(backend: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype a kernel reads and writes: the CPU kernels are float32/float64 only, so float16 and
    bfloat16 are upcast on entry (and the results cast back); the CUDA kernels take all four."""
    if backend == "cpu" and dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return dtype


def main_input(t: Tensor, backend: str) -> Tensor:
    """The op's big input as the kernel wants it: contiguous, in the kernel dtype and, on CUDA,
    16-byte aligned (the kernels move 16-byte packs; a view at an odd offset is copied)."""
    kd = kernel_dtype(backend, t.dtype)
    if backend == "cpu" and t.dtype == kd and t.is_contiguous():
        return t  # hot path: no conversion needed (skips two dispatcher round trips, ~1 us)
    t = t.to(kd).contiguous()
    if backend == "cuda" and t.data_ptr() % 16 != 0:
        t = t.clone()
    return t


def small(t: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """A small constant input (joints, weights, camera, keypoints, incoming gradients) in ``dtype``."""
    if t is None:
        return None
    t = t.detach()
    # Hot path: already in `dtype` and contiguous (the usual case) -> no dispatcher calls.
    return t if t.dtype == dtype and t.is_contiguous() else t.to(dtype).contiguous()


def ptr(t: Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


def launch(backend: str, device: torch.device) -> tuple[int, ...]:
    """Trailing launch arguments: (threads,) on the CPU, (device, stream) on CUDA (no host sync)."""
    if backend == "cpu":
        return (torch.get_num_threads(),)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return (index, torch.cuda.current_stream(device).cuda_stream)


def workspace(backend: str, elems: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Scratch buffer of the CUDA two-stage reductions (per-chunk partials)."""
    return torch.empty(max(int(elems), 1), dtype=dtype, device=device)


def volume_dims(op: str, x: Tensor, ndim: int) -> tuple[int, int, int, int, int, int]:
    """(B, J, D, H, W, rows) of a (B, J, [D,] H, W) volume; 2D maps are D = 1."""
    b, j = x.shape[0], x.shape[1]
    spatial = tuple(x.shape[2:])
    d, h, w = (1, *spatial) if ndim == 2 else spatial
    if b * j > 0 and d * h * w == 0:
        raise ValueError(f"{op}: the volume must not be empty, got spatial shape {spatial}")
    return b, j, d, h, w, b * j


def row_scale(backend: str, saved: Tensor, scale: Tensor, out_dtype: torch.dtype) -> Tensor:
    """out = saved * scale[r] per row (rows = scale.numel()) in ``out_dtype``: the backward of the
    loss kernels that write their gradient in the forward (csrc/row_scale, the skeleton kernel)."""
    acc = saved.dtype
    kd = kernel_dtype(backend, out_dtype)
    s = small(scale, acc).reshape(-1)
    out = torch.empty(saved.shape, dtype=kd, device=saved.device)
    rows = s.numel()
    if saved.numel() and rows:
        kernel("row_scale", backend)(code(kd), saved.data_ptr(), s.data_ptr(), out.data_ptr(), rows,
                                     saved.numel() // rows, *launch(backend, saved.device))
    return out.to(out_dtype)
