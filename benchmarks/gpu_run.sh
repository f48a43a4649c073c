#!/usr/bin/env bash
# One GPU run: build the extension, run the GPU tests, run the benchmark suites, render a report.
#
#   benchmarks/gpu_run.sh OUT_DIR [extra pytest arguments for the suites, e.g. -k fused]
#
# Works offline on the GPU image (Python 3.12, torch 2.11, triton 3.6, nvcc, pytest-benchmark,
# matplotlib already installed): nothing is downloaded, the extension is built against the torch
# and triton that are there (pip --no-build-isolation --no-deps).
#
# Writes (at most 7 files, at most one folder down):
#   OUT_DIR/<gpu>/bench-<UTC time>.json   pytest-benchmark JSON; copy OUT_DIR/<gpu>/ to
#                                         benchmarks/results/ (the report merges every JSON there,
#                                         the newest result of each op/case/mode/provider wins)
#   OUT_DIR/<gpu>/volume_sweep.png    time against volume size per provider
#   OUT_DIR/BENCHMARKS.md             the report of this run alone
#   OUT_DIR/logs/{run.txt,build.log,gpu_tests.log,bench.log}
#
# Environment:
#   PYTHON=python3           interpreter holding torch
#   BENCH_CASES=all          paper | all (paper shapes in every mode + sweeps) | tiny
#   BENCH_PROVIDERS=         comma list to restrict, e.g. reference,cuda,triton
#   SKIP_BUILD=1 SKIP_TESTS=1 SKIP_BENCH=1   skip a step (e.g. to split a run across time limits)
#   FASTPOSE_GIT_REVISION    recorded with the results when OUT is written from a copied tree
# Exit status: 0 when every step that ran succeeded, else 1 (later steps still run).
#
# The full run compiles the reference under torch.compile for ~40 shapes; where one command may
# run only ~10 minutes, split it on the same (warm) machine, e.g.
#   BENCH_CASES=paper benchmarks/gpu_run.sh OUT1 -k "soft_argmax_heatmap_mse or projection"
#   SKIP_BUILD=1 SKIP_TESTS=1 BENCH_CASES=paper benchmarks/gpu_run.sh OUT2 -k "not soft_argmax_heatmap_mse and not projection"
#   SKIP_BUILD=1 SKIP_TESTS=1 benchmarks/gpu_run.sh OUT3 -k sweep
# and copy every OUTn/<gpu>/*.json into benchmarks/results/<gpu>/.
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
: >"$RUN"

note() { echo "$*" | tee -a "$RUN"; }
step() {  # step NAME LOG command...: run, tee the log, record the exit status and duration
  local name=$1 log=$2
  shift 2
  local t0=$(date +%s)
  note "== $name: $*"
  "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  note "== $name: exit $rc in $(( $(date +%s) - t0 )) s"
  [ "$rc" -eq 0 ] || status=1
  return 0
}

note "fastpose gpu_run $(date -u +%Y-%m-%dT%H:%M:%SZ) in $ROOT"
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
  # setup.py builds fastpose._C with CUDA when nvcc is found; editable, against the installed torch.
  step build "$OUT/logs/build.log" "$PY" -m pip install --no-build-isolation --no-deps -e .
  "$PY" -m fastpose info 2>&1 | tee -a "$RUN"
fi

if [ -z "${SKIP_TESTS:-}" ]; then
  step gpu-tests "$OUT/logs/gpu_tests.log" "$PY" -m pytest -m gpu tests -q -rfEs -p no:cacheprovider
fi

if [ -z "${SKIP_BENCH:-}" ]; then
  MACHINE=$("$PY" -c "from benchmarks._machine import machine_name; print(machine_name('cuda'))")
  mkdir -p "$OUT/$MACHINE"
  JSON="$OUT/$MACHINE/bench-$(date -u +%Y%m%dT%H%M%SZ).json"
  step benchmarks "$OUT/logs/bench.log" "$PY" -m pytest benchmarks -q -p no:cacheprovider --benchmark-only \
    --bench-device cuda --bench-cases "${BENCH_CASES:-all}" --bench-providers "${BENCH_PROVIDERS:-}" \
    --benchmark-json "$JSON" --benchmark-columns median,iqr,rounds "$@"
  if [ -s "$JSON" ]; then
    "$PY" -m benchmarks.report --results "$OUT" --out "$OUT/BENCHMARKS.md" 2>&1 | tee -a "$RUN"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    note "results: $OUT/$MACHINE/ -> copy to benchmarks/results/$MACHINE/ and run python -m benchmarks.report"
  fi
fi

note "== gpu_run finished with status $status"
exit $status
