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
#include <memory>
#include <optional>
#include <set>
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

// Writes the same layout as one tar file at `path`, deterministically (an
// ImageTarWriter's order): "blobs/" and "blobs/sha256/", every image's layer
// blobs in manifest order (each blob once), the other blobs (configs,
// manifests) sorted by name, index.json, then with `docker_archive` the
// docker-archive manifest.json ([{"Config", "RepoTags", "Layers"}] with blob
// paths, which `docker load` reads), then oci-layout. ustar entries: mtime 0,
// uid/gid 0 without names, mode 0644 for files and 0755 for directories.
// Errors as WriteOciLayoutDir's.
absl::Status WriteImageTar(cas::BlobStore& store, absl::Span<const LayoutImage> images,
                           const std::filesystem::path& path, bool docker_archive,
                           const BlobFiles& files = {});

// Writes all of `bytes` to `fd` (the file at `path`, which errors name).
absl::Status WriteAll(int fd, absl::string_view bytes, const std::filesystem::path& path);

// WriteImageTar's writer, for a caller that makes layer blobs as it writes
// them (WriteExport compresses each layer straight into the tar): the
// header of a blob whose digest is not known until its end is written
// after its bytes, into the block kept for it. Needs `path` to be a regular
// file (it seeks back). Used by one thread.
class ImageTarWriter {
 public:
  // Creates (or truncates) `path` and writes the two directories.
  static absl::StatusOr<std::unique_ptr<ImageTarWriter>> Open(const std::filesystem::path& path);
  ~ImageTarWriter();
  ImageTarWriter(const ImageTarWriter&) = delete;
  ImageTarWriter& operator=(const ImageTarWriter&) = delete;

  // Whether the blob was written already.
  bool Has(const digest::Digest& blob) const;
  // One layer blob, in manifest order: BeginBlob (with its descriptor when
  // known beforehand, else nullopt), WriteBlob any number of times, EndBlob
  // with its descriptor, whose size must be the bytes written (and, when
  // known, whose digest must be the one begun with; the bytes themselves are
  // the caller's to have hashed).
  absl::Status BeginBlob(const std::optional<Descriptor>& known);
  absl::Status WriteBlob(absl::string_view bytes);
  absl::Status EndBlob(const Descriptor& blob);
  // One blob whose descriptor is known, copied from `files` or the store.
  absl::Status CopyBlob(cas::BlobStore& store, const Descriptor& blob, const BlobFiles& files = {});
  // The rest of `images` (the blobs not written yet, index.json,
  // manifest.json with `docker_archive`, oci-layout) and the end of the
  // archive; closes the file.
  absl::Status Finish(cas::BlobStore& store, absl::Span<const LayoutImage> images,
                      bool docker_archive, const BlobFiles& files = {});

 private:
  struct Pending;
  static constexpr size_t kWriteBlock = size_t{1} << 20;

  ImageTarWriter(int fd, std::filesystem::path path);
  absl::Status Append(absl::string_view bytes);
  absl::Status Flush();
  absl::Status Pad();
  absl::Status Entry(absl::string_view name, char type, unsigned mode, absl::string_view bytes);

  int fd_;
  std::filesystem::path path_;
  std::string buffer_;    // bytes not yet written, from offset flushed_
  uint64_t flushed_ = 0;  // bytes written to the file
  uint64_t offset_ = 0;   // bytes of the archive so far
  std::unique_ptr<Pending> pending_;
  std::set<std::string> written_;  // blob paths
};

}  // namespace stagefarm::oci
