"""benchmarks/cuda_graphs.py: on the CPU its emulated path (static buffers refilled, replayed,
compared with eager) for every op on the ``cpu`` backend; on a GPU the real CUDA-graph capture of
every op on every GPU backend (``pytest -m gpu``, also run by ``benchmarks/gpu_run.sh``)."""

from __future__ import annotations

import pytest
import torch

from benchmarks import cuda_graphs
from benchmarks._cases import cases_for
from fastpose.ops import _dispatch


def test_emulated_replay_matches_eager_on_every_op():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        records = cuda_graphs.run_all("cpu", "tiny")
    finally:
        torch.set_num_threads(threads)
    assert {r["op"] for r in records} == set(_dispatch.OPS)
    failed = [r for r in records if "error" in r]
    assert not failed, failed
    assert all(r["mode"] == "emulated" and r["max_rel_diff"] <= 1e-6 for r in records if "skipped" not in r)


def test_a_replay_that_misses_the_fresh_inputs_fails(monkeypatch):
    """If the static inputs are not refilled, the replay computes the old step: it must fail."""
    monkeypatch.setattr(cuda_graphs, "_refill", lambda static, fresh: None)
    case = cases_for("soft_argmax_heatmap_mse_3d", "cpu", "tiny")[0]
    with pytest.raises(AssertionError, match="replay differs from eager"):
        cuda_graphs.capture_and_replay("soft_argmax_heatmap_mse_3d", "cpu", case, torch.device("cpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_capture_of_every_op_and_gpu_backend():
    records = cuda_graphs.run_all("cuda", "tiny")
    ran = [r for r in records if "mode" in r]
    assert ran, f"no GPU backend ran: {records}"
    failed = [r for r in records if "error" in r]
    assert not failed, failed
    assert all(r["mode"] == "cuda_graph" for r in ran)
