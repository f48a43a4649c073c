"""Latency of a model under several engines, measured side by side in one run.

Protocol (:func:`measure`): ``warmup`` untimed calls (they also trigger torch.compile's
compilation and the engines' lazy initialisation), then ``iters`` timed calls, each synchronised:
on a CPU every call is timed with ``time.perf_counter_ns``; on a GPU with a pair of CUDA events
around each call, read after one synchronisation at the end (the host clock alone would time the
enqueue, not the work). Reported: p50 / p90 / p99 / mean / min / max latency in milliseconds and
throughput = batch / mean latency (SPGNet: output frames per second, one frame per window;
volumetric model: images per second).

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

from ._common import precision_dtype, versions
from ._models import Deployable, deployable

__all__ = [
    "ENGINES",
    "LatencyResult",
    "format_table",
    "make_engine",
    "measure",
    "percentile",
    "run_latency",
]

ENGINES = ("eager", "compile", "onnx", "aoti", "tensorrt")

_ITEM_UNITS = {"spgnet": "frames/s", "volumetric": "images/s"}


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
    throughput: float = math.nan  # items per second = batch / mean latency
    unit: str = "items/s"
    build_s: float = math.nan  # export / compile time of the engine (shared by all batches)
    error: str | None = None

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
                aoti_configs: dict | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Measure ``model`` on every engine at every batch; returns a JSON-ready dict.

    ``{"model", "precision", "device", "threads", "machine", "versions", "results": [LatencyResult...]}``.
    """
    for e in engines:
        if e not in ENGINES:
            raise ValueError(f"argument 'engine': expected names from {list(ENGINES)}, received {e!r}")
    if not batches or any(int(b) < 1 for b in batches):
        raise ValueError(f"argument 'batch': expected sizes >= 1, received {list(batches)}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("argument 'device': 'cuda' requested but torch.cuda.is_available() is False")
    precision_dtype(precision)
    prev_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        return _run_latency(model, engines, batches, precision=precision, device=device, warmup=warmup,
                            iters=iters, config=config, checkpoint=checkpoint, workdir=workdir, threads=threads,
                            seed=seed, compile_mode=compile_mode, aoti_configs=aoti_configs, log=log)
    finally:
        torch.set_num_threads(prev_threads)


def _run_latency(model, engines, batches, *, precision, device, warmup, iters, config, checkpoint, workdir,
                 threads, seed, compile_mode, aoti_configs, log) -> dict:
    log = log or (lambda msg: None)
    torch.manual_seed(seed)
    dep = deployable(model, checkpoint=checkpoint, config=config, precision=precision).to(device=device)
    max_batch = max(max(int(b) for b in batches), 2)
    inputs = {int(b): dep.example_inputs(int(b), device=device, seed=seed + 1) for b in batches}
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
                r = LatencyResult(engine, model, precision, device, int(b), warmup, iters,
                                  unit=_ITEM_UNITS.get(model, "items/s"), build_s=build_s, error=build_err)
                if fn is not None:
                    try:
                        lat = measure(fn, inputs[int(b)], warmup=warmup, iters=iters, device=device)
                        r.p50_ms, r.p90_ms, r.p99_ms = (percentile(lat, q) for q in (50, 90, 99))
                        r.mean_ms, r.min_ms, r.max_ms = sum(lat) / len(lat), min(lat), max(lat)
                        r.throughput = int(b) / (r.mean_ms / 1e3)
                    except Exception as exc:
                        r.error = f"{type(exc).__name__}: {exc}"
                log(f"[latency] {engine} batch {b}: " + (f"p50 {r.p50_ms:.3f} ms" if r.error is None else r.error))
                results.append(r)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return {
        "model": model,
        "model_config": dep.config,
        "precision": precision,
        "device": device,
        "threads": torch.get_num_threads(),
        "warmup": warmup,
        "iters": iters,
        "machine": {"node": platform.node(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count()},
        "versions": versions(),
        "results": [r.to_dict() for r in results],
    }


def format_table(report: dict) -> str:
    """Side-by-side table: one row per (batch, engine), speed-up against eager of the same batch."""
    rows = report["results"]
    unit = rows[0]["unit"] if rows else "items/s"
    head = (f"{report['model']}  precision {report['precision']}  device {report['device']}  "
            f"threads {report['threads']}  ({report['iters']} iters after {report['warmup']} warm-up)")
    cols = f"{'batch':>5}  {'engine':<9} {'p50 ms':>10} {'p90 ms':>10} {'p99 ms':>10} {unit:>14} {'vs eager':>9}"
    lines = [head, cols, "-" * len(cols)]
    eager = {r["batch"]: r["p50_ms"] for r in rows if r["engine"] == "eager" and r["error"] is None}
    for b in sorted({r["batch"] for r in rows}):
        for r in (r for r in rows if r["batch"] == b):
            if r["error"] is not None:
                lines.append(f"{b:>5}  {r['engine']:<9} error: {r['error'][:90]}")
                continue
            speed = f"{eager[b] / r['p50_ms']:.2f}x" if b in eager and r["p50_ms"] else "-"
            lines.append(f"{b:>5}  {r['engine']:<9} {r['p50_ms']:>10.3f} {r['p90_ms']:>10.3f} {r['p99_ms']:>10.3f} "
                         f"{r['throughput']:>14.1f} {speed:>9}")
    return "\n".join(lines)


def write_json(report: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return path
