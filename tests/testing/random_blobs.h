// Seeded pseudo-random blobs for store and transfer tests, generated a buffer
// at a time so that multi-GiB blobs never sit in memory.
#ifndef STAGEFARM_TESTS_TESTING_RANDOM_BLOBS_H_
#define STAGEFARM_TESTS_TESTING_RANDOM_BLOBS_H_

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/cas/blob_store.h"
#include "common/digest/digest.h"
#include "tests/testing/temp_dir.h"  // TempDir, which bench/store_bench.cc takes from here

namespace stagefarm::testing {

inline constexpr uint64_t kMiB = 1024 * 1024;

// std::mt19937_64's output is fixed by the standard, so a seed names the
// same bytes everywhere.
class RandomStream {
 public:
  explicit RandomStream(uint64_t seed) : random_(seed) {}
  void Fill(std::string* buffer, size_t size);

 private:
  std::mt19937_64 random_;
};

std::string RandomBytes(uint64_t seed, size_t size);

// Streams `size` seeded bytes into a new blob and commits it under their digest.
absl::StatusOr<digest::Digest> PutRandom(cas::BlobStore& store, uint64_t seed, uint64_t size);

// Reads the whole blob through the streaming reader; returns its digest and size.
absl::StatusOr<std::pair<digest::Digest, uint64_t>> HashStored(cas::BlobStore& store,
                                                               const digest::Digest& blob);

// Flips a byte in the middle of the first chunk, in key order, of the closed
// store at `store_dir` by writing its "chunks" column family directly, so
// that reading that chunk back fails its SHA-256 check.
absl::Status CorruptFirstStoredChunk(const std::filesystem::path& store_dir);

}  // namespace stagefarm::testing

#endif  // STAGEFARM_TESTS_TESTING_RANDOM_BLOBS_H_
