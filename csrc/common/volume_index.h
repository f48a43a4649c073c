// Voxel coordinates of linear indices inside one (D, H, W) volume, for kernels that walk a volume
// with a fixed stride (the CUDA volume kernels): the position is found by division once, then
// advanced by a precomputed step with carries -- no division per value. Offsets are 64-bit
// (volumes over 2^31 values); each coordinate fits 32 bits. Host+device, so the CPU tests check
// the exact code the GPU runs (fastpose._C.volume_walk).
#pragma once

#include "fp_common.h"

namespace fastpose {
namespace volume_index {

struct Geometry {
  int64_t rows, n;  // n = d * h * w values per row
  int d, h, w;
};

struct Pos {
  int x, y, z;
};

// A linear step decomposed as s = dz*H*W + dy*W + dx with dx < W, dy < H.
struct Step {
  int dx, dy, dz;
};

FP_HD Pos pos_of(int64_t e, const Geometry& g) {
  const int64_t line = e / g.w;
  return Pos{static_cast<int>(e - line * g.w), static_cast<int>(line % g.h), static_cast<int>(line / g.h)};
}

FP_HD Step step_of(int64_t s, const Geometry& g) {
  const Pos p = pos_of(s, g);
  return Step{p.x, p.y, p.z};
}

// p <- position of (index of p) + s. x + dx < 2W and y + dy + 1 < 2H, so one carry each suffices.
FP_HD void advance(Pos& p, const Step& s, const Geometry& g) {
  p.x += s.dx;
  if (p.x >= g.w) {
    p.x -= g.w;
    ++p.y;
  }
  p.y += s.dy;
  if (p.y >= g.h) {
    p.y -= g.h;
    ++p.z;
  }
  p.z += s.dz;
}

}  // namespace volume_index
}  // namespace fastpose
