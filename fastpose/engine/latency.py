"""Latency of a model under several engines, measured side by side in one run.

Protocol (:func:`measure`): ``warmup`` untimed calls (they also trigger torch.compile's
compilation and the engines' lazy initialisation), then ``iters`` timed calls, each synchronised:
on a CPU every call is timed with ``time.perf_counter_ns``; on a GPU with a pair of CUDA events
around each call, read after one synchronisation at the end (the host clock alone would time the
enqueue, not the work). Reported: p50 / p90 / p99 / mean / min / max latency in milliseconds.
Every derived column comes from ONE statistic, the median (= p50): throughput = items per call /
median latency and the speed-up "vs eager" = eager's median / the engine's median, so a faster
engine always shows more items/s (the table's header names the statistic). Items per call: the
output frames for SPGNet (one per window; B x T for the full-video model ``spgnet-video``), the
images for the volumetric model.

Two ways in:

* :func:`run_latency` -- a model (``spgnet`` / ``volumetric``, fresh weights or a checkpoint) built
  into every engine in one run (``fastpose latency --model ...``);
* :func:`run_file_latency` -- engine files you already have (``fastpose latency FILE ...``):
  ``.onnx`` (ONNX Runtime), ``.pt2`` (AOTInductor), ``.engine`` / ``.plan`` (TensorRT). Input
  shapes come from the file's metadata (the ``<file>.json`` sidecar, else the copy inside the
  file, else -- ONNX / TensorRT -- the file's own input shapes); each dynamic dimension takes
  ``--batch`` / ``--frames`` when given, else the metadata's default, and the run says which.

Engines (:data:`ENGINES`):

=========  ==============================================================================
eager      the PyTorch module under ``torch.inference_mode`` (fused ops: default backend)
compile    ``torch.compile(module)``; on CUDA with ``mode="reduce-overhead"`` (CUDA graphs)
onnx       ONNX export + ONNX Runtime (:class:`~fastpose.engine.onnx.OnnxRunner`)
aoti       AOTInductor package (:class:`~fastpose.engine.aoti.AotiRunner`)
tensorrt   ONNX export + TensorRT engine (:class:`~fastpose.engine.tensorrt.TensorRTRunner`), GPU only
=========  ==============================================================================

All engines of one run share one set of weights, the same inputs and the same CPU thread count
(torch's intra-op threads, ONNX Runtime's intra-op threads, and the OpenMP threads AOTInductor
compiles its kernels for); engine files are built once per run (dynamic batch) in ``workdir``
and serve every batch size. An engine that cannot be
built or run records its error in the results and the run goes on.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from ._common import BATCH, FRAMES, EngineLoadError, EngineMetadata, precision_dtype, versions
from ._models import Deployable, deployable

__all__ = [
    "ENGINES",
    "LatencyResult",
    "format_table",
    "make_engine",
    "measure",
    "percentile",
    "run_file_latency",
    "run_latency",
]

ENGINES = ("eager", "compile", "onnx", "aoti", "tensorrt")

_ITEM_UNITS = {"spgnet": "frames/s", "spgnet-video": "frames/s", "volumetric": "images/s"}

STATISTIC = "median"  # the one statistic every derived column (items/s, speed-up) is computed from

# engine file extension -> engine name
FILE_ENGINES = {".onnx": "onnx", ".pt2": "aoti", ".engine": "tensorrt", ".plan": "tensorrt"}


@dataclasses.dataclass
class LatencyResult:
    """One (engine, batch) measurement; latencies in milliseconds."""

    engine: str
    model: str
    precision: str
    device: str
    batch: int
    warmup: int
    iters: int
    p50_ms: float = math.nan
    p90_ms: float = math.nan
    p99_ms: float = math.nan
    mean_ms: float = math.nan
    min_ms: float = math.nan
    max_ms: float = math.nan
    throughput: float = math.nan  # items per second = items_per_call / median (p50) latency
    unit: str = "items/s"
    build_s: float = math.nan  # export / compile time of the engine (shared by all batches)
    error: str | None = None
    items_per_call: int = 0  # output frames (SPGNet) or images (volumetric) of one call
    sizes: dict = dataclasses.field(default_factory=dict)  # every dynamic dimension's size, e.g. frames
    file: str | None = None  # the engine file timed (fastpose latency FILE)

    def record(self, latencies_ms: Sequence[float]) -> None:
        """Fill the statistics from per-call latencies; throughput from the median (see STATISTIC)."""
        self.p50_ms, self.p90_ms, self.p99_ms = (percentile(latencies_ms, q) for q in (50, 90, 99))
        self.mean_ms = sum(latencies_ms) / len(latencies_ms)
        self.min_ms, self.max_ms = min(latencies_ms), max(latencies_ms)
        self.throughput = self.items_per_call / (self.p50_ms / 1e3)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def percentile(values: Sequence[float], q: float) -> float:
    """q-th percentile (0..100) with linear interpolation between order statistics (numpy's default)."""
    if not values:
        return math.nan
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def measure(fn: Callable[..., object], inputs: Sequence[Tensor], *, warmup: int = 10, iters: int = 50,
            device: str = "cpu") -> list[float]:
    """Per-call latencies (ms) of ``fn(*inputs)``: ``warmup`` untimed calls, then ``iters`` timed ones.

    CPU: host clock around each call (CPU engines return when done). CUDA: CUDA events around
    each call on the current stream, one synchronisation at the end.
    """
    if iters < 1 or warmup < 0:
        raise ValueError(f"measure: expected iters >= 1 and warmup >= 0, received iters={iters}, warmup={warmup}")
    cuda = device == "cuda" or (device.startswith("cuda:"))
    with torch.inference_mode():
        for _ in range(warmup):
            fn(*inputs)
        if cuda:
            torch.cuda.synchronize()
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
            for start, end in events:
                start.record()
                fn(*inputs)
                end.record()
            torch.cuda.synchronize()
            return [start.elapsed_time(end) for start, end in events]
        out = []
        for _ in range(iters):
            t0 = time.perf_counter_ns()
            fn(*inputs)
            out.append((time.perf_counter_ns() - t0) / 1e6)
        return out


def make_engine(engine: str, dep: Deployable, workdir: str | os.PathLike, *, device: str = "cpu",
                precision: str = "fp32", max_batch: int = 1024, threads: int | None = None,
                compile_mode: str | None = None, aoti_configs: dict | None = None) -> Callable[..., object]:
    """A callable running ``dep`` on ``engine`` (see the module docstring); builds files in ``workdir``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stem = f"{dep.name.replace(':', '_')}-{precision}"
    if engine == "eager":
        module = dep.module

        def run(*xs):
            return module(*xs)

        return run
    if engine == "compile":
        mode = compile_mode or ("reduce-overhead" if device.startswith("cuda") else None)
        compiled = torch.compile(dep.module, mode=mode, dynamic=False)

        def run(*xs):
            return compiled(*xs)

        return run
    if engine == "onnx":
        from .onnx import OnnxRunner, export_onnx

        path = workdir / f"{stem}.onnx"
        export_onnx(dep, path, max_batch=max_batch)
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else \
            ["CPUExecutionProvider"]
        return OnnxRunner(path, providers=providers, threads=threads)
    if engine == "aoti":
        from .aoti import AotiRunner, export_aoti

        path = workdir / f"{stem}-{device.split(':')[0]}.pt2"
        export_aoti(dep, path, device=device.split(":")[0], max_batch=max_batch, inductor_configs=aoti_configs)
        return AotiRunner(path)
    if engine == "tensorrt":
        from .onnx import export_onnx
        from .tensorrt import TensorRTRunner, build_engine, import_tensorrt

        import_tensorrt()  # fail early with the install hint
        if not device.startswith("cuda"):
            raise RuntimeError("engine 'tensorrt' runs on a GPU only (use --device cuda)")
        onnx_path = workdir / f"{stem}.trt.onnx"
        export_onnx(dep, onnx_path, max_batch=max_batch, device="cuda")
        plan = workdir / f"{stem}.plan"
        build_engine(onnx_path, plan, max_batch=min(max_batch, 256), timing_cache=workdir / "timing.cache")
        return TensorRTRunner(plan)
    raise ValueError(f"argument 'engine': expected one of {list(ENGINES)}, received {engine!r}")


def run_latency(model: str, engines: Sequence[str], batches: Sequence[int], *, precision: str = "fp32",
                device: str = "cpu", warmup: int = 10, iters: int = 50, config: dict | None = None,
                checkpoint: str | None = None, workdir: str | os.PathLike | None = None,
                threads: int | None = None, seed: int = 0, compile_mode: str | None = None,
                aoti_configs: dict | None = None, log: Callable[[str], None] | None = None,
                video: bool = False, frames: int | None = None) -> dict:
    """Measure ``model`` on every engine at every batch; returns a JSON-ready dict.

    ``video`` (SPGNet): the full-video deployable, B sequences of ``frames`` frames per call
    (default: its metadata default, 300), timed in output frames/s = B x frames / median.
    ``{"model", "precision", "device", "threads", "statistic", "machine", "versions",
    "results": [LatencyResult...]}``.
    """
    for e in engines:
        if e not in ENGINES:
            raise ValueError(f"argument 'engine': expected names from {list(ENGINES)}, received {e!r}")
    if not batches or any(int(b) < 1 for b in batches):
        raise ValueError(f"argument 'batch': expected sizes >= 1, received {list(batches)}")
    if frames is not None and not video:
        raise ValueError(f"argument 'frames': only the full-video model (video=True) takes a frame count, "
                         f"received frames={frames}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("argument 'device': 'cuda' requested but torch.cuda.is_available() is False")
    precision_dtype(precision)
    prev_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        return _run_latency(model, engines, batches, precision=precision, device=device, warmup=warmup,
                            iters=iters, config=config, checkpoint=checkpoint, workdir=workdir, threads=threads,
                            seed=seed, compile_mode=compile_mode, aoti_configs=aoti_configs, log=log,
                            video=video, frames=frames)
    finally:
        torch.set_num_threads(prev_threads)


def _run_latency(model, engines, batches, *, precision, device, warmup, iters, config, checkpoint, workdir,
                 threads, seed, compile_mode, aoti_configs, log, video, frames) -> dict:
    log = log or (lambda msg: None)
    torch.manual_seed(seed)
    dep = deployable(model, checkpoint=checkpoint, config=config, precision=precision, video=video).to(device=device)
    extra_sizes = {FRAMES: int(frames)} if frames is not None else {}
    max_batch = max(max(int(b) for b in batches), 2)
    inputs = {int(b): dep.example_inputs(int(b), device=device, seed=seed + 1, **extra_sizes) for b in batches}
    out_axes = dep.output_axes[0] if dep.output_axes else {}
    results: list[LatencyResult] = []
    tmp = tempfile.TemporaryDirectory(prefix="fastpose-latency-") if workdir is None else None
    work = Path(tmp.name if tmp is not None else workdir)
    try:
        for engine in engines:
            log(f"[latency] building {engine} ...")
            t0 = time.perf_counter()
            try:
                # every engine gets torch's thread count (ONNX Runtime would otherwise take all cores)
                fn = make_engine(engine, dep, work, device=device, precision=precision, max_batch=max_batch,
                                 threads=threads or torch.get_num_threads(), compile_mode=compile_mode,
                                 aoti_configs=aoti_configs)
                build_err = None
            except Exception as exc:  # recorded per engine; the other engines still run
                fn, build_err = None, f"{type(exc).__name__}: {exc}"
            build_s = time.perf_counter() - t0
            for b in batches:
                x = inputs[int(b)]
                sizes = {BATCH: int(b), **{name: int(x[0].shape[d]) for d, name in out_axes.items() if d != 0}}
                # items per call: batch x every other dynamic output dimension (frames of the video model)
                items = int(b) * math.prod(v for k, v in sizes.items() if k != BATCH)
                r = LatencyResult(engine, dep.name, precision, device, int(b), warmup, iters,
                                  unit=_ITEM_UNITS.get(dep.name, "items/s"), build_s=build_s, error=build_err,
                                  items_per_call=items, sizes=sizes)
                if fn is not None:
                    try:
                        r.record(measure(fn, x, warmup=warmup, iters=iters, device=device))
                    except Exception as exc:
                        r.error = f"{type(exc).__name__}: {exc}"
                log(f"[latency] {engine} batch {b}: " + (f"p50 {r.p50_ms:.3f} ms" if r.error is None else r.error))
                results.append(r)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return {
        "model": dep.name,
        "model_config": dep.config,
        "precision": precision,
        "device": device,
        "threads": torch.get_num_threads(),
        "warmup": warmup,
        "iters": iters,
        "statistic": STATISTIC,
        "baseline": "eager",
        "machine": _machine(),
        "versions": versions(),
        "results": [r.to_dict() for r in results],
    }


def _machine() -> dict:
    return {"node": platform.node(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count()}


# ------------------------------------------------------------------------------------ engine files
def open_engine_file(path: str | os.PathLike, *, device: str | None = None, threads: int | None = None):
    """(engine name, runner) for an existing engine file, chosen by its extension.

    ``.onnx`` -> :class:`~fastpose.engine.onnx.OnnxRunner` (CUDA provider when ``device='cuda'``),
    ``.pt2`` -> :class:`~fastpose.engine.aoti.AotiRunner`, ``.engine`` / ``.plan`` ->
    :class:`~fastpose.engine.tensorrt.TensorRTRunner`. A missing, truncated or corrupt file raises
    :class:`EngineLoadError`; an unknown extension ValueError naming the accepted ones.
    """
    path = Path(path)
    engine = FILE_ENGINES.get(path.suffix.lower())
    if engine is None:
        raise ValueError(f"argument 'FILE': {path.name!r} has extension {path.suffix or '(none)'!r}; expected one "
                         f"of {sorted(FILE_ENGINES)} (ONNX, AOTInductor package, TensorRT engine)")
    if not path.exists():
        raise EngineLoadError(f"engine file {path} does not exist")
    if path.is_dir():
        raise EngineLoadError(f"engine file {path} is a directory, not a file")
    if engine == "onnx":
        from .onnx import OnnxRunner

        providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if (device or "cpu").startswith("cuda")
                     else ["CPUExecutionProvider"])
        return engine, OnnxRunner(path, providers=providers, threads=threads)
    if engine == "aoti":
        from .aoti import AotiRunner

        return engine, AotiRunner(path)
    from .tensorrt import TensorRTRunner

    return engine, TensorRTRunner(path)


def _file_sizes(meta: EngineMetadata, path: Path, batches: Sequence[int] | None, frames: int | None
                ) -> tuple[list[dict[str, int]], dict[str, str]]:
    """Sizes of every dynamic input dimension to time, and where each came from.

    batch: ``batches`` (--batch) else the metadata default, else the smallest batch the file
    accepts; frames: ``frames`` (--frames) else the metadata default. Any other dynamic
    dimension needs a metadata default.
    """
    names: list[str] = []
    for spec in meta.inputs:
        names += [d for d in spec.dynamic_names if d not in names]
    if frames is not None and FRAMES not in names:
        raise ValueError(f"argument '--frames': {path.name} has no dynamic 'frames' dimension (its inputs: "
                         + ", ".join(f"{s.name} {s.pretty_shape()}" for s in meta.inputs) + ")")
    source: dict[str, str] = {}
    fixed: dict[str, int] = {}
    batch_list: list[int] = [1]
    for name in names:
        info = meta.dim_info(name)
        given = (list(batches) if batches else None) if name == BATCH else (
            [int(frames)] if name == FRAMES and frames is not None else None)
        if given is not None:
            values, source[name] = given, ("--batch" if name == BATCH else "--frames")
        elif info is not None and info["default"] is not None:
            values, source[name] = [info["default"]], "metadata default"
        elif name == BATCH:
            values = [info["min"] if info is not None else 1]
            source[name] = "smallest batch the file accepts"
        else:
            flag = " (pass --frames)" if name == FRAMES else ""
            raise ValueError(f"{path.name}: dynamic dimension '{name}' has no default in the file's metadata{flag}")
        if info is not None:
            bad = [v for v in values if not info["min"] <= v <= info["max"]]
            if bad:
                flag = {BATCH: "--batch", FRAMES: "--frames"}.get(name, name)
                raise ValueError(f"argument '{flag}': {path.name} accepts {name} in [{info['min']}, {info['max']}], "
                                 f"received {bad}")
        if name == BATCH:
            batch_list = [int(v) for v in values]
        else:
            fixed[name] = int(values[0])
    if BATCH not in names:
        source[BATCH] = "static shape"
        if batches:
            raise ValueError(f"argument '--batch': {path.name} has a static batch; its inputs are "
                             + ", ".join(f"{s.name} {s.pretty_shape()}" for s in meta.inputs))
    return [{BATCH: b, **fixed} for b in batch_list], source


def _file_inputs(meta: EngineMetadata, sizes: dict[str, int], device: str, seed: int) -> tuple[Tensor, ...]:
    """Random inputs for the file's specs: keypoints uniform in [-1, 1], images and the rest in [0, 1)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for spec in meta.inputs:
        shape = spec.concrete_shape(sizes.get(BATCH, 1), sizes)
        dt = spec.torch_dtype
        if dt.is_floating_point:
            x = torch.rand(shape, generator=g)
            if meta.model.startswith("spgnet"):
                x = x * 2 - 1  # normalised screen coordinates
        else:
            x = torch.zeros(shape, dtype=torch.int64)
        out.append(x.to(device=device, dtype=dt))
    return tuple(out)


def run_file_latency(paths: Sequence[str | os.PathLike], batches: Sequence[int] | None = None, *,
                     frames: int | None = None, device: str | None = None, warmup: int = 10, iters: int = 50,
                     threads: int | None = None, seed: int = 0,
                     log: Callable[[str], None] | None = None) -> dict:
    """Time existing engine files (``.onnx``, ``.pt2``, ``.engine`` / ``.plan``) side by side.

    Shapes come from each file's metadata (see :func:`_file_sizes` for the dynamic dimensions;
    ``log`` says which size came from where). ``device``: where ONNX files run ('cpu' default or
    'cuda'); AOTInductor packages run on the device they were compiled for, TensorRT on the GPU.
    Raises :class:`EngineLoadError` (missing / corrupt file) or ValueError (unknown extension,
    sizes out of range) before anything is timed. The speed-up column is against the first file.
    """
    log = log or (lambda msg: None)
    if not paths:
        raise ValueError("argument 'FILE': expected at least one engine file")
    if batches is not None and any(int(b) < 1 for b in batches):
        raise ValueError(f"argument '--batch': expected sizes >= 1, received {list(batches)}")
    prev_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        opened = []
        for p in paths:  # open (and validate) every file before timing any
            engine, runner = open_engine_file(p, device=device, threads=threads or torch.get_num_threads())
            meta = runner.metadata
            dev = {"onnx": getattr(runner, "device", "cpu"), "aoti": meta.device, "tensorrt": "cuda"}[engine]
            if dev.startswith("cuda") and not torch.cuda.is_available():
                raise RuntimeError(f"{Path(p).name}: built for a CUDA device, but torch.cuda.is_available() is False")
            size_sets, source = _file_sizes(meta, Path(p), batches, frames)
            opened.append((Path(p), engine, runner, meta, dev, size_sets, source))
        results: list[LatencyResult] = []
        files = []
        for path, engine, runner, meta, dev, size_sets, source in opened:
            described = ", ".join(
                f"{name} {'/'.join(str(s[name]) for s in size_sets) if name in size_sets[0] else '-'} ({src})"
                for name, src in source.items())
            log(f"[latency] {path.name}: {engine}, model {meta.model}, {meta.precision} on {dev}; {described}")
            files.append({"file": str(path), "engine": engine, "model": meta.model, "precision": meta.precision,
                          "device": dev, "sizes_from": source,
                          "inputs": [s.to_dict() for s in meta.inputs]})
            for sizes in size_sets:
                x = _file_inputs(meta, sizes, dev, seed + 1)
                b = sizes.get(BATCH, int(x[0].shape[0]) if x and x[0].dim() else 1)
                r = LatencyResult(engine, meta.model, meta.precision, dev, int(b), warmup, iters,
                                  unit=_ITEM_UNITS.get(meta.model, "items/s"), sizes=dict(sizes), file=str(path))
                try:
                    with torch.inference_mode():
                        first = runner(*x)  # also the first warm-up call
                    # items per call: the first output's dynamic dimensions as produced (B, or B x T)
                    spec = meta.outputs[0] if meta.outputs else None
                    r.items_per_call = int(math.prod(
                        int(first[0].shape[k]) for k, d in enumerate(spec.shape) if isinstance(d, str)
                    )) if spec is not None and len(spec.shape) == first[0].dim() else int(b)
                    r.record(measure(runner, x, warmup=max(warmup - 1, 0), iters=iters, device=dev))
                except Exception as exc:
                    r.error = f"{type(exc).__name__}: {exc}"
                log(f"[latency] {path.name} batch {b}: "
                    + (f"p50 {r.p50_ms:.3f} ms" if r.error is None else r.error))
                results.append(r)
        first = opened[0]
        return {
            "model": first[3].model,
            "files": files,
            "precision": first[3].precision,
            "device": first[4],
            "threads": torch.get_num_threads(),
            "warmup": warmup,
            "iters": iters,
            "statistic": STATISTIC,
            "baseline": first[0].name,
            "machine": _machine(),
            "versions": versions(),
            "results": [r.to_dict() for r in results],
        }
    finally:
        torch.set_num_threads(prev_threads)


def _row_key(r: dict) -> tuple:
    return (r["batch"], tuple(sorted((k, v) for k, v in (r.get("sizes") or {}).items() if k != BATCH)))


def format_table(report: dict) -> str:
    """Side-by-side table: one row per (batch, engine), every derived column from the median.

    ``items/s`` = items per call / median latency and ``vs <baseline>`` = the baseline's median /
    this row's median (baseline: eager, or the first file of ``fastpose latency FILE ...``), so the
    two columns always agree: a row with k times the baseline's items/s shows k.00x.
    """
    rows = report["results"]
    unit = rows[0]["unit"] if rows else "items/s"
    stat = report.get("statistic", STATISTIC)
    baseline = report.get("baseline", "eager")
    by_file = "files" in report
    head = (f"{report['model']}  precision {report['precision']}  device {report['device']}  "
            f"threads {report['threads']}  ({report['iters']} iters after {report['warmup']} warm-up; "
            f"{unit} and speed-up from the {stat} latency)")
    label_w = max([9] + [len(Path(r["file"]).name) for r in rows if by_file and r.get("file")])
    vs = f"vs {baseline}"[:24]
    cols = (f"{'batch':>5}  {'file' if by_file else 'engine':<{label_w}} {'p50 ms':>10} {'p90 ms':>10} "
            f"{'p99 ms':>10} {unit + ' (p50)':>16} {vs:>{max(9, len(vs))}}")
    lines = [head]
    sizes = {k: v for r in rows for k, v in (r.get("sizes") or {}).items() if k != BATCH}
    if sizes:
        lines.append("sizes: " + ", ".join(f"{k} {v}" for k, v in sorted(sizes.items()))
                     + " (items per call = batch x " + " x ".join(sorted(sizes)) + ")")
    lines += [cols, "-" * len(cols)]
    base: dict = {}
    for r in rows:
        key = _row_key(r)
        is_base = (Path(r["file"]).name == baseline) if by_file and r.get("file") else r["engine"] == baseline
        if is_base and r["error"] is None and key not in base:
            base[key] = r["p50_ms"]
    for key in sorted({_row_key(r) for r in rows}):
        for r in (r for r in rows if _row_key(r) == key):
            label = Path(r["file"]).name if by_file and r.get("file") else r["engine"]
            if r["error"] is not None:
                lines.append(f"{r['batch']:>5}  {label:<{label_w}} error: {r['error'][:90]}")
                continue
            speed = f"{base[key] / r['p50_ms']:.2f}x" if key in base and r["p50_ms"] else "-"
            lines.append(f"{r['batch']:>5}  {label:<{label_w}} {r['p50_ms']:>10.3f} {r['p90_ms']:>10.3f} "
                         f"{r['p99_ms']:>10.3f} {r['throughput']:>16.1f} {speed:>{max(9, len(vs))}}")
    return "\n".join(lines)


def write_json(report: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return path
