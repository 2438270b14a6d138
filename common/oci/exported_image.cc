#include "common/oci/exported_image.h"

#include <utility>
#include <vector>

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

}  // namespace stagefarm::oci
