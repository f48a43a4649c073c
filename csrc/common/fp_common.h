// Shared definitions of the fastpose kernels: host/device qualifiers, the dtype codes passed from
// Python, exp(), and the argument checks of the host entry points.
//
// The extension is framework-free: every kernel takes raw pointers, sizes and (CUDA) a stream
// handle, so nothing here includes torch. Per-element math lives in `FP_HD` inline functions in
// the per-op headers (csrc/<stem>/<stem>.h) and is compiled both by the host compiler (CPU
// kernels, OpenMP) and by nvcc (CUDA kernels): the CPU tests exercise the formulas the GPU runs.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#if defined(__CUDACC__)
#define FP_HD __host__ __device__ __forceinline__
#else
#define FP_HD inline
#endif

// Hot CPU loops are compiled three times (AVX-512, AVX2+FMA, baseline x86-64) and picked at load
// time through an ifunc, so one wheel is fast everywhere without -march=native. Only GCC on
// x86-64 Linux: elsewhere the baseline build is used.
#if !defined(__CUDACC__) && defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    defined(__linux__) && !defined(FASTPOSE_NO_CLONES)
#define FP_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FP_CPU_CLONES
#endif

namespace fastpose {

// dtype codes used by the Python glue (fastpose/ops/native/_glue.py:_DTYPE_CODE).
enum class DType : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

inline const char* dtype_name(int code) {
  switch (code) {
    case 0: return "float32";
    case 1: return "float64";
    case 2: return "float16";
    case 3: return "bfloat16";
    default: return "unknown";
  }
}

// Accumulation type: float64 stays float64, everything else accumulates in float32.
template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };
template <typename T> using acc_t = typename AccOf<T>::type;

namespace detail {

// exp(x) for float on the CPU, written so that GCC vectorises it inside loops (std::expf is a
// scalar libm call unless -ffast-math is on, which we refuse: it breaks inf/NaN semantics).
// Cephes' expf: x = n ln2 + r, |r| <= ln2 / 2, exp(r) by a degree-6 polynomial (< 2 ulp),
// 2^n assembled in the exponent bits. exp of anything below -87.3 (where float underflows to
// denormals) is returned as exactly 0; NaN propagates.
FP_HD float expf_poly(float x) {
  const float lo = -87.33654f, hi = 88.37626f;
  const float xc = x < lo ? lo : (x > hi ? hi : x);
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to the nearest integer
  const float n = (xc * 1.44269504088896341f + shifter) - shifter;
  float r = n * -0.693359375f + xc;  // Cody-Waite: ln2 split in a high and a low part
  r = n * 2.12194440e-4f + r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
#if defined(__CUDA_ARCH__)
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 128]
  const float scale = __int_as_float(bits);
#else
  // 2^n, n in [-126, 128]. A NaN x gives a NaN n, and converting NaN to int is undefined behaviour
  // in C++ (UBSan: "nan is outside the range of representable values of type 'int'"; x86 returns
  // INT_MIN, whose (INT_MIN + 127) << 23 wraps to 1.0f): n = 0 instead gives the same scale 1.0f, so
  // y = p * 1 is the same NaN, bit for bit, with no undefined operation (checked for all 2^32 inputs).
  const int32_t bits = ((n == n ? static_cast<int32_t>(n) : 0) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
#endif
  const float y = p * scale;
  return x < lo ? 0.0f : y;
}

}  // namespace detail

// exp() used by every kernel: the vectorisable polynomial for float on the host, the hardware
// approximation (ex2.approx, ~2 ulp) for float on the device, the exact libm exp for double.
FP_HD float fp_exp(float x) {
#if defined(__CUDA_ARCH__)
  return __expf(x);
#else
  return detail::expf_poly(x);
#endif
}
FP_HD double fp_exp(double x) { return std::exp(x); }

#if !defined(__CUDACC__) && defined(__GNUC__)
// ---- explicit 64-byte vectors for the CPU kernels (GCC/Clang vector extensions) ----------------
// One FpVec<T> holds 64 / sizeof(T) lanes (16 float, 8 double). The compiler maps it onto one
// zmm (AVX-512), two ymm (AVX2) or four xmm (baseline) registers, in whichever target_clones
// variant it is compiled for. Why not plain arrays `T acc[16]`: with several such accumulators live
// across an inner loop GCC keeps them as scalars between iterations of the outer loop and
// re-packs them every line (measured: ~2.5x slower forward passes at W = 64); a vector type stays
// in registers. Lane l of every operation is the same IEEE operation as the scalar code on element
// l, so summation orders are unchanged.
#define FP_CPU_VECTORS 1
template <typename T>
struct FpVecOf;
template <>
struct FpVecOf<float> {
  typedef float type __attribute__((vector_size(64)));
  typedef int32_t itype __attribute__((vector_size(64)));  // one int32 per lane
};
template <>
struct FpVecOf<double> {
  typedef double type __attribute__((vector_size(64)));
  typedef int32_t itype __attribute__((vector_size(32)));
};
template <typename T>
using FpVec = typename FpVecOf<T>::type;
template <typename T>
using FpIVec = typename FpVecOf<T>::itype;
template <typename T>
constexpr int fp_vec_lanes() {
  return static_cast<int>(64 / sizeof(T));
}

// Unaligned load / store of one vector (memcpy compiles to vmovups).
template <typename T>
__attribute__((always_inline)) inline FpVec<T> fp_vload(const T* p) {
  FpVec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <typename T>
__attribute__((always_inline)) inline void fp_vstore(T* p, const FpVec<T>& v) {
  std::memcpy(p, &v, sizeof(v));
}
template <typename T>
__attribute__((always_inline)) inline FpVec<T> fp_vsplat(T s) {
  return FpVec<T>{} + s;
}
// {0, 1, ..., L-1}: the lane offsets along a line.
template <typename T>
__attribute__((always_inline)) inline FpVec<T> fp_viota() {
  FpVec<T> v;
  for (int l = 0; l < fp_vec_lanes<T>(); ++l) v[l] = static_cast<T>(l);
  return v;
}

// exp over float lanes: lane for lane the same result as detail::expf_poly (Cephes' expf, < 2 ulp;
// 0 below -87.34; NaN propagates), written on vectors so that it stays vectorised whatever the
// loop around it looks like. Bit-identical to the scalar polynomial for every float input (checked
// over all 2^32 bit patterns against the previous clamp-and-convert form), with two operations
// fewer per vector (of ~22), which matters because the softmax kernels are bound by this function:
//   * no lower clamp: a lane below lo gets garbage from the polynomial and 2^n, but the final select
//     returns exactly 0 for it (NaN compares false and stays NaN), as before;
//   * 2^n without a float->int conversion: t = x log2(e) + 1.5 * 2^23 holds n in its low mantissa
//     bits (bits(t) = 0x4B400000 + n for |n| < 2^22), so (bits(t) << 23) + (127 << 23) is
//     (n + 127) << 23 modulo 2^32 -- the same exponent field as the converted n.
// kNonPos: the caller guarantees x <= 0 (or NaN), as for softmax arguments x - max: the upper
// clamp, a no-op there, is skipped (results are identical).
template <bool kNonPos = false>
__attribute__((always_inline)) inline FpVec<float> fp_vexp(FpVec<float> x) {
  using V = FpVec<float>;
  typedef uint32_t UV __attribute__((vector_size(64)));  // unsigned: wrap-around is defined
  const V lo = fp_vsplat(-87.33654f), hi = fp_vsplat(88.37626f);
  V xc = x;
  if constexpr (!kNonPos) xc = x > hi ? hi : x;  // NaN compares false: NaN stays
  const V shifter = fp_vsplat(12582912.0f);  // 1.5 * 2^23: adding it rounds to the nearest integer
  const V t = xc * 1.44269504088896341f + shifter;
  const V n = t - shifter;
  V r = n * -0.693359375f + xc;  // Cody-Waite: ln2 split in a high and a low part
  r = n * 2.12194440e-4f + r;
  V p = fp_vsplat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  UV tbits;
  std::memcpy(&tbits, &t, sizeof(tbits));
  const UV bits = (tbits << 23) + (uint32_t(127) << 23);  // 2^n, n in [-126, 128] for x >= lo
  V scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  const V y = p * scale;
  return x < lo ? V{} : y;
}
// exp over double lanes: libm per lane (double is the accuracy dtype, not the fast path).
template <bool kNonPos = false>
__attribute__((always_inline)) inline FpVec<double> fp_vexp(FpVec<double> x) {
  FpVec<double> y;
  for (int l = 0; l < fp_vec_lanes<double>(); ++l) y[l] = std::exp(x[l]);
  return y;
}
#endif

template <typename A> FP_HD A fp_neg_inf() { return -std::numeric_limits<A>::infinity(); }

// Argument checks of the host entry points (run before any kernel; pybind11 turns
// std::invalid_argument into ValueError).
inline void fp_check(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("fastpose._C: " + what);
}

inline void fp_check_dtype_cpu(int dtype, const char* fn) {
  fp_check(dtype == 0 || dtype == 1, std::string(fn) + ": the CPU kernels take float32 or float64 (code 0/1), got " +
                                         dtype_name(dtype) + " (code " + std::to_string(dtype) + "); "
                                         "float16/bfloat16 are upcast by the Python glue");
}

// Runs fn(CpuTypeTag<float>{}) or fn(CpuTypeTag<double>{}) for the CPU dtype codes 0 / 1 (the CPU
// kernels take float32 and float64; the Python glue upcasts float16/bfloat16 chunk by chunk). The
// CPU twin of cuda::dispatch_dtype: the one place where a CPU entry point turns a code into a type.
template <typename T>
struct CpuTypeTag {
  using type = T;
};
template <typename Fn>
inline void dispatch_dtype_cpu(int dtype, const char* fn_name, Fn&& fn) {
  fp_check_dtype_cpu(dtype, fn_name);
  if (dtype == 0)
    fn(CpuTypeTag<float>{});
  else
    fn(CpuTypeTag<double>{});
}

inline void fp_check_dims(int64_t rows, int64_t d, int64_t h, int64_t w, const char* fn) {
  fp_check(rows >= 0 && d >= 1 && h >= 1 && w >= 1,
           std::string(fn) + ": expected rows >= 0 and D, H, W >= 1, got rows=" + std::to_string(rows) +
               " D=" + std::to_string(d) + " H=" + std::to_string(h) + " W=" + std::to_string(w));
  fp_check(h <= INT32_MAX && w <= INT32_MAX && d <= INT32_MAX,
           std::string(fn) + ": each of D, H, W must be < 2^31");
}

inline void fp_check_ptr(uintptr_t p, const char* fn, const char* name) {
  fp_check(p != 0, std::string(fn) + ": " + name + " must not be a null pointer");
}

// The CUDA kernels move 16-byte packs; the Python glue hands them 16-byte aligned buffers (torch
// allocations are; a misaligned view is copied first).
inline void fp_check_aligned(uintptr_t p, const char* fn, const char* name) {
  fp_check(p % 16 == 0, std::string(fn) + ": " + name + " must be 16-byte aligned (pass a fresh contiguous tensor)");
}

}  // namespace fastpose
