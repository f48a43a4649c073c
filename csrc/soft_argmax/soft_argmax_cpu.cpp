// soft_argmax on the CPU: the online-softmax pass of csrc/common/volume_cpu.h (OpenMP over
// (row, chunk)), then per row coords = sums / s and the saved stats [m, log s, cx, cy, cz].
#include <vector>

#include "../common/fp_cpu_memory.h"
#include "../common/volume_cpu.h"
#include "soft_argmax.h"

namespace fastpose {
namespace soft_argmax {
namespace {

template <typename T>
void forward_impl(const T* logits, int64_t rows, int64_t d, int64_t h, int64_t w, int ndim, T* coords,
                  T* stats, int threads) {
  std::vector<volume_cpu::RowResult> res(static_cast<size_t>(rows));
  const volume_cpu::Volume<T> vol{logits, rows, d, h, w};
  volume_cpu::forward<T, true, false>(vol, nullptr, res.data(), threads);
  for (int64_t r = 0; r < rows; ++r) {
    T* st = stats + r * kStats;
    state_finish(res[r].st, st);
    for (int k = 0; k < ndim; ++k) coords[r * ndim + k] = st[2 + k];  // (x, y[, z])
  }
}

template <typename T>
void backward_impl(const T* grad_coords, const T* logits, const T* stats, int64_t rows, int64_t d, int64_t h,
                   int64_t w, int ndim, T* grad, int threads) {
  std::vector<volume_cpu::RowGrad<T>> rg(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const T* st = stats + r * kStats;
    const T* g = grad_coords + r * ndim;
    rg[r] = volume_cpu::RowGrad<T>{st[0], st[1], g[0], g[1], ndim == 3 ? g[2] : T(0),
                                   st[2], st[3], st[4], T(0)};
  }
  const volume_cpu::Volume<T> vol{logits, rows, d, h, w};
  volume_cpu::backward<T, true, false>(vol, nullptr, rg.data(), grad, threads);
}

void check_common(int dtype, int64_t rows, int64_t d, int64_t h, int64_t w, int ndim, const char* fn) {
  fp_check_dtype_cpu(dtype, fn);
  fp_check_dims(rows, d, h, w, fn);
  fp_check(ndim == 3 || (ndim == 2 && d == 1),
           std::string(fn) + ": ndim must be 3, or 2 with D == 1; got ndim=" + std::to_string(ndim) +
               " D=" + std::to_string(d));
}

}  // namespace

void forward_cpu(int dtype, uintptr_t logits, int64_t rows, int64_t d, int64_t h, int64_t w, int ndim,
                 uintptr_t coords, uintptr_t stats, int threads) {
  const char* fn = "soft_argmax.forward_cpu";
  check_common(dtype, rows, d, h, w, ndim, fn);
  if (rows == 0) return;
  fp_check_ptr(logits, fn, "logits");
  fp_check_ptr(coords, fn, "coords");
  fp_check_ptr(stats, fn, "stats");
  dispatch_dtype_cpu(dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    forward_impl(reinterpret_cast<const T*>(logits), rows, d, h, w, ndim, reinterpret_cast<T*>(coords),
                 reinterpret_cast<T*>(stats), threads);
  });
}

void backward_cpu(int dtype, uintptr_t grad_coords, uintptr_t logits, uintptr_t stats, int64_t rows, int64_t d,
                  int64_t h, int64_t w, int ndim, uintptr_t grad_logits, int threads) {
  const char* fn = "soft_argmax.backward_cpu";
  check_common(dtype, rows, d, h, w, ndim, fn);
  if (rows == 0) return;
  fp_check_ptr(grad_coords, fn, "grad_coords");
  fp_check_ptr(logits, fn, "logits");
  fp_check_ptr(stats, fn, "stats");
  fp_check_ptr(grad_logits, fn, "grad_logits");
  advise_huge_pages(grad_logits, static_cast<size_t>(rows * d * h * w) * (dtype == 0 ? 4 : 8));
  dispatch_dtype_cpu(dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    backward_impl(reinterpret_cast<const T*>(grad_coords), reinterpret_cast<const T*>(logits),
                  reinterpret_cast<const T*>(stats), rows, d, h, w, ndim, reinterpret_cast<T*>(grad_logits), threads);
  });
}

}  // namespace soft_argmax
}  // namespace fastpose
