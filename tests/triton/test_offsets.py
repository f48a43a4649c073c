"""64-bit element offsets.

A seed-size batch (B=32, J=18, 64^3) holds 1.5e8 voxels; a few such volumes in one tensor pass
2^31 elements, where 32-bit offsets wrap. The offset arithmetic of every volume kernel lives in
``_tile_offsets``; this probe evaluates it for volume indices whose offsets exceed 2^31 and 2^32
(the interpreter computes in the kernel's integer types, so a 32-bit product would wrap here too).
"""

from __future__ import annotations

import pytest
import torch

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")

# Imported via the fixture package at run time; the probe must be defined at import time, so it
# reaches _tile_offsets through a module-level global set by the fixture below.
_TILE_OFFSETS = {}


def _probe_factory(tile_offsets):
    @triton.jit
    def _offsets_probe(out_ptr, bj0, R, W, BLOCK_R: tl.constexpr, BLOCK_W: tl.constexpr):
        # volume index = bj0 + program id, as int64 exactly as the kernels form it
        bj = bj0 + tl.program_id(0).to(tl.int64)
        rows = R - BLOCK_R + tl.arange(0, BLOCK_R)  # the last rows of the volume
        cols = W - BLOCK_W + tl.arange(0, BLOCK_W)  # the last columns
        offs = tile_offsets(bj, rows, cols, R, W)
        k = tl.program_id(0) * BLOCK_R * BLOCK_W + tl.arange(0, BLOCK_R)[:, None] * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
        tl.store(out_ptr + k, offs)

    return _offsets_probe


def test_tile_offsets_are_64_bit(K, device):
    probe = _probe_factory(K._common._tile_offsets)
    rows, width = 64 * 64, 64  # a 64^3 volume: R = D*H rows of W
    bj0 = 32 * 18 * 5 - 2  # volumes of the 6th seed-size batch: offsets around 7.5e8 * ... > 2^31
    n_prog, br, bw = 3, 4, 8
    out = torch.full((n_prog * br * bw,), -1, dtype=torch.int64, device=device)
    probe[(n_prog,)](out, bj0, rows, width, BLOCK_R=br, BLOCK_W=bw)
    expected = [
        (bj * rows + r) * width + c
        for bj in range(bj0, bj0 + n_prog)
        for r in range(rows - br, rows)
        for c in range(width - bw, width)
    ]
    assert max(expected) > 2**32
    assert out.cpu().tolist() == expected
