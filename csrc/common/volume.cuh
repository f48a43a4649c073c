// The CUDA engine behind soft_argmax, heatmap_mse and the fused head (the GPU twin of
// volume_cpu.h): `rows` volumes of N = D*H*W values, each cut into fixed chunks of
// kThreads * kIters * V values (V values per 16-byte pack when N % V == 0, else 1).
//
// Forward, two stages (deterministic, no atomics, no host synchronisation, graph-capturable):
//   1. forward_partial_kernel, grid (chunks, rows): each block reduces its chunk to a partial
//      {m, s, sx, sy, sz, sq} (online-softmax state + squared error), warp shuffles then warps in
//      order, and writes it to the workspace (rows * chunks * kPartial accumulation values).
//   2. finalize_kernel, one thread per row: merges the row's partials in chunk order and writes
//      coords, stats and the weighted per-row loss.
// Backward, one elementwise pass: grad = p (g . (v - c)) + k_mse (x - t), p from the saved stats.
// Indexing: 64-bit for offsets (volumes over 2^31 values); voxel coordinates are walked
// incrementally (no division per value): a thread's position advances by a fixed step with carries.
#pragma once

#include "../heatmap_mse/heatmap_mse.h"
#include "../soft_argmax/soft_argmax.h"
#include "fp_cuda.cuh"
#include "volume_index.h"

namespace fastpose {
namespace volume_cuda {

constexpr int kThreads = 256;
constexpr int kIters = 8;    // packs per thread per chunk
constexpr int kPartial = 6;  // m, s, sx, sy, sz, sq

using volume_index::Geometry;
using volume_index::Pos;
using volume_index::Step;
using volume_index::advance;
using volume_index::pos_of;
using volume_index::step_of;

struct Plan {
  int vec;            // values per pack: 16 / sizeof(T) when n % that == 0, else 1
  int64_t chunk_len;  // values per block
  int64_t chunks;     // blocks per row
};

template <typename T>
inline Plan make_plan(const Geometry& g) {
  Plan p;
  p.vec = (g.n % cuda::pack_width<T>() == 0) ? cuda::pack_width<T>() : 1;
  p.chunk_len = static_cast<int64_t>(kThreads) * kIters * p.vec;
  p.chunks = (g.n + p.chunk_len - 1) / p.chunk_len;
  if (p.chunks < 1) p.chunks = 1;
  return p;
}

// The Gaussian target: joints (rows, jdim) acc, k = 1 / (2 sigma^2), weights (rows) acc or null.
template <typename A>
struct Target {
  const A* joints;
  int jdim;
  A k;
  const A* weights;
  __device__ A weight(int64_t r) const { return weights ? weights[r] : A(1); }
  __device__ A mu(int64_t r, int axis) const { return axis < jdim ? joints[r * jdim + axis] : A(0); }
};

template <typename A>
__device__ __forceinline__ soft_argmax::State<A> shfl_down_state(const soft_argmax::State<A>& s, int off) {
  soft_argmax::State<A> o;
  o.m = __shfl_down_sync(0xffffffffu, s.m, off);
  o.s = __shfl_down_sync(0xffffffffu, s.s, off);
  o.sx = __shfl_down_sync(0xffffffffu, s.sx, off);
  o.sy = __shfl_down_sync(0xffffffffu, s.sy, off);
  o.sz = __shfl_down_sync(0xffffffffu, s.sz, off);
  return o;
}

// The squared errors are direct differences (x - t)^2 (no expansion: it cancels near
// convergence). No gradient is written: the backward recomputes it from x and the joints.
template <typename T, int V, bool kSoftmax, bool kMse>
__global__ void __launch_bounds__(kThreads)
    forward_partial_kernel(const T* __restrict__ x, Geometry g, int64_t chunk_len, int64_t chunks,
                           Target<acc_t<T>> tgt, acc_t<T>* __restrict__ ws) {
  using A = acc_t<T>;
  using P = cuda::Pack<T, V>;
  __shared__ A sm_m[kThreads / 32], sm_s[kThreads / 32], sm_x[kThreads / 32], sm_y[kThreads / 32],
      sm_z[kThreads / 32], sm_q[kThreads / 32];
  const int64_t c = blockIdx.x;
  const Step stride = step_of(static_cast<int64_t>(kThreads) * V, g), one = step_of(1, g);
  for (int64_t r = blockIdx.y; r < g.rows; r += gridDim.y) {
    const T* xr = x + r * g.n;
    const int64_t start = c * chunk_len + static_cast<int64_t>(threadIdx.x) * V;
    const int64_t end = min(g.n, (c + 1) * chunk_len);
    // Load phase: all packs in flight before any math (memory-level parallelism).
    P pk[kIters];
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
      const int64_t e = start + static_cast<int64_t>(it) * kThreads * V;
      if (e < end) pk[it] = *reinterpret_cast<const P*>(xr + e);
    }
    soft_argmax::State<A> st = soft_argmax::state_empty<A>();
    A sq = A(0);
    A mux = A(0), muy = A(0), muz = A(0);
    if constexpr (kMse) {
      mux = tgt.mu(r, 0);
      muy = tgt.mu(r, 1);
      muz = tgt.mu(r, 2);
    }
    Pos pos = pos_of(start, g);
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
      const int64_t e = start + static_cast<int64_t>(it) * kThreads * V;
      if (e < end) {
        A v[V];
#pragma unroll
        for (int j = 0; j < V; ++j) v[j] = cuda::to_acc(pk[it].v[j]);
        if constexpr (kSoftmax) {
          A vmax = v[0];
#pragma unroll
          for (int j = 1; j < V; ++j) vmax = v[j] > vmax ? v[j] : vmax;
          soft_argmax::state_raise(st, vmax);
        }
        Pos pj = pos;
#pragma unroll
        for (int j = 0; j < V; ++j) {
          if (j > 0) advance(pj, one, g);
          if constexpr (kSoftmax) {
            if (st.m != fp_neg_inf<A>()) {
              const A ej = fp_exp(v[j] - st.m);
              st.s += ej;
              st.sx += ej * A(pj.x);
              st.sy += ej * A(pj.y);
              st.sz += ej * A(pj.z);
            }
          }
          if constexpr (kMse) {
            const A t = heatmap_mse::gauss_target(A(pj.x) - mux, A(pj.y) - muy, A(pj.z) - muz, tgt.k);
            sq += heatmap_mse::sq_err(v[j], t);
          }
        }
      }
      advance(pos, stride, g);
    }
    // Block reduction in a fixed order: shuffle tree inside each warp, then warps 0..7 in order.
    for (int off = 16; off > 0; off >>= 1) {
      if constexpr (kSoftmax) soft_argmax::state_merge(st, shfl_down_state(st, off));
      if constexpr (kMse) sq += __shfl_down_sync(0xffffffffu, sq, off);
    }
    const int warp = threadIdx.x / 32;
    if (threadIdx.x % 32 == 0) {
      sm_m[warp] = st.m;
      sm_s[warp] = st.s;
      sm_x[warp] = st.sx;
      sm_y[warp] = st.sy;
      sm_z[warp] = st.sz;
      sm_q[warp] = sq;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      soft_argmax::State<A> tot = soft_argmax::state_empty<A>();
      A q = A(0);
      for (int i = 0; i < kThreads / 32; ++i) {
        if constexpr (kSoftmax) soft_argmax::state_merge(tot, soft_argmax::State<A>{sm_m[i], sm_s[i], sm_x[i], sm_y[i], sm_z[i]});
        q += sm_q[i];
      }
      A* out = ws + (r * chunks + c) * kPartial;
      out[0] = tot.m;
      out[1] = tot.s;
      out[2] = tot.sx;
      out[3] = tot.sy;
      out[4] = tot.sz;
      out[5] = q;
    }
    __syncthreads();
  }
}

// One thread per row: merge the chunk partials in order; write stats (rows, kStats) acc and coords
// (rows, ndim) T when kSoftmax, loss_rows (rows) acc = w * sum (x - t)^2 when kMse.
template <typename T, bool kSoftmax, bool kMse>
__global__ void finalize_kernel(const acc_t<T>* __restrict__ ws, int64_t rows, int64_t chunks, int ndim,
                                const acc_t<T>* __restrict__ weights, T* __restrict__ coords,
                                acc_t<T>* __restrict__ stats, acc_t<T>* __restrict__ loss_rows) {
  using A = acc_t<T>;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  soft_argmax::State<A> st = soft_argmax::state_empty<A>();
  A sq = A(0);
  for (int64_t c = 0; c < chunks; ++c) {
    const A* p = ws + (r * chunks + c) * kPartial;
    if constexpr (kSoftmax) soft_argmax::state_merge(st, soft_argmax::State<A>{p[0], p[1], p[2], p[3], p[4]});
    sq += p[5];
  }
  if constexpr (kSoftmax) {
    A* s = stats + r * soft_argmax::kStats;
    soft_argmax::state_finish(st, s);
    for (int k = 0; k < ndim; ++k) coords[r * ndim + k] = cuda::from_acc<T>(s[2 + k]);
  }
  if constexpr (kMse) loss_rows[r] = (weights ? weights[r] : A(1)) * sq;
}

// Backward: grad = p (g . (v - c)) [kSoftmax] + k_mse (x - t) [kMse] with
// k_mse = grad_mse[r * gm_stride] * mse_scale * w (the MSE gradient is recomputed, never saved).
template <typename T, int V, bool kSoftmax, bool kMse>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const T* __restrict__ x, Geometry g, int64_t chunk_len, const acc_t<T>* __restrict__ stats,
                    const acc_t<T>* __restrict__ grad_coords, int ndim, const acc_t<T>* __restrict__ grad_mse,
                    int64_t gm_stride, acc_t<T> mse_scale, Target<acc_t<T>> tgt, T* __restrict__ grad) {
  using A = acc_t<T>;
  using P = cuda::Pack<T, V>;
  const int64_t c = blockIdx.x;
  const Step stride = step_of(static_cast<int64_t>(kThreads) * V, g), one = step_of(1, g);
  for (int64_t r = blockIdx.y; r < g.rows; r += gridDim.y) {
    const T* xr = x + r * g.n;
    T* gr = grad + r * g.n;
    const int64_t start = c * chunk_len + static_cast<int64_t>(threadIdx.x) * V;
    const int64_t end = min(g.n, (c + 1) * chunk_len);
    P pk[kIters];
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
      const int64_t e = start + static_cast<int64_t>(it) * kThreads * V;
      if (e < end) pk[it] = *reinterpret_cast<const P*>(xr + e);
    }
    A m = A(0), log_s = A(0), gx = A(0), gy = A(0), gz = A(0), cx = A(0), cy = A(0), cz = A(0);
    if constexpr (kSoftmax) {
      const A* s = stats + r * soft_argmax::kStats;
      m = s[0];
      log_s = s[1];
      cx = s[2];
      cy = s[3];
      cz = s[4];
      gx = grad_coords[r * ndim];
      gy = grad_coords[r * ndim + 1];
      gz = ndim == 3 ? grad_coords[r * ndim + 2] : A(0);
    }
    A mux = A(0), muy = A(0), muz = A(0), k_mse = A(0);
    if constexpr (kMse) {
      mux = tgt.mu(r, 0);
      muy = tgt.mu(r, 1);
      muz = tgt.mu(r, 2);
      k_mse = grad_mse[r * gm_stride] * mse_scale * tgt.weight(r);
    }
    Pos pos = pos_of(start, g);
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
      const int64_t e = start + static_cast<int64_t>(it) * kThreads * V;
      if (e < end) {
        P out;
        Pos pj = pos;
#pragma unroll
        for (int j = 0; j < V; ++j) {
          if (j > 0) advance(pj, one, g);
          const A v = cuda::to_acc(pk[it].v[j]);
          A gv = A(0);
          if constexpr (kSoftmax)
            gv = soft_argmax::prob(v, m, log_s) *
                 (gx * (A(pj.x) - cx) + gy * (A(pj.y) - cy) + gz * (A(pj.z) - cz));
          if constexpr (kMse)
            gv += heatmap_mse::err_grad(
                v, heatmap_mse::gauss_target(A(pj.x) - mux, A(pj.y) - muy, A(pj.z) - muz, tgt.k), k_mse);
          out.v[j] = cuda::from_acc<T>(gv);
        }
        *reinterpret_cast<P*>(gr + e) = out;
      }
      advance(pos, stride, g);
    }
  }
}

// ---- host launchers ---------------------------------------------------------------------------

template <typename T>
int64_t workspace_elems(const Geometry& g) {
  const Plan p = make_plan<T>(g);
  return g.rows * p.chunks * kPartial;
}

inline int64_t workspace_elems_for(int dtype, const Geometry& g) {
  int64_t n = 0;
  cuda::dispatch_dtype(dtype, "workspace_elems", [&](auto tag) {
    using T = typename decltype(tag)::type;
    n = workspace_elems<T>(g);
  });
  return n;
}

inline Geometry make_geometry(int64_t rows, int64_t d, int64_t h, int64_t w) {
  return Geometry{rows, d * h * w, static_cast<int>(d), static_cast<int>(h), static_cast<int>(w)};
}

template <typename T, bool kSoftmax, bool kMse>
void launch_forward(const T* x, const Geometry& g, int ndim, const Target<acc_t<T>>& tgt, acc_t<T>* ws, T* coords,
                    acc_t<T>* stats, acc_t<T>* loss_rows, cudaStream_t stream) {
  if (g.rows == 0) return;
  const Plan p = make_plan<T>(g);
  const dim3 grid(static_cast<unsigned>(p.chunks), cuda::grid_dim_y(g.rows));
  if (p.vec > 1)
    forward_partial_kernel<T, cuda::pack_width<T>(), kSoftmax, kMse>
        <<<grid, kThreads, 0, stream>>>(x, g, p.chunk_len, p.chunks, tgt, ws);
  else
    forward_partial_kernel<T, 1, kSoftmax, kMse>
        <<<grid, kThreads, 0, stream>>>(x, g, p.chunk_len, p.chunks, tgt, ws);
  cuda::check_launch("volume forward_partial_kernel");
  const unsigned fin_blocks = static_cast<unsigned>((g.rows + 127) / 128);
  finalize_kernel<T, kSoftmax, kMse>
      <<<fin_blocks, 128, 0, stream>>>(ws, g.rows, p.chunks, ndim, tgt.weights, coords, stats, loss_rows);
  cuda::check_launch("volume finalize_kernel");
}

// grad_mse: one value (gm_stride 0: "mean"/"sum" and the fused head) or one per row (gm_stride 1:
// reduction "none").
template <typename T, bool kSoftmax, bool kMse>
void launch_backward(const T* x, const Geometry& g, const acc_t<T>* stats, const acc_t<T>* grad_coords, int ndim,
                     const acc_t<T>* grad_mse, int64_t gm_stride, acc_t<T> mse_scale, const Target<acc_t<T>>& tgt,
                     T* grad, cudaStream_t stream) {
  if (g.rows == 0) return;
  const Plan p = make_plan<T>(g);
  const dim3 grid(static_cast<unsigned>(p.chunks), cuda::grid_dim_y(g.rows));
  if (p.vec > 1)
    backward_kernel<T, cuda::pack_width<T>(), kSoftmax, kMse>
        <<<grid, kThreads, 0, stream>>>(x, g, p.chunk_len, stats, grad_coords, ndim, grad_mse, gm_stride, mse_scale, tgt,
                                          grad);
  else
    backward_kernel<T, 1, kSoftmax, kMse>
        <<<grid, kThreads, 0, stream>>>(x, g, p.chunk_len, stats, grad_coords, ndim, grad_mse, gm_stride, mse_scale, tgt,
                                          grad);
  cuda::check_launch("volume backward_kernel");
}

}  // namespace volume_cuda
}  // namespace fastpose
