"""soft_argmax_3d (volumetric heatmaps B x 18 x 64^3) and soft_argmax_2d (B x 18 x 64 x 64).

Providers, modes, shapes and figures: see ``benchmarks/_cases.py`` and ``benchmarks/_providers.py``; parametrised by
``benchmarks/conftest.py`` from ``OPS``.
"""

from benchmarks._runner import BenchItem, run_item

OPS = ("soft_argmax_3d", "soft_argmax_2d")


def test_bench(benchmark, bench_item: BenchItem):
    run_item(benchmark, bench_item)
