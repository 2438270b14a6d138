#include "common/oci/layer_ingest.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/oci/media_types.h"
#include "common/status/prefixed.h"

namespace stagefarm::oci {
namespace {

std::string DiffIdMismatch(const digest::Digest& actual, const digest::Digest& diff_id) {
  return absl::StrCat("uncompressed content has digest ", actual.ToString(),
                      ", the config's diff id is ", diff_id.ToString());
}

}  // namespace

LayerIngest::LayerIngest(cas::BlobStore& store, ExpectedLayer expected, std::string what,
                         absl::StatusCode mismatch)
    : expected_(std::move(expected)),
      what_(std::move(what)),
      mismatch_(mismatch),
      writer_(store.NewWriter()) {}

absl::Status LayerIngest::Mismatch(absl::string_view message) const {
  return absl::Status(mismatch_, absl::StrCat(what_, ": ", message));
}

absl::Status LayerIngest::Write(absl::string_view piece) {
  if (expected_.size && writer_->size() + piece.size() > *expected_.size) {
    return Mismatch(absl::StrCat("more than the descriptor's ", *expected_.size, " bytes"));
  }
  if (absl::Status written = writer_->Write(piece); !written.ok()) return written;
  if (diff_error_.ok()) diff_error_ = diff_hash_.Update(piece);
  return absl::OkStatus();
}

absl::StatusOr<Descriptor> LayerIngest::Commit(absl::string_view media_type) {
  // The writer hashed the blob as it took it; nothing is visible yet.
  absl::StatusOr<digest::Digest> sealed = writer_->Seal();
  if (!sealed.ok()) return Prefixed(what_, sealed.status());
  const digest::Digest& blob = *sealed;
  if (expected_.digest && blob != *expected_.digest) {
    return Mismatch(absl::StrCat("content has digest ", blob.ToString(), ", not ",
                                 expected_.digest->ToString()));
  }
  const uint64_t size = writer_->size();
  if (expected_.size && size != *expected_.size) {
    return Mismatch(absl::StrCat(size, " bytes, its descriptor says ", *expected_.size));
  }
  if (!diff_error_.ok()) return Prefixed(what_, diff_error_);
  absl::StatusOr<digest::Digest> diff = diff_hash_.Finish();
  if (!diff.ok()) return Prefixed(what_, diff.status());
  if (*diff != expected_.diff_id) return Mismatch(DiffIdMismatch(*diff, expected_.diff_id));
  const std::string type =
      media_type.empty() ? LayerMediaType(diff_hash_.compression()) : std::string(media_type);
  if (absl::Status status = writer_->Commit(blob, type); !status.ok()) return status;
  return Descriptor{type, blob, size, {}};
}

absl::Status CheckStoredLayer(cas::BlobStore& store, const digest::Digest& blob,
                              const digest::Digest& diff_id, absl::string_view what,
                              absl::StatusCode mismatch) {
  absl::StatusOr<std::unique_ptr<cas::BlobReader>> reader = store.Get(blob);
  if (!reader.ok()) return Prefixed(what, reader.status());
  DiffIdHasher diff;
  while (true) {
    absl::StatusOr<absl::string_view> piece = (*reader)->Next();
    if (!piece.ok()) return Prefixed(what, piece.status());
    if (piece->empty()) break;
    if (absl::Status status = diff.Update(*piece); !status.ok()) return Prefixed(what, status);
  }
  absl::StatusOr<digest::Digest> uncompressed = diff.Finish();
  if (!uncompressed.ok()) return Prefixed(what, uncompressed.status());
  if (*uncompressed != diff_id) {
    return absl::Status(mismatch, absl::StrCat(what, ": ", DiffIdMismatch(*uncompressed, diff_id)));
  }
  return absl::OkStatus();
}

}  // namespace stagefarm::oci
