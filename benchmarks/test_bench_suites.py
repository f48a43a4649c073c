"""The op benchmark suites and their byte counts come from the op declarations (fastpose/ops/_spec.py).

Not a benchmark itself: checks that every declared op is benchmarked by exactly one suite
(``test_bench_<stem>.py``, found by ``benchmarks/conftest.py``), and the roofline's byte counts
(:func:`benchmarks._memory.bytes_moved`) against sizes worked out by hand from the shapes.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from benchmarks._cases import Case
from benchmarks._memory import bytes_moved
from benchmarks.conftest import SUITE_PREFIX, pytest_generate_tests, suite_ops
from fastpose.ops._spec import SPECS

HERE = Path(__file__).parent


def test_every_declared_op_has_exactly_one_suite():
    stems = {p.stem.removeprefix(SUITE_PREFIX) for p in HERE.glob(f"{SUITE_PREFIX}*.py")}
    covered = [op for stem in stems for op in suite_ops(stem)]
    assert sorted(covered) == sorted(SPECS), "ops without a benchmark suite (or in two)"
    assert suite_ops("soft_argmax_heatmap_mse") == ("soft_argmax_heatmap_mse_3d", "soft_argmax_heatmap_mse_2d")


def test_a_suite_with_an_unknown_stem_is_refused():
    """A suite named after no declared stem (and without OPS) is a usage error naming the stems."""
    module = types.ModuleType("benchmarks.test_bench_nosuchop")
    metafunc = types.SimpleNamespace(fixturenames=["bench_item"], module=module, config=None)
    with pytest.raises(pytest.UsageError, match="soft_argmax_heatmap_mse"):
        pytest_generate_tests(metafunc)


B, J, E = 8, 18, 64
VOL = B * J * E**3 * 4  # one float32 volume, bytes


@pytest.mark.parametrize(("op", "volumes"), [
    ("soft_argmax_heatmap_mse_3d", 3),  # forward read + backward read and gradient write
    ("soft_argmax_3d", 3),
    ("heatmap_mse_3d", 2),  # scalar loss: the gradient is formed with the one read
])
def test_volume_bytes_forward_backward(op, volumes):
    case = Case(op, "paper", (("B", B), ("J", J), ("D", E), ("H", E), ("W", E)))
    got = bytes_moved(case, "forward+backward")
    # the small terms (joints, weights, coordinates, statistics) are below 0.01 % of a volume
    assert volumes * VOL <= got <= volumes * VOL * 1.0001, (got, volumes * VOL)


def test_points_bytes_count_the_per_frame_camera():
    n, t, j = 16, 27, 17
    dims = (("N", n), ("T", t), ("J", j))
    seq = bytes_moved(Case("project_to_2d", "paper", dims, camera="sequence"), "forward")
    frame = bytes_moved(Case("project_to_2d", "paper", dims, camera="frame"), "forward")
    # points 3 floats in, uv 2 floats out, camera 9 floats per window or per frame
    assert seq == n * t * j * (3 + 2) * 4 + n * 9 * 4
    assert frame - seq == (n * t - n) * 9 * 4
    # the (unweighted) loss: points and keypoints read, gradient written, one camera per window
    loss = bytes_moved(Case("reprojection_loss", "paper", dims, camera="sequence"), "forward+backward")
    assert loss == n * t * j * (2 * 3 + 2) * 4 + n * 9 * 4 + 4
