"""heatmap_mse_3d (B x 18 x 64^3 against on-the-fly Gaussian targets, reduction "mean", per-joint
weights) and heatmap_mse_2d (32 x 18 x 64 x 64).

Peer-style providers (``benchmarks/_peers.py``): MMPose ``KeypointMSELoss`` with target weights
against a materialised unbiased Gaussian target -- precomputed (``peer``), generated in the step
(``peer+target``), and the generation alone (``peer-target``); each eager and compiled.
Issue-14 target measured here: heatmap_mse_2d forward+backward >= 2x the compiled peer (CPU, 2
threads). Providers, modes, shapes and figures: see ``benchmarks/_cases.py`` and
``benchmarks/_providers.py``; parametrised by ``benchmarks/conftest.py``
from the ops declared with stem ``heatmap_mse`` (``fastpose/ops/_spec.py``).
"""

from benchmarks._runner import BenchItem, run_item


def test_bench(benchmark, bench_item: BenchItem):
    run_item(benchmark, bench_item)
