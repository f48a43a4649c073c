// soft_argmax: per-element math shared by the CPU (soft_argmax_cpu.cpp) and CUDA (soft_argmax.cu)
// kernels, and the host entry points bound in csrc/bindings.cpp.
//
// For one (b, j) volume of logits z_v over voxels v = (x, y, z) (x along W, the last axis):
//   m = max_v z_v,  s = sum_v exp(z_v - m),  lse = m + log s,  p_v = exp(z_v - lse)
//   coords = sum_v p_v * v = (sx / s, sy / s, sz / s),  sx = sum_v exp(z_v - m) * x_v, ...
//   dL/dz_v = p_v * (g . (v - coords)),  g = dL/dcoords                              (backward)
// The forward is one pass with an *online* softmax: a running max m and sums rescaled by
// exp(m_old - m_new) whenever the max grows, so the logits are read once and the probability
// volume is never stored. The backward recomputes p_v from the saved (m, log s).
#pragma once

#include "../common/fp_common.h"
#include "../row_scale/buffer_roles.h"

namespace fastpose {
namespace soft_argmax {

// Buffer roles of the entry points (storage type T or its accumulation type; checked against the
// Python glue's KernelSpec declarations by tests/native/test_kernel_boundary.py).
constexpr BufferRole kSoftArgmaxForwardBuffers[] = {
    {"logits", Role::kStorage}, {"coords", Role::kStorage}, {"stats", Role::kAcc}, {"workspace", Role::kAcc}};
constexpr BufferRole kSoftArgmaxBackwardBuffers[] = {
    {"grad_coords", Role::kAcc}, {"logits", Role::kStorage}, {"stats", Role::kAcc}, {"grad_logits", Role::kStorage}};

// Saved per (b, j) for the backward, in the accumulation type: [m, log s, cx, cy, cz].
// m and log s are kept apart (not lse = m + log s) so that p = exp((z - m) - log s) keeps full
// precision for logits of magnitude 1e4, where one float ulp of lse is already 1e-3.
constexpr int kStats = 5;

// Online-softmax state of a set of voxels, relative to its max m:
//   s = sum exp(z - m), sx = sum exp(z - m) x, sy = ... y, sz = ... z.   Empty set: m = -inf.
template <typename A>
struct State {
  A m, s, sx, sy, sz;
};

template <typename A>
FP_HD State<A> state_empty() {
  return State<A>{fp_neg_inf<A>(), A(0), A(0), A(0), A(0)};
}

// exp(m_old - m_new) for m_new >= m_old; an empty state (m_old = -inf) gives 0, not NaN.
template <typename A>
FP_HD A rescale_factor(A m_old, A m_new) {
  return m_old == fp_neg_inf<A>() ? A(0) : fp_exp(m_old - m_new);
}

// Raise the reference of `st` to m_new >= st.m: sums *= exp(st.m - m_new).
template <typename A>
FP_HD void state_raise(State<A>& st, A m_new) {
  if (m_new > st.m) {
    const A f = rescale_factor(st.m, m_new);
    st.s *= f;
    st.sx *= f;
    st.sy *= f;
    st.sz *= f;
    st.m = m_new;
  }
}

// Add voxel (x, y, z) with logit `logit` (one-element online-softmax update).
template <typename A>
FP_HD void state_push(State<A>& st, A logit, A x, A y, A z) {
  state_raise(st, logit);
  if (st.m == fp_neg_inf<A>()) return;  // only -inf so far: contributes exp(-inf) = 0
  const A e = fp_exp(logit - st.m);
  st.s += e;
  st.sx += e * x;
  st.sy += e * y;
  st.sz += e * z;
}

// a <- a (+) b: the state of the union of two disjoint voxel sets. Not commutative in rounding,
// so callers merge in a fixed order (deterministic two-stage reductions).
template <typename A>
FP_HD void state_merge(State<A>& a, const State<A>& b) {
  if (b.m == fp_neg_inf<A>()) return;
  if (a.m == fp_neg_inf<A>()) {
    a = b;
    return;
  }
  const A m = a.m > b.m ? a.m : b.m;
  const A fa = fp_exp(a.m - m), fb = fp_exp(b.m - m);
  a.s = a.s * fa + b.s * fb;
  a.sx = a.sx * fa + b.sx * fb;
  a.sy = a.sy * fa + b.sy * fb;
  a.sz = a.sz * fa + b.sz * fb;
  a.m = m;
}

// Finish a row: coords = sums / s, stats = [m, log s, cx, cy, cz]. An all -inf (or empty) volume
// has s = 0 and gives NaN coordinates, as the softmax of such a volume is undefined.
template <typename A, typename S>
FP_HD void state_finish(const State<S>& st, A* stats) {
  const S inv = S(1) / st.s;
  stats[0] = A(st.m);
  stats[1] = A(std::log(st.s));
  stats[2] = A(st.sx * inv);
  stats[3] = A(st.sy * inv);
  stats[4] = A(st.sz * inv);
}

// p_v = exp((z_v - m) - log s) from the saved stats.
template <typename A>
FP_HD A prob(A logit, A m, A log_s) {
  return fp_exp((logit - m) - log_s);
}

// g . (v - c) = gx x + [gy (y - cy) + gz (z - cz) - gx cx]: the bracket is linear in x, so kernels
// walking along a line of x precompute the part in square brackets once per line.
template <typename A>
FP_HD A bracket_line_offset(A y, A z, A gx, A gy, A gz, A cx, A cy, A cz) {
  return gy * (y - cy) + gz * (z - cz) - gx * cx;
}

// ---- host entry points (pointers are addresses as integers; arrays are C-contiguous) -----------
// logits (rows, D, H, W) of dtype `dtype`; 2D maps are D = 1 with ndim = 2.
// coords (rows, ndim) dtype; stats (rows, kStats) accumulation dtype (float32 / float64).
void forward_cpu(int dtype, uintptr_t logits, int64_t rows, int64_t d, int64_t h, int64_t w, int ndim,
                 uintptr_t coords, uintptr_t stats, int threads);
// grad_coords (rows, ndim) accumulation dtype; grad_logits (rows, D, H, W) dtype.
void backward_cpu(int dtype, uintptr_t grad_coords, uintptr_t logits, uintptr_t stats, int64_t rows,
                  int64_t d, int64_t h, int64_t w, int ndim, uintptr_t grad_logits, int threads);

#if defined(FASTPOSE_WITH_CUDA)
// Same on the GPU (float32/float64/float16/bfloat16), on `stream` of `device`. `workspace` holds
// workspace_elems(...) values of the accumulation dtype (per-chunk partial states).
int64_t workspace_elems_cuda(int dtype, int64_t rows, int64_t d, int64_t h, int64_t w);
void forward_cuda(int dtype, uintptr_t logits, int64_t rows, int64_t d, int64_t h, int64_t w, int ndim,
                  uintptr_t coords, uintptr_t stats, uintptr_t workspace, int device, uintptr_t stream);
void backward_cuda(int dtype, uintptr_t grad_coords, uintptr_t logits, uintptr_t stats, int64_t rows,
                   int64_t d, int64_t h, int64_t w, int ndim, uintptr_t grad_logits, int device,
                   uintptr_t stream);
#endif

}  // namespace soft_argmax
}  // namespace fastpose
