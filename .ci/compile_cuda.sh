#!/usr/bin/env bash
# CI compile check of the CUDA kernels: every csrc/**/*.cu compiled with nvcc for sm_80 and sm_90
# (-c, objects in a temporary directory, nothing linked or run), failing on any error.
# Needs only nvcc (no GPU, no torch). Usage: bash .ci/compile_cuda.sh   (NVCC=..., JOBS=... optional)
set -euo pipefail
cd "$(dirname "$0")/.."
nvcc_bin="${NVCC:-${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}}"
if [ ! -x "$nvcc_bin" ]; then
  echo "compile_cuda.sh: nvcc not found (set NVCC or CUDACXX)" >&2
  exit 2
fi
jobs="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# the volume kernels first (many template instances, the slowest to compile): the parallel jobs
# then finish together
mapfile -t sources < <(find csrc -name '*.cu' | sort -r | xargs grep -l 'volume.cuh'; \
                       find csrc -name '*.cu' | sort | xargs grep -L 'volume.cuh')
if [ "${#sources[@]}" -eq 0 ]; then
  echo "compile_cuda.sh: no .cu files under csrc/" >&2
  exit 1
fi
echo "nvcc: $("$nvcc_bin" --version | tail -n 2 | head -n 1)"
echo "compiling ${#sources[@]} CUDA sources for sm_80 and sm_90 with $jobs jobs"
start=$(date +%s)
export nvcc_bin tmp
# -Werror all-warnings on device code too: a warning in a kernel is treated as an error.
printf '%s\n' "${sources[@]}" | xargs -P "$jobs" -I{} bash -c '
  src="{}"; obj="$tmp/$(echo "$src" | tr / _).o"
  if "$nvcc_bin" -std=c++17 -O3 -Icsrc -DFASTPOSE_WITH_CUDA=1 -DFASTPOSE_CUDA_ARCHS="\"80,90\"" \
      --expt-relaxed-constexpr -Werror all-warnings \
      -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
      -c "$src" -o "$obj" 2>"$obj.log"; then
    echo "  ok    $src"
  else
    echo "  FAIL  $src"; cat "$obj.log"; exit 255
  fi'
echo "all CUDA sources compiled in $(( $(date +%s) - start )) s"
