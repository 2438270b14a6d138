// The content store of a node: blobs by digest, cut into content-defined
// chunks, in one RocksDB database.
//
// Column families:
//   chunks      chunk digest string -> chunk bytes. Integrated BlobDB
//               (enable_blob_files) so chunk bytes live in blob files, not
//               in the LSM tree.
//   chunk_meta  chunk digest string -> chunk length (varint). Lets the store
//               enumerate and size chunks without reading their bytes.
//   blobs       blob digest string -> index record (see EncodeIndexRecord in
//               blob_store.cc): version byte, algorithm, size, ordered chunk
//               list (length + raw digest), media type, 8-byte check.
//   access      blob digest string -> last access time (8 bytes, micros).
//   refs        ref name -> blob digest string.
//   leases      lease id -> expiry (micros) + the digests it protects.
//   cache       cache key -> opaque bytes: the build cache index (what a key
//               maps to is the caller's encoding). Added after the others; a
//               store made before it gains the family, empty, when opened.
//
// Crash consistency: a chunk is written as one batch (chunks + chunk_meta).
// The first BlobStoreOptions::logged_prefix bytes of a blob go through the
// WAL without sync; later chunks of a large blob skip the WAL (writing them
// twice halves put throughput). The index record is written last, in one
// logged WriteBatch, and only after every chunk it names is safe: logged
// chunks because the WAL is one ordered log that recovery replays as a
// prefix, so an index record that survives has its chunks before it;
// unlogged chunks because Commit first flushes the chunk families
// (atomic_flush, so a chunk and its chunk_meta entry land together) when the
// writer wrote, or found by dedup, a chunk that may still be unlogged in a
// memtable. So after a crash at any point an index record is either absent or
// names only chunks that are present. A blob is visible (Has, Get,
// FindMissing, Stat) only through its index record.
//
// Durability: a committed blob survives the process being killed at once.
// The index write is not synced to the disk itself (an fsync per blob made
// a 10,000-file context take a minute to upload); every synced write after it
// (a ref, a lease, a cache entry, a delete) syncs it too, so a ref never
// outlives, across a power loss, the blob it names. A power loss may lose
// the last unreferenced blobs, all of a blob or none of it: a content store
// fetches them again.
// Chunks without a blob (an abandoned or killed put, a wrong expected digest)
// are deleted when the store is opened and by CollectGarbage.
//
// Full disk: a chunk the file system has no room for (with the memtables
// it joins) is not written; the put fails with ResourceExhausted naming the
// store's directory and the bytes free and needed, and the store takes what
// fits afterwards. A write RocksDB itself fails for want of space (another
// writer filled the disk first) is also ResourceExhausted, with RocksDB's
// message naming the file; the store then refuses writes until RocksDB
// recovers, or, after a failed write to the WAL, until it is opened again.
// Either way nothing half-written becomes visible and committed blobs stay
// readable.
//
// Garbage collection is mark-and-sweep: CollectGarbage reads every index
// record, counts chunk uses in memory, removes least recently used blobs that
// no ref and no live lease names until the stored bytes fit the cap, then
// deletes every chunk no remaining blob and no open BlobWriter uses.
//
// Thread safety: BlobStore is safe for concurrent use. A BlobWriter, a
// BlobAssembler or a BlobReader is used by one thread at a time; many may exist at once. Both
// must be destroyed before their BlobStore. A reader of a blob that is
// deleted (Delete or CollectGarbage) while it reads may fail with NotFound or
// DataLoss.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/cas/chunker.h"
#include "common/digest/digest.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class Status;
}  // namespace rocksdb

namespace stagefarm::cas {

struct BlobStoreOptions {
  ChunkerOptions chunker;
  // Chunk values at least this large go to RocksDB blob files.
  uint64_t min_blob_file_value = 64 * 1024;
  // Chunks starting within this many bytes of a blob's start are written
  // through the WAL; later ones are flushed at Commit instead (see above).
  uint64_t logged_prefix = 8 * 1024 * 1024;
  // The clock for access times and lease expiry (a seam for tests).
  std::function<absl::Time()> now = [] { return absl::Now(); };
};

struct BlobInfo {
  uint64_t size = 0;
  size_t chunk_count = 0;
  std::string media_type;  // empty when unknown
};

// One chunk of a blob: its digest and length.
struct ChunkRef {
  digest::Digest digest;
  uint64_t length = 0;
};

// Chunks longer than this are refused in a manifest from a peer. The chunker
// never cuts more than ChunkerOptions::max_size (4 MiB by default).
inline constexpr uint64_t kMaxChunkBytes = uint64_t{8} << 20;

// A blob as its ordered chunk list: what a peer needs to fetch it chunk by
// chunk. The chunk lengths add up to `size`.
struct BlobManifest {
  digest::Digest digest;
  uint64_t size = 0;
  std::vector<ChunkRef> chunks;
  std::string media_type;  // empty when unknown
};

struct GcStats {
  size_t blobs_deleted = 0;
  size_t chunks_deleted = 0;
  uint64_t stored_bytes_after = 0;
};

class BlobStore;

// A put in progress. Write stores each chunk as soon as it is complete; the
// blob becomes visible only when Commit verifies the whole digest. Destroying
// an uncommitted writer abandons the put (its chunks are garbage).
//
// A writer of a blob longer than one chunk runs one helper thread, which
// hashes each chunk and the whole blob while Write cuts the next chunk and
// stores the previous one; it holds at most three chunk buffers
// (ChunkerOptions::max_size each). The thread ends with Commit or with the
// writer.
class BlobWriter {
 public:
  ~BlobWriter();
  BlobWriter(const BlobWriter&) = delete;
  BlobWriter& operator=(const BlobWriter&) = delete;

  // Appends `bytes` to the blob. An error (a RocksDB write failure) spends the
  // writer: later calls return FailedPrecondition.
  absl::Status Write(absl::string_view bytes);

  // Verifies that the bytes written hash to `expected` and makes the blob
  // visible under it (see Durability above). On a mismatch returns
  // InvalidArgument naming both digests and nothing becomes visible. The
  // writer is spent afterwards, whatever the outcome.
  absl::Status Commit(const digest::Digest& expected, absl::string_view media_type = "");

  // Commit under the digest of the bytes written, which the writer computes
  // anyway: for a writer whose caller would otherwise hash the same bytes a
  // second time only to name them (a layer's tar, whose digest is its diff
  // id). Returns that digest.
  absl::StatusOr<digest::Digest> CommitAsWritten(absl::string_view media_type = "");

  // Ends the writing: stores what is left and returns the digest of the
  // bytes written, without making the blob visible, for a caller that checks
  // more than the digest before it commits (an imported layer's diff id).
  // Commit or CommitAsWritten may follow and do not hash again; Write may
  // not. An error spends the writer.
  absl::StatusOr<digest::Digest> Seal();

  // Bytes written so far.
  uint64_t size() const { return size_; }

 private:
  friend class BlobStore;
  explicit BlobWriter(BlobStore* store);
  class ChunkHasher;
  struct ChunkBuffer;
  // Hands the complete chunk in *pending_ to the hasher, stores the chunk
  // handed over before it (if any), and takes a new buffer for pending_.
  absl::Status CutPending();
  // Stores *submitted_ once the hasher has its digest, and releases it.
  absl::Status StoreSubmitted();
  // Commit and CommitAsWritten: Seal, then checks the digest against
  // `expected` when given and writes the index record; returns the blob's
  // digest.
  absl::StatusOr<digest::Digest> Finish(const std::optional<digest::Digest>& expected,
                                        absl::string_view media_type);

  BlobStore* store_;
  Chunker chunker_;
  // Hashes each chunk and the whole blob on a thread of its own, while this
  // writer cuts the next chunk and stores the previous one. Owns the chunk
  // buffers; declared before the pointers into it.
  std::unique_ptr<ChunkHasher> hasher_;
  ChunkBuffer* pending_;              // the current, unfinished chunk
  ChunkBuffer* submitted_ = nullptr;  // a chunk being hashed, not stored yet
  std::vector<ChunkRef> chunks_;
  uint64_t size_ = 0;                     // bytes written
  uint64_t stored_ = 0;                   // bytes of chunks stored
  bool needs_flush_ = false;              // a chunk of this blob may be unlogged in a memtable
  std::optional<digest::Digest> sealed_;  // set by Seal
  bool spent_ = false;
};

// Reads a byte range of one blob, chunk by chunk, verifying each chunk's
// digest as it is read.
class BlobReader {
 public:
  // The next piece of the range, valid until the next call; empty at the end.
  // A chunk that is missing or does not hash to its digest gives DataLoss
  // naming the chunk and the blob.
  absl::StatusOr<absl::string_view> Next() { return NextInto(&buffer_); }

  // The same, read into `buffer` (the piece points into it) rather than the
  // reader's own: a caller can keep earlier pieces while it reads on.
  absl::StatusOr<absl::string_view> NextInto(std::string* buffer);

  // Length of the range being read.
  uint64_t length() const { return length_; }

 private:
  friend class BlobStore;
  BlobReader(const BlobStore* store, digest::Digest blob, std::vector<ChunkRef> chunks,
             uint64_t skip, uint64_t length)
      : store_(store),
        blob_(std::move(blob)),
        chunks_(std::move(chunks)),
        skip_(skip),
        length_(length) {}

  const BlobStore* store_;
  digest::Digest blob_;
  std::vector<ChunkRef> chunks_;  // the chunks overlapping the range
  size_t next_chunk_ = 0;
  uint64_t skip_;  // bytes to skip at the start of the first chunk
  uint64_t length_;
  uint64_t returned_ = 0;
  std::string buffer_;
};

// Builds a blob from a known chunk list (a manifest received from a peer),
// chunk by chunk in any order. Each chunk is verified against its digest
// before it is stored; Commit verifies the whole blob's digest over the chunks
// in order before the blob becomes visible. Chunks the store already has are
// not needed again. The manifest's chunks are protected from garbage
// collection while the assembler lives; destroying it uncommitted abandons the
// blob (chunks no blob uses are garbage).
class BlobAssembler {
 public:
  ~BlobAssembler();
  BlobAssembler(const BlobAssembler&) = delete;
  BlobAssembler& operator=(const BlobAssembler&) = delete;

  const BlobManifest& manifest() const { return manifest_; }

  // Indexes of the chunks still needed, ascending; a chunk that occurs more
  // than once in the blob (runs of zeros, say) is listed at its first index
  // only, and adding it there stores every occurrence.
  std::vector<size_t> MissingChunks() const;
  // Whether every chunk is stored (Commit can succeed unless the whole digest
  // is wrong).
  bool complete() const { return needed_ == 0; }

  // Verifies `bytes` against chunk `index` of the manifest and stores it.
  // DataLoss naming the chunk, its index and the blob when length or digest
  // differ (nothing is stored); OutOfRange for a bad index. Adding a chunk
  // that is already stored does nothing.
  absl::Status AddChunk(size_t index, absl::string_view bytes);

  // Verifies that the chunks, in order, hash to the blob's digest and makes
  // the blob visible (see Durability above). FailedPrecondition when chunks are missing;
  // InvalidArgument when the chunks hash to another digest (the chunk list
  // lied), and then nothing becomes visible. The assembler is spent
  // afterwards, whatever the outcome.
  absl::Status Commit();

 private:
  friend class BlobStore;
  BlobAssembler(BlobStore* store, BlobManifest manifest, std::vector<bool> stored,
                bool needs_flush);
  // Feeds the whole-blob hash with every chunk from hashed_ on that is stored.
  absl::Status Absorb();

  BlobStore* store_;
  BlobManifest manifest_;
  std::vector<uint64_t> offsets_;  // offset of each chunk in the blob
  std::vector<bool> stored_;       // chunk i is in the store
  // For each index, the first index with the same chunk digest.
  std::vector<size_t> first_;
  size_t needed_ = 0;  // chunk indexes not stored yet
  // The blob is its one chunk (a small file's blob): a chunk verified is the
  // blob verified, and whole_ is not used.
  bool chunk_is_blob_ = false;
  digest::Sha256 whole_;
  size_t hashed_ = 0;  // chunks [0, hashed_) are fed to whole_
  // Bytes of chunks added ahead of hashed_, kept so that Absorb need not read
  // them back (bounded by kMaxBufferedBytes; beyond it they are read back).
  absl::flat_hash_map<size_t, std::string> buffered_;
  uint64_t buffered_bytes_ = 0;
  bool needs_flush_ = false;
  bool spent_ = false;
};

class BlobStore {
 public:
  // Opens (creating if needed) the store in directory `dir` and deletes chunks
  // that no blob uses (left by a killed put). Returns the RocksDB error with
  // the path on failure.
  static absl::StatusOr<std::unique_ptr<BlobStore>> Open(const std::filesystem::path& dir,
                                                         BlobStoreOptions options = {});
  ~BlobStore();
  BlobStore(const BlobStore&) = delete;
  BlobStore& operator=(const BlobStore&) = delete;

  // Starts a streaming put.
  std::unique_ptr<BlobWriter> NewWriter();

  // Puts `bytes` in one call (NewWriter, Write, Commit).
  absl::Status Put(absl::string_view bytes, const digest::Digest& expected,
                   absl::string_view media_type = "");

  // Reads `length` bytes from `offset` (clamped to the blob's end; nullopt
  // length means to the end). NotFound naming the digest if the blob is not
  // stored; OutOfRange if offset is past the end. Records the access for GC.
  absl::StatusOr<std::unique_ptr<BlobReader>> Get(const digest::Digest& blob, uint64_t offset = 0,
                                                  std::optional<uint64_t> length = std::nullopt);

  // The blob's chunk list, for serving it to a peer. NotFound naming the
  // digest if the blob is not stored.
  absl::StatusOr<BlobManifest> Manifest(const digest::Digest& blob) const;

  // Reads one stored chunk's bytes into *out without checking them (neither
  // SHA-256 nor RocksDB's CRC: the peer that receives them verifies the
  // digest). NotFound naming the chunk if absent.
  absl::Status ReadChunkBytes(const digest::Digest& chunk, std::string* out) const;

  // Starts assembling the blob `manifest` describes. InvalidArgument naming
  // the blob when the manifest is inconsistent (lengths that do not add up, an
  // empty or over-long chunk, a digest that is not sha256).
  absl::StatusOr<std::unique_ptr<BlobAssembler>> NewAssembler(BlobManifest manifest);

  // Reads a whole blob (or range) into memory; for small blobs and tests.
  absl::StatusOr<std::string> ReadAll(const digest::Digest& blob, uint64_t offset = 0,
                                      std::optional<uint64_t> length = std::nullopt);

  absl::StatusOr<bool> Has(const digest::Digest& blob) const;
  // NotFound naming the digest if the blob is not stored.
  absl::StatusOr<BlobInfo> Stat(const digest::Digest& blob) const;

  // The digests of `blobs` that are not stored, in input order (one batched
  // RocksDB MultiGet).
  absl::StatusOr<std::vector<digest::Digest>> FindMissing(
      absl::Span<const digest::Digest> blobs) const;

  // Removes the blob (its chunks go at the next GC). NotFound if absent;
  // FailedPrecondition naming the ref if a ref points at it.
  absl::Status Delete(const digest::Digest& blob);

  // Refs: names for blobs. SetRef fails with NotFound if the blob is absent
  // and InvalidArgument for an empty name.
  absl::Status SetRef(absl::string_view name, const digest::Digest& blob);
  absl::StatusOr<digest::Digest> GetRef(absl::string_view name) const;
  // NotFound naming the ref if it does not exist.
  absl::Status DeleteRef(absl::string_view name);
  // All refs whose name starts with `prefix`, sorted by name.
  absl::StatusOr<std::vector<std::pair<std::string, digest::Digest>>> ListRefs(
      absl::string_view prefix = "") const;

  // Protects `blobs` from GC until `ttl` from now or Release; returns the
  // lease id. The blobs need not be stored yet (a lease can cover a fetch).
  absl::StatusOr<std::string> AcquireLease(absl::Span<const digest::Digest> blobs,
                                           absl::Duration ttl);
  // NotFound naming the lease if it does not exist (or already expired and collected).
  absl::Status ReleaseLease(absl::string_view lease_id);

  // The build cache index: opaque `value` bytes under `key`, replacing any
  // previous value; durable (synced) before returning. GC does not look at
  // cache entries: a value that names blobs does not protect them.
  absl::Status PutCacheEntry(absl::string_view key, absl::string_view value);
  // NotFound naming the key if there is no entry.
  absl::StatusOr<std::string> GetCacheEntry(absl::string_view key) const;
  // Removes the entry (synced). NotFound naming the key if there is none.
  absl::Status DeleteCacheEntry(absl::string_view key);

  // Deletes least recently used blobs that no ref and no unexpired lease
  // names until StoredBytes() <= size_cap (or nothing more can go), then every
  // chunk no remaining blob uses, and expired leases.
  absl::StatusOr<GcStats> CollectGarbage(uint64_t size_cap);

  // Bytes of distinct chunks stored (what dedup saves is not counted twice).
  uint64_t StoredBytes() const;

 private:
  friend class BlobWriter;
  friend class BlobReader;
  friend class BlobAssembler;
  class BackgroundError;
  BlobStore(std::filesystem::path dir, BlobStoreOptions options, std::unique_ptr<rocksdb::DB> db,
            std::vector<rocksdb::ColumnFamilyHandle*> handles,
            std::shared_ptr<BackgroundError> background_error);

  absl::Status SweepOrphanChunks() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stores a chunk unless present; through the WAL if `logged`. Sets
  // *needs_flush if the chunk may now be in a memtable without being in the
  // WAL. The caller has pinned the chunk.
  absl::Status StoreChunk(const digest::Digest& chunk, absl::string_view bytes, bool logged,
                          bool* needs_flush);
  // ResourceExhausted naming the store's directory, the bytes free and the
  // bytes needed when the file system has no room for a chunk of `bytes`
  // (through the WAL if `logged`) and the memtables it joins.
  absl::Status CheckFreeSpace(uint64_t bytes, bool logged) const;
  // Pinned chunks survive garbage collection (counted: each Pin needs an Unpin).
  void Pin(absl::Span<const ChunkRef> chunks);
  void Unpin(absl::Span<const ChunkRef> chunks);
  // Whether each chunk is stored (one MultiGet on chunk_meta).
  absl::StatusOr<std::vector<bool>> HasChunks(absl::Span<const ChunkRef> chunks) const;
  // Whether an unlogged chunk write may not be flushed yet.
  bool UnflushedChunkWrites() const;
  // Returns once RocksDB runs and has queued no flush, or holds a background
  // error (its queued flushes then wait for a recovery), or after two
  // minutes: see FlushNow.
  void WaitForBackgroundFlushes() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Flushes `families` (atomically) and waits for it, once RocksDB's own
  // flushes are done. While RocksDB holds a background error, returns it
  // without flushing.
  rocksdb::Status FlushNow(const std::vector<rocksdb::ColumnFamilyHandle*>& families)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // At close: flushes the memtables when the logs the next open would replay
  // have grown past a few (see the destructor).
  void FlushIfReplayWouldBeLong();
  // Flushes unlogged chunks if `needs_flush`, then writes the index record
  // (logged, not synced: see Durability above).
  absl::Status CommitIndex(const digest::Digest& blob, const std::string& record, bool needs_flush);
  // Reads a chunk of `blob` and verifies its length and digest (DataLoss).
  absl::Status ReadChunk(const digest::Digest& blob, const ChunkRef& chunk, std::string* out) const;
  absl::StatusOr<std::string> ReadIndex(const digest::Digest& blob) const;
  void RecordAccess(const digest::Digest& blob);

  const std::filesystem::path dir_;
  BlobStoreOptions options_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::ColumnFamilyHandle* chunks_;
  rocksdb::ColumnFamilyHandle* chunk_meta_;
  rocksdb::ColumnFamilyHandle* blobs_;
  rocksdb::ColumnFamilyHandle* access_;
  rocksdb::ColumnFamilyHandle* refs_;
  rocksdb::ColumnFamilyHandle* leases_;
  rocksdb::ColumnFamilyHandle* cache_;
  const std::shared_ptr<BackgroundError> background_error_;

  // Serialises chunk inserts, index commits and deletes against GC's sweep.
  mutable absl::Mutex mu_;
  // Chunks written by open writers (count of writers using each).
  absl::flat_hash_map<std::string, int> pinned_ ABSL_GUARDED_BY(mu_);
  uint64_t stored_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Unlogged chunk writes so far, and how many of them a finished flush covers.
  uint64_t unlogged_writes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t flushed_writes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace stagefarm::cas
