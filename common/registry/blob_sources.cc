#include "common/registry/blob_sources.h"

#include "absl/strings/str_cat.h"

namespace stagefarm::registry {
namespace {

// Cache-index keys: "registry-source/v1/<digest>" -> "<host>/<repository>".
std::string Key(const digest::Digest& blob) {
  return absl::StrCat("registry-source/v1/", blob.ToString());
}

}  // namespace

absl::Status RecordBlobSource(cas::BlobStore& store, const digest::Digest& blob,
                              const BlobSource& source) {
  return store.PutCacheEntry(Key(blob), absl::StrCat(source.host, "/", source.repository));
}

std::optional<BlobSource> FindBlobSource(const cas::BlobStore& store, const digest::Digest& blob) {
  absl::StatusOr<std::string> value = store.GetCacheEntry(Key(blob));
  if (!value.ok()) return std::nullopt;
  const size_t slash = value->find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == value->size()) return std::nullopt;
  return BlobSource{value->substr(0, slash), value->substr(slash + 1)};
}

}  // namespace stagefarm::registry
