#include "common/process/allocator.h"

#include <malloc.h>

namespace stagefarm::process {

void KeepFreedMemoryForReuse() {
  // Setting M_MMAP_THRESHOLD also stops glibc adjusting it (and the trim
  // threshold) by itself, so all three are set together.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's upper bound on 64-bit
  mallopt(M_TOP_PAD, 16 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
}

}  // namespace stagefarm::process
