// Image manifests and indexes as they arrive from outside (an OCI layout, a
// registry): OCI and Docker schema 2 media types, parsed from untrusted JSON.
// What stagefarm writes is in image_layout.h.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/oci/image_layout.h"
#include "common/oci/platform.h"

namespace stagefarm::oci {

inline constexpr absl::string_view kDockerManifestMediaType =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr absl::string_view kDockerManifestListMediaType =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr absl::string_view kDockerConfigMediaType =
    "application/vnd.docker.container.image.v1+json";
inline constexpr absl::string_view kDockerLayerMediaType =
    "application/vnd.docker.image.rootfs.diff.tar.gzip";

// An OCI image manifest or a Docker schema 2 manifest.
bool IsManifestMediaType(absl::string_view type);
// An OCI image index or a Docker manifest list.
bool IsIndexMediaType(absl::string_view type);
// A layer type stagefarm can unpack: OCI tar (plain, +gzip, +zstd), Docker's tar.gzip.
bool IsLayerMediaType(absl::string_view type);

// A descriptor with its platform (index entries have one).
struct PlatformDescriptor {
  Descriptor descriptor;
  std::optional<Platform> platform;
};

// An image manifest: OCI, or Docker's schema 2, which has the same shape.
struct Manifest {
  std::string media_type;
  Descriptor config;
  std::vector<Descriptor> layers;
};

// Parses an image manifest. InvalidArgument prefixed with `what` naming the
// field for malformed JSON, an index given where a manifest is expected, or a
// manifest, config or layer media type stagefarm does not read. A missing
// mediaType is the OCI manifest's.
absl::StatusOr<Manifest> ParseManifest(absl::string_view text, absl::string_view what);

// Parses an index's (or manifest list's) "manifests". InvalidArgument
// prefixed with `what` naming the entry that is malformed.
absl::StatusOr<std::vector<PlatformDescriptor>> ParseIndex(absl::string_view text,
                                                           absl::string_view what);

}  // namespace stagefarm::oci
