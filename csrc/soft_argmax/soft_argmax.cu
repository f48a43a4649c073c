// soft_argmax on the GPU: the two-stage online-softmax forward and the elementwise backward of
// csrc/common/volume.cuh, on the caller's stream (no host synchronisation).
#include "../common/volume.cuh"
#include "soft_argmax.h"

namespace fastpose {
namespace soft_argmax {

int64_t workspace_elems_cuda(int dtype, int64_t rows, int64_t d, int64_t h, int64_t w) {
  fp_check_dims(rows, d, h, w, "soft_argmax.workspace_elems_cuda");
  return volume_cuda::workspace_elems_for(dtype, volume_cuda::make_geometry(rows, d, h, w));
}

void forward_cuda(int dtype, uintptr_t logits, int64_t rows, int64_t d, int64_t h, int64_t w, int ndim,
                  uintptr_t coords, uintptr_t stats, uintptr_t workspace, int device, uintptr_t stream) {
  const char* fn = "soft_argmax.forward_cuda";
  fp_check_dims(rows, d, h, w, fn);
  fp_check(ndim == 3 || (ndim == 2 && d == 1), std::string(fn) + ": ndim must be 3, or 2 with D == 1");
  if (rows == 0) return;
  fp_check_ptr(logits, fn, "logits");
  fp_check_aligned(logits, fn, "logits");
  fp_check_ptr(coords, fn, "coords");
  fp_check_ptr(stats, fn, "stats");
  fp_check_ptr(workspace, fn, "workspace");
  cuda::DeviceGuard guard(device);
  const volume_cuda::Geometry g = volume_cuda::make_geometry(rows, d, h, w);
  cuda::dispatch_dtype(dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const volume_cuda::Target<A> none{nullptr, 3, A(0), nullptr};
    constexpr const auto& R = kSoftArgmaxForwardBuffers;  // pointer types from the role table
    volume_cuda::launch_forward<T, true, false>(reinterpret_cast<const buf_t<role_of(R, "logits"), T>*>(logits), g,
                                                ndim, none,
                                                reinterpret_cast<buf_t<role_of(R, "workspace"), T>*>(workspace),
                                                reinterpret_cast<buf_t<role_of(R, "coords"), T>*>(coords),
                                                reinterpret_cast<buf_t<role_of(R, "stats"), T>*>(stats), nullptr,
                                                cuda::as_stream(stream));
  });
}

void backward_cuda(int dtype, uintptr_t grad_coords, uintptr_t logits, uintptr_t stats, int64_t rows, int64_t d,
                   int64_t h, int64_t w, int ndim, uintptr_t grad_logits, int device, uintptr_t stream) {
  const char* fn = "soft_argmax.backward_cuda";
  fp_check_dims(rows, d, h, w, fn);
  fp_check(ndim == 3 || (ndim == 2 && d == 1), std::string(fn) + ": ndim must be 3, or 2 with D == 1");
  if (rows == 0) return;
  fp_check_ptr(grad_coords, fn, "grad_coords");
  fp_check_ptr(logits, fn, "logits");
  fp_check_aligned(logits, fn, "logits");
  fp_check_ptr(stats, fn, "stats");
  fp_check_ptr(grad_logits, fn, "grad_logits");
  fp_check_aligned(grad_logits, fn, "grad_logits");
  cuda::DeviceGuard guard(device);
  const volume_cuda::Geometry g = volume_cuda::make_geometry(rows, d, h, w);
  cuda::dispatch_dtype(dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const volume_cuda::Target<A> none{nullptr, 3, A(0), nullptr};
    constexpr const auto& R = kSoftArgmaxBackwardBuffers;  // pointer types from the role table
    volume_cuda::launch_backward<T, true, false>(
        reinterpret_cast<const buf_t<role_of(R, "logits"), T>*>(logits), g,
        reinterpret_cast<const buf_t<role_of(R, "stats"), T>*>(stats),
        reinterpret_cast<const buf_t<role_of(R, "grad_coords"), T>*>(grad_coords), ndim, nullptr, 0, A(0), none,
        reinterpret_cast<buf_t<role_of(R, "grad_logits"), T>*>(grad_logits), cuda::as_stream(stream));
  });
}

}  // namespace soft_argmax
}  // namespace fastpose
