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

// Manifests are asked for in batches of this many blobs (a build context is
// thousands of small blobs: one request each would cost a round trip each),
// at most kManifestRequestsInFlight requests to a holder at a time. A holder
// whose answer would pass its envelope limit says so (ResourceExhausted);
// its batch is halved then.
constexpr size_t kManifestBatch = 256;
constexpr size_t kManifestRequestsInFlight = 2;

struct Holder {
  const Peer* peer;
  zmq::socket_t socket;
  size_t chunks_out = 0;         // chunk requests outstanding
  uint64_t chunk_bytes_out = 0;  // their bytes
  size_t manifests_out = 0;      // manifest requests outstanding
  size_t manifest_batch = kManifestBatch;
  // Blobs whose manifest this holder is to be asked for, in order; entries
  // that need no asking any more are skipped when taken.
  std::deque<size_t> to_ask{};
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
  std::vector<size_t> blobs;       // a manifest request: the blobs asked about
  std::optional<ChunkTask> chunk;  // a chunk request
  uint64_t chunk_bytes = 0;
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
    uint64_t bytes = 0;  // received; stored too when `added` is OK
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
      absl::string_view bytes(static_cast<const char*>(work.frame.data()), work.frame.size());
      Done done{work.blob,        std::move(work.task), work.holder,
                absl::OkStatus(), bytes.size(),         std::nullopt};
      done.added = work.assembler->AddChunk(done.task.index, bytes);
      if (done.added.ok()) {
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
      index_.emplace(blob, blobs_.size());
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
      Holder holder{.peer = &peer, .socket = *std::move(socket)};
      for (size_t b = 0; b < blobs_.size(); ++b) holder.to_ask.push_back(b);
      holders_.push_back(std::move(holder));
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
  bool Awake(const Holder& holder, absl::Time now) const {
    return !holder.dropped && now >= holder.quiet_until;
  }
  // A holder's credit: chunk requests and their bytes outstanding. One
  // request is always allowed, so a chunk larger than the byte window moves.
  bool HasChunkCredit(const Holder& holder) const {
    return holder.chunks_out < options_.chunks_in_flight &&
           (holder.chunks_out == 0 || holder.chunk_bytes_out < options_.bytes_in_flight);
  }
  // The store worker's backlog, bounded the same way.
  bool StoreKeepsUp() const {
    return queued_ < options_.chunks_in_flight &&
           (queued_ == 0 || queued_bytes_ < options_.bytes_in_flight);
  }

  absl::Status Dispatch() {
    const absl::Time now = absl::Now();
    // Manifests first: a blob's chunks are known only after one arrives.
    for (size_t h = 0; h < holders_.size(); ++h) {
      if (absl::Status status = AskManifests(h, now); !status.ok()) return status;
    }
    // Then chunks, the queue's head first, each to a holder that may have it,
    // unless the store worker is already that far behind.
    while (!queue_.empty()) {
      bool sent_any = false;
      for (size_t h = 0; h < holders_.size() && !queue_.empty(); ++h) {
        if (!StoreKeepsUp()) break;
        Holder& holder = holders_[h];
        if (!Awake(holder, now) || !HasChunkCredit(holder)) continue;
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
        Request request{
            .holder = h, .blobs = {}, .chunk = *task, .chunk_bytes = chunk.length, .sent = now};
        if (absl::Status status = Send(h, message, std::move(request)); !status.ok()) {
          if (task->attempts >= options_.max_attempts) {
            ChunkTask failed = *task;
            queue_.erase(task);
            return Retry(std::move(failed), status);
          }
          continue;
        }
        ++holder.chunks_out;
        holder.chunk_bytes_out += chunk.length;
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

  // Sends holder `h` batches of the manifests it is still to be asked for.
  absl::Status AskManifests(size_t h, absl::Time now) {
    Holder& holder = holders_[h];
    while (holder.manifests_out < kManifestRequestsInFlight && Awake(holder, now) &&
           !holder.to_ask.empty()) {
      std::vector<size_t> batch;
      while (!holder.to_ask.empty() && batch.size() < holder.manifest_batch) {
        const size_t b = holder.to_ask.front();
        holder.to_ask.pop_front();
        const BlobState& blob = blobs_[b];
        if (blob.done || blob.assembler != nullptr || blob.lacks[h] || blob.stat_waiting[h]) {
          continue;
        }
        batch.push_back(b);
      }
      if (batch.empty()) break;
      std::vector<Digest> digests;
      digests.reserve(batch.size());
      for (size_t b : batch) {
        digests.push_back(blobs_[b].digest);
        ++blobs_[b].stat_sends[h];  // an attempt even if it cannot be queued
      }
      capnp::MallocMessageBuilder message;
      FillDigestList(digests, net::InitEnvelope(message, next_id_).initStatBlobs());
      Request request{
          .holder = h, .blobs = batch, .chunk = std::nullopt, .chunk_bytes = 0, .sent = now};
      if (!Send(h, message, std::move(request)).ok()) {
        return ManifestsUnanswered(h, batch, /*count_attempt=*/true);
      }
      ++holder.manifests_out;
      for (size_t b : batch) blobs_[b].stat_waiting[h] = true;
    }
    return absl::OkStatus();
  }

  // Holder `h` gave no usable answer for the manifests of `batch`: each is
  // asked again (of `h` too while it has attempts left), and a blob no
  // holder can be asked for any more ends the fetch. Without `count_attempt`
  // the request does not count against the attempts.
  absl::Status ManifestsUnanswered(size_t h, absl::Span<const size_t> batch, bool count_attempt) {
    for (auto it = batch.rbegin(); it != batch.rend(); ++it) {
      BlobState& blob = blobs_[*it];
      blob.stat_waiting[h] = false;
      if (!count_attempt) --blob.stat_sends[h];
      if (blob.stat_sends[h] < options_.max_attempts) holders_[h].to_ask.push_front(*it);
    }
    for (size_t b : batch) {
      if (absl::Status status = CheckAskable(b); !status.ok()) return status;
    }
    return absl::OkStatus();
  }

  // NotFound or Unavailable when blob `b` still needs a manifest and no
  // holder has one to give or attempts left.
  absl::Status CheckAskable(size_t b) const {
    const BlobState& blob = blobs_[b];
    if (blob.done || blob.assembler != nullptr) return absl::OkStatus();
    for (size_t h = 0; h < holders_.size(); ++h) {
      if (blob.lacks[h] || holders_[h].dropped) continue;
      if (blob.stat_waiting[h] || blob.stat_sends[h] < options_.max_attempts) {
        return absl::OkStatus();
      }
    }
    return NoHolderFor(blob);
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
    return absl::OkStatus();
  }

  // Forgets an outstanding request: its holder's credit comes back.
  Request Settle(absl::flat_hash_map<uint64_t, Request>::iterator it) {
    Request request = std::move(it->second);
    outstanding_.erase(it);
    Holder& holder = holders_[request.holder];
    if (request.chunk) {
      --holder.chunks_out;
      holder.chunk_bytes_out -= request.chunk_bytes;
    } else {
      --holder.manifests_out;
    }
    return request;
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
    Request request = Settle(it);
    Holder& holder = holders_[h];
    holder.quiet = absl::ZeroDuration();

    switch (envelope.which()) {
      case schema::Envelope::ERROR: {
        absl::Status error = net::StatusFromError(envelope.getError(), holder.peer->endpoint);
        if (!request.chunk) {
          if (absl::IsResourceExhausted(error) && request.blobs.size() > 1) {
            holder.manifest_batch = std::max<size_t>(1, request.blobs.size() / 2);
            return ManifestsUnanswered(h, request.blobs, /*count_attempt=*/false);
          }
          if (absl::IsNotFound(error)) {
            for (size_t b : request.blobs) blobs_[b].lacks[h] = true;
            eligibility_changed_ = true;
          }
          return ManifestsUnanswered(h, request.blobs, /*count_attempt=*/true);
        }
        if (absl::IsNotFound(error)) {
          request.chunk->excluded[h] = true;
          eligibility_changed_ = true;
          queue_.push_front(*std::move(request.chunk));
          return absl::OkStatus();
        }
        return Retry(*std::move(request.chunk), error);
      }
      case schema::Envelope::BLOB_MANIFESTS:
        if (request.chunk) break;
        return HandleManifests(h, request.blobs, envelope.getBlobManifests());
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
    return ManifestsUnanswered(h, request.blobs, /*count_attempt=*/true);
  }

  // Holder `h`'s answer about the blobs `asked`: each is found (with its
  // manifest) or missing there; one the answer leaves out is asked again.
  absl::Status HandleManifests(size_t h, absl::Span<const size_t> asked,
                               schema::BlobManifests::Reader reply) {
    const std::string& peer = holders_[h].peer->endpoint;
    absl::flat_hash_set<size_t> unanswered(asked.begin(), asked.end());
    for (schema::BlobManifest::Reader entry : reply.getFound()) {
      absl::StatusOr<cas::BlobManifest> manifest = ParseManifest(entry, peer);
      if (!manifest.ok()) return FaultAndAskAgain(h, manifest.status().message(), unanswered);
      auto known = index_.find(manifest->digest);
      if (known == index_.end() || !unanswered.contains(known->second)) {
        return FaultAndAskAgain(
            h,
            absl::StrCat("sent the manifest of ", manifest->digest.ToString(), ", not asked for"),
            unanswered);
      }
      const size_t b = known->second;
      unanswered.erase(b);
      BlobState& blob = blobs_[b];
      blob.stat_waiting[h] = false;
      if (blob.assembler != nullptr || blob.done) continue;
      absl::StatusOr<std::unique_ptr<cas::BlobAssembler>> assembler =
          store_.NewAssembler(*std::move(manifest));
      if (!assembler.ok()) {
        blob.lacks[h] = true;
        eligibility_changed_ = true;
        if (absl::Status status = Fault(h, assembler.status().message()); !status.ok()) {
          return status;
        }
        if (absl::Status status = CheckAskable(b); !status.ok()) return status;
        continue;
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
      if (blob.assembler->complete()) {
        if (absl::Status status = CommitBlob(b); !status.ok()) return status;
      }
    }
    for (capnp::Text::Reader text : reply.getMissing()) {
      absl::StatusOr<Digest> digest = ParseDigest(text, "missing", peer);
      if (!digest.ok()) return FaultAndAskAgain(h, digest.status().message(), unanswered);
      auto known = index_.find(*digest);
      if (known == index_.end() || !unanswered.contains(known->second)) continue;
      const size_t b = known->second;
      unanswered.erase(b);
      blobs_[b].stat_waiting[h] = false;
      blobs_[b].lacks[h] = true;
      eligibility_changed_ = true;
      if (absl::Status status = CheckAskable(b); !status.ok()) return status;
    }
    std::vector<size_t> again;
    for (size_t b : asked) {
      if (unanswered.contains(b)) again.push_back(b);
    }
    return ManifestsUnanswered(h, again, /*count_attempt=*/true);
  }

  // A fault of holder `h` in the middle of a manifest answer: the blobs it
  // has not answered for yet are asked again.
  absl::Status FaultAndAskAgain(size_t h, absl::string_view what,
                                const absl::flat_hash_set<size_t>& unanswered) {
    if (absl::Status status = Fault(h, what); !status.ok()) return status;
    std::vector<size_t> again(unanswered.begin(), unanswered.end());
    std::sort(again.begin(), again.end());
    return ManifestsUnanswered(h, again, /*count_attempt=*/true);
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
    queued_bytes_ += frames[0].size();
    ++queued_;
    worker_->Push({task.blob, std::move(task), h, blob.assembler.get(), std::move(frames[0])});
    return absl::OkStatus();
  }

  // Takes the store worker's results: a corrupt chunk is a fault and fetched
  // again, a stored one is progress, and a completed blob is done.
  absl::Status ProcessStored() {
    for (StoreWorker::Done& done : worker_->TakeDone()) {
      --queued_;
      queued_bytes_ -= done.bytes;
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
    if (++holder.faults < options_.max_faults_per_peer || holder.dropped) {
      return absl::OkStatus();
    }
    holder.dropped = true;
    eligibility_changed_ = true;
    // Its outstanding requests go to the others now.
    for (auto it = outstanding_.begin(); it != outstanding_.end();) {
      if (it->second.holder != h) {
        ++it;
        continue;
      }
      Request request = Settle(it++);
      if (request.chunk) queue_.push_front(*std::move(request.chunk));
      for (size_t b : request.blobs) blobs_[b].stat_waiting[h] = false;
    }
    holder.to_ask.clear();
    // Blobs that only it could still have been asked about have no source.
    for (size_t b = 0; b < blobs_.size(); ++b) {
      if (absl::Status status = CheckAskable(b); !status.ok()) return status;
    }
    return absl::OkStatus();
  }

  absl::Status ExpireRequests() {
    const absl::Time now = absl::Now();
    for (auto it = outstanding_.begin(); it != outstanding_.end();) {
      if (now - it->second.sent < options_.request_timeout) {
        ++it;
        continue;
      }
      Request request = Settle(it++);
      Holder& holder = holders_[request.holder];
      BackOff(holder, now);
      absl::Status timeout =
          absl::DeadlineExceededError(absl::StrCat(holder.peer->endpoint, " did not answer within ",
                                                   absl::FormatDuration(options_.request_timeout)));
      if (request.chunk) {
        if (absl::Status status = Retry(*std::move(request.chunk), timeout); !status.ok()) {
          return status;
        }
        continue;
      }
      if (absl::Status status =
              ManifestsUnanswered(request.holder, request.blobs, /*count_attempt=*/true);
          !status.ok()) {
        return status;
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
  absl::flat_hash_map<Digest, size_t> index_;  // blob digest -> its index in blobs_
  std::deque<ChunkTask> queue_;
  absl::flat_hash_map<uint64_t, Request> outstanding_;
  uint64_t next_id_ = 1;
  size_t remaining_ = 0;
  size_t queued_ = 0;          // chunks with the store worker
  uint64_t queued_bytes_ = 0;  // and their bytes
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
