// row_scale: out[r, i] = src[r, i] * scale[r] -- the smallest real kernel of the extension, carried
// end to end on both build paths (it proves the CPU and the CUDA builds), and the backward of the
// loss kernels that produce their gradient in the forward pass (heatmap_mse, reprojection_loss):
// there the incoming gradient of the loss is `scale` (one value, or one per (b, j) row for
// reduction="none") and `src` the gradient saved by the forward.
#pragma once

#include "../common/fp_common.h"

namespace fastpose {
namespace row_scale {

template <typename A>
FP_HD A scale_element(A v, A s) {
  return v * s;
}

// src (rows, cols) and scale (rows) in the accumulation dtype (the saved gradients are kept in
// float32 for float16/bfloat16 inputs, so they are rounded once, at the end); out (rows, cols) dtype.
// On the CPU (float32/float64 only) the two types coincide and out may alias src.
void forward_cpu(int dtype, uintptr_t src, uintptr_t scale, uintptr_t out, int64_t rows, int64_t cols, int threads);

#if defined(FASTPOSE_WITH_CUDA)
void forward_cuda(int dtype, uintptr_t src, uintptr_t scale, uintptr_t out, int64_t rows, int64_t cols, int device,
                  uintptr_t stream);
#endif

}  // namespace row_scale
}  // namespace fastpose
