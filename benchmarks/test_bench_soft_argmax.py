"""soft_argmax_3d (volumetric heatmaps B x 18 x 64^3) and soft_argmax_2d (32 x 18 x 64 x 64).

Peer-style providers (``benchmarks/_peers.py``): 3DMPPE ``main/model.py: soft_argmax`` for 3D,
MMPose integral regression (flat softmax + linear expectation) for 2D, eager and compiled; the L1
loss on the coordinates is the same small op for every provider (its gradient is the step's
coordinate cotangent). Issue-14 target measured here: soft_argmax_2d forward+backward >= 2x the
compiled peer (CPU, 2 threads). Providers, modes, shapes and figures: see ``benchmarks/_cases.py``
and ``benchmarks/_providers.py``; parametrised by ``benchmarks/conftest.py``
from the ops declared with stem ``soft_argmax`` (``fastpose/ops/_spec.py``).
"""

from benchmarks._runner import BenchItem, run_item


def test_bench(benchmark, bench_item: BenchItem):
    run_item(benchmark, bench_item)
