// `stagefarm build --build-context NAME=VALUE`, read as buildx reads it:
// NAME is matched as BuildKit matches named contexts
// (graph::NamedContextName), VALUE is `docker-image://REF[@DIGEST]` or a
// local directory (relative to the working directory).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/command_line.h"
#include "common/build/build_definition.h"
#include "common/oci/image_ref.h"

namespace stagefarm::cli {

struct BuildContextFlag {
  std::string name;                    // graph::NamedContextName form
  std::string value;                   // as given, for messages
  std::optional<oci::ImageRef> image;  // docker-image://REF
  std::filesystem::path dir;           // otherwise: an existing directory
};

// Reads every --build-context value, in order. Errors are InvalidArgument
// (NotFound for a directory that does not exist) naming the flag and the
// value as given, for: no "=" ; an empty or invalid NAME (not a valid image
// reference, e.g. upper case); a NAME given twice (taken for a mistake
// rather than guessing which value was meant); an empty VALUE; a
// docker-image:// reference that does not parse; a scheme stagefarm does
// not build from (oci-layout://, target:, git and http(s) URLs, any other
// "SCHEME://"); a path that is missing or not a directory.
absl::StatusOr<std::vector<BuildContextFlag>> ParseBuildContexts(
    const std::vector<std::string>& values);

// The flag, as `build` and `plan` take it.
FlagSpec BuildContextFlagSpec();

// The contexts as a build names them, in the flags' order; a directory's
// index (`context`) is left for the caller to fill in.
std::vector<build::NamedContext> NamedContextsOf(const std::vector<BuildContextFlag>& contexts);

}  // namespace stagefarm::cli
