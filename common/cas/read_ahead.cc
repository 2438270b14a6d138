#include "common/cas/read_ahead.h"

#include <algorithm>
#include <utility>

namespace stagefarm::cas {

ReadAhead::ReadAhead(std::unique_ptr<BlobReader> reader, size_t depth)
    : reader_(std::move(reader)), depth_(std::max<size_t>(depth, 1)), thread_([this] { Run(); }) {}

ReadAhead::~ReadAhead() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void ReadAhead::Run() {
  while (true) {
    Piece next;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &ReadAhead::HasRoom));
      if (stop_) return;
      if (!spare_.empty()) {
        next.buffer = std::move(spare_.back());
        spare_.pop_back();
      }
    }
    absl::StatusOr<absl::string_view> piece = reader_->NextInto(&next.buffer);
    if (!piece.ok()) {
      next.status = piece.status();
    } else if (!piece->empty()) {
      next.offset = static_cast<size_t>(piece->data() - next.buffer.data());
      next.length = piece->size();
    }
    const bool last = !piece.ok() || piece->empty();
    absl::MutexLock lock(&mu_);
    ready_.push_back(std::move(next));
    if (last) return;
  }
}

absl::StatusOr<absl::string_view> ReadAhead::Next() {
  if (ended_) {
    if (!ended_->ok()) return *ended_;
    return absl::string_view();
  }
  Piece piece;
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &ReadAhead::HasPiece));
    piece = std::move(ready_.front());
    ready_.pop_front();
    // The piece returned last is no longer the caller's: its buffer is read into again.
    spare_.push_back(std::move(current_));
  }
  current_ = std::move(piece.buffer);
  if (!piece.status.ok()) {
    ended_ = piece.status;
    return piece.status;
  }
  if (piece.length == 0) {
    ended_ = absl::OkStatus();
    return absl::string_view();
  }
  return absl::string_view(current_).substr(piece.offset, piece.length);
}

}  // namespace stagefarm::cas
