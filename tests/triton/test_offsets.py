"""64-bit element offsets.

A seed-size batch (B=32, J=18, 64^3) holds 1.5e8 voxels; a tensor of a few such batches (or a
bigger volume) passes 2^31 elements, where 32-bit offsets wrap. The offset arithmetic of every
volume kernel lives in ``_tile_offsets``; this probe evaluates it for volume indices whose offsets
exceed 2^32 (the interpreter computes in the kernel's integer types, so a 32-bit product would
wrap here too, as it would on the GPU).
"""

from __future__ import annotations

import pytest
import torch

from tests.triton.conftest import _import_kernels

triton = pytest.importorskip("triton")
tl = triton.language

# A module global: @triton.jit functions resolve the names they call in their module's globals.
_tile_offsets = _import_kernels()._common._tile_offsets


@triton.jit
def _offsets_probe(out_ptr, bj0, R, W, BLOCK_R: tl.constexpr, BLOCK_W: tl.constexpr):
    bj = bj0 + tl.program_id(0).to(tl.int64)  # the volume index, int64 as the kernels form it
    rows = R - BLOCK_R + tl.arange(0, BLOCK_R)  # the last rows of the volume
    cols = W - BLOCK_W + tl.arange(0, BLOCK_W)  # the last columns
    offs = _tile_offsets(bj, rows, cols, R, W)
    k = tl.arange(0, BLOCK_R)[:, None] * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
    tl.store(out_ptr + tl.program_id(0) * BLOCK_R * BLOCK_W + k, offs)


def test_tile_offsets_are_64_bit(device):
    rows, width = 64 * 64, 64  # a 64^3 volume: R = D*H rows of W voxels
    bj0 = 32 * 18 * 30  # 17280 volumes in: offsets ~4.5e9 > 2^32
    n_prog, br, bw = 3, 4, 8
    out = torch.full((n_prog * br * bw,), -1, dtype=torch.int64, device=device)
    _offsets_probe[(n_prog,)](out, bj0, rows, width, BLOCK_R=br, BLOCK_W=bw)
    expected = [
        (bj * rows + r) * width + c
        for bj in range(bj0, bj0 + n_prog)
        for r in range(rows - br, rows)
        for c in range(width - bw, width)
    ]
    assert min(expected) > 2**32
    assert out.cpu().tolist() == expected
