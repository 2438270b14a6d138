// Decompressing layer blobs as they stream past: gzip (inflated with ISA-L)
// and zstd, each read as one stream however many gzip members or zstd frames
// it holds, as containerd and Go's gzip reader read them.
//
// Every blob is hostile until checked: a gzip member's header (FEXTRA, FNAME,
// FCOMMENT, FHCRC included) is parsed here, byte by byte across pieces, and
// its CRC32 and ISIZE are checked; zstd frames are checked by libzstd (its
// content checksum when the frame has one, its window capped at libzstd's
// default of 128 MiB). Whatever the input, memory stays bounded and every
// call returns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/oci/media_types.h"

namespace stagefarm::oci {

// The compression a blob's first bytes name by their magic number: gzip
// (1f 8b), zstd (28 b5 2f fd), anything else (fewer than four bytes
// included) kNone, which is read as a plain tar.
LayerCompression DetectLayerCompression(absl::string_view first_bytes);

// One blob's decompression, a step at a time, into buffers the caller owns.
// Not safe for concurrent use.
class LayerDecompressor {
 public:
  // kNone copies the bytes unchanged.
  explicit LayerDecompressor(LayerCompression compression);
  ~LayerDecompressor();
  LayerDecompressor(const LayerDecompressor&) = delete;
  LayerDecompressor& operator=(const LayerDecompressor&) = delete;

  // Decompresses from the front of `*in` into `out`, removes from `*in` what
  // it consumed, and returns how many bytes it wrote to `out`. It stops when
  // `*in` is used up or `out` is full: call again while `*in` is not empty
  // or the last call filled `out` (decompressed bytes may still be pending).
  // DataLoss, saying what is wrong and at which byte of the blob, for a
  // corrupt stream (bad header, deflate data, CRC32 or ISIZE; zstd's
  // complaint) or bytes after the last member or frame that do not start
  // another; the decompressor is of no use after an error.
  absl::StatusOr<size_t> Decompress(absl::string_view* in, absl::Span<char> out);

  // Once the blob has been fed to the end and every decompressed byte taken:
  // DataLoss when the stream stops inside a gzip member or zstd frame.
  absl::Status Finish() const;

  LayerCompression compression() const { return compression_; }

  // Compressed bytes consumed so far.
  uint64_t consumed() const { return consumed_; }

 private:
  class Gzip;
  class Zstd;

  const LayerCompression compression_;
  uint64_t consumed_ = 0;
  std::unique_ptr<Gzip> gzip_;
  std::unique_ptr<Zstd> zstd_;
};

}  // namespace stagefarm::oci
