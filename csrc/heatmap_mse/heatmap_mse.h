// heatmap_mse: per-element math shared by the CPU (heatmap_mse_cpu.cpp) and CUDA (heatmap_mse.cu)
// kernels, and the host entry points.
//
// For one (b, j) volume h_v with joint mu = (mu_x, mu_y, mu_z) (voxel units, x along W):
//   t_v = exp(-|v - mu|^2 / (2 sigma^2)) = gx(x) gy(y) gz(z),   g.(i) = exp(-(i - mu.)^2 k),
//   k = 1 / (2 sigma^2)  (peak 1, untruncated, sub-voxel centre; never materialised)
//   loss_row = w * sum_v (h_v - t_v)^2,     dloss/dh_v = 2 w (h_v - t_v) (times the normaliser)
// The squared errors are direct differences (never the expansion h^2 - 2 h t + t^2, which cancels
// near convergence). The forward saves nothing; the backward recomputes the target and writes
// grad = g_r * grad_scale * w * (h - t) in one read of h and one write (see docs/ops.md).
#pragma once

#include "../common/fp_common.h"
#include "../row_scale/buffer_roles.h"

namespace fastpose {
namespace heatmap_mse {

// Buffer roles of the entry points (checked against the Python glue's KernelSpec declarations).
constexpr BufferRole kHeatmapMseForwardBuffers[] = {
    {"heatmaps", Role::kStorage}, {"joints", Role::kAcc}, {"weights", Role::kAcc}, {"loss_rows", Role::kAcc},
    {"workspace", Role::kAcc}};
constexpr BufferRole kHeatmapMseBackwardBuffers[] = {
    {"grad_loss", Role::kAcc}, {"heatmaps", Role::kStorage}, {"joints", Role::kAcc}, {"weights", Role::kAcc},
    {"grad", Role::kStorage}};

// 1 / (2 sigma^2), the Gaussian's exponent scale.
FP_HD double inv_two_sigma2(double sigma) { return 1.0 / (2.0 * sigma * sigma); }

// Per-axis factor of the target: exp(-(i - mu)^2 k). The CPU kernels tabulate it per axis and
// multiply (one multiply per voxel instead of an exp).
template <typename A>
FP_HD A gauss_factor(A i, A mu, A k) {
  const A d = i - mu;
  return fp_exp(-(d * d) * k);
}

// The whole target at once from the offsets to the centre (one exp per voxel; the GPU kernels,
// which have exp units to spare but little room for per-row tables).
template <typename A>
FP_HD A gauss_target(A dx, A dy, A dz, A k) {
  return fp_exp(-(dx * dx + dy * dy + dz * dz) * k);
}

// Squared error and its gradient 2 w (h - t) / norm = grad_scale * w * (h - t).
template <typename A>
FP_HD A sq_err(A h, A t) {
  const A d = h - t;
  return d * d;
}
template <typename A>
FP_HD A err_grad(A h, A t, A scale_w) {
  return scale_w * (h - t);
}

// ---- host entry points ----------------------------------------------------------------------------
// heatmaps (rows, D, H, W) dtype; joints (rows, ndim) accumulation dtype (x, y[, z]); weights
// (rows) accumulation dtype or 0; loss_rows (rows) accumulation dtype = w * sum (h - t)^2.
void forward_cpu(int dtype, uintptr_t heatmaps, int64_t rows, int64_t d, int64_t h, int64_t w, int ndim,
                 uintptr_t joints, double sigma, uintptr_t weights, uintptr_t loss_rows, int threads);
// grad_loss: accumulation dtype, one value (grad_stride 0: "mean"/"sum") or one per row
// (grad_stride 1: "none"); grad (rows, D, H, W) dtype = grad_loss[r * grad_stride] * grad_scale * w_r
// * (h - t), grad_scale = 2 / N (N the reduction's normaliser).
void backward_cpu(int dtype, uintptr_t grad_loss, int64_t grad_stride, uintptr_t heatmaps, int64_t rows, int64_t d,
                  int64_t h, int64_t w, int ndim, uintptr_t joints, double sigma, uintptr_t weights,
                  double grad_scale, uintptr_t grad, int threads);

#if defined(FASTPOSE_WITH_CUDA)
int64_t workspace_elems_cuda(int dtype, int64_t rows, int64_t d, int64_t h, int64_t w);
void forward_cuda(int dtype, uintptr_t heatmaps, int64_t rows, int64_t d, int64_t h, int64_t w, int ndim,
                  uintptr_t joints, double sigma, uintptr_t weights, uintptr_t loss_rows, uintptr_t workspace,
                  int device, uintptr_t stream);
void backward_cuda(int dtype, uintptr_t grad_loss, int64_t grad_stride, uintptr_t heatmaps, int64_t rows, int64_t d,
                   int64_t h, int64_t w, int ndim, uintptr_t joints, double sigma, uintptr_t weights,
                   double grad_scale, uintptr_t grad, int device, uintptr_t stream);
#endif

}  // namespace heatmap_mse
}  // namespace fastpose
