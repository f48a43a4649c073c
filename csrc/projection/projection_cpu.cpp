// project_to_2d / reprojection_loss on the CPU: OpenMP over fixed chunks of points; inside a chunk,
// runs of points that share a camera are processed with the camera held in registers (the inner
// loops vectorise). The reprojection loss is summed per chunk in double and the chunk sums are
// added in chunk order, so the result does not depend on the number of threads.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "../common/fp_cpu_memory.h"
#include "projection.h"

namespace fastpose {
namespace projection {
namespace {

constexpr int64_t kChunkPoints = 4096;
// Below this many points one thread is faster than waking a second (a few ns per point).
constexpr int64_t kParallelMinPoints = 65536;

int resolve_threads(int threads) { return threads > 0 ? threads : omp_get_max_threads(); }

template <typename T>
FP_CPU_CLONES void forward_run(const T* __restrict p, int64_t n, const Camera<T> c, T* __restrict out) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    T ox, oy;
    project_point(p[3 * i], p[3 * i + 1], p[3 * i + 2], c, ox, oy);
    out[2 * i] = ox;
    out[2 * i + 1] = oy;
  }
}

// Interleaved (x, y, z) stores of the L = 64 / sizeof(T) gradients computed in lanes: the lane
// math stays a separate `omp simd` loop (it vectorises), and the three lane vectors are
// interleaved by two-source permutes into three full vectors (AVX-512: two vpermt2ps each) and
// stored whole. Written as a loop of stride-3 scalar stores, GCC extracted every lane on its own
// (48 extracts + scalar stores per 16 float points; ~40 % of the fused loss-and-gradient pass).
// Output vector k (k = 0, 1, 2) holds elements s = k L + i (i < L) of the interleaved stream:
// component s % 3 of point s / 3.
template <typename T>
struct LaneIndexOf;  // the integer vector that indexes FpVec<T> lanes in __builtin_shuffle
template <>
struct LaneIndexOf<float> {
  typedef int32_t type __attribute__((vector_size(64)));
};
template <>
struct LaneIndexOf<double> {
  typedef int64_t type __attribute__((vector_size(64)));
};
// Step 1, from (gx, gy): stream element s takes lane s / 3 of gx (index s / 3) or of gy (index
// L + s / 3); z elements are filled by step 2, so their index here is any valid one (0).
constexpr int xyz_index_xy(int L, int k, int i) {
  return (k * L + i) % 3 == 0 ? (k * L + i) / 3 : ((k * L + i) % 3 == 1 ? L + (k * L + i) / 3 : 0);
}
// Step 2, from (step 1, gz): z elements take lane s / 3 of gz (index L + s / 3), the others keep i.
constexpr int xyz_index_z(int L, int k, int i) { return (k * L + i) % 3 == 2 ? L + (k * L + i) / 3 : i; }

template <typename T, int K, int... I>
__attribute__((always_inline)) inline void store_xyz_part(T* __restrict dst, const FpVec<T>& gx,
                                                          const FpVec<T>& gy, const FpVec<T>& gz,
                                                          std::integer_sequence<int, I...>) {
  using M = typename LaneIndexOf<T>::type;
  constexpr int L = static_cast<int>(sizeof...(I));
  const M m_xy = {xyz_index_xy(L, K, I)...};
  const M m_z = {xyz_index_z(L, K, I)...};
  fp_vstore(dst + K * L, __builtin_shuffle(__builtin_shuffle(gx, gy, m_xy), gz, m_z));
}

// gp[3 l + c] = (gx, gy, gz)[c][l] for l < L.
template <typename T>
__attribute__((always_inline)) inline void store_xyz(T* __restrict gp, const T* gx, const T* gy, const T* gz) {
  const FpVec<T> vx = fp_vload(gx), vy = fp_vload(gy), vz = fp_vload(gz);
  constexpr auto lanes = std::make_integer_sequence<int, fp_vec_lanes<T>()>{};
  store_xyz_part<T, 0>(gp, vx, vy, vz, lanes);
  store_xyz_part<T, 1>(gp, vx, vy, vz, lanes);
  store_xyz_part<T, 2>(gp, vx, vy, vz, lanes);
}

template <typename T>
FP_CPU_CLONES void backward_run(const T* __restrict go, const T* __restrict p, int64_t n, const Camera<T> c,
                                T* __restrict gp) {
  constexpr int L = 64 / sizeof(T);
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    T gx[L], gy[L], gz[L];
#pragma omp simd
    for (int l = 0; l < L; ++l) {
      const int64_t j = i + l;
      project_point_backward(p[3 * j], p[3 * j + 1], p[3 * j + 2], c, go[2 * j], go[2 * j + 1], gx[l], gy[l], gz[l]);
    }
    store_xyz<T>(gp + 3 * i, gx, gy, gz);
  }
  for (; i < n; ++i) {
    T gx, gy, gz;
    project_point_backward(p[3 * i], p[3 * i + 1], p[3 * i + 2], c, go[2 * i], go[2 * i + 1], gx, gy, gz);
    gp[3 * i] = gx;
    gp[3 * i + 1] = gy;
    gp[3 * i + 2] = gz;
  }
}

// Sum over a run of w * ||proj - kp|| (in T lanes, then double) and, if kGrad, the gradient.
// kWeighted is a template flag, not a null-pointer test inside the loop: the test defeats the
// vectoriser (measured 6x slower).
template <typename T, bool kGrad, bool kWeighted>
FP_CPU_CLONES double reproj_run(const T* __restrict p, const T* __restrict kp, const T* __restrict wt, int64_t n,
                                const Camera<T> c, T scale, T* __restrict gp) {
  constexpr int L = 64 / sizeof(T);
  T acc[L];
  for (int l = 0; l < L; ++l) acc[l] = T(0);
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    T gx[L], gy[L], gz[L];
#pragma omp simd
    for (int l = 0; l < L; ++l) {
      const int64_t j = i + l;
      acc[l] += reprojection_point(p[3 * j], p[3 * j + 1], p[3 * j + 2], c, kp[2 * j], kp[2 * j + 1],
                                   kWeighted ? wt[j] : T(1), scale, kGrad, gx[l], gy[l], gz[l]);
    }
    if constexpr (kGrad) store_xyz<T>(gp + 3 * i, gx, gy, gz);
  }
  for (; i < n; ++i) {
    T gx, gy, gz;
    acc[0] += reprojection_point(p[3 * i], p[3 * i + 1], p[3 * i + 2], c, kp[2 * i], kp[2 * i + 1],
                                 kWeighted ? wt[i] : T(1), scale, kGrad, gx, gy, gz);
    if constexpr (kGrad) {
      gp[3 * i] = gx;
      gp[3 * i + 1] = gy;
      gp[3 * i + 2] = gz;
    }
  }
  for (int w = L / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return static_cast<double>(acc[0]);
}

// Calls fn(first_point, count, camera) for every run of points of chunk [p0, p1) sharing a camera:
// points [k cam_div, (k + 1) cam_div) use camera row k % ncams (projection.h: camera_row).
template <typename T, typename Fn>
void for_camera_runs(int64_t p0, int64_t p1, int64_t ncams, int64_t cam_div, const T* camera, Fn&& fn) {
  int64_t i = p0;
  while (i < p1) {
    const int64_t k = i / cam_div;
    const int64_t end = std::min(p1, (k + 1) * cam_div);
    fn(i, end - i, load_camera<T>(camera + (k % ncams) * kCam));
    i = end;
  }
}

void check_common(int dtype, int64_t npoints, int64_t ncams, int64_t cam_div, const char* fn) {
  fp_check_dtype_cpu(dtype, fn);
  fp_check(npoints >= 0, std::string(fn) + ": npoints must be >= 0");
  fp_check(npoints == 0 || (ncams >= 1 && cam_div >= 1),
           std::string(fn) + ": expected ncams >= 1 and cam_div >= 1, got ncams=" + std::to_string(ncams) +
               " cam_div=" + std::to_string(cam_div));
}

template <typename T>
void forward_impl(const T* points, int64_t npoints, const T* camera, int64_t ncams, int64_t cam_div, T* out,
                  int threads) {
  const int64_t chunks = (npoints + kChunkPoints - 1) / kChunkPoints;
#pragma omp parallel for schedule(static) num_threads(resolve_threads(threads)) \
    if (npoints >= kParallelMinPoints)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t p0 = ch * kChunkPoints, p1 = std::min(npoints, p0 + kChunkPoints);
    for_camera_runs(p0, p1, ncams, cam_div, camera, [&](int64_t i, int64_t n, const Camera<T>& c) {
      forward_run<T>(points + 3 * i, n, c, out + 2 * i);
    });
  }
}

template <typename T>
void backward_impl(const T* go, const T* points, int64_t npoints, const T* camera, int64_t ncams, int64_t cam_div,
                   T* gp, int threads) {
  const int64_t chunks = (npoints + kChunkPoints - 1) / kChunkPoints;
#pragma omp parallel for schedule(static) num_threads(resolve_threads(threads)) \
    if (npoints >= kParallelMinPoints)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t p0 = ch * kChunkPoints, p1 = std::min(npoints, p0 + kChunkPoints);
    for_camera_runs(p0, p1, ncams, cam_div, camera, [&](int64_t i, int64_t n, const Camera<T>& c) {
      backward_run<T>(go + 2 * i, points + 3 * i, n, c, gp + 3 * i);
    });
  }
}

template <typename T>
void reproj_impl(const T* points, int64_t npoints, const T* camera, int64_t ncams, int64_t cam_div, const T* kp,
                 const T* wt, double scale, T* loss, T* grad, int threads) {
  if (npoints == 0) {
    *loss = T(0);  // a mean over no points is 0 (documented), not NaN
    return;
  }
  const int64_t chunks = (npoints + kChunkPoints - 1) / kChunkPoints;
  std::vector<double> part(static_cast<size_t>(chunks));
  const T sc = static_cast<T>(scale);
#pragma omp parallel for schedule(static) num_threads(resolve_threads(threads)) \
    if (npoints >= kParallelMinPoints)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t p0 = ch * kChunkPoints, p1 = std::min(npoints, p0 + kChunkPoints);
    double s = 0.0;
    for_camera_runs(p0, p1, ncams, cam_div, camera, [&](int64_t i, int64_t n, const Camera<T>& c) {
      const T* pi = points + 3 * i;
      const T* ki = kp + 2 * i;
      T* gi = grad ? grad + 3 * i : nullptr;
      if (wt && grad)
        s += reproj_run<T, true, true>(pi, ki, wt + i, n, c, sc, gi);
      else if (wt)
        s += reproj_run<T, false, true>(pi, ki, wt + i, n, c, sc, gi);
      else if (grad)
        s += reproj_run<T, true, false>(pi, ki, nullptr, n, c, sc, gi);
      else
        s += reproj_run<T, false, false>(pi, ki, nullptr, n, c, sc, gi);
    });
    part[ch] = s;
  }
  double total = 0.0;
  for (int64_t ch = 0; ch < chunks; ++ch) total += part[ch];
  *loss = static_cast<T>(total * scale);
}

}  // namespace

void project_forward_cpu(int dtype, uintptr_t points, int64_t npoints, uintptr_t camera, int64_t ncams,
                         int64_t cam_div, uintptr_t out, int threads) {
  const char* fn = "projection.project_forward_cpu";
  check_common(dtype, npoints, ncams, cam_div, fn);
  if (npoints == 0) return;
  fp_check_ptr(points, fn, "points");
  fp_check_ptr(camera, fn, "camera");
  fp_check_ptr(out, fn, "out");
  advise_huge_pages(out, static_cast<size_t>(npoints) * 2 * (dtype == 0 ? 4 : 8));
  if (dtype == 0)
    forward_impl(reinterpret_cast<const float*>(points), npoints, reinterpret_cast<const float*>(camera), ncams,
                 cam_div, reinterpret_cast<float*>(out), threads);
  else
    forward_impl(reinterpret_cast<const double*>(points), npoints, reinterpret_cast<const double*>(camera), ncams,
                 cam_div, reinterpret_cast<double*>(out), threads);
}

void project_backward_cpu(int dtype, uintptr_t grad_out, uintptr_t points, int64_t npoints, uintptr_t camera,
                          int64_t ncams, int64_t cam_div, uintptr_t grad_points, int threads) {
  const char* fn = "projection.project_backward_cpu";
  check_common(dtype, npoints, ncams, cam_div, fn);
  if (npoints == 0) return;
  fp_check_ptr(grad_out, fn, "grad_out");
  fp_check_ptr(points, fn, "points");
  fp_check_ptr(camera, fn, "camera");
  fp_check_ptr(grad_points, fn, "grad_points");
  advise_huge_pages(grad_points, static_cast<size_t>(npoints) * 3 * (dtype == 0 ? 4 : 8));
  if (dtype == 0)
    backward_impl(reinterpret_cast<const float*>(grad_out), reinterpret_cast<const float*>(points), npoints,
                  reinterpret_cast<const float*>(camera), ncams, cam_div, reinterpret_cast<float*>(grad_points),
                  threads);
  else
    backward_impl(reinterpret_cast<const double*>(grad_out), reinterpret_cast<const double*>(points), npoints,
                  reinterpret_cast<const double*>(camera), ncams, cam_div, reinterpret_cast<double*>(grad_points),
                  threads);
}

void reprojection_forward_cpu(int dtype, uintptr_t points, int64_t npoints, uintptr_t camera, int64_t ncams,
                              int64_t cam_div, uintptr_t keypoints, uintptr_t weights, double scale, uintptr_t loss,
                              uintptr_t grad, int threads) {
  const char* fn = "projection.reprojection_forward_cpu";
  check_common(dtype, npoints, ncams, cam_div, fn);
  fp_check_ptr(loss, fn, "loss");
  if (npoints > 0) {
    fp_check_ptr(points, fn, "points");
    fp_check_ptr(camera, fn, "camera");
    fp_check_ptr(keypoints, fn, "keypoints");
  }
  advise_huge_pages(grad, static_cast<size_t>(npoints) * 3 * (dtype == 0 ? 4 : 8));
  // On the CPU storage and accumulation types coincide (float32/float64), so every role of
  // kReprojectionForwardBuffers is T here.
  if (dtype == 0)
    reproj_impl(reinterpret_cast<const float*>(points), npoints, reinterpret_cast<const float*>(camera), ncams,
                cam_div, reinterpret_cast<const float*>(keypoints), reinterpret_cast<const float*>(weights), scale,
                reinterpret_cast<float*>(loss), reinterpret_cast<float*>(grad), threads);
  else
    reproj_impl(reinterpret_cast<const double*>(points), npoints, reinterpret_cast<const double*>(camera), ncams,
                cam_div, reinterpret_cast<const double*>(keypoints), reinterpret_cast<const double*>(weights), scale,
                reinterpret_cast<double*>(loss), reinterpret_cast<double*>(grad), threads);
}

}  // namespace projection
}  // namespace fastpose
