#include "common/transfer/blob_server.h"

#include <capnp/message.h>

#include <cstdio>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/transfer/wire.h"

namespace stagefarm::transfer {

using digest::Digest;

// The server's state, used only on its thread (stats excepted).
class BlobServer::Loop {
 public:
  Loop(zmq::socket_t socket, cas::BlobStore& store, BlobServerOptions options)
      : socket_(std::move(socket)), store_(store), options_(std::move(options)) {}

  void Run(const std::atomic<bool>& stop) {
    while (!stop.load()) {
      net::ReplyAddress from;
      absl::StatusOr<net::ReceivedMessage> message =
          net::ReceiveMessage(socket_, absl::Milliseconds(20), &from, options_.limits);
      DropIdleSessions();
      if (message.ok()) {
        absl::Status status = Handle(*message);
        if (!status.ok()) Reply(from, status);
        continue;
      }
      const absl::StatusCode code = message.status().code();
      if (code == absl::StatusCode::kDeadlineExceeded) continue;
      if (code == absl::StatusCode::kUnavailable) return;  // the context is closing
      Reply(from, message.status());
    }
  }

  BlobServerStats stats() const {
    absl::MutexLock lock(&stats_mu_);
    return stats_;
  }

 private:
  struct SessionKey {
    std::string routing_id;
    std::string blob;
    template <typename H>
    friend H AbslHashValue(H state, const SessionKey& key) {
      return H::combine(std::move(state), key.routing_id, key.blob);
    }
    friend bool operator==(const SessionKey&, const SessionKey&) = default;
  };
  struct Session {
    std::unique_ptr<cas::BlobAssembler> assembler;
    absl::Time last_used;
  };

  absl::Status Handle(net::ReceivedMessage& message) {
    const schema::Envelope::Reader envelope = message.envelope();
    const net::ReplyAddress& from = message.from();
    const size_t data_frames = message.data_frames().size();
    auto expect_frames = [&](size_t wanted, absl::string_view kind) -> absl::Status {
      if (data_frames == wanted) return absl::OkStatus();
      return absl::InvalidArgumentError(absl::StrCat(
          from.peer, ": ", kind, " carries ", data_frames, " data frames, expected ", wanted));
    };
    switch (envelope.which()) {
      case schema::Envelope::PING: {
        capnp::MallocMessageBuilder reply;
        net::InitEnvelope(reply, from.request_id).setPong();
        return Send(from, reply);
      }
      case schema::Envelope::STAT_BLOBS:
        if (absl::Status status = expect_frames(0, "statBlobs"); !status.ok()) return status;
        return StatBlobs(from, envelope.getStatBlobs());
      case schema::Envelope::GET_CHUNK:
        if (absl::Status status = expect_frames(0, "getChunk"); !status.ok()) return status;
        return GetChunk(from, envelope.getGetChunk());
      case schema::Envelope::FIND_MISSING:
        if (absl::Status status = expect_frames(0, "findMissing"); !status.ok()) return status;
        return FindMissing(from, envelope.getFindMissing());
      case schema::Envelope::PUT_BLOB:
        if (absl::Status status = expect_frames(1, "putBlob"); !status.ok()) return status;
        return PutBlob(from, envelope.getPutBlob(), message.data_frames()[0]);
      case schema::Envelope::OFFER_BLOB:
        if (absl::Status status = expect_frames(0, "offerBlob"); !status.ok()) return status;
        return OfferBlob(from, envelope.getOfferBlob());
      case schema::Envelope::PUT_CHUNK:
        if (absl::Status status = expect_frames(1, "putChunk"); !status.ok()) return status;
        return PutChunk(from, envelope.getPutChunk(), message.data_frames()[0]);
      case schema::Envelope::COMMIT_BLOB:
        if (absl::Status status = expect_frames(0, "commitBlob"); !status.ok()) return status;
        return CommitBlob(from, envelope.getCommitBlob());
      default:
        return absl::UnimplementedError(absl::StrCat(from.peer, ": message kind ",
                                                     static_cast<int>(envelope.which()),
                                                     " is not a request a blob server answers"));
    }
  }

  absl::Status StatBlobs(const net::ReplyAddress& from, schema::DigestList::Reader request) {
    absl::StatusOr<std::vector<Digest>> blobs = ParseDigestList(request, from.peer);
    if (!blobs.ok()) return blobs.status();
    std::vector<cas::BlobManifest> found;
    std::vector<Digest> missing;
    for (const Digest& blob : *blobs) {
      absl::StatusOr<cas::BlobManifest> manifest = store_.Manifest(blob);
      if (manifest.ok()) {
        found.push_back(*std::move(manifest));
      } else if (absl::IsNotFound(manifest.status())) {
        missing.push_back(blob);
      } else {
        return manifest.status();
      }
    }
    capnp::MallocMessageBuilder reply;
    schema::BlobManifests::Builder manifests =
        net::InitEnvelope(reply, from.request_id).initBlobManifests();
    capnp::List<schema::BlobManifest>::Builder list = manifests.initFound(found.size());
    for (size_t i = 0; i < found.size(); ++i) FillManifest(found[i], list[i]);
    capnp::List<capnp::Text>::Builder absent = manifests.initMissing(missing.size());
    for (size_t i = 0; i < missing.size(); ++i) absent.set(i, missing[i].ToString());
    if (reply.sizeInWords() * sizeof(capnp::word) > options_.limits.max_envelope_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the manifests of ", blobs->size(), " blobs exceed the envelope limit of ",
          options_.limits.max_envelope_bytes, " bytes; ask for fewer blobs at a time"));
    }
    if (absl::Status status = Send(from, reply); !status.ok()) return status;
    absl::MutexLock lock(&stats_mu_);
    ++stats_.manifest_requests;
    return absl::OkStatus();
  }

  absl::Status GetChunk(const net::ReplyAddress& from, schema::ChunkAddress::Reader request) {
    absl::StatusOr<Digest> chunk = ParseDigest(request.getChunk(), "chunk digest", from.peer);
    if (!chunk.ok()) return chunk.status();
    std::string bytes;
    if (absl::Status status = store_.ReadChunkBytes(*chunk, &bytes); !status.ok()) {
      if (absl::IsNotFound(status)) {
        return absl::NotFoundError(absl::StrCat("chunk ", request.getIndex(), " (",
                                                chunk->ToString(), ") of blob ",
                                                request.getBlob().cStr(), " is not held here"));
      }
      return status;
    }
    if (options_.tamper_chunk) options_.tamper_chunk(*chunk, bytes);
    capnp::MallocMessageBuilder reply;
    net::InitEnvelope(reply, from.request_id).setChunkData(request);
    const uint64_t size = bytes.size();
    std::vector<zmq::message_t> frames;
    frames.push_back(FrameFromString(std::move(bytes)));
    if (absl::Status status = net::SendMessage(socket_, from.routing_id, reply, std::move(frames));
        !status.ok()) {
      return status;
    }
    absl::MutexLock lock(&stats_mu_);
    ++stats_.chunks_sent;
    stats_.bytes_sent += size;
    return absl::OkStatus();
  }

  absl::Status FindMissing(const net::ReplyAddress& from, schema::DigestList::Reader request) {
    absl::StatusOr<std::vector<Digest>> blobs = ParseDigestList(request, from.peer);
    if (!blobs.ok()) return blobs.status();
    absl::StatusOr<std::vector<Digest>> missing = store_.FindMissing(*blobs);
    if (!missing.ok()) return missing.status();
    capnp::MallocMessageBuilder reply;
    FillDigestList(*missing, net::InitEnvelope(reply, from.request_id).initMissingBlobs());
    return Send(from, reply);
  }

  absl::Status PutBlob(const net::ReplyAddress& from, schema::BlobPut::Reader request,
                       const zmq::message_t& data) {
    absl::StatusOr<Digest> blob = ParseDigest(request.getDigest(), "blob digest", from.peer);
    if (!blob.ok()) return blob.status();
    absl::string_view bytes(static_cast<const char*>(data.data()), data.size());
    if (absl::Status status = store_.Put(bytes, *blob, request.getMediaType().cStr());
        !status.ok()) {
      return status;
    }
    RecordReceived(bytes.size());
    return ReplyStored(from, *blob);
  }

  absl::Status OfferBlob(const net::ReplyAddress& from, schema::BlobManifest::Reader request) {
    absl::StatusOr<cas::BlobManifest> manifest = ParseManifest(request, from.peer);
    if (!manifest.ok()) return manifest.status();
    SessionKey key{from.routing_id, manifest->digest.ToString()};
    std::vector<size_t> wanted;
    absl::StatusOr<bool> has = store_.Has(manifest->digest);
    if (!has.ok()) return has.status();
    if (!*has) {
      auto it = FindSession(key);
      if (it == sessions_.end()) {
        if (sessions_.size() >= options_.max_upload_sessions) {
          return absl::ResourceExhaustedError(absl::StrCat("too many uploads in progress (",
                                                           sessions_.size(), "); retry blob ",
                                                           key.blob, " later"));
        }
        absl::StatusOr<std::unique_ptr<cas::BlobAssembler>> assembler =
            store_.NewAssembler(*std::move(manifest));
        if (!assembler.ok()) return assembler.status();
        it = sessions_.emplace(key, Session{*std::move(assembler), absl::Now()}).first;
      }
      it->second.last_used = absl::Now();
      wanted = it->second.assembler->MissingChunks();
    }
    capnp::MallocMessageBuilder reply;
    schema::OfferReply::Builder offer = net::InitEnvelope(reply, from.request_id).initOfferReply();
    offer.setBlob(key.blob);
    capnp::List<uint32_t>::Builder list = offer.initWanted(wanted.size());
    for (size_t i = 0; i < wanted.size(); ++i) list.set(i, static_cast<uint32_t>(wanted[i]));
    return Send(from, reply);
  }

  absl::Status PutChunk(const net::ReplyAddress& from, schema::ChunkAddress::Reader request,
                        const zmq::message_t& data) {
    absl::StatusOr<Digest> blob = ParseDigest(request.getBlob(), "blob digest", from.peer);
    if (!blob.ok()) return blob.status();
    auto it = FindSession(SessionKey{from.routing_id, blob->ToString()});
    if (it == sessions_.end()) {
      return absl::FailedPreconditionError(absl::StrCat("no upload of blob ", blob->ToString(),
                                                        " is in progress for ", from.peer,
                                                        " (offer it first; idle uploads expire)"));
    }
    it->second.last_used = absl::Now();
    absl::string_view bytes(static_cast<const char*>(data.data()), data.size());
    if (absl::Status status = it->second.assembler->AddChunk(request.getIndex(), bytes);
        !status.ok()) {
      return status;
    }
    RecordReceived(bytes.size());
    capnp::MallocMessageBuilder reply;
    net::InitEnvelope(reply, from.request_id).setChunkStored(request);
    return Send(from, reply);
  }

  absl::Status CommitBlob(const net::ReplyAddress& from, schema::BlobPut::Reader request) {
    absl::StatusOr<Digest> blob = ParseDigest(request.getDigest(), "blob digest", from.peer);
    if (!blob.ok()) return blob.status();
    auto it = FindSession(SessionKey{from.routing_id, blob->ToString()});
    if (it == sessions_.end()) {
      absl::StatusOr<bool> has = store_.Has(*blob);
      if (!has.ok()) return has.status();
      if (*has) return ReplyStored(from, *blob);
      return absl::FailedPreconditionError(
          absl::StrCat("no upload of blob ", blob->ToString(), " is in progress for ", from.peer));
    }
    std::unique_ptr<cas::BlobAssembler> assembler = std::move(it->second.assembler);
    sessions_.erase(it);
    if (absl::Status status = assembler->Commit(); !status.ok()) return status;
    {
      absl::MutexLock lock(&stats_mu_);
      ++stats_.blobs_received;
    }
    return ReplyStored(from, *blob);
  }

  absl::Status ReplyStored(const net::ReplyAddress& from, const Digest& blob) {
    capnp::MallocMessageBuilder reply;
    net::InitEnvelope(reply, from.request_id).initBlobStored().setDigest(blob.ToString());
    return Send(from, reply);
  }

  void RecordReceived(uint64_t bytes) {
    absl::MutexLock lock(&stats_mu_);
    stats_.bytes_received += bytes;
  }

  // The session for `key` unless it has been idle too long (then it is
  // dropped): expiry is exact here, whenever the sweep below last ran.
  absl::flat_hash_map<SessionKey, Session>::iterator FindSession(const SessionKey& key) {
    auto it = sessions_.find(key);
    if (it != sessions_.end() &&
        absl::Now() - it->second.last_used > options_.upload_idle_timeout) {
      sessions_.erase(it);
      return sessions_.end();
    }
    return it;
  }

  // Frees idle sessions at most once a second: it runs between messages, and
  // a chunk stream is many messages a second.
  void DropIdleSessions() {
    const absl::Time now = absl::Now();
    if (now - last_sweep_ < absl::Seconds(1)) return;
    last_sweep_ = now;
    absl::erase_if(sessions_, [&](const auto& entry) {
      return now - entry.second.last_used > options_.upload_idle_timeout;
    });
  }

  absl::Status Send(const net::ReplyAddress& to, capnp::MessageBuilder& reply) {
    return net::SendMessage(socket_, to.routing_id, reply);
  }

  // Errors go back to the peer; one that cannot be sent (the peer left) is
  // only counted.
  void Reply(const net::ReplyAddress& to, const absl::Status& status) {
    {
      absl::MutexLock lock(&stats_mu_);
      ++stats_.errors_sent;
    }
    if (to.routing_id.empty()) return;
    net::SendError(socket_, to, status).IgnoreError();
  }

  zmq::socket_t socket_;
  cas::BlobStore& store_;
  BlobServerOptions options_;
  absl::flat_hash_map<SessionKey, Session> sessions_;
  absl::Time last_sweep_ = absl::InfinitePast();
  mutable absl::Mutex stats_mu_;
  BlobServerStats stats_ ABSL_GUARDED_BY(stats_mu_);
};

absl::StatusOr<std::unique_ptr<BlobServer>> BlobServer::Start(zmq::context_t& context,
                                                              cas::BlobStore& store,
                                                              net::SocketSecurity security,
                                                              BlobServerOptions options) {
  std::unique_ptr<BlobServer> server(new BlobServer());
  absl::StatusOr<zmq::socket_t> socket = net::BindRouter(
      context, security, options.endpoint, options.limits, "blobs", &server->endpoint_);
  if (!socket.ok()) return socket.status();
  server->loop_ = std::make_unique<Loop>(*std::move(socket), store, std::move(options));
  server->thread_ = std::thread([raw = server.get()] { raw->loop_->Run(raw->stop_); });
  return server;
}

BlobServer::~BlobServer() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

BlobServerStats BlobServer::stats() const { return loop_->stats(); }

}  // namespace stagefarm::transfer
