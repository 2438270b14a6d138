#include "common/oci/exported_image.h"

#include <algorithm>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace stagefarm::oci {

absl::StatusOr<ExportedImage> PrepareExport(cas::BlobStore& store, const LocalImage& image,
                                            const CompressOptions& options) {
  absl::StatusOr<std::vector<Descriptor>> layers = CompressLayers(store, image.layers, options);
  if (!layers.ok()) return layers.status();
  if (*layers == image.layers) {
    absl::StatusOr<std::string> stored = store.ReadAll(image.manifest.digest);
    if (!stored.ok()) return stored.status();
    return ExportedImage{LayoutImage{image.manifest, image.config_descriptor, image.layers, {}},
                         *std::move(stored)};
  }
  std::string manifest = SerializeManifest(image.config_descriptor, *layers);
  Descriptor descriptor{
      std::string(kManifestMediaType), digest::Sha256Of(manifest), manifest.size(), {}};
  if (absl::Status status = store.Put(manifest, descriptor.digest, kManifestMediaType);
      !status.ok()) {
    return status;
  }
  return ExportedImage{
      LayoutImage{std::move(descriptor), image.config_descriptor, *std::move(layers), {}},
      std::move(manifest)};
}

absl::StatusOr<LayoutImage> WriteExport(cas::BlobStore& store, const LayoutImage& image,
                                        const CompressOptions& options,
                                        absl::Span<const ExportDestination> destinations) {
  if (destinations.empty()) return absl::InvalidArgumentError("an export needs a destination");
  namespace stdfs = std::filesystem;
  std::error_code error;
  BlobFiles files;
  const auto directory =
      std::find_if(destinations.begin(), destinations.end(),
                   [](const ExportDestination& destination) { return destination.directory; });
  // Removes the staging directory beside a tar, whatever happens.
  struct Staging {
    stdfs::path dir;
    ~Staging() {
      std::error_code ignored;
      if (!dir.empty()) stdfs::remove_all(dir, ignored);
    }
  } staging;
  if (directory != destinations.end()) {
    files.dir = directory->path / "blobs" / "sha256";
    stdfs::create_directories(files.dir, error);
  } else {
    const stdfs::path& tar = destinations.front().path;
    files.dir = tar.parent_path() / absl::StrCat(".", tar.filename().string(), ".staging");
    stdfs::remove_all(files.dir, error);
    if (!error) stdfs::create_directory(files.dir, error);
    if (!error) staging.dir = files.dir;
  }
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot create ", files.dir.string(), ": ", error.message()));
  }
  absl::StatusOr<StagedLayers> staged =
      StageCompressedLayers(store, image.layers, options, files.dir);
  if (!staged.ok()) return staged.status();
  files.digests = std::move(staged->files);
  LayoutImage exported = image;
  if (staged->layers != image.layers) {
    std::string manifest = SerializeManifest(image.config, staged->layers);
    exported.manifest.media_type = std::string(kManifestMediaType);
    exported.manifest.digest = digest::Sha256Of(manifest);
    exported.manifest.size = manifest.size();
    exported.layers = std::move(staged->layers);
    if (absl::Status status = store.Put(manifest, exported.manifest.digest, kManifestMediaType);
        !status.ok()) {
      return status;
    }
  }
  for (const ExportDestination& destination : destinations) {
    absl::Status written =
        destination.directory
            ? WriteOciLayoutDir(store, {exported}, destination.path, files)
            : WriteImageTar(store, {exported}, destination.path, destination.docker_archive, files);
    if (!written.ok()) return written;
  }
  return exported;
}

}  // namespace stagefarm::oci
