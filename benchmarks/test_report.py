"""The report's headline: fastpose's best backend against the peer-style rows, and a clear note
when a row the headline needs is missing (synthetic results; no benchmark runs here)."""

from __future__ import annotations

import json

from benchmarks import report


def _bench(op: str, case: str, provider: str, ms: float, shape: dict, kind: str = "paper",
           sweep_value: int | None = None) -> dict:
    return {"name": f"{op}-{case}-{provider}", "stats": {"median": ms / 1e3, "min": ms / 1e3, "rounds": 5},
            "extra_info": {"op": op, "case": case, "kind": kind, "shape": shape, "dtype": "float32",
                           "mode": "forward+backward", "provider": provider, "device": "cpu",
                           "median_ms": ms, "min_ms": ms, "bytes": 1 << 20, "sweep_value": sweep_value}}


def _write(tmp_path, benchmarks: list[dict]):
    folder = tmp_path / "results" / "cpu-test"
    folder.mkdir(parents=True)
    data = {"datetime": "2026-12-01T00:00:00", "machine_info": {"fastpose_device": "cpu", "torch_threads": 2},
            "commit_info": {}, "benchmarks": benchmarks}
    (folder / "bench.json").write_text(json.dumps(data))
    return tmp_path / "results"


def test_headline_is_against_the_peers_and_names_missing_rows(tmp_path):
    head = {"B": 8, "J": 18, "D": 64, "H": 64, "W": 64}
    img = {"B": 32, "J": 18, "H": 64, "W": 64}
    results = _write(tmp_path, [
        _bench("soft_argmax_heatmap_mse_3d", "paper-a", "peer", 12.0, head),
        _bench("soft_argmax_heatmap_mse_3d", "paper-a", "peer-compiled", 6.0, head),
        _bench("soft_argmax_heatmap_mse_3d", "paper-a", "reference", 40.0, head),
        _bench("soft_argmax_heatmap_mse_3d", "paper-a", "cpu", 1.5, head),
        # no peer rows for this op: the report must say so instead of quoting a ratio
        _bench("soft_argmax_2d", "paper-b", "reference", 3.0, img),
        _bench("soft_argmax_2d", "paper-b", "cpu", 1.0, img),
    ])
    out = tmp_path / "BENCHMARKS.md"
    text = report.render(str(results), str(out))
    row = next(line for line in text.splitlines() if line.startswith("| `soft_argmax_heatmap_mse_3d` | `cpu-test`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[-2:] == ["8.00x", "4.00x"], row  # 12 / 1.5 and 6 / 1.5, not the reference's 40 / 1.5
    assert "26.67x" not in row
    assert "`soft_argmax_2d` on `cpu-test`: no `peer` row" in text
    assert "`soft_argmax_2d` on `cpu-test`: no `peer-compiled` row" in text
    target = next(line for line in text.splitlines() if "fused head, B=8, J=18, 64^3 >= 6x peer compiled" in line)
    assert "4.00x (cpu)" in target and "**not met**" in target
    target_2d = next(line for line in text.splitlines() if "soft_argmax_2d, B=32" in line)
    assert "missing" in target_2d
