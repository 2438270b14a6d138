// How the programs' heap treats memory: freed memory is kept, and the heap is
// backed by huge pages where the kernel allows it.
//
// On the machines stagefarm is built for (virtual machines whose guest page
// tables are shadowed by the hypervisor), the first touch of a fresh page
// costs about 16 us (64 MiB of fresh pages, touched one by one: 0.26 s).
// glibc's defaults (mallopt(3)) hand such pages back to the kernel and fault
// them in again: allocations of 128 KiB or more (messages, chunk buffers,
// RocksDB's arena blocks) are their own mmap until glibc raises that
// threshold, and free memory at the heap's top is trimmed. A coordinator that
// plans a 1,000-stage build spent 43 ms in accepting it with the defaults and
// 10-16 ms once the memory of the build before was kept. A fresh process
// still pays for every page it touches the first time. With transparent huge
// pages in "madvise" mode (the setting of the machine it was measured on; this
// asks for them) one fault maps 2 MiB: an in-process cached rebuild of a
// 10,000-file context took 2,000-2,090 page faults before and 700-880 after
// (docs/BENCHMARKS.md).
#pragma once

namespace stagefarm::process {

// Makes this process keep freed memory for reuse: allocations below 32 MiB
// come from the heap rather than mmap, the heap grows 16 MiB at a time, and
// up to 512 MiB of free memory at its top stays mapped. A program's memory
// therefore stays near its peak, bounded by that top slack. Then grows the
// heap to about 46 MiB at once (address space only) and asks for it to be
// backed by transparent huge pages, so that a process's resident memory
// grows 2 MiB at a time. Call first thing in main, before other threads start.
void KeepFreedMemoryForReuse();

}  // namespace stagefarm::process
