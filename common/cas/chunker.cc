#include "common/cas/chunker.h"

#include <bit>
#include <cassert>

namespace stagefarm::cas {
namespace {

constexpr uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

constexpr std::array<uint64_t, 256> MakeGearTable(uint64_t seed) {
  std::array<uint64_t, 256> table{};
  for (uint64_t& entry : table) entry = SplitMix64(seed);
  return table;
}

constexpr std::array<uint64_t, 256> kGear = MakeGearTable(kGearSeed);

// A mask of `bits` ones in the top bits of the hash. The gear hash shifts left,
// so its top bits depend on the last 64 bytes: the rolling window.
constexpr uint64_t TopBits(int bits) { return bits <= 0 ? 0 : ~uint64_t{0} << (64 - bits); }

}  // namespace

Chunker::Chunker(ChunkerOptions options) : options_(options) {
  assert(std::has_single_bit(options_.avg_size));
  assert(options_.min_size <= options_.avg_size && options_.avg_size <= options_.max_size);
  assert(options_.min_size >= 1);
  // Normalisation level 2: two bits stricter before the average, two looser after.
  const int bits = std::countr_zero(options_.avg_size);
  mask_small_ = TopBits(bits + 2);
  mask_large_ = TopBits(bits - 2);
}

std::optional<size_t> Chunker::Next(absl::string_view bytes) {
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  size_t position = position_;
  // Below min_size nothing can cut: skip without hashing. The hash only sees
  // the last 64 bytes, so starting it at min_size loses nothing.
  if (position < options_.min_size) {
    const size_t skip = std::min(n, options_.min_size - position);
    i += skip;
    position += skip;
  }
  // The loops run to precomputed ends and keep their state in locals: a
  // per-byte size check, or a member written through while `data` (which may
  // alias it) is read, costs as much as the gear hash itself. A byte at
  // position p is judged by the small mask while p < avg_size, by the large
  // one after; the chunk is cut after the byte that reaches max_size anyway.
  uint64_t hash = hash_;
  if (position < options_.avg_size) {
    const size_t end = i + std::min(n - i, options_.avg_size - position);
    const size_t start = i;
    while (i < end) {
      hash = (hash << 1) + kGear[data[i++]];
      if ((hash & mask_small_) == 0) break;
    }
    position += i - start;
    if ((i > start && (hash & mask_small_) == 0) || position >= options_.max_size) goto cut;
  }
  if (position < options_.max_size) {
    const size_t end = i + std::min(n - i, options_.max_size - position);
    const size_t start = i;
    while (i < end) {
      hash = (hash << 1) + kGear[data[i++]];
      if ((hash & mask_large_) == 0) break;
    }
    position += i - start;
    if ((i > start && (hash & mask_large_) == 0) || position >= options_.max_size) goto cut;
  }
  if (position >= options_.max_size) goto cut;  // max_size reached by skipping alone
  hash_ = hash;
  position_ = position;
  return std::nullopt;
cut:
  hash_ = 0;
  position_ = 0;
  return i;
}

std::vector<size_t> ChunkLengths(absl::string_view data, ChunkerOptions options) {
  Chunker chunker(options);
  std::vector<size_t> lengths;
  while (!data.empty()) {
    std::optional<size_t> cut = chunker.Next(data);
    if (!cut) break;
    lengths.push_back(*cut);
    data.remove_prefix(*cut);
  }
  if (chunker.pending() > 0) lengths.push_back(chunker.pending());
  return lengths;
}

}  // namespace stagefarm::cas
