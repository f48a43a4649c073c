// soft_argmax_heatmap_mse: the fused volumetric head (soft-argmax coordinates + heatmap MSE of the
// same volume against the Gaussian target at the ground-truth joints).
//
// Forward, one read of the logits z (rows, D, H, W):
//   coords, (m, log s)  as in soft_argmax.h;   loss_row = w * sum_v (z_v - t_v)^2  as in heatmap_mse.h
//   mse = sum_rows loss_row / (rows * D * H * W)                     (summed by the Python glue)
// Backward, one read of z and one write of the gradient, both outputs' gradients combined:
//   dL/dz_v = p_v * (g_c . (v - coords)) + g_mse * 2 w (z_v - t_v) / (rows * D * H * W)
#pragma once

#include "../heatmap_mse/heatmap_mse.h"
#include "../soft_argmax/soft_argmax.h"

namespace fastpose {
namespace soft_argmax_heatmap_mse {

// Buffer roles of the entry points (checked against the Python glue's KernelSpec declarations).
constexpr BufferRole kFusedForwardBuffers[] = {
    {"logits", Role::kStorage}, {"joints", Role::kAcc},    {"weights", Role::kAcc},  {"coords", Role::kStorage},
    {"stats", Role::kAcc},      {"loss_rows", Role::kAcc}, {"workspace", Role::kAcc}};
constexpr BufferRole kFusedBackwardBuffers[] = {
    {"grad_coords", Role::kAcc}, {"grad_mse", Role::kAcc}, {"logits", Role::kStorage}, {"joints", Role::kAcc},
    {"weights", Role::kAcc},     {"stats", Role::kAcc},    {"grad_logits", Role::kStorage}};

// One voxel of the combined gradient: p * bracket + k_mse * (z - t), k_mse = g_mse * 2 w / N.
template <typename A>
FP_HD A fused_grad(A p, A bracket, A k_mse, A logit, A target) {
  return p * bracket + k_mse * (logit - target);
}

// ---- host entry points ----------------------------------------------------------------------------
// logits (rows, D, H, W) dtype; joints (rows, 3) acc; weights (rows) acc or 0;
// coords (rows, 3) dtype; stats (rows, soft_argmax::kStats) acc; loss_rows (rows) acc.
void forward_cpu(int dtype, uintptr_t logits, int64_t rows, int64_t d, int64_t h, int64_t w,
                 uintptr_t joints, double sigma, uintptr_t weights, uintptr_t coords, uintptr_t stats,
                 uintptr_t loss_rows, int threads);
// grad_coords (rows, 3) acc or 0 (no gradient reached the coordinates); grad_mse () acc or 0;
// mse_scale = 2 / (rows * D * H * W); grad_logits (rows, D, H, W) dtype.
void backward_cpu(int dtype, uintptr_t grad_coords, uintptr_t grad_mse, uintptr_t logits, int64_t rows,
                  int64_t d, int64_t h, int64_t w, uintptr_t joints, double sigma, uintptr_t weights,
                  uintptr_t stats, double mse_scale, uintptr_t grad_logits, int threads);

#if defined(FASTPOSE_WITH_CUDA)
int64_t workspace_elems_cuda(int dtype, int64_t rows, int64_t d, int64_t h, int64_t w);
void forward_cuda(int dtype, uintptr_t logits, int64_t rows, int64_t d, int64_t h, int64_t w,
                  uintptr_t joints, double sigma, uintptr_t weights, uintptr_t coords, uintptr_t stats,
                  uintptr_t loss_rows, uintptr_t workspace, int device, uintptr_t stream);
void backward_cuda(int dtype, uintptr_t grad_coords, uintptr_t grad_mse, uintptr_t logits, int64_t rows,
                   int64_t d, int64_t h, int64_t w, uintptr_t joints, double sigma, uintptr_t weights,
                   uintptr_t stats, double mse_scale, uintptr_t grad_logits, int device, uintptr_t stream);
#endif

}  // namespace soft_argmax_heatmap_mse
}  // namespace fastpose
