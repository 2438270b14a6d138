// The diff id of a layer blob (the digest of its uncompressed tar), computed
// while the blob streams past, whatever its compression: what an import
// checks every layer against the config's rootfs.diff_ids.
#pragma once

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/digest/digest.h"
#include "common/oci/media_types.h"

namespace stagefarm::oci {

// The compression is recognised by the blob's magic number (gzip, zstd;
// anything else is taken as a plain tar) and undone by LayerDecompressor:
// concatenated gzip members and zstd frames are read as one stream, each
// gzip member's CRC32 and ISIZE checked. Not safe for concurrent use.
class DiffIdHasher {
 public:
  DiffIdHasher();
  ~DiffIdHasher();
  DiffIdHasher(const DiffIdHasher&) = delete;
  DiffIdHasher& operator=(const DiffIdHasher&) = delete;

  // Feeds the blob's next bytes. DataLoss naming the decompressor's complaint
  // when the compressed stream is corrupt or followed by garbage; the hasher
  // is of no use after that.
  absl::Status Update(absl::string_view bytes);

  // The diff id, once every byte is fed. DataLoss when the compressed stream
  // is corrupt or ends early. Call once.
  absl::StatusOr<digest::Digest> Finish();

  // The compression found (kNone until four bytes are fed).
  LayerCompression compression() const;

 private:
  class Decoder;
  std::unique_ptr<Decoder> decoder_;
};

}  // namespace stagefarm::oci
