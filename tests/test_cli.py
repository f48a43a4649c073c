"""The command line: `fastpose info`, `fastpose bench`, and the benchmark report renderer."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fastpose.cli import main
from fastpose.ops import _dispatch

ROOT = Path(__file__).resolve().parents[1]


def test_info_reports_build_and_backends(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    ext = info["extension"]
    assert set(ext) >= {"loaded", "build_info", "error", "fix"}
    if ext["loaded"]:
        assert ext["error"] is None
        assert {"compiler", "openmp", "cuda"} <= set(ext["build_info"]), ext["build_info"]
    else:  # a missing extension must say why and how to fix it
        assert ext["error"] and ext["fix"]
    assert set(info["backends"]) == set(_dispatch.OPS)
    for op, chosen in info["default_backend_float32"]["cpu"].items():
        assert chosen in info["backends"][op]


def test_info_human_readable(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "extension fastpose._C" in out
    for op in _dispatch.OPS:
        assert op in out


def test_bench_small_table_lists_every_op_and_backend(capsys):
    assert main(["bench", "--size", "small", "--repeats", "1", "--device", "cpu", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    rows = rows["rows"] if isinstance(rows, dict) else rows
    seen = {(r["op"], r["backend"]) for r in rows}
    for op in _dispatch.OPS:
        assert (op, "reference") in seen
        if "cpu" in _dispatch.available_backends(op):
            assert (op, "cpu") in seen
    assert all(r["status"] in ("ok",) or r["status"].startswith("not supported") for r in rows), rows


def test_report_renders_stored_results(tmp_path):
    src = ROOT / "benchmarks" / "results"
    if not any(src.glob("*/*.json")):
        pytest.fail("no stored benchmark results under benchmarks/results/")
    results = tmp_path / "results"
    shutil.copytree(src, results)
    out = tmp_path / "BENCHMARKS.md"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.report", "--results", str(results), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "soft_argmax_heatmap_mse_3d" in text
    assert "not yet measured on a GPU" in text or "gpu" in text.lower()
