// The CPU engine behind soft_argmax, heatmap_mse and their fused head: one pass over `rows`
// volumes of D*H*W values (2D maps are D = 1), parallel with OpenMP over (row, chunk) work items.
//
// Work decomposition: a row's D*H lines of W values are cut into chunks of ~kChunkElems values
// (whole lines). Each chunk produces a partial (online-softmax state + sum of squared errors) in
// double; the partials of a row are merged in chunk order. The decomposition depends only on the
// shape, never on the thread count or timing, so results are bit-identical from run to run and
// for any number of threads.
//
// Inner loops: along a line of W values in explicit 64-byte vectors (FpVec<T> of fp_common.h: 16
// float lanes, one zmm / two ymm / four xmm per target_clones variant), so accumulators stay in
// registers across lines and no floating-point sum is reordered by the compiler (no -ffast-math);
// lanes are reduced with a fixed-order tree. exp() is the vector polynomial fp_vexp for float.
// The Gaussian target's per-axis factors are tabulated once per row (fill_tables).
#pragma once

#include <omp.h>

#include <algorithm>
#include <vector>

#include "../heatmap_mse/heatmap_mse.h"
#include "../soft_argmax/soft_argmax.h"
#include "fp_common.h"

namespace fastpose {
namespace volume_cpu {

constexpr int64_t kChunkElems = 32768;  // ~128 KiB of float per work item: fits L2, many items
// Below this many values in total one thread is faster than waking a second (< 1 ns per value).
constexpr int64_t kParallelMinElems = int64_t(1) << 18;
constexpr int64_t kBlockElems = 1024;   // values per exp-reference block (lane sums flushed per block)

template <typename T>
struct Volume {
  const T* x;  // (rows, D, H, W)
  int64_t rows, d, h, w;
  int64_t numel_row() const { return d * h * w; }
};

// The Gaussian target of the MSE part: joints (rows, jdim) = (x, y[, z]), k = 1 / (2 sigma^2),
// weights (rows) or nullptr (all 1).
template <typename T>
struct Target {
  const T* joints;
  int jdim;
  T k;
  const T* weights;
  T weight(int64_t r) const { return weights ? weights[r] : T(1); }
  T mu(int64_t r, int axis) const { return axis < jdim ? joints[r * jdim + axis] : T(0); }
};

// Per-row result of a forward pass: the online-softmax state and sum_v (x_v - t_v)^2 (unweighted).
struct RowResult {
  soft_argmax::State<double> st;
  double sq;
};

// Per-row constants of a backward pass:
//   grad_v = p_v * (g . (v - c)) [kSoftmax]  +  k_mse * (x_v - t_v) [kMse],  p_v = exp((x - m) - log_s)
template <typename T>
struct RowGrad {
  T m, log_s, gx, gy, gz, cx, cy, cz, k_mse;
};

namespace detail {

// Fixed-order pairwise reduction of the lane accumulators.
template <typename T, int L>
inline T tree_sum(T* a) {
  for (int w = L / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) a[l] += a[l + w];
  return a[0];
}

// A vector of B bytes of T (B = 64: FpVec<T>; the halves used by the lane reductions below).
template <typename T, int B>
struct VecBytes {
  typedef T type __attribute__((vector_size(B)));
};

// Lane reductions of a B-byte vector by halves: lanes [0, L/2) op= lanes [L/2, L), then the same on
// the lower half, down to one lane. The order of tree_sum (a[l] op= a[l + w], w = L/2, ..., 1), so
// results are bit-identical to it, but on half vectors in registers instead of a round trip through
// memory and a scalar loop (once per block of ~1024 values: it was ~10 % of a 64x64 softmax pass).
template <typename T, int B>
__attribute__((always_inline)) inline T half_sum(typename VecBytes<T, B>::type v) {
  if constexpr (B == 2 * int(sizeof(T))) {
    return v[0] + v[1];
  } else {
    typename VecBytes<T, B / 2>::type lo, hi;
    std::memcpy(&lo, &v, B / 2);
    std::memcpy(&hi, reinterpret_cast<const char*>(&v) + B / 2, B / 2);
    return half_sum<T, B / 2>(lo + hi);
  }
}
// The same with max: a NaN in the upper half compares false and is skipped, as in line_max.
template <typename T, int B>
__attribute__((always_inline)) inline T half_max(typename VecBytes<T, B>::type v) {
  if constexpr (B == 2 * int(sizeof(T))) {
    return v[1] > v[0] ? v[1] : v[0];
  } else {
    typename VecBytes<T, B / 2>::type lo, hi;
    std::memcpy(&lo, &v, B / 2);
    std::memcpy(&hi, reinterpret_cast<const char*>(&v) + B / 2, B / 2);
    return half_max<T, B / 2>(hi > lo ? hi : lo);
  }
}

// The largest of n values (any n; a NaN compares false and is skipped, as in the scalar loop this
// replaced). Four independent lane-wise maxima over L-value vectors (one chain of dependent vmaxps
// per 1024-value block was ~20 % of a 64x64 soft-argmax forward: latency, not throughput), then
// the rest of the line and a fixed-order tree. The maximum of a set does not depend on the order it
// is taken in, except that +0 and -0 may swap -- which changes no exp() and no coordinate.
template <typename T>
__attribute__((always_inline)) inline T line_max(const T* __restrict xl, int64_t n) {
  constexpr int L = fp_vec_lanes<T>();
  using V = FpVec<T>;
  const V ninf = fp_vsplat(fp_neg_inf<T>());
  V m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
  int64_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L) {
    const V v0 = fp_vload(xl + i), v1 = fp_vload(xl + i + L), v2 = fp_vload(xl + i + 2 * L),
            v3 = fp_vload(xl + i + 3 * L);
    m0 = v0 > m0 ? v0 : m0;
    m1 = v1 > m1 ? v1 : m1;
    m2 = v2 > m2 ? v2 : m2;
    m3 = v3 > m3 ? v3 : m3;
  }
  for (; i + L <= n; i += L) {
    const V v = fp_vload(xl + i);
    m0 = v > m0 ? v : m0;
  }
  m0 = m1 > m0 ? m1 : m0;
  m2 = m3 > m2 ? m3 : m2;
  m0 = m2 > m0 ? m2 : m0;
  T mx = half_max<T, 64>(m0);
  for (; i < n; ++i) mx = xl[i] > mx ? xl[i] : mx;
  return mx;
}

// Software prefetch of the line kPrefetchBytes ahead of the one being read, one prefetch per
// 64-byte cache line, in the forward passes. The softmax pass is bound by exp(), so the hardware
// prefetchers fall behind its irregular demand (a block's max pass, then its exp pass), and a volume
// that is not in cache (any other work between two calls: the rest of a training step, or another
// implementation in an interleaved benchmark) was read at ~20-35 GB/s. Measured, 1 thread, B32 64^2:
// soft_argmax_2d forward from DRAM 521 -> 398 us, from L3 411 -> 384 us; heatmap_mse_2d forward
// from DRAM 272 -> 215 us, but from L3 137 -> 150 us (the MSE pass is a plain stream: the extra
// instructions cost when the data is cached; kept for the cold case, the usual one in training).
// Not in the backward passes: no gain measured there (the volume was just read by the forward).
// Prefetches past the end of the volume are harmless (they never fault).
constexpr int64_t kPrefetchBytes = 16384;
template <typename T>
__attribute__((always_inline)) inline void prefetch_ahead(const T* p, int64_t w) {
  const char* c = reinterpret_cast<const char*>(p) + kPrefetchBytes;
  const int64_t bytes = w * int64_t(sizeof(T));
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o, 0, 3);
}

// Fixed-order pairwise reduction of one vector's lanes (the order of tree_sum).
template <typename T>
__attribute__((always_inline)) inline T vec_sum(const FpVec<T>& v) {
  return half_sum<T, 64>(v);
}

// Forward over lines [line0, line1) of one row. x points at the row's first value.
// gx: the x factors of the target (W values) when kMse. out = {m, s, sx, sy, sz, sq} of the chunk.
// The squared errors are direct differences (v - t)^2, never the expansion v^2 - 2 v t + t^2,
// which cancels catastrophically near convergence. No gradient is written here: the backward
// recomputes it (one read of x, one write), so nothing volume-sized is saved by the forward.
//
// Lines are taken in blocks of ~kBlockElems values: one max pass over the block (contiguous) fixes
// the exp reference, then vector accumulators (L lanes: lane l takes the values at x = l mod L)
// gather e, e x and the squared errors over the whole block and are flushed into the double
// accumulators once per block (each lane adds at most kBlockElems / L values in T; the row total
// is summed in double). y and z are constant along a line, so sum e y and sum e z take the line's
// lane sums of e times y and z once per line (two multiply-adds per line instead of per value).
template <typename T, bool kSoftmax, bool kMse, int kNV>
FP_CPU_CLONES void forward_chunk(const T* __restrict x, int64_t line0, int64_t line1, int64_t h, int64_t w,
                                 const T* __restrict gx, const T* __restrict gy, const T* __restrict gz,
                                 double* __restrict out) {
  constexpr int L = fp_vec_lanes<T>();
  using V = FpVec<T>;
  soft_argmax::State<double> st = soft_argmax::state_empty<double>();
  T m_ref = fp_neg_inf<T>();  // the chunk's running max, in T (exp arguments are formed in T)
  double sq = 0.0;
  const int wi = static_cast<int>(w);
  const int64_t lines_per_block = std::max<int64_t>(1, kBlockElems / w);
  const V iota = fp_viota<T>();
  // (y, z) of the current line, stepped along with it: no integer division per line (a 64-bit
  // division costs about as much as a whole line of 64 values of the MSE pass)
  int64_t yi = line0 % h, zi = line0 / h;
  // The max of the next block, taken during the exp pass of the current one (see below); the first
  // block's in a pass of its own.
  T bm_next = T(0);
  if constexpr (kSoftmax) bm_next = line_max<T>(x + line0 * w, (std::min(line1, line0 + lines_per_block) - line0) * w);
  for (int64_t b0 = line0; b0 < line1; b0 += lines_per_block) {
    const int64_t b1 = std::min(line1, b0 + lines_per_block);
    V es{}, ex{}, ey{}, ez{}, q{};
    T mref = T(0);
    // Lane maxima of the next block [b1, b1 + (b1 - b0)) (it is never longer than this one): line
    // `line` of this block scans line `line + (b1 - b0)` of the next. The loads and vmaxps fill
    // slots the exp polynomial leaves free, and the next block arrives in L1 before its exp pass.
    V nmv = fp_vsplat(fp_neg_inf<T>());
    T nms = fp_neg_inf<T>();
    if constexpr (kSoftmax) {
      const T bm = bm_next;
      if (bm > m_ref) {
        soft_argmax::state_raise(st, static_cast<double>(bm));
        m_ref = bm;
      }
      // All -inf so far: use 0 as the reference so exp(-inf - 0) = 0 instead of NaN.
      mref = m_ref == fp_neg_inf<T>() ? T(0) : m_ref;
    }
    const V vref = fp_vsplat(mref);
    for (int64_t line = b0; line < b1; ++line) {
      const T* __restrict xl = x + line * w;
      prefetch_ahead(xl, w);
      const T yy = static_cast<T>(yi), zz = static_cast<T>(zi);
      T a = T(0);  // gy(y) gz(z): the target along this line is a * gx(x)
      if constexpr (kMse) a = gy[yi] * gz[zi];
      if (++yi == h) {
        yi = 0;
        ++zi;
      }
      V el{};  // this line's lane sums of e
      V xi = iota;  // the x index of each lane (exact integers in T)
      int i = 0;
      const int nv = kNV > 0 ? kNV : wi / L;  // full vectors a line: a constant for the usual widths
      for (int k = 0; k < nv; ++k, i += L, xi += static_cast<T>(L)) {
        const V v = fp_vload(xl + i);
        if constexpr (kSoftmax) {
          const V e = fp_vexp<true>(v - vref);  // v <= the running max: argument <= 0
          el += e;
          ex += e * xi;
        }
        if constexpr (kMse) {
          const V d = v - a * fp_vload(gx + i);
          q += d * d;
        }
      }
      if (kNV == 0 && i < wi) {  // W not a multiple of L: the rest of the line into lane 0
        T el0 = T(0), ex0 = T(0), q0 = T(0);
        for (; i < wi; ++i) {
          const T v = xl[i];
          if constexpr (kSoftmax) {
            const T e = fp_exp(v - mref);
            el0 += e;
            ex0 += e * static_cast<T>(i);
          }
          if constexpr (kMse) {
            const T d = v - a * gx[i];
            q0 += d * d;
          }
        }
        el[0] += el0;
        ex[0] += ex0;
        q[0] += q0;
      }
      if constexpr (kSoftmax) {
        es += el;
        ey += el * yy;
        ez += el * zz;
        if (line + (b1 - b0) < line1) {  // the matching line of the next block
          const T* __restrict xn = xl + (b1 - b0) * w;
          int j = 0;
          for (int k = 0; k < nv; ++k, j += L) {
            const V v = fp_vload(xn + j);
            nmv = v > nmv ? v : nmv;
          }
          for (; kNV == 0 && j < wi; ++j) nms = xn[j] > nms ? xn[j] : nms;
        }
      }
    }
    if constexpr (kSoftmax) {
      // The same maximum as line_max over the next block (a NaN is skipped; only +0 / -0 may swap).
      const T mv = half_max<T, 64>(nmv);
      bm_next = nms > mv ? nms : mv;
      st.s += vec_sum<T>(es);
      st.sx += vec_sum<T>(ex);
      st.sy += vec_sum<T>(ey);
      st.sz += vec_sum<T>(ez);
    }
    if constexpr (kMse) sq += vec_sum<T>(q);
  }
  out[0] = st.m;
  out[1] = st.s;
  out[2] = st.sx;
  out[3] = st.sy;
  out[4] = st.sz;
  out[5] = sq;
}

// Backward over lines [line0, line1) of one row: grad = p * (g . (v - c)) + k_mse * (x - t),
// p = exp((x - m) - log_s), in L-lane vectors along each line (scalar for the rest of a line).
template <typename T, bool kSoftmax, bool kMse, int kNV>
FP_CPU_CLONES void backward_chunk(const T* __restrict x, int64_t line0, int64_t line1, int64_t h, int64_t w,
                                  const RowGrad<T> rg, const T* __restrict gx, const T* __restrict gy,
                                  const T* __restrict gz, T* __restrict grad) {
  constexpr int L = fp_vec_lanes<T>();
  using V = FpVec<T>;
  const int wi = static_cast<int>(w);
  const V iota = fp_viota<T>();
  const V vm = fp_vsplat(rg.m), vls = fp_vsplat(rg.log_s);
  int64_t yi = line0 % h, zi = line0 / h;  // (y, z) of the line, stepped: no division per line
  for (int64_t line = line0; line < line1; ++line) {
    const T* __restrict xl = x + line * w;
    T* __restrict gl = grad + line * w;
    const int64_t yc = yi, zc = zi;
    if (++yi == h) {
      yi = 0;
      ++zi;
    }
    const T yy = static_cast<T>(yc), zz = static_cast<T>(zc);
    T off = T(0), a = T(0);
    if constexpr (kSoftmax)
      off = soft_argmax::bracket_line_offset(yy, zz, rg.gx, rg.gy, rg.gz, rg.cx, rg.cy, rg.cz);
    if constexpr (kMse) a = gy[yc] * gz[zc];
    V xi = iota;  // the x index of each lane (exact integers in T)
    int i = 0;
    const int nv = kNV > 0 ? kNV : wi / L;  // full vectors a line: a constant for the usual widths
    for (int k = 0; k < nv; ++k, i += L, xi += static_cast<T>(L)) {
      const V v = fp_vload(xl + i);
      V g{};
      // (v - m) - log s <= 0: m is the row's max and s >= 1
      if constexpr (kSoftmax) g = fp_vexp<true>((v - vm) - vls) * (rg.gx * xi + off);
      if constexpr (kMse) g += rg.k_mse * (v - a * fp_vload(gx + i));
      fp_vstore(gl + i, g);
    }
    for (; kNV == 0 && i < wi; ++i) {
      const T v = xl[i];
      T g = T(0);
      if constexpr (kSoftmax) g = soft_argmax::prob(v, rg.m, rg.log_s) * (rg.gx * static_cast<T>(i) + off);
      if constexpr (kMse) g += heatmap_mse::err_grad(v, a * gx[i], rg.k_mse);
      gl[i] = g;
    }
  }
}

struct Plan {
  int64_t lines, lines_per_chunk, chunks, items;
};

inline Plan make_plan(int64_t rows, int64_t d, int64_t h, int64_t w) {
  Plan p;
  p.lines = d * h;
  p.lines_per_chunk = std::max<int64_t>(1, kChunkElems / w);
  p.chunks = (p.lines + p.lines_per_chunk - 1) / p.lines_per_chunk;
  p.items = rows * p.chunks;
  return p;
}

inline int resolve_threads(int threads) { return threads > 0 ? threads : omp_get_max_threads(); }

// exp(-(i - mu)^2 k) for i = 0..n-1 into out (n values), in L-lane vectors: the per-axis factors
// of heatmap_mse::gauss_factor, every entry through the same vector code (the scalar libm-free
// polynomial costs ~40 cycles an entry; 129 entries a row were a quarter of a 64x64 MSE pass).
template <typename T>
FP_CPU_CLONES void gauss_axis(T* __restrict out, int64_t n, T mu, T k) {
  constexpr int L = fp_vec_lanes<T>();
  using V = FpVec<T>;
  const V iota = fp_viota<T>();
  for (int64_t i0 = 0; i0 < n; i0 += L) {
    const V d = (iota + static_cast<T>(i0)) - mu;
    const V g = fp_vexp(-(d * d) * k);
    if (i0 + L <= n) {
      fp_vstore(out + i0, g);  // one vector store (the lane-by-lane copy was ~1/3 of the table cost)
    } else {
      for (int64_t l = 0; l < n - i0; ++l) out[i0 + l] = g[l];
    }
  }
}

// The separable Gaussian target of row r, tabulated per axis: tab = [gx (W) | gy (H) | gz (D)],
// g_a(i) = exp(-(i - mu_a)^2 k); the target at (x, y, z) is gx[x] * (gy[y] * gz[z]). One exp per
// table entry instead of two per line of W values.
template <typename T>
inline void fill_tables(std::vector<T>& tab, const Volume<T>& vol, const Target<T>& tgt, int64_t r) {
  const int64_t n[3] = {vol.w, vol.h, vol.d};
  T* out = tab.data();
  for (int axis = 0; axis < 3; ++axis) {
    gauss_axis<T>(out, n[axis], tgt.mu(r, axis), tgt.k);
    out += n[axis];
  }
}

// The chunk kernels instantiated for a line width known at compile time: W = kNV full vectors
// (kNV = 1..4: W = 16, 32, 48, 64 in float; 8..32 in double -- the usual heatmap sizes), so the
// inner loop over a line is unrolled with constant x offsets and no remainder check; 0 = any W.
// The loop control and remainder test were a large part of a line of 2 to 4 vectors (1 thread:
// heatmap_mse_2d B32 64^2 fwd 210 -> 158 us, bwd 273 -> 212 us; fused head B2 32^3 bwd 284 ->
// 211 us). Sums and the MSE gradient are bit-identical to the generic loop; in the soft-argmax
// gradient the compiler may hoist gx * x out of the line loop (a rounded product, then + offset,
// instead of one fused multiply-add), which changes the bracket g . (v - c) by rounding only.
template <typename T, bool kSoftmax, bool kMse>
struct ForwardKernels {
  template <int kNV>
  static constexpr auto get() { return &forward_chunk<T, kSoftmax, kMse, kNV>; }
};
template <typename T, bool kSoftmax, bool kMse>
struct BackwardKernels {
  template <int kNV>
  static constexpr auto get() { return &backward_chunk<T, kSoftmax, kMse, kNV>; }
};
template <typename T, typename K>
inline auto pick_width(int64_t w, K) {
  constexpr int L = fp_vec_lanes<T>();
  switch (w) {
    case L: return K::template get<1>();
    case 2 * L: return K::template get<2>();
    case 3 * L: return K::template get<3>();
    case 4 * L: return K::template get<4>();
    default: return K::template get<0>();
  }
}

}  // namespace detail

// Forward pass. kSoftmax: online-softmax state per row. kMse: sum of squared errors against the
// target per row (unweighted; the caller applies w).
template <typename T, bool kSoftmax, bool kMse>
void forward(const Volume<T>& vol, const Target<T>* tgt, RowResult* out, int threads) {
  if (vol.rows == 0) return;
  const detail::Plan plan = detail::make_plan(vol.rows, vol.d, vol.h, vol.w);
  const int64_t n = vol.numel_row();
  std::vector<double> part(static_cast<size_t>(plan.items) * 6);
  const int nt = detail::resolve_threads(threads);
  const auto fwd = detail::pick_width<T>(vol.w, detail::ForwardKernels<T, kSoftmax, kMse>{});
#pragma omp parallel num_threads(nt) if (plan.items > 1 && nt > 1 && vol.rows * n >= kParallelMinElems)
  {
    std::vector<T> tab(kMse ? vol.w + vol.h + vol.d : 0);  // [gx | gy | gz] of row tab_row
    int64_t tab_row = -1;
    const T* gx = tab.data();
    const T* gy = gx + (kMse ? vol.w : 0);
    const T* gz = gy + (kMse ? vol.h : 0);
#pragma omp for schedule(static)
    for (int64_t it = 0; it < plan.items; ++it) {
      const int64_t r = it / plan.chunks, c = it % plan.chunks;
      if constexpr (kMse) {
        if (tab_row != r) {  // static schedule: a thread's items of a row are consecutive
          detail::fill_tables(tab, vol, *tgt, r);
          tab_row = r;
        }
      }
      const int64_t l0 = c * plan.lines_per_chunk, l1 = std::min(plan.lines, l0 + plan.lines_per_chunk);
      fwd(vol.x + r * n, l0, l1, vol.h, vol.w, gx, gy, gz, part.data() + it * 6);
    }
  }
  for (int64_t r = 0; r < vol.rows; ++r) {  // merge the chunks of each row in order
    soft_argmax::State<double> st = soft_argmax::state_empty<double>();
    double sq = 0.0;
    for (int64_t c = 0; c < plan.chunks; ++c) {
      const double* p = part.data() + (r * plan.chunks + c) * 6;
      soft_argmax::state_merge(st, soft_argmax::State<double>{p[0], p[1], p[2], p[3], p[4]});
      sq += p[5];
    }
    out[r].st = st;
    out[r].sq = sq;
  }
}

// Backward pass: grad (rows, D, H, W) from the per-row constants `rg` (see RowGrad).
template <typename T, bool kSoftmax, bool kMse>
void backward(const Volume<T>& vol, const Target<T>* tgt, const RowGrad<T>* rg, T* grad, int threads) {
  if (vol.rows == 0) return;
  const detail::Plan plan = detail::make_plan(vol.rows, vol.d, vol.h, vol.w);
  const int64_t n = vol.numel_row();
  const int nt = detail::resolve_threads(threads);
  const auto bwd = detail::pick_width<T>(vol.w, detail::BackwardKernels<T, kSoftmax, kMse>{});
#pragma omp parallel num_threads(nt) if (plan.items > 1 && nt > 1 && vol.rows * n >= kParallelMinElems)
  {
    std::vector<T> tab(kMse ? vol.w + vol.h + vol.d : 0);  // [gx | gy | gz] of row tab_row
    int64_t tab_row = -1;
    const T* gx = tab.data();
    const T* gy = gx + (kMse ? vol.w : 0);
    const T* gz = gy + (kMse ? vol.h : 0);
#pragma omp for schedule(static)
    for (int64_t it = 0; it < plan.items; ++it) {
      const int64_t r = it / plan.chunks, c = it % plan.chunks;
      if constexpr (kMse) {
        if (tab_row != r) {
          detail::fill_tables(tab, vol, *tgt, r);
          tab_row = r;
        }
      }
      const int64_t l0 = c * plan.lines_per_chunk, l1 = std::min(plan.lines, l0 + plan.lines_per_chunk);
      bwd(vol.x + r * n, l0, l1, vol.h, vol.w, rg[r], gx, gy, gz, grad + r * n);
    }
  }
}

}  // namespace volume_cpu
}  // namespace fastpose
