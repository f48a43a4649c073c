// heatmap_mse on the GPU: one pass of csrc/common/volume.cuh computing the Gaussian target on the
// fly (one exp per voxel), the per-chunk squared-error sums (merged per row in a fixed order) and,
// when asked, the gradient grad_scale * w * (h - t) in the same pass.
#include "../common/volume.cuh"
#include "heatmap_mse.h"

namespace fastpose {
namespace heatmap_mse {

int64_t workspace_elems_cuda(int dtype, int64_t rows, int64_t d, int64_t h, int64_t w) {
  fp_check_dims(rows, d, h, w, "heatmap_mse.workspace_elems_cuda");
  return volume_cuda::workspace_elems_for(dtype, volume_cuda::make_geometry(rows, d, h, w));
}

void forward_cuda(int dtype, uintptr_t heatmaps, int64_t rows, int64_t d, int64_t h, int64_t w, int ndim,
                  uintptr_t joints, double sigma, uintptr_t weights, uintptr_t loss_rows, uintptr_t grad,
                  double grad_scale, uintptr_t workspace, int device, uintptr_t stream) {
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
  if (grad) fp_check_aligned(grad, fn, "grad");
  cuda::DeviceGuard guard(device);
  const volume_cuda::Geometry g = volume_cuda::make_geometry(rows, d, h, w);
  cuda::dispatch_dtype(dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const volume_cuda::Target<A> tgt{reinterpret_cast<const A*>(joints), ndim, static_cast<A>(inv_two_sigma2(sigma)),
                                     reinterpret_cast<const A*>(weights)};
    const T* x = reinterpret_cast<const T*>(heatmaps);
    A* ws = reinterpret_cast<A*>(workspace);
    A* lr = reinterpret_cast<A*>(loss_rows);
    if (grad)
      volume_cuda::launch_forward<T, false, true, true>(x, g, ndim, tgt, reinterpret_cast<A*>(grad),
                                                        static_cast<A>(grad_scale), ws, nullptr, nullptr, lr,
                                                        cuda::as_stream(stream));
    else
      volume_cuda::launch_forward<T, false, true, false>(x, g, ndim, tgt, nullptr, A(0), ws, nullptr, nullptr, lr,
                                                         cuda::as_stream(stream));
  });
}

}  // namespace heatmap_mse
}  // namespace fastpose
