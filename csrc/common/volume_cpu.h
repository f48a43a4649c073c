// The CPU engine behind soft_argmax, heatmap_mse and their fused head: one pass over `rows`
// volumes of D*H*W values (2D maps are D = 1), parallel with OpenMP over (row, chunk) work items.
//
// Work decomposition: a row's D*H lines of W values are cut into chunks of ~kChunkElems values
// (whole lines). Each chunk produces a partial (online-softmax state + sum of squared errors) in
// double; the partials of a row are merged in chunk order. The decomposition depends only on the
// shape, never on the thread count or timing, so results are bit-identical from run to run and
// for any number of threads.
//
// Inner loops: along a line of W values with kLanes independent accumulators (one 64-byte vector
// of T), which the compiler maps onto SIMD registers without reordering any floating-point sum
// (no -ffast-math); lanes are reduced with a fixed-order tree. exp() is the vectorisable
// polynomial of fp_common.h for float.
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

template <typename T>
constexpr int lanes() {
  return static_cast<int>(64 / sizeof(T));
}

// Fixed-order pairwise reduction of the lane accumulators.
template <typename T, int L>
inline T tree_sum(T* a) {
  for (int w = L / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) a[l] += a[l + w];
  return a[0];
}

template <typename T, int L>
inline T line_max(const T* __restrict xl, int64_t n) {
  T mx[L];
  for (int l = 0; l < L; ++l) mx[l] = fp_neg_inf<T>();
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int l = 0; l < L; ++l) mx[l] = xl[i + l] > mx[l] ? xl[i + l] : mx[l];
  for (; i < n; ++i) mx[0] = xl[i] > mx[0] ? xl[i] : mx[0];
  for (int w = L / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) mx[l] = mx[l + w] > mx[l] ? mx[l + w] : mx[l];
  return mx[0];
}

// Forward over lines [line0, line1) of one row. x points at the row's first value.
// gx: the x factors of the target (W values) when kMse. out = {m, s, sx, sy, sz, sq} of the chunk.
// The squared errors are direct differences (v - t)^2, never the expansion v^2 - 2 v t + t^2,
// which cancels catastrophically near convergence. No gradient is written here: the backward
// recomputes it (one read of x, one write), so nothing volume-sized is saved by the forward.
//
// Lines are taken in blocks of ~kBlockElems values: one max pass over the block (contiguous) fixes
// the exp reference, then lane accumulators gather e, e x, e y, e z (and the squared errors) over
// the whole block and are flushed into the double accumulators once per block (each lane adds
// at most kBlockElems / kLanes values in T; the row total is summed in double).
template <typename T, bool kSoftmax, bool kMse>
FP_CPU_CLONES void forward_chunk(const T* __restrict x, int64_t line0, int64_t line1, int64_t h, int64_t w,
                                 const T* __restrict gx, T muy, T muz, T k, double* __restrict out) {
  constexpr int L = lanes<T>();
  soft_argmax::State<double> st = soft_argmax::state_empty<double>();
  T m_ref = fp_neg_inf<T>();  // the chunk's running max, in T (exp arguments are formed in T)
  double sq = 0.0;
  const int wi = static_cast<int>(w);
  const int64_t lines_per_block = std::max<int64_t>(1, kBlockElems / w);
  for (int64_t b0 = line0; b0 < line1; b0 += lines_per_block) {
    const int64_t b1 = std::min(line1, b0 + lines_per_block);
    T es[L], ex[L], ey[L], ez[L], q[L];
    for (int l = 0; l < L; ++l) es[l] = ex[l] = ey[l] = ez[l] = q[l] = T(0);
    T mref = T(0);
    if constexpr (kSoftmax) {
      const T bm = line_max<T, L>(x + b0 * w, (b1 - b0) * w);
      if (bm > m_ref) {
        soft_argmax::state_raise(st, static_cast<double>(bm));
        m_ref = bm;
      }
      // All -inf so far: use 0 as the reference so exp(-inf - 0) = 0 instead of NaN.
      mref = m_ref == fp_neg_inf<T>() ? T(0) : m_ref;
    }
    for (int64_t line = b0; line < b1; ++line) {
      const T* __restrict xl = x + line * w;
      const T yy = static_cast<T>(line % h), zz = static_cast<T>(line / h);
      T a = T(0);  // gy(y) gz(z): the target along this line is a * gx(x)
      if constexpr (kMse) a = heatmap_mse::gauss_factor(yy, muy, k) * heatmap_mse::gauss_factor(zz, muz, k);
      int i = 0;
      for (; i + L <= wi; i += L) {
        for (int l = 0; l < L; ++l) {
          const T v = xl[i + l];
          if constexpr (kSoftmax) {
            const T e = fp_exp(v - mref);
            es[l] += e;
            ex[l] += e * static_cast<T>(i + l);
            ey[l] += e * yy;
            ez[l] += e * zz;
          }
          if constexpr (kMse) {
            const T d = v - a * gx[i + l];
            q[l] += d * d;
          }
        }
      }
      for (; i < wi; ++i) {
        const T v = xl[i];
        if constexpr (kSoftmax) {
          const T e = fp_exp(v - mref);
          es[0] += e;
          ex[0] += e * static_cast<T>(i);
          ey[0] += e * yy;
          ez[0] += e * zz;
        }
        if constexpr (kMse) {
          const T d = v - a * gx[i];
          q[0] += d * d;
        }
      }
    }
    if constexpr (kSoftmax) {
      st.s += tree_sum<T, L>(es);
      st.sx += tree_sum<T, L>(ex);
      st.sy += tree_sum<T, L>(ey);
      st.sz += tree_sum<T, L>(ez);
    }
    if constexpr (kMse) sq += tree_sum<T, L>(q);
  }
  out[0] = st.m;
  out[1] = st.s;
  out[2] = st.sx;
  out[3] = st.sy;
  out[4] = st.sz;
  out[5] = sq;
}

// Backward over lines [line0, line1) of one row: grad = p * (g . (v - c)) + k_mse * (x - t).
template <typename T, bool kSoftmax, bool kMse>
FP_CPU_CLONES void backward_chunk(const T* __restrict x, int64_t line0, int64_t line1, int64_t h, int64_t w,
                                  const RowGrad<T> rg, const T* __restrict gx, T muy, T muz, T k,
                                  T* __restrict grad) {
  const int wi = static_cast<int>(w);
  for (int64_t line = line0; line < line1; ++line) {
    const T* __restrict xl = x + line * w;
    T* __restrict gl = grad + line * w;
    const T yy = static_cast<T>(line % h), zz = static_cast<T>(line / h);
    T off = T(0), a = T(0);
    if constexpr (kSoftmax)
      off = soft_argmax::bracket_line_offset(yy, zz, rg.gx, rg.gy, rg.gz, rg.cx, rg.cy, rg.cz);
    if constexpr (kMse)
      a = heatmap_mse::gauss_factor(yy, muy, k) * heatmap_mse::gauss_factor(zz, muz, k);
#pragma omp simd
    for (int i = 0; i < wi; ++i) {
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

template <typename T>
inline void fill_gx(std::vector<T>& tab, int64_t w, T mux, T k) {
  for (int64_t i = 0; i < w; ++i) tab[i] = heatmap_mse::gauss_factor(static_cast<T>(i), mux, k);
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
#pragma omp parallel num_threads(nt) if (plan.items > 1 && nt > 1 && vol.rows * n >= kParallelMinElems)
  {
    std::vector<T> gx(kMse ? vol.w : 0);
    int64_t gx_row = -1;
#pragma omp for schedule(static)
    for (int64_t it = 0; it < plan.items; ++it) {
      const int64_t r = it / plan.chunks, c = it % plan.chunks;
      T muy = T(0), muz = T(0), k = T(0);
      if constexpr (kMse) {
        k = tgt->k;
        muy = tgt->mu(r, 1);
        muz = tgt->mu(r, 2);
        if (gx_row != r) {  // static schedule: a thread's items of a row are consecutive
          detail::fill_gx(gx, vol.w, tgt->mu(r, 0), k);
          gx_row = r;
        }
      }
      const int64_t l0 = c * plan.lines_per_chunk, l1 = std::min(plan.lines, l0 + plan.lines_per_chunk);
      detail::forward_chunk<T, kSoftmax, kMse>(vol.x + r * n, l0, l1, vol.h, vol.w, gx.data(), muy, muz, k,
                                                part.data() + it * 6);
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
#pragma omp parallel num_threads(nt) if (plan.items > 1 && nt > 1 && vol.rows * n >= kParallelMinElems)
  {
    std::vector<T> gx(kMse ? vol.w : 0);
    int64_t gx_row = -1;
#pragma omp for schedule(static)
    for (int64_t it = 0; it < plan.items; ++it) {
      const int64_t r = it / plan.chunks, c = it % plan.chunks;
      T muy = T(0), muz = T(0), k = T(0);
      if constexpr (kMse) {
        k = tgt->k;
        muy = tgt->mu(r, 1);
        muz = tgt->mu(r, 2);
        if (gx_row != r) {
          detail::fill_gx(gx, vol.w, tgt->mu(r, 0), k);
          gx_row = r;
        }
      }
      const int64_t l0 = c * plan.lines_per_chunk, l1 = std::min(plan.lines, l0 + plan.lines_per_chunk);
      detail::backward_chunk<T, kSoftmax, kMse>(vol.x + r * n, l0, l1, vol.h, vol.w, rg[r], gx.data(), muy, muz,
                                                k, grad + r * n);
    }
  }
}

}  // namespace volume_cpu
}  // namespace fastpose
