#include "worker/store_collector.h"

#include <limits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace stagefarm::worker {

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text) {
  absl::string_view rest = absl::StripAsciiWhitespace(text);
  auto bad = [text](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\": ", why, " (a byte count such as 0, 500M, 20G)"));
  };
  // Optional unit: B, KB/KiB/K, MB/MiB/M, ... all powers of 1024.
  if (absl::EndsWithIgnoreCase(rest, "ib")) {
    rest.remove_suffix(2);
  } else if (absl::EndsWithIgnoreCase(rest, "b")) {
    rest.remove_suffix(1);
  }
  int shift = 0;
  if (!rest.empty()) {
    switch (absl::ascii_tolower(static_cast<unsigned char>(rest.back()))) {
      case 'k': shift = 10; break;
      case 'm': shift = 20; break;
      case 'g': shift = 30; break;
      case 't': shift = 40; break;
      default: break;
    }
    if (shift != 0) rest.remove_suffix(1);
  }
  if (rest.empty()) return bad("no number");
  for (char c : rest) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return bad("not a number");
  }
  uint64_t value = 0;
  if (!absl::SimpleAtoi(rest, &value)) return bad("too large");
  if (value > (std::numeric_limits<uint64_t>::max() >> shift)) return bad("too large");
  return value << shift;
}

StoreCollector::StoreCollector(cas::BlobStore& store, std::function<bool()> idle,
                               StoreCollectorOptions options)
    : store_(store), idle_(std::move(idle)), options_(std::move(options)) {}

StoreCollector::~StoreCollector() {
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

void StoreCollector::Start() {
  if (options_.size_cap == 0) return;
  thread_ = std::thread([this] { Loop(); });
}

void StoreCollector::Exclusive(const std::function<void()>& fn) {
  absl::MutexLock lock(&exclusive_);
  fn();
}

absl::StatusOr<std::optional<cas::GcStats>> StoreCollector::CollectOnce() {
  if (options_.size_cap == 0 || store_.StoredBytes() <= options_.size_cap) return std::nullopt;
  absl::MutexLock lock(&exclusive_);
  if (!idle_()) return std::nullopt;
  absl::StatusOr<cas::GcStats> stats = store_.CollectGarbage(options_.size_cap);
  if (!stats.ok()) return stats.status();
  return std::optional<cas::GcStats>(*stats);
}

void StoreCollector::Loop() {
  while (!stop_.WaitForNotificationWithTimeout(options_.interval)) {
    const uint64_t before = store_.StoredBytes();
    absl::StatusOr<std::optional<cas::GcStats>> collected = CollectOnce();
    if (!options_.log) continue;
    if (!collected.ok()) {
      options_.log(absl::StrCat("store collection failed: ", collected.status().message()));
    } else if (collected->has_value()) {
      const cas::GcStats& stats = **collected;
      options_.log(absl::StrCat("store over its cap of ", options_.size_cap, " bytes (", before,
                                "): deleted ", stats.blobs_deleted, " blobs, ", stats.chunks_deleted,
                                " chunks; ", stats.stored_bytes_after, " bytes stored"));
    }
  }
}

}  // namespace stagefarm::worker
