"""The fused heads: the volumetric soft_argmax_heatmap_mse_3d (B x 18 x 64^3) and the 2D
soft_argmax_heatmap_mse_2d (32 x 18 x 64 x 64): coordinates and heatmap MSE from one read of the
logits, one backward pass. The 3D head is also swept over volume size and batch.

Peer-style providers (``benchmarks/_peers.py``): 3DMPPE soft-argmax (MMPose integral regression for
the 2D head) + MMPose ``KeypointMSELoss``
against a materialised Gaussian target (precomputed: ``peer``; generated in the step:
``peer+target``; the generation alone: ``peer-target``), eager and compiled. Issue-14 targets
measured here (CPU, 2 threads, forward+backward): >= 6x the compiled peer at B=8, 64^3 and >= 2x at
B=2, 32^3 (the volume sweep); GPU (B=32) >= 80% of copy bandwidth over the bytes that must move.
Providers, modes, shapes and figures: ``benchmarks/_cases.py``, ``benchmarks/_providers.py``;
parametrised by ``benchmarks/conftest.py`` from the ops declared with stem
``soft_argmax_heatmap_mse`` (``fastpose/ops/_spec.py``).
"""

from benchmarks._runner import BenchItem, run_item


def test_bench(benchmark, bench_item: BenchItem):
    run_item(benchmark, bench_item)
