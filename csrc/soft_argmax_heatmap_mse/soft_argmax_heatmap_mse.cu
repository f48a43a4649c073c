// The fused head on the GPU: one read of the logits for coords + MSE (two-stage, deterministic),
// one read + one write for the combined gradient (csrc/common/volume.cuh).
#include "../common/volume.cuh"
#include "soft_argmax_heatmap_mse.h"

namespace fastpose {
namespace soft_argmax_heatmap_mse {

int64_t workspace_elems_cuda(int dtype, int64_t rows, int64_t d, int64_t h, int64_t w) {
  fp_check_dims(rows, d, h, w, "soft_argmax_heatmap_mse.workspace_elems_cuda");
  return volume_cuda::workspace_elems_for(dtype, volume_cuda::make_geometry(rows, d, h, w));
}

void forward_cuda(int dtype, uintptr_t logits, int64_t rows, int64_t d, int64_t h, int64_t w, uintptr_t joints,
                  double sigma, uintptr_t weights, uintptr_t coords, uintptr_t stats, uintptr_t loss_rows,
                  uintptr_t workspace, int device, uintptr_t stream) {
  const char* fn = "soft_argmax_heatmap_mse.forward_cuda";
  fp_check_dims(rows, d, h, w, fn);
  fp_check(sigma > 0.0 && std::isfinite(sigma), std::string(fn) + ": sigma must be finite and > 0");
  if (rows == 0) return;
  fp_check_ptr(logits, fn, "logits");
  fp_check_aligned(logits, fn, "logits");
  fp_check_ptr(joints, fn, "joints");
  fp_check_ptr(coords, fn, "coords");
  fp_check_ptr(stats, fn, "stats");
  fp_check_ptr(loss_rows, fn, "loss_rows");
  fp_check_ptr(workspace, fn, "workspace");
  cuda::DeviceGuard guard(device);
  const volume_cuda::Geometry g = volume_cuda::make_geometry(rows, d, h, w);
  cuda::dispatch_dtype(dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    constexpr const auto& R = kFusedForwardBuffers;  // pointer types from the role table
    const volume_cuda::Target<A> tgt{reinterpret_cast<const buf_t<role_of(R, "joints"), T>*>(joints), 3,
                                     static_cast<A>(heatmap_mse::inv_two_sigma2(sigma)),
                                     reinterpret_cast<const buf_t<role_of(R, "weights"), T>*>(weights)};
    volume_cuda::launch_forward<T, true, true>(
        reinterpret_cast<const buf_t<role_of(R, "logits"), T>*>(logits), g, 3, tgt,
        reinterpret_cast<buf_t<role_of(R, "workspace"), T>*>(workspace),
        reinterpret_cast<buf_t<role_of(R, "coords"), T>*>(coords), reinterpret_cast<buf_t<role_of(R, "stats"), T>*>(stats),
        reinterpret_cast<buf_t<role_of(R, "loss_rows"), T>*>(loss_rows), cuda::as_stream(stream));
  });
}

void backward_cuda(int dtype, uintptr_t grad_coords, uintptr_t grad_mse, uintptr_t logits, int64_t rows, int64_t d,
                   int64_t h, int64_t w, uintptr_t joints, double sigma, uintptr_t weights, uintptr_t stats,
                   double mse_scale, uintptr_t grad_logits, int device, uintptr_t stream) {
  const char* fn = "soft_argmax_heatmap_mse.backward_cuda";
  fp_check_dims(rows, d, h, w, fn);
  fp_check(sigma > 0.0 && std::isfinite(sigma), std::string(fn) + ": sigma must be finite and > 0");
  if (rows == 0) return;
  fp_check_ptr(logits, fn, "logits");
  fp_check_aligned(logits, fn, "logits");
  fp_check_ptr(joints, fn, "joints");
  fp_check_ptr(stats, fn, "stats");
  fp_check_ptr(grad_logits, fn, "grad_logits");
  fp_check_aligned(grad_logits, fn, "grad_logits");
  fp_check(grad_coords != 0 || grad_mse != 0,
           std::string(fn) + ": at least one of grad_coords and grad_mse must be given");
  cuda::DeviceGuard guard(device);
  const volume_cuda::Geometry g = volume_cuda::make_geometry(rows, d, h, w);
  cuda::dispatch_dtype(dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    constexpr const auto& R = kFusedBackwardBuffers;  // pointer types from the role table
    const volume_cuda::Target<A> tgt{reinterpret_cast<const buf_t<role_of(R, "joints"), T>*>(joints), 3,
                                     static_cast<A>(heatmap_mse::inv_two_sigma2(sigma)),
                                     reinterpret_cast<const buf_t<role_of(R, "weights"), T>*>(weights)};
    const auto* x = reinterpret_cast<const buf_t<role_of(R, "logits"), T>*>(logits);
    const auto* st = reinterpret_cast<const buf_t<role_of(R, "stats"), T>*>(stats);
    const auto* gc = reinterpret_cast<const buf_t<role_of(R, "grad_coords"), T>*>(grad_coords);
    const auto* gm = reinterpret_cast<const buf_t<role_of(R, "grad_mse"), T>*>(grad_mse);
    auto* out = reinterpret_cast<buf_t<role_of(R, "grad_logits"), T>*>(grad_logits);
    const cudaStream_t s = cuda::as_stream(stream);
    if (gc && gm)
      volume_cuda::launch_backward<T, true, true>(x, g, st, gc, 3, gm, 0, static_cast<A>(mse_scale), tgt, out, s);
    else if (gc)
      volume_cuda::launch_backward<T, true, false>(x, g, st, gc, 3, nullptr, 0, A(0), tgt, out, s);
    else
      volume_cuda::launch_backward<T, false, true>(x, g, st, nullptr, 3, gm, 0, static_cast<A>(mse_scale), tgt, out,
                                                   s);
  });
}

}  // namespace soft_argmax_heatmap_mse
}  // namespace fastpose
