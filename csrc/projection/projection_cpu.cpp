// project_to_2d / reprojection_loss on the CPU: OpenMP over fixed chunks of points; inside a chunk,
// blocks of L = B / sizeof(T) consecutive points (B = 64, 32 or 16 bytes by the CPU: lane_bytes)
// are computed on explicit lane vectors, each lane with its own point's camera (CameraWalk: one
// camera per sequence or per frame alike), and the last < L points of a chunk with the scalar
// formulas of projection.h. Per-point outputs are the same bits for every B. The reprojection loss
// is summed per chunk (T lanes, then double) and the chunk sums are added in chunk order, so the
// result does not depend on the number of threads (it does, by an ulp or two, on B).
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
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

// Interleaved (x, y, z) stores of L = B / sizeof(T) gradients held in three lane vectors: two
// two-source permutes per output vector (AVX-512: vpermt2ps/pd), three full stores. Written as a
// loop of stride-3 scalar stores, GCC extracted every lane on its own (48 extracts + scalar stores
// per 16 float points, ~40 % of the fused loss-and-gradient pass).
// Output vector k (k = 0, 1, 2) holds elements s = k L + i (i < L) of the interleaved stream:
// component s % 3 of point s / 3.
template <typename T, int B>
struct VecOf {  // B bytes of T lanes (GCC vector extension), see "explicit lane vectors" below
  typedef T type __attribute__((vector_size(B)));
};
template <typename T, int B>
using Vec = typename VecOf<T, B>::type;
template <typename T, int B>
constexpr int lanes_of() {
  return B / static_cast<int>(sizeof(T));
}
template <typename T, int B>
struct LaneIndexOf {  // the integer vector that indexes Vec<T, B> lanes in __builtin_shuffle
  using I = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  typedef I type __attribute__((vector_size(B)));
};
template <typename T, int B>
__attribute__((always_inline)) inline Vec<T, B> vload(const T* p) {  // unaligned (memcpy: vmovups)
  Vec<T, B> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <typename T, int B>
__attribute__((always_inline)) inline void vstore(T* p, const Vec<T, B>& v) {
  std::memcpy(p, &v, sizeof(v));
}
template <typename T, int B>
__attribute__((always_inline)) inline Vec<T, B> vsplat(T s) {
  return Vec<T, B>{} + s;
}
template <typename T, int B>
__attribute__((always_inline)) inline Vec<T, B> viota() {  // {0, 1, ..., L-1}
  Vec<T, B> v;
  for (int l = 0; l < lanes_of<T, B>(); ++l) v[l] = static_cast<T>(l);
  return v;
}
// Step 1, from (gx, gy): stream element s takes lane s / 3 of gx (index s / 3) or of gy (index
// L + s / 3); z elements are filled by step 2, so their index here is any valid one (0).
constexpr int xyz_index_xy(int L, int k, int i) {
  return (k * L + i) % 3 == 0 ? (k * L + i) / 3 : ((k * L + i) % 3 == 1 ? L + (k * L + i) / 3 : 0);
}
// Step 2, from (step 1, gz): z elements take lane s / 3 of gz (index L + s / 3), the others keep i.
constexpr int xyz_index_z(int L, int k, int i) { return (k * L + i) % 3 == 2 ? L + (k * L + i) / 3 : i; }

template <typename T, int B, int K, int... I>
__attribute__((always_inline)) inline void store_xyz_part(T* __restrict dst, const Vec<T, B>& gx,
                                                          const Vec<T, B>& gy, const Vec<T, B>& gz,
                                                          std::integer_sequence<int, I...>) {
  using M = typename LaneIndexOf<T, B>::type;
  constexpr int L = static_cast<int>(sizeof...(I));
  const M m_xy = {xyz_index_xy(L, K, I)...};
  const M m_z = {xyz_index_z(L, K, I)...};
  vstore<T, B>(dst + K * L, __builtin_shuffle(__builtin_shuffle(gx, gy, m_xy), gz, m_z));
}

// gp[3 l + c] = (gx, gy, gz)[c][l] for l < L.
template <typename T, int B>
__attribute__((always_inline)) inline void store_xyz_vec(T* __restrict gp, const Vec<T, B>& vx, const Vec<T, B>& vy,
                                                         const Vec<T, B>& vz) {
  constexpr auto lanes = std::make_integer_sequence<int, lanes_of<T, B>()>{};
  store_xyz_part<T, B, 0>(gp, vx, vy, vz, lanes);
  store_xyz_part<T, B, 1>(gp, vx, vy, vz, lanes);
  store_xyz_part<T, B, 2>(gp, vx, vy, vz, lanes);
}

// ---- explicit lane vectors (Vec<T, B>: B bytes of T, e.g. 16 float lanes at B = 64) --------------
// The per-point formulas of projection.h written on whole vectors, operation for operation in the
// same order (this file is compiled without FMA contraction), so lane l is bit-identical to the
// scalar functions on point l -- the scalar functions still handle each run's tail. Why not an
// `omp simd` loop over the scalar functions: GCC vectorised it, but with the nine camera values
// and the permute masks spilled and reloaded every block (~170 instructions per 16 float points);
// with explicit vectors they stay in registers.
template <typename T, int B>
struct CameraLanes {
  Vec<T, B> fx, fy, cx, cy, k1, k2, k3, pa, pb;
};

template <typename T, int B>
__attribute__((always_inline)) inline CameraLanes<T, B> splat_camera(const Camera<T>& c) {
  return CameraLanes<T, B>{vsplat<T, B>(c.fx), vsplat<T, B>(c.fy), vsplat<T, B>(c.cx),
                           vsplat<T, B>(c.cy), vsplat<T, B>(c.k1),
                        vsplat<T, B>(c.k2), vsplat<T, B>(c.k3), vsplat<T, B>(c.pa), vsplat<T, B>(c.pb)};
}

// Deinterleave of the 3 L values (x0 y0 z0 x1 ...) of L points held in v0, v1, v2: component c of
// point l is stream element s = 3 l + c; step 1 takes it from (v0, v1) when s < 2 L (index s),
// step 2 from v2 otherwise (index L + s - 2 L) and keeps step 1's lane l elsewhere.
constexpr int xyz_load_index_01(int L, int c, int l) { return 3 * l + c < 2 * L ? 3 * l + c : 0; }
constexpr int xyz_load_index_2(int L, int c, int l) { return 3 * l + c >= 2 * L ? 3 * l + c - L : l; }

template <typename T, int B, int C, int... I>
__attribute__((always_inline)) inline Vec<T, B> xyz_component(const Vec<T, B>& v0, const Vec<T, B>& v1,
                                                              const Vec<T, B>& v2,
                                                           std::integer_sequence<int, I...>) {
  using M = typename LaneIndexOf<T, B>::type;
  constexpr int L = static_cast<int>(sizeof...(I));
  const M m01 = {xyz_load_index_01(L, C, I)...};
  const M m2 = {xyz_load_index_2(L, C, I)...};
  return __builtin_shuffle(__builtin_shuffle(v0, v1, m01), v2, m2);
}

// (x, y, z) lanes of the L points at p (3 L values).
template <typename T, int B>
__attribute__((always_inline)) inline void load_xyz(const T* __restrict p, Vec<T, B>& x, Vec<T, B>& y, Vec<T, B>& z) {
  constexpr int L = lanes_of<T, B>();
  const Vec<T, B> v0 = vload<T, B>(p), v1 = vload<T, B>(p + L), v2 = vload<T, B>(p + 2 * L);
  constexpr auto lanes = std::make_integer_sequence<int, L>{};
  x = xyz_component<T, B, 0>(v0, v1, v2, lanes);
  y = xyz_component<T, B, 1>(v0, v1, v2, lanes);
  z = xyz_component<T, B, 2>(v0, v1, v2, lanes);
}

// (u, v) lanes of the L pairs at q (2 L values): element 2 l + c of (v0, v1).
template <typename T, int B, int... I>
__attribute__((always_inline)) inline void load_xy_pairs(const T* __restrict q, Vec<T, B>& a, Vec<T, B>& b,
                                                         std::integer_sequence<int, I...>) {
  using M = typename LaneIndexOf<T, B>::type;
  constexpr int L = static_cast<int>(sizeof...(I));
  const Vec<T, B> v0 = vload<T, B>(q), v1 = vload<T, B>(q + L);
  const M even = {(2 * I)...}, odd = {(2 * I + 1)...};
  a = __builtin_shuffle(v0, v1, even);
  b = __builtin_shuffle(v0, v1, odd);
}

// Interleaved store of L pairs: output vector k holds elements 2 l + c = k L + i.
template <typename T, int B, int... I>
__attribute__((always_inline)) inline void store_xy_pairs(T* __restrict q, const Vec<T, B>& a, const Vec<T, B>& b,
                                                          std::integer_sequence<int, I...>) {
  using M = typename LaneIndexOf<T, B>::type;
  constexpr int L = static_cast<int>(sizeof...(I));
  const M lo = {((I % 2) * L + I / 2)...}, hi = {((I % 2) * L + (L + I) / 2)...};
  vstore<T, B>(q, __builtin_shuffle(a, b, lo));
  vstore<T, B>(q + L, __builtin_shuffle(a, b, hi));
}

template <typename T, int B>
__attribute__((always_inline)) inline Vec<T, B> vsqrt(Vec<T, B> x) {
  Vec<T, B> r;
  for (int l = 0; l < lanes_of<T, B>(); ++l) r[l] = std::sqrt(x[l]);  // vsqrtps/pd (no errno)
  return r;
}

// clamp_unit on lanes: t < -1 ? -1 : (t > 1 ? 1 : t); NaN passes through.
template <typename T, int B>
__attribute__((always_inline)) inline Vec<T, B> vclamp_unit(Vec<T, B> t) {
  const Vec<T, B> one = vsplat<T, B>(T(1)), mone = vsplat<T, B>(T(-1));
  return t < mone ? mone : (t > one ? one : t);
}

// project_point on lanes; also returns the intermediates the gradient reuses (bit-identical: the
// scalar backward recomputes exactly these expressions).
template <typename T, int B>
struct ProjLanes {
  Vec<T, B> bx, by, u, v, r2, s, ox, oy;
};

template <typename T, int B>
__attribute__((always_inline)) inline ProjLanes<T, B> vproject(Vec<T, B> x, Vec<T, B> y, Vec<T, B> z,
                                                               const CameraLanes<T, B>& c) {
  ProjLanes<T, B> q;
  q.bx = x / z;
  q.by = y / z;
  q.u = vclamp_unit<T, B>(q.bx);
  q.v = vclamp_unit<T, B>(q.by);
  q.r2 = q.u * q.u + q.v * q.v;
  const Vec<T, B> radial = T(1) + q.r2 * (c.k1 + q.r2 * (c.k2 + q.r2 * c.k3));
  q.s = radial + (c.pa * q.u + c.pb * q.v);
  q.ox = c.fx * (q.u * q.s + c.pa * q.r2) + c.cx;
  q.oy = c.fy * (q.v * q.s + c.pb * q.r2) + c.cy;
  return q;
}

// project_point_backward on lanes, from vproject's intermediates.
template <typename T, int B>
__attribute__((always_inline)) inline void vproject_backward(const ProjLanes<T, B>& q, Vec<T, B> z,
                                                             const CameraLanes<T, B>& c, Vec<T, B> go_x,
                                                             Vec<T, B> go_y, Vec<T, B>& gx, Vec<T, B>& gy,
                                                             Vec<T, B>& gz) {
  const Vec<T, B> rp = c.k1 + q.r2 * (T(2) * c.k2 + T(3) * c.k3 * q.r2);
  const Vec<T, B> a = go_x * c.fx, b = go_y * c.fy;
  const Vec<T, B> cc = a * q.u + b * q.v, qq = a * c.pa + b * c.pb;
  Vec<T, B> gu = a * q.s + cc * (T(2) * q.u * rp + c.pa) + T(2) * q.u * qq;
  Vec<T, B> gv = b * q.s + cc * (T(2) * q.v * rp + c.pb) + T(2) * q.v * qq;
  // zero where the clamp is active: -1 <= bx <= 1 exactly when clamp(bx) == bx (false for NaN,
  // as the scalar test; one compare per lane vector where GCC scalarised the two-sided test)
  const Vec<T, B> zero{};
  gu = q.u == q.bx ? gu : zero;
  gv = q.v == q.by ? gv : zero;
  const Vec<T, B> iz = T(1) / z;
  gx = gu * iz;
  gy = gv * iz;
  gz = -(gu * q.bx + gv * q.by) * iz;
}

// The camera lanes of consecutive points, walking a chunk front to back. Points
// [k cam_div, (k + 1) cam_div) use camera row k % ncams (projection.h: camera_row); `row` is the
// row of the run holding the current point and `end` the first point after that run, both moved
// forward incrementally (no integer division per block). A block of L points inside one run gets
// that camera in every lane (splat); a block crossing one run boundary (cam_div >= L: one camera
// per frame, cam_div = J = 17) takes the first camera in the lanes before the boundary and the
// next one after it (a blend); a block crossing several (cam_div < L) is gathered lane by lane.
// Lane l always holds exactly the camera values of its point, so results do not depend on how
// points fall into blocks.
template <typename T>
struct CameraWalk {
  const T* camera;
  int64_t ncams, cam_div, row, end;

  CameraWalk(const T* cam, int64_t nc, int64_t div, int64_t p0)
      : camera(cam), ncams(nc), cam_div(div), row((p0 / div) % nc), end((p0 / div + 1) * div) {}

  int64_t next_row(int64_t r) const { return r + 1 == ncams ? 0 : r + 1; }

  __attribute__((always_inline)) void advance_to(int64_t i) {
    while (i >= end) {
      row = next_row(row);
      end += cam_div;
    }
  }

  // The camera of point i (i never decreases between calls).
  __attribute__((always_inline)) Camera<T> at(int64_t i) {
    advance_to(i);
    return load_camera<T>(camera + row * kCam);
  }

  // The camera lanes of points [i, i + L).
  template <int B>
  __attribute__((always_inline)) CameraLanes<T, B> lanes(int64_t i) {
    constexpr int L = lanes_of<T, B>();
    advance_to(i);
    const CameraLanes<T, B> a = splat_camera<T, B>(load_camera<T>(camera + row * kCam));
    if (i + L <= end) return a;
    if (i + L <= end + cam_div) {
      const CameraLanes<T, B> b = splat_camera<T, B>(load_camera<T>(camera + next_row(row) * kCam));
      const auto first = viota<T, B>() < vsplat<T, B>(static_cast<T>(end - i));  // lanes before the boundary
      return CameraLanes<T, B>{first ? a.fx : b.fx, first ? a.fy : b.fy, first ? a.cx : b.cx,
                            first ? a.cy : b.cy, first ? a.k1 : b.k1, first ? a.k2 : b.k2,
                            first ? a.k3 : b.k3, first ? a.pa : b.pa, first ? a.pb : b.pb};
    }
    T lane[kCam][L];
    int64_t r = row, e = end;
    for (int l = 0; l < L; ++l) {
      while (i + l >= e) {
        r = next_row(r);
        e += cam_div;
      }
      for (int k = 0; k < kCam; ++k) lane[k][l] = camera[r * kCam + k];
    }
    return CameraLanes<T, B>{vload<T, B>(lane[0]), vload<T, B>(lane[1]), vload<T, B>(lane[2]), vload<T, B>(lane[3]),
                          vload<T, B>(lane[4]), vload<T, B>(lane[5]), vload<T, B>(lane[6]), vload<T, B>(lane[7]),
                          vload<T, B>(lane[8])};
  }
};

// One chunk [p0, p1) of project_to_2d: blocks of L points, then the last < L points one by one.
template <typename T, int B>
FP_CPU_CLONES void forward_chunk(const T* __restrict p, int64_t p0, int64_t p1, const T* camera, int64_t ncams,
                                 int64_t cam_div, T* __restrict out) {
  constexpr int L = lanes_of<T, B>();
  constexpr auto lanes = std::make_integer_sequence<int, L>{};
  CameraWalk<T> cams(camera, ncams, cam_div, p0);
  int64_t i = p0;
  for (; i + L <= p1; i += L) {
    const CameraLanes<T, B> cv = cams.template lanes<B>(i);
    Vec<T, B> x, y, z;
    load_xyz<T, B>(p + 3 * i, x, y, z);
    const ProjLanes<T, B> q = vproject<T, B>(x, y, z, cv);
    store_xy_pairs<T, B>(out + 2 * i, q.ox, q.oy, lanes);
  }
  for (; i < p1; ++i) {
    T ox, oy;
    project_point(p[3 * i], p[3 * i + 1], p[3 * i + 2], cams.at(i), ox, oy);
    out[2 * i] = ox;
    out[2 * i + 1] = oy;
  }
}

// One chunk of the project_to_2d backward: grad_out (go) -> gradient on the points (gp).
template <typename T, int B>
FP_CPU_CLONES void backward_chunk(const T* __restrict go, const T* __restrict p, int64_t p0, int64_t p1,
                                  const T* camera, int64_t ncams, int64_t cam_div, T* __restrict gp) {
  constexpr int L = lanes_of<T, B>();
  constexpr auto lanes = std::make_integer_sequence<int, L>{};
  CameraWalk<T> cams(camera, ncams, cam_div, p0);
  int64_t i = p0;
  for (; i + L <= p1; i += L) {
    const CameraLanes<T, B> cv = cams.template lanes<B>(i);
    Vec<T, B> x, y, z, gox, goy, gx, gy, gz;
    load_xyz<T, B>(p + 3 * i, x, y, z);
    load_xy_pairs<T, B>(go + 2 * i, gox, goy, lanes);
    vproject_backward<T, B>(vproject<T, B>(x, y, z, cv), z, cv, gox, goy, gx, gy, gz);
    store_xyz_vec<T, B>(gp + 3 * i, gx, gy, gz);
  }
  for (; i < p1; ++i) {
    T gx, gy, gz;
    project_point_backward(p[3 * i], p[3 * i + 1], p[3 * i + 2], cams.at(i), go[2 * i], go[2 * i + 1], gx, gy, gz);
    gp[3 * i] = gx;
    gp[3 * i + 1] = gy;
    gp[3 * i + 2] = gz;
  }
}

// One chunk of the loss: sum of w * ||proj - kp|| over [p0, p1) and, if kGrad, its gradient times
// `scale`. kWeighted is a template flag, not a null-pointer test inside the loop (a branch per
// point). Summation: lane l of a T vector adds the points p0 + l, p0 + L + l, ... of the full
// blocks; the last < L points are added to lane 0; then the lanes are added pairwise (L/2 apart,
// then L/4, ...), and the chunk's sum is returned in double. Fixed per chunk, so independent of
// the thread count.
template <typename T, int B, bool kGrad, bool kWeighted>
FP_CPU_CLONES double reproj_chunk(const T* __restrict p, int64_t p0, int64_t p1, const T* camera, int64_t ncams,
                                  int64_t cam_div, const T* __restrict kp, const T* __restrict wt, T scale,
                                  T* __restrict gp) {
  constexpr int L = lanes_of<T, B>();
  constexpr auto lanes = std::make_integer_sequence<int, L>{};
  CameraWalk<T> cams(camera, ncams, cam_div, p0);
  const Vec<T, B> vscale = vsplat<T, B>(scale), zero{};
  Vec<T, B> acc{};
  int64_t i = p0;
  for (; i + L <= p1; i += L) {
    const CameraLanes<T, B> cv = cams.template lanes<B>(i);
    Vec<T, B> x, y, z, kx, ky;
    load_xyz<T, B>(p + 3 * i, x, y, z);
    load_xy_pairs<T, B>(kp + 2 * i, kx, ky, lanes);
    const ProjLanes<T, B> q = vproject<T, B>(x, y, z, cv);
    const Vec<T, B> ex = q.ox - kx, ey = q.oy - ky;
    const Vec<T, B> nrm = vsqrt<T, B>(ex * ex + ey * ey);
    Vec<T, B> w = vsplat<T, B>(T(1));
    if constexpr (kWeighted) w = vload<T, B>(wt + i);
    acc += w * nrm;
    if constexpr (kGrad) {
      // d||e|| / de = e / ||e||, 0 at e = 0 (and for NaN): the division's other lanes are discarded
      const Vec<T, B> k = nrm > zero ? w * vscale / nrm : zero;
      Vec<T, B> gx, gy, gz;
      vproject_backward<T, B>(q, z, cv, k * ex, k * ey, gx, gy, gz);
      store_xyz_vec<T, B>(gp + 3 * i, gx, gy, gz);
    }
  }
  T part[L];
  std::memcpy(part, &acc, sizeof(part));
  for (; i < p1; ++i) {
    T gx, gy, gz;
    part[0] += reprojection_point(p[3 * i], p[3 * i + 1], p[3 * i + 2], cams.at(i), kp[2 * i], kp[2 * i + 1],
                                  kWeighted ? wt[i] : T(1), scale, kGrad, gx, gy, gz);
    if constexpr (kGrad) {
      gp[3 * i] = gx;
      gp[3 * i + 1] = gy;
      gp[3 * i + 2] = gz;
    }
  }
  for (int h = L / 2; h >= 1; h /= 2)
    for (int l = 0; l < h; ++l) part[l] += part[l + h];
  return static_cast<double>(part[0]);
}

// reproj_chunk with the weights / gradient flags picked from the (null or not) pointers.
template <typename T, int B>
double reproj_chunk_any(const T* p, int64_t p0, int64_t p1, const T* camera, int64_t ncams, int64_t cam_div,
                        const T* kp, const T* wt, T sc, T* grad) {
  if (wt && grad) return reproj_chunk<T, B, true, true>(p, p0, p1, camera, ncams, cam_div, kp, wt, sc, grad);
  if (wt) return reproj_chunk<T, B, false, true>(p, p0, p1, camera, ncams, cam_div, kp, wt, sc, grad);
  if (grad) return reproj_chunk<T, B, true, false>(p, p0, p1, camera, ncams, cam_div, kp, wt, sc, grad);
  return reproj_chunk<T, B, false, false>(p, p0, p1, camera, ncams, cam_div, kp, wt, sc, grad);
}

// Lane vector width in bytes, by the CPU the process runs on: 64 with the AVX-512 of the x86-64-v4
// clone (two-source permutes of whole zmm registers: vpermt2ps/pd), 32 with AVX2 + FMA (the
// x86-64-v3 clone; AVX2 permutes a 32-byte pair as vpermps + blends), else 16 (SSE2: shufps /
// unpck). The chunk functions are compiled for every width in every target_clones variant and the
// width that matches the variant runs: a permute wider than the registers is lowered to per-lane
// inserts and extracts. Measured, 1 thread, 1024 x 243 x 17 points, reprojection fwd+grad /
// project_to_2d fwd / bwd: -march=x86-64-v3 with 64-byte vectors 55.6 / 42.3 / 39.1 ms, with
// 32-byte vectors 11.4 / 3.9 / 6.9 ms (the omp-simd code before them: 59 / 12.4 / 26.6 ms).
int cpu_lane_bytes() {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(FASTPOSE_NO_CLONES)
  static const int bytes = (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                            __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                            __builtin_cpu_supports("avx512cd"))
                               ? 64
                               : ((__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 32 : 16);
  return bytes;
#elif defined(__AVX512F__)
  return 64;
#elif defined(__AVX2__)
  return 32;
#else
  return 16;
#endif
}

// FASTPOSE_PROJECTION_LANE_BYTES=16|32|64 forces a width (tests run every width's code on one machine;
// any width runs on any CPU, only slower where it does not match the registers). Read per call.
int lane_bytes(const char* fn) {
  const char* env = std::getenv("FASTPOSE_PROJECTION_LANE_BYTES");
  if (env == nullptr || *env == '\0') return cpu_lane_bytes();
  const std::string v(env);
  fp_check(v == "16" || v == "32" || v == "64",
           std::string(fn) + ": FASTPOSE_PROJECTION_LANE_BYTES must be 16, 32 or 64 (or unset), got '" + v + "'");
  return std::stoi(v);
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
                  int width, int threads) {
  const int64_t chunks = (npoints + kChunkPoints - 1) / kChunkPoints;
#pragma omp parallel for schedule(static) num_threads(resolve_threads(threads)) \
    if (npoints >= kParallelMinPoints)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t p0 = ch * kChunkPoints, p1 = std::min(npoints, p0 + kChunkPoints);
    switch (width) {
      case 64: forward_chunk<T, 64>(points, p0, p1, camera, ncams, cam_div, out); break;
      case 32: forward_chunk<T, 32>(points, p0, p1, camera, ncams, cam_div, out); break;
      default: forward_chunk<T, 16>(points, p0, p1, camera, ncams, cam_div, out);
    }
  }
}

template <typename T>
void backward_impl(const T* go, const T* points, int64_t npoints, const T* camera, int64_t ncams, int64_t cam_div,
                   T* gp, int width, int threads) {
  const int64_t chunks = (npoints + kChunkPoints - 1) / kChunkPoints;
#pragma omp parallel for schedule(static) num_threads(resolve_threads(threads)) \
    if (npoints >= kParallelMinPoints)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t p0 = ch * kChunkPoints, p1 = std::min(npoints, p0 + kChunkPoints);
    switch (width) {
      case 64: backward_chunk<T, 64>(go, points, p0, p1, camera, ncams, cam_div, gp); break;
      case 32: backward_chunk<T, 32>(go, points, p0, p1, camera, ncams, cam_div, gp); break;
      default: backward_chunk<T, 16>(go, points, p0, p1, camera, ncams, cam_div, gp);
    }
  }
}

template <typename T>
void reproj_impl(const T* points, int64_t npoints, const T* camera, int64_t ncams, int64_t cam_div, const T* kp,
                 const T* wt, double scale, T* loss, T* grad, int width, int threads) {
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
    part[ch] = width == 64   ? reproj_chunk_any<T, 64>(points, p0, p1, camera, ncams, cam_div, kp, wt, sc, grad)
               : width == 32 ? reproj_chunk_any<T, 32>(points, p0, p1, camera, ncams, cam_div, kp, wt, sc, grad)
                             : reproj_chunk_any<T, 16>(points, p0, p1, camera, ncams, cam_div, kp, wt, sc, grad);
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
                 cam_div, reinterpret_cast<float*>(out), lane_bytes(fn), threads);
  else
    forward_impl(reinterpret_cast<const double*>(points), npoints, reinterpret_cast<const double*>(camera), ncams,
                 cam_div, reinterpret_cast<double*>(out), lane_bytes(fn), threads);
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
                  lane_bytes(fn), threads);
  else
    backward_impl(reinterpret_cast<const double*>(grad_out), reinterpret_cast<const double*>(points), npoints,
                  reinterpret_cast<const double*>(camera), ncams, cam_div, reinterpret_cast<double*>(grad_points),
                  lane_bytes(fn), threads);
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
                reinterpret_cast<float*>(loss), reinterpret_cast<float*>(grad), lane_bytes(fn), threads);
  else
    reproj_impl(reinterpret_cast<const double*>(points), npoints, reinterpret_cast<const double*>(camera), ncams,
                cam_div, reinterpret_cast<const double*>(keypoints), reinterpret_cast<const double*>(weights), scale,
                reinterpret_cast<double*>(loss), reinterpret_cast<double*>(grad), lane_bytes(fn), threads);
}

}  // namespace projection
}  // namespace fastpose
