// A local image as it leaves the node (`image export`, `image push`): its
// uncompressed layers compressed as `--output type=oci` compresses them, so
// every way out gives the same manifest digest for the same compression.
#pragma once

#include <filesystem>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
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

// Where WriteExport writes an image.
struct ExportDestination {
  std::filesystem::path path;
  bool directory = false;       // an OCI layout directory (WriteOciLayoutDir); else a tar
  bool docker_archive = false;  // a tar with docker's manifest.json too (WriteImageTar)
};

// Writes `image` to every destination with its uncompressed layers
// compressed as `options` asks: the same image PrepareExport makes (the same
// manifest, byte for byte), but the layers the cache index does not know are
// compressed once and not into the store. To a single tar (a regular file or
// a new path) they are compressed straight into it, each blob's header
// written after its bytes (ImageTarWriter); otherwise into files
// (StageCompressedLayers): into the first directory destination's
// blobs/sha256, else into a staging directory beside the first tar
// (".<name>.staging", removed afterwards), and copied from there. Only the
// new manifest is stored. The returned image keeps `image`'s manifest
// annotations and repo tags. A failed export to a single tar removes it.
// Errors are StageCompressedLayers' (or StreamCompressedLayers'), the
// store's and the layout writers'.
absl::StatusOr<LayoutImage> WriteExport(cas::BlobStore& store, const LayoutImage& image,
                                        const CompressOptions& options,
                                        absl::Span<const ExportDestination> destinations);

}  // namespace stagefarm::oci
