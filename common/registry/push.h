// `stagefarm image push` and `build --push`: a local image to a registry.
#pragma once

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "common/cas/blob_store.h"
#include "common/digest/digest.h"
#include "common/oci/image_ref.h"
#include "common/oci/layer_compress.h"
#include "common/oci/local_images.h"
#include "common/registry/registry_client.h"

namespace stagefarm::registry {

struct PushOptions {
  // How uncompressed layers are compressed before they go up: as
  // `--output type=oci` compresses them (oci::CompressLayers, gzip at its
  // default level unless said otherwise), so the pushed manifest is the one
  // an OCI export of the image would hold.
  oci::CompressOptions compress;
  // The local name the image is pushed from, if any: a blob with no
  // recorded source is mounted from this repository when it is on the same
  // registry as the target.
  std::optional<oci::ImageRef> source;
};

struct PushResult {
  digest::Digest manifest;  // the pushed manifest's digest
  uint64_t manifest_size = 0;
  std::string media_type;     // the pushed manifest's
  size_t blobs_uploaded = 0;  // layers and config
  size_t blobs_mounted = 0;   // cross-repository mounts
  size_t blobs_present = 0;   // the repository had them
  uint64_t bytes_uploaded = 0;
};

// Pushes `image` (from `store`) to `target` (name:tag) through `client` (a
// client of target.domain): compresses its uncompressed layers as
// options.compress says, then for each layer and the config asks whether
// the repository has it (HEAD), else mounts it from the repository it was
// pulled from or pushed to on the same registry (or options.source's), else
// uploads it (one PUT, or PATCH chunks above the client's chunk size), and
// finally PUTs the manifest under the tag. A manifest whose layers needed no
// compressing goes up byte for byte (a pulled image keeps its digest);
// otherwise the OCI manifest over the compressed layers is stored locally
// and pushed. The registry's Docker-Content-Digest must be that manifest's
// digest. Errors are prefixed "push TARGET: " and name the blob and the
// registry's status.
absl::StatusOr<PushResult> PushImage(RegistryClient& client, cas::BlobStore& store,
                                     const oci::LocalImage& image, const oci::ImageRef& target,
                                     const PushOptions& options);

}  // namespace stagefarm::registry
