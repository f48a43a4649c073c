"""project_to_2d and reprojection_loss on SPGNet's lifting batch: 1024 windows x 243 frames x 17
joints with one real Human3.6M camera per window (and, at the paper shape, the same camera repeated
per frame); swept over frames per window (1, 27, 81, 243).

Peer-style providers (``benchmarks/_peers.py``): VideoPose3D ``common/camera.py: project_to_2d``
(+ ``common/loss.py: mpjpe`` for the loss), called as VideoPose3D calls it: camera (N, 9) for one
camera per sequence, points flattened to (N*T, J, 3) with cameras (N*T, 9) for one per frame.
Issue-14 target measured here: reprojection_loss forward+backward, one camera per sequence,
>= 8x the compiled peer on the CPU (2 threads). Providers, modes, shapes and figures:
``benchmarks/_cases.py``, ``benchmarks/_providers.py``; parametrised by ``benchmarks/conftest.py``
from the ops declared with stem ``projection`` (``fastpose/ops/_spec.py``).
"""

from benchmarks._runner import BenchItem, run_item


def test_bench(benchmark, bench_item: BenchItem):
    run_item(benchmark, bench_item)
