// project_to_2d / reprojection_loss on the GPU: one thread per point (64-bit indices), the camera
// of point p is camera[camera_row(p, cam_div, ncams)] (projection.h). Buffer pointer types come from
// the role tables of projection.h (buf_t<role_of(table, name), T>). The reprojection loss is reduced in two deterministic stages:
// per-block partial sums (fixed shuffle/warp order) into a workspace, then one block adds them in
// a fixed order and writes the scalar; the gradient is written by the first stage, in the
// accumulation type (role kAcc: the backward's row_scale reads it as acc_t<T>).
#include "../common/fp_cuda.cuh"
#include "projection.h"

namespace fastpose {
namespace projection {
namespace {

constexpr int kThreads = 256;
constexpr int kPointsPerThread = 4;
constexpr int64_t kPointsPerBlock = static_cast<int64_t>(kThreads) * kPointsPerThread;
constexpr int kFinalThreads = 1024;

inline unsigned blocks_for(int64_t npoints) {
  return static_cast<unsigned>((npoints + kPointsPerBlock - 1) / kPointsPerBlock);
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const T* __restrict__ pts, int64_t npoints, const acc_t<T>* __restrict__ cam, int64_t ncams,
                   int64_t cam_div, T* __restrict__ out) {
  using A = acc_t<T>;
  const int64_t base = static_cast<int64_t>(blockIdx.x) * kPointsPerBlock + threadIdx.x;
#pragma unroll
  for (int k = 0; k < kPointsPerThread; ++k) {
    const int64_t p = base + static_cast<int64_t>(k) * kThreads;
    if (p < npoints) {
      const Camera<A> c = load_camera<A>(cam + camera_row(p, cam_div, ncams) * kCam);
      A ox, oy;
      project_point(cuda::to_acc(pts[3 * p]), cuda::to_acc(pts[3 * p + 1]), cuda::to_acc(pts[3 * p + 2]), c, ox, oy);
      out[2 * p] = cuda::from_acc<T>(ox);
      out[2 * p + 1] = cuda::from_acc<T>(oy);
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const T* __restrict__ go, const T* __restrict__ pts, int64_t npoints,
                    const acc_t<T>* __restrict__ cam, int64_t ncams, int64_t cam_div, T* __restrict__ gp) {
  using A = acc_t<T>;
  const int64_t base = static_cast<int64_t>(blockIdx.x) * kPointsPerBlock + threadIdx.x;
#pragma unroll
  for (int k = 0; k < kPointsPerThread; ++k) {
    const int64_t p = base + static_cast<int64_t>(k) * kThreads;
    if (p < npoints) {
      const Camera<A> c = load_camera<A>(cam + camera_row(p, cam_div, ncams) * kCam);
      A gx, gy, gz;
      project_point_backward(cuda::to_acc(pts[3 * p]), cuda::to_acc(pts[3 * p + 1]), cuda::to_acc(pts[3 * p + 2]), c,
                             cuda::to_acc(go[2 * p]), cuda::to_acc(go[2 * p + 1]), gx, gy, gz);
      gp[3 * p] = cuda::from_acc<T>(gx);
      gp[3 * p + 1] = cuda::from_acc<T>(gy);
      gp[3 * p + 2] = cuda::from_acc<T>(gz);
    }
  }
}

template <typename T, bool kGrad>
__global__ void __launch_bounds__(kThreads)
    reproj_partial_kernel(const T* __restrict__ pts, int64_t npoints, const acc_t<T>* __restrict__ cam,
                          int64_t ncams, int64_t cam_div, const acc_t<T>* __restrict__ kp,
                          const acc_t<T>* __restrict__ wt, acc_t<T> scale, acc_t<T>* __restrict__ grad,
                          acc_t<T>* __restrict__ ws) {
  using A = acc_t<T>;
  __shared__ A smem[kThreads / 32];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * kPointsPerBlock + threadIdx.x;
  A acc = A(0);
#pragma unroll
  for (int k = 0; k < kPointsPerThread; ++k) {
    const int64_t p = base + static_cast<int64_t>(k) * kThreads;
    if (p < npoints) {
      const Camera<A> c = load_camera<A>(cam + camera_row(p, cam_div, ncams) * kCam);
      A gx, gy, gz;
      acc += reprojection_point(cuda::to_acc(pts[3 * p]), cuda::to_acc(pts[3 * p + 1]), cuda::to_acc(pts[3 * p + 2]), c,
                                kp[2 * p], kp[2 * p + 1], wt ? wt[p] : A(1), scale, kGrad, gx, gy, gz);
      if constexpr (kGrad) {  // accumulation type: rounded to T once, by row_scale in the backward
        grad[3 * p] = gx;
        grad[3 * p + 1] = gy;
        grad[3 * p + 2] = gz;
      }
    }
  }
  const A total = cuda::block_sum<A, kThreads>(acc, smem);
  if (threadIdx.x == 0) ws[blockIdx.x] = total;
}

// One block: loss = scale * sum of the partials (strided serial sums, then a fixed tree).
template <typename T>
__global__ void __launch_bounds__(kFinalThreads)
    reproj_final_kernel(const acc_t<T>* __restrict__ ws, int64_t nparts, acc_t<T> scale, T* __restrict__ loss) {
  using A = acc_t<T>;
  __shared__ A smem[kFinalThreads / 32];
  A acc = A(0);
  for (int64_t i = threadIdx.x; i < nparts; i += kFinalThreads) acc += ws[i];
  const A total = cuda::block_sum<A, kFinalThreads>(acc, smem);
  if (threadIdx.x == 0) *loss = cuda::from_acc<T>(total * scale);
}

void check_common(int64_t npoints, int64_t ncams, int64_t cam_div, const char* fn) {
  fp_check(npoints >= 0, std::string(fn) + ": npoints must be >= 0");
  fp_check(npoints == 0 || (ncams >= 1 && cam_div >= 1),
           std::string(fn) + ": expected ncams >= 1 and cam_div >= 1, got ncams=" + std::to_string(ncams) +
               " cam_div=" + std::to_string(cam_div));
}

// Element type of buffer `name` of the role table `table` for storage type T (compile-time).
#define FP_BUF(table, name, T) buf_t<role_of(table, name), T>

}  // namespace

void project_forward_cuda(int dtype, uintptr_t points, int64_t npoints, uintptr_t camera, int64_t ncams,
                          int64_t cam_div, uintptr_t out, int device, uintptr_t stream) {
  const char* fn = "projection.project_forward_cuda";
  check_common(npoints, ncams, cam_div, fn);
  if (npoints == 0) return;
  fp_check_ptr(points, fn, "points");
  fp_check_ptr(camera, fn, "camera");
  fp_check_ptr(out, fn, "out");
  cuda::DeviceGuard guard(device);
  cuda::dispatch_dtype(dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr const auto& R = kProjectForwardBuffers;
    forward_kernel<T><<<blocks_for(npoints), kThreads, 0, cuda::as_stream(stream)>>>(
        reinterpret_cast<const FP_BUF(R, "points", T)*>(points), npoints,
        reinterpret_cast<const FP_BUF(R, "camera", T)*>(camera), ncams, cam_div,
        reinterpret_cast<FP_BUF(R, "out", T)*>(out));
    cuda::check_launch("projection forward_kernel");
  });
}

void project_backward_cuda(int dtype, uintptr_t grad_out, uintptr_t points, int64_t npoints, uintptr_t camera,
                           int64_t ncams, int64_t cam_div, uintptr_t grad_points, int device, uintptr_t stream) {
  const char* fn = "projection.project_backward_cuda";
  check_common(npoints, ncams, cam_div, fn);
  if (npoints == 0) return;
  fp_check_ptr(grad_out, fn, "grad_out");
  fp_check_ptr(points, fn, "points");
  fp_check_ptr(camera, fn, "camera");
  fp_check_ptr(grad_points, fn, "grad_points");
  cuda::DeviceGuard guard(device);
  cuda::dispatch_dtype(dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr const auto& R = kProjectBackwardBuffers;
    backward_kernel<T><<<blocks_for(npoints), kThreads, 0, cuda::as_stream(stream)>>>(
        reinterpret_cast<const FP_BUF(R, "grad_out", T)*>(grad_out),
        reinterpret_cast<const FP_BUF(R, "points", T)*>(points), npoints,
        reinterpret_cast<const FP_BUF(R, "camera", T)*>(camera), ncams, cam_div,
        reinterpret_cast<FP_BUF(R, "grad_points", T)*>(grad_points));
    cuda::check_launch("projection backward_kernel");
  });
}

int64_t reprojection_workspace_elems_cuda(int64_t npoints) {
  return npoints > 0 ? static_cast<int64_t>(blocks_for(npoints)) : 1;
}

void reprojection_forward_cuda(int dtype, uintptr_t points, int64_t npoints, uintptr_t camera, int64_t ncams,
                               int64_t cam_div, uintptr_t keypoints, uintptr_t weights, double scale, uintptr_t loss,
                               uintptr_t grad, uintptr_t workspace, int device, uintptr_t stream) {
  const char* fn = "projection.reprojection_forward_cuda";
  check_common(npoints, ncams, cam_div, fn);
  fp_check_ptr(loss, fn, "loss");
  fp_check_ptr(workspace, fn, "workspace");
  if (npoints > 0) {
    fp_check_ptr(points, fn, "points");
    fp_check_ptr(camera, fn, "camera");
    fp_check_ptr(keypoints, fn, "keypoints");
  }
  cuda::DeviceGuard guard(device);
  cuda::dispatch_dtype(dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    constexpr const auto& R = kReprojectionForwardBuffers;
    const cudaStream_t s = cuda::as_stream(stream);
    auto* ws = reinterpret_cast<FP_BUF(R, "workspace", T)*>(workspace);
    int64_t nparts = 0;  // no points: the final kernel sums nothing and writes 0
    if (npoints > 0) {
      nparts = blocks_for(npoints);
      const auto* p = reinterpret_cast<const FP_BUF(R, "points", T)*>(points);
      const auto* c = reinterpret_cast<const FP_BUF(R, "camera", T)*>(camera);
      const auto* k = reinterpret_cast<const FP_BUF(R, "keypoints", T)*>(keypoints);
      const auto* wt = reinterpret_cast<const FP_BUF(R, "weights", T)*>(weights);
      auto* g = reinterpret_cast<FP_BUF(R, "grad", T)*>(grad);
      if (grad)
        reproj_partial_kernel<T, true><<<static_cast<unsigned>(nparts), kThreads, 0, s>>>(
            p, npoints, c, ncams, cam_div, k, wt, static_cast<A>(scale), g, ws);
      else
        reproj_partial_kernel<T, false><<<static_cast<unsigned>(nparts), kThreads, 0, s>>>(
            p, npoints, c, ncams, cam_div, k, wt, static_cast<A>(scale), nullptr, ws);
      cuda::check_launch("projection reproj_partial_kernel");
    }
    reproj_final_kernel<T><<<1, kFinalThreads, 0, s>>>(ws, nparts, static_cast<A>(scale),
                                                        reinterpret_cast<FP_BUF(R, "loss", T)*>(loss));
    cuda::check_launch("projection reproj_final_kernel");
  });
}

#undef FP_BUF

}  // namespace projection
}  // namespace fastpose
