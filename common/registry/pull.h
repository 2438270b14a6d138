// `stagefarm image pull`: an image from a registry into the local store,
// recorded under its reference as `stagefarm image import` records one, so
// oci::ResolveImage (and so `FROM`) finds it.
#pragma once

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "common/cas/blob_store.h"
#include "common/oci/image_ref.h"
#include "common/oci/local_images.h"
#include "common/oci/platform.h"
#include "common/registry/registry_client.h"

namespace stagefarm::registry {

struct PullOptions {
  // The platform chosen from an index (a multi-platform image); nullopt:
  // this host's.
  std::optional<oci::Platform> platform;
};

struct PullResult {
  oci::LocalImage image;       // as ResolveImage now reads it
  uint64_t bytes_fetched = 0;  // blob bytes downloaded (layers and config)
  size_t layers_fetched = 0;
  size_t layers_present = 0;  // layers the store already had
};

// Pulls `ref` (by tag or digest) from its registry through `client` (a
// client of ref.domain) into `store` and tags it `ref` (a digest reference
// records which manifest it stands for). An index picks the manifest for
// the platform; Docker schema 2 and OCI manifests are kept as they came, so
// the image keeps its registry digest.
//
// Everything received is checked before it is stored: the manifest against
// the digest asked for (or the Docker-Content-Digest the registry sent), its
// size against kMaxManifestBytes, each blob against its descriptor's digest
// and size while it streams, and each layer's uncompressed digest against
// the config's diff id. Errors are prefixed "pull REF: " and name the digest
// and the registry's status; a layer that fails its checks is not stored, and
// nothing is tagged unless the whole pull succeeded (the config and manifest
// are stored last).
absl::StatusOr<PullResult> PullImage(RegistryClient& client, cas::BlobStore& store,
                                     const oci::ImageRef& ref, const PullOptions& options);

}  // namespace stagefarm::registry
