// Uploading local files or blobs of a local store to a node's BlobServer (a
// client's build context, or image layers it holds, to the coordinator),
// sending only what the receiver lacks.
//
// One batched findMissing learns which blobs the receiver lacks. A missing
// blob that fits in one chunk goes in one putBlob message; a larger one is
// offered as its chunk list (cut by the same content-defined chunker as the
// store) and only the chunks the receiver lacks are sent. At most
// `messages_in_flight` unanswered messages are outstanding at a time. The
// receiver verifies every chunk and every blob; a file that no longer hashes
// to the digest it was listed with is an error, never a silent upload of other
// bytes (a stored blob's chunks are checked by the local store as they are
// read, and its chunk list is the store's). An upload interrupted part way
// can simply be run again: the chunks that arrived are still stored and are
// not sent twice.
#ifndef STAGEFARM_COMMON_TRANSFER_BLOB_UPLOADER_H_
#define STAGEFARM_COMMON_TRANSFER_BLOB_UPLOADER_H_

#include <cstdint>
#include <filesystem>
#include <string>
#include <zmq.hpp>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/cas/blob_store.h"
#include "common/digest/digest.h"
#include "common/transfer/wire.h"

namespace stagefarm::transfer {

struct UploadItem {
  std::filesystem::path path;
  digest::Digest digest;  // of the file's content, as the client hashed it
  std::string media_type;
};

struct UploadOptions {
  size_t messages_in_flight = 16;
  // A message unanswered this long fails the upload (Unavailable).
  absl::Duration request_timeout = absl::Seconds(30);
  // Files at most this large go as one putBlob message.
  uint64_t single_message_bytes = 1 << 20;
};

struct UploadReport {
  size_t blobs_missing = 0;   // blobs the receiver lacked
  size_t blobs_uploaded = 0;  // now stored there
  uint64_t bytes_sent = 0;
  uint64_t bytes_skipped = 0;  // bytes of missing blobs whose chunks the receiver already had
};

// Uploads the `items` the receiver at `to` lacks. Errors name the file and
// the digest: FailedPrecondition when a file changed since it was hashed,
// Unavailable when the receiver stops answering, or the receiver's error.
absl::StatusOr<UploadReport> UploadFiles(zmq::context_t& context, const Peer& to,
                                         absl::Span<const UploadItem> items,
                                         const UploadOptions& options = {});

// Uploads the `blobs` of the local store `from` that the receiver at `to`
// lacks, each with the media type `from` recorded for it. NotFound naming the
// digest when `from` lacks one (before anything is sent); DataLoss when a
// stored chunk is damaged; otherwise as UploadFiles.
absl::StatusOr<UploadReport> UploadBlobs(zmq::context_t& context, const Peer& to,
                                         cas::BlobStore& from,
                                         absl::Span<const digest::Digest> blobs,
                                         const UploadOptions& options = {});

}  // namespace stagefarm::transfer

#endif  // STAGEFARM_COMMON_TRANSFER_BLOB_UPLOADER_H_
