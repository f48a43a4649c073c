// row_scale on the CPU: OpenMP over fixed blocks of each row, vectorised inner loop.
#include <omp.h>

#include <algorithm>

#include "../common/fp_cpu_memory.h"
#include "row_scale.h"

namespace fastpose {
namespace row_scale {
namespace {

constexpr int64_t kBlock = 65536;
constexpr int64_t kParallelMinElems = int64_t(1) << 18;  // one thread below this (cheap per value)

template <typename T>
FP_CPU_CLONES void scale_run(const T* __restrict src, T s, T* out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = scale_element(src[i], s);
}

template <typename T>
void impl(const T* src, const T* scale, T* out, int64_t rows, int64_t cols, int threads) {
  const int64_t blocks_per_row = (cols + kBlock - 1) / kBlock, items = rows * blocks_per_row;
  const int nt = threads > 0 ? threads : omp_get_max_threads();
#pragma omp parallel for schedule(static) num_threads(nt) if (items > 1 && nt > 1 && rows * cols >= kParallelMinElems)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t r = it / blocks_per_row, b = it % blocks_per_row;
    const int64_t i0 = b * kBlock, n = std::min(cols, i0 + kBlock) - i0;
    scale_run<T>(src + r * cols + i0, scale[r], out + r * cols + i0, n);
  }
}

}  // namespace

void forward_cpu(int dtype, uintptr_t src, uintptr_t scale, uintptr_t out, int64_t rows, int64_t cols,
                 int threads) {
  const char* fn = "row_scale.forward_cpu";
  fp_check_dtype_cpu(dtype, fn);
  fp_check(rows >= 0 && cols >= 0, std::string(fn) + ": rows and cols must be >= 0, got rows=" +
                                       std::to_string(rows) + " cols=" + std::to_string(cols));
  if (rows == 0 || cols == 0) return;
  fp_check_ptr(src, fn, "src");
  fp_check_ptr(scale, fn, "scale");
  fp_check_ptr(out, fn, "out");
  if (out != src) advise_huge_pages(out, static_cast<size_t>(rows * cols) * (dtype == 0 ? 4 : 8));
  if (dtype == 0)
    impl(reinterpret_cast<const float*>(src), reinterpret_cast<const float*>(scale), reinterpret_cast<float*>(out),
         rows, cols, threads);
  else
    impl(reinterpret_cast<const double*>(src), reinterpret_cast<const double*>(scale), reinterpret_cast<double*>(out),
         rows, cols, threads);
}

}  // namespace row_scale
}  // namespace fastpose
