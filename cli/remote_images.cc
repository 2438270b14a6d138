#include "cli/remote_images.h"

#include <string>

#include "absl/status/status.h"

namespace stagefarm::cli {

FlagSpec InsecureRegistryFlag() {
  return {"insecure-registry", "", true, true,
          "HOST[:PORT] spoken to over plain HTTP (default: HTTPS); repeatable"};
}

registry::RegistryOptions RegistryOptionsFromFlags(const ParsedArgs& parsed) {
  registry::RegistryOptions options;
  options.insecure_registries = parsed.All("insecure-registry");
  return options;
}

absl::StatusOr<oci::LocalImage> ResolveOrPull(cas::BlobStore& store, const oci::ImageRef& ref,
                                              const oci::Platform& platform,
                                              const registry::RegistryOptions& options,
                                              std::FILE* log) {
  absl::StatusOr<oci::LocalImage> local = oci::ResolveImage(store, ref);
  if (!absl::IsNotFound(local.status())) return local;
  std::fprintf(log, "pulling %s\n", ref.String().c_str());
  registry::RegistryClient client(ref.domain, options);
  absl::StatusOr<registry::PullResult> pulled =
      registry::PullImage(client, store, ref, {.platform = platform});
  if (!pulled.ok()) return pulled.status();
  return pulled->image;
}

absl::StatusOr<registry::PushResult> PushToRegistry(
    cas::BlobStore& store, const oci::LocalImage& image, const oci::ImageRef& target,
    const registry::RegistryOptions& options, const registry::PushOptions& push, std::FILE* log) {
  registry::RegistryClient client(target.domain, options);
  absl::StatusOr<registry::PushResult> result =
      registry::PushImage(client, store, image, target, push);
  if (!result.ok()) return result.status();
  std::fprintf(log, "pushed %s@%s (%zu blobs uploaded, %zu mounted, %zu already there)\n",
               target.String().c_str(), result->manifest.ToString().c_str(), result->blobs_uploaded,
               result->blobs_mounted, result->blobs_present);
  return result;
}

}  // namespace stagefarm::cli
