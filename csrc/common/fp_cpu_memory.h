// Memory advice for the CPU kernels' large outputs.
//
// torch allocates big CPU buffers with fresh mmap'd pages, so the kernel that first writes a
// gradient volume takes one page fault per 4 KiB page; on virtual machines that costs several
// times the kernel itself (measured here: 151 MB of fresh float32 took ~200-400 ms to fault in,
// ~60-120 ms with huge pages). Before such a buffer is first touched we ask Linux to back it with
// transparent huge pages (MADV_HUGEPAGE; effective when THP is "madvise" or "always", a no-op
// when it is "never"). Advice only: errors are ignored and the data is unaffected. torch offers
// the same for its own allocations with THP_MEM_ALLOC_ENABLE=1.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace fastpose {

constexpr size_t kHugeAdviceMinBytes = size_t(4) << 20;  // below this, faults are cheap enough

inline void advise_huge_pages(uintptr_t ptr, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (ptr == 0 || bytes < kHugeAdviceMinBytes) return;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (ptr + page - 1) & ~(page - 1), end = (ptr + bytes) & ~(page - 1);
  if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)ptr;
  (void)bytes;
#endif
}

}  // namespace fastpose
