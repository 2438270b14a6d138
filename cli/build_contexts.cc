#include "cli/build_contexts.h"

#include <string>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/graph/stage_graph.h"

namespace stagefarm::cli {
namespace {

namespace stdfs = std::filesystem;

constexpr absl::string_view kImageScheme = "docker-image://";
constexpr absl::string_view kSupported =
    "(supported: a local directory or docker-image://REF[@DIGEST])";

// What buildx would read as something other than a local directory, by its
// prefix: these name sources stagefarm does not build from.
absl::string_view UnsupportedKind(absl::string_view value) {
  if (absl::StartsWith(value, "oci-layout://")) return "an OCI layout";
  if (absl::StartsWith(value, "target:")) return "a bake target";
  if (absl::StartsWith(value, "git@") || absl::StartsWith(value, "git://") ||
      absl::StartsWith(value, "ssh://")) {
    return "a git repository";
  }
  if (absl::StartsWith(value, "http://") || absl::StartsWith(value, "https://")) return "a URL";
  if (absl::StrContains(value, "://")) return "an unknown scheme";
  return "";
}

}  // namespace

absl::StatusOr<std::vector<BuildContextFlag>> ParseBuildContexts(
    const std::vector<std::string>& values) {
  std::vector<BuildContextFlag> contexts;
  for (const std::string& given : values) {
    const std::string shown = absl::StrCat("--build-context ", given);
    const size_t eq = given.find('=');
    if (eq == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(shown, ": expected NAME=VALUE (a directory or docker-image://REF)"));
    }
    const absl::string_view raw_name = absl::string_view(given).substr(0, eq);
    if (raw_name.empty()) return absl::InvalidArgumentError(absl::StrCat(shown, ": empty name"));
    absl::StatusOr<std::string> name = graph::NamedContextName(raw_name);
    if (!name.ok())
      return absl::InvalidArgumentError(absl::StrCat(shown, ": ", name.status().message()));
    for (const BuildContextFlag& earlier : contexts) {
      if (earlier.name == *name) {
        return absl::InvalidArgumentError(absl::StrCat(
            shown, ": context ", *name, " is already given (--build-context ", earlier.value, ")"));
      }
    }
    BuildContextFlag context;
    context.name = *std::move(name);
    context.value = given;
    const absl::string_view value = absl::string_view(given).substr(eq + 1);
    if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(shown, ": empty value"));
    if (absl::StartsWith(value, kImageScheme)) {
      absl::StatusOr<oci::ImageRef> ref = oci::ParseImageRef(value.substr(kImageScheme.size()));
      if (!ref.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(shown, ": ", ref.status().message()));
      }
      context.image = *std::move(ref);
    } else if (absl::string_view kind = UnsupportedKind(value); !kind.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(shown, ": ", kind, " is not supported as a build context ", kSupported));
    } else {
      std::error_code error;
      const stdfs::file_status status = stdfs::status(stdfs::path(std::string(value)), error);
      if (error || !stdfs::exists(status)) {
        return absl::NotFoundError(
            absl::StrCat(shown, ": ", value, ": no such directory ", kSupported));
      }
      if (!stdfs::is_directory(status)) {
        return absl::InvalidArgumentError(
            absl::StrCat(shown, ": ", value, ": not a directory ", kSupported));
      }
      context.dir = stdfs::path(std::string(value));
    }
    contexts.push_back(std::move(context));
  }
  return contexts;
}

FlagSpec BuildContextFlagSpec() {
  return {"build-context", "", true, true,
          "an additional named context (NAME=DIR or NAME=docker-image://REF), for FROM NAME, "
          "COPY --from=NAME and RUN --mount=from=NAME"};
}

std::vector<build::NamedContext> NamedContextsOf(const std::vector<BuildContextFlag>& contexts) {
  std::vector<build::NamedContext> named;
  for (const BuildContextFlag& context : contexts) {
    build::NamedContext out;
    out.name = context.name;
    out.image = context.image;
    out.dir = context.dir;
    named.push_back(std::move(out));
  }
  return named;
}

}  // namespace stagefarm::cli
