// One --output value as `docker buildx build -o` reads it:
// "type=oci,dest=out.tar[,compression=zstd]", type=docker, type=local
// (dest=DIR) and type=registry[,name=NAME]. Shared by `stagefarm build` and
// `stagefarm image export`.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/oci/layer_compress.h"

namespace stagefarm::cli {

struct OutputSpec {
  std::string type;  // "oci", "docker", "local" or "registry"
  std::filesystem::path dest;
  std::string name;        // type=registry: the name to push (default: every -t name)
  bool directory = false;  // oci: dest ended in "/", an OCI layout directory
  std::optional<oci::LayerCompression> compression;
};

// Parses `value`. InvalidArgument, naming the field or value, for an unknown
// field or type, a missing dest (except for registry), a docker or local
// dest that cannot be one, or compression on type=local.
absl::StatusOr<OutputSpec> ParseOutput(absl::string_view value);

}  // namespace stagefarm::cli
