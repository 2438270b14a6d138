#include "common/transfer/blob_fetcher.h"

#include <capnp/message.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <memory>
#include <optional>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/net/envelope_frame.h"

namespace stagefarm::transfer {
namespace {

using digest::Digest;

// After a request to a holder times out, the holder is left alone for this
// long, doubling with each further timeout up to kMaxQuiet, so that a dead
// holder does not swallow a window of requests every round.
constexpr absl::Duration kFirstQuiet = absl::Milliseconds(200);
constexpr absl::Duration kMaxQuiet = absl::Seconds(5);

struct Holder {
  const Peer* peer;
  zmq::socket_t socket;
  size_t in_flight = 0;
  int faults = 0;
  bool dropped = false;
  absl::Duration quiet = absl::ZeroDuration();
  absl::Time quiet_until = absl::InfinitePast();
};

struct BlobState {
  Digest digest;
  std::unique_ptr<cas::BlobAssembler> assembler;  // set once a manifest arrived
  size_t manifest_holder = 0;
  std::vector<bool> lacks;         // holder i does not have the blob
  std::vector<int> stat_sends;     // manifest requests sent to holder i
  std::vector<bool> stat_waiting;  // a manifest request to holder i is outstanding
  bool done = false;
};

struct ChunkTask {
  size_t blob = 0;
  size_t index = 0;
  int attempts = 0;
  std::vector<bool> excluded;  // holder i sent bad bytes or lacks the chunk
};

struct Request {
  size_t holder = 0;
  size_t blob = 0;
  std::optional<ChunkTask> chunk;  // empty for a manifest request
  absl::Time sent;
};

// Verifies and stores received chunks on a thread of its own, so that the
// network thread keeps receiving and spending credit while a chunk is hashed
// and written (the two cost about the same). Results come back through
// TakeDone, announced on an eventfd the network thread polls.
class StoreWorker {
 public:
  struct Work {
    size_t blob;
    ChunkTask task;
    size_t holder;
    cas::BlobAssembler* assembler;
    zmq::message_t frame;
  };
  struct Done {
    size_t blob;
    ChunkTask task;
    size_t holder;
    absl::Status added;  // AddChunk's result
    uint64_t bytes = 0;
    // Set when this chunk completed the blob: Commit's result.
    std::optional<absl::Status> committed;
  };

  StoreWorker() : event_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)), thread_([this] { Loop(); }) {}
  ~StoreWorker() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    thread_.join();
    if (event_ >= 0) ::close(event_);
  }

  int event_fd() const { return event_; }

  void Push(Work work) {
    absl::MutexLock lock(&mu_);
    work_.push_back(std::move(work));
  }

  std::vector<Done> TakeDone() {
    uint64_t ignored;
    (void)!::read(event_, &ignored, sizeof ignored);
    absl::MutexLock lock(&mu_);
    std::vector<Done> done(std::make_move_iterator(done_.begin()),
                           std::make_move_iterator(done_.end()));
    done_.clear();
    return done;
  }

 private:
  void Loop() {
    while (true) {
      Work work;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](StoreWorker* self) { return self->stop_ || !self->work_.empty(); }, this));
        if (stop_) return;
        work = std::move(work_.front());
        work_.pop_front();
      }
      Done done{work.blob, std::move(work.task), work.holder, absl::OkStatus(), 0, std::nullopt};
      absl::string_view bytes(static_cast<const char*>(work.frame.data()), work.frame.size());
      done.added = work.assembler->AddChunk(done.task.index, bytes);
      if (done.added.ok()) {
        done.bytes = bytes.size();
        if (work.assembler->complete() && committed_.insert(work.assembler).second) {
          done.committed = work.assembler->Commit();
        }
      }
      {
        absl::MutexLock lock(&mu_);
        done_.push_back(std::move(done));
      }
      const uint64_t one = 1;
      (void)!::write(event_, &one, sizeof one);
    }
  }

  const int event_;
  absl::Mutex mu_;
  std::deque<Work> work_ ABSL_GUARDED_BY(mu_);
  std::deque<Done> done_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<cas::BlobAssembler*> committed_;  // worker thread only
  std::thread thread_;
};

class Fetch {
 public:
  Fetch(zmq::context_t& context, cas::BlobStore& store, absl::Span<const Peer> holders,
        const FetchOptions& options)
      : context_(context), store_(store), peers_(holders), options_(options) {}

  absl::StatusOr<FetchReport> Run(absl::Span<const Digest> wanted) {
    absl::StatusOr<std::vector<Digest>> missing = store_.FindMissing(wanted);
    if (!missing.ok()) return missing.status();
    absl::flat_hash_set<Digest> seen;
    for (Digest& blob : *missing) {
      if (!seen.insert(blob).second) continue;
      BlobState state{.digest = std::move(blob),
                      .assembler = nullptr,
                      .manifest_holder = 0,
                      .lacks = std::vector<bool>(peers_.size()),
                      .stat_sends = std::vector<int>(peers_.size()),
                      .stat_waiting = std::vector<bool>(peers_.size()),
                      .done = false};
      blobs_.push_back(std::move(state));
    }
    remaining_ = blobs_.size();
    if (remaining_ == 0) return report_;
    if (peers_.empty()) {
      return absl::NotFoundError(absl::StrCat(remaining_, " blobs are missing (first ",
                                              blobs_[0].digest.ToString(),
                                              ") and no holder was named"));
    }
    for (const Peer& peer : peers_) {
      absl::StatusOr<zmq::socket_t> socket = ConnectToPeer(context_, peer);
      if (!socket.ok()) return socket.status();
      holders_.push_back(Holder{.peer = &peer, .socket = *std::move(socket)});
    }
    worker_ = std::make_unique<StoreWorker>();
    if (worker_->event_fd() < 0) return absl::InternalError("eventfd failed");
    while (remaining_ > 0) {
      if (absl::Status status = Dispatch(); !status.ok()) return status;
      if (absl::Status status = ReceiveReplies(); !status.ok()) return status;
      if (absl::Status status = ExpireRequests(); !status.ok()) return status;
    }
    return report_;
  }

 private:
  bool Usable(const Holder& holder, absl::Time now) const {
    return !holder.dropped && holder.in_flight < options_.chunks_in_flight &&
           now >= holder.quiet_until;
  }

  absl::Status Dispatch() {
    const absl::Time now = absl::Now();
    // Manifests first: a blob's chunks are known only after one arrives.
    for (size_t b = 0; b < blobs_.size(); ++b) {
      BlobState& blob = blobs_[b];
      if (blob.done || blob.assembler != nullptr) continue;
      bool can_ask = false;
      for (size_t h = 0; h < holders_.size(); ++h) {
        if (blob.lacks[h] || holders_[h].dropped) continue;
        if (blob.stat_waiting[h]) {
          can_ask = true;
          continue;
        }
        if (blob.stat_sends[h] >= options_.max_attempts) continue;
        can_ask = true;
        if (!Usable(holders_[h], now)) continue;
        capnp::MallocMessageBuilder message;
        FillDigestList({&blob.digest, 1}, net::InitEnvelope(message, next_id_).initStatBlobs());
        ++blob.stat_sends[h];  // an attempt even if it cannot be queued
        if (!Send(h, message, Request{h, b, std::nullopt, now}).ok()) continue;
        blob.stat_waiting[h] = true;
      }
      if (!can_ask) return NoHolderFor(blob);
    }
    // Then chunks, the queue's head first, each to a holder that may have it,
    // unless the store worker is already that far behind.
    for (size_t round = 0; round < holders_.size() && !queue_.empty(); ++round) {
      bool sent_any = false;
      for (size_t h = 0; h < holders_.size() && !queue_.empty(); ++h) {
        if (queued_ >= options_.chunks_in_flight) break;
        if (!Usable(holders_[h], now)) continue;
        auto task = std::find_if(queue_.begin(), queue_.end(), [&](const ChunkTask& candidate) {
          return !candidate.excluded[h] && !blobs_[candidate.blob].lacks[h];
        });
        if (task == queue_.end()) continue;
        const BlobState& blob = blobs_[task->blob];
        const cas::ChunkRef& chunk = blob.assembler->manifest().chunks[task->index];
        capnp::MallocMessageBuilder message;
        schema::ChunkAddress::Builder address = net::InitEnvelope(message, next_id_).initGetChunk();
        address.setBlob(blob.digest.ToString());
        address.setIndex(static_cast<uint32_t>(task->index));
        address.setChunk(chunk.digest.ToString());
        ++task->attempts;  // an attempt even if it cannot be queued
        if (absl::Status status = Send(h, message, Request{h, task->blob, *task, now});
            !status.ok()) {
          if (task->attempts >= options_.max_attempts) {
            ChunkTask failed = *task;
            queue_.erase(task);
            return Retry(std::move(failed), status);
          }
          continue;
        }
        queue_.erase(task);
        sent_any = true;
      }
      if (!sent_any) break;
    }
    // A queued chunk that no holder may serve any more ends the fetch. Only
    // worth looking when a holder was excluded or dropped since last time.
    if (!eligibility_changed_) return absl::OkStatus();
    eligibility_changed_ = false;
    for (const ChunkTask& task : queue_) {
      bool possible = false;
      for (size_t h = 0; h < holders_.size(); ++h) {
        possible |= !holders_[h].dropped && !task.excluded[h] && !blobs_[task.blob].lacks[h];
      }
      if (!possible) {
        return absl::DataLossError(absl::StrCat("no holder can supply chunk ", task.index,
                                                " of blob ", blobs_[task.blob].digest.ToString(),
                                                ": ", DescribeFaults()));
      }
    }
    return absl::OkStatus();
  }

  // Sends a request to holder `h`. A send that cannot be queued (the peer is
  // unreachable and its queue full) backs off from the holder like a timeout.
  absl::Status Send(size_t h, capnp::MessageBuilder& message, Request request) {
    Holder& holder = holders_[h];
    absl::Status status = net::SendMessage(holder.socket, "", message);
    if (!status.ok()) {
      BackOff(holder, absl::Now());
      return status;
    }
    outstanding_.emplace(next_id_++, std::move(request));
    ++holder.in_flight;
    return absl::OkStatus();
  }

  absl::Status ReceiveReplies() {
    std::vector<zmq::pollitem_t> items;
    for (Holder& holder : holders_) {
      items.push_back({holder.socket.handle(), 0, ZMQ_POLLIN, 0});
    }
    items.push_back({nullptr, worker_->event_fd(), ZMQ_POLLIN, 0});
    absl::Duration wait = absl::Milliseconds(50);
    const absl::Time now = absl::Now();
    for (const auto& [id, request] : outstanding_) {
      wait = std::min(
          wait, std::max(absl::ZeroDuration(), request.sent + options_.request_timeout - now));
    }
    for (const Holder& holder : holders_) {
      if (holder.quiet_until > now) wait = std::min(wait, holder.quiet_until - now);
    }
    try {
      zmq::poll(items.data(), items.size(),
                std::chrono::milliseconds(std::max<int64_t>(1, absl::ToInt64Milliseconds(wait))));
    } catch (const zmq::error_t& e) {
      return absl::UnavailableError(absl::StrCat("polling holders failed: ", e.what()));
    }
    if ((items.back().revents & ZMQ_POLLIN) != 0) {
      if (absl::Status status = ProcessStored(); !status.ok()) return status;
      if (remaining_ == 0) return absl::OkStatus();
    }
    for (size_t h = 0; h < holders_.size(); ++h) {
      if ((items[h].revents & ZMQ_POLLIN) == 0) continue;
      // Drain what has arrived, but give other holders a turn now and then.
      for (int i = 0; i < 64; ++i) {
        net::ReplyAddress from;
        absl::StatusOr<net::ReceivedMessage> message =
            net::ReceiveMessage(holders_[h].socket, absl::ZeroDuration(), &from);
        if (absl::IsDeadlineExceeded(message.status())) break;
        absl::Status status =
            message.ok()
                ? HandleReply(h, *message)
                : Fault(h, absl::StrCat("sent a malformed message: ", message.status().message()));
        if (!status.ok()) return status;
        if (remaining_ == 0) return absl::OkStatus();
        // Spend the credit this reply returned at once, so the holder works
        // on the next chunks while this one is verified and stored.
        if (absl::Status refill = Dispatch(); !refill.ok()) return refill;
      }
    }
    return absl::OkStatus();
  }

  absl::Status HandleReply(size_t h, net::ReceivedMessage& message) {
    const schema::Envelope::Reader envelope = message.envelope();
    auto it = outstanding_.find(envelope.getRequestId());
    if (it == outstanding_.end() || it->second.holder != h) {
      return absl::OkStatus();  // a late reply to a request already sent again
    }
    Request request = std::move(it->second);
    outstanding_.erase(it);
    Holder& holder = holders_[h];
    --holder.in_flight;
    holder.quiet = absl::ZeroDuration();
    BlobState& blob = blobs_[request.blob];
    if (!request.chunk) blob.stat_waiting[h] = false;

    switch (envelope.which()) {
      case schema::Envelope::ERROR: {
        absl::Status error = net::StatusFromError(envelope.getError(), holder.peer->endpoint);
        if (absl::IsNotFound(error)) {
          if (!request.chunk) {
            blob.lacks[h] = true;
            eligibility_changed_ = true;
          } else {
            request.chunk->excluded[h] = true;
            eligibility_changed_ = true;
            queue_.push_front(*std::move(request.chunk));
          }
          return absl::OkStatus();
        }
        if (request.chunk) return Retry(*std::move(request.chunk), error);
        return absl::OkStatus();  // the manifest is asked for again next round
      }
      case schema::Envelope::BLOB_MANIFESTS:
        if (request.chunk) break;
        return HandleManifests(h, request.blob, envelope.getBlobManifests());
      case schema::Envelope::CHUNK_DATA:
        if (!request.chunk) break;
        return HandleChunk(h, *std::move(request.chunk), message.data_frames());
      default:
        break;
    }
    absl::Status status =
        Fault(h, absl::StrCat("answered a ", request.chunk ? "chunk" : "manifest",
                              " request with message kind ", static_cast<int>(envelope.which())));
    if (!status.ok()) return status;
    if (request.chunk) return Retry(*std::move(request.chunk), absl::OkStatus());
    return absl::OkStatus();
  }

  absl::Status HandleManifests(size_t h, size_t b, schema::BlobManifests::Reader reply) {
    BlobState& blob = blobs_[b];
    const std::string& peer = holders_[h].peer->endpoint;
    bool found = false;
    for (schema::BlobManifest::Reader entry : reply.getFound()) {
      absl::StatusOr<cas::BlobManifest> manifest = ParseManifest(entry, peer);
      if (!manifest.ok()) return Fault(h, manifest.status().message());
      if (manifest->digest != blob.digest) {
        return Fault(h, absl::StrCat("sent the manifest of ", manifest->digest.ToString(),
                                     " when asked for ", blob.digest.ToString()));
      }
      found = true;
      if (blob.assembler != nullptr || blob.done) return absl::OkStatus();
      absl::StatusOr<std::unique_ptr<cas::BlobAssembler>> assembler =
          store_.NewAssembler(*std::move(manifest));
      if (!assembler.ok()) {
        blob.lacks[h] = true;
        eligibility_changed_ = true;
        return Fault(h, assembler.status().message());
      }
      blob.assembler = *std::move(assembler);
      blob.manifest_holder = h;
      const std::vector<cas::ChunkRef>& chunks = blob.assembler->manifest().chunks;
      std::vector<size_t> needed = blob.assembler->MissingChunks();
      uint64_t needed_bytes = 0;
      for (size_t index : needed) {
        needed_bytes += chunks[index].length;
        queue_.push_back(ChunkTask{b, index, 0, std::vector<bool>(holders_.size())});
      }
      progress_.bytes_needed += needed_bytes;
      report_.bytes_already_local += blob.assembler->manifest().size - needed_bytes;
      if (blob.assembler->complete()) return CommitBlob(b);
    }
    if (!found) {
      blob.lacks[h] = true;
      eligibility_changed_ = true;
    }
    return absl::OkStatus();
  }

  absl::Status HandleChunk(size_t h, ChunkTask task, std::vector<zmq::message_t>& frames) {
    BlobState& blob = blobs_[task.blob];
    if (frames.size() != 1) {
      absl::Status status =
          Fault(h, absl::StrCat("sent chunk ", task.index, " of blob ", blob.digest.ToString(),
                                " in ", frames.size(), " data frames"));
      if (!status.ok()) return status;
      task.excluded[h] = true;
      eligibility_changed_ = true;
      return Retry(std::move(task), absl::OkStatus());
    }
    worker_->Push({task.blob, std::move(task), h, blob.assembler.get(), std::move(frames[0])});
    ++queued_;
    return absl::OkStatus();
  }

  // Takes the store worker's results: a corrupt chunk is a fault and fetched
  // again, a stored one is progress, and a completed blob is done.
  absl::Status ProcessStored() {
    for (StoreWorker::Done& done : worker_->TakeDone()) {
      --queued_;
      if (absl::IsDataLoss(done.added)) {
        if (absl::Status status = Fault(done.holder, done.added.message()); !status.ok()) {
          return status;
        }
        done.task.excluded[done.holder] = true;
        eligibility_changed_ = true;
        if (absl::Status status = Retry(std::move(done.task), done.added); !status.ok()) {
          return status;
        }
        continue;
      }
      if (!done.added.ok()) return done.added;
      report_.bytes_received += done.bytes;
      progress_.bytes_received += done.bytes;
      if (options_.on_progress) options_.on_progress(progress_);
      if (!done.committed) continue;
      BlobState& blob = blobs_[done.blob];
      if (absl::Status status = Committed(blob, *done.committed); !status.ok()) return status;
    }
    return absl::OkStatus();
  }

  // Records the outcome of committing `blob`.
  absl::Status Committed(BlobState& blob, const absl::Status& committed) {
    if (absl::IsInvalidArgument(committed)) {
      Fault(blob.manifest_holder,
            absl::StrCat("sent a chunk list that does not hash to its blob: ", committed.message()))
          .IgnoreError();
      return absl::DataLossError(committed.message());
    }
    if (!committed.ok()) return committed;
    blob.done = true;
    --remaining_;
    ++report_.blobs_fetched;
    return absl::OkStatus();
  }

  // Commits a blob whose chunks were all stored already (no worker involved).
  absl::Status CommitBlob(size_t b) {
    BlobState& blob = blobs_[b];
    return Committed(blob, blob.assembler->Commit());
  }

  // Queues `task` again unless it has been sent max_attempts times.
  absl::Status Retry(ChunkTask task, const absl::Status& last_error) {
    if (task.attempts >= options_.max_attempts) {
      return absl::UnavailableError(
          absl::StrCat("chunk ", task.index, " of blob ", blobs_[task.blob].digest.ToString(),
                       " could not be fetched in ", task.attempts, " attempts",
                       last_error.ok() ? "" : absl::StrCat(" (last: ", last_error.message(), ")"),
                       "; ", DescribeFaults()));
    }
    queue_.push_front(std::move(task));
    return absl::OkStatus();
  }

  // Records that holder `h` misbehaved; drops it after max_faults_per_peer.
  absl::Status Fault(size_t h, absl::string_view what) {
    Holder& holder = holders_[h];
    PeerFault fault{holder.peer->endpoint, std::string(what)};
    if (options_.on_fault) options_.on_fault(fault);
    report_.faults.push_back(std::move(fault));
    if (++holder.faults >= options_.max_faults_per_peer && !holder.dropped) {
      holder.dropped = true;
      eligibility_changed_ = true;
      // Its outstanding requests go to the others now.
      for (auto it = outstanding_.begin(); it != outstanding_.end();) {
        if (it->second.holder != h) {
          ++it;
          continue;
        }
        if (it->second.chunk) queue_.push_front(*std::move(it->second.chunk));
        blobs_[it->second.blob].stat_waiting[h] = false;
        outstanding_.erase(it++);
      }
      holder.in_flight = 0;
    }
    return absl::OkStatus();
  }

  absl::Status ExpireRequests() {
    const absl::Time now = absl::Now();
    for (auto it = outstanding_.begin(); it != outstanding_.end();) {
      Request& request = it->second;
      if (now - request.sent < options_.request_timeout) {
        ++it;
        continue;
      }
      Holder& holder = holders_[request.holder];
      --holder.in_flight;
      BackOff(holder, now);
      absl::Status timeout =
          absl::DeadlineExceededError(absl::StrCat(holder.peer->endpoint, " did not answer within ",
                                                   absl::FormatDuration(options_.request_timeout)));
      std::optional<ChunkTask> chunk = std::move(request.chunk);
      blobs_[request.blob].stat_waiting[request.holder] = false;
      outstanding_.erase(it++);
      if (chunk) {
        if (absl::Status status = Retry(*std::move(chunk), timeout); !status.ok()) return status;
      }
    }
    return absl::OkStatus();
  }

  static void BackOff(Holder& holder, absl::Time now) {
    holder.quiet =
        std::min(kMaxQuiet, holder.quiet == absl::ZeroDuration() ? kFirstQuiet : holder.quiet * 2);
    holder.quiet_until = now + holder.quiet;
  }

  absl::Status NoHolderFor(const BlobState& blob) const {
    std::vector<std::string> lacking;
    std::vector<std::string> silent;
    for (size_t h = 0; h < holders_.size(); ++h) {
      (blob.lacks[h] ? lacking : silent).push_back(holders_[h].peer->endpoint);
    }
    if (silent.empty()) {
      return absl::NotFoundError(absl::StrCat(
          "blob ", blob.digest.ToString(), " is held by none of ", absl::StrJoin(lacking, ", ")));
    }
    return absl::UnavailableError(absl::StrCat(
        "blob ", blob.digest.ToString(), ": no answer from ", absl::StrJoin(silent, ", "),
        " after ", options_.max_attempts, " attempts",
        lacking.empty() ? "" : absl::StrCat("; not held by ", absl::StrJoin(lacking, ", ")),
        report_.faults.empty() ? "" : absl::StrCat("; ", DescribeFaults())));
  }

  std::string DescribeFaults() const {
    if (report_.faults.empty()) return "no peer faults";
    const PeerFault& last = report_.faults.back();
    return absl::StrCat(report_.faults.size(), " peer faults, last from ", last.peer, ": ",
                        last.what);
  }

  zmq::context_t& context_;
  cas::BlobStore& store_;
  absl::Span<const Peer> peers_;
  const FetchOptions& options_;
  std::vector<Holder> holders_;
  std::vector<BlobState> blobs_;
  std::deque<ChunkTask> queue_;
  absl::flat_hash_map<uint64_t, Request> outstanding_;
  uint64_t next_id_ = 1;
  size_t remaining_ = 0;
  size_t queued_ = 0;  // chunks with the store worker
  // A holder was excluded for a chunk or blob, or dropped, since Dispatch
  // last checked that every queued chunk still has a possible holder.
  bool eligibility_changed_ = false;
  FetchReport report_;
  FetchProgress progress_;
  // Last, so it stops before the assemblers it uses are destroyed.
  std::unique_ptr<StoreWorker> worker_;
};

}  // namespace

absl::StatusOr<FetchReport> FetchBlobs(zmq::context_t& context, cas::BlobStore& store,
                                       absl::Span<const Digest> blobs,
                                       absl::Span<const Peer> holders,
                                       const FetchOptions& options) {
  Fetch fetch(context, store, holders, options);
  return fetch.Run(blobs);
}

}  // namespace stagefarm::transfer

namespace stagefarm::transfer {

absl::StatusOr<std::vector<digest::Digest>> StatBlobs(zmq::context_t& context, const Peer& holder,
                                                      absl::Span<const digest::Digest> blobs,
                                                      absl::Duration timeout) {
  absl::StatusOr<zmq::socket_t> socket = ConnectToPeer(context, holder);
  if (!socket.ok()) return socket.status();
  std::vector<digest::Digest> missing;
  const absl::Time deadline = absl::Now() + timeout;
  uint64_t request_id = 0;
  for (size_t start = 0; start < blobs.size(); start += kMaxDigestsPerRequest) {
    const absl::Span<const digest::Digest> batch =
        blobs.subspan(start, std::min(kMaxDigestsPerRequest, blobs.size() - start));
    capnp::MallocMessageBuilder message;
    FillDigestList(batch, net::InitEnvelope(message, ++request_id).initStatBlobs());
    absl::Status sent = net::SendMessage(*socket, "", message);
    if (!sent.ok()) return sent;
    for (;;) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        return absl::UnavailableError(absl::StrCat(holder.endpoint, ": no answer to statBlobs in ",
                                                   absl::FormatDuration(timeout)));
      }
      absl::StatusOr<net::ReceivedMessage> reply = net::ReceiveMessage(*socket, left);
      if (!reply.ok()) {
        if (reply.status().code() == absl::StatusCode::kDeadlineExceeded) continue;
        return reply.status();
      }
      const schema::Envelope::Reader envelope = reply->envelope();
      if (envelope.getRequestId() != request_id) continue;  // a late answer
      if (envelope.isError()) return net::StatusFromError(envelope.getError(), holder.endpoint);
      if (!envelope.isBlobManifests()) {
        return absl::InvalidArgumentError(absl::StrCat(holder.endpoint,
                                                       ": answered statBlobs with message kind ",
                                                       static_cast<int>(envelope.which())));
      }
      for (capnp::Text::Reader text : envelope.getBlobManifests().getMissing()) {
        absl::StatusOr<digest::Digest> blob = ParseDigest(text, "missing", holder.endpoint);
        if (!blob.ok()) return blob.status();
        missing.push_back(*blob);
      }
      break;
    }
  }
  return missing;
}

}  // namespace stagefarm::transfer
