"""project_to_2d and reprojection_loss on SPGNet's lifting batch: 1024 windows x 243 frames x 17
joints with one real Human3.6M camera per window; swept over frames per window (1, 27, 81, 243).

Issue target measured here: reprojection_loss forward+backward >= 10x reference eager on a GPU,
>= 3x on the CPU (2 threads). Providers, modes, shapes and figures: ``benchmarks/_cases.py`` and ``benchmarks/_providers.py``.
"""

from benchmarks._runner import BenchItem, run_item

OPS = ("project_to_2d", "reprojection_loss")


def test_bench(benchmark, bench_item: BenchItem):
    run_item(benchmark, bench_item)
