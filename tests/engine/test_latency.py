"""The latency harness: statistics, the side-by-side table, JSON, and the command line."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch

from fastpose import cli
from fastpose.engine.latency import LatencyResult, format_table, measure, percentile, run_latency
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
        # throughput comes from the median, like the speed-up column (was batch / mean before)
        assert r["items_per_call"] == b
        assert r["throughput"] == pytest.approx(b / (r["p50_ms"] / 1e3))
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


def test_latency_cli_rejects_unknown_engine(capsys):
    # argument errors: one line naming the flag, exit status 2 (fastpose.cli turns argparse's exit into it)
    assert cli.main(["latency", "--model", "spgnet", "--engine", "eager,warp"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--engine" in err and "'eager,warp'" in err
    assert cli.main(["latency", "--model", "spgnet", "--batch", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--batch: expected sizes >= 1" in err


def _report(rows: dict[str, list[float]], batch: int = 32) -> dict:
    results = []
    for engine, lat in rows.items():
        r = LatencyResult(engine, "spgnet", "fp32", "cpu", batch, 0, len(lat), unit="frames/s", items_per_call=batch)
        r.record(lat)
        results.append(r.to_dict())
    return {"model": "spgnet", "precision": "fp32", "device": "cpu", "threads": 1, "iters": 5, "warmup": 0,
            "statistic": "median", "baseline": "eager", "results": results}


def _table_rows(table: str) -> dict[str, tuple[float, float]]:
    """engine -> (frames/s, speed-up) parsed from the printed table."""
    out = {}
    for line in table.splitlines():
        parts = line.split()
        if len(parts) == 7 and parts[0].isdigit():
            out[parts[1]] = (float(parts[5]), float(parts[6].rstrip("x")))
    return out


def test_table_columns_agree_and_name_the_statistic():
    """A skewed eager run (one slow outlier drags its mean to 3x its median) against a steady engine:
    every column must follow the median, so throughput ratio == speed-up."""
    report = _report({"eager": [10.0, 10.0, 10.0, 10.0, 110.0], "onnx": [5.0, 5.0, 5.0, 5.0, 5.0],
                      "aoti": [20.0, 20.0, 20.0, 20.0, 20.0]})
    table = format_table(report)
    assert "from the median latency" in table and "frames/s (p50)" in table
    rows = _table_rows(table)
    assert set(rows) == {"eager", "onnx", "aoti"}
    assert rows["eager"] == (pytest.approx(3200.0), 1.0)  # 32 frames / 10 ms median
    assert rows["onnx"][1] == pytest.approx(2.0) and rows["aoti"][1] == pytest.approx(0.5)
    for engine, (fps, speed) in rows.items():
        assert fps / rows["eager"][0] == pytest.approx(speed, rel=1e-2), engine


def test_table_agrees_on_a_real_run():
    report = run_latency("spgnet", ["eager", "onnx"], [4], config=TINY["spgnet"], warmup=1, iters=5, threads=1)
    rows = _table_rows(format_table(report))
    assert set(rows) == {"eager", "onnx"}
    assert rows["onnx"][0] / rows["eager"][0] == pytest.approx(rows["onnx"][1], rel=2e-2)


# ------------------------------------------------------------------------------ fastpose latency FILE
@pytest.fixture(scope="module")
def spgnet_onnx(tmp_path_factory):
    from fastpose.engine import deployable
    from fastpose.engine.onnx import export_onnx

    path = tmp_path_factory.mktemp("latfile") / "s.onnx"
    torch.manual_seed(0)
    export_onnx(deployable("spgnet", config=TINY["spgnet"]), path, max_batch=16)
    return path


def test_latency_file_uses_batch_flag_or_metadata_default(spgnet_onnx, tmp_path, capsys):
    out = tmp_path / "f.json"
    rc = cli.main(["latency", str(spgnet_onnx), "--batch", "2,3", "--warmup", "1", "--iters", "3", "--threads", "1",
                   "--json", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    report = json.loads(out.read_text())
    assert [(r["engine"], r["batch"]) for r in report["results"]] == [("onnx", 2), ("onnx", 3)]
    assert report["files"][0]["sizes_from"] == {"batch": "--batch"}
    assert "batch 2/3 (--batch)" in cap.err and "vs s.onnx" in cap.out
    # no --batch: the metadata's default (1), and the run says so
    rc = cli.main(["latency", str(spgnet_onnx), "--warmup", "0", "--iters", "2", "--threads", "1", "--json", str(out)])
    cap = capsys.readouterr()
    assert rc == 0 and "batch 1 (metadata default)" in cap.err
    assert [r["batch"] for r in json.loads(out.read_text())["results"]] == [1]


def test_latency_file_without_fastpose_metadata_reads_the_graph(spgnet_onnx, tmp_path, capsys):
    """A file stripped of fastpose's metadata: shapes come from the ONNX graph itself."""
    import onnx

    model = onnx.load(str(spgnet_onnx))
    del model.metadata_props[:]
    path = tmp_path / "plain.onnx"
    onnx.save(model, str(path))
    rc = cli.main(["latency", str(path), "--batch", "2", "--warmup", "0", "--iters", "2", "--threads", "1"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "plain.onnx" in cap.out and "batch 2 (--batch)" in cap.err


def _one_line_error(capsys, argv, match):
    rc = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("fastpose latency: "), err
    assert match in err, err
    return err


def test_latency_file_errors_are_one_line(spgnet_onnx, tmp_path, capsys):
    _one_line_error(capsys, ["latency", str(tmp_path / "missing.onnx")], "missing.onnx does not exist")
    (tmp_path / "m.tflite").write_bytes(b"x")
    _one_line_error(capsys, ["latency", str(tmp_path / "m.tflite")], "expected one of ['.engine', '.onnx', '.plan', '.pt2']")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(spgnet_onnx.read_bytes()[:300])
    _one_line_error(capsys, ["latency", str(bad)], "cannot be loaded")
    (tmp_path / "bad.pt2").write_bytes(b"PK\x03\x04 not a zip")
    _one_line_error(capsys, ["latency", str(tmp_path / "bad.pt2")], "cannot be loaded")
    _one_line_error(capsys, ["latency", str(spgnet_onnx), "--frames", "100"], "has no dynamic 'frames' dimension")
    _one_line_error(capsys, ["latency", str(spgnet_onnx), "--batch", "17"], "accepts batch in [1, 16], received [17]")
    _one_line_error(capsys, ["latency", str(spgnet_onnx), "--model", "spgnet"], "not both")
    _one_line_error(capsys, ["latency"], "nothing to time")
    _one_line_error(capsys, ["latency", str(spgnet_onnx), "--video"], "--video: only with --model")
    _one_line_error(capsys, ["latency", "--model", "volumetric", "--video"], "spgnet only")
    assert bad.read_bytes() == spgnet_onnx.read_bytes()[:300]  # nothing rewritten


@pytest.mark.skipif(__import__("importlib").util.find_spec("tensorrt") is not None, reason="tensorrt is installed")
def test_latency_tensorrt_file_without_tensorrt(tmp_path, capsys):
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"\x00" * 64)
    _one_line_error(capsys, ["latency", str(plan)], "TensorRT is not installed")
    (tmp_path / "m.engine").write_bytes(b"\x00" * 64)
    _one_line_error(capsys, ["latency", str(tmp_path / "m.engine")], "TensorRT is not installed")


def test_latency_video_model_counts_frames(capsys):
    report = run_latency("spgnet", ["eager", "onnx"], [2], config=TINY["spgnet"], warmup=1, iters=2, threads=1,
                         video=True, frames=20)
    for r in report["results"]:
        assert r["error"] is None and r["model"] == "spgnet-video"
        assert r["sizes"] == {"batch": 2, "frames": 20} and r["items_per_call"] == 40
        assert r["throughput"] == pytest.approx(40 / (r["p50_ms"] / 1e3))
    assert "frames 20" in format_table(report)
    with pytest.raises(ValueError, match="argument 'frames'"):
        run_latency("spgnet", ["eager"], [1], config=TINY["spgnet"], frames=20)
