// Reading a stored blob ahead of its consumer.
//
// BlobReader::Next reads each chunk from RocksDB and checks its SHA-256 on the
// caller's thread: about 1 ms per MiB here, 30% of the thread that inflates
// a gzip layer while a snapshot is unpacked (docs/BENCHMARKS.md, "Unpack:
// the stored blob read ahead"). A ReadAhead does that on a thread of its own,
// keeping a few chunks ready, so that the consumer only consumes.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/cas/blob_store.h"

namespace stagefarm::cas {

class ReadAhead {
 public:
  // Starts reading `reader` on a thread of its own, at most `depth` chunks
  // (each up to ChunkerOptions::max_size) ahead of Next.
  explicit ReadAhead(std::unique_ptr<BlobReader> reader, size_t depth = 4);
  // Stops the thread (waiting for the chunk it is reading, if any).
  ~ReadAhead();
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;

  // BlobReader::Next's pieces, in order: each valid until the next call, then
  // an empty piece. A read error comes in its place, and every later call
  // returns it again.
  absl::StatusOr<absl::string_view> Next();

 private:
  // A piece read ahead: the buffer it was read into and where in it the
  // piece is (an empty piece ends the blob), or the error that ended the
  // reading.
  struct Piece {
    std::string buffer;
    size_t offset = 0;
    size_t length = 0;
    absl::Status status;
  };

  void Run();
  bool HasRoom() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stop_ || ready_.size() < depth_;
  }
  bool HasPiece() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !ready_.empty(); }

  const std::unique_ptr<BlobReader> reader_;
  const size_t depth_;
  absl::Mutex mu_;
  std::deque<Piece> ready_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> spare_ ABSL_GUARDED_BY(mu_);  // buffers to read into again
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Next's side: the piece it last returned, and how the stream ended.
  std::string current_;
  std::optional<absl::Status> ended_;
  std::thread thread_;  // last: started once everything above is
};

}  // namespace stagefarm::cas
