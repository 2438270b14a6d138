// Image references as docker/distribution's `reference` package reads them:
// `golang:1.16` is docker.io/library/golang:1.16, `busybox` is
// docker.io/library/busybox:latest, `localhost:5000/x` keeps its registry.
#pragma once

#include <compare>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stagefarm::oci {

// A normalised reference to an image in a registry. Two references to the
// same image compare equal whatever short form they were written in.
struct ImageRef {
  std::string domain;  // "docker.io", "ghcr.io", "localhost:5000", "[::1]:5000"
  std::string path;    // "library/golang", "x/y"; lower-case components
  std::string tag;     // "1.16"; empty when the reference has only a digest
  std::string digest;  // "sha256:<64 hex>"; empty when not given

  // "domain/path".
  std::string Name() const;
  // "domain/path[:tag][@digest]", the reference's String().
  std::string String() const;

  auto operator<=>(const ImageRef&) const = default;
};

// Parses `ref` as the reference package's ParseNormalizedNamed followed by
// TagNameOnly, which is how BuildKit reads `FROM` and `COPY --from` images:
//   - a first component holding '.' or ':', equal to "localhost", or with an
//     upper-case letter is the registry; otherwise the registry is docker.io;
//   - index.docker.io is docker.io, and a one-component Docker Hub path gains
//     "library/";
//   - without a tag or digest the tag is "latest".
// Returns InvalidArgument with the reference package's message for input it
// rejects: "invalid reference format", "invalid reference format: repository
// name (library/Foo) must be lowercase", "invalid repository name (...), cannot specify 64-byte
// hexadecimal strings", "repository name must not be more than 255
// characters", "invalid checksum digest format", "invalid checksum digest
// length", "unsupported digest algorithm".
absl::StatusOr<ImageRef> ParseImageRef(absl::string_view ref);

}  // namespace stagefarm::oci
