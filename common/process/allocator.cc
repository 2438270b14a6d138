#include "common/process/allocator.h"

#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>

namespace stagefarm::process {
namespace {

constexpr uintptr_t kHugePage = uintptr_t{2} << 20;

// The main heap's address range, extended by `bytes` plus the top pad and
// kept (nothing in it is touched), advised for transparent huge pages. Does
// nothing when the heap is not where the program break is (glibc fell back
// to mmap) or the kernel has no huge pages to give.
void BackHeapByHugePages(size_t bytes) {
  const auto before = reinterpret_cast<uintptr_t>(sbrk(0));
  // volatile: a compiler may drop a malloc whose block is only freed, and the
  // point here is the heap growth it causes.
  void* volatile block = std::malloc(bytes);
  std::free(block);  // back to the heap's top, which is not trimmed
  const auto after = reinterpret_cast<uintptr_t>(sbrk(0));
  const uintptr_t start = (before + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = after & ~(kHugePage - 1);
  if (block == nullptr || end <= start) return;
  // Best effort: EINVAL when the kernel was built without huge pages.
  madvise(reinterpret_cast<void*>(start), end - start, MADV_HUGEPAGE);
}

}  // namespace

void KeepFreedMemoryForReuse() {
  // Setting M_MMAP_THRESHOLD also stops glibc adjusting it (and the trim
  // threshold) by itself, so all three are set together.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's upper bound on 64-bit
  mallopt(M_TOP_PAD, 16 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  BackHeapByHugePages(size_t{30} << 20);  // under the mmap threshold: from the heap
}

}  // namespace stagefarm::process
