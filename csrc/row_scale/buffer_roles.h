// Buffer roles of the kernel entry points: which raw buffers hold the storage type T (the dtype
// code passed from Python) and which the accumulation type acc_t<T> (float32 for float16/bfloat16,
// else T). Each op header declares one table per entry point, e.g.
//   constexpr BufferRole kReprojectionForwardBuffers[] = {{"points", Role::kStorage}, ...};
// the kernels type their pointers with buf_t<role_of(table, "name"), T>, and the bindings export
// every table (fastpose._C.buffer_roles()) so the Python glue's declarations
// (fastpose/ops/native/_glue.py: KernelSpec) are compared with them by a CPU test. One table, read
// by the CUDA code, the CPU code and the test: a kernel that writes T into a buffer the glue
// allocates as float32 (the fp16 reprojection-gradient bug of issue 12) cannot be written without
// changing the table, and the CPU test then fails.
//
// (Lives next to row_scale, the kernel every loss backward shares; it is op-independent and can
// move to csrc/common/.)
#pragma once

#include <cstring>
#include <type_traits>

#include "../common/fp_common.h"

namespace fastpose {

enum class Role { kStorage, kAcc };

struct BufferRole {
  const char* name;
  Role role;
};

inline const char* role_name(Role r) { return r == Role::kStorage ? "storage" : "acc"; }

constexpr bool names_equal(const char* a, const char* b) {
  while (*a && *a == *b) {
    ++a;
    ++b;
  }
  return *a == *b;
}

// The role of buffer `name` in `table`; a name missing from the table is a compile error when
// used in a constant expression (the throw is not a constant expression).
template <size_t N>
constexpr Role role_of(const BufferRole (&table)[N], const char* name) {
  for (size_t i = 0; i < N; ++i)
    if (names_equal(table[i].name, name)) return table[i].role;
  throw "role_of: unknown buffer name";
}

// Pointer element type of a buffer with role R for storage type T.
template <Role R, typename T>
using buf_t = std::conditional_t<R == Role::kStorage, T, acc_t<T>>;

}  // namespace fastpose
