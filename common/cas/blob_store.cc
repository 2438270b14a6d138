#include "common/cas/blob_store.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <deque>
#include <exception>
#include <random>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/cas/info_log.h"
#include "common/cas/rocksdb_crc32c.h"
#include "rocksdb/db.h"
#include "rocksdb/listener.h"
#include "rocksdb/options.h"
#include "rocksdb/slice.h"
#include "rocksdb/write_batch.h"

namespace stagefarm::cas {
namespace {

using digest::Digest;

constexpr uint8_t kIndexVersion = 1;
constexpr size_t kCheckSize = 8;
constexpr size_t kRawSha256Size = 32;

// Column family order in handles_ (index 0 is RocksDB's default family).
enum Family : size_t {
  kDefault,
  kChunks,
  kChunkMeta,
  kBlobs,
  kAccess,
  kRefs,
  kLeases,
  kCache,
  kFamilyCount
};
constexpr const char* kFamilyNames[kFamilyCount] = {"default", "chunks", "chunk_meta", "blobs",
                                                    "access",  "refs",   "leases",     "cache"};

absl::Status FromRocks(const rocksdb::Status& status, absl::string_view context) {
  if (status.ok()) return absl::OkStatus();
  std::string message = absl::StrCat(context, ": ", status.ToString());
  if (status.IsNotFound()) return absl::NotFoundError(message);
  if (status.IsCorruption()) return absl::DataLossError(message);
  // RocksDB's message names the file it could not write, in the store.
  if (status.IsNoSpace()) return absl::ResourceExhaustedError(message);
  if (status.IsIOError()) return absl::UnavailableError(message);
  if (status.IsInvalidArgument()) return absl::InvalidArgumentError(message);
  return absl::InternalError(message);
}

// Runs `body`, turning any exception (std::bad_alloc from RocksDB or us) into
// an Internal status so none crosses the module boundary.
template <typename F>
auto NoThrow(absl::string_view what, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, ": unexpected exception: ", e.what()));
  }
}

void PutVarint(std::string* out, uint64_t value) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>(value | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

bool GetVarint(absl::string_view* in, uint64_t* value) {
  uint64_t result = 0;
  for (int shift = 0; shift <= 63 && !in->empty(); shift += 7) {
    const auto byte = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    result |= uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80) == 0) {
      *value = result;
      return true;
    }
  }
  return false;
}

void PutFixed64(std::string* out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(value >> (8 * i)));
}

bool GetFixed64(absl::string_view* in, uint64_t* value) {
  if (in->size() < 8) return false;
  uint64_t result = 0;
  for (int i = 0; i < 8; ++i) result |= uint64_t{static_cast<uint8_t>((*in)[i])} << (8 * i);
  in->remove_prefix(8);
  *value = result;
  return true;
}

void PutLengthPrefixed(std::string* out, absl::string_view bytes) {
  PutVarint(out, bytes.size());
  out->append(bytes.data(), bytes.size());
}

bool GetLengthPrefixed(absl::string_view* in, absl::string_view* bytes) {
  uint64_t length = 0;
  if (!GetVarint(in, &length) || length > in->size()) return false;
  *bytes = in->substr(0, length);
  in->remove_prefix(length);
  return true;
}

std::string Check(absl::string_view body) {
  return digest::Sha256Of(body).hex().substr(0, 2 * kCheckSize);
}

struct IndexRecord {
  uint64_t size = 0;
  std::vector<ChunkRef> chunks;
  std::string media_type;
};

// Index record, version 1:
//   u8 version (1) | u8 algorithm (0 = sha256) | varint size | varint chunk count
//   | count x (varint length, 32 raw digest bytes) | varint media type length, bytes
//   | 8 check bytes (the first 8 bytes of SHA-256 of everything before them)
template <typename Chunks>
std::string EncodeIndexRecord(uint64_t size, const Chunks& chunks, absl::string_view media_type) {
  std::string out;
  out.reserve(16 + chunks.size() * (kRawSha256Size + 4) + media_type.size() + kCheckSize);
  out.push_back(static_cast<char>(kIndexVersion));
  out.push_back(static_cast<char>(digest::Algorithm::kSha256));
  PutVarint(&out, size);
  PutVarint(&out, chunks.size());
  for (const auto& chunk : chunks) {
    PutVarint(&out, chunk.length);
    out.append(absl::HexStringToBytes(chunk.digest.hex()));
  }
  PutLengthPrefixed(&out, media_type);
  out.append(absl::HexStringToBytes(Check(out)));
  return out;
}

absl::StatusOr<IndexRecord> DecodeIndexRecord(const Digest& blob, absl::string_view in) {
  auto corrupt = [&](absl::string_view why) {
    return absl::DataLossError(
        absl::StrCat("index record of blob ", blob.ToString(), " is corrupt: ", why));
  };
  if (in.size() < 2 + kCheckSize) return corrupt("too short");
  absl::string_view body = in.substr(0, in.size() - kCheckSize);
  if (absl::BytesToHexString(in.substr(body.size())) != Check(body)) {
    return corrupt("check bytes do not match");
  }
  if (static_cast<uint8_t>(body[0]) != kIndexVersion) {
    return corrupt(absl::StrCat("unknown version ", static_cast<int>(body[0])));
  }
  if (static_cast<uint8_t>(body[1]) != static_cast<uint8_t>(digest::Algorithm::kSha256)) {
    return corrupt(absl::StrCat("unknown algorithm ", static_cast<int>(body[1])));
  }
  body.remove_prefix(2);
  IndexRecord record;
  uint64_t count = 0;
  if (!GetVarint(&body, &record.size) || !GetVarint(&body, &count)) return corrupt("bad header");
  if (count > body.size() / (kRawSha256Size + 1)) return corrupt("chunk count too large");
  record.chunks.reserve(count);
  uint64_t total = 0;
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t length = 0;
    if (!GetVarint(&body, &length) || body.size() < kRawSha256Size) {
      return corrupt(absl::StrCat("chunk ", i, " truncated"));
    }
    absl::StatusOr<Digest> chunk = Digest::Parse(
        absl::StrCat("sha256:", absl::BytesToHexString(body.substr(0, kRawSha256Size))));
    if (!chunk.ok()) return corrupt(chunk.status().message());
    body.remove_prefix(kRawSha256Size);
    total += length;
    record.chunks.push_back({*std::move(chunk), length});
  }
  absl::string_view media_type;
  if (!GetLengthPrefixed(&body, &media_type)) return corrupt("bad media type");
  if (!body.empty()) return corrupt("trailing bytes");
  if (total != record.size) {
    return corrupt(absl::StrCat("chunks add up to ", total, " bytes, record says ", record.size));
  }
  record.media_type = std::string(media_type);
  return record;
}

// Lease record: varint expiry (unix micros) | varint count | count x length-prefixed digest.
std::string EncodeLease(absl::Time expiry, absl::Span<const Digest> blobs) {
  std::string out;
  PutVarint(&out, static_cast<uint64_t>(absl::ToUnixMicros(expiry)));
  PutVarint(&out, blobs.size());
  for (const Digest& blob : blobs) PutLengthPrefixed(&out, blob.ToString());
  return out;
}

struct Lease {
  absl::Time expiry;
  std::vector<std::string> blobs;  // digest strings, as keys are
};

absl::StatusOr<Lease> DecodeLease(absl::string_view id, absl::string_view in) {
  Lease lease;
  uint64_t expiry = 0, count = 0;
  bool ok = GetVarint(&in, &expiry) && GetVarint(&in, &count) && count <= in.size();
  for (uint64_t i = 0; ok && i < count; ++i) {
    absl::string_view blob;
    ok = GetLengthPrefixed(&in, &blob);
    lease.blobs.emplace_back(blob);
  }
  if (!ok || !in.empty()) return absl::DataLossError(absl::StrCat("lease ", id, " is corrupt"));
  lease.expiry = absl::FromUnixMicros(static_cast<int64_t>(expiry));
  return lease;
}

std::string EncodeTime(absl::Time time) {
  std::string out;
  PutFixed64(&out, static_cast<uint64_t>(absl::ToUnixMicros(time)));
  return out;
}

absl::Time DecodeTime(absl::string_view in) {
  uint64_t micros = 0;
  if (!GetFixed64(&in, &micros)) return absl::InfinitePast();
  return absl::FromUnixMicros(static_cast<int64_t>(micros));
}

std::string Mebibytes(uint64_t bytes) {
  return absl::StrFormat("%.1f MiB", static_cast<double>(bytes) / (1 << 20));
}

rocksdb::Slice ToSlice(absl::string_view s) { return rocksdb::Slice(s.data(), s.size()); }
absl::string_view ToView(const rocksdb::Slice& s) { return absl::string_view(s.data(), s.size()); }

rocksdb::WriteOptions Synced() {
  rocksdb::WriteOptions options;
  options.sync = true;
  return options;
}

}  // namespace

// ---------------------------------------------------------------- BlobWriter

// A chunk's bytes and, once hashed, its digest.
struct BlobWriter::ChunkBuffer {
  std::string bytes;
  std::optional<Digest> digest;  // set by the hasher thread, under its mutex
};

// SHA-256 of each chunk and of the whole blob (the chunks in order), on a
// thread of its own, so that hashing overlaps the writer's chunking and
// RocksDB writes instead of adding to them. Buffers circulate without copies:
// the writer fills one from TakeBuffer and hands it over with Submit, gets its
// digest with AwaitDigest, stores it, and gives it back with Release. Both
// threads only read a submitted buffer. kBuffers bounds the memory: a writer
// that runs ahead waits in TakeBuffer.
class BlobWriter::ChunkHasher {
 public:
  ChunkHasher() = default;
  // Abandons the hash: the thread stops without draining the queue.
  ~ChunkHasher() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }
  ChunkHasher(const ChunkHasher&) = delete;
  ChunkHasher& operator=(const ChunkHasher&) = delete;

  // An empty buffer to fill; blocks while all kBuffers are in use.
  ChunkBuffer* TakeBuffer() {
    absl::MutexLock lock(&mu_);
    if (free_.empty() && buffers_.size() < kBuffers) {
      buffers_.push_back(std::make_unique<ChunkBuffer>());
      return buffers_.back().get();
    }
    mu_.Await(absl::Condition(
        +[](std::vector<ChunkBuffer*>* free) { return !free->empty(); }, &free_));
    ChunkBuffer* buffer = free_.back();
    free_.pop_back();
    return buffer;
  }

  // Queues a filled buffer to be hashed, and fed to the whole-blob hash after
  // those submitted before it. Starts the thread on the first call.
  void Submit(ChunkBuffer* buffer) {
    {
      absl::MutexLock lock(&mu_);
      queue_.push_back(buffer);
    }
    if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
  }

  // The digest of a submitted buffer's bytes, once hashed.
  Digest AwaitDigest(ChunkBuffer* buffer) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](ChunkBuffer* b) { return b->digest.has_value(); }, buffer));
    return *buffer->digest;
  }

  // Gives back a buffer whose digest was awaited.
  void Release(ChunkBuffer* buffer) {
    absl::MutexLock lock(&mu_);
    buffer->bytes.clear();
    buffer->digest.reset();
    free_.push_back(buffer);
  }

  // Hashes everything submitted and returns the whole-blob digest. Call once.
  Digest Finish() {
    {
      absl::MutexLock lock(&mu_);
      finishing_ = true;
    }
    if (thread_.joinable()) thread_.join();
    return whole_.Finish();
  }

 private:
  static constexpr size_t kBuffers = 3;
  // Both hashes take the bytes a block at a time, so the second reads them
  // from cache.
  static constexpr size_t kBlock = 64 * 1024;

  void Run() {
    while (true) {
      ChunkBuffer* buffer = nullptr;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &ChunkHasher::HasWork));
        if (stop_ || queue_.empty()) return;
        buffer = queue_.front();
        queue_.pop_front();
      }
      digest::Sha256 chunk;
      const absl::string_view bytes = buffer->bytes;
      for (size_t offset = 0; offset < bytes.size(); offset += kBlock) {
        const absl::string_view block = bytes.substr(offset, kBlock);
        chunk.Update(block);
        whole_.Update(block);
      }
      Digest digest = chunk.Finish();
      absl::MutexLock lock(&mu_);
      buffer->digest = std::move(digest);
    }
  }
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stop_ || finishing_ || !queue_.empty();
  }

  digest::Sha256 whole_;  // used by the thread only, until Finish joins it
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<ChunkBuffer>> buffers_ ABSL_GUARDED_BY(mu_);
  std::vector<ChunkBuffer*> free_ ABSL_GUARDED_BY(mu_);
  std::deque<ChunkBuffer*> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
};

BlobWriter::BlobWriter(BlobStore* store)
    : store_(store),
      chunker_(store->options_.chunker),
      hasher_(std::make_unique<ChunkHasher>()),
      pending_(hasher_->TakeBuffer()) {}

BlobWriter::~BlobWriter() { store_->Unpin(chunks_); }

absl::Status BlobWriter::Write(absl::string_view bytes) {
  if (spent_) return absl::FailedPreconditionError("BlobWriter used after Commit or an error");
  if (sealed_) return absl::FailedPreconditionError("BlobWriter written after Seal");
  return NoThrow("BlobWriter::Write", [&]() -> absl::Status {
    size_ += bytes.size();
    while (!bytes.empty()) {
      std::optional<size_t> cut = chunker_.Next(bytes);
      if (!cut) {
        pending_->bytes.append(bytes.data(), bytes.size());
        break;
      }
      pending_->bytes.append(bytes.data(), *cut);
      bytes.remove_prefix(*cut);
      if (absl::Status status = CutPending(); !status.ok()) {
        spent_ = true;
        return status;
      }
    }
    return absl::OkStatus();
  });
}

absl::Status BlobWriter::CutPending() {
  hasher_->Submit(pending_);
  if (submitted_ != nullptr) {
    if (absl::Status status = StoreSubmitted(); !status.ok()) return status;
  }
  submitted_ = pending_;
  pending_ = hasher_->TakeBuffer();
  return absl::OkStatus();
}

absl::Status BlobWriter::StoreSubmitted() {
  // Chunks are stored in blob order, so stored_ decides logging as it would
  // without the hasher thread.
  const absl::string_view bytes = submitted_->bytes;
  // Pinned before it is looked up, so that GC cannot take a chunk found
  // present; the destructor unpins every entry of chunks_.
  chunks_.push_back({hasher_->AwaitDigest(submitted_), bytes.size()});
  store_->Pin({&chunks_.back(), 1});
  const bool logged = stored_ < store_->options_.logged_prefix;
  if (absl::Status status = store_->StoreChunk(chunks_.back().digest, bytes, logged, &needs_flush_);
      !status.ok()) {
    return status;
  }
  stored_ += bytes.size();
  hasher_->Release(submitted_);
  submitted_ = nullptr;
  return absl::OkStatus();
}

absl::Status BlobWriter::Commit(const Digest& expected, absl::string_view media_type) {
  return Finish(expected, media_type).status();
}

absl::StatusOr<Digest> BlobWriter::CommitAsWritten(absl::string_view media_type) {
  return Finish(std::nullopt, media_type);
}

absl::StatusOr<Digest> BlobWriter::Seal() {
  if (spent_) return absl::FailedPreconditionError("BlobWriter used after Commit or an error");
  if (sealed_) return *sealed_;
  absl::StatusOr<Digest> sealed = NoThrow("BlobWriter::Seal", [&]() -> absl::StatusOr<Digest> {
    if (submitted_ == nullptr) {
      // No chunk was cut: the blob is empty or one chunk, hashed here, once
      // (its digest is its chunk's).
      Digest actual = digest::Sha256Of(pending_->bytes);
      if (!pending_->bytes.empty()) {
        chunks_.push_back({actual, pending_->bytes.size()});
        store_->Pin({&chunks_.back(), 1});
        const bool logged = store_->options_.logged_prefix > 0;
        if (absl::Status status =
                store_->StoreChunk(actual, pending_->bytes, logged, &needs_flush_);
            !status.ok()) {
          return status;
        }
      }
      return actual;
    }
    if (!pending_->bytes.empty()) {
      if (absl::Status status = CutPending(); !status.ok()) return status;
    }
    if (absl::Status status = StoreSubmitted(); !status.ok()) return status;
    return hasher_->Finish();
  });
  if (!sealed.ok()) {
    spent_ = true;
    return sealed.status();
  }
  sealed_ = *sealed;
  return *sealed;
}

absl::StatusOr<Digest> BlobWriter::Finish(const std::optional<Digest>& expected,
                                          absl::string_view media_type) {
  absl::StatusOr<Digest> actual = Seal();
  if (!actual.ok()) return actual.status();
  spent_ = true;
  return NoThrow("BlobWriter::Commit", [&]() -> absl::StatusOr<Digest> {
    if (expected && *actual != *expected) {
      return absl::InvalidArgumentError(absl::StrCat(
          "blob content hashes to ", actual->ToString(), " but the expected digest is ",
          expected->ToString(), " (", size_, " bytes); nothing was stored"));
    }
    if (absl::Status status = store_->CommitIndex(
            *actual, EncodeIndexRecord(size_, chunks_, media_type), needs_flush_);
        !status.ok()) {
      return status;
    }
    return *std::move(actual);
  });
}

// ---------------------------------------------------------------- BlobReader

absl::StatusOr<absl::string_view> BlobReader::NextInto(std::string* buffer) {
  if (returned_ >= length_ || next_chunk_ >= chunks_.size()) return absl::string_view();
  return NoThrow("BlobReader::Next", [&]() -> absl::StatusOr<absl::string_view> {
    const ChunkRef& chunk = chunks_[next_chunk_++];
    if (absl::Status status = store_->ReadChunk(blob_, chunk, buffer); !status.ok()) {
      return status;
    }
    absl::string_view piece = *buffer;
    piece.remove_prefix(std::min<uint64_t>(skip_, piece.size()));
    skip_ = 0;
    piece = piece.substr(0, std::min<uint64_t>(piece.size(), length_ - returned_));
    returned_ += piece.size();
    return piece;
  });
}

// ------------------------------------------------------------- BlobAssembler

namespace {
// Out-of-order chunk bytes an assembler keeps in memory before it starts
// reading them back from the store instead.
constexpr uint64_t kMaxBufferedBytes = uint64_t{64} << 20;
}  // namespace

BlobAssembler::BlobAssembler(BlobStore* store, BlobManifest manifest, std::vector<bool> stored,
                             bool needs_flush)
    : store_(store),
      manifest_(std::move(manifest)),
      stored_(std::move(stored)),
      needs_flush_(needs_flush) {
  offsets_.reserve(manifest_.chunks.size());
  first_.reserve(manifest_.chunks.size());
  absl::flat_hash_map<absl::string_view, size_t> first_index;
  uint64_t offset = 0;
  for (size_t i = 0; i < manifest_.chunks.size(); ++i) {
    offsets_.push_back(offset);
    offset += manifest_.chunks[i].length;
    first_.push_back(first_index.emplace(manifest_.chunks[i].digest.hex(), i).first->second);
  }
  needed_ = std::count(stored_.begin(), stored_.end(), false);
  chunk_is_blob_ = manifest_.chunks.size() == 1 && manifest_.chunks[0].digest == manifest_.digest &&
                   manifest_.chunks[0].length == manifest_.size;
}

BlobAssembler::~BlobAssembler() { store_->Unpin(manifest_.chunks); }

std::vector<size_t> BlobAssembler::MissingChunks() const {
  std::vector<size_t> missing;
  missing.reserve(needed_);
  for (size_t i = 0; i < stored_.size(); ++i) {
    if (!stored_[i] && first_[i] == i) missing.push_back(i);
  }
  return missing;
}

absl::Status BlobAssembler::AddChunk(size_t index, absl::string_view bytes) {
  if (spent_) return absl::FailedPreconditionError("BlobAssembler used after Commit");
  if (index >= manifest_.chunks.size()) {
    return absl::OutOfRangeError(absl::StrCat("chunk index ", index, " is out of range for blob ",
                                              manifest_.digest.ToString(), " (",
                                              manifest_.chunks.size(), " chunks)"));
  }
  if (stored_[index]) return absl::OkStatus();
  const ChunkRef& chunk = manifest_.chunks[index];
  return NoThrow("BlobAssembler::AddChunk", [&]() -> absl::Status {
    if (bytes.size() != chunk.length) {
      return absl::DataLossError(absl::StrCat("chunk ", index, " (", chunk.digest.ToString(),
                                              ") of blob ", manifest_.digest.ToString(), " has ",
                                              bytes.size(), " bytes, expected ", chunk.length));
    }
    if (Digest actual = digest::Sha256Of(bytes); actual != chunk.digest) {
      return absl::DataLossError(
          absl::StrCat("chunk ", index, " of blob ", manifest_.digest.ToString(), " hashes to ",
                       actual.ToString(), ", expected ", chunk.digest.ToString()));
    }
    const bool logged = offsets_[index] < store_->options_.logged_prefix;
    if (absl::Status status = store_->StoreChunk(chunk.digest, bytes, logged, &needs_flush_);
        !status.ok()) {
      return status;
    }
    // Every occurrence of this chunk in the blob is stored now.
    for (size_t i = first_[index]; i < stored_.size(); ++i) {
      if (first_[i] == first_[index] && !stored_[i]) {
        stored_[i] = true;
        --needed_;
      }
    }
    // Verified above, as the whole blob: nothing to feed to whole_.
    if (chunk_is_blob_) return absl::OkStatus();
    if (index == hashed_) {
      whole_.Update(bytes);
      ++hashed_;
    } else if (buffered_bytes_ + bytes.size() <= kMaxBufferedBytes) {
      buffered_.emplace(index, std::string(bytes));
      buffered_bytes_ += bytes.size();
    }
    return Absorb();
  });
}

absl::Status BlobAssembler::Absorb() {
  std::string read_back;
  size_t read_back_index = manifest_.chunks.size();  // the chunk in read_back, if any
  while (hashed_ < manifest_.chunks.size() && stored_[hashed_]) {
    if (auto it = buffered_.find(hashed_); it != buffered_.end()) {
      whole_.Update(it->second);
      buffered_bytes_ -= it->second.size();
      buffered_.erase(it);
    } else {
      // Stored before this assembler started, added ahead while the buffer
      // was full, or a repeat of an earlier chunk: read back, verified (once
      // for a run of the same chunk).
      if (read_back_index == manifest_.chunks.size() ||
          first_[read_back_index] != first_[hashed_]) {
        if (absl::Status status =
                store_->ReadChunk(manifest_.digest, manifest_.chunks[hashed_], &read_back);
            !status.ok()) {
          return status;
        }
        read_back_index = hashed_;
      }
      whole_.Update(read_back);
    }
    ++hashed_;
  }
  return absl::OkStatus();
}

absl::Status BlobAssembler::Commit() {
  if (spent_) return absl::FailedPreconditionError("BlobAssembler used after Commit");
  spent_ = true;
  if (needed_ > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("blob ", manifest_.digest.ToString(), " cannot be committed: ", needed_,
                     " of ", manifest_.chunks.size(), " chunks are missing"));
  }
  return NoThrow("BlobAssembler::Commit", [&]() -> absl::Status {
    // A one-chunk blob is its chunk, verified when it was stored.
    if (!chunk_is_blob_) {
      if (absl::Status status = Absorb(); !status.ok()) return status;
      if (Digest actual = whole_.Finish(); actual != manifest_.digest) {
        return absl::InvalidArgumentError(
            absl::StrCat("the chunks listed for blob ", manifest_.digest.ToString(), " hash to ",
                         actual.ToString(), " (", manifest_.size, " bytes); nothing was stored"));
      }
    }
    return store_->CommitIndex(
        manifest_.digest, EncodeIndexRecord(manifest_.size, manifest_.chunks, manifest_.media_type),
        needs_flush_);
  });
}

// ---------------------------------------------------------------- BlobStore

// RocksDB's background error, while it has one. A failed write to the WAL or
// a failed flush (a full disk) sets it; RocksDB then refuses writes and runs
// no flush until it recovers (from a full disk: once its SstFileManager finds
// 64 MiB free), which clears it.
//
// No recovery after a failed write to the WAL: RocksDB 7.8 (Debian 12's)
// keeps the WAL whose append failed when every memtable was empty, and the
// first write after the recovery appends to it again, which fails the
// assertion `sync_without_flush_called_` (Debian's librocksdb keeps assert()
// enabled) and aborts the process (facebook/rocksdb#12448, #12873). Seen
// when a store's first write after opening failed and space was freed. Such
// a store takes writes again when it is opened again.
class BlobStore::BackgroundError final : public rocksdb::EventListener {
 public:
  rocksdb::Status Get() const {
    absl::MutexLock lock(&mu_);
    return error_;
  }

  void OnBackgroundError(rocksdb::BackgroundErrorReason, rocksdb::Status* error) override {
    absl::MutexLock lock(&mu_);
    error_ = *error;
  }
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason reason, rocksdb::Status,
                            bool* auto_recovery) override {
    if (reason == rocksdb::BackgroundErrorReason::kWriteCallback) *auto_recovery = false;
  }
  void OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) override {
    absl::MutexLock lock(&mu_);
    error_ = info.new_bg_error;
  }

 private:
  mutable absl::Mutex mu_;
  rocksdb::Status error_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::unique_ptr<BlobStore>> BlobStore::Open(const std::filesystem::path& dir,
                                                           BlobStoreOptions options) {
  return NoThrow("BlobStore::Open", [&]() -> absl::StatusOr<std::unique_ptr<BlobStore>> {
    std::error_code error;
    std::filesystem::create_directories(dir, error);
    if (error) {
      return absl::UnavailableError(
          absl::StrCat("cannot create store directory ", dir.string(), ": ", error.message()));
    }
    rocksdb::Options db_options;
    db_options.create_if_missing = true;
    // Opening loads table handlers on this many threads per column family
    // (RocksDB's default, 16, starts and stops about a hundred threads on
    // every open here, a sizeable part of a short command's time).
    db_options.max_file_opening_threads = 1;
    // A short command opens the store, writes a ref or two and exits: on the
    // next open its log is replayed into the memtable rather than flushed to
    // a new table file (which cost a table write and an fsync per command,
    // and left a small file each time for compaction), and the table files'
    // statistics are not read.
    db_options.avoid_flush_during_recovery = true;
    db_options.skip_stats_update_on_db_open = true;
    // Each open starts a new info LOG and keeps the old one; a few suffice.
    db_options.keep_log_file_num = 4;
    // Our logger, not RocksDB's: on a full disk RocksDB's aborts the process
    // (see info_log.h).
    db_options.info_log = OpenInfoLog(dir, db_options.info_log_level);
    if (db_options.info_log != nullptr) {
      // Which CRC32C RocksDB checksums with: ours (see rocksdb_crc32c.h).
      rocksdb::Log(rocksdb::InfoLogLevel::INFO_LEVEL, db_options.info_log,
                   "stagefarm: CRC32C by %s", Crc32cImplementation());
    }
    db_options.create_missing_column_families = true;
    db_options.IncreaseParallelism(2);
    // A chunk and its chunk_meta entry are flushed together (see blob_store.h).
    db_options.atomic_flush = true;
    auto background_error = std::make_shared<BackgroundError>();
    db_options.listeners.push_back(background_error);

    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const char* name : kFamilyNames) {
      rocksdb::ColumnFamilyOptions family_options;
      if (absl::string_view(name) == "chunks") {
        family_options.enable_blob_files = true;
        family_options.min_blob_size = options.min_blob_file_value;
        family_options.blob_file_size = 256 << 20;
        family_options.enable_blob_garbage_collection = true;
        family_options.write_buffer_size = 64 << 20;
        // Its SST files hold only keys and blob references, so more of them in
        // L0 cost lookups little; compacting less often matters, because
        // every compaction also relocates the blobs of the oldest blob files
        // (blob GC). With the default of 4, a 1 GiB put (16 memtables)
        // triggered several; this saves about a sixth of put's CPU.
        family_options.level0_file_num_compaction_trigger = 16;
      } else if (absl::string_view(name) == "blobs" || absl::string_view(name) == "chunk_meta") {
        family_options.OptimizeForPointLookup(64);
        // Index records are small: an 8 MiB memtable holds tens of thousands.
        // (The 64 MiB default made every open zero a memtable bloom filter of
        // 1.3 MB per family, several times over.)
        family_options.write_buffer_size = 8 << 20;
      }
      families.emplace_back(name, family_options);
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    rocksdb::Status status =
        rocksdb::DB::Open(rocksdb::DBOptions(db_options), dir.string(), families, &handles, &raw);
    if (!status.ok()) return FromRocks(status, absl::StrCat("opening store ", dir.string()));
    std::unique_ptr<BlobStore> store(
        new BlobStore(dir, std::move(options), std::unique_ptr<rocksdb::DB>(raw),
                      std::move(handles), std::move(background_error)));
    absl::MutexLock lock(&store->mu_);
    if (absl::Status swept = store->SweepOrphanChunks(); !swept.ok()) return swept;
    return store;
  });
}

BlobStore::BlobStore(std::filesystem::path dir, BlobStoreOptions options,
                     std::unique_ptr<rocksdb::DB> db,
                     std::vector<rocksdb::ColumnFamilyHandle*> handles,
                     std::shared_ptr<BackgroundError> background_error)
    : dir_(std::move(dir)),
      options_(std::move(options)),
      db_(std::move(db)),
      handles_(std::move(handles)),
      chunks_(handles_[kChunks]),
      chunk_meta_(handles_[kChunkMeta]),
      blobs_(handles_[kBlobs]),
      access_(handles_[kAccess]),
      refs_(handles_[kRefs]),
      leases_(handles_[kLeases]),
      cache_(handles_[kCache]),
      background_error_(std::move(background_error)) {}

BlobStore::~BlobStore() {
  FlushIfReplayWouldBeLong();
  for (rocksdb::ColumnFamilyHandle* handle : handles_) {
    db_->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
  }
  db_->Close().PermitUncheckedError();
}

// Mark: chunks named by any index record or pinned by an open writer. Sweep:
// every other chunk. Also recomputes stored_bytes_.
absl::Status BlobStore::SweepOrphanChunks() {
  absl::flat_hash_set<std::string> live;
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), blobs_));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      absl::StatusOr<Digest> blob = Digest::Parse(ToView(it->key()));
      if (!blob.ok()) continue;
      absl::StatusOr<IndexRecord> record = DecodeIndexRecord(*blob, ToView(it->value()));
      if (!record.ok()) return record.status();
      for (const ChunkRef& chunk : record->chunks) live.insert(chunk.digest.ToString());
    }
    if (!it->status().ok()) return FromRocks(it->status(), "scanning blob index");
  }
  rocksdb::WriteBatch batch;
  uint64_t stored = 0;
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), chunk_meta_));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      absl::string_view key = ToView(it->key());
      if (live.contains(key) || pinned_.contains(key)) {
        absl::string_view value = ToView(it->value());
        uint64_t length = 0;
        if (GetVarint(&value, &length)) stored += length;
        continue;
      }
      batch.Delete(chunks_, it->key());
      batch.Delete(chunk_meta_, it->key());
    }
    if (!it->status().ok()) return FromRocks(it->status(), "scanning chunks");
  }
  stored_bytes_ = stored;
  if (batch.Count() == 0) return absl::OkStatus();
  return FromRocks(db_->Write(Synced(), &batch), "deleting unused chunks");
}

std::unique_ptr<BlobWriter> BlobStore::NewWriter() {
  return std::unique_ptr<BlobWriter>(new BlobWriter(this));
}

absl::Status BlobStore::Put(absl::string_view bytes, const Digest& expected,
                            absl::string_view media_type) {
  std::unique_ptr<BlobWriter> writer = NewWriter();
  if (absl::Status status = writer->Write(bytes); !status.ok()) return status;
  return writer->Commit(expected, media_type);
}

absl::Status BlobStore::StoreChunk(const Digest& chunk, absl::string_view bytes, bool logged,
                                   bool* needs_flush) {
  std::string key = chunk.ToString();
  absl::MutexLock lock(&mu_);
  std::string ignored;
  rocksdb::Status found = db_->Get(rocksdb::ReadOptions(), chunk_meta_, key, &ignored);
  if (found.ok()) {
    // Another put may have written it unlogged and not flushed yet.
    if (unlogged_writes_ > flushed_writes_) *needs_flush = true;
    return absl::OkStatus();
  }
  if (!found.IsNotFound()) return FromRocks(found, absl::StrCat("looking up chunk ", key));
  if (absl::Status space = CheckFreeSpace(bytes.size(), logged); !space.ok()) {
    return absl::ResourceExhaustedError(absl::StrCat("storing chunk ", key, ": ", space.message()));
  }
  // Reserved up front: growing the batch to a chunk's size would copy it
  // several times over and fault in fresh pages at each step.
  rocksdb::WriteBatch batch(bytes.size() + 2 * key.size() + 64);
  std::string length;
  PutVarint(&length, bytes.size());
  batch.Put(chunks_, key, ToSlice(bytes));
  batch.Put(chunk_meta_, key, length);
  // Not synced: CommitIndex makes it durable before the index names it.
  rocksdb::WriteOptions write_options;
  write_options.disableWAL = !logged;
  rocksdb::Status status = db_->Write(write_options, &batch);
  if (!status.ok()) return FromRocks(status, absl::StrCat("storing chunk ", key));
  stored_bytes_ += bytes.size();
  if (!logged) {
    ++unlogged_writes_;
    *needs_flush = true;
  }
  return absl::OkStatus();
}

// Bytes a flush writes besides the memtables' contents (table files of the
// small families, a manifest edit), with room to spare.
constexpr uint64_t kFlushOverheadBytes = uint64_t{4} << 20;

absl::Status BlobStore::CheckFreeSpace(uint64_t bytes, bool logged) const {
  // RocksDB is better not asked to write what does not fit. Debian's
  // librocksdb keeps assert() enabled, and RocksDB 7.8's error path after a
  // failed write has assertions that abort the process (see info_log.h and
  // BackgroundError); and a store whose write failed refuses every write
  // until RocksDB recovers, which takes 64 MiB free, or, after a failed
  // write to the WAL, until it is opened again. Another writer on the same
  // file system can still fill it between this check and the write: then
  // RocksDB's own error, also ResourceExhausted, comes back instead.
  struct statvfs fs;
  if (statvfs(dir_.c_str(), &fs) != 0) return absl::OkStatus();  // RocksDB will tell
  const uint64_t free = uint64_t{fs.f_bavail} * fs.f_frsize;
  // The chunk goes to the WAL now (if logged) and, with the memtables
  // holding it, to table and blob files at the next flush.
  uint64_t memtables = 0;
  db_->GetAggregatedIntProperty(rocksdb::DB::Properties::kCurSizeAllMemTables, &memtables);
  const uint64_t needed = (logged ? 2 : 1) * bytes + memtables + kFlushOverheadBytes;
  if (free >= needed) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrCat("no space left on device for the store in ", dir_.native(), ": ",
                   Mebibytes(free), " free, ", Mebibytes(needed), " needed (", Mebibytes(bytes),
                   " of chunk, ", Mebibytes(memtables), " of memtables to flush)"));
}

void BlobStore::Pin(absl::Span<const ChunkRef> chunks) {
  absl::MutexLock lock(&mu_);
  for (const ChunkRef& chunk : chunks) ++pinned_[chunk.digest.ToString()];
}

void BlobStore::Unpin(absl::Span<const ChunkRef> chunks) {
  absl::MutexLock lock(&mu_);
  for (const ChunkRef& chunk : chunks) {
    auto it = pinned_.find(chunk.digest.ToString());
    if (it != pinned_.end() && --it->second == 0) pinned_.erase(it);
  }
}

// An open replays every log written since the last flush, and does not flush
// them (avoid_flush_during_recovery): so short commands, which write a little
// each and never fill a memtable, leave one more log each time, and an import
// leaves its small chunks in one. Seen: a client store with a 2.1 MB log and
// 16 small ones, replayed by every build, half of a cached rebuild's page
// faults. A flush at close once they pass these bounds keeps an open's replay
// short and costs one table write every few commands, not one each.
constexpr size_t kMaxLogsToReplay = 8;
constexpr uint64_t kMaxLogBytesToReplay = 1 << 20;

void BlobStore::FlushIfReplayWouldBeLong() {
  // Not after a failed write or flush (see FlushNow): the logs stay.
  if (!background_error_->Get().ok()) return;
  rocksdb::VectorLogPtr logs;
  if (!db_->GetSortedWalFiles(logs).ok()) return;
  uint64_t bytes = 0;
  for (const std::unique_ptr<rocksdb::LogFile>& log : logs) bytes += log->SizeFileBytes();
  if (logs.size() <= kMaxLogsToReplay && bytes <= kMaxLogBytesToReplay) return;
  absl::MutexLock lock(&mu_);
  // A failed flush loses nothing: the logs stay and are replayed next time.
  FlushNow(handles_).PermitUncheckedError();
}

rocksdb::Status BlobStore::FlushNow(const std::vector<rocksdb::ColumnFamilyHandle*>& families) {
  // None of RocksDB's own flushes may be pending or running when a manual
  // one starts: RocksDB 7.8 (Debian 12's) keeps a flush's reason per column
  // family, and a manual atomic flush racing an automatic one of the same
  // families fails an assertion in its flush thread and aborts the process
  // (facebook/rocksdb#11111, fixed in 8.0). Seen exporting a 430 MB image.
  WaitForBackgroundFlushes();
  // Nor after a failed write or flush: RocksDB would not run it until it
  // recovers (which, for a full disk, takes 64 MiB free), and such a
  // store's writes fail anyway.
  if (rocksdb::Status error = background_error_->Get(); !error.ok()) return error;
  rocksdb::FlushOptions flush_options;
  flush_options.wait = true;
  flush_options.allow_write_stall = true;
  return db_->Flush(flush_options, families);
}

void BlobStore::WaitForBackgroundFlushes() const {
  const absl::Time give_up = absl::Now() + absl::Minutes(2);
  while (absl::Now() < give_up) {
    uint64_t running = 0;
    bool pending = false;
    db_->GetIntProperty(rocksdb::DB::Properties::kNumRunningFlushes, &running);
    for (rocksdb::ColumnFamilyHandle* handle : handles_) {
      uint64_t flag = 0;
      if (db_->GetIntProperty(handle, rocksdb::DB::Properties::kMemTableFlushPending, &flag) &&
          flag != 0) {
        pending = true;
      }
    }
    if ((running == 0 && !pending) || !background_error_->Get().ok()) return;
    absl::SleepFor(absl::Milliseconds(1));
  }
}

absl::Status BlobStore::CommitIndex(const Digest& blob, const std::string& record,
                                    bool needs_flush) {
  std::string key = blob.ToString();
  if (needs_flush) {
    // No chunk write may start (they hold mu_) while the flush is prepared.
    absl::MutexLock lock(&mu_);
    const uint64_t covered = unlogged_writes_;
    rocksdb::Status status = FlushNow({chunks_, chunk_meta_});
    if (!status.ok()) {
      return FromRocks(status, absl::StrCat("flushing chunks of blob ", key));
    }
    flushed_writes_ = std::max(flushed_writes_, covered);
  }
  rocksdb::WriteBatch batch;
  batch.Put(blobs_, key, record);
  batch.Put(access_, key, EncodeTime(options_.now()));
  absl::MutexLock lock(&mu_);
  return FromRocks(db_->Write(rocksdb::WriteOptions(), &batch),
                   absl::StrCat("committing blob ", key));
}

absl::StatusOr<std::string> BlobStore::ReadIndex(const Digest& blob) const {
  std::string value;
  rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), blobs_, blob.ToString(), &value);
  if (status.IsNotFound()) {
    return absl::NotFoundError(absl::StrCat("blob ", blob.ToString(), " is not in the store"));
  }
  if (!status.ok()) return FromRocks(status, absl::StrCat("reading index of ", blob.ToString()));
  return value;
}

absl::Status BlobStore::ReadChunk(const Digest& blob, const ChunkRef& chunk,
                                  std::string* out) const {
  // RocksDB's own checksums are not verified: the SHA-256 below is the
  // stronger check of the same bytes, and this build of RocksDB computes CRC32C
  // in software, which costs a third of a read.
  rocksdb::ReadOptions read_options;
  read_options.verify_checksums = false;
  rocksdb::Status status = db_->Get(read_options, chunks_, chunk.digest.ToString(), out);
  if (status.IsNotFound()) {
    return absl::DataLossError(absl::StrCat("chunk ", chunk.digest.ToString(), " of blob ",
                                            blob.ToString(), " is missing from the store"));
  }
  if (!status.ok()) {
    return FromRocks(status, absl::StrCat("reading chunk ", chunk.digest.ToString(), " of blob ",
                                          blob.ToString()));
  }
  if (out->size() != chunk.length || digest::Sha256Of(*out) != chunk.digest) {
    return absl::DataLossError(absl::StrCat("chunk ", chunk.digest.ToString(), " of blob ",
                                            blob.ToString(), " is corrupt (", out->size(),
                                            " bytes hash to ", digest::Sha256Of(*out).ToString(),
                                            ", expected ", chunk.length, " bytes)"));
  }
  return absl::OkStatus();
}

absl::Status BlobStore::ReadChunkBytes(const Digest& chunk, std::string* out) const {
  return NoThrow("BlobStore::ReadChunkBytes", [&]() -> absl::Status {
    // Unchecked like ReadChunk: the receiver verifies the SHA-256.
    rocksdb::ReadOptions read_options;
    read_options.verify_checksums = false;
    rocksdb::Status status = db_->Get(read_options, chunks_, chunk.ToString(), out);
    if (status.IsNotFound()) {
      return absl::NotFoundError(absl::StrCat("chunk ", chunk.ToString(), " is not in the store"));
    }
    return FromRocks(status, absl::StrCat("reading chunk ", chunk.ToString()));
  });
}

absl::StatusOr<std::vector<bool>> BlobStore::HasChunks(absl::Span<const ChunkRef> chunks) const {
  std::vector<std::string> keys;
  keys.reserve(chunks.size());
  for (const ChunkRef& chunk : chunks) keys.push_back(chunk.digest.ToString());
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  db_->MultiGet(rocksdb::ReadOptions(), chunk_meta_, slices.size(), slices.data(), values.data(),
                statuses.data());
  std::vector<bool> present(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (statuses[i].ok()) {
      present[i] = true;
    } else if (!statuses[i].IsNotFound()) {
      return FromRocks(statuses[i], absl::StrCat("looking up chunk ", keys[i]));
    }
  }
  return present;
}

bool BlobStore::UnflushedChunkWrites() const {
  absl::MutexLock lock(&mu_);
  return unlogged_writes_ > flushed_writes_;
}

absl::StatusOr<BlobManifest> BlobStore::Manifest(const Digest& blob) const {
  return NoThrow("BlobStore::Manifest", [&]() -> absl::StatusOr<BlobManifest> {
    absl::StatusOr<std::string> value = ReadIndex(blob);
    if (!value.ok()) return value.status();
    absl::StatusOr<IndexRecord> record = DecodeIndexRecord(blob, *value);
    if (!record.ok()) return record.status();
    return BlobManifest{blob, record->size, std::move(record->chunks),
                        std::move(record->media_type)};
  });
}

absl::StatusOr<std::unique_ptr<BlobAssembler>> BlobStore::NewAssembler(BlobManifest manifest) {
  return NoThrow(
      "BlobStore::NewAssembler", [&]() -> absl::StatusOr<std::unique_ptr<BlobAssembler>> {
        auto invalid = [&](absl::string_view why) {
          return absl::InvalidArgumentError(
              absl::StrCat("manifest of blob ", manifest.digest.ToString(), " is invalid: ", why));
        };
        if (manifest.digest.algorithm() != digest::Algorithm::kSha256) {
          return invalid("only sha256 blobs are stored");
        }
        uint64_t total = 0;
        for (size_t i = 0; i < manifest.chunks.size(); ++i) {
          const ChunkRef& chunk = manifest.chunks[i];
          if (chunk.digest.algorithm() != digest::Algorithm::kSha256) {
            return invalid(absl::StrCat("chunk ", i, " is not sha256"));
          }
          if (chunk.length == 0 || chunk.length > kMaxChunkBytes) {
            return invalid(absl::StrCat("chunk ", i, " has length ", chunk.length,
                                        " (allowed 1 to ", kMaxChunkBytes, ")"));
          }
          total += chunk.length;
        }
        if (total != manifest.size) {
          return invalid(
              absl::StrCat("chunks add up to ", total, " bytes, manifest says ", manifest.size));
        }
        Pin(manifest.chunks);
        absl::StatusOr<std::vector<bool>> stored = HasChunks(manifest.chunks);
        if (!stored.ok()) {
          Unpin(manifest.chunks);
          return stored.status();
        }
        // A chunk found present may have been written unlogged by another put and
        // not be flushed yet: then Commit flushes before writing the index.
        // Chunks still to be added set the flag themselves (StoreChunk).
        const bool needs_flush = std::find(stored->begin(), stored->end(), true) != stored->end() &&
                                 UnflushedChunkWrites();
        return std::unique_ptr<BlobAssembler>(
            new BlobAssembler(this, std::move(manifest), *std::move(stored), needs_flush));
      });
}

void BlobStore::RecordAccess(const Digest& blob) {
  // Best effort and unsynced: a lost access time only makes GC's LRU order
  // slightly stale.
  db_->Put(rocksdb::WriteOptions(), access_, blob.ToString(), EncodeTime(options_.now()))
      .PermitUncheckedError();
}

absl::StatusOr<std::unique_ptr<BlobReader>> BlobStore::Get(const Digest& blob, uint64_t offset,
                                                           std::optional<uint64_t> length) {
  return NoThrow("BlobStore::Get", [&]() -> absl::StatusOr<std::unique_ptr<BlobReader>> {
    absl::StatusOr<std::string> value = ReadIndex(blob);
    if (!value.ok()) return value.status();
    absl::StatusOr<IndexRecord> record = DecodeIndexRecord(blob, *value);
    if (!record.ok()) return record.status();
    if (offset > record->size) {
      return absl::OutOfRangeError(absl::StrCat("offset ", offset, " is past the end of blob ",
                                                blob.ToString(), " (", record->size, " bytes)"));
    }
    const uint64_t range = std::min(record->size - offset, length.value_or(record->size));
    std::vector<ChunkRef> chunks;
    uint64_t start = 0;  // offset of the current chunk in the blob
    uint64_t skip = 0;
    for (ChunkRef& chunk : record->chunks) {
      const uint64_t end = start + chunk.length;
      if (range > 0 && end > offset && start < offset + range) {
        if (chunks.empty()) skip = offset - start;
        chunks.push_back({std::move(chunk.digest), chunk.length});
      }
      start = end;
    }
    RecordAccess(blob);
    return std::unique_ptr<BlobReader>(new BlobReader(this, blob, std::move(chunks), skip, range));
  });
}

absl::StatusOr<std::string> BlobStore::ReadAll(const Digest& blob, uint64_t offset,
                                               std::optional<uint64_t> length) {
  absl::StatusOr<std::unique_ptr<BlobReader>> reader = Get(blob, offset, length);
  if (!reader.ok()) return reader.status();
  return NoThrow("BlobStore::ReadAll", [&]() -> absl::StatusOr<std::string> {
    std::string out;
    out.reserve((*reader)->length());
    while (true) {
      absl::StatusOr<absl::string_view> piece = (*reader)->Next();
      if (!piece.ok()) return piece.status();
      if (piece->empty()) return out;
      out.append(piece->data(), piece->size());
    }
  });
}

absl::StatusOr<bool> BlobStore::Has(const Digest& blob) const {
  absl::StatusOr<std::vector<Digest>> missing = FindMissing({&blob, 1});
  if (!missing.ok()) return missing.status();
  return missing->empty();
}

absl::StatusOr<BlobInfo> BlobStore::Stat(const Digest& blob) const {
  return NoThrow("BlobStore::Stat", [&]() -> absl::StatusOr<BlobInfo> {
    absl::StatusOr<std::string> value = ReadIndex(blob);
    if (!value.ok()) return value.status();
    absl::StatusOr<IndexRecord> record = DecodeIndexRecord(blob, *value);
    if (!record.ok()) return record.status();
    return BlobInfo{record->size, record->chunks.size(), std::move(record->media_type)};
  });
}

absl::StatusOr<std::vector<Digest>> BlobStore::FindMissing(absl::Span<const Digest> blobs) const {
  return NoThrow("BlobStore::FindMissing", [&]() -> absl::StatusOr<std::vector<Digest>> {
    std::vector<std::string> keys;
    keys.reserve(blobs.size());
    for (const Digest& blob : blobs) keys.push_back(blob.ToString());
    std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
    std::vector<rocksdb::PinnableSlice> values(keys.size());
    std::vector<rocksdb::Status> statuses(keys.size());
    db_->MultiGet(rocksdb::ReadOptions(), blobs_, slices.size(), slices.data(), values.data(),
                  statuses.data());
    std::vector<Digest> missing;
    for (size_t i = 0; i < blobs.size(); ++i) {
      if (statuses[i].IsNotFound()) {
        missing.push_back(blobs[i]);
      } else if (!statuses[i].ok()) {
        return FromRocks(statuses[i], absl::StrCat("looking up ", keys[i]));
      }
    }
    return missing;
  });
}

absl::Status BlobStore::Delete(const Digest& blob) {
  return NoThrow("BlobStore::Delete", [&]() -> absl::Status {
    std::string key = blob.ToString();
    absl::MutexLock lock(&mu_);
    if (absl::StatusOr<std::string> value = ReadIndex(blob); !value.ok()) return value.status();
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), refs_));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (ToView(it->value()) == key) {
        return absl::FailedPreconditionError(absl::StrCat(
            "blob ", key, " is named by ref \"", ToView(it->key()), "\"; delete the ref first"));
      }
    }
    rocksdb::WriteBatch batch;
    batch.Delete(blobs_, key);
    batch.Delete(access_, key);
    return FromRocks(db_->Write(Synced(), &batch), absl::StrCat("deleting blob ", key));
  });
}

absl::Status BlobStore::SetRef(absl::string_view name, const Digest& blob) {
  if (name.empty()) return absl::InvalidArgumentError("ref name is empty");
  return NoThrow("BlobStore::SetRef", [&]() -> absl::Status {
    absl::MutexLock lock(&mu_);  // against a concurrent Delete of the blob
    if (absl::StatusOr<std::string> value = ReadIndex(blob); !value.ok()) {
      return absl::NotFoundError(
          absl::StrCat("cannot set ref \"", name, "\": ", value.status().message()));
    }
    return FromRocks(db_->Put(Synced(), refs_, ToSlice(name), blob.ToString()),
                     absl::StrCat("setting ref \"", name, "\""));
  });
}

absl::StatusOr<Digest> BlobStore::GetRef(absl::string_view name) const {
  return NoThrow("BlobStore::GetRef", [&]() -> absl::StatusOr<Digest> {
    std::string value;
    rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), refs_, ToSlice(name), &value);
    if (status.IsNotFound()) return absl::NotFoundError(absl::StrCat("no ref \"", name, "\""));
    if (!status.ok()) return FromRocks(status, absl::StrCat("reading ref \"", name, "\""));
    return Digest::Parse(value);
  });
}

absl::Status BlobStore::DeleteRef(absl::string_view name) {
  return NoThrow("BlobStore::DeleteRef", [&]() -> absl::Status {
    absl::MutexLock lock(&mu_);
    std::string value;
    rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), refs_, ToSlice(name), &value);
    if (status.IsNotFound()) return absl::NotFoundError(absl::StrCat("no ref \"", name, "\""));
    if (!status.ok()) return FromRocks(status, absl::StrCat("reading ref \"", name, "\""));
    return FromRocks(db_->Delete(Synced(), refs_, ToSlice(name)),
                     absl::StrCat("deleting ref \"", name, "\""));
  });
}

absl::StatusOr<std::vector<std::pair<std::string, Digest>>> BlobStore::ListRefs(
    absl::string_view prefix) const {
  using Refs = std::vector<std::pair<std::string, Digest>>;
  return NoThrow("BlobStore::ListRefs", [&]() -> absl::StatusOr<Refs> {
    Refs refs;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), refs_));
    for (it->Seek(ToSlice(prefix)); it->Valid() && it->key().starts_with(ToSlice(prefix));
         it->Next()) {
      absl::StatusOr<Digest> blob = Digest::Parse(ToView(it->value()));
      if (!blob.ok()) {
        return absl::DataLossError(
            absl::StrCat("ref \"", ToView(it->key()), "\" is corrupt: ", blob.status().message()));
      }
      refs.emplace_back(std::string(ToView(it->key())), *std::move(blob));
    }
    if (!it->status().ok()) return FromRocks(it->status(), "listing refs");
    return refs;
  });
}

absl::StatusOr<std::string> BlobStore::AcquireLease(absl::Span<const Digest> blobs,
                                                    absl::Duration ttl) {
  return NoThrow("BlobStore::AcquireLease", [&]() -> absl::StatusOr<std::string> {
    std::random_device random;
    std::string raw;
    for (int i = 0; i < 4; ++i) PutFixed64(&raw, (uint64_t{random()} << 32) | random());
    std::string id = absl::BytesToHexString(raw.substr(0, 16));
    rocksdb::Status status =
        db_->Put(Synced(), leases_, id, EncodeLease(options_.now() + ttl, blobs));
    if (!status.ok()) return FromRocks(status, "storing lease");
    return id;
  });
}

absl::Status BlobStore::ReleaseLease(absl::string_view lease_id) {
  return NoThrow("BlobStore::ReleaseLease", [&]() -> absl::Status {
    std::string value;
    rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), leases_, ToSlice(lease_id), &value);
    if (status.IsNotFound()) return absl::NotFoundError(absl::StrCat("no lease ", lease_id));
    if (!status.ok()) return FromRocks(status, absl::StrCat("reading lease ", lease_id));
    return FromRocks(db_->Delete(Synced(), leases_, ToSlice(lease_id)),
                     absl::StrCat("releasing lease ", lease_id));
  });
}

absl::Status BlobStore::PutCacheEntry(absl::string_view key, absl::string_view value) {
  return NoThrow("BlobStore::PutCacheEntry", [&]() -> absl::Status {
    return FromRocks(db_->Put(Synced(), cache_, ToSlice(key), ToSlice(value)),
                     absl::StrCat("storing cache entry \"", absl::CEscape(key), "\""));
  });
}

absl::StatusOr<std::string> BlobStore::GetCacheEntry(absl::string_view key) const {
  return NoThrow("BlobStore::GetCacheEntry", [&]() -> absl::StatusOr<std::string> {
    std::string value;
    rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), cache_, ToSlice(key), &value);
    if (status.IsNotFound()) {
      return absl::NotFoundError(absl::StrCat("no cache entry \"", absl::CEscape(key), "\""));
    }
    if (!status.ok()) {
      return FromRocks(status, absl::StrCat("reading cache entry \"", absl::CEscape(key), "\""));
    }
    return value;
  });
}

absl::Status BlobStore::DeleteCacheEntry(absl::string_view key) {
  return NoThrow("BlobStore::DeleteCacheEntry", [&]() -> absl::Status {
    // Under mu_ so that the NotFound check and the delete are one step against
    // another DeleteCacheEntry (a concurrent Put may land before or after).
    absl::MutexLock lock(&mu_);
    std::string ignored;
    rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), cache_, ToSlice(key), &ignored);
    if (status.IsNotFound()) {
      return absl::NotFoundError(absl::StrCat("no cache entry \"", absl::CEscape(key), "\""));
    }
    if (!status.ok()) {
      return FromRocks(status, absl::StrCat("reading cache entry \"", absl::CEscape(key), "\""));
    }
    return FromRocks(db_->Delete(Synced(), cache_, ToSlice(key)),
                     absl::StrCat("deleting cache entry \"", absl::CEscape(key), "\""));
  });
}

uint64_t BlobStore::StoredBytes() const {
  absl::MutexLock lock(&mu_);
  return stored_bytes_;
}

absl::StatusOr<GcStats> BlobStore::CollectGarbage(uint64_t size_cap) {
  return NoThrow("BlobStore::CollectGarbage", [&]() -> absl::StatusOr<GcStats> {
    absl::MutexLock lock(&mu_);
    const absl::Time now = options_.now();
    rocksdb::WriteBatch batch;
    GcStats stats;

    // Protected: blobs named by refs or unexpired leases. Expired leases go.
    absl::flat_hash_set<std::string> protected_blobs;
    {
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), refs_));
      for (it->SeekToFirst(); it->Valid(); it->Next()) protected_blobs.emplace(ToView(it->value()));
      if (!it->status().ok()) return FromRocks(it->status(), "scanning refs");
    }
    {
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), leases_));
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        absl::StatusOr<Lease> lease = DecodeLease(ToView(it->key()), ToView(it->value()));
        if (!lease.ok() || lease->expiry <= now) {
          batch.Delete(leases_, it->key());
          continue;
        }
        for (std::string& blob : lease->blobs) protected_blobs.insert(std::move(blob));
      }
      if (!it->status().ok()) return FromRocks(it->status(), "scanning leases");
    }

    // Mark: chunk use counts over all blobs, and the deletion candidates.
    struct Candidate {
      absl::Time access;
      std::string key;
      std::vector<std::string> chunks;
    };
    std::vector<Candidate> candidates;
    absl::flat_hash_map<std::string, int> uses;
    {
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), blobs_));
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        absl::string_view key = ToView(it->key());
        absl::StatusOr<Digest> blob = Digest::Parse(key);
        if (!blob.ok()) continue;
        absl::StatusOr<IndexRecord> record = DecodeIndexRecord(*blob, ToView(it->value()));
        if (!record.ok()) return record.status();
        Candidate candidate{absl::InfinitePast(), std::string(key), {}};
        for (const ChunkRef& chunk : record->chunks) {
          std::string chunk_key = chunk.digest.ToString();
          ++uses[chunk_key];
          candidate.chunks.push_back(std::move(chunk_key));
        }
        if (protected_blobs.contains(key)) continue;
        std::string access;
        if (db_->Get(rocksdb::ReadOptions(), access_, it->key(), &access).ok()) {
          candidate.access = DecodeTime(access);
        }
        candidates.push_back(std::move(candidate));
      }
      if (!it->status().ok()) return FromRocks(it->status(), "scanning blob index");
    }
    for (const auto& [chunk, count] : pinned_) uses[chunk] += count;

    // Chunk lengths, and the orphans (no use at all) swept unconditionally.
    absl::flat_hash_map<std::string, uint64_t> lengths;
    uint64_t stored = 0;
    {
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), chunk_meta_));
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        absl::string_view key = ToView(it->key());
        absl::string_view value = ToView(it->value());
        uint64_t length = 0;
        GetVarint(&value, &length);
        if (!uses.contains(key)) {
          batch.Delete(chunks_, it->key());
          batch.Delete(chunk_meta_, it->key());
          ++stats.chunks_deleted;
          continue;
        }
        lengths.emplace(key, length);
        stored += length;
      }
      if (!it->status().ok()) return FromRocks(it->status(), "scanning chunks");
    }

    // Evict least recently used first until under the cap.
    std::sort(candidates.begin(), candidates.end(),
              [](const Candidate& a, const Candidate& b) { return a.access < b.access; });
    for (const Candidate& candidate : candidates) {
      if (stored <= size_cap) break;
      batch.Delete(blobs_, candidate.key);
      batch.Delete(access_, candidate.key);
      ++stats.blobs_deleted;
      for (const std::string& chunk : candidate.chunks) {
        auto use = uses.find(chunk);
        if (--use->second > 0) continue;
        batch.Delete(chunks_, chunk);
        batch.Delete(chunk_meta_, chunk);
        ++stats.chunks_deleted;
        if (auto length = lengths.find(chunk); length != lengths.end()) stored -= length->second;
      }
    }
    if (batch.Count() > 0) {
      rocksdb::Status status = db_->Write(Synced(), &batch);
      if (!status.ok()) return FromRocks(status, "deleting garbage");
    }
    stored_bytes_ = stored;
    stats.stored_bytes_after = stored;
    return stats;
  });
}

}  // namespace stagefarm::cas
