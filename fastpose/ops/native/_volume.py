"""Volume plumbing shared by the native volumetric ops (soft-argmax, heatmap MSE, fused head).

The C++ kernels see a volume as ``rows`` = B*J contiguous rows of N_vox = D*H*W values in the
kernel dtype (:func:`fastpose.ops.native._glue.kernel_dtype`). When the input already is in that
dtype and contiguous (float32/float64 anywhere, every dtype on CUDA) the kernels read it in place,
in one launch. The CPU kernels take float32/float64 only, so float16/bfloat16 input is converted
chunk by chunk of whole rows (at most :data:`fastpose.reference._rows.CHUNK_ELEMS` values, the
same chunking as the reference), one launch per chunk: the float32 copy of the whole volume (twice
the input's size) never exists, and gradients are written into the input-dtype result chunk by
chunk. This keeps forward + backward within one input-sized volume above the inputs (docs/ops.md).

Gradient volumes on the CPU (:func:`grad_buffer`): a large CPU gradient is written into a cached
buffer when the previous step's gradient in it has been released, instead of a fresh allocation.
Fresh volume-sized allocations come from new pages (glibc serves blocks above 32 MiB with mmap), and
the kernel that first writes them spends about as much time in the OS zeroing pages as computing: at
B=8, J=18, 64^3 (151 MB) ~23 % of a fused-head training step was page faults (issue 14).
``FASTPOSE_GRAD_CACHE=0`` turns the cache off; :func:`release_grad_cache` frees the buffer.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from ...reference import _rows
from . import _glue as g

__all__ = ["cached_empty", "grad_buffer", "release_grad_cache"]


class Geometry(NamedTuple):
    """(B, J, D, H, W) of a (B, J, [D,] H, W) volume; 2D maps have D = 1. rows = B*J, n_vox = D*H*W.

    A NamedTuple rather than a frozen dataclass: built twice per forward+backward, and a frozen
    dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost ~2 us of the ~0.1 ms fixed
    cost of an op call (issue 14)."""

    b: int
    j: int
    d: int
    h: int
    w: int
    rows: int
    n_vox: int


def geometry(op: str, x: Tensor, ndim: int) -> Geometry:
    """The volume's geometry; an empty volume with joints to serve is refused (ValueError)."""
    b, j, d, h, w, rows = g.volume_dims(op, x, ndim)
    return Geometry(b, j, d, h, w, rows, d * h * w)


def kernel_chunks(x: Tensor, backend: str, geo: Geometry,
                  out: Tensor | None = None) -> Iterator[tuple[int, int, Tensor, Tensor | None]]:
    """Yield ``(r0, r1, xk, dst)``: ``xk`` is rows [r0, r1) of ``x`` as a contiguous (r1 - r0, N_vox)
    tensor in the kernel dtype. One chunk (``x`` itself, no copy) unless ``x`` must be converted on
    the CPU. With ``out`` (a fresh contiguous gradient of x's shape and dtype), ``dst`` is the
    (r1 - r0, N_vox) kernel-dtype buffer the kernel writes: a view of ``out``, or a temporary that is
    copied into ``out`` when the caller asks for the next chunk (iterate to the end)."""
    rows, n_vox = geo.rows, geo.n_vox
    if rows == 0:
        return
    kd = g.kernel_dtype(backend, x.dtype)
    out_flat = None if out is None else out.view(rows, n_vox)
    if kd == x.dtype:
        yield 0, rows, g.main_input(x, backend).view(rows, n_vox), out_flat
        return
    # Only the CPU converts (CUDA kernels take every dtype), and CPU kernels are synchronous, so one
    # input buffer and one output buffer are reused for every chunk: 2 chunks of float32 in all.
    flat = x.contiguous().view(rows, n_vox)  # a view for contiguous input
    chunks = list(_rows.row_chunks(rows, n_vox, x))
    most = max(r1 - r0 for r0, r1 in chunks)
    src_buf = torch.empty((most, n_vox), dtype=kd, device=x.device)
    dst_buf = None if out is None else torch.empty((most, n_vox), dtype=kd, device=x.device)
    for r0, r1 in chunks:
        xk = src_buf[: r1 - r0]
        xk.copy_(flat[r0:r1])
        dst = None if dst_buf is None else dst_buf[: r1 - r0]
        yield r0, r1, xk, dst
        if out_flat is not None:
            out_flat[r0:r1].copy_(dst)


def row_slice(t: Tensor | None, r0: int, r1: int, rows: int) -> Tensor | None:
    """Rows [r0, r1) of a per-row buffer ``t`` (None stays None): ``t`` itself when the chunk is all
    ``rows`` rows (the usual single chunk), saving a slicing dispatch (~1 us) per buffer and call."""
    if t is None or (r0 == 0 and r1 == rows):
        return t
    return t[r0:r1]


def sizes(geo: Geometry, rows: int, ndim: int) -> dict[str, int]:
    """The size names of the volume kernels' KernelSpecs for a chunk of ``rows`` rows."""
    return {"R": rows, "N": geo.n_vox, "d": geo.d, "h": geo.h, "w": geo.w, "ndim": ndim}


# ---- the cached CPU gradient buffers --------------------------------------------------------------

# Below this size fresh allocations are cheap (glibc reuses freed heap blocks; ~1000 page faults at
# most): the cache would only hold memory. The same threshold as the kernels' huge-page advice
# (csrc/common/fp_cpu_memory.h: kHugeAdviceMinBytes).
_GRAD_CACHE_MIN_BYTES = 4 << 20
# Two slots: a step that holds two large buffers at once (the re-projection loss keeps its saved
# gradient while its backward writes the points' gradient) reuses both.
_GRAD_CACHE_SLOTS = 2
_grad_lock = threading.Lock()
_grad_storage: list[torch.UntypedStorage] = []  # most recently handed out first
# torch's storage reference count (private API; pinned torch): without it there is no cache.
_use_count = getattr(torch._C, "_storage_Use_Count", None)


def _grad_cache_on() -> bool:
    # Off while the profiler runs: memory measurements (benchmarks/_memory.py, tests/ops/test_memory.py)
    # count the gradient allocation of every step, as a user without the cache would see it.
    return (_use_count is not None and os.environ.get("FASTPOSE_GRAD_CACHE", "1") != "0"
            and not torch._C._autograd._profiler_enabled())


def cached_empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, backend: str) -> Tensor:
    """``torch.empty(shape, dtype=dtype, device=device)``, on the CPU from a cached buffer when one is free.

    For CPU buffers of at least 4 MiB, the storage of an earlier call is reused when nothing else
    references it any more (its storage reference count is 1: only this cache holds it; a gradient
    the caller still holds, any view of it, ``x.grad`` of a leaf, a tensor saved for a backward, all
    keep it referenced and force a fresh buffer, which then takes a slot). The returned tensor is a
    new tensor object, so autograd's gradient accumulation can still adopt it as ``.grad`` without a
    copy. Callers write every element. Thread-safe: the check and the hand-out happen under a lock.
    """
    numel = math.prod(shape)
    nbytes = numel * dtype.itemsize
    if backend != "cpu" or torch.device(device).type != "cpu" or nbytes < _GRAD_CACHE_MIN_BYTES \
            or not _grad_cache_on():
        return torch.empty(shape, dtype=dtype, device=device)
    with _grad_lock:
        free = [s for s in _grad_storage if s.nbytes() == nbytes and _use_count(s._cdata) == 1]
        if free:
            st = free[0]
            _grad_storage.remove(st)
        else:
            st = torch.empty(numel, dtype=dtype).untyped_storage()  # a fresh buffer, then cached
        _grad_storage.insert(0, st)
        del _grad_storage[_GRAD_CACHE_SLOTS:]
        return torch.empty(0, dtype=dtype).set_(st, 0, shape)


def grad_buffer(x: Tensor, backend: str) -> Tensor:
    """An uninitialised contiguous tensor of ``x``'s shape and dtype for a backward kernel to fill
    (:func:`cached_empty`)."""
    return cached_empty(tuple(x.shape), x.dtype, x.device, backend)


def release_grad_cache() -> None:
    """Drop the cached gradient buffers (their memory is freed once no tensor uses them)."""
    with _grad_lock:
        _grad_storage.clear()
