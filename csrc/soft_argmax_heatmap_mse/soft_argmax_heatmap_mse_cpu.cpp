// The fused head on the CPU: one pass of csrc/common/volume_cpu.h computing the online softmax and
// the squared errors together (forward), and one pass writing the combined gradient (backward).
#include <cstring>
#include <vector>

#include "../common/fp_cpu_memory.h"
#include "../common/volume_cpu.h"
#include "soft_argmax_heatmap_mse.h"

namespace fastpose {
namespace soft_argmax_heatmap_mse {
namespace {

template <typename T>
void forward_impl(const T* logits, int64_t rows, int64_t d, int64_t h, int64_t w, const T* joints, double sigma,
                  const T* weights, T* coords, T* stats, T* loss_rows, int threads) {
  std::vector<volume_cpu::RowResult> res(static_cast<size_t>(rows));
  const volume_cpu::Volume<T> vol{logits, rows, d, h, w};
  const volume_cpu::Target<T> tgt{joints, 3, static_cast<T>(heatmap_mse::inv_two_sigma2(sigma)), weights};
  volume_cpu::forward<T, true, true>(vol, &tgt, res.data(), threads);
  for (int64_t r = 0; r < rows; ++r) {
    T* st = stats + r * soft_argmax::kStats;
    soft_argmax::state_finish(res[r].st, st);
    for (int k = 0; k < 3; ++k) coords[r * 3 + k] = st[2 + k];
    loss_rows[r] = static_cast<T>(static_cast<double>(tgt.weight(r)) * res[r].sq);
  }
}

template <typename T>
void backward_impl(const T* grad_coords, const T* grad_mse, const T* logits, int64_t rows, int64_t d, int64_t h,
                   int64_t w, const T* joints, double sigma, const T* weights, const T* stats, double mse_scale,
                   T* grad, int threads) {
  const volume_cpu::Volume<T> vol{logits, rows, d, h, w};
  const volume_cpu::Target<T> tgt{joints, 3, static_cast<T>(heatmap_mse::inv_two_sigma2(sigma)), weights};
  std::vector<volume_cpu::RowGrad<T>> rg(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const T* st = stats + r * soft_argmax::kStats;
    const T* g = grad_coords ? grad_coords + r * 3 : nullptr;
    const T k_mse = grad_mse ? static_cast<T>(static_cast<double>(*grad_mse) * mse_scale) * tgt.weight(r) : T(0);
    rg[r] = volume_cpu::RowGrad<T>{st[0], st[1], g ? g[0] : T(0), g ? g[1] : T(0), g ? g[2] : T(0),
                                   st[2], st[3], st[4], k_mse};
  }
  if (grad_coords && grad_mse)
    volume_cpu::backward<T, true, true>(vol, &tgt, rg.data(), grad, threads);
  else if (grad_coords)
    volume_cpu::backward<T, true, false>(vol, &tgt, rg.data(), grad, threads);
  else if (grad_mse)
    volume_cpu::backward<T, false, true>(vol, &tgt, rg.data(), grad, threads);
  else
    std::memset(grad, 0, sizeof(T) * static_cast<size_t>(rows * d * h * w));
}

}  // namespace

void forward_cpu(int dtype, uintptr_t logits, int64_t rows, int64_t d, int64_t h, int64_t w, uintptr_t joints,
                 double sigma, uintptr_t weights, uintptr_t coords, uintptr_t stats, uintptr_t loss_rows,
                 int threads) {
  const char* fn = "soft_argmax_heatmap_mse.forward_cpu";
  fp_check_dtype_cpu(dtype, fn);
  fp_check_dims(rows, d, h, w, fn);
  fp_check(sigma > 0.0 && std::isfinite(sigma), std::string(fn) + ": sigma must be finite and > 0");
  if (rows == 0) return;
  fp_check_ptr(logits, fn, "logits");
  fp_check_ptr(joints, fn, "joints");
  fp_check_ptr(coords, fn, "coords");
  fp_check_ptr(stats, fn, "stats");
  fp_check_ptr(loss_rows, fn, "loss_rows");
  dispatch_dtype_cpu(dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    forward_impl(reinterpret_cast<const T*>(logits), rows, d, h, w, reinterpret_cast<const T*>(joints), sigma,
                 reinterpret_cast<const T*>(weights), reinterpret_cast<T*>(coords), reinterpret_cast<T*>(stats),
                 reinterpret_cast<T*>(loss_rows), threads);
  });
}

void backward_cpu(int dtype, uintptr_t grad_coords, uintptr_t grad_mse, uintptr_t logits, int64_t rows, int64_t d,
                  int64_t h, int64_t w, uintptr_t joints, double sigma, uintptr_t weights, uintptr_t stats,
                  double mse_scale, uintptr_t grad_logits, int threads) {
  const char* fn = "soft_argmax_heatmap_mse.backward_cpu";
  fp_check_dtype_cpu(dtype, fn);
  fp_check_dims(rows, d, h, w, fn);
  fp_check(sigma > 0.0 && std::isfinite(sigma), std::string(fn) + ": sigma must be finite and > 0");
  if (rows == 0) return;
  fp_check_ptr(logits, fn, "logits");
  fp_check_ptr(joints, fn, "joints");
  fp_check_ptr(stats, fn, "stats");
  fp_check_ptr(grad_logits, fn, "grad_logits");
  advise_huge_pages(grad_logits, static_cast<size_t>(rows * d * h * w) * (dtype == 0 ? 4 : 8));
  dispatch_dtype_cpu(dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    backward_impl(reinterpret_cast<const T*>(grad_coords), reinterpret_cast<const T*>(grad_mse),
                  reinterpret_cast<const T*>(logits), rows, d, h, w, reinterpret_cast<const T*>(joints), sigma,
                  reinterpret_cast<const T*>(weights), reinterpret_cast<const T*>(stats), mse_scale,
                  reinterpret_cast<T*>(grad_logits), threads);
  });
}

}  // namespace soft_argmax_heatmap_mse
}  // namespace fastpose
