// Content-defined chunking (FastCDC with normalised chunking and a gear hash).
//
// Blobs are cut where their content says so, not at fixed offsets, so an
// insertion or deletion in the middle of a large layer moves only the chunk
// boundaries around it and two versions of the layer share most chunks.
//
// The gear table is a compile-time constant derived from kGearSeed with
// SplitMix64, so boundaries are identical on every machine and every build;
// changing the seed or the sizes changes every chunk digest in every store.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/strings/string_view.h"

namespace stagefarm::cas {

// Seed of the gear table. Part of the on-disk format: never change it.
inline constexpr uint64_t kGearSeed = 0x73746167'65666172;  // "stagefar"

struct ChunkerOptions {
  // No boundary before min_size bytes; always a boundary at max_size bytes.
  // avg_size must be a power of two with min_size <= avg_size <= max_size.
  size_t min_size = 256 * 1024;
  size_t avg_size = 1024 * 1024;
  size_t max_size = 4 * 1024 * 1024;
};

// Finds chunk boundaries in a byte stream fed piece by piece; it never holds
// the bytes itself. Not safe for concurrent use.
//
//   Chunker chunker;
//   while (!piece.empty()) {
//     if (auto cut = chunker.Next(piece)) { /* chunk ends after piece[*cut - 1] */
//       piece.remove_prefix(*cut);
//     } else {
//       piece = {};  // all of piece belongs to the current chunk
//     }
//   }
//   // whatever was fed since the last cut is the final chunk (if non-empty)
class Chunker {
 public:
  // `options` must satisfy the constraints above (checked with a debug assert).
  explicit Chunker(ChunkerOptions options = {});

  // Scans `bytes` as the continuation of the current chunk. If the chunk ends
  // inside `bytes`, returns how many bytes of `bytes` it still takes (>= 1) and
  // starts a new chunk after them; otherwise returns nullopt and every byte of
  // `bytes` belongs to the current chunk.
  std::optional<size_t> Next(absl::string_view bytes);

  // Bytes fed since the last boundary: the size of the final chunk at the end.
  size_t pending() const { return position_; }

  const ChunkerOptions& options() const { return options_; }

 private:
  ChunkerOptions options_;
  uint64_t mask_small_;  // stricter mask used below avg_size
  uint64_t mask_large_;  // looser mask used from avg_size on
  size_t position_ = 0;  // bytes in the current chunk so far
  uint64_t hash_ = 0;
};

// The lengths of the chunks `data` is cut into; empty for empty input. For
// tests and tools that have the whole input in memory.
std::vector<size_t> ChunkLengths(absl::string_view data, ChunkerOptions options = {});

}  // namespace stagefarm::cas
