// RocksDB's CRC32C, computed with the CPU's crc32 instruction.
//
// RocksDB checksums everything it writes with CRC32C: WAL records, blob file
// records, table blocks, and checks them again on recovery and compaction.
// Debian builds librocksdb for the x86-64 baseline, without SSE4.2, so its
// util/crc32c.cc computes them with lookup tables (crc32c::Slow_CRC32):
// profiled, about 30% of the coordinator thread that stores an uploaded
// context, and about 10% of a layer's CPU in the flush thread
// (docs/BENCHMARKS.md, "RocksDB's CRC32C in hardware").
//
// rocksdb_crc32c.cc therefore defines the three functions that crc32c.cc
// exports (Extend, Crc32cCombine, IsFastCrc32Supported), with the same
// results: the instruction computes the same CRC-32C (Castagnoli) as the
// tables, and a CPU without it gets tables here too. Linked statically
// (cmake/StaticDependencies.cmake), the linker then never takes crc32c.cc.o
// out of librocksdb.a, because nothing is left undefined for it to provide;
// with the shared librocksdb these definitions interpose its own for the calls
// it makes through the PLT. Whichever RocksDB a store runs with, its LOG says
// which CRC32C is in use (BlobStore::Open writes Crc32cImplementation there).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace rocksdb::crc32c {

// The CRC-32C of `data` appended to bytes whose CRC-32C is `init_crc`
// (0 for none): RocksDB's contract for util/crc32c.h.
uint32_t Extend(uint32_t init_crc, const char* data, size_t n);
// The CRC-32C of A followed by B, from crc32c(A), crc32c(B) and B's length.
uint32_t Crc32cCombine(uint32_t crc1, uint32_t crc2, size_t crc2len);
// RocksDB's wording for its LOG: "Supported on x86" or "Not supported on x86".
std::string IsFastCrc32Supported();

}  // namespace rocksdb::crc32c

namespace stagefarm::cas {

// "crc32 instruction (SSE4.2)" or "lookup tables (no SSE4.2)".
const char* Crc32cImplementation();

// rocksdb::crc32c::Extend by the lookup tables whatever the CPU: the
// fallback, which tests hold to the same results as the instruction.
uint32_t ExtendCrc32cWithTables(uint32_t init_crc, const char* data, size_t n);

}  // namespace stagefarm::cas
