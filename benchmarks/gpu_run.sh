#!/usr/bin/env bash
# One GPU run, correctness first, inside one time budget (default 420 s: one call of at most 8
# minutes on an H100/H200):
#
#   1. build      the extension for this GPU's architecture only (nvcc; pip --no-build-isolation)
#   2. graphs     CUDA-graph capture of every public op on every GPU backend after warm-up, replayed
#                 on fresh inputs and compared with eager (python -m benchmarks.cuda_graphs)
#   3. gpu-tests  pytest -m gpu (tests/ and benchmarks/)
#   4. bench-*    the paper-shape benchmarks, forward+backward, fastpose's backends against the
#                 peer-style providers (eager and torch.compile) and the reference -- one pytest per
#                 suite, each with its own JSON, so a step cut by its timeout loses only itself
#   5. report     OUT_DIR/BENCHMARKS.md from this run's JSON
#
#   benchmarks/gpu_run.sh OUT_DIR [extra pytest arguments for the benchmark suites, e.g. -k fused]
#
# Works offline on the GPU image (torch, triton, nvcc, pytest-benchmark, matplotlib installed):
# nothing is downloaded; the extension is built against the torch that is there.
#
# Writes:
#   OUT_DIR/<gpu>/bench-<suite>.json   pytest-benchmark JSON; copy OUT_DIR/<gpu>/ to
#                                      benchmarks/results/ (the report merges every JSON there)
#   OUT_DIR/cuda_graphs.json           one record per (op, backend): mode, max_rel_diff, bitwise
#   OUT_DIR/BENCHMARKS.md              the report of this run alone
#   OUT_DIR/logs/*.log, OUT_DIR/logs/run.txt (every step's command, exit status and seconds)
#
# Environment:
#   PYTHON=python3            interpreter holding torch
#   BUDGET_S=420              the whole run; each step gets min(its timeout, what is left - 20 s)
#                             and is skipped (noted in run.txt) when under its minimum
#   BENCH_CASES=paper         paper | all (+ sweeps) | tiny
#   BENCH_MODES=forward+backward   comma list, empty = every mode
#   BENCH_PROVIDERS=...       default: the peers (eager + compiled), the reference and the backends
#   FASTPOSE_BENCH_ROUND_S=0.3     measuring time per provider and case (the suites' default is 1 s)
#   FULL=1                    no budget, every suite (training steps, engines) in every mode, the
#                             sweeps: for a machine with time to spare (or split it with -k)
#   SKIP_BUILD=1 SKIP_GRAPHS=1 SKIP_TESTS=1 SKIP_BENCH=1   skip a step
#   FASTPOSE_GIT_REVISION     recorded with the results when OUT is written from a copied tree
# Exit status: 0 when every step that ran succeeded, else 1 (later steps still run).
set -uo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 OUT_DIR [pytest args for the suites]" >&2
  exit 2
fi
OUT=$1
shift
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
mkdir -p "$OUT/logs" || exit 2
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
RUN="$OUT/logs/run.txt"
status=0
START=$(date +%s)
if [ -n "${FULL:-}" ]; then
  BUDGET=${BUDGET_S:-100000}
  BENCH_CASES=${BENCH_CASES:-all}
  BENCH_MODES=${BENCH_MODES:-}
  BENCH_PROVIDERS=${BENCH_PROVIDERS:-}
  export FASTPOSE_BENCH_ROUND_S=${FASTPOSE_BENCH_ROUND_S:-1.0}
else
  BUDGET=${BUDGET_S:-420}
  BENCH_CASES=${BENCH_CASES:-paper}
  BENCH_MODES=${BENCH_MODES-forward+backward}
  BENCH_PROVIDERS=${BENCH_PROVIDERS-peer,peer-compiled,peer+target,peer-target,reference,cuda,triton}
  export FASTPOSE_BENCH_ROUND_S=${FASTPOSE_BENCH_ROUND_S:-0.3}
fi
: >"$RUN"

note() { echo "$*" | tee -a "$RUN"; }
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
step() {  # step NAME TIMEOUT_S MIN_S command...: run under min(TIMEOUT_S, budget left - 20 s)
  local name=$1 limit=$2 min=$3
  shift 3
  local avail=$(( $(left) - 20 ))
  [ "$avail" -lt "$limit" ] && limit=$avail
  if [ "$limit" -lt "$min" ]; then
    note "== $name: SKIPPED, ${avail} s of the ${BUDGET} s budget left (needs ${min} s)"
    status=1
    return 0
  fi
  local t0=$(date +%s)
  note "== $name (timeout ${limit} s): $*"
  timeout --kill-after=10 "$limit" "$@" >"$OUT/logs/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$OUT/logs/$name.log"
  [ "$rc" -eq 124 ] && note "== $name: TIMED OUT after ${limit} s"
  note "== $name: exit $rc in $(( $(date +%s) - t0 )) s"
  [ "$rc" -eq 0 ] || status=1
  return 0
}

note "fastpose gpu_run $(date -u +%Y-%m-%dT%H:%M:%SZ) in $ROOT; budget ${BUDGET} s"
if [ -z "${FASTPOSE_GIT_REVISION:-}" ] && git -C "$ROOT" rev-parse HEAD >/dev/null 2>&1; then
  FASTPOSE_GIT_REVISION=$(git -C "$ROOT" rev-parse HEAD)
  git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || FASTPOSE_GIT_REVISION="$FASTPOSE_GIT_REVISION-dirty"
  export FASTPOSE_GIT_REVISION
fi
note "git revision: ${FASTPOSE_GIT_REVISION:-unknown}"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1
  command -v nvcc >/dev/null && nvcc --version | tail -n 2
  "$PY" -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda, '| gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"
  "$PY" -c "import triton; print('triton', triton.__version__)"
  "$PY" -m pip --version; } 2>&1 | tee -a "$RUN"

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  note "no CUDA device visible to torch: this script is for GPU machines (use make bench on a CPU)"
  exit 1
fi

if [ -z "${SKIP_BUILD:-}" ]; then
  # One architecture (this GPU's) halves nvcc's work; setup.py builds fastpose._C with CUDA when
  # nvcc is found, editable, against the installed torch.
  FASTPOSE_CUDA_ARCHS=${FASTPOSE_CUDA_ARCHS:-$("$PY" -c "import torch; a, b = torch.cuda.get_device_capability(); print(f'{a}{b}')")}
  export FASTPOSE_CUDA_ARCHS FASTPOSE_CUDA=${FASTPOSE_CUDA:-1}
  step build 240 60 "$PY" -m pip install --no-build-isolation --no-deps -e .
  "$PY" -m fastpose info 2>&1 | tee -a "$RUN"
fi

if [ -z "${SKIP_GRAPHS:-}" ]; then
  step graphs 90 20 "$PY" -m benchmarks.cuda_graphs --device cuda --cases "${GRAPH_CASES:-paper}" \
    --json "$OUT/cuda_graphs.json"
fi

if [ -z "${SKIP_TESTS:-}" ]; then
  step gpu-tests 150 30 "$PY" -m pytest -m gpu tests benchmarks -q -rfEs -p no:cacheprovider --benchmark-disable
fi

if [ -z "${SKIP_BENCH:-}" ]; then
  MACHINE=$("$PY" -c "from benchmarks._machine import machine_name; print(machine_name('cuda'))")
  mkdir -p "$OUT/$MACHINE"
  ARGS=(-q -p no:cacheprovider --benchmark-only --bench-device cuda --bench-cases "$BENCH_CASES"
        --bench-modes "$BENCH_MODES" --bench-providers "$BENCH_PROVIDERS" --benchmark-columns median,iqr,rounds)
  # Op suites (one per stem, derived from the op specs, in report order), then the end-to-end
  # training step.
  read -r -a SUITES <<< "$("$PY" -c "from fastpose.ops._spec import SPECS; print(' '.join(dict.fromkeys(s.stem for s in sorted(SPECS.values(), key=lambda s: s.report_rank))))")"
  SUITES+=(train_e2e_spgnet)
  if [ -n "${FULL:-}" ]; then
    SUITES+=(train_spgnet train_volumetric engines)
  fi
  for s in "${SUITES[@]}"; do
    step "bench-$s" 120 25 "$PY" -m pytest "benchmarks/test_bench_$s.py" "${ARGS[@]}" \
      --benchmark-json "$OUT/$MACHINE/bench-$s.json" "$@"
  done
  if compgen -G "$OUT/$MACHINE/*.json" >/dev/null; then
    "$PY" -m benchmarks.report --results "$OUT" --out "$OUT/BENCHMARKS.md" 2>&1 | tee -a "$RUN"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    note "results: $OUT/$MACHINE/ -> copy to benchmarks/results/$MACHINE/ and run python -m benchmarks.report"
  fi
fi

note "== gpu_run finished with status $status in $(( $(date +%s) - START )) s"
exit $status
