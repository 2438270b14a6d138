// gzip members and zstd frames written by zlib and libzstd: encoders
// independent of the decoders under test (common/oci/layer_decompress.h).
#ifndef STAGEFARM_TESTS_TESTING_COMPRESSED_BLOBS_H_
#define STAGEFARM_TESTS_TESTING_COMPRESSED_BLOBS_H_

#include <string>

#include "absl/strings/string_view.h"

namespace stagefarm::testing {

// Optional gzip header fields (empty: absent).
struct GzipFields {
  std::string extra = {};
  std::string name = {};
  std::string comment = {};
  bool header_crc = false;
};

// One gzip member of `data` at zlib's `level`, with `fields` in its header
// when given. Aborts if zlib fails.
std::string GzipMember(absl::string_view data, int level = 6, const GzipFields* fields = nullptr);

// One zstd frame of `data` at level 3, with a content checksum. Aborts if
// libzstd fails.
std::string ZstdFrame(absl::string_view data);

}  // namespace stagefarm::testing

#endif  // STAGEFARM_TESTS_TESTING_COMPRESSED_BLOBS_H_
