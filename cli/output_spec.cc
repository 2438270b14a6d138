#include "cli/output_spec.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace stagefarm::cli {

absl::StatusOr<OutputSpec> ParseOutput(absl::string_view value) {
  OutputSpec spec;
  std::string dest;
  for (absl::string_view field : absl::StrSplit(value, ',')) {
    const size_t eq = field.find('=');
    if (eq == absl::string_view::npos) {
      // buildx: `-o DIR` alone means type=local,dest=DIR.
      return absl::InvalidArgumentError(absl::StrCat(
          "--output \"", value, "\": expected KEY=VALUE fields such as type=oci,dest=PATH"));
    }
    const std::string key = absl::AsciiStrToLower(field.substr(0, eq));
    const std::string val(field.substr(eq + 1));
    if (key == "type") {
      spec.type = val;
    } else if (key == "dest") {
      dest = val;
    } else if (key == "name") {
      spec.name = val;
    } else if (key == "compression") {
      if (val == "gzip") {
        spec.compression = oci::LayerCompression::kGzip;
      } else if (val == "zstd") {
        spec.compression = oci::LayerCompression::kZstd;
      } else if (val == "uncompressed") {
        spec.compression = oci::LayerCompression::kNone;
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "--output: compression must be gzip, zstd or uncompressed, not \"", val, "\""));
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--output: unknown field \"", key,
                                                     "\" (known: type, dest, name, compression)"));
    }
  }
  if (spec.type == "registry") return spec;
  if (spec.type != "oci" && spec.type != "docker" && spec.type != "local") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--output: type must be oci, docker, local or registry, not \"", spec.type, "\""));
  }
  if (dest.empty()) return absl::InvalidArgumentError("--output: dest=PATH is required");
  spec.directory = absl::EndsWith(dest, "/");
  if (spec.directory && spec.type == "docker") {
    return absl::InvalidArgumentError("--output type=docker writes a tar: dest must be a file");
  }
  if (spec.type == "local" && spec.compression) {
    return absl::InvalidArgumentError("--output type=local writes files: no compression");
  }
  spec.dest = dest;
  return spec;
}

}  // namespace stagefarm::cli
