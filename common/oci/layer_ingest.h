// A layer blob arriving from outside (an image archive, a registry) streamed
// into the content store and checked on the way.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/cas/blob_store.h"
#include "common/digest/digest.h"
#include "common/oci/diff_id_hasher.h"
#include "common/oci/image_layout.h"

namespace stagefarm::oci {

// What the blob must be.
struct ExpectedLayer {
  std::optional<digest::Digest> digest;  // the blob's, when its source names it
  std::optional<uint64_t> size;          // its size, when a descriptor gives it
  digest::Digest diff_id;                // the config's, for its uncompressed content
};

// Feeds the bytes of one layer blob to the store. No more than the expected
// size is accepted; Commit then checks, in this order, the blob's digest, its
// size, its compressed stream and its diff id, and stores it only if all
// hold. Errors start with `what`; a blob that is not what was expected gives
// `mismatch` (InvalidArgument for an archive a user gave, DataLoss for bytes
// a registry sent).
class LayerIngest {
 public:
  LayerIngest(cas::BlobStore& store, ExpectedLayer expected, std::string what,
              absl::StatusCode mismatch);

  absl::Status Write(absl::string_view piece);

  // Stores the blob as `media_type`, or, when that is empty, as the layer
  // type of the compression found; its descriptor.
  absl::StatusOr<Descriptor> Commit(absl::string_view media_type = "");

 private:
  absl::Status Mismatch(absl::string_view message) const;

  ExpectedLayer expected_;
  std::string what_;
  absl::StatusCode mismatch_;
  std::unique_ptr<cas::BlobWriter> writer_;  // hashes the blob too (Seal)
  DiffIdHasher diff_hash_;
  // A corrupt compressed stream is reported after a wrong blob digest, the
  // more telling error when both are found.
  absl::Status diff_error_;
};

// A layer the store holds already: its uncompressed content must still have
// `diff_id` (the same blob named by a lying config is refused).
absl::Status CheckStoredLayer(cas::BlobStore& store, const digest::Digest& blob,
                              const digest::Digest& diff_id, absl::string_view what,
                              absl::StatusCode mismatch);

}  // namespace stagefarm::oci
