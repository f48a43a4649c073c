// heatmap_mse on the CPU: the forward is one pass of csrc/common/volume_cpu.h with the target
// tabulated per axis (gx per row, gy gz per line) and the squared errors (direct differences)
// summed per row; the backward is one pass of volume_cpu::backward (MSE part only) that
// recomputes the target and writes grad = k_r (h - t).
#include <vector>

#include "../common/fp_cpu_memory.h"
#include "../common/volume_cpu.h"
#include "heatmap_mse.h"

namespace fastpose {
namespace heatmap_mse {
namespace {

template <typename T>
void forward_impl(const T* heatmaps, int64_t rows, int64_t d, int64_t h, int64_t w, int ndim, const T* joints,
                  double sigma, const T* weights, T* loss_rows, int threads) {
  std::vector<volume_cpu::RowResult> res(static_cast<size_t>(rows));
  const volume_cpu::Volume<T> vol{heatmaps, rows, d, h, w};
  const volume_cpu::Target<T> tgt{joints, ndim, static_cast<T>(inv_two_sigma2(sigma)), weights};
  volume_cpu::forward<T, false, true>(vol, &tgt, res.data(), threads);
  for (int64_t r = 0; r < rows; ++r)
    loss_rows[r] = static_cast<T>(static_cast<double>(tgt.weight(r)) * res[r].sq);
}

template <typename T>
void backward_impl(const T* grad_loss, int64_t grad_stride, const T* heatmaps, int64_t rows, int64_t d, int64_t h,
                   int64_t w, int ndim, const T* joints, double sigma, const T* weights, double grad_scale, T* grad,
                   int threads) {
  const volume_cpu::Volume<T> vol{heatmaps, rows, d, h, w};
  const volume_cpu::Target<T> tgt{joints, ndim, static_cast<T>(inv_two_sigma2(sigma)), weights};
  std::vector<volume_cpu::RowGrad<T>> rg(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {  // k_r = g_r * 2 / N * w_r; the softmax fields are unused
    const T k = static_cast<T>(static_cast<double>(grad_loss[r * grad_stride]) * grad_scale) * tgt.weight(r);
    rg[r] = volume_cpu::RowGrad<T>{T(0), T(0), T(0), T(0), T(0), T(0), T(0), T(0), k};
  }
  volume_cpu::backward<T, false, true>(vol, &tgt, rg.data(), grad, threads);
}

void check_common(int64_t rows, int64_t d, int64_t h, int64_t w, int ndim, double sigma, const char* fn) {
  fp_check_dims(rows, d, h, w, fn);
  fp_check(ndim == 3 || (ndim == 2 && d == 1), std::string(fn) + ": ndim must be 3, or 2 with D == 1; got ndim=" +
                                                   std::to_string(ndim) + " D=" + std::to_string(d));
  fp_check(sigma > 0.0 && std::isfinite(sigma), std::string(fn) + ": sigma must be finite and > 0, got " +
                                                    std::to_string(sigma));
}

}  // namespace

void forward_cpu(int dtype, uintptr_t heatmaps, int64_t rows, int64_t d, int64_t h, int64_t w, int ndim,
                 uintptr_t joints, double sigma, uintptr_t weights, uintptr_t loss_rows, int threads) {
  const char* fn = "heatmap_mse.forward_cpu";
  fp_check_dtype_cpu(dtype, fn);
  check_common(rows, d, h, w, ndim, sigma, fn);
  if (rows == 0) return;
  fp_check_ptr(heatmaps, fn, "heatmaps");
  fp_check_ptr(joints, fn, "joints");
  fp_check_ptr(loss_rows, fn, "loss_rows");
  dispatch_dtype_cpu(dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    forward_impl(reinterpret_cast<const T*>(heatmaps), rows, d, h, w, ndim, reinterpret_cast<const T*>(joints),
                 sigma, reinterpret_cast<const T*>(weights), reinterpret_cast<T*>(loss_rows), threads);
  });
}

void backward_cpu(int dtype, uintptr_t grad_loss, int64_t grad_stride, uintptr_t heatmaps, int64_t rows, int64_t d,
                  int64_t h, int64_t w, int ndim, uintptr_t joints, double sigma, uintptr_t weights,
                  double grad_scale, uintptr_t grad, int threads) {
  const char* fn = "heatmap_mse.backward_cpu";
  fp_check_dtype_cpu(dtype, fn);
  check_common(rows, d, h, w, ndim, sigma, fn);
  fp_check(grad_stride == 0 || grad_stride == 1,
           std::string(fn) + ": grad_stride must be 0 or 1, got " + std::to_string(grad_stride));
  if (rows == 0) return;
  fp_check_ptr(grad_loss, fn, "grad_loss");
  fp_check_ptr(heatmaps, fn, "heatmaps");
  fp_check_ptr(joints, fn, "joints");
  fp_check_ptr(grad, fn, "grad");
  advise_huge_pages(grad, static_cast<size_t>(rows * d * h * w) * (dtype == 0 ? 4 : 8));
  dispatch_dtype_cpu(dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    backward_impl(reinterpret_cast<const T*>(grad_loss), grad_stride, reinterpret_cast<const T*>(heatmaps), rows, d,
                  h, w, ndim, reinterpret_cast<const T*>(joints), sigma, reinterpret_cast<const T*>(weights),
                  grad_scale, reinterpret_cast<T*>(grad), threads);
  });
}

}  // namespace heatmap_mse
}  // namespace fastpose
