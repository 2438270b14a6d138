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

namespace {

namespace stdfs = std::filesystem;

// `image` over `layers` (its layers as exported): itself when they are its
// own, else with a new OCI manifest, which is stored.
absl::StatusOr<LayoutImage> OverLayers(cas::BlobStore& store, const LayoutImage& image,
                                       std::vector<Descriptor> layers) {
  LayoutImage exported = image;
  if (layers == image.layers) return exported;
  std::string manifest = SerializeManifest(image.config, layers);
  exported.manifest.media_type = std::string(kManifestMediaType);
  exported.manifest.digest = digest::Sha256Of(manifest);
  exported.manifest.size = manifest.size();
  exported.layers = std::move(layers);
  if (absl::Status status = store.Put(manifest, exported.manifest.digest, kManifestMediaType);
      !status.ok()) {
    return status;
  }
  return exported;
}

// Whether `path` is a regular file or nothing yet: a tar the layers can be
// compressed straight into (ImageTarWriter seeks back in it).
bool SeekableTar(const stdfs::path& path) {
  std::error_code error;
  const stdfs::file_status status = stdfs::status(path, error);
  return status.type() == stdfs::file_type::not_found || status.type() == stdfs::file_type::regular;
}

// The export to one tar: each layer compressed straight into it, the
// header of a blob written after its bytes. A failed export removes the tar.
absl::StatusOr<LayoutImage> WriteTarCompressing(cas::BlobStore& store, const LayoutImage& image,
                                                const CompressOptions& options,
                                                const ExportDestination& destination) {
  absl::StatusOr<std::unique_ptr<ImageTarWriter>> tar = ImageTarWriter::Open(destination.path);
  if (!tar.ok()) return tar.status();
  // From here on the tar is this export's.
  struct Partial {
    const stdfs::path& path;
    bool done = false;
    ~Partial() {
      std::error_code ignored;
      if (!done) stdfs::remove(path, ignored);
    }
  } partial{destination.path};
  ImageTarWriter& writer = **tar;
  const LayerBlobOutput out{
      [&](const std::optional<Descriptor>& known) { return writer.BeginBlob(known); },
      [&](absl::string_view bytes) { return writer.WriteBlob(bytes); },
      [&](const Descriptor& blob) { return writer.EndBlob(blob); }};
  absl::StatusOr<std::vector<Descriptor>> layers =
      StreamCompressedLayers(store, image.layers, options, out);
  if (!layers.ok()) return layers.status();
  absl::StatusOr<LayoutImage> exported = OverLayers(store, image, *std::move(layers));
  if (!exported.ok()) return exported.status();
  if (absl::Status status = writer.Finish(store, {*exported}, destination.docker_archive);
      !status.ok()) {
    return status;
  }
  partial.done = true;
  return exported;
}

}  // namespace

absl::StatusOr<LayoutImage> WriteExport(cas::BlobStore& store, const LayoutImage& image,
                                        const CompressOptions& options,
                                        absl::Span<const ExportDestination> destinations) {
  if (destinations.empty()) return absl::InvalidArgumentError("an export needs a destination");
  if (destinations.size() == 1 && !destinations[0].directory && SeekableTar(destinations[0].path)) {
    return WriteTarCompressing(store, image, options, destinations[0]);
  }
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
  absl::StatusOr<LayoutImage> exported = OverLayers(store, image, std::move(staged->layers));
  if (!exported.ok()) return exported.status();
  for (const ExportDestination& destination : destinations) {
    absl::Status written = destination.directory
                               ? WriteOciLayoutDir(store, {*exported}, destination.path, files)
                               : WriteImageTar(store, {*exported}, destination.path,
                                               destination.docker_archive, files);
    if (!written.ok()) return written;
  }
  return exported;
}

}  // namespace stagefarm::oci
