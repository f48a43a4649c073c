"""Render ``BENCHMARKS.md`` (and one PNG per machine) from the stored benchmark JSON.

    python -m benchmarks.report [--results benchmarks/results] [--out BENCHMARKS.md]

Input: every ``benchmarks/results/<machine>/*.json`` written by pytest-benchmark's
``--benchmark-json`` from the suites of this folder (``extra_info`` holds op, case, mode, provider,
device time, bytes and peak memory; ``machine_info`` the machine, versions, copy bandwidth and git
revision). When a (machine, op, case, mode, provider) appears in several files the newest wins.

Output, per op and machine: the median time of each provider, its ratio to ``reference`` eager
and to ``reference`` compiled (how many times faster), achieved bandwidth over the bytes that must
move and its % of the machine's measured copy bandwidth (the roofline), and peak memory; the
sweeps as tables and, for the volume sweep, a log-log plot of time against volume edge per
provider (``benchmarks/results/<machine>/volume_sweep.png``). The issue targets are checked in a
table of their own. GPU rows without data say "not yet measured on a GPU".

Only the standard library is needed for the tables; the plot needs matplotlib (skipped with a note
when it is missing). Speed-ups are ratios measured side by side in one run on one machine.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
from collections import defaultdict
from dataclasses import dataclass

__all__ = ["Record", "load_results", "main", "render"]

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_ON_GPU = "not yet measured on a GPU"

OP_ORDER = ("soft_argmax_heatmap_mse_3d", "soft_argmax_3d", "heatmap_mse_3d", "soft_argmax_2d",
            "heatmap_mse_2d", "reprojection_loss", "project_to_2d")
PROVIDER_ORDER = ("reference", "reference-compiled", "cpu", "cuda", "triton")
MODE_ORDER = ("forward", "backward", "forward+backward")
_BACKENDS = ("cpu", "cuda", "triton")

# The performance targets of issues 3, 4 and 8 (forward+backward, paper shapes).
CPU_SPEEDUP_TARGET = 3.0
CPU_FUSED_MEMORY_TARGET = 0.25
GPU_FUSED_SPEEDUP_TARGET = 5.0
GPU_FUSED_ROOFLINE_TARGET = 0.80
GPU_REPROJECTION_SPEEDUP_TARGET = 10.0


@dataclass(frozen=True)
class Record:
    """One measured (machine, op, case, mode, provider)."""

    machine: str
    device: str
    op: str
    case: str
    kind: str
    dtype: str
    shape: tuple[tuple[str, int], ...]
    mode: str
    provider: str
    median_ms: float
    min_ms: float
    time_source: str
    rounds: int
    bytes: int
    peak_memory_bytes: int | None
    sweep_value: int | None
    datetime: str

    @property
    def shape_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.shape)


@dataclass
class Machine:
    name: str
    device: str
    info: dict
    commit: dict
    datetime: str
    files: list[str]

    @property
    def copy_bandwidth(self) -> float | None:
        bw = self.info.get("copy_bandwidth_Bps")
        return float(bw) if bw else None


def _record(machine: str, bench: dict, when: str) -> Record | None:
    x = bench.get("extra_info") or {}
    needed = ("op", "case", "mode", "provider")
    if not all(k in x for k in needed):
        return None  # not one of ours
    median_ms = x.get("median_ms")
    if median_ms is None:
        median_ms = bench["stats"]["median"] * 1e3
    return Record(
        machine=machine,
        device=x.get("device", "cpu"),
        op=x["op"],
        case=x["case"],
        kind=x.get("kind", ""),
        dtype=x.get("dtype", "float32"),
        shape=tuple((k, int(v)) for k, v in (x.get("shape") or {}).items()),
        mode=x["mode"],
        provider=x["provider"],
        median_ms=float(median_ms),
        min_ms=float(x.get("min_ms") or bench["stats"]["min"] * 1e3),
        time_source=x.get("time_source", "host_clock"),
        rounds=int(x.get("rounds") or bench["stats"].get("rounds", 0)),
        bytes=int(x.get("bytes") or 0),
        peak_memory_bytes=x.get("peak_memory_bytes"),
        sweep_value=x.get("sweep_value"),
        datetime=when,
    )


def load_results(results_dir: str) -> tuple[dict[str, Machine], list[Record], list[dict]]:
    """Machines, op records and other suites' records (``extra_info`` with a ``suite`` key, e.g.
    training steps and engines) under ``results_dir/<machine>/*.json``; the newest record wins."""
    machines: dict[str, Machine] = {}
    latest: dict[tuple, Record] = {}
    suites: dict[tuple, dict] = {}
    if not os.path.isdir(results_dir):
        return machines, [], []
    for name in sorted(os.listdir(results_dir)):
        folder = os.path.join(results_dir, name)
        if not os.path.isdir(folder):
            continue
        for fname in sorted(os.listdir(folder)):
            if not fname.endswith(".json"):
                continue
            path = os.path.join(folder, fname)
            try:
                with open(path) as f:
                    data = json.load(f)
            except (OSError, json.JSONDecodeError) as exc:
                print(f"benchmarks.report: skipping {path}: {exc}", file=sys.stderr)
                continue
            if not isinstance(data, dict) or "benchmarks" not in data:
                continue
            when = str(data.get("datetime", ""))
            recs = [r for r in (_record(name, b, when) for b in data["benchmarks"]) if r]
            others = [b for b in data["benchmarks"] if (b.get("extra_info") or {}).get("suite")]
            if not recs and not others:
                continue
            info = data.get("machine_info", {})
            device = info.get("fastpose_device") or (recs[0].device if recs else "cpu")
            m = machines.get(name)
            if m is None or when >= m.datetime:
                files = (m.files if m else []) + [os.path.relpath(path, _ROOT)]
                machines[name] = Machine(name, device, info, data.get("commit_info", {}), when, files)
            else:
                m.files.append(os.path.relpath(path, _ROOT))
            for r in recs:
                key = (r.machine, r.op, r.case, r.mode, r.provider)
                if key not in latest or r.datetime >= latest[key].datetime:
                    latest[key] = r
            for b in others:
                key = (name, b["extra_info"]["suite"], b.get("name"))
                if key not in suites or when >= suites[key]["datetime"]:
                    suites[key] = {"machine": name, "datetime": when, "name": b.get("name"),
                                   "median_ms_host": b.get("stats", {}).get("median", 0) * 1e3, **b["extra_info"]}
    return machines, list(latest.values()), list(suites.values())


# ------------------------------------------------------------------------------------------------
# Formatting helpers
# ------------------------------------------------------------------------------------------------
def _ms(t: float | None) -> str:
    if t is None:
        return "—"
    if t >= 100:
        return f"{t:.0f}"
    if t >= 1:
        return f"{t:.2f}"
    return f"{t:.3f}"


def _ratio(base: float | None, t: float | None) -> str:
    if base is None or t is None or t <= 0:
        return "—"
    return f"{base / t:.2f}x"


def _mb(b: int | None) -> str:
    return "—" if b is None else f"{b / 2**20:.1f}"


def _order(seq, order) -> list:
    return sorted(seq, key=lambda v: (order.index(v) if v in order else len(order), v))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _index(records: list[Record]) -> dict:
    """records[machine][op][case][mode][provider] -> Record."""
    idx: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(dict))))
    for r in records:
        idx[r.machine][r.op][r.case][r.mode][r.provider] = r
    return idx


def _paper_case(cases: dict, dtype: str = "float32") -> str | None:
    for case, modes in cases.items():
        any_rec = next(iter(next(iter(modes.values())).values()))
        if any_rec.kind == "paper" and any_rec.dtype == dtype:
            return case
    return None


_SWEEP_KINDS = ("sweep-volume", "sweep-batch", "sweep-frames")
_SWEPT_DIMS = {"sweep-volume": ("D", "H", "W"), "sweep-batch": ("B",), "sweep-frames": ("T",)}


def _sweep_points(cases: dict, kind: str) -> dict[int, dict[str, Record]]:
    """{swept value: {provider: forward+backward Record}} of one op on one machine, with the paper
    case added at its swept value when its other dims (and dtype) match the sweep's."""
    table: dict[int, dict[str, Record]] = defaultdict(dict)
    paper: list[dict[str, Record]] = []
    fixed = None
    for modes in cases.values():
        by = modes.get("forward+backward", {})
        if not by:
            continue
        r0 = next(iter(by.values()))
        if r0.kind == kind and r0.sweep_value is not None:
            for p, r in by.items():
                table[r.sweep_value][p] = r
            fixed = ({k: v for k, v in r0.shape if k not in _SWEPT_DIMS[kind]}, r0.dtype)
        elif r0.kind == "paper":
            paper.append(by)
    for by in paper:
        r0 = next(iter(by.values()))
        dims = dict(r0.shape)
        if fixed is None or ({k: v for k, v in dims.items() if k not in _SWEPT_DIMS[kind]}, r0.dtype) != fixed:
            continue
        value = dims[_SWEPT_DIMS[kind][0]]
        for p, r in by.items():
            table[value].setdefault(p, r)
    return dict(table)


def _gpu_shape(op: str) -> str:
    if op in ("project_to_2d", "reprojection_loss"):
        return "N=1024, T=243, J=17"
    return "B=32, J=18, D=64, H=64, W=64" if op.endswith("3d") else "B=32, J=18, H=64, W=64"


def _best_backend(by_provider: dict[str, Record]) -> Record | None:
    cands = [r for p, r in by_provider.items() if p in _BACKENDS]
    return min(cands, key=lambda r: r.median_ms) if cands else None


# ------------------------------------------------------------------------------------------------
# Sections
# ------------------------------------------------------------------------------------------------
def _machines_section(machines: dict[str, Machine]) -> list[str]:
    rows = []
    for m in machines.values():
        i = m.info
        what = i.get("gpu") or (i.get("cpu", {}) or {}).get("brand_raw") or i.get("processor") or "?"
        bw = m.copy_bandwidth
        commit = i.get("git_revision") or m.commit.get("id", "?")
        load = i.get("loadavg")
        rows.append([
            f"`{m.name}`", m.device, str(what),
            str(i.get("torch_threads", "?")) if m.device == "cpu" else str(i.get("gpu_sm_count", "?")) + " SMs",
            f"torch {i.get('torch', '?')}, triton {i.get('triton', '?')}, python {i.get('python', '?')}",
            f"{bw / 1e9:.1f} GB/s" if bw else "—",
            f"`{str(commit)[:12]}`" + (" (dirty)" if "dirty" in str(commit) else ""),
            m.datetime[:19],
            ", ".join(f"{v:.1f}" for v in load) if load else "—",
        ])
    return _table(["machine", "device", "processor", "threads / SMs", "versions", "copy bandwidth",
                   "git", "date (UTC)", "load avg (1/5/15 min)"], rows)


def _summary_section(idx: dict, machines: dict[str, Machine]) -> list[str]:
    lines = ["Forward+backward at the paper shapes (float32): median time of each provider in ms, and",
             "the fastest fastpose backend as a ratio to `reference` eager and to `reference` compiled.", ""]
    rows = []
    has_gpu = any(m.device == "cuda" for m in machines.values())
    for op in OP_ORDER:
        for mname in _order(idx.keys(), []):
            cases = idx[mname].get(op)
            if not cases:
                continue
            case = _paper_case(cases)
            if case is None:
                continue
            by = cases[case].get("forward+backward", {})
            if not by:
                continue
            eager = by.get("reference")
            comp = by.get("reference-compiled")
            best = _best_backend(by)
            shape = next(iter(by.values())).shape_text
            rows.append([f"`{op}`", f"`{mname}`", shape]
                        + [_ms(by[p].median_ms) if p in by else "—" for p in PROVIDER_ORDER]
                        + [best.provider if best else "—",
                           _ratio(eager.median_ms if eager else None, best.median_ms if best else None),
                           _ratio(comp.median_ms if comp else None, best.median_ms if best else None)])
        if not has_gpu:
            rows.append([f"`{op}`", "GPU (H100/H200)", _gpu_shape(op), NOT_ON_GPU] + [""] * 7)
    header = ["op", "machine", "shape", *PROVIDER_ORDER, "best backend", "vs eager", "vs compiled"]
    return lines + _table(header, rows)


def _targets_section(idx: dict, machines: dict[str, Machine]) -> list[str]:
    rows: list[list[str]] = []
    cpu_machines = [m for m in machines.values() if m.device == "cpu"]
    gpu_machines = [m for m in machines.values() if m.device == "cuda"]

    def fb(mname, op, dtype="float32"):
        cases = idx.get(mname, {}).get(op)
        if not cases:
            return None, {}
        case = _paper_case(cases, dtype)
        return case, (cases[case].get("forward+backward", {}) if case else {})

    def verdict(ok: bool | None) -> str:
        return "—" if ok is None else ("**met**" if ok else "**not met**")

    for m in cpu_machines:
        threads = m.info.get("torch_threads", "?")
        for op in OP_ORDER:
            _, by = fb(m.name, op)
            eager, best = by.get("reference"), _best_backend(by)
            if eager is None:
                continue
            if best is None:
                rows.append([f"CPU ({threads} threads): `{op}` fwd+bwd >= {CPU_SPEEDUP_TARGET:g}x eager",
                             f"`{m.name}`", "no cpu backend measured", "—"])
                continue
            s = eager.median_ms / best.median_ms
            rows.append([f"CPU ({threads} threads): `{op}` fwd+bwd >= {CPU_SPEEDUP_TARGET:g}x eager",
                         f"`{m.name}`", f"{s:.2f}x ({best.provider})", verdict(s >= CPU_SPEEDUP_TARGET)])
        _, by = fb(m.name, "soft_argmax_heatmap_mse_3d")
        eager, best = by.get("reference"), _best_backend(by)
        if eager and best and eager.peak_memory_bytes and best.peak_memory_bytes is not None:
            frac = best.peak_memory_bytes / eager.peak_memory_bytes
            rows.append([f"CPU: fused head peak memory <= {CPU_FUSED_MEMORY_TARGET:g} of reference",
                         f"`{m.name}`", f"{frac:.3f} ({_mb(best.peak_memory_bytes)} / {_mb(eager.peak_memory_bytes)} MiB)",
                         verdict(frac <= CPU_FUSED_MEMORY_TARGET)])
    gpu_targets = [
        (f"GPU: fused head fwd+bwd (B=32, 64^3) >= {GPU_FUSED_SPEEDUP_TARGET:g}x eager", "soft_argmax_heatmap_mse_3d", "speedup",
         GPU_FUSED_SPEEDUP_TARGET),
        (f"GPU: fused head fwd+bwd >= {GPU_FUSED_ROOFLINE_TARGET:.0%} of copy bandwidth", "soft_argmax_heatmap_mse_3d",
         "roofline", GPU_FUSED_ROOFLINE_TARGET),
        (f"GPU: reprojection_loss fwd+bwd (1024x243x17) >= {GPU_REPROJECTION_SPEEDUP_TARGET:g}x eager", "reprojection_loss",
         "speedup", GPU_REPROJECTION_SPEEDUP_TARGET),
    ]
    for text, op, kind, target in gpu_targets:
        if not gpu_machines:
            rows.append([text, "GPU (H100/H200)", NOT_ON_GPU, "—"])
            continue
        for m in gpu_machines:
            _, by = fb(m.name, op)
            eager, best = by.get("reference"), _best_backend(by)
            if best is None:
                rows.append([text, f"`{m.name}`", "no backend measured", "—"])
            elif kind == "speedup":
                s = eager.median_ms / best.median_ms if eager else None
                rows.append([text, f"`{m.name}`", f"{s:.2f}x ({best.provider})" if s else "—",
                             verdict(None if s is None else s >= target)])
            else:
                bw = m.copy_bandwidth
                frac = best.bytes / (best.median_ms * 1e-3) / bw if bw else None
                rows.append([text, f"`{m.name}`", f"{frac:.0%} ({best.provider})" if frac else "—",
                             verdict(None if frac is None else frac >= target)])
    return _table(["target (issues 3, 4, 8)", "machine", "measured", "status"], rows)


def _op_section(op: str, idx: dict, machines: dict[str, Machine], plots: dict[str, str], out_dir: str) -> list[str]:
    lines = [f"## `{op}`", ""]
    any_data = False
    for mname in idx:
        cases = idx[mname].get(op)
        if not cases:
            continue
        any_data = True
        m = machines.get(mname)
        bw = m.copy_bandwidth if m else None
        timer = "CUDA events" if m and m.device == "cuda" else "host clock"
        # Fixed-shape cases (paper, tiny) first: every mode x provider.
        fixed = [c for c in cases if next(iter(next(iter(cases[c].values())).values())).sweep_value is None]
        def _dtype_first(c, cases=cases):  # paper float32 first, then the other dtypes
            r = next(iter(next(iter(cases[c].values())).values()))
            return (r.kind != "paper", r.dtype != "float32", c)

        for case in sorted(fixed, key=_dtype_first):
            r0 = next(iter(next(iter(cases[case].values())).values()))
            lines += [f"### `{mname}` — {r0.kind} shape {r0.shape_text}, {r0.dtype} ({timer})", ""]
            rows = []
            for mode in _order(cases[case].keys(), MODE_ORDER):
                by = cases[case][mode]
                eager, comp = by.get("reference"), by.get("reference-compiled")
                for p in _order(by.keys(), PROVIDER_ORDER):
                    r = by[p]
                    bps = r.bytes / (r.median_ms * 1e-3) if r.median_ms > 0 else None
                    rows.append([
                        mode, p, _ms(r.median_ms), _ms(r.min_ms),
                        _ratio(eager.median_ms if eager else None, r.median_ms),
                        _ratio(comp.median_ms if comp else None, r.median_ms),
                        f"{r.bytes / 2**20:.1f}", f"{bps / 1e9:.2f}" if bps else "—",
                        f"{100 * bps / bw:.1f}%" if bps and bw else "—",
                        _mb(r.peak_memory_bytes),
                        f"{r.peak_memory_bytes / eager.peak_memory_bytes:.2f}" if eager and
                        r.peak_memory_bytes is not None and eager.peak_memory_bytes else "—",
                    ])
            lines += _table(["mode", "provider", "median ms", "min ms", "vs eager", "vs compiled", "must-move MiB",
                             "GB/s", "% roofline", "peak MiB", "peak / eager's"], rows) + [""]
        # Sweeps: one table per kind, rows = swept size, columns = providers.
        sweeps = {kind: _sweep_points(cases, kind) for kind in _SWEEP_KINDS}
        sweeps = {k: v for k, v in sweeps.items() if v}
        for kind in sorted(sweeps):
            table = sweeps[kind]
            provs = _order({p for row in table.values() for p in row}, PROVIDER_ORDER)
            label = {"sweep-volume": "volume edge D=H=W", "sweep-batch": "batch B",
                     "sweep-frames": "frames per window T"}.get(kind, kind)
            sample = next(r for row in table.values() for r in row.values() if r.kind == kind)
            fixed_dims = ", ".join(f"{k}={v}" for k, v in sample.shape if k not in _SWEPT_DIMS[kind])
            lines += [f"### `{mname}` — {label} sweep, forward+backward ({fixed_dims}, {sample.dtype}; ms, "
                      "ratio to eager in brackets)", ""]
            rows = []
            for v in sorted(table):
                row = table[v]
                eager = row.get("reference")
                cells = []
                for p in provs:
                    r = row.get(p)
                    if r is None:
                        cells.append("—")
                    elif p == "reference" or eager is None:
                        cells.append(_ms(r.median_ms))
                    else:
                        cells.append(f"{_ms(r.median_ms)} ({_ratio(eager.median_ms, r.median_ms)})")
                rows.append([str(v)] + cells)
            lines += _table([label] + provs, rows) + [""]
            if kind == "sweep-volume" and mname in plots:
                rel = os.path.relpath(plots[mname], out_dir)
                lines += [f"![time against volume edge on {mname}]({rel})", ""]
    has_gpu = any(m.device == "cuda" for m in machines.values() if op in idx.get(m.name, {}))
    if not has_gpu:
        lines += [f"### GPU (H100/H200) — {NOT_ON_GPU}", "",
                  f"No GPU results for `{op}` yet: run `benchmarks/gpu_run.sh OUT` on a GPU machine and copy "
                  "`OUT/<gpu>/` to `benchmarks/results/`.", ""]
    if not any_data:
        lines += ["No results for this op yet.", ""]
    return lines


# Columns of other suites' tables, in this order when present (lists and long fields are left out).
_SUITE_COLUMNS = ("model", "engine", "provider", "device", "precision", "batch", "input_size", "threads",
                  "median_ms", "p90_ms", "images_per_second", "items_per_second", "unit",
                  "peak_memory_bytes", "build_s", "max_abs_diff", "loss")


def _suites_section(suite_records: list[dict]) -> list[str]:
    """One table per (suite, machine) for records of the other suites (training steps, engines)."""
    lines: list[str] = []
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in suite_records:
        groups[(r["suite"], r["machine"])].append(r)
    for (suite, mname), rows in sorted(groups.items()):
        cols = [c for c in _SUITE_COLUMNS if any(c in r for r in rows)]
        ref = {(r.get("model"), r.get("batch"), r.get("precision")): r.get("median_ms")
               for r in rows if r.get("provider") == "reference" or r.get("engine") == "eager"}
        header = [("peak MiB" if c == "peak_memory_bytes" else c) for c in cols] + ["vs reference / eager"]
        body = []
        for r in sorted(rows, key=lambda r: tuple(str(r.get(c, "")) for c in cols[:6])):
            cells = []
            for c in cols:
                v = r.get(c)
                if v is None:
                    cells.append("—")
                elif c == "peak_memory_bytes":
                    cells.append(_mb(v))
                elif c.endswith("_ms"):
                    cells.append(_ms(float(v)))
                elif isinstance(v, float):
                    cells.append(f"{v:.3g}")
                else:
                    cells.append(str(v))
            base = ref.get((r.get("model"), r.get("batch"), r.get("precision")))
            cells.append(_ratio(base, r.get("median_ms")))
            body.append(cells)
        lines += [f"### `{suite}` on `{mname}`", ""] + _table(header, body) + [""]
    return lines


# ------------------------------------------------------------------------------------------------
# Plot
# ------------------------------------------------------------------------------------------------
def _plot_volume_sweeps(mname: str, idx: dict, folder: str) -> str | None:
    """log-log time vs volume edge, one panel per 3D op, one line per provider -> PNG path."""
    panels = []
    fixed_text = ""
    for op in OP_ORDER:
        pts: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for value, by in _sweep_points(idx[mname].get(op, {}), "sweep-volume").items():
            for p, r in by.items():
                pts[p].append((value, r.median_ms))
        if pts:
            panels.append((op, pts))
            if not fixed_text:
                r = next(r for modes in idx[mname][op].values()
                         for r in modes.get("forward+backward", {}).values() if r.kind == "sweep-volume")
                fixed_text = ", ".join(f"{k}={v}" for k, v in r.shape if k not in "DHW") + f", {r.dtype}"
    if not panels:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("benchmarks.report: matplotlib missing, no plot", file=sys.stderr)
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for ax, (op, pts) in zip(axes[0], panels, strict=True):
        for p in _order(pts.keys(), PROVIDER_ORDER):
            xs, ys = zip(*sorted(pts[p]), strict=True)
            ax.plot(xs, ys, marker="o", label=p)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sorted({x for v in pts.values() for x, _ in v}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("volume edge D = H = W (voxels)")
        ax.set_ylabel("forward+backward median time (ms)")
        ax.set_title(op, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{mname}: forward+backward time against volume size ({fixed_text})", fontsize=11)
    fig.tight_layout()
    path = os.path.join(folder, "volume_sweep.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------
# Document
# ------------------------------------------------------------------------------------------------
_METHOD = """\
How these numbers are made (see `benchmarks/_cases.py`, `_providers.py`, `_peers.py`, `_timing.py`, `_memory.py`):

- **Providers**: `reference` = the plain `fastpose.reference` functions differentiated by autograd
  (what one writes without fastpose); `reference-compiled` = the same under
  `torch.compile(dynamic=False)`; `cpu`, `cuda`, `triton` = the fastpose backends through the public
  op (`backend=`). The Triton backend runs on the CPU only in its interpreter, so it is not timed there.
- **Modes**: `forward` is a training forward (input requires grad); `backward` times one backward
  pass (its forward runs untimed before each round); `forward+backward` both.
- **Time**: median over rounds (min shown too). GPU: CUDA events around each call after an L2
  flush. CPU: host clock (`time.perf_counter`), `torch_threads` threads, `OMP_WAIT_POLICY=PASSIVE`
  (set by `make bench`: on a shared machine spinning OpenMP threads make each parallel region wait
  for a descheduled thread); the machine's load average is recorded because a shared machine adds
  noise, and small (sub-millisecond) cases stay noisy there.
- **Roofline**: "must-move" bytes are what a perfect implementation reads and writes (volumes:
  forward reads the volume, backward reads it and writes the gradient; a scalar loss can form its
  gradient in the forward pass); `% roofline` = achieved bytes/s over the machine's measured copy
  bandwidth (bytes read + written per second of a large `copy_`).
- **Peak memory**: bytes allocated by torch during one call above what was live before it
  (GPU: `torch.cuda.max_memory_allocated`; CPU: the profiler's allocator events, summed in order).
- **Checks**: every provider's outputs and gradient were compared with float64 reference math at
  the paper shapes (error at most 2x the reference's own error in the same dtype).
"""


def render(results_dir: str, out_path: str) -> str:
    """Render the report from ``results_dir`` to ``out_path`` (plots beside the JSON); return it."""
    machines, records, suite_records = load_results(results_dir)
    idx = _index(records)
    out_dir = os.path.dirname(os.path.abspath(out_path))
    plots = {}
    for mname in idx:
        p = _plot_volume_sweeps(mname, idx, os.path.join(results_dir, mname))
        if p:
            plots[mname] = p
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# fastpose benchmarks",
        "",
        f"Rendered by `python -m benchmarks.report` from `{os.path.relpath(results_dir, out_dir)}/*/*.json` "
        f"on {now}; do not edit by hand.",
        "Reproduce: `make bench` (CPU; `FASTPOSE_BENCH_THREADS=2` for the issue's 2 threads), "
        "`benchmarks/gpu_run.sh OUT` on a GPU machine.",
        "",
    ]
    if not records:
        lines += ["No results yet under `benchmarks/results/`.", ""]
    lines += ["## Machines", ""] + _machines_section(machines) + [""]
    lines += ["## Summary", ""] + _summary_section(idx, machines) + [""]
    lines += ["## Targets", ""] + _targets_section(idx, machines) + [""]
    lines += ["## Method", "", _METHOD]
    for op in OP_ORDER:
        lines += _op_section(op, idx, machines, plots, out_dir)
    if suite_records:
        lines += ["## Other suites (training steps, inference engines)", "",
                  "Median time per call (ms) and ratio to the `reference` head / `eager` engine of the same "
                  "model, batch and precision; see each suite's module docstring for what is timed.", ""]
        lines += _suites_section(suite_records)
    text = "\n".join(lines).rstrip() + "\n"
    with open(out_path, "w") as f:
        f.write(text)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default=os.path.join(_ROOT, "benchmarks", "results"),
                    help="folder holding <machine>/*.json (default: benchmarks/results)")
    ap.add_argument("--out", default=os.path.join(_ROOT, "BENCHMARKS.md"), help="output Markdown file")
    ap.add_argument("--machine-name", action="store_true",
                    help="print this machine's results folder name (the GPU's name, else cpu-<host>) and exit")
    args = ap.parse_args(argv)
    if args.machine_name:
        import torch

        from benchmarks._machine import machine_name

        print(machine_name("cuda" if torch.cuda.is_available() else "cpu"))
        return 0
    render(args.results, args.out)
    machines, records, suite_records = load_results(args.results)
    print(f"wrote {args.out}: {len(records)} op results and {len(suite_records)} other results "
          f"from {len(machines)} machine(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
