"""Inference latency of the two models under every deployment engine, side by side in one run.

Engines (fastpose.engine.latency.make_engine): ``eager`` PyTorch, ``compile`` (torch.compile;
``reduce-overhead`` = CUDA graphs on a GPU), ``onnx`` (ONNX Runtime), ``aoti`` (AOTInductor
package), ``tensorrt`` (GPU with tensorrt installed only). Models at the papers' sizes:

* ``spgnet``: SPGNet-243 (filter widths 3,3,3,3,3, 1024 channels, J = 17), batched sliding-window
  inference: a batch of B windows of 243 frames -> B output frames (throughput = frames/s);
* ``volumetric``: 256 x 256 RGB, ResNet-50, 18 x 64^3 volume, soft-argmax, refinement block
  (throughput = images/s);
* ``spgnet-video``: the same SPGNet-243 as a full-video engine (dynamic frame count, edge padding
  inside, the full dilated model): one sequence of ``VIDEO_FRAMES`` frames per call (batch 1;
  throughput = frames/s, B x T per call).

Batches 1 and 32; fp32 on the CPU, fp32 and fp16 on a GPU. Each engine is built once (dynamic
batch) and serves both batches; its build time is recorded (``build_s``). Every case first checks
the engine against PyTorch eager on the same input (``max_abs_diff``, within the fp32 / fp16
tolerances of fastpose.engine.onnx.PARITY_TOLERANCES). CPU rounds are timed with the host clock
(the engines return when done); GPU rounds with CUDA events (``CudaEventTarget``). Every engine
uses torch's CPU thread count (``FASTPOSE_BENCH_THREADS=n`` sets it; ONNX Runtime gets the same).
On a CPU shared with other work, run with ``FASTPOSE_BENCH_THREADS=1``: OpenMP with more threads
than free cores measures the contention (SPGNet-243 eager, batch 1, on the 2 shared cores of the
development VM: 14 ms with 1 thread, 240 ms with 2).

Under ``--benchmark-disable`` (CI, ``make test``) the paper-size cases are skipped -- they still
run under ``make bench`` -- and a smoke pass runs instead: tiny models (both eager, SPGNet's windows
and full-video models in ONNX Runtime), batch 2, one call each plus the parity check (the engines'
own tests cover the rest: tests/engine).

``extra_info``: suite = "engines", model, engine, device, precision, batch, threads, build_s (export
/ compile of the engine file; torch.compile compiles lazily, see first_call_s), first_call_s (the
first call at this batch, with the eager reference call), median_ms, p90_ms, items_per_second,
unit, max_abs_diff, loadavg (``benchmarks.report``'s per-op tables
skip these records; the numbers are in the JSON).
"""

from __future__ import annotations

import os
import statistics
import time

import pytest
import torch

from benchmarks._runner import bench_device as _device
from benchmarks._runner import bench_selection
from benchmarks._timing import CudaEventTarget

ENGINES_CPU = ("eager", "compile", "onnx", "aoti")
ENGINES_GPU = ("eager", "compile", "aoti", "tensorrt")
BATCHES = (1, 32)
VIDEO_BATCHES = (1,)
VIDEO_FRAMES = 1000  # ~33 s at 30 fps
PAPER = {"spgnet": {"filter_widths": (3, 3, 3, 3, 3), "channels": 1024}, "volumetric": {},
         "spgnet-video": {"filter_widths": (3, 3, 3, 3, 3), "channels": 1024}}
TINY = {"spgnet": {"filter_widths": (3, 3), "channels": 32},
        "volumetric": {"input_size": 64, "backbone_layers": (1, 1, 1, 1), "backbone_width": 8,
                       "deconv_channels": 16, "lift_channels": 16, "depth": 8, "refine_hidden": 32},
        "spgnet-video": {"filter_widths": (3, 3), "channels": 32}}


def _quick(config) -> bool:
    """The tiny/smoke pass unless real benchmarks were asked for (benchmarks._runner.bench_selection)."""
    return bench_selection(config) == "tiny"


def _cases(device: str) -> list[tuple[str, str, str, int]]:
    """(model, engine, precision, batch) in run order: one engine's batches back to back."""
    engines = ENGINES_GPU if device == "cuda" else ENGINES_CPU
    precisions = ("fp32", "fp16") if device == "cuda" else ("fp32",)
    return [(m, e, p, b) for m in PAPER for p in precisions for e in engines
            for b in (VIDEO_BATCHES if m == "spgnet-video" else BATCHES)]


def pytest_generate_tests(metafunc):
    if "engine_case" in metafunc.fixturenames:
        cases = _cases(_device(metafunc.config))
        metafunc.parametrize("engine_case", cases, ids=[f"{m}-{e}-{p}-B{b}" for m, e, p, b in cases])
    if "smoke_case" in metafunc.fixturenames:
        cases = [("spgnet", "eager"), ("spgnet", "onnx"), ("volumetric", "eager"), ("spgnet-video", "onnx")]
        metafunc.parametrize("smoke_case", cases, ids=[f"{m}-{e}" for m, e in cases])


@pytest.fixture(scope="module")
def engine_cache(tmp_path_factory):
    """(model, engine, precision) -> (callable, Deployable, build seconds); one build per engine."""
    cache: dict = {"_dir": tmp_path_factory.mktemp("engines")}
    yield cache
    cache.clear()


def _build(cache, model: str, engine: str, precision: str, device: str, sizes: dict, max_batch: int):
    from fastpose.engine import deployable
    from fastpose.engine.latency import make_engine

    key = (model, engine, precision)
    if key not in cache:
        for k in [k for k in cache if k != "_dir"]:  # keep one engine alive (paper models are large)
            del cache[k]
        torch.manual_seed(0)  # every engine of a model gets the same weights
        video = model == "spgnet-video"
        dep = deployable("spgnet" if video else model, config=sizes[model], precision=precision,
                         video=video).to(device=device)
        if engine == "tensorrt":
            pytest.importorskip("tensorrt")
        t0 = time.perf_counter()
        fn = make_engine(engine, dep, cache["_dir"], device=device, precision=precision, max_batch=max_batch,
                         threads=torch.get_num_threads())  # ONNX Runtime: as many threads as torch
        cache[key] = (fn, dep, time.perf_counter() - t0)
    return cache[key]


def _parity(fn, dep, inputs, precision: str) -> float:
    """max |engine - eager| over the outputs; asserts the PARITY_TOLERANCES bound."""
    from fastpose.engine.onnx import PARITY_TOLERANCES

    atol, rtol = PARITY_TOLERANCES[precision]
    with torch.inference_mode():
        got = fn(*inputs)
        want = dep(*inputs)
    worst = 0.0
    for name, a, b in zip(dep.output_names, got, want, strict=True):
        diff = (a.double() - b.double()).abs().max().item()
        bound = atol + rtol * b.double().abs().max().item()
        assert diff <= bound, f"{dep.name}: output {name} differs from eager by {diff:.3e} (bound {bound:.3e})"
        worst = max(worst, diff)
    return worst


def test_bench_engine(benchmark, engine_case, engine_cache, request):
    model, engine, precision, batch = engine_case
    if _quick(request.config):
        pytest.skip("paper-size engine benchmark: runs under `make bench` (skipped with --benchmark-disable)")
    device = _device(request.config)
    fn, dep, build_s = _build(engine_cache, model, engine, precision, device, PAPER, max(BATCHES))
    frames = {"frames": VIDEO_FRAMES} if model == "spgnet-video" else {}
    inputs = dep.example_inputs(batch, device=device, seed=1, **frames)
    items = batch * frames.get("frames", 1)  # output frames (SPGNet) or images per call
    t0 = time.perf_counter()
    max_diff = _parity(fn, dep, inputs, precision)  # also the first warm-up call
    first_call_s = time.perf_counter() - t0  # includes torch.compile's lazy compilation for this batch

    def call():
        return fn(*inputs)

    with torch.inference_mode():
        call()  # warm-up: torch.compile recompiles per batch, allocators, ORT arenas
        t0 = time.perf_counter()
        call()
        if device == "cuda":
            torch.cuda.synchronize()
        once = time.perf_counter() - t0
        timer = None
        if device == "cuda":
            timer = CudaEventTarget(call, torch.device(device))
            rounds = int(min(200, max(10, 2.0 / max(once, 1e-6))))
            benchmark.pedantic(timer, rounds=rounds, iterations=1)
            times_s = [t / 1e3 for t in timer.times_ms]
        else:
            rounds = int(min(30, max(3, 15.0 / max(once, 1e-6))))
            benchmark.pedantic(call, rounds=rounds, iterations=1)
            times_s = list(benchmark.stats.stats.data)
    median = statistics.median(times_s)
    q = statistics.quantiles(times_s, n=10) if len(times_s) >= 2 else [median] * 9
    unit = "images/s" if model == "volumetric" else "frames/s"
    benchmark.group = f"engines {model} {precision} B{batch}"
    benchmark.extra_info.update(
        suite="engines", model=model, engine=engine, device=device, precision=precision, batch=batch,
        threads=torch.get_num_threads(), build_s=round(build_s, 3), first_call_s=round(first_call_s, 3),
        median_ms=median * 1e3, p90_ms=q[8] * 1e3,
        items_per_second=items / median, unit=unit, frames=frames.get("frames"), rounds=rounds, max_abs_diff=max_diff,
        time_source="cuda_events" if timer is not None else "host_clock", model_config=dep.config,
        loadavg=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    )


def test_bench_engine_smoke(benchmark, smoke_case, engine_cache, request):
    """CI pass: tiny models, eager (and SPGNet in ONNX Runtime), one call each, checked against eager."""
    if not _quick(request.config):
        pytest.skip("smoke pass of the engine benchmark: runs with --benchmark-disable only")
    model, engine = smoke_case
    fn, dep, build_s = _build(engine_cache, model, engine, "fp32", "cpu", TINY, 8)
    inputs = dep.example_inputs(2, seed=1, **({"frames": 30} if model == "spgnet-video" else {}))
    max_diff = _parity(fn, dep, inputs, "fp32")
    with torch.inference_mode():
        benchmark.pedantic(lambda: fn(*inputs), rounds=1, iterations=1)
    benchmark.extra_info.update(suite="engines", model=model, engine=engine, device="cpu", precision="fp32",
                                batch=2, build_s=round(build_s, 3), max_abs_diff=max_diff, smoke=True)
