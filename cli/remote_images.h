// What the commands do with registries: the flags they share, `FROM`'s
// fallback to a pull when an image is not in the local store, and a push
// with progress lines on stderr.
#pragma once

#include <cstdio>

#include "absl/status/statusor.h"
#include "cli/command_line.h"
#include "common/cas/blob_store.h"
#include "common/oci/image_ref.h"
#include "common/oci/local_images.h"
#include "common/oci/platform.h"
#include "common/registry/pull.h"
#include "common/registry/push.h"
#include "common/registry/registry_client.h"

namespace stagefarm::cli {

// --insecure-registry HOST[:PORT] (repeated).
FlagSpec InsecureRegistryFlag();

// The registry options the flags give: --insecure-registry hosts, and
// credentials from DOCKER_CONFIG or ~/.docker/config.json.
registry::RegistryOptions RegistryOptionsFromFlags(const ParsedArgs& parsed);

// The image `ref` names in `store`, pulled from its registry for `platform`
// first when the store does not have it ("pulling REF" on `log`). The pull's
// error when it fails (prefixed "pull REF: "); the store's errors as they are.
absl::StatusOr<oci::LocalImage> ResolveOrPull(cas::BlobStore& store, const oci::ImageRef& ref,
                                              const oci::Platform& platform,
                                              const registry::RegistryOptions& options,
                                              std::FILE* log);

// Pushes `image` to `target` ("pushed TARGET@DIGEST" on `log`).
absl::StatusOr<registry::PushResult> PushToRegistry(
    cas::BlobStore& store, const oci::LocalImage& image, const oci::ImageRef& target,
    const registry::RegistryOptions& options, const registry::PushOptions& push, std::FILE* log);

}  // namespace stagefarm::cli
