// A local image as it leaves the node (`image export`, `image push`): its
// uncompressed layers compressed as `--output type=oci` compresses them, so
// every way out gives the same manifest digest for the same compression.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "common/cas/blob_store.h"
#include "common/oci/image_layout.h"
#include "common/oci/layer_compress.h"
#include "common/oci/local_images.h"

namespace stagefarm::oci {

struct ExportedImage {
  LayoutImage layout;    // manifest, config and layers, all in the store
  std::string manifest;  // the manifest's bytes
};

// Compresses `image`'s uncompressed layers with CompressLayers(options).
// When none needed it, the image is its stored manifest, byte for byte (a
// pulled image keeps its digest, whatever media types it has); otherwise a
// new OCI manifest over the compressed layers and the same config, stored in
// `store`. Errors are CompressLayers' and the store's.
absl::StatusOr<ExportedImage> PrepareExport(cas::BlobStore& store, const LocalImage& image,
                                            const CompressOptions& options);

}  // namespace stagefarm::oci
