"""Row-chunked evaluation shared by the volumetric references (soft-argmax, heatmap MSE, fused head).

A volume of shape (B, J, *S) is B*J independent *rows* of N_vox = prod(S) voxels. The references
evaluate their per-voxel formulas on chunks of whole rows, so that every temporary the size of a
chunk (the Gaussian target, the differences, the softmax numerators, a float32 copy of float16
input) stays bounded by :data:`CHUNK_ELEMS` values, whatever B*J is. Peak memory above the inputs is
then a few chunks in the forward, and the gradient (one input-sized volume) plus a few chunks in
the backward.

The chunking depends only on the shape, so the results are the same from call to call. Under
tracing with symbolic sizes (``torch.export`` with a dynamic batch, where a Python loop over a
symbolic count would specialise the batch), the whole tensor is one chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

__all__ = ["CHUNK_ELEMS", "MIN_CHUNKS", "acc_dtype", "eager", "map_rows", "row_chunks"]

# Values per chunk: at most 2^20 (4 MiB of float32, i.e. 4 rows of a 64^3 volume), and at most
# 1/MIN_CHUNKS of the rows, so that a chunk is small against the volume at every size (a few chunk-
# sized temporaries then cost at most ~0.2-0.25 of a volume). Large enough that the per-chunk
# overhead (~10-50 us of torch ops) is noise against the chunk's work.
CHUNK_ELEMS = 1 << 20
MIN_CHUNKS = 16


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype of every op: float64 stays float64; float32, float16 and bfloat16 are
    computed in float32 (half-precision sums over ~1e5 voxels would lose every digit)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def eager(t: torch.Tensor) -> bool:
    """Whether in-place updates of a fresh temporary ``t`` are safe and useful: a plain tensor
    outside any tracing. Under torch.export / make_fx (FakeTensor, FunctionalTensor subclasses)
    or torch.compile the graph must stay functional, so the out-of-place form is used there."""
    return type(t) is torch.Tensor and not torch.compiler.is_compiling()


def _symbolic(t: torch.Tensor) -> bool:
    return any(isinstance(s, torch.SymInt) for s in t.shape)


def row_chunks(rows: int, n_vox: int, like: torch.Tensor) -> Iterator[tuple[int, int]]:
    """Yield ``(r0, r1)`` row ranges covering ``[0, rows)``, each of at most ``CHUNK_ELEMS``
    values and at most ``ceil(rows / MIN_CHUNKS)`` rows (at least one row). One range for an empty
    batch; one range if ``like`` has symbolic sizes. Reads the module attributes at call time, so
    tests can change them."""
    if _symbolic(like) or rows == 0:
        yield 0, rows
        return
    step = max(1, min(CHUNK_ELEMS // max(int(n_vox), 1), -(-rows // MIN_CHUNKS)))
    for r0 in range(0, rows, step):
        yield r0, min(rows, r0 + step)


def map_rows(fn: Callable[[int, int], torch.Tensor], rows: int, n_vox: int, like: torch.Tensor) -> torch.Tensor:
    """``torch.cat([fn(r0, r1) for each chunk])`` along dim 0 (no copy for a single chunk)."""
    parts = [fn(r0, r1) for r0, r1 in row_chunks(rows, n_vox, like)]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
