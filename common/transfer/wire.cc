#include "common/transfer/wire.h"

#include <malloc.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "common/net/envelope_frame.h"

namespace stagefarm::transfer {

absl::StatusOr<digest::Digest> ParseDigest(capnp::Text::Reader text, absl::string_view what,
                                           absl::string_view peer) {
  absl::string_view value(text.cStr(), text.size());
  absl::StatusOr<digest::Digest> parsed = digest::Digest::Parse(value);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(peer, ": bad ", what, ": ", parsed.status().message()));
  }
  return parsed;
}

absl::StatusOr<std::vector<digest::Digest>> ParseDigestList(schema::DigestList::Reader list,
                                                            absl::string_view peer) {
  capnp::List<capnp::Text>::Reader digests = list.getDigests();
  if (digests.size() > kMaxDigestsPerRequest) {
    return absl::InvalidArgumentError(absl::StrCat(peer, ": ", digests.size(),
                                                    " digests in one request; at most ",
                                                    kMaxDigestsPerRequest, " are accepted"));
  }
  std::vector<digest::Digest> out;
  out.reserve(digests.size());
  for (capnp::Text::Reader text : digests) {
    absl::StatusOr<digest::Digest> parsed = ParseDigest(text, "digest", peer);
    if (!parsed.ok()) return parsed.status();
    out.push_back(*std::move(parsed));
  }
  return out;
}

void FillDigestList(absl::Span<const digest::Digest> digests, schema::DigestList::Builder out) {
  capnp::List<capnp::Text>::Builder list = out.initDigests(digests.size());
  for (size_t i = 0; i < digests.size(); ++i) list.set(i, digests[i].ToString());
}

absl::StatusOr<cas::BlobManifest> ParseManifest(schema::BlobManifest::Reader manifest,
                                                absl::string_view peer) {
  absl::StatusOr<digest::Digest> blob = ParseDigest(manifest.getDigest(), "blob digest", peer);
  if (!blob.ok()) return blob.status();
  cas::BlobManifest out{.digest = *std::move(blob),
                        .size = manifest.getSize(),
                        .chunks = {},
                        .media_type = std::string(manifest.getMediaType().cStr())};
  capnp::List<schema::ChunkRef>::Reader chunks = manifest.getChunks();
  out.chunks.reserve(chunks.size());
  for (schema::ChunkRef::Reader chunk : chunks) {
    absl::StatusOr<digest::Digest> digest =
        ParseDigest(chunk.getDigest(), absl::StrCat("chunk ", out.chunks.size(), " digest"), peer);
    if (!digest.ok()) return digest.status();
    out.chunks.push_back({*std::move(digest), chunk.getLength()});
  }
  return out;
}

void FillManifest(const cas::BlobManifest& manifest, schema::BlobManifest::Builder out) {
  out.setDigest(manifest.digest.ToString());
  out.setSize(manifest.size);
  out.setMediaType(manifest.media_type);
  capnp::List<schema::ChunkRef>::Builder chunks = out.initChunks(manifest.chunks.size());
  for (size_t i = 0; i < manifest.chunks.size(); ++i) {
    chunks[i].setDigest(manifest.chunks[i].digest.ToString());
    chunks[i].setLength(manifest.chunks[i].length);
  }
}

void KeepLargeBuffersMapped() {
  // Above the largest chunk, so chunk buffers come from the heap; and freed
  // heap memory is returned to the system only in large amounts.
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

zmq::message_t FrameFromString(std::string&& bytes) {
  auto owned = std::make_unique<std::string>(std::move(bytes));
  void* data = owned->data();
  const size_t size = owned->size();
  zmq::message_t frame(
      data, size, [](void*, void* hint) { delete static_cast<std::string*>(hint); }, owned.get());
  owned.release();
  return frame;
}

absl::StatusOr<zmq::socket_t> ConnectToPeer(zmq::context_t& context, const Peer& peer) {
  try {
    zmq::socket_t socket(context, zmq::socket_type::dealer);
    socket.set(zmq::sockopt::linger, 0);
    socket.set(zmq::sockopt::reconnect_ivl, 100);
    socket.set(zmq::sockopt::reconnect_ivl_max, 2000);
    socket.set(zmq::sockopt::sndtimeo, 1000);
    if (absl::Status status = peer.security.Apply(context, socket); !status.ok()) return status;
    if (absl::Status status = net::ApplyFrameLimits(socket); !status.ok()) return status;
    socket.connect(peer.endpoint);
    return socket;
  } catch (const zmq::error_t& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot connect to ", peer.endpoint, ": ", e.what()));
  }
}

}  // namespace stagefarm::transfer
