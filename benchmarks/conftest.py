"""Parametrisation and machine record of the benchmark suites (``benchmarks/test_bench_<stem>.py``).

Each suite ``test_bench_<stem>.py`` has one test taking the ``bench_item`` parameter; its ops are
the declared ops (``fastpose/ops/_spec.py``) of that ``stem``, in report order (a suite may still
set ``OPS`` itself). This file expands them into (case, mode, provider) items from
:mod:`benchmarks._cases` / :mod:`benchmarks._providers` and the backend registry, so an op declared
with an existing stem, and a backend that registers itself, are benchmarked with no edit here.

Two regimes:

- the tiny pass (``--benchmark-disable`` in CI and ``make test``, where each item runs exactly
  once; also a plain ``pytest`` that did not ask for benchmarks): tiny shapes, outputs and gradient
  of every provider -- the peer-style ones included -- checked against float64 reference math (the
  Triton interpreter and the eager peers only in forward+backward), compiled providers only for
  ``CI_COMPILED``; the ``peer-target`` rows check the materialised Gaussian target itself;
- timing runs (``--benchmark-only`` / ``--benchmark-json``: ``make bench``, ``gpu_run.sh``): the
  paper shapes in every mode plus the sweeps (fastpose's backends, the eager and compiled peer and
  the eager reference); the Triton interpreter is not timed on the CPU.

Options: ``--bench-cases auto|tiny|paper|all`` (auto: see :func:`benchmarks._runner.bench_selection`),
``--bench-device cpu|cuda`` (default: cuda when available), ``--bench-providers a,b`` and
``--bench-modes a,b`` (filters).
``FASTPOSE_BENCH_THREADS=n`` sets torch's CPU thread count (recorded with the results).
"""

from __future__ import annotations

import os

import pytest
import torch

from benchmarks._cases import CI_COMPILED, MODES, cases_for
from benchmarks._machine import machine_record
from benchmarks._providers import BACKENDS, PROVIDERS, provider_modes, providers_for
from benchmarks._runner import BenchItem, bench_device, bench_selection
from fastpose.ops._spec import SPECS

# Providers of the sweeps besides fastpose's backends: the eager and compiled peer (the ratio the
# report's sweep tables show), and the plain reference eager (a correctness anchor).
SWEEP_PROVIDERS = ("peer", "peer-compiled", "reference")

SUITE_PREFIX = "test_bench_"


def suite_ops(stem: str) -> tuple[str, ...]:
    """The declared ops of module ``stem`` (``SPECS[op].stem``), in the report's order."""
    return tuple(sorted((op for op, s in SPECS.items() if s.stem == stem), key=lambda op: SPECS[op].report_rank))


def _quick_memory(op: str) -> bool:
    """Whether the quick pass measures ``op``'s peak memory: the ops with a Gaussian target (a
    ``sigma`` argument: heatmap MSE and the fused heads), whose loss gradient is recomputed in the
    backward instead of stored (issue 12's memory targets)."""
    return any(a.kind == "sigma" for a in SPECS[op].args)


def pytest_addoption(parser):
    group = parser.getgroup("fastpose benchmarks")
    group.addoption("--bench-cases", default="auto", choices=("auto", "tiny", "paper", "all"),
                    help="shapes to benchmark: tiny (CI), paper, all (paper + sweeps); "
                         "auto = tiny under --benchmark-disable, else all")
    group.addoption("--bench-device", default=None, choices=("cpu", "cuda"),
                    help="device to benchmark (default: cuda when available, else cpu)")
    group.addoption("--bench-modes", default="",
                    help="comma-separated subset of forward, backward, forward+backward (default: all)")
    group.addoption("--bench-providers", default="",
                    help=f"comma-separated subset of {', '.join(PROVIDERS)} (default: all available)")


def pytest_configure(config):
    threads = os.environ.get("FASTPOSE_BENCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))


def _items(config, ops) -> list[BenchItem]:
    selection = bench_selection(config)
    quick = selection == "tiny"
    device = bench_device(config)
    wanted = {p.strip() for p in config.getoption("bench_providers").split(",") if p.strip()}
    modes = {m.strip() for m in config.getoption("bench_modes").split(",") if m.strip()}
    if modes - set(MODES):
        raise pytest.UsageError(f"--bench-modes: unknown {sorted(modes - set(MODES))}; expected some of {MODES}")
    unknown = wanted - set(PROVIDERS)
    if unknown:
        raise pytest.UsageError(f"--bench-providers: unknown {sorted(unknown)}; expected some of {PROVIDERS}")
    items: list[BenchItem] = []
    for op in ops:
        # The Triton interpreter (CPU) is in the tiny pass, for correctness, and never timed.
        providers = providers_for(op, device, timing=not quick)
        if wanted:
            providers = [p for p in providers if p in wanted]
        for case in cases_for(op, device, selection):
            for mode in case.modes:
                if modes and mode not in modes:
                    continue
                for provider in providers:
                    if mode not in provider_modes(op, provider):
                        continue
                    if quick and not wanted:
                        # CI budget: compile only the listed pairs; the Triton interpreter and the
                        # eager peers only in forward+backward (it checks outputs and gradient in
                        # one run; a peer-target row exists in forward only).
                        if provider.endswith("-compiled") and (op, mode) not in CI_COMPILED:
                            continue
                        if provider == "triton" and device == "cpu" and mode != "forward+backward":
                            continue
                        if provider.startswith("peer") and provider != "peer-target" and mode != "forward+backward":
                            continue
                    if case.kind.startswith("sweep") and provider not in SWEEP_PROVIDERS and provider not in BACKENDS:
                        continue  # sweeps: the peers and fastpose (bounded compile and run time)
                    # Peak memory: every fixed-shape case of a timing run; in the quick pass the
                    # forward+backward of the ops with a recomputed loss gradient (tiny shapes).
                    memory = (not quick and case.kind == "paper") or (
                        quick and _quick_memory(op) and mode == "forward+backward"
                        and provider in ("reference", "reference-compiled", "cpu", "cuda", "peer"))
                    items.append(BenchItem(case, mode, provider, device, measure_memory=memory,
                                           check=case.kind in ("tiny", "paper")))
    return items


def pytest_generate_tests(metafunc):
    if "bench_item" not in metafunc.fixturenames:
        return
    name = metafunc.module.__name__.rpartition(".")[2]
    ops = getattr(metafunc.module, "OPS", None) or suite_ops(name.removeprefix(SUITE_PREFIX))
    if not ops:
        stems = sorted({s.stem for s in SPECS.values()})
        raise pytest.UsageError(f"{metafunc.module.__name__}: a benchmark suite is named {SUITE_PREFIX}<stem>.py "
                                f"with stem one of {stems} (the ops' declared stems), or declares OPS")
    items = _items(metafunc.config, ops)
    metafunc.parametrize("bench_item", items, ids=[it.id for it in items])


def pytest_benchmark_update_machine_info(config, machine_info):
    """Stored with the JSON: machine, versions, threads, load, copy bandwidth, git revision."""
    machine_info.update(machine_record(bench_device(config)))


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["fastpose"] = {
        "bench_cases": config.getoption("bench_cases"),
        "bench_providers": config.getoption("bench_providers"),
        "schema": 1,
    }
