#include "common/oci/manifest.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status/prefixed.h"
#include "nlohmann/json.hpp"

namespace stagefarm::oci {
namespace {

using Json = nlohmann::json;

// ---------------------------------------------------------------------------
// JSON documents: descriptors, manifests, indexes.

absl::StatusOr<Json> ParseJsonObject(absl::string_view text, absl::string_view what) {
  Json document = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded() || !document.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": not a JSON object"));
  }
  return document;
}

absl::StatusOr<std::string> StringField(const Json& object, const std::string& key,
                                        absl::string_view where, bool required = true) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) {
    if (!required) return std::string();
    return absl::InvalidArgumentError(absl::StrCat(where, key, ": missing"));
  }
  if (!it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(where, key, ": expected a string"));
  }
  return it->get<std::string>();
}

absl::StatusOr<PlatformDescriptor> ParseDescriptor(const Json& object, absl::string_view where) {
  if (!object.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": expected an object"));
  }
  const std::string prefix = absl::StrCat(where, ".");
  absl::StatusOr<std::string> media_type = StringField(object, "mediaType", prefix, false);
  if (!media_type.ok()) return media_type.status();
  absl::StatusOr<std::string> digest_text = StringField(object, "digest", prefix);
  if (!digest_text.ok()) return digest_text.status();
  absl::StatusOr<digest::Digest> d = digest::Digest::Parse(*digest_text);
  if (!d.ok()) return Prefixed(absl::StrCat(where, ".digest"), d.status());
  auto size = object.find("size");
  if (size == object.end() || !size->is_number_unsigned()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".size: expected a size in bytes"));
  }
  PlatformDescriptor out{{*std::move(media_type), *std::move(d), size->get<uint64_t>(), {}}, {}};
  if (auto annotations = object.find("annotations");
      annotations != object.end() && annotations->is_object()) {
    for (const auto& [key, value] : annotations->items()) {
      if (value.is_string()) out.descriptor.annotations[key] = value.get<std::string>();
    }
  }
  if (auto platform = object.find("platform"); platform != object.end() && platform->is_object()) {
    Platform p;
    p.os = platform->value("os", "");
    p.architecture = platform->value("architecture", "");
    p.variant = platform->value("variant", "");
    out.platform = std::move(p);
  }
  return out;
}

}  // namespace

bool IsManifestMediaType(absl::string_view type) {
  return type == kManifestMediaType || type == kDockerManifestMediaType;
}

bool IsIndexMediaType(absl::string_view type) {
  return type == kIndexMediaType || type == kDockerManifestListMediaType;
}

bool IsLayerMediaType(absl::string_view type) {
  return type == LayerMediaType(LayerCompression::kNone) ||
         type == LayerMediaType(LayerCompression::kGzip) ||
         type == LayerMediaType(LayerCompression::kZstd) || type == kDockerLayerMediaType;
}

absl::StatusOr<Manifest> ParseManifest(absl::string_view text, absl::string_view what) {
  absl::StatusOr<Json> document = ParseJsonObject(text, what);
  if (!document.ok()) return document.status();
  absl::StatusOr<std::string> media_type =
      StringField(*document, "mediaType", absl::StrCat(what, ": "), false);
  if (!media_type.ok()) return media_type.status();
  // mediaType is optional in an OCI manifest.
  if (media_type->empty()) *media_type = std::string(kManifestMediaType);
  if (IsIndexMediaType(*media_type)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": is an index (", *media_type, "), not an image manifest"));
  }
  if (!IsManifestMediaType(*media_type)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": mediaType: unsupported manifest type \"", *media_type, "\""));
  }
  auto config = document->find("config");
  if (config == document->end()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": config: missing"));
  }
  absl::StatusOr<PlatformDescriptor> config_descriptor =
      ParseDescriptor(*config, absl::StrCat(what, ": config"));
  if (!config_descriptor.ok()) return config_descriptor.status();
  if (config_descriptor->descriptor.media_type != kImageConfigMediaType &&
      config_descriptor->descriptor.media_type != kDockerConfigMediaType) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": config.mediaType: unsupported \"",
                                                   config_descriptor->descriptor.media_type, "\""));
  }
  Manifest manifest{*std::move(media_type), std::move(config_descriptor->descriptor), {}};
  auto layers = document->find("layers");
  if (layers == document->end() || !layers->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": layers: expected an array"));
  }
  for (size_t i = 0; i < layers->size(); ++i) {
    const std::string where = absl::StrCat(what, ": layers[", i, "]");
    absl::StatusOr<PlatformDescriptor> layer = ParseDescriptor((*layers)[i], where);
    if (!layer.ok()) return layer.status();
    if (!IsLayerMediaType(layer->descriptor.media_type)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".mediaType: unsupported layer type \"",
                                                     layer->descriptor.media_type, "\""));
    }
    manifest.layers.push_back(std::move(layer->descriptor));
  }
  return manifest;
}

absl::StatusOr<std::vector<PlatformDescriptor>> ParseIndex(absl::string_view text,
                                                           absl::string_view what) {
  absl::StatusOr<Json> document = ParseJsonObject(text, what);
  if (!document.ok()) return document.status();
  auto manifests = document->find("manifests");
  if (manifests == document->end() || !manifests->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": manifests: expected an array"));
  }
  std::vector<PlatformDescriptor> out;
  for (size_t i = 0; i < manifests->size(); ++i) {
    absl::StatusOr<PlatformDescriptor> entry =
        ParseDescriptor((*manifests)[i], absl::StrCat(what, ": manifests[", i, "]"));
    if (!entry.ok()) return entry.status();
    out.push_back(*std::move(entry));
  }
  return out;
}

}  // namespace stagefarm::oci
