"""The latency harness: statistics, the side-by-side table, JSON, and the command line."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch

from fastpose import cli
from fastpose.engine.latency import format_table, measure, percentile, run_latency
from tests.engine._fixtures import TINY


def test_percentile_matches_numpy():
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 100):
        v = rng.exponential(size=n).tolist()
        for q in (0, 50, 90, 99, 100):
            assert percentile(v, q) == pytest.approx(float(np.percentile(v, q)), rel=1e-12)
    assert math.isnan(percentile([], 50))


def test_measure_counts_iterations_and_times_the_call():
    calls = []

    def fn(x):
        calls.append(1)
        time.sleep(0.002)
        return x

    lat = measure(fn, (torch.ones(1),), warmup=3, iters=5)
    assert len(calls) == 8 and len(lat) == 5
    assert all(1.5 <= t < 500 for t in lat), lat  # each call sleeps 2 ms
    with pytest.raises(ValueError, match="iters >= 1"):
        measure(fn, (torch.ones(1),), warmup=0, iters=0)


def test_run_latency_side_by_side_and_errors_per_engine():
    report = run_latency("spgnet", ["eager", "tensorrt"], [1, 3], config=TINY["spgnet"], warmup=1, iters=3)
    rows = {(r["engine"], r["batch"]): r for r in report["results"]}
    assert set(rows) == {("eager", 1), ("eager", 3), ("tensorrt", 1), ("tensorrt", 3)}
    for b in (1, 3):
        r = rows[("eager", b)]
        assert r["error"] is None and 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["throughput"] == pytest.approx(b / (r["mean_ms"] / 1e3))
        assert r["unit"] == "frames/s"
        # TensorRT cannot run here (no tensorrt and/or no GPU): the error is recorded, the run goes on
        assert rows[("tensorrt", b)]["error"] and rows[("tensorrt", b)]["p50_ms"] is None
    table = format_table(report)
    assert "eager" in table and "1.00x" in table and "tensorrt  error:" in table
    json.dumps(report)  # JSON-ready (NaN replaced by None)
    assert report["versions"]["torch"] == torch.__version__


def test_latency_cli_writes_json_and_table(tmp_path, capsys):
    out = tmp_path / "lat.json"
    rc = cli.main(["latency", "--model", "spgnet", "--config", json.dumps(TINY["spgnet"]), "--engine", "eager,onnx",
                   "--batch", "2", "--warmup", "1", "--iters", "3", "--threads", "1", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    report = json.loads(out.read_text())
    assert [r["engine"] for r in report["results"]] == ["eager", "onnx"]
    assert all(r["error"] is None and r["p50_ms"] > 0 for r in report["results"])
    assert report["threads"] == 1
    assert "onnx" in text and "vs eager" in text


def test_latency_cli_rejects_unknown_engine():
    with pytest.raises(SystemExit):
        cli.main(["latency", "--model", "spgnet", "--engine", "eager,warp"])
    with pytest.raises(SystemExit):
        cli.main(["latency", "--model", "spgnet", "--batch", "0"])
