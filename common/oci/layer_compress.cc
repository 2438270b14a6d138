#include "common/oci/layer_compress.h"

#include <fcntl.h>
#include <isa-l/igzip_lib.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <deque>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/digest/digest.h"

namespace stagefarm::oci {

int DefaultLevel(LayerCompression compression) {
  switch (compression) {
    case LayerCompression::kGzip:
      return kDefaultGzipLevel;
    case LayerCompression::kZstd:
      return kDefaultZstdLevel;
    case LayerCompression::kNone:
      break;
  }
  return 0;
}

// What both compressors do; LayerCompressor adds the spent-after-error rule.
class LayerCompressor::Impl {
 public:
  virtual ~Impl() = default;
  virtual absl::Status Write(absl::string_view bytes) = 0;
  virtual absl::Status Finish() = 0;
};

namespace {

// Deflate's window: the dictionary each block gets from the one before.
constexpr size_t kDeflateWindow = 32 * 1024;

int ResolveThreads(int threads) {
  if (threads > 0) return threads;
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

void PutLittleEndian32(uint32_t value, std::string* out) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

// pigz-style parallel gzip (see the header). Write fills a block; a full block
// becomes a job that a worker deflates; the caller's thread hands finished
// jobs to the sink in order, waiting for the oldest when 4 * threads jobs are
// in flight: enough that the other workers keep busy while the one holding
// the oldest block is descheduled on a loaded machine.
class GzipCompressor final : public LayerCompressor::Impl {
 public:
  GzipCompressor(int level, int threads, LayerCompressor::Sink sink)
      : level_(level), max_in_flight_(4 * static_cast<size_t>(threads)), sink_(std::move(sink)) {
    block_.reserve(kGzipBlockSize);
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { Work(); });
  }

  ~GzipCompressor() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    for (std::thread& worker : workers_) worker.join();
  }

  absl::Status Write(absl::string_view bytes) override {
    while (!bytes.empty()) {
      const size_t take = std::min<size_t>(kGzipBlockSize - block_.size(), bytes.size());
      block_.append(bytes.data(), take);
      bytes.remove_prefix(take);
      if (block_.size() == kGzipBlockSize) {
        if (absl::Status status = Submit(/*last=*/false); !status.ok()) return status;
      }
    }
    return absl::OkStatus();
  }

  absl::Status Finish() override {
    if (absl::Status status = Submit(/*last=*/true); !status.ok()) return status;
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (jobs_.empty()) break;
      }
      if (absl::Status status = EmitDone(/*wait=*/true); !status.ok()) return status;
    }
    std::string trailer;
    PutLittleEndian32(crc_, &trailer);
    PutLittleEndian32(static_cast<uint32_t>(size_), &trailer);  // ISIZE: size mod 2^32
    return sink_(trailer);
  }

 private:
  struct Job {
    std::string input;
    std::string dictionary;  // the previous block's last kDeflateWindow bytes
    bool last = false;
    // Set by the worker before `done`.
    std::string output;
    uint64_t input_size = 0;
    uint32_t crc = 0;
    absl::Status status;
    bool done = false;  // guarded by mu_
  };

  absl::Status Submit(bool last) {
    auto job = std::make_unique<Job>();
    job->input = std::move(block_);
    job->dictionary = std::move(dictionary_);
    job->last = last;
    const size_t tail = std::min(job->input.size(), kDeflateWindow);
    dictionary_.assign(job->input, job->input.size() - tail, tail);
    block_ = std::string();
    block_.reserve(kGzipBlockSize);
    size_t in_flight;
    {
      absl::MutexLock lock(&mu_);
      queue_.push_back(job.get());
      jobs_.push_back(std::move(job));
      in_flight = jobs_.size();
    }
    return EmitDone(/*wait=*/in_flight >= max_in_flight_);
  }

  // Hands finished jobs at the head to the sink, in order; first waits for
  // the head job if `wait`.
  absl::Status EmitDone(bool wait) {
    while (true) {
      std::unique_ptr<Job> job;
      {
        absl::MutexLock lock(&mu_);
        if (jobs_.empty()) return absl::OkStatus();
        Job* head = jobs_.front().get();
        if (wait) mu_.Await(absl::Condition(&head->done));
        if (!head->done) return absl::OkStatus();
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      wait = false;
      if (!job->status.ok()) return job->status;
      if (!wrote_header_) {
        wrote_header_ = true;
        // Go's compress/gzip header: CM deflate, no flags, mtime 0, XFL, OS unknown.
        const char xfl = level_ == 9 ? 2 : level_ == 1 ? 4 : 0;
        const char header[10] = {'\x1f', '\x8b', 8, 0, 0, 0, 0, 0, xfl, '\xff'};
        if (absl::Status status = sink_(absl::string_view(header, sizeof header)); !status.ok()) {
          return status;
        }
      }
      crc_ = crc32_combine(crc_, job->crc, static_cast<z_off_t>(job->input_size));
      size_ += job->input_size;
      if (absl::Status status = sink_(job->output); !status.ok()) return status;
    }
  }

  void Work() {
    std::vector<uint8_t> level_buffer;  // ISA-L's level 1 state
    z_stream stream{};
    // Raw deflate (windowBits -15): the gzip framing is written here.
    const bool ready =
        deflateInit2(&stream, level_, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK;
    while (true) {
      Job* job;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](GzipCompressor* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
              return self->stopping_ || !self->queue_.empty();
            },
            this));
        if (stopping_) break;
        job = queue_.front();
        queue_.pop_front();
      }
      if (level_ == 1) {
        job->status = DeflateIsal(job, level_buffer);
      } else {
        job->status = ready ? Deflate(&stream, job)
                            : absl::ResourceExhaustedError("gzip: deflateInit2 failed");
      }
      absl::MutexLock lock(&mu_);
      job->done = true;
    }
    if (ready) deflateEnd(&stream);
  }

  // Level 1 deflates with ISA-L's igzip: standard deflate, several times
  // zlib's speed at about zlib level 1's ratio, and deterministic. The block
  // is a raw deflate stream primed with the dictionary and ended with a sync
  // flush (the last one ends the stream), as with zlib.
  static absl::Status DeflateIsal(Job* job, std::vector<uint8_t>& level_buffer) {
    job->crc = crc32_z(0, reinterpret_cast<const Bytef*>(job->input.data()), job->input.size());
    isal_zstream stream;
    isal_deflate_init(&stream);
    stream.level = 1;
    level_buffer.resize(ISAL_DEF_LVL1_DEFAULT);
    stream.level_buf = level_buffer.data();
    stream.level_buf_size = static_cast<uint32_t>(level_buffer.size());
    stream.gzip_flag = IGZIP_DEFLATE;
    stream.end_of_stream = job->last ? 1 : 0;
    stream.flush = job->last ? NO_FLUSH : SYNC_FLUSH;
    if (!job->dictionary.empty() &&
        isal_deflate_set_dict(&stream, reinterpret_cast<uint8_t*>(job->dictionary.data()),
                              static_cast<uint32_t>(job->dictionary.size())) != COMP_OK) {
      return absl::InternalError("gzip: isal_deflate_set_dict failed");
    }
    // Incompressible input grows by a few bytes per stored block.
    job->output.resize(job->input.size() + job->input.size() / 16 + 4096);
    stream.next_in = reinterpret_cast<uint8_t*>(job->input.data());
    stream.avail_in = static_cast<uint32_t>(job->input.size());
    size_t produced = 0;
    while (true) {
      stream.next_out = reinterpret_cast<uint8_t*>(job->output.data() + produced);
      stream.avail_out = static_cast<uint32_t>(job->output.size() - produced);
      if (isal_deflate(&stream) != COMP_OK) return absl::InternalError("gzip: isal_deflate failed");
      produced = job->output.size() - stream.avail_out;
      const bool complete = stream.avail_in == 0 && stream.avail_out != 0 &&
                            (!job->last || stream.internal_state.state == ZSTATE_END);
      if (complete) break;
      if (stream.avail_out == 0) job->output.resize(job->output.size() * 2);
    }
    job->output.resize(produced);
    job->input_size = job->input.size();
    std::string().swap(job->input);
    std::string().swap(job->dictionary);
    return absl::OkStatus();
  }

  static absl::Status Deflate(z_stream* stream, Job* job) {
    job->crc = crc32_z(0, reinterpret_cast<const Bytef*>(job->input.data()), job->input.size());
    if (deflateReset(stream) != Z_OK) return absl::InternalError("gzip: deflateReset failed");
    if (!job->dictionary.empty() &&
        deflateSetDictionary(stream, reinterpret_cast<const Bytef*>(job->dictionary.data()),
                             static_cast<uInt>(job->dictionary.size())) != Z_OK) {
      return absl::InternalError("gzip: deflateSetDictionary failed");
    }
    const int flush = job->last ? Z_FINISH : Z_SYNC_FLUSH;
    // deflateBound covers the data; a sync flush adds an empty stored block.
    job->output.resize(deflateBound(stream, job->input.size()) + 16);
    stream->next_in = reinterpret_cast<Bytef*>(job->input.data());
    stream->avail_in = static_cast<uInt>(job->input.size());
    size_t produced = 0;
    while (true) {
      stream->next_out = reinterpret_cast<Bytef*>(job->output.data() + produced);
      stream->avail_out = static_cast<uInt>(job->output.size() - produced);
      const int result = deflate(stream, flush);
      if (result == Z_STREAM_ERROR) return absl::InternalError("gzip: deflate failed");
      produced = job->output.size() - stream->avail_out;
      const bool complete = job->last ? result == Z_STREAM_END : stream->avail_out != 0;
      if (complete) break;
      if (stream->avail_out == 0) job->output.resize(job->output.size() * 2);
    }
    job->output.resize(produced);
    // Only the size is needed from now on: free the block while it waits its turn.
    job->input_size = job->input.size();
    std::string().swap(job->input);
    std::string().swap(job->dictionary);
    return absl::OkStatus();
  }

  const int level_;
  const size_t max_in_flight_;
  const LayerCompressor::Sink sink_;
  std::vector<std::thread> workers_;

  // Caller's thread only.
  std::string block_;       // the block being filled
  std::string dictionary_;  // the last kDeflateWindow bytes submitted
  bool wrote_header_ = false;
  uint32_t crc_ = 0;
  uint64_t size_ = 0;

  absl::Mutex mu_;
  // Every job not yet emitted, in input order (the caller's thread owns them).
  std::deque<std::unique_ptr<Job>> jobs_ ABSL_GUARDED_BY(mu_);
  // Jobs no worker has taken yet.
  std::deque<Job*> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

// libzstd's streaming compression, multithreaded when the library allows.
class ZstdCompressor final : public LayerCompressor::Impl {
 public:
  explicit ZstdCompressor(ZSTD_CCtx* context, LayerCompressor::Sink sink)
      : context_(context), sink_(std::move(sink)), buffer_(ZSTD_CStreamOutSize(), '\0') {}
  ~ZstdCompressor() override { ZSTD_freeCCtx(context_); }

  absl::Status Write(absl::string_view bytes) override {
    ZSTD_inBuffer input{bytes.data(), bytes.size(), 0};
    while (input.pos < input.size) {
      if (absl::Status status = Step(&input, ZSTD_e_continue).status(); !status.ok()) {
        return status;
      }
    }
    return absl::OkStatus();
  }

  absl::Status Finish() override {
    ZSTD_inBuffer input{nullptr, 0, 0};
    while (true) {
      absl::StatusOr<size_t> remaining = Step(&input, ZSTD_e_end);
      if (!remaining.ok()) return remaining.status();
      if (*remaining == 0) return absl::OkStatus();
    }
  }

 private:
  // One ZSTD_compressStream2 call, its output handed to the sink; returns
  // what libzstd returns (for ZSTD_e_end: bytes still to flush).
  absl::StatusOr<size_t> Step(ZSTD_inBuffer* input, ZSTD_EndDirective directive) {
    ZSTD_outBuffer output{buffer_.data(), buffer_.size(), 0};
    const size_t result = ZSTD_compressStream2(context_, &output, input, directive);
    if (ZSTD_isError(result)) {
      return absl::InternalError(absl::StrCat("zstd: ", ZSTD_getErrorName(result)));
    }
    if (output.pos > 0) {
      if (absl::Status status = sink_(absl::string_view(buffer_.data(), output.pos));
          !status.ok()) {
        return status;
      }
    }
    return result;
  }

  ZSTD_CCtx* const context_;
  const LayerCompressor::Sink sink_;
  std::string buffer_;
};

absl::StatusOr<ZSTD_CCtx*> NewZstdContext(int level, int threads) {
  ZSTD_CCtx* context = ZSTD_createCCtx();
  if (context == nullptr) return absl::ResourceExhaustedError("zstd: ZSTD_createCCtx failed");
  size_t result = ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level);
  if (!ZSTD_isError(result)) result = ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1);
  if (ZSTD_isError(result)) {
    ZSTD_freeCCtx(context);
    return absl::InternalError(absl::StrCat("zstd: ", ZSTD_getErrorName(result)));
  }
  // Fails (and leaves single-threaded mode) when libzstd has no multithreading.
  const ZSTD_bounds workers = ZSTD_cParam_getBounds(ZSTD_c_nbWorkers);
  if (!ZSTD_isError(workers.error) && workers.upperBound >= 1) {
    ZSTD_CCtx_setParameter(context, ZSTD_c_nbWorkers, std::min(threads, workers.upperBound));
  }
  return context;
}

// --------------------------------------------------------------- CompressLayers

constexpr absl::string_view kDockerLayerTar = "application/vnd.docker.image.rootfs.diff.tar";

// The compressed blob's media type, in the family of the uncompressed one;
// nullopt for a layer that is not an uncompressed tar.
std::optional<std::string> CompressedMediaType(absl::string_view media_type,
                                               LayerCompression compression) {
  if (media_type == LayerMediaType(LayerCompression::kNone)) return LayerMediaType(compression);
  if (media_type == kDockerLayerTar) {
    return absl::StrCat(kDockerLayerTar,
                        compression == LayerCompression::kGzip ? ".gzip" : ".zstd");
  }
  return std::nullopt;
}

std::string CacheKey(LayerCompression compression, int level, const digest::Digest& diff_id) {
  return absl::StrCat("compressed/v1/", compression == LayerCompression::kGzip ? "gzip" : "zstd",
                      "-", level, "/", diff_id.ToString());
}

// A compressed layer blob: its digest and size.
using CompressedBlob = std::pair<digest::Digest, uint64_t>;

// The remembered compressed blob of a layer, if any and still stored.
absl::StatusOr<std::optional<CompressedBlob>> Remembered(cas::BlobStore& store,
                                                         const std::string& key) {
  absl::StatusOr<std::string> value = store.GetCacheEntry(key);
  if (absl::IsNotFound(value.status())) return std::nullopt;
  if (!value.ok()) return value.status();
  const std::vector<absl::string_view> fields = absl::StrSplit(*value, ' ');
  uint64_t size = 0;
  // An unreadable entry is treated as absent: the layer is compressed again
  // and the entry replaced.
  if (fields.size() != 2 || !absl::SimpleAtoi(fields[1], &size)) return std::nullopt;
  absl::StatusOr<digest::Digest> blob = digest::Digest::Parse(fields[0]);
  if (!blob.ok()) return std::nullopt;
  absl::StatusOr<bool> has = store.Has(*blob);
  if (!has.ok()) return has.status();
  if (!*has) return std::nullopt;
  return std::make_pair(*std::move(blob), size);
}

absl::Status InLayer(const digest::Digest& layer, const absl::Status& status) {
  return absl::Status(status.code(),
                      absl::StrCat("compressing layer ", layer.ToString(), ": ", status.message()));
}

// A reader of the stored blob `blob`; InvalidArgument when its stored size is
// not the descriptor's.
absl::StatusOr<std::unique_ptr<cas::BlobReader>> OpenSized(cas::BlobStore& store,
                                                           const Descriptor& blob) {
  absl::StatusOr<std::unique_ptr<cas::BlobReader>> reader = store.Get(blob.digest);
  if (!reader.ok()) return reader.status();
  if ((*reader)->length() != blob.size) {
    return absl::InvalidArgumentError(absl::StrCat("the descriptor says ", blob.size,
                                                   " bytes, the store has ", (*reader)->length()));
  }
  return reader;
}

// Compresses one stored layer, handing the compressed bytes to `write` in
// order; returns their digest and size.
absl::StatusOr<CompressedBlob> CompressOne(cas::BlobStore& store, const Descriptor& layer,
                                           int level, const CompressOptions& options,
                                           const std::function<void(uint64_t)>& consumed,
                                           const LayerCompressor::Sink& write) {
  absl::StatusOr<std::unique_ptr<cas::BlobReader>> reader = OpenSized(store, layer);
  if (!reader.ok()) return reader.status();
  digest::Sha256 hasher;
  uint64_t size = 0;
  absl::StatusOr<std::unique_ptr<LayerCompressor>> compressor = LayerCompressor::Create(
      options.compression, level, options.threads, [&](absl::string_view bytes) {
        hasher.Update(bytes);
        size += bytes.size();
        return write(bytes);
      });
  if (!compressor.ok()) return compressor.status();
  while (true) {
    absl::StatusOr<absl::string_view> piece = (*reader)->Next();
    if (!piece.ok()) return piece.status();
    if (piece->empty()) break;
    if (absl::Status status = (*compressor)->Write(*piece); !status.ok()) return status;
    consumed(piece->size());
  }
  if (absl::Status status = (*compressor)->Finish(); !status.ok()) return status;
  return std::make_pair(hasher.Finish(), size);
}

// Compresses `layer` into the file `dir`/<digest hex> by way of a partial
// file in `dir`, removed on error.
absl::StatusOr<CompressedBlob> CompressToFile(cas::BlobStore& store, const Descriptor& layer,
                                              int level, const CompressOptions& options,
                                              const std::function<void(uint64_t)>& consumed,
                                              const std::filesystem::path& dir) {
  const std::filesystem::path partial = dir / absl::StrCat(".partial-", layer.digest.hex());
  const int fd = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("creating ", partial.string()));
  absl::StatusOr<CompressedBlob> blob =
      CompressOne(store, layer, level, options, consumed,
                  [&](absl::string_view bytes) { return WriteAll(fd, bytes, partial); });
  if (::close(fd) != 0 && blob.ok()) {
    blob = absl::ErrnoToStatus(errno, absl::StrCat("closing ", partial.string()));
  }
  if (blob.ok() && ::rename(partial.c_str(), (dir / blob->first.hex()).c_str()) != 0) {
    blob = absl::ErrnoToStatus(errno, absl::StrCat("renaming ", partial.string()));
  }
  if (!blob.ok()) ::unlink(partial.c_str());
  return blob;
}

// A layer that needs compressing: its index among the layers, the compressed
// blob's media type and its cache key.
struct Pending {
  size_t index;
  std::string media_type;
  std::string key;
};

// A layer repeated in the list: its index, and that of its first
// occurrence.
struct Repeat {
  size_t index;
  size_t same;
  std::string media_type;
};

// What compressing `layers` involves: the layers as CompressLayers returns
// them, except that the pending ones are still the uncompressed layers; those
// the cache index knows are taken from it; every other uncompressed one is
// pending, once per diff id (a layer that comes twice is the same blob
// twice, a repeat).
struct CompressionPlan {
  std::vector<Descriptor> result;
  std::vector<Pending> pending;
  std::vector<Repeat> repeats;
  uint64_t total = 0;  // uncompressed bytes of the pending layers
  int level = 0;
};

absl::StatusOr<CompressionPlan> PlanCompression(cas::BlobStore& store,
                                                absl::Span<const Descriptor> layers,
                                                const CompressOptions& options) {
  CompressionPlan plan;
  plan.result.assign(layers.begin(), layers.end());
  if (options.compression == LayerCompression::kNone) return plan;
  plan.level = options.level.value_or(DefaultLevel(options.compression));
  std::map<digest::Digest, size_t> first_pending;  // diff id -> index in `result`
  for (size_t i = 0; i < plan.result.size(); ++i) {
    Descriptor& layer = plan.result[i];
    std::optional<std::string> media_type =
        CompressedMediaType(layer.media_type, options.compression);
    if (!media_type) continue;
    if (auto seen = first_pending.find(layer.digest); seen != first_pending.end()) {
      plan.repeats.push_back({i, seen->second, *std::move(media_type)});
      continue;
    }
    std::string key = CacheKey(options.compression, plan.level, layer.digest);
    absl::StatusOr<std::optional<CompressedBlob>> known = Remembered(store, key);
    if (!known.ok()) return InLayer(layer.digest, known.status());
    if (*known) {
      layer.media_type = *std::move(media_type);
      layer.digest = (*known)->first;
      layer.size = (*known)->second;
      continue;
    }
    plan.total += layer.size;
    first_pending.emplace(layer.digest, i);
    plan.pending.push_back({i, *std::move(media_type), std::move(key)});
  }
  return plan;
}

// Reports progress over the bytes actually compressed.
std::function<void(uint64_t)> ProgressOf(const CompressOptions& options, uint64_t total) {
  return [&options, total, done = uint64_t{0}](uint64_t bytes) mutable {
    done += bytes;
    if (options.on_progress) options.on_progress(done, total);
  };
}

// Fills in `plan`'s repeats once the layers they repeat are done.
std::vector<Descriptor> Resolved(CompressionPlan& plan) {
  for (Repeat& repeat : plan.repeats) {
    plan.result[repeat.index].media_type = std::move(repeat.media_type);
    plan.result[repeat.index].digest = plan.result[repeat.same].digest;
    plan.result[repeat.index].size = plan.result[repeat.same].size;
  }
  return std::move(plan.result);
}

// What CompressLayers and StageCompressedLayers share: the plan, with every
// pending layer compressed by `compress`.
absl::StatusOr<std::vector<Descriptor>> CompressPending(
    cas::BlobStore& store, absl::Span<const Descriptor> layers, const CompressOptions& options,
    const std::function<
        absl::StatusOr<CompressedBlob>(const Descriptor& layer, const Pending& pending, int level,
                                       const std::function<void(uint64_t)>& consumed)>& compress) {
  absl::StatusOr<CompressionPlan> plan = PlanCompression(store, layers, options);
  if (!plan.ok()) return plan.status();
  const std::function<void(uint64_t)> consumed = ProgressOf(options, plan->total);
  for (Pending& next : plan->pending) {
    Descriptor& layer = plan->result[next.index];
    absl::StatusOr<CompressedBlob> blob = compress(layer, next, plan->level, consumed);
    if (!blob.ok()) return InLayer(layer.digest, blob.status());
    layer.media_type = std::move(next.media_type);
    layer.digest = blob->first;
    layer.size = blob->second;
  }
  return Resolved(*plan);
}

// Streams the stored blob `blob` to `write`, checking its size.
absl::Status CopyStored(cas::BlobStore& store, const Descriptor& blob,
                        const LayerCompressor::Sink& write) {
  absl::StatusOr<std::unique_ptr<cas::BlobReader>> reader = OpenSized(store, blob);
  if (!reader.ok()) return reader.status();
  while (true) {
    absl::StatusOr<absl::string_view> piece = (*reader)->Next();
    if (!piece.ok()) return piece.status();
    if (piece->empty()) return absl::OkStatus();
    if (absl::Status status = write(*piece); !status.ok()) return status;
  }
}

}  // namespace

// ------------------------------------------------------------- LayerCompressor

LayerCompressor::LayerCompressor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LayerCompressor::~LayerCompressor() = default;

absl::StatusOr<std::unique_ptr<LayerCompressor>> LayerCompressor::Create(
    LayerCompression compression, std::optional<int> level, int threads, Sink sink) {
  const int resolved_level = level.value_or(DefaultLevel(compression));
  const int resolved_threads = ResolveThreads(threads);
  std::unique_ptr<Impl> impl;
  switch (compression) {
    case LayerCompression::kGzip:
      if (resolved_level < 0 || resolved_level > 9) {
        return absl::InvalidArgumentError(
            absl::StrCat("gzip level ", resolved_level, " is not in 0..9"));
      }
      impl = std::make_unique<GzipCompressor>(resolved_level, resolved_threads, std::move(sink));
      break;
    case LayerCompression::kZstd: {
      if (resolved_level < ZSTD_minCLevel() || resolved_level > ZSTD_maxCLevel()) {
        return absl::InvalidArgumentError(absl::StrCat("zstd level ", resolved_level, " is not in ",
                                                       ZSTD_minCLevel(), "..", ZSTD_maxCLevel()));
      }
      absl::StatusOr<ZSTD_CCtx*> context = NewZstdContext(resolved_level, resolved_threads);
      if (!context.ok()) return context.status();
      impl = std::make_unique<ZstdCompressor>(*context, std::move(sink));
      break;
    }
    case LayerCompression::kNone:
      return absl::InvalidArgumentError("no compression to run: kNone");
  }
  return std::unique_ptr<LayerCompressor>(new LayerCompressor(std::move(impl)));
}

absl::Status LayerCompressor::Write(absl::string_view bytes) {
  if (impl_ == nullptr) return absl::FailedPreconditionError("the compressor is spent");
  absl::Status status = impl_->Write(bytes);
  if (!status.ok()) impl_.reset();
  return status;
}

absl::Status LayerCompressor::Finish() {
  if (impl_ == nullptr) return absl::FailedPreconditionError("the compressor is spent");
  absl::Status status = impl_->Finish();
  impl_.reset();
  return status;
}

// -------------------------------------------------------------- CompressLayers

absl::StatusOr<std::vector<Descriptor>> CompressLayers(cas::BlobStore& store,
                                                       absl::Span<const Descriptor> layers,
                                                       const CompressOptions& options) {
  return CompressPending(
      store, layers, options,
      [&](const Descriptor& layer, const Pending& pending, int level,
          const std::function<void(uint64_t)>& consumed) -> absl::StatusOr<CompressedBlob> {
        std::unique_ptr<cas::BlobWriter> writer = store.NewWriter();
        absl::StatusOr<CompressedBlob> blob =
            CompressOne(store, layer, level, options, consumed,
                        [&](absl::string_view bytes) { return writer->Write(bytes); });
        if (!blob.ok()) return blob.status();
        if (absl::Status status = writer->Commit(blob->first, pending.media_type); !status.ok()) {
          return status;
        }
        if (absl::Status status = store.PutCacheEntry(
                pending.key, absl::StrCat(blob->first.ToString(), " ", blob->second));
            !status.ok()) {
          return status;
        }
        return blob;
      });
}

absl::StatusOr<std::vector<Descriptor>> StreamCompressedLayers(cas::BlobStore& store,
                                                               absl::Span<const Descriptor> layers,
                                                               const CompressOptions& options,
                                                               const LayerBlobOutput& out) {
  absl::StatusOr<CompressionPlan> plan = PlanCompression(store, layers, options);
  if (!plan.ok()) return plan.status();
  const std::function<void(uint64_t)> consumed = ProgressOf(options, plan->total);
  std::set<size_t> repeated;
  for (const Repeat& repeat : plan->repeats) repeated.insert(repeat.index);
  auto next_pending = plan->pending.begin();
  std::set<digest::Digest> emitted;
  for (size_t i = 0; i < plan->result.size(); ++i) {
    Descriptor& layer = plan->result[i];
    if (repeated.count(i) > 0) continue;  // the same blob as a layer before it
    const bool compress = next_pending != plan->pending.end() && next_pending->index == i;
    if (!compress && emitted.count(layer.digest) > 0) continue;  // written already
    absl::Status status = out.begin(compress ? std::nullopt : std::optional<Descriptor>(layer));
    if (status.ok() && compress) {
      absl::StatusOr<CompressedBlob> blob =
          CompressOne(store, layer, plan->level, options, consumed, out.write);
      status = blob.status();
      if (blob.ok()) {
        layer.media_type = std::move(next_pending++->media_type);
        layer.digest = blob->first;
        layer.size = blob->second;
      }
    } else if (status.ok()) {
      status = CopyStored(store, layer, out.write);
    }
    if (status.ok()) status = out.end(layer);
    if (!status.ok()) return InLayer(layer.digest, status);
    emitted.insert(layer.digest);
  }
  return Resolved(*plan);
}

absl::StatusOr<StagedLayers> StageCompressedLayers(cas::BlobStore& store,
                                                   absl::Span<const Descriptor> layers,
                                                   const CompressOptions& options,
                                                   const std::filesystem::path& dir) {
  StagedLayers staged;
  absl::StatusOr<std::vector<Descriptor>> result = CompressPending(
      store, layers, options,
      [&](const Descriptor& layer, const Pending&, int level,
          const std::function<void(uint64_t)>& consumed) -> absl::StatusOr<CompressedBlob> {
        absl::StatusOr<CompressedBlob> blob =
            CompressToFile(store, layer, level, options, consumed, dir);
        if (blob.ok()) staged.files.push_back(blob->first);
        return blob;
      });
  if (!result.ok()) return result.status();
  staged.layers = *std::move(result);
  return staged;
}

}  // namespace stagefarm::oci
