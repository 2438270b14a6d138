#include "common/registry/pull.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/oci/image.h"
#include "common/oci/layer_ingest.h"
#include "common/oci/manifest.h"
#include "common/registry/blob_sources.h"
#include "common/status/prefixed.h"
#include "nlohmann/json.hpp"

namespace stagefarm::registry {
namespace {

// Image configs are read whole, as local_images reads them.
constexpr uint64_t kMaxConfigBytes = uint64_t{8} << 20;

constexpr absl::string_view kSchema1MediaType =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";

// The media type of a fetched manifest: the Content-Type when it names a
// manifest or an index, else the document's own mediaType (a registry that
// sends application/json, or none).
absl::StatusOr<std::string> ManifestType(const FetchedManifest& fetched) {
  if (oci::IsManifestMediaType(fetched.content_type) ||
      oci::IsIndexMediaType(fetched.content_type)) {
    return fetched.content_type;
  }
  if (fetched.content_type == kSchema1MediaType) {
    return absl::UnimplementedError(
        "the registry sent a Docker schema 1 manifest, which stagefarm does not read");
  }
  const nlohmann::json document = nlohmann::json::parse(fetched.bytes, nullptr, false);
  if (document.is_discarded() || !document.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the manifest (Content-Type \"", fetched.content_type, "\") is not a JSON object"));
  }
  const std::string type = document.value("mediaType", "");
  if (oci::IsManifestMediaType(type) || oci::IsIndexMediaType(type)) return type;
  if (type.empty() && document.contains("manifests")) return std::string(oci::kIndexMediaType);
  if (type.empty() && document.contains("config")) return std::string(oci::kManifestMediaType);
  return absl::InvalidArgumentError(absl::StrCat("unsupported manifest type \"",
                                                 type.empty() ? fetched.content_type : type, "\""));
}

// Fetches a manifest and checks its bytes: against `expected` when the
// digest is known, else against the Docker-Content-Digest the registry sent.
// Returns the bytes, their digest and media type.
struct CheckedManifest {
  std::string bytes;
  digest::Digest digest;
  std::string media_type;
};

absl::StatusOr<CheckedManifest> FetchManifest(RegistryClient& client, const oci::ImageRef& ref,
                                              absl::string_view reference,
                                              const std::optional<digest::Digest>& expected) {
  absl::StatusOr<FetchedManifest> fetched = client.GetManifest(ref.path, reference);
  if (!fetched.ok()) return Prefixed(absl::StrCat("manifest ", reference), fetched.status());
  const digest::Digest actual = digest::Sha256Of(fetched->bytes);
  if (expected && actual != *expected) {
    return absl::DataLossError(absl::StrCat("manifest ", reference, ": content has digest ",
                                            actual.ToString(), ", not ", expected->ToString()));
  }
  if (!fetched->docker_content_digest.empty()) {
    absl::StatusOr<digest::Digest> sent = digest::Digest::Parse(fetched->docker_content_digest);
    if (sent.ok() && *sent != actual) {
      return absl::DataLossError(
          absl::StrCat("manifest ", reference, ": content has digest ", actual.ToString(),
                       ", the registry's Docker-Content-Digest says ", sent->ToString()));
    }
  }
  absl::StatusOr<std::string> type = ManifestType(*fetched);
  if (!type.ok()) return Prefixed(absl::StrCat("manifest ", reference), type.status());
  return CheckedManifest{std::move(fetched->bytes), actual, *std::move(type)};
}

bool Matches(const std::optional<oci::Platform>& entry, const oci::Platform& wanted) {
  if (!entry || entry->os != wanted.os || entry->architecture != wanted.architecture) return false;
  if (entry->variant == wanted.variant) return true;
  // arm64's v8 is the default variant, written or not.
  return wanted.architecture == "arm64" && (entry->variant.empty() || entry->variant == "v8") &&
         (wanted.variant.empty() || wanted.variant == "v8");
}

absl::StatusOr<oci::Descriptor> ChoosePlatform(const std::vector<oci::PlatformDescriptor>& entries,
                                               const oci::Platform& wanted) {
  for (const oci::PlatformDescriptor& entry : entries) {
    if (Matches(entry.platform, wanted)) return entry.descriptor;
  }
  std::vector<std::string> offered;
  for (const oci::PlatformDescriptor& entry : entries) {
    if (entry.platform) offered.push_back(entry.platform->String());
  }
  return absl::NotFoundError(
      absl::StrCat("no image for ", wanted.String(), " (the index has ",
                   offered.empty() ? "none with a platform" : absl::StrJoin(offered, ", "), ")"));
}

// Downloads a blob into memory (a config), checking size and digest.
absl::StatusOr<std::string> FetchSmallBlob(RegistryClient& client, const oci::ImageRef& ref,
                                           const oci::Descriptor& blob, absl::string_view what) {
  if (blob.size > kMaxConfigBytes) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", blob.digest.ToString(), " is ",
                                                   blob.size, " bytes, over the limit of ",
                                                   kMaxConfigBytes));
  }
  std::string bytes;
  absl::Status status = client.GetBlob(
      ref.path, blob.digest, [&bytes] { bytes.clear(); },
      [&](absl::string_view piece) {
        if (bytes.size() + piece.size() > blob.size) {
          return absl::DataLossError(
              absl::StrCat("more than the descriptor's ", blob.size, " bytes"));
        }
        bytes.append(piece.data(), piece.size());
        return absl::OkStatus();
      });
  if (!status.ok()) return Prefixed(absl::StrCat(what, " ", blob.digest.ToString()), status);
  const digest::Digest actual = digest::Sha256Of(bytes);
  if (actual != blob.digest || bytes.size() != blob.size) {
    return absl::DataLossError(absl::StrCat(what, " ", blob.digest.ToString(), ": received ",
                                            bytes.size(), " bytes with digest ",
                                            actual.ToString()));
  }
  return bytes;
}

// Streams a layer into the store, verified as it comes: the blob digest and
// size, and the uncompressed digest against `diff_id`. Nothing is stored
// unless every check passes.
absl::Status FetchLayer(RegistryClient& client, cas::BlobStore& store, const oci::ImageRef& ref,
                        const oci::Descriptor& layer, const digest::Digest& diff_id,
                        absl::string_view what) {
  std::optional<oci::LayerIngest> ingest;
  absl::Status status = client.GetBlob(
      ref.path, layer.digest,
      // Each attempt starts over.
      [&] {
        ingest.emplace(store, oci::ExpectedLayer{layer.digest, layer.size, diff_id},
                       std::string(what), absl::StatusCode::kDataLoss);
      },
      [&](absl::string_view piece) { return ingest->Write(piece); });
  if (!status.ok()) return Prefixed(what, status);
  return ingest->Commit(layer.media_type).status();
}

absl::StatusOr<PullResult> Pull(RegistryClient& client, cas::BlobStore& store,
                                const oci::ImageRef& ref, const PullOptions& options) {
  const oci::Platform platform = options.platform.value_or(oci::HostPlatform());
  std::optional<digest::Digest> expected;
  if (!ref.digest.empty()) {
    absl::StatusOr<digest::Digest> d = digest::Digest::Parse(ref.digest);
    if (!d.ok()) return d.status();
    expected = *d;
  }
  absl::StatusOr<CheckedManifest> manifest =
      FetchManifest(client, ref, expected ? ref.digest : ref.tag, expected);
  if (!manifest.ok()) return manifest.status();
  // An index (nested ones too, up to a depth): the entry for the platform.
  for (int depth = 0; oci::IsIndexMediaType(manifest->media_type); ++depth) {
    if (depth == 4) return absl::InvalidArgumentError("indexes nested too deep");
    const std::string what = absl::StrCat("index ", manifest->digest.ToString());
    absl::StatusOr<std::vector<oci::PlatformDescriptor>> entries =
        oci::ParseIndex(manifest->bytes, what);
    if (!entries.ok()) return entries.status();
    absl::StatusOr<oci::Descriptor> chosen = ChoosePlatform(*entries, platform);
    if (!chosen.ok()) return Prefixed(what, chosen.status());
    if (chosen->size > kMaxManifestBytes) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": manifest ", chosen->digest.ToString(),
                                                     " is ", chosen->size,
                                                     " bytes, over the limit"));
    }
    manifest = FetchManifest(client, ref, chosen->digest.ToString(), chosen->digest);
    if (!manifest.ok()) return manifest.status();
    if (manifest->bytes.size() != chosen->size) {
      return absl::DataLossError(absl::StrCat("manifest ", chosen->digest.ToString(), ": ",
                                              manifest->bytes.size(), " bytes, ", what, " says ",
                                              chosen->size));
    }
  }
  const std::string manifest_what = absl::StrCat("manifest ", manifest->digest.ToString());
  absl::StatusOr<oci::Manifest> parsed = oci::ParseManifest(manifest->bytes, manifest_what);
  if (!parsed.ok()) return parsed.status();

  absl::StatusOr<std::string> config_json = FetchSmallBlob(client, ref, parsed->config, "config");
  if (!config_json.ok()) return config_json.status();
  const std::string config_what = absl::StrCat("config ", parsed->config.digest.ToString());
  absl::StatusOr<oci::ImageConfig> config = oci::ParseImageConfig(*config_json);
  if (!config.ok()) return Prefixed(config_what, config.status());
  if (config->diff_ids.size() != parsed->layers.size()) {
    return absl::InvalidArgumentError(absl::StrCat(config_what, ": rootfs.diff_ids has ",
                                                   config->diff_ids.size(), " entries for ",
                                                   parsed->layers.size(), " layers"));
  }

  uint64_t bytes_fetched = config_json->size();
  size_t layers_fetched = 0, layers_present = 0;
  const BlobSource source{client.host(), ref.path};
  for (size_t i = 0; i < parsed->layers.size(); ++i) {
    const oci::Descriptor& layer = parsed->layers[i];
    const std::string what = absl::StrCat("layer ", layer.digest.ToString());
    absl::StatusOr<bool> has = store.Has(layer.digest);
    if (!has.ok()) return has.status();
    if (*has) {
      // Held already: its content must still match this config's diff id.
      if (absl::Status status = oci::CheckStoredLayer(store, layer.digest, config->diff_ids[i],
                                                      what, absl::StatusCode::kDataLoss);
          !status.ok()) {
        return status;
      }
      ++layers_present;
    } else {
      if (absl::Status status = FetchLayer(client, store, ref, layer, config->diff_ids[i], what);
          !status.ok()) {
        return status;
      }
      ++layers_fetched;
      bytes_fetched += layer.size;
    }
    if (absl::Status status = RecordBlobSource(store, layer.digest, source); !status.ok()) {
      return status;
    }
  }
  if (absl::Status status =
          store.Put(*config_json, parsed->config.digest, parsed->config.media_type);
      !status.ok()) {
    return status;
  }
  if (absl::Status status = RecordBlobSource(store, parsed->config.digest, source); !status.ok()) {
    return status;
  }
  if (absl::Status status = store.Put(manifest->bytes, manifest->digest, manifest->media_type);
      !status.ok()) {
    return status;
  }
  absl::StatusOr<oci::LocalImage> image = oci::ReadImage(store, manifest->digest);
  if (!image.ok()) return image.status();
  // A reference with a tag and a digest is the digest's (as docker reads it).
  oci::ImageRef name = ref;
  if (!name.digest.empty()) name.tag.clear();
  if (absl::Status status = oci::TagImage(store, name, manifest->digest); !status.ok()) {
    return status;
  }
  return PullResult{*std::move(image), bytes_fetched, layers_fetched, layers_present};
}

}  // namespace

absl::StatusOr<PullResult> PullImage(RegistryClient& client, cas::BlobStore& store,
                                     const oci::ImageRef& ref, const PullOptions& options) {
  absl::StatusOr<PullResult> result = Pull(client, store, ref, options);
  if (!result.ok()) return Prefixed(absl::StrCat("pull ", ref.String()), result.status());
  return result;
}

}  // namespace stagefarm::registry
