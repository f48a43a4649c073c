"""Render ``BENCHMARKS.md`` (and one PNG per machine) from the stored benchmark JSON.

    python -m benchmarks.report [--results benchmarks/results] [--out BENCHMARKS.md]

Input: every ``benchmarks/results/<machine>/*.json`` written by pytest-benchmark's
``--benchmark-json`` from the suites of this folder (``extra_info`` holds op, case, mode, provider,
device time, bytes and peak memory; ``machine_info`` the machine, versions, copy bandwidth and git
revision). When a (machine, op, case, mode, provider) appears in several files the newest wins.

Output, per op and machine: the median time of each provider, its ratio to the peer-style code
users run today (``peer`` eager and ``peer-compiled``; the headline) and to fastpose's own
``reference`` (a detail column), achieved bandwidth over the bytes that must
move and its % of the machine's measured copy bandwidth (the roofline), and peak memory; the
sweeps as tables and, for the volume sweep, a log-log plot of time against volume edge per
provider (``benchmarks/results/<machine>/volume_sweep.png``). The issue targets are checked in a
table of their own. GPU rows without data say "not yet measured on a GPU"; a row the headline needs
but the results lack reads "missing" and is listed under the summary.

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

from fastpose.ops._spec import SPECS

__all__ = ["Record", "load_results", "main", "render"]

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_ON_GPU = "not yet measured on a GPU"

# Every declared op (fastpose/ops/_spec.py), in the order of its report_rank.
OP_ORDER = tuple(sorted(SPECS, key=lambda op: SPECS[op].report_rank))
PROVIDER_ORDER = ("peer", "peer-compiled", "peer+target", "peer+target-compiled", "peer-target",
                  "reference", "reference-compiled", "cpu", "cuda", "triton")
MISSING = "missing"
MODE_ORDER = ("forward", "backward", "forward+backward")
_BACKENDS = ("cpu", "cuda", "triton")

# The performance targets (forward+backward): issue 14 against the compiled peer-style code on the
# CPU (2 threads); issues 3, 4 and 8 on a GPU, now against the eager peer (the code users run).
# (text, op, case selector, target ratio); the selector is ("paper", camera) or ("sweep-volume", edge).
CPU_PEER_TARGETS = (
    ("fused head, B=8, J=18, 64^3", "soft_argmax_heatmap_mse_3d", ("paper", "sequence"), 6.0),
    ("fused head, small volume B=2, J=18, 32^3", "soft_argmax_heatmap_mse_3d", ("sweep-volume", 32), 2.0),
    ("reprojection_loss 1024x243x17, one camera per sequence", "reprojection_loss", ("paper", "sequence"), 8.0),
    ("heatmap_mse_2d, B=32, J=18, 64^2", "heatmap_mse_2d", ("paper", "sequence"), 2.0),
    ("soft_argmax_2d, B=32, J=18, 64^2", "soft_argmax_2d", ("paper", "sequence"), 2.0),
)
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


def _paper_case(cases: dict, dtype: str = "float32", camera: str = "sequence") -> str | None:
    """The paper-shape case of one op on one machine (projection ops: ``camera`` "sequence" or
    "frame", told apart by the ``-camframe`` suffix of the case id)."""
    found: list[tuple[str, str]] = []  # (newest record's date, case)
    for case, modes in cases.items():
        recs = [r for by in modes.values() for r in by.values()]
        r0 = recs[0]
        if r0.kind == "paper" and r0.dtype == dtype and case.endswith("-camframe") == (camera == "frame"):
            found.append((max(r.datetime for r in recs), case))
    # a paper shape that changed (e.g. the 2D batch 8 -> 32) leaves older results behind: the newest wins
    return max(found)[1] if found else None


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


_PROJECTION = tuple(op for op in OP_ORDER if SPECS[op].family == "points")
# ops with a Gaussian heatmap target (the peer materialises it: the peer+target column)
_TARGET_OPS = tuple(op for op in OP_ORDER if any(a.name == "joints" for a in SPECS[op].args))
_CAMERA_TEXT = {"sequence": "one camera per sequence", "frame": "one camera per frame"}


def _gpu_shape(op: str) -> str:
    family = SPECS[op].family if op in SPECS else ""
    if family == "points":
        return "N=1024, T=243, J=17"
    return "B=32, J=18, D=64, H=64, W=64" if family == "volume" else "B=32, J=18, H=64, W=64"


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


def _cell(by: dict, provider: str) -> str:
    r = by.get(provider)
    return _ms(r.median_ms) if r else MISSING


def _summary_section(idx: dict, machines: dict[str, Machine]) -> tuple[list[str], list[str]]:
    """The headline table and the list of rows it needed but did not find."""
    lines = ["Forward+backward at the paper shapes (float32): median ms of the peer-style code users run",
             "today (eager and `torch.compile`d; see Method), of fastpose's fastest backend, and the ratio",
             "fastpose / peer (how many times faster fastpose is). The `reference` rows stay in the per-op",
             "tables as a correctness anchor.", ""]
    rows = []
    missing: list[str] = []
    has_gpu = any(m.device == "cuda" for m in machines.values())
    for op in OP_ORDER:
        cameras = ("sequence", "frame") if op in _PROJECTION else ("sequence",)
        if not any(op in idx[m] for m in idx):
            missing.append(f"`{op}`: no results on any machine")
        for mname in _order(idx.keys(), []):
            cases = idx[mname].get(op)
            if not cases:
                continue
            for camera in cameras:
                case = _paper_case(cases, camera=camera)
                label = f"`{op}`" + (f" ({_CAMERA_TEXT[camera]})" if op in _PROJECTION else "")
                if case is None:
                    missing.append(f"{label} on `{mname}`: no paper-shape case")
                    continue
                by = cases[case].get("forward+backward", {})
                best = _best_backend(by)
                peer, comp = by.get("peer"), by.get("peer-compiled")
                for p, r in (("peer", peer), ("peer-compiled", comp)):
                    if r is None:
                        missing.append(f"{label} on `{mname}`: no `{p}` row")
                if best is None:
                    missing.append(f"{label} on `{mname}`: no fastpose backend row")
                shape = next(iter(by.values())).shape_text if by else "?"
                rows.append([label, f"`{mname}`", shape, _cell(by, "peer"), _cell(by, "peer-compiled"),
                             _cell(by, "peer+target") if op in _TARGET_OPS else "n/a",
                             f"{_ms(best.median_ms)} ({best.provider})" if best else MISSING,
                             _ratio(peer.median_ms if peer else None, best.median_ms if best else None),
                             _ratio(comp.median_ms if comp else None, best.median_ms if best else None)])
        if not has_gpu:
            rows.append([f"`{op}`", "GPU (H100/H200)", _gpu_shape(op), NOT_ON_GPU] + [""] * 5)
    header = ["op", "machine", "shape", "peer eager", "peer compiled", "peer + target in step",
              "fastpose (best backend)", "vs peer eager", "vs peer compiled"]
    return lines + _table(header, rows), missing


def _peer_ratio(by: dict, base: str) -> tuple[float | None, Record | None]:
    """(ratio base / best backend, best backend record) of one forward+backward provider dict."""
    b, best = by.get(base), _best_backend(by)
    if b is None or best is None or best.median_ms <= 0:
        return None, best
    return b.median_ms / best.median_ms, best


def _targets_section(idx: dict, machines: dict[str, Machine], suite_records: list[dict] = ()) -> list[str]:
    rows: list[list[str]] = []
    cpu_machines = [m for m in machines.values() if m.device == "cpu"]
    gpu_machines = [m for m in machines.values() if m.device == "cuda"]

    def fb(mname, op, dtype="float32", camera="sequence"):
        cases = idx.get(mname, {}).get(op)
        if not cases:
            return None, {}
        case = _paper_case(cases, dtype, camera)
        return case, (cases[case].get("forward+backward", {}) if case else {})

    def sweep(mname, op, edge):
        pts = _sweep_points(idx.get(mname, {}).get(op, {}), "sweep-volume")
        return pts.get(edge, {})

    def verdict(ok: bool | None) -> str:
        return "—" if ok is None else ("**met**" if ok else "**not met**")

    for m in cpu_machines:
        threads = m.info.get("torch_threads", "?")
        for text, op, (kind, sel), target in CPU_PEER_TARGETS:
            by = fb(m.name, op, camera=sel)[1] if kind == "paper" else sweep(m.name, op, sel)
            ratio, best = _peer_ratio(by, "peer-compiled")
            label = f"CPU ({threads} threads): {text} >= {target:g}x peer compiled"
            if ratio is None:
                what = "no `peer-compiled` row" if "peer-compiled" not in by else "no fastpose backend row"
                rows.append([label, f"`{m.name}`", f"{MISSING}: {what} (rerun `make bench`)", "—"])
            else:
                rows.append([label, f"`{m.name}`", f"{ratio:.2f}x ({best.provider})", verdict(ratio >= target)])
        _, by = fb(m.name, "soft_argmax_heatmap_mse_3d")
        best = _best_backend(by)
        for base in ("reference", "peer"):
            other = by.get(base)
            if other and best and other.peak_memory_bytes and best.peak_memory_bytes is not None:
                frac = best.peak_memory_bytes / other.peak_memory_bytes
                rows.append([f"CPU: fused head peak memory <= {CPU_FUSED_MEMORY_TARGET:g} of {base}'s",
                             f"`{m.name}`", f"{frac:.3f} ({_mb(best.peak_memory_bytes)} / {_mb(other.peak_memory_bytes)} MiB)",
                             verdict(frac <= CPU_FUSED_MEMORY_TARGET)])
    # the same CPU targets under interleaving (benchmarks/perf_probe.py --json: one call of each
    # provider per round, so each evicts the other's data from the caches)
    probe = [r for r in suite_records if r.get("suite") == "interleaved_probe"]
    for r in sorted((r for r in probe if r.get("target") is not None), key=lambda r: (r["machine"], r["config"])):
        base = next((b for b in probe if b.get("baseline") and b["machine"] == r["machine"]
                     and b["model"] == r["model"] and b["config"] == r["config"]), None)
        label = (f"CPU interleaved probe ({r.get('threads', '?')} threads): `{r['model']}` {r['config']} "
                 f">= {r['target']:g}x peer compiled")
        if base is None or not r.get("median_ms"):
            rows.append([label, f"`{r['machine']}`", f"{MISSING}: no `peer-compiled` row", "—"])
            continue
        ratio = base["median_ms"] / r["median_ms"]
        rows.append([label, f"`{r['machine']}`", f"{ratio:.2f}x ({r['provider']}; {_ms(r['median_ms'])} vs "
                     f"{_ms(base['median_ms'])} ms)", verdict(ratio >= r["target"])])
    gpu_targets = [
        (f"GPU: fused head fwd+bwd (B=32, 64^3) >= {GPU_FUSED_SPEEDUP_TARGET:g}x peer eager", "soft_argmax_heatmap_mse_3d",
         "speedup", GPU_FUSED_SPEEDUP_TARGET),
        (f"GPU: fused head fwd+bwd >= {GPU_FUSED_ROOFLINE_TARGET:.0%} of copy bandwidth", "soft_argmax_heatmap_mse_3d",
         "roofline", GPU_FUSED_ROOFLINE_TARGET),
        (f"GPU: reprojection_loss fwd+bwd (1024x243x17) >= {GPU_REPROJECTION_SPEEDUP_TARGET:g}x peer eager",
         "reprojection_loss", "speedup", GPU_REPROJECTION_SPEEDUP_TARGET),
    ]
    for text, op, kind, target in gpu_targets:
        if not gpu_machines:
            rows.append([text, "GPU (H100/H200)", NOT_ON_GPU, "—"])
            continue
        for m in gpu_machines:
            _, by = fb(m.name, op)
            best = _best_backend(by)
            if best is None:
                rows.append([text, f"`{m.name}`", f"{MISSING}: no backend row", "—"])
            elif kind == "speedup":
                ratio, _ = _peer_ratio(by, "peer")
                rows.append([text, f"`{m.name}`", f"{ratio:.2f}x ({best.provider})" if ratio else f"{MISSING}: no `peer` row",
                             verdict(None if ratio is None else ratio >= target)])
            else:
                bw = m.copy_bandwidth
                frac = best.bytes / (best.median_ms * 1e-3) / bw if bw else None
                rows.append([text, f"`{m.name}`", f"{frac:.0%} ({best.provider})" if frac else "—",
                             verdict(None if frac is None else frac >= target)])
    return _table(["target (issue 14 on the CPU; issues 3, 4, 8 on a GPU)", "machine", "measured", "status"], rows)


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
                peer, comp, eager = by.get("peer"), by.get("peer-compiled"), by.get("reference")
                for p in _order(by.keys(), PROVIDER_ORDER):
                    r = by[p]
                    bps = r.bytes / (r.median_ms * 1e-3) if r.median_ms > 0 else None
                    rows.append([
                        mode, p, _ms(r.median_ms), _ms(r.min_ms),
                        _ratio(peer.median_ms if peer else None, r.median_ms),
                        _ratio(comp.median_ms if comp else None, r.median_ms),
                        _ratio(eager.median_ms if eager else None, r.median_ms),
                        f"{r.bytes / 2**20:.1f}", f"{bps / 1e9:.2f}" if bps else "—",
                        f"{100 * bps / bw:.1f}%" if bps and bw else "—",
                        _mb(r.peak_memory_bytes),
                        f"{r.peak_memory_bytes / peer.peak_memory_bytes:.2f}" if peer and
                        r.peak_memory_bytes is not None and peer.peak_memory_bytes else "—",
                    ])
                for p in ("peer", "peer-compiled"):
                    if p not in by:
                        rows.append([mode, p, MISSING] + [""] * 9)
            lines += _table(["mode", "provider", "median ms", "min ms", "vs peer", "vs peer compiled",
                             "vs reference", "must-move MiB", "GB/s", "% roofline", "peak MiB", "peak / peer's"],
                            rows) + [""]
        # Sweeps: one table per kind, rows = swept size, columns = providers.
        sweeps = {kind: _sweep_points(cases, kind) for kind in _SWEEP_KINDS}
        sweeps = {k: v for k, v in sweeps.items() if v}
        for kind in sorted(sweeps):
            table = sweeps[kind]
            provs = _order({p for row in table.values() for p in row} | {"peer", "peer-compiled"}, PROVIDER_ORDER)
            label = {"sweep-volume": "volume edge D=H=W", "sweep-batch": "batch B",
                     "sweep-frames": "frames per window T"}.get(kind, kind)
            sample = next(r for row in table.values() for r in row.values() if r.kind == kind)
            fixed_dims = ", ".join(f"{k}={v}" for k, v in sample.shape if k not in _SWEPT_DIMS[kind])
            lines += [f"### `{mname}` — {label} sweep, forward+backward ({fixed_dims}, {sample.dtype}; ms, "
                      "fastpose's ratio to the compiled peer in brackets)", ""]
            rows = []
            for v in sorted(table):
                row = table[v]
                comp = row.get("peer-compiled")
                cells = []
                for p in provs:
                    r = row.get(p)
                    if r is None:
                        cells.append(MISSING if p in ("peer", "peer-compiled") else "—")
                    elif p not in _BACKENDS or comp is None:
                        cells.append(_ms(r.median_ms))
                    else:
                        cells.append(f"{_ms(r.median_ms)} ({_ratio(comp.median_ms, r.median_ms)})")
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
_SUITE_COLUMNS = ("model", "config", "engine", "provider", "device", "precision", "batch", "input_size", "threads",
                  "median_ms", "p90_ms", "images_per_second", "items_per_second", "frames_per_second", "unit",
                  "peak_memory_bytes", "build_s", "max_abs_diff", "loss")


def _suites_section(suite_records: list[dict]) -> list[str]:
    """One table per (suite, machine) for records of the other suites (training steps, engines)."""
    lines: list[str] = []
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in suite_records:
        groups[(r["suite"], r["machine"])].append(r)
    for (suite, mname), rows in sorted(groups.items()):
        cols = [c for c in _SUITE_COLUMNS if any(c in r for r in rows)]
        # The baseline of each (model, config, batch, precision): a record marked ``baseline`` (the
        # VideoPose3D-style training loop), else the reference head / eager engine.
        def key(r):
            return (r.get("model"), r.get("config"), r.get("batch"), r.get("precision"))

        ref = {key(r): r.get("median_ms") for r in rows
               if not any(r.get("baseline") for r in rows) and (r.get("provider") == "reference" or r.get("engine") == "eager")}
        ref.update({key(r): r.get("median_ms") for r in rows if r.get("baseline")})
        header = [("peak MiB" if c == "peak_memory_bytes" else c) for c in cols] + ["vs baseline"]
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
            base = ref.get(key(r))
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
How these numbers are made (see `benchmarks/_cases.py`, `_providers.py`, `_peers.py`, `_timing.py`,
`_memory.py`):

- **Peer-style providers** (the baselines of the headline ratios; `benchmarks/_peers.py`, written
  from the published patterns): the volumetric head as 3DMPPE's soft-argmax
  (`main/model.py: soft_argmax`) + MMPose `KeypointMSELoss` against a materialised unbiased
  Gaussian target; the 2D ops as MMPose integral regression and `KeypointMSELoss`; the projection
  as VideoPose3D `common/camera.py: project_to_2d` + `common/loss.py: mpjpe`, with one camera per
  sequence (camera (N, 9)) and one per frame (points (N*T, J, 3), cameras (N*T, 9)). `peer` is
  eager with the target precomputed (MMPose builds it in its data pipeline), `peer-compiled` the
  same under `torch.compile(dynamic=False)`, `peer+target` generates the target in the timed step,
  `peer-target` times the target generation alone (forward, no gradient). Each peer row was
  checked against float64 reference math like every other provider.
- **fastpose**: `cpu`, `cuda`, `triton` = the backends through the public op (`backend=`); the
  headline takes the fastest. The Triton backend runs on the CPU only in its interpreter, so it is
  not timed there. `reference` = the plain `fastpose.reference` math differentiated by autograd and
  `reference-compiled` the same compiled: correctness anchors, shown in the per-op tables only.
- **Modes**: `forward` is a training forward (input requires grad); `backward` times one backward
  pass (its forward runs untimed before each round); `forward+backward` both. Every provider of a
  row gets the same inputs and the same upstream gradient (for the soft-argmax ops it stands for
  the coordinate L1 loss's gradient, the same small op for every provider).
- **Time**: median over rounds (min shown too). GPU: CUDA events around each call after an L2
  flush. CPU: host clock (`time.perf_counter`), `torch_threads` threads, `OMP_WAIT_POLICY=PASSIVE`
  (set by `make bench`: on a shared machine spinning OpenMP threads make each parallel region wait
  for a descheduled thread); the machine's load average is recorded because a shared machine adds
  noise, and small (sub-millisecond) cases stay noisy there. All providers of a case run in one
  process, one after the other.
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
        "Reproduce: `FASTPOSE_BENCH_THREADS=2 make bench` on the CPU (every suite: the ops against the peer-style "
        "providers, eager and compiled, the training steps including SPGNet end-to-end against a VideoPose3D-style "
        "loop, the engines; `FASTPOSE_BENCH_LARGE=1` adds SPGNet-243 training on the CPU), "
        "`benchmarks/gpu_run.sh OUT` on a GPU machine (one budgeted run, correctness first).",
        "",
    ]
    if not records:
        lines += ["No results yet under `benchmarks/results/`.", ""]
    lines += ["## Machines", ""] + _machines_section(machines) + [""]
    summary, missing = _summary_section(idx, machines)
    lines += ["## Summary", ""] + summary + [""]
    if missing:
        lines += ["**Rows missing from the results** (the ratios that need them read "
                  f"\"{MISSING}\"/\"—\"; rerun `make bench` with the peer-style providers):", ""]
        lines += [f"- {m}" for m in missing] + [""]
    lines += ["## Targets", ""] + _targets_section(idx, machines, suite_records) + [""]
    lines += ["## Method", "", _METHOD]
    for op in OP_ORDER:
        lines += _op_section(op, idx, machines, plots, out_dir)
    if suite_records:
        lines += ["## Other suites (training steps, inference engines)", "",
                  "Median time per call (ms) and ratio to the baseline of the same model, configuration, batch "
                  "and precision (how many times faster): the VideoPose3D-style loop for `train_spgnet_e2e`, the "
                  "compiled peer for `interleaved_probe` (`python -m benchmarks.perf_probe --json`: fwd+bwd, one call of "
                  "each provider per round), "
                  "the `reference` head for the other training suites, the `eager` engine for the engines; "
                  "see each suite's module docstring for what is timed.", ""]
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
