"""The fused volumetric head soft_argmax_heatmap_mse_3d (B x 18 x 64^3): coordinates and heatmap
MSE from one read of the logits, one backward pass. Also swept over volume size and batch.

Peer-style providers (``benchmarks/_peers.py``): 3DMPPE soft-argmax + MMPose ``KeypointMSELoss``
against a materialised Gaussian target (precomputed: ``peer``; generated in the step:
``peer+target``; the generation alone: ``peer-target``), eager and compiled. Issue-14 targets
measured here (CPU, 2 threads, forward+backward): >= 6x the compiled peer at B=8, 64^3 and >= 2x at
B=2, 32^3 (the volume sweep); GPU (B=32) >= 80% of copy bandwidth over the bytes that must move.
Providers, modes, shapes and figures: ``benchmarks/_cases.py``, ``benchmarks/_providers.py``.
"""

from benchmarks._runner import BenchItem, run_item
from fastpose.ops import _dispatch

# the 2D fused head joins when the op is registered (issue 12 adds it)
OPS = tuple(op for op in ("soft_argmax_heatmap_mse_3d", "soft_argmax_heatmap_mse_2d") if op in _dispatch.OPS)


def test_bench(benchmark, bench_item: BenchItem):
    run_item(benchmark, bench_item)
