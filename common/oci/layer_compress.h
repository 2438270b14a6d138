// Compressing layers for export: build steps store layer tars uncompressed
// (blob digest = diff id, as BuildKit's snapshotter keeps them), so
// compression is off a build's critical path and happens here, when an image
// is exported or pushed, on every core.
//
// gzip is pigz-style (level 1 deflates with Intel ISA-L's igzip, the other
// levels with zlib): the input is cut into kGzipBlockSize blocks, each
// deflated by a worker with the previous block's last 32 KiB as dictionary and
// ended with a sync flush (the last one with Z_FINISH), the pieces
// concatenated in order into ONE standard gzip member whose CRC-32 is combined
// from the blocks' (crc32_combine). The header is the one Go's compress/gzip
// (and so BuildKit) writes: no name, mtime 0, XFL 4 at level 1 and 2 at level
// 9 (else 0), OS 255 ("unknown"). The output depends only on the input bytes
// and the level: not on the thread count, nor on how Write calls cut the input.
//
// zstd is libzstd's multithreaded streaming compression (ZSTD_c_nbWorkers),
// with a content checksum. Its output depends on whether nbWorkers is 0 or not,
// never on the number of workers beyond that, so the compressor always uses at
// least one worker (threads = 1 gives one worker thread beside the caller):
// same input and level, same bytes, whatever the thread count. If libzstd is
// built without multithreading, the output is single-threaded zstd, which is
// also deterministic but differs from the multithreaded bytes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/cas/blob_store.h"
#include "common/oci/image_layout.h"
#include "common/oci/media_types.h"

namespace stagefarm::oci {

// gzip's default level. BuildKit's default is Go's gzip.DefaultCompression
// (level 6), which zlib deflates at about 33 MB/s a core: 2 cores cannot reach
// the 150 MB/s an export needs. Level 1 is ISA-L's igzip: about 400 MB/s a
// core, for about 5% more output than level 6 on layer-like data
// (docs/BENCHMARKS.md, "Layer compression for export" and "Export").
inline constexpr int kDefaultGzipLevel = 1;
// zstd's default level: the zstd CLI's, and what BuildKit's zstd encoder's
// default (klauspost SpeedDefault) corresponds to.
inline constexpr int kDefaultZstdLevel = 3;
// Input bytes per parallel gzip block.
inline constexpr uint64_t kGzipBlockSize = uint64_t{1} << 20;

// The level used when none is given: kDefaultGzipLevel or kDefaultZstdLevel
// (0 for kNone).
int DefaultLevel(LayerCompression compression);

// Compresses one byte stream, handing the compressed bytes to a sink in order.
// Holds at most 4 * threads gzip blocks (input and output; 8 MiB a thread), or libzstd's
// per-worker buffers, whatever the stream's length. Used by one thread at a
// time; the sink is called only from Write and Finish, on the caller's thread.
class LayerCompressor {
 public:
  using Sink = std::function<absl::Status(absl::string_view)>;

  // A compressor of `compression` (kGzip or kZstd) at `level` (nullopt: the
  // default), running `threads` workers (0: one per hardware thread).
  // InvalidArgument for kNone or a level out of range (gzip 0..9, zstd
  // ZSTD_minCLevel()..ZSTD_maxCLevel()); ResourceExhausted if the library
  // cannot allocate its state.
  static absl::StatusOr<std::unique_ptr<LayerCompressor>> Create(LayerCompression compression,
                                                                 std::optional<int> level,
                                                                 int threads, Sink sink);
  ~LayerCompressor();
  LayerCompressor(const LayerCompressor&) = delete;
  LayerCompressor& operator=(const LayerCompressor&) = delete;

  // Compresses `bytes` (possibly later: output lags input by up to the
  // buffered blocks). A library or sink error spends the compressor: it is
  // returned, and later calls return FailedPrecondition.
  absl::Status Write(absl::string_view bytes);
  // Compresses what is buffered and writes the end of the stream. Call once.
  absl::Status Finish();

  class Impl;

 private:
  explicit LayerCompressor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct CompressOptions {
  LayerCompression compression = LayerCompression::kGzip;
  std::optional<int> level;  // nullopt: DefaultLevel(compression)
  int threads = 0;           // 0: one per hardware thread
  // Called as uncompressed bytes are consumed: bytes done and total, over the
  // layers this call actually compresses (not those found compressed in the
  // store's cache index). Never called when nothing needs compressing.
  std::function<void(uint64_t done, uint64_t total)> on_progress;
};

// Compresses the uncompressed layers among `layers` (media type
// "application/vnd.oci.image.layer.v1.tar" or docker's
// "application/vnd.docker.image.rootfs.diff.tar"), reading each from `store`
// and storing the compressed blob there, and returns the layers in order with
// those replaced by the compressed blobs' descriptors (the same family of
// media type: OCI "+gzip"/"+zstd", docker ".gzip"/".zstd"; annotations
// kept). Other layers (already compressed, or foreign) come back unchanged,
// and so do all layers for kNone.
//
// A layer is compressed once per compression and level: the result is
// remembered in the store's cache index under
// "compressed/v1/<gzip|zstd>-<level>/<diff id>" -> "<digest> <size>", and
// reused while that blob is still stored.
//
// Errors name the layer's digest: NotFound if it is not stored,
// InvalidArgument if its stored size is not the descriptor's, DataLoss if a
// chunk of it is corrupt, and the store's error if a put fails. Layers
// compressed before an error stay stored and remembered.
absl::StatusOr<std::vector<Descriptor>> CompressLayers(cas::BlobStore& store,
                                                       absl::Span<const Descriptor> layers,
                                                       const CompressOptions& options);

struct StagedLayers {
  std::vector<Descriptor> layers;     // as CompressLayers returns them
  std::vector<digest::Digest> files;  // the blobs written to the staging dir
};

// CompressLayers for a one-time export: the layers the cache index does not
// already know are compressed into files in `dir` (which must exist), each
// named by its blob's hex digest, and are neither stored nor remembered. This
// spares the store's put and the read back (docs/BENCHMARKS.md, "Export"):
// compression is deterministic, so compressing again later gives the same
// blob. Layers the cache index knows stay in the store (`files` does not list
// them). A partial file (".partial-<diff id hex>") is removed on error. The
// errors of CompressLayers, and the file system's naming the path.
absl::StatusOr<StagedLayers> StageCompressedLayers(cas::BlobStore& store,
                                                   absl::Span<const Descriptor> layers,
                                                   const CompressOptions& options,
                                                   const std::filesystem::path& dir);

// Where StreamCompressedLayers puts each blob.
struct LayerBlobOutput {
  // Before a blob's bytes: its descriptor when known beforehand (a layer
  // that needs no compressing, or one the cache index knows), nullopt for a
  // layer being compressed.
  std::function<absl::Status(const std::optional<Descriptor>& known)> begin;
  LayerCompressor::Sink write;
  // After its bytes, with its descriptor.
  std::function<absl::Status(const Descriptor& blob)> end;
};

// CompressLayers for an export written as it goes: every blob of the result
// is handed to `out` in layer order, each once (a blob that comes twice is
// written the first time). Layers that need no compressing and those the
// cache index knows are read from the store; the others are compressed into
// `out` and neither stored nor remembered, as StageCompressedLayers does.
// Errors name the layer's digest: CompressLayers' and `out`'s.
absl::StatusOr<std::vector<Descriptor>> StreamCompressedLayers(cas::BlobStore& store,
                                                               absl::Span<const Descriptor> layers,
                                                               const CompressOptions& options,
                                                               const LayerBlobOutput& out);

}  // namespace stagefarm::oci
