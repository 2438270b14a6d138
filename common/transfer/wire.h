// Conversions between the transfer messages of schemas/transfer.capnp and
// the store's types, with every received value checked: a digest that does
// not parse or a manifest that does not add up becomes an InvalidArgument
// naming the peer and the offending value.
#ifndef STAGEFARM_COMMON_TRANSFER_WIRE_H_
#define STAGEFARM_COMMON_TRANSFER_WIRE_H_

#include <string>
#include <utility>
#include <vector>
#include <zmq.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/cas/blob_store.h"
#include "common/digest/digest.h"
#include "common/net/socket_security.h"
#include "schemas/transfer.capnp.h"

namespace stagefarm::transfer {

// A node that serves blobs: its ROUTER endpoint and how to talk to it.
struct Peer {
  std::string endpoint;
  net::SocketSecurity security;
};

// Most digests one findMissing or statBlobs request may carry; a request
// with more is refused (the envelope limit would be reached around 13,000).
inline constexpr size_t kMaxDigestsPerRequest = 4096;

// Parses a digest a peer sent; `what` names the field for the error.
absl::StatusOr<digest::Digest> ParseDigest(capnp::Text::Reader text, absl::string_view what,
                                           absl::string_view peer);

// Parses a list of digests (at most kMaxDigestsPerRequest).
absl::StatusOr<std::vector<digest::Digest>> ParseDigestList(schema::DigestList::Reader list,
                                                            absl::string_view peer);
void FillDigestList(absl::Span<const digest::Digest> digests, schema::DigestList::Builder out);

// A manifest as a peer sent it. Its consistency (lengths add up, chunk sizes)
// is checked by cas::BlobStore::NewAssembler.
absl::StatusOr<cas::BlobManifest> ParseManifest(schema::BlobManifest::Reader manifest,
                                                absl::string_view peer);
void FillManifest(const cas::BlobManifest& manifest, schema::BlobManifest::Builder out);

// Tunes malloc for a process that moves many chunk-sized (1-4 MiB) buffers:
// they are kept and reused by malloc instead of being mapped and unmapped
// each time, which on this class of VM costs a page fault per 4 KiB (about a
// sixth of a fetch's CPU). Call once, early in main.
void KeepLargeBuffersMapped();

// A frame that owns `bytes` and hands them to ZeroMQ without a copy.
zmq::message_t FrameFromString(std::string&& bytes);

// A DEALER socket connected to `peer` with its security and frame limits
// applied, linger 0 and a short reconnect interval.
absl::StatusOr<zmq::socket_t> ConnectToPeer(zmq::context_t& context, const Peer& peer);

}  // namespace stagefarm::transfer

#endif  // STAGEFARM_COMMON_TRANSFER_WIRE_H_
