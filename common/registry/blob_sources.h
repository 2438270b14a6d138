// Where a blob in the local store came from or was last pushed to: the
// registry and repository, remembered in the store's cache index so that a
// later push to another repository of that registry can mount it
// (cross-repository blob mount) instead of uploading it.
#pragma once

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/cas/blob_store.h"
#include "common/digest/digest.h"

namespace stagefarm::registry {

struct BlobSource {
  std::string host;        // "127.0.0.1:5000"
  std::string repository;  // "library/busybox"
};

// Records that `blob` is in `source` (replacing what was recorded).
absl::Status RecordBlobSource(cas::BlobStore& store, const digest::Digest& blob,
                              const BlobSource& source);

// What was recorded for `blob`, if anything (a store error reads as nothing:
// the hint only saves an upload).
std::optional<BlobSource> FindBlobSource(const cas::BlobStore& store, const digest::Digest& blob);

}  // namespace stagefarm::registry
