// row_scale on the GPU: grid (column blocks, rows), each thread scales kPerThread values of one row
// by that row's factor (read from device memory: no host synchronisation).
#include "../common/fp_cuda.cuh"
#include "row_scale.h"

namespace fastpose {
namespace row_scale {
namespace {

constexpr int kThreads = 256;
constexpr int kPerThread = 4;

template <typename T>
__global__ void __launch_bounds__(kThreads)
    row_scale_kernel(const acc_t<T>* __restrict__ src, const acc_t<T>* __restrict__ scale, T* __restrict__ out,
                     int64_t rows, int64_t cols) {
  using A = acc_t<T>;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const A s = scale[r];
    const int64_t base = static_cast<int64_t>(blockIdx.x) * kThreads * kPerThread + threadIdx.x;
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
      const int64_t i = base + static_cast<int64_t>(k) * kThreads;
      if (i < cols) out[r * cols + i] = cuda::from_acc<T>(scale_element(src[r * cols + i], s));
    }
  }
}

}  // namespace

void forward_cuda(int dtype, uintptr_t src, uintptr_t scale, uintptr_t out, int64_t rows, int64_t cols, int device,
                  uintptr_t stream) {
  const char* fn = "row_scale.forward_cuda";
  fp_check(rows >= 0 && cols >= 0, std::string(fn) + ": rows and cols must be >= 0");
  if (rows == 0 || cols == 0) return;
  fp_check_ptr(src, fn, "src");
  fp_check_ptr(scale, fn, "scale");
  fp_check_ptr(out, fn, "out");
  cuda::DeviceGuard guard(device);
  cuda::dispatch_dtype(dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr const auto& R = kRowScaleBuffers;
    const int64_t per_block = static_cast<int64_t>(kThreads) * kPerThread;
    const dim3 grid(static_cast<unsigned>((cols + per_block - 1) / per_block), cuda::grid_dim_y(rows));
    row_scale_kernel<T><<<grid, kThreads, 0, cuda::as_stream(stream)>>>(
        reinterpret_cast<const buf_t<role_of(R, "src"), T>*>(src),
        reinterpret_cast<const buf_t<role_of(R, "scale"), T>*>(scale),
        reinterpret_cast<buf_t<role_of(R, "out"), T>*>(out), rows, cols);
    cuda::check_launch("row_scale_kernel");
  });
}

}  // namespace row_scale
}  // namespace fastpose
