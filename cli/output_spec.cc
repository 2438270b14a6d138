#include "cli/output_spec.h"

#include <zstd.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace stagefarm::cli {
namespace {

absl::string_view CompressionName(oci::LayerCompression compression) {
  switch (compression) {
    case oci::LayerCompression::kGzip:
      return "gzip";
    case oci::LayerCompression::kZstd:
      return "zstd";
    case oci::LayerCompression::kNone:
      break;
  }
  return "uncompressed";
}

}  // namespace

absl::StatusOr<OutputSpec> ParseOutput(absl::string_view value) {
  OutputSpec spec;
  std::string dest;
  std::optional<std::string> level;  // checked once the compression is known
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
    } else if (key == "compression-level") {
      level = val;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--output: unknown field \"", key,
                       "\" (known: type, dest, name, compression, compression-level)"));
    }
  }
  if (level) {
    if (spec.type == "local") {
      return absl::InvalidArgumentError("--output type=local writes files: no compression-level");
    }
    // A level alone is a level of the default compression.
    if (!spec.compression) spec.compression = oci::LayerCompression::kGzip;
    absl::StatusOr<int> parsed =
        ParseCompressionLevel("--output: compression-level", *level, *spec.compression);
    if (!parsed.ok()) return parsed.status();
    spec.compression_level = *parsed;
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

absl::StatusOr<int> ParseCompressionLevel(absl::string_view what, absl::string_view value,
                                          oci::LayerCompression compression) {
  absl::string_view digits = value;
  absl::ConsumePrefix(&digits, "-");
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be an integer, not \"", value, "\""));
  }
  int min = 0;
  int max = 9;
  switch (compression) {
    case oci::LayerCompression::kNone:
      return absl::InvalidArgumentError(
          absl::StrCat(what, " is for gzip or zstd, not uncompressed layers"));
    case oci::LayerCompression::kGzip:
      break;
    case oci::LayerCompression::kZstd:
      min = ZSTD_minCLevel();
      max = ZSTD_maxCLevel();
      break;
  }
  int level = 0;
  // SimpleAtoi fails only on overflow here: too far out of range.
  if (!absl::SimpleAtoi(value, &level) || level < min || level > max) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", value, " is out of range for ",
                                                   CompressionName(compression), " (", min, "..",
                                                   max, ")"));
  }
  if (compression == oci::LayerCompression::kZstd && level == 0) return ZSTD_defaultCLevel();
  return level;
}

absl::StatusOr<oci::CompressOptions> CompressionOf(absl::Span<const OutputSpec> outputs) {
  oci::CompressOptions compress;
  compress.compression = oci::LayerCompression::kGzip;
  bool given = false;
  for (const OutputSpec& output : outputs) {
    if (!output.compression) continue;
    if (given && *output.compression != compress.compression) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--output: one output asks for compression=", CompressionName(compress.compression),
          ", another for compression=", CompressionName(*output.compression),
          "; the image's layers are compressed once, for every output"));
    }
    given = true;
    compress.compression = *output.compression;
    if (!output.compression_level) continue;
    if (compress.level && *output.compression_level != *compress.level) {
      return absl::InvalidArgumentError(
          absl::StrCat("--output: one output asks for compression-level=", *compress.level,
                       ", another for compression-level=", *output.compression_level,
                       "; the image's layers are compressed once, for every output"));
    }
    compress.level = output.compression_level;
  }
  return compress;
}

}  // namespace stagefarm::cli
