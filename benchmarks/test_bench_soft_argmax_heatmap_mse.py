"""The fused volumetric head soft_argmax_heatmap_mse_3d (B x 18 x 64^3): coordinates and heatmap
MSE from one read of the logits, one backward pass. Also swept over volume size and batch.

Issue targets measured here: CPU (2 threads, B=8) forward+backward >= 3x reference eager and peak
memory <= 1/4 of the reference's; GPU (B=32) >= 80% of copy bandwidth over the bytes that must
move and >= 5x reference eager. Providers, modes, shapes and figures: ``benchmarks/_cases.py`` and ``benchmarks/_providers.py``.
"""

from benchmarks._runner import BenchItem, run_item

OPS = ("soft_argmax_heatmap_mse_3d",)


def test_bench(benchmark, bench_item: BenchItem):
    run_item(benchmark, bench_item)
