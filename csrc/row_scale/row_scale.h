// row_scale: out[r, i] = src[r, i] * scale[r] -- the smallest real kernel of the extension, carried
// end to end on both build paths (it proves the CPU and the CUDA builds), and the backward of the
// loss kernels that produce their gradient in the forward pass (heatmap_mse, reprojection_loss):
// there the incoming gradient of the loss is `scale` (one value, or one per (b, j) row for
// reduction="none") and `src` the gradient saved by the forward.
#pragma once

#include "../common/fp_common.h"
#include "buffer_roles.h"

namespace fastpose {
namespace row_scale {

template <typename A>
FP_HD A scale_element(A v, A s) {
  return v * s;
}

// src (rows, cols) and scale (rows) in the accumulation type acc_t<T> (the saved gradients are kept
// in float32 for float16/bfloat16 inputs, so they are rounded once, at the end); out (rows, cols) in
// the storage type T of the dtype code. On the CPU (float32/float64 only) the two types coincide
// and out may alias src. Every producer of `src` (e.g. projection.h: the reprojection forward's
// `grad`) declares it kAcc too; the CPU test tests/ops/test_kernel_boundary.py checks the chain.
constexpr BufferRole kRowScaleBuffers[] = {{"src", Role::kAcc}, {"scale", Role::kAcc}, {"out", Role::kStorage}};

void forward_cpu(int dtype, uintptr_t src, uintptr_t scale, uintptr_t out, int64_t rows, int64_t cols, int threads);

#if defined(FASTPOSE_WITH_CUDA)
void forward_cuda(int dtype, uintptr_t src, uintptr_t scale, uintptr_t out, int64_t rows, int64_t cols, int device,
                  uintptr_t stream);
#endif

}  // namespace row_scale
}  // namespace fastpose
