// Fetching blobs a node lacks from the peers that hold them.
//
// FetchBlobs asks every holder for the manifests (chunk lists) of the blobs
// the local store lacks, many blobs to a request, then streams the missing
// chunks from all holders that have them at once, straight into the local
// store through a cas::BlobAssembler: chunks already stored locally are never
// requested; each holder has at most `chunks_in_flight` chunk requests and
// about `bytes_in_flight` bytes outstanding (its credit), so memory and the
// peer's send queue stay bounded while a stream of small blobs (a build
// context) still fills the connection; every chunk is verified on arrival and
// every blob as a whole before it becomes visible.
//
// Faults: a chunk that fails verification is rejected, the peer that sent it
// is reported (FetchReport::faults, and on_fault as it happens) and the chunk
// is fetched again, from another holder when there is one; a holder that
// sends corrupt data repeatedly is dropped. A request unanswered within
// `request_timeout` (a dead or unreachable peer) is sent again, to another
// holder if one is live or else to the same one once it is back; chunks
// already verified are kept, so a transfer resumes where it stopped.
#ifndef STAGEFARM_COMMON_TRANSFER_BLOB_FETCHER_H_
#define STAGEFARM_COMMON_TRANSFER_BLOB_FETCHER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/cas/blob_store.h"
#include "common/digest/digest.h"
#include "common/transfer/wire.h"

namespace stagefarm::transfer {

// A peer that misbehaved during a fetch.
struct PeerFault {
  std::string peer;  // the holder's endpoint
  std::string what;  // what it did, naming the chunk or blob
};

struct FetchProgress {
  uint64_t bytes_received = 0;  // chunk bytes received and verified so far
  uint64_t bytes_needed = 0;    // chunk bytes the fetch must receive, as far as known
};

struct FetchOptions {
  // Chunk requests outstanding per holder, and the bytes they may add up to
  // (one request is always allowed, however large its chunk). The chunks
  // received and not yet stored are bounded the same way.
  size_t chunks_in_flight = 128;
  uint64_t bytes_in_flight = 8 << 20;
  // A request unanswered this long is sent again.
  absl::Duration request_timeout = absl::Seconds(10);
  // Sends of one request (a manifest or a chunk) over all holders before the
  // fetch gives up.
  int max_attempts = 6;
  // Corrupt chunks after which a holder is no longer asked.
  int max_faults_per_peer = 3;
  std::function<void(const PeerFault&)> on_fault;
  std::function<void(const FetchProgress&)> on_progress;
};

struct FetchReport {
  size_t blobs_fetched = 0;  // blobs that were missing and are now stored
  uint64_t bytes_received = 0;
  uint64_t bytes_already_local = 0;  // chunk bytes of fetched blobs found locally
  std::vector<PeerFault> faults;
};

// Makes every blob of `blobs` present in `store`, fetching those it lacks
// from `holders`. Errors: NotFound naming the blob when no holder has it;
// Unavailable naming the blob, chunk and peers when no holder answered in
// max_attempts; DataLoss when holders sent only corrupt data for a chunk or
// a chunk list that does not hash to its blob. Blobs completed before an
// error stay stored; nothing unverified is ever visible.
absl::StatusOr<FetchReport> FetchBlobs(zmq::context_t& context, cas::BlobStore& store,
                                       absl::Span<const digest::Digest> blobs,
                                       absl::Span<const Peer> holders,
                                       const FetchOptions& options = {});

// Which of `blobs` `holder` lacks (one statBlobs exchange per 4,096 digests).
// Unavailable when it does not answer within `timeout`.
absl::StatusOr<std::vector<digest::Digest>> StatBlobs(zmq::context_t& context, const Peer& holder,
                                                      absl::Span<const digest::Digest> blobs,
                                                      absl::Duration timeout);

}  // namespace stagefarm::transfer

#endif  // STAGEFARM_COMMON_TRANSFER_BLOB_FETCHER_H_
