// CUDA helpers shared by the .cu files: error checks, the device guard, dtype dispatch, conversions
// between storage types (float, double, __half, __nv_bfloat16) and the accumulation type, packed
// 16-byte loads/stores, and deterministic block reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "fp_common.h"

namespace fastpose {
namespace cuda {

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("fastpose._C CUDA error in ") + what + ": " + cudaGetErrorName(err) + " (" +
                             cudaGetErrorString(err) + ")");
}

// Launch-time error check (no synchronisation: safe inside CUDA graph capture).
inline void check_launch(const char* what) { check(cudaGetLastError(), what); }

inline cudaStream_t as_stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

// Makes `device` current for the launch and restores the previous device afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&prev_), "cudaGetDevice");
    if (prev_ != device) check(cudaSetDevice(device), "cudaSetDevice");
    changed_ = prev_ != device;
  }
  ~DeviceGuard() {
    if (changed_) cudaSetDevice(prev_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = 0;
  bool changed_ = false;
};

template <typename T>
struct TypeTag {
  using type = T;
};

// Calls fn(TypeTag<T>{}) for the storage type of `dtype`.
template <typename Fn>
void dispatch_dtype(int dtype, const char* fn_name, Fn&& fn) {
  switch (dtype) {
    case 0: fn(TypeTag<float>{}); break;
    case 1: fn(TypeTag<double>{}); break;
    case 2: fn(TypeTag<__half>{}); break;
    case 3: fn(TypeTag<__nv_bfloat16>{}); break;
    default:
      throw std::invalid_argument(std::string("fastpose._C: ") + fn_name + ": unknown dtype code " +
                                  std::to_string(dtype));
  }
}

// Storage <-> accumulation conversions (accumulation: float, or double for double).
__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_acc(acc_t<T> v);
template <>
__device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <>
__device__ __forceinline__ double from_acc<double>(double v) { return v; }
template <>
__device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// V consecutive values moved with one 16-byte (or narrower) memory instruction.
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

// Number of values per 16-byte pack.
template <typename T>
constexpr int pack_width() {
  return static_cast<int>(16 / sizeof(T));
}

// Sum of `v` over the block into thread 0, in a fixed order (shuffle tree, then warp sums in warp
// order): the same inputs give the same bits on every run. Returns the total in thread 0.
template <typename A, int kThreads>
__device__ __forceinline__ A block_sum(A v, A* smem /* kThreads / 32 */) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  A total = A(0);
  if (threadIdx.x == 0)
    for (int i = 0; i < kThreads / 32; ++i) total += smem[i];
  __syncthreads();
  return total;
}

inline unsigned grid_dim_y(int64_t rows) { return static_cast<unsigned>(rows < 65535 ? (rows > 0 ? rows : 1) : 65535); }

}  // namespace cuda
}  // namespace fastpose
