#include "common/graph/cache_key.h"

#include "absl/strings/str_cat.h"

namespace stagefarm::graph {
namespace {

// "<name>", <count>, then each name and value, in the map's (byte) order.
void UpdateMap(digest::Sha256& hasher, absl::string_view name,
               const std::map<std::string, std::string>& values) {
  hasher.UpdateLengthPrefixed(name);
  hasher.UpdateLengthPrefixed(absl::StrCat(values.size()));
  for (const auto& [key, value] : values) {
    hasher.UpdateLengthPrefixed(key);
    hasher.UpdateLengthPrefixed(value);
  }
}

}  // namespace

digest::Digest ComputeCacheKey(const CacheKeyInputs& inputs) {
  digest::Sha256 hasher;
  hasher.UpdateLengthPrefixed(kCacheKeyVersion);
  hasher.UpdateLengthPrefixed("parent");
  hasher.UpdateLengthPrefixed(inputs.parent.ToString());
  hasher.UpdateLengthPrefixed("instruction");
  hasher.UpdateLengthPrefixed(inputs.instruction);
  hasher.UpdateLengthPrefixed("platform");
  hasher.UpdateLengthPrefixed(inputs.platform);
  UpdateMap(hasher, "build-args", inputs.build_args);
  UpdateMap(hasher, "env", inputs.env);
  hasher.UpdateLengthPrefixed("inputs");
  hasher.UpdateLengthPrefixed(absl::StrCat(inputs.inputs.size()));
  for (const auto& [label, digest] : inputs.inputs) {
    hasher.UpdateLengthPrefixed(label);
    hasher.UpdateLengthPrefixed(digest.ToString());
  }
  return hasher.Finish();
}

digest::Digest BaseImageKey(absl::string_view image_ref,
                            const std::optional<digest::Digest>& manifest) {
  digest::Sha256 hasher;
  hasher.UpdateLengthPrefixed(kCacheKeyVersion);
  hasher.UpdateLengthPrefixed("base-image");
  if (manifest.has_value()) {
    hasher.UpdateLengthPrefixed("manifest");
    hasher.UpdateLengthPrefixed(manifest->ToString());
  } else {
    hasher.UpdateLengthPrefixed("ref");
    hasher.UpdateLengthPrefixed(image_ref);
  }
  return hasher.Finish();
}

}  // namespace stagefarm::graph
