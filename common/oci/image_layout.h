// Manifests, indexes and their export: an OCI image layout as a directory
// or a tar (`--output type=oci`), and a docker archive (`type=docker`), with
// every blob read from a cas::BlobStore by digest.
//
// The JSON documents are written in Go struct field order, compact, with Go's
// escaping (as BuildKit's exporter writes them), so the same image always has
// the same manifest digest.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/cas/blob_store.h"
#include "common/digest/digest.h"
#include "common/oci/image.h"
#include "common/oci/media_types.h"

namespace stagefarm::oci {

inline constexpr absl::string_view kManifestMediaType =
    "application/vnd.oci.image.manifest.v1+json";
inline constexpr absl::string_view kIndexMediaType = "application/vnd.oci.image.index.v1+json";
inline constexpr absl::string_view kRefNameAnnotation = "org.opencontainers.image.ref.name";

// An OCI content descriptor.
struct Descriptor {
  std::string media_type;
  digest::Digest digest;
  uint64_t size = 0;
  std::map<std::string, std::string> annotations;

  bool operator==(const Descriptor&) const = default;
};

// An image as a build uses it: a stage's result, a base image, or what a
// COPY --from names. The layers are blobs in a content store, bottom first,
// one per config.diff_ids entry.
struct BuiltImage {
  ImageConfig config;
  std::vector<Descriptor> layers;
};

// The manifest of an image: schemaVersion 2, the OCI manifest media type,
// the config and the layers (compressed blobs, bottom first).
std::string SerializeManifest(const Descriptor& config, absl::Span<const Descriptor> layers);

// An index listing `manifests`.
std::string SerializeIndex(absl::Span<const Descriptor> manifests);

// One image to export.
struct LayoutImage {
  Descriptor manifest;  // annotated with kRefNameAnnotation when it has a ref name
  Descriptor config;
  std::vector<Descriptor> layers;
  std::vector<std::string> repo_tags;  // docker archive: "name:tag"
};

// Serialises `config` and its manifest over `layers`, stores both blobs in
// `store` (the layers must be stored already) and describes the image.
// `ref_name` ("latest", "v1") annotates the manifest descriptor when not
// empty. Returns the store's error when a put fails.
absl::StatusOr<LayoutImage> StoreImage(cas::BlobStore& store, const ImageConfig& config,
                                       std::vector<Descriptor> layers,
                                       absl::string_view ref_name = "",
                                       std::vector<std::string> repo_tags = {});

// Blobs kept as files instead of in the store (StageCompressedLayers' output):
// `dir`/<hex> for each of `digests`. The layout writers read these from there,
// checking the descriptor's size.
struct BlobFiles {
  std::filesystem::path dir;
  std::vector<digest::Digest> digests;

  // The file holding `blob`, if it is one of these.
  std::optional<std::filesystem::path> Find(const digest::Digest& blob) const;
};

// Writes an OCI image layout into `dir` (created if missing): oci-layout,
// blobs/sha256/<hex> for every manifest, config and layer, then index.json
// (last, so an interrupted export has no index). NotFound naming the digest
// when a blob is not in the store; the filesystem's error with the path.
absl::Status WriteOciLayoutDir(cas::BlobStore& store, absl::Span<const LayoutImage> images,
                               const std::filesystem::path& dir, const BlobFiles& files = {});

// Writes the same layout as one tar file at `path`, deterministically:
// entries sorted by name (directories included), mtime 0, uid/gid 0 without
// names, mode 0644 for files and 0755 for directories. `docker_archive` adds
// the docker-archive manifest.json ([{"Config", "RepoTags", "Layers"}] with
// blob paths), which `docker load` reads. Errors as WriteOciLayoutDir's.
absl::Status WriteImageTar(cas::BlobStore& store, absl::Span<const LayoutImage> images,
                           const std::filesystem::path& path, bool docker_archive,
                           const BlobFiles& files = {});

}  // namespace stagefarm::oci
