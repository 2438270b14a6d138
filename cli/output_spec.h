// One --output value as `docker buildx build -o` reads it:
// "type=oci,dest=out.tar[,compression=zstd][,compression-level=N]",
// type=docker, type=local (dest=DIR) and type=registry[,name=NAME]. Shared by
// `stagefarm build` and `stagefarm image export`; the level's parser also
// serves `stagefarm image push --compression-level`.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/oci/layer_compress.h"
#include "common/oci/media_types.h"

namespace stagefarm::cli {

struct OutputSpec {
  std::string type;  // "oci", "docker", "local" or "registry"
  std::filesystem::path dest;
  std::string name;        // type=registry: the name to push (default: every -t name)
  bool directory = false;  // oci: dest ended in "/", an OCI layout directory
  // compression=; kGzip also when only compression-level is given.
  std::optional<oci::LayerCompression> compression;
  // compression-level=, in range for `compression` (see ParseCompressionLevel).
  std::optional<int> compression_level{};
};

// Parses `value`. InvalidArgument, naming the field or value, for an unknown
// field or type, a missing dest (except for registry), a docker or local
// dest that cannot be one, a compression-level ParseCompressionLevel refuses
// (checked against gzip when no compression is given), or compression or
// compression-level on type=local.
absl::StatusOr<OutputSpec> ParseOutput(absl::string_view value);

// Reads `value` as a level of `compression`: a decimal integer (an optional
// "-" and digits, nothing else) in gzip's 0..9 or libzstd's
// ZSTD_minCLevel()..ZSTD_maxCLevel() (-131072..22; BuildKit documents 0..22).
// zstd's 0 is what libzstd makes of it, its default level, and comes back as
// that level (3), so that it names the same compressed blobs as no level.
// `what` names the value in errors: InvalidArgument
// "<what> must be an integer, not \"x\"",
// "<what> 10 is out of range for gzip (0..9)", or, for kNone,
// "<what> is for gzip or zstd, not uncompressed layers".
absl::StatusOr<int> ParseCompressionLevel(absl::string_view what, absl::string_view value,
                                          oci::LayerCompression compression);

// How a build compresses its image's layers, once for all `outputs`: the
// compression and level the outputs give (an output that gives none takes
// the others'), gzip at its default level when none gives one.
// InvalidArgument naming both values when two outputs give different
// compressions, or different levels.
absl::StatusOr<oci::CompressOptions> CompressionOf(absl::Span<const OutputSpec> outputs);

}  // namespace stagefarm::cli
