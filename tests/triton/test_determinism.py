"""Triton results do not depend on the configuration an autotuner would pick (issue 12, item 5).

The autotuner picks a configuration by timing, so two processes may pick differently. The volume
forward kernels reduce (BLOCK_R = TILE // BLOCK_W per-row partial sums), so they run a single
fixed configuration; the backward kernels are elementwise and keep autotuning, which is safe only
if their tile changes no bit. Both facts are checked here: the forward kernels have exactly one
configuration, and each backward kernel, run with two different configurations, returns the same
bits. (Under the interpreter the launch configuration is replaced by hand; on a GPU the same
comparison runs in tests/gpu.)
"""

from __future__ import annotations

import pytest
import torch

import fastpose.reference as R  # noqa: F401  (import order: fastpose before the kernels)
from tests.triton._inputs import joints_for, volume

triton = pytest.importorskip("triton")

SHAPE = (1, 2, 5, 9, 70)  # W = 70 > 64: a 128-wide column tile with a masked tail; R = 45 rows


def _with_configs(kernel, configs, fn):
    """Run ``fn()`` with the autotuned ``kernel`` restricted to ``configs`` (its cache cleared)."""
    saved = kernel.configs
    kernel.configs = configs
    kernel.cache.clear()
    try:
        return fn()
    finally:
        kernel.configs = saved
        kernel.cache.clear()


def test_forward_reductions_run_one_fixed_configuration(K):
    for kernel in (K.soft_argmax._soft_argmax_fwd_kernel, K.heatmap_mse._heatmap_mse_fwd_kernel,
                   K.soft_argmax_heatmap_mse._fused_fwd_kernel):
        assert len(kernel.configs) == 1, kernel
        assert kernel.configs[0].kwargs["TILE"] == K._common.REDUCE_CONFIG["TILE"]


@pytest.mark.parametrize("which", ["soft_argmax", "heatmap_mse", "fused"])
def test_backward_bits_do_not_depend_on_the_tile(K, device, which):
    gen = torch.Generator().manual_seed(9)
    x = volume(gen, SHAPE, scale=2.0, device=device)
    mu, w = joints_for(gen, SHAPE, device=device)
    mu, w = mu.float(), w.float()
    g_coords = torch.randn((SHAPE[0], SHAPE[1], 3), generator=gen).to(device)
    if which == "soft_argmax":
        kernel = K.soft_argmax._soft_argmax_bwd_kernel
        _, stats = K.soft_argmax.soft_argmax_forward(x)
        run = lambda: K.soft_argmax.soft_argmax_backward(g_coords, x, stats)  # noqa: E731
    elif which == "heatmap_mse":
        kernel = K.heatmap_mse._heatmap_mse_bwd_kernel
        g = torch.rand((SHAPE[0], SHAPE[1]), generator=gen).to(device)
        run = lambda: K.heatmap_mse.heatmap_mse_backward(g, x, mu, 1.7, w, "none")  # noqa: E731
    else:
        kernel = K.soft_argmax_heatmap_mse._fused_bwd_kernel
        _, _, stats = K.soft_argmax_heatmap_mse.soft_argmax_heatmap_mse_forward(x, mu, 1.7, w)
        gm = torch.tensor(0.8, device=device)
        run = lambda: K.soft_argmax_heatmap_mse.soft_argmax_heatmap_mse_backward(  # noqa: E731
            g_coords, gm, x, mu, 1.7, w, stats)
    small = [triton.Config({"TILE": 256}, num_warps=2)]  # BLOCK_R = 2 rows of 128 per step
    large = [triton.Config({"TILE": 4096}, num_warps=8)]  # BLOCK_R = 32 rows per step
    a = _with_configs(kernel, small, run)
    b = _with_configs(kernel, large, run)
    assert torch.isfinite(a).all()
    assert torch.equal(a, b), f"{which}: the backward's bits depend on the tile"


def test_forward_bits_would_depend_on_the_tile(K, device):
    """Why the forwards are not autotuned, and proof that the comparison above can see a tile
    dependence: the same heatmap MSE forward run with two tiles sums in two orders and differs in
    its last bits (same value up to rounding); the fixed configuration repeats its bits."""
    gen = torch.Generator().manual_seed(10)
    shape = (1, 1, 16, 16, 64)
    x = volume(gen, shape, scale=1.0, device=device)
    mu, w = joints_for(gen, shape, device=device)
    kernel = K.heatmap_mse._heatmap_mse_fwd_kernel
    run = lambda: K.heatmap_mse.heatmap_mse_forward(x, mu.float(), 1.7, w.float(), "sum")  # noqa: E731
    a = _with_configs(kernel, [triton.Config({"TILE": 64}, num_warps=1)], run)
    b = _with_configs(kernel, [triton.Config({"TILE": 4096}, num_warps=8)], run)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=0)
    if device == "cpu":  # the interpreter is exact numpy: these two tiles are known to differ
        assert not torch.equal(a, b)
    assert torch.equal(run(), run())
