// heatmap_mse on the GPU: the forward is one two-stage pass of csrc/common/volume.cuh computing the
// Gaussian target on the fly (one exp per voxel) and the per-chunk sums of direct squared
// differences (merged per row in a fixed order); the backward is one elementwise pass of the same
// engine (MSE part only) that recomputes the target and writes grad = k_r (h - t).
#include "../common/volume.cuh"
#include "heatmap_mse.h"

namespace fastpose {
namespace heatmap_mse {

int64_t workspace_elems_cuda(int dtype, int64_t rows, int64_t d, int64_t h, int64_t w) {
  fp_check_dims(rows, d, h, w, "heatmap_mse.workspace_elems_cuda");
  return volume_cuda::workspace_elems_for(dtype, volume_cuda::make_geometry(rows, d, h, w));
}

void forward_cuda(int dtype, uintptr_t heatmaps, int64_t rows, int64_t d, int64_t h, int64_t w, int ndim,
                  uintptr_t joints, double sigma, uintptr_t weights, uintptr_t loss_rows, uintptr_t workspace,
                  int device, uintptr_t stream) {
  const char* fn = "heatmap_mse.forward_cuda";
  fp_check_dims(rows, d, h, w, fn);
  fp_check(ndim == 3 || (ndim == 2 && d == 1), std::string(fn) + ": ndim must be 3, or 2 with D == 1");
  fp_check(sigma > 0.0 && std::isfinite(sigma), std::string(fn) + ": sigma must be finite and > 0");
  if (rows == 0) return;
  fp_check_ptr(heatmaps, fn, "heatmaps");
  fp_check_aligned(heatmaps, fn, "heatmaps");
  fp_check_ptr(joints, fn, "joints");
  fp_check_ptr(loss_rows, fn, "loss_rows");
  fp_check_ptr(workspace, fn, "workspace");
  cuda::DeviceGuard guard(device);
  const volume_cuda::Geometry g = volume_cuda::make_geometry(rows, d, h, w);
  cuda::dispatch_dtype(dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    constexpr const auto& R = kHeatmapMseForwardBuffers;  // pointer types from the role table
    const volume_cuda::Target<A> tgt{reinterpret_cast<const buf_t<role_of(R, "joints"), T>*>(joints), ndim,
                                     static_cast<A>(inv_two_sigma2(sigma)),
                                     reinterpret_cast<const buf_t<role_of(R, "weights"), T>*>(weights)};
    volume_cuda::launch_forward<T, false, true>(reinterpret_cast<const buf_t<role_of(R, "heatmaps"), T>*>(heatmaps), g,
                                                ndim, tgt,
                                                reinterpret_cast<buf_t<role_of(R, "workspace"), T>*>(workspace),
                                                nullptr, nullptr,
                                                reinterpret_cast<buf_t<role_of(R, "loss_rows"), T>*>(loss_rows),
                                                cuda::as_stream(stream));
  });
}

void backward_cuda(int dtype, uintptr_t grad_loss, int64_t grad_stride, uintptr_t heatmaps, int64_t rows, int64_t d,
                   int64_t h, int64_t w, int ndim, uintptr_t joints, double sigma, uintptr_t weights,
                   double grad_scale, uintptr_t grad, int device, uintptr_t stream) {
  const char* fn = "heatmap_mse.backward_cuda";
  fp_check_dims(rows, d, h, w, fn);
  fp_check(ndim == 3 || (ndim == 2 && d == 1), std::string(fn) + ": ndim must be 3, or 2 with D == 1");
  fp_check(sigma > 0.0 && std::isfinite(sigma), std::string(fn) + ": sigma must be finite and > 0");
  fp_check(grad_stride == 0 || grad_stride == 1, std::string(fn) + ": grad_stride must be 0 or 1");
  if (rows == 0) return;
  fp_check_ptr(grad_loss, fn, "grad_loss");
  fp_check_ptr(heatmaps, fn, "heatmaps");
  fp_check_aligned(heatmaps, fn, "heatmaps");
  fp_check_ptr(joints, fn, "joints");
  fp_check_ptr(grad, fn, "grad");
  fp_check_aligned(grad, fn, "grad");
  cuda::DeviceGuard guard(device);
  const volume_cuda::Geometry g = volume_cuda::make_geometry(rows, d, h, w);
  cuda::dispatch_dtype(dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    constexpr const auto& R = kHeatmapMseBackwardBuffers;  // pointer types from the role table
    const volume_cuda::Target<A> tgt{reinterpret_cast<const buf_t<role_of(R, "joints"), T>*>(joints), ndim,
                                     static_cast<A>(inv_two_sigma2(sigma)),
                                     reinterpret_cast<const buf_t<role_of(R, "weights"), T>*>(weights)};
    volume_cuda::launch_backward<T, false, true>(reinterpret_cast<const buf_t<role_of(R, "heatmaps"), T>*>(heatmaps),
                                                 g, nullptr, nullptr, ndim,
                                                 reinterpret_cast<const buf_t<role_of(R, "grad_loss"), T>*>(grad_loss),
                                                 grad_stride, static_cast<A>(grad_scale), tgt,
                                                 reinterpret_cast<buf_t<role_of(R, "grad"), T>*>(grad),
                                                 cuda::as_stream(stream));
  });
}

}  // namespace heatmap_mse
}  // namespace fastpose
