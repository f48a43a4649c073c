// heatmap_mse on the CPU: one pass of csrc/common/volume_cpu.h with the target tabulated per axis
// (gx per row, gy gz per line), the squared errors summed per row and, when asked, the gradient
// grad_scale * w * (h - t) written in the same pass.
#include <vector>

#include "../common/fp_cpu_memory.h"
#include "../common/volume_cpu.h"
#include "heatmap_mse.h"

namespace fastpose {
namespace heatmap_mse {
namespace {

template <typename T>
void forward_impl(const T* heatmaps, int64_t rows, int64_t d, int64_t h, int64_t w, int ndim, const T* joints,
                  double sigma, const T* weights, T* loss_rows, T* grad, double grad_scale, int threads) {
  std::vector<volume_cpu::RowResult> res(static_cast<size_t>(rows));
  const volume_cpu::Volume<T> vol{heatmaps, rows, d, h, w};
  const volume_cpu::Target<T> tgt{joints, ndim, static_cast<T>(inv_two_sigma2(sigma)), weights};
  if (grad != nullptr)
    volume_cpu::forward<T, false, true, true>(vol, &tgt, grad, grad_scale, res.data(), threads);
  else
    volume_cpu::forward<T, false, true, false>(vol, &tgt, nullptr, 0.0, res.data(), threads);
  for (int64_t r = 0; r < rows; ++r)
    loss_rows[r] = static_cast<T>(static_cast<double>(tgt.weight(r)) * res[r].sq);
}

}  // namespace

void forward_cpu(int dtype, uintptr_t heatmaps, int64_t rows, int64_t d, int64_t h, int64_t w, int ndim,
                 uintptr_t joints, double sigma, uintptr_t weights, uintptr_t loss_rows, uintptr_t grad,
                 double grad_scale, int threads) {
  const char* fn = "heatmap_mse.forward_cpu";
  fp_check_dtype_cpu(dtype, fn);
  fp_check_dims(rows, d, h, w, fn);
  fp_check(ndim == 3 || (ndim == 2 && d == 1), std::string(fn) + ": ndim must be 3, or 2 with D == 1");
  fp_check(sigma > 0.0 && std::isfinite(sigma), std::string(fn) + ": sigma must be finite and > 0, got " +
                                                    std::to_string(sigma));
  if (rows == 0) return;
  fp_check_ptr(heatmaps, fn, "heatmaps");
  fp_check_ptr(joints, fn, "joints");
  fp_check_ptr(loss_rows, fn, "loss_rows");
  advise_huge_pages(grad, static_cast<size_t>(rows * d * h * w) * (dtype == 0 ? 4 : 8));
  if (dtype == 0)
    forward_impl(reinterpret_cast<const float*>(heatmaps), rows, d, h, w, ndim, reinterpret_cast<const float*>(joints),
                 sigma, reinterpret_cast<const float*>(weights), reinterpret_cast<float*>(loss_rows),
                 reinterpret_cast<float*>(grad), grad_scale, threads);
  else
    forward_impl(reinterpret_cast<const double*>(heatmaps), rows, d, h, w, ndim,
                 reinterpret_cast<const double*>(joints), sigma, reinterpret_cast<const double*>(weights),
                 reinterpret_cast<double*>(loss_rows), reinterpret_cast<double*>(grad), grad_scale, threads);
}

}  // namespace heatmap_mse
}  // namespace fastpose
