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


def _probe(case: str, provider: str, ms: float, target: float | None = None, op: str = "heatmap_mse_2d") -> dict:
    info = {"suite": "interleaved_probe", "model": op, "config": case, "provider": provider,
            "device": "cpu", "threads": 2, "median_ms": ms, "baseline": provider == "peer-compiled"}
    if target is not None:
        info["target"] = target
    return {"name": f"perf_probe[{op}-{case}-{provider}]", "stats": {"median": ms / 1e3}, "extra_info": info}


def test_interleaved_probe_targets_get_a_verdict(tmp_path):
    """perf_probe --json records: the fastpose row's ratio to the compiled peer of the same case,
    judged against the target it carries (one met, one not)."""
    results = _write(tmp_path, [
        _probe("paper-a", "peer-compiled", 1.2), _probe("paper-a", "cpu", 0.8, target=2.0),
        _probe("paper-b", "peer-compiled", 3.0), _probe("paper-b", "cpu", 1.0, target=2.0),
        # another op with the same case id: its own baseline, not heatmap_mse_2d's
        _probe("paper-a", "peer-compiled", 4.0, op="soft_argmax_2d"), _probe("paper-a", "cpu", 1.0, 2.0, "soft_argmax_2d"),
    ])
    text = report.render(str(results), str(tmp_path / "BENCHMARKS.md"))
    rows = [line for line in text.splitlines() if line.startswith("| CPU interleaved probe")]
    assert len(rows) == 3, rows
    c = next(r for r in rows if "`soft_argmax_2d`" in r)
    assert "4.00x" in c and "**met**" in c
    a = next(r for r in rows if "paper-a" in r and "`heatmap_mse_2d`" in r)
    b = next(r for r in rows if "paper-b" in r)
    assert "1.50x" in a and "**not met**" in a  # 1.2 / 0.8
    assert "3.00x" in b and "**met**" in b
    assert "### `interleaved_probe` on `cpu-test`" in text
