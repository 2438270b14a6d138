#include "common/registry/push.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/oci/exported_image.h"
#include "common/registry/blob_sources.h"
#include "common/status/prefixed.h"

namespace stagefarm::registry {
namespace {

// The repository on `client`'s registry to mount `blob` from, if any.
std::optional<std::string> MountSource(const cas::BlobStore& store, const RegistryClient& client,
                                       const digest::Digest& blob, const oci::ImageRef& target,
                                       const std::optional<oci::ImageRef>& source) {
  if (std::optional<BlobSource> recorded = FindBlobSource(store, blob);
      recorded && recorded->host == client.host() && recorded->repository != target.path) {
    return recorded->repository;
  }
  if (source && source->domain == client.host() && source->path != target.path) {
    return source->path;
  }
  return std::nullopt;
}

// Gets one blob into the target repository; counts what it did in *result.
absl::Status PushBlob(RegistryClient& client, cas::BlobStore& store, const oci::Descriptor& blob,
                      const oci::ImageRef& target, const PushOptions& options, PushResult* result) {
  absl::StatusOr<bool> present = client.HasBlob(target.path, blob.digest);
  if (!present.ok()) return present.status();
  if (*present) {
    ++result->blobs_present;
    return absl::OkStatus();
  }
  std::string upload_url;
  if (std::optional<std::string> from =
          MountSource(store, client, blob.digest, target, options.source)) {
    absl::StatusOr<bool> mounted = client.MountBlob(target.path, blob.digest, *from, &upload_url);
    if (!mounted.ok()) return mounted.status();
    if (*mounted) {
      ++result->blobs_mounted;
      return absl::OkStatus();
    }
  }
  std::unique_ptr<cas::BlobReader> reader;
  absl::Status status = client.UploadBlob(
      target.path, blob.digest, blob.size, upload_url,
      [&](uint64_t offset,
          uint64_t length) -> absl::StatusOr<std::function<absl::StatusOr<absl::string_view>()>> {
        absl::StatusOr<std::unique_ptr<cas::BlobReader>> opened =
            store.Get(blob.digest, offset, length);
        if (!opened.ok()) return opened.status();
        reader = *std::move(opened);
        return std::function<absl::StatusOr<absl::string_view>()>(
            [&reader]() { return reader->Next(); });
      });
  if (!status.ok()) return status;
  ++result->blobs_uploaded;
  result->bytes_uploaded += blob.size;
  return absl::OkStatus();
}

absl::StatusOr<PushResult> Push(RegistryClient& client, cas::BlobStore& store,
                                const oci::LocalImage& image, const oci::ImageRef& target,
                                const PushOptions& options) {
  if (target.tag.empty() || !target.digest.empty()) {
    return absl::InvalidArgumentError("a push needs a name:tag reference");
  }
  absl::StatusOr<oci::ExportedImage> exported = oci::PrepareExport(store, image, options.compress);
  if (!exported.ok()) return exported.status();
  const std::string& manifest = exported->manifest;
  PushResult result{exported->layout.manifest.digest, manifest.size(),
                    exported->layout.manifest.media_type};

  std::vector<oci::Descriptor> blobs = exported->layout.layers;
  blobs.push_back(exported->layout.config);
  const BlobSource destination{client.host(), target.path};
  for (const oci::Descriptor& blob : blobs) {
    const std::string what = absl::StrCat("blob ", blob.digest.ToString());
    if (absl::Status status = PushBlob(client, store, blob, target, options, &result);
        !status.ok()) {
      return Prefixed(what, status);
    }
    if (absl::Status status = RecordBlobSource(store, blob.digest, destination); !status.ok()) {
      return status;
    }
  }
  absl::StatusOr<std::string> answered =
      client.PutManifest(target.path, target.tag, result.media_type, manifest);
  if (!answered.ok()) {
    return Prefixed(absl::StrCat("manifest ", result.manifest.ToString()), answered.status());
  }
  if (!answered->empty() && *answered != result.manifest.ToString()) {
    return absl::DataLossError(absl::StrCat("manifest ", result.manifest.ToString(),
                                            ": the registry stored it as ", *answered));
  }
  return result;
}

}  // namespace

absl::StatusOr<PushResult> PushImage(RegistryClient& client, cas::BlobStore& store,
                                     const oci::LocalImage& image, const oci::ImageRef& target,
                                     const PushOptions& options) {
  absl::StatusOr<PushResult> result = Push(client, store, image, target, options);
  if (!result.ok()) return Prefixed(absl::StrCat("push ", target.String()), result.status());
  return result;
}

}  // namespace stagefarm::registry
