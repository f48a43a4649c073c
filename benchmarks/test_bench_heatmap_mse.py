"""heatmap_mse_3d (B x 18 x 64^3 against on-the-fly Gaussian targets, reduction "mean", per-joint
weights) and heatmap_mse_2d (B x 18 x 64 x 64).

Providers, modes, shapes and figures: see ``benchmarks/_cases.py`` and ``benchmarks/_providers.py``; parametrised by
``benchmarks/conftest.py`` from ``OPS``.
"""

from benchmarks._runner import BenchItem, run_item

OPS = ("heatmap_mse_3d", "heatmap_mse_2d")


def test_bench(benchmark, bench_item: BenchItem):
    run_item(benchmark, bench_item)
