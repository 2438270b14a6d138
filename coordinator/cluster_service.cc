#include "coordinator/cluster_service.h"

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "capnp/message.h"
#include "common/oci/platform.h"
#include "common/transfer/blob_fetcher.h"
#include "common/transfer/wire.h"
#include "schemas/build.capnp.h"
#include "schemas/cluster.capnp.h"
#include "schemas/envelope.capnp.h"

namespace stagefarm::coordinator {
namespace {

// A WorkerHello as the registry takes it. InvalidArgument naming a platform
// that does not parse.
absl::StatusOr<WorkerOffer> OfferFrom(schema::WorkerHello::Reader hello,
                                      const net::ReplyAddress& from) {
  WorkerOffer offer;
  offer.id = hello.getWorkerId().cStr();
  for (capnp::Text::Reader text : hello.getPlatforms()) {
    absl::StatusOr<oci::Platform> platform = oci::ParsePlatform(text.cStr());
    if (!platform.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "worker \"", absl::CHexEscape(offer.id), "\": platform: ", platform.status().message()));
    }
    offer.platforms.push_back(*std::move(platform));
  }
  offer.slots = hello.getSlots();
  offer.blob_endpoint = hello.getBlobEndpoint().cStr();
  offer.store_bytes = hello.getStoreBytes();
  offer.store_cap_bytes = hello.getStoreCapBytes();
  offer.version = hello.getVersion().cStr();
  for (capnp::Text::Reader label : hello.getLabels()) offer.labels.push_back(label.cStr());
  offer.public_key = from.public_key;
  offer.routing_id = from.routing_id;
  return offer;
}

void FillStatus(const WorkerState& state, const BuildScheduler& scheduler, absl::Time now,
                schema::WorkerStatus::Builder out) {
  const WorkerOffer& offer = state.offer;
  out.setWorkerId(offer.id);
  auto platforms = out.initPlatforms(offer.platforms.size());
  for (size_t i = 0; i < offer.platforms.size(); ++i) platforms.set(i, offer.platforms[i].String());
  out.setSlots(offer.slots);
  out.setSlotsInUse(scheduler.SlotsUsed(offer.id));
  out.setBlobEndpoint(offer.blob_endpoint);
  out.setStoreBytes(offer.store_bytes);
  out.setStoreCapBytes(offer.store_cap_bytes);
  out.setVersion(offer.version);
  auto labels = out.initLabels(offer.labels.size());
  for (size_t i = 0; i < offer.labels.size(); ++i) labels.set(i, offer.labels[i]);
  out.setSinceHeartbeatMillis(static_cast<uint64_t>(
      absl::ToInt64Milliseconds(std::max(now - state.last_heard, absl::ZeroDuration()))));
  out.setDraining(state.draining);
  out.setPublicKey(offer.public_key);
  const std::vector<std::string> running = scheduler.RunningOn(offer.id);
  auto list = out.initRunning(running.size());
  for (size_t i = 0; i < running.size(); ++i) list.set(i, running[i]);
}

}  // namespace

class ClusterService::Loop {
 public:
  // Messages handled before each scheduling pass, at most.
  static constexpr int kBatch = 256;

  Loop(zmq::context_t& context, zmq::socket_t socket, ClusterServiceOptions options)
      : context_(context),
        socket_(std::move(socket)),
        options_(std::move(options)),
        registry_(options_.lease),
        scheduler_(SchedulerOptions()) {}

  void Run(const std::atomic<bool>& stop) {
    while (!stop.load()) {
      // Every message waiting is handled before stages are dispatched once:
      // a burst of stage events costs one scheduling pass, not one each.
      absl::Duration wait = absl::Milliseconds(20);
      for (int handled = 0; handled < kBatch; ++handled) {
        net::ReplyAddress from;
        absl::StatusOr<net::ReceivedMessage> message =
            net::ReceiveMessage(socket_, wait, &from, options_.limits);
        wait = absl::ZeroDuration();
        if (message.ok()) {
          absl::Status status = Handle(*message);
          if (!status.ok()) net::SendError(socket_, from, status).IgnoreError();
          continue;
        }
        const absl::StatusCode code = message.status().code();
        if (code == absl::StatusCode::kDeadlineExceeded) break;
        if (code == absl::StatusCode::kUnavailable) return;  // the context is closing
        net::SendError(socket_, from, message.status()).IgnoreError();
      }
      ExpireLeases();
      Dispatch();
    }
  }

  std::vector<WorkerState> Workers() const {
    absl::MutexLock lock(&mu_);
    std::vector<WorkerState> out;
    for (const auto& [id, state] : registry_.workers()) out.push_back(state);
    return out;
  }

 private:
  void Log(const std::string& line) {
    if (options_.log) options_.log(line);
  }

  void ExpireLeases() {
    std::vector<std::string> dropped;
    {
      absl::MutexLock lock(&mu_);
      dropped = registry_.Expire(absl::Now());
    }
    for (const std::string& id : dropped) {
      Log(absl::StrCat("worker ", id, " dropped: no heartbeat for ",
                       absl::FormatDuration(options_.lease)));
      scheduler_.OnWorkerLost(id, absl::Now());
    }
  }

  void Dispatch() {
    absl::MutexLock lock(&mu_);
    scheduler_.Dispatch(registry_.workers(), absl::Now());
  }

  BuildSchedulerOptions SchedulerOptions() {
    BuildSchedulerOptions out;
    out.coordinator_blobs = options_.blobs;
    out.cache_store = options_.store;
    out.max_attempts = options_.max_attempts;
    out.no_worker_grace = options_.no_worker_grace;
    out.log = options_.log;
    // "worker:ID" addresses a worker by id (the scheduler does not keep
    // routing ids, which change when a worker reconnects).
    out.send = [this](const std::string& to, capnp::MessageBuilder& message,
                      std::vector<zmq::message_t> data_frames) -> absl::Status {
      std::string routing_id = to;
      if (absl::StartsWith(to, "worker:")) {
        auto it = registry_.workers().find(absl::string_view(to).substr(7));
        if (it == registry_.workers().end()) {
          return absl::NotFoundError(absl::StrCat(to, " is not connected"));
        }
        routing_id = it->second.offer.routing_id;
      }
      return net::SendMessage(socket_, routing_id, message, std::move(data_frames));
    };
    if (options_.peer_security) {
      out.check_holds = [this](const WorkerOffer& worker,
                               absl::Span<const digest::Digest> blobs) -> absl::Status {
        return CheckHolds(worker, blobs);
      };
    }
    return out;
  }

  // Asks `worker`'s blob server whether it holds every one of `blobs`.
  absl::Status CheckHolds(const WorkerOffer& worker, absl::Span<const digest::Digest> blobs) {
    if (blobs.empty()) return absl::OkStatus();
    absl::StatusOr<net::SocketSecurity> security = options_.peer_security(worker.public_key);
    if (!security.ok()) return security.status();
    absl::StatusOr<std::vector<digest::Digest>> missing =
        transfer::StatBlobs(context_, transfer::Peer{worker.blob_endpoint, *std::move(security)},
                            blobs, absl::Seconds(2));
    if (!missing.ok()) return missing.status();
    if (!missing->empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "its blob server on ", worker.blob_endpoint, " does not hold ", (*missing)[0].ToString(),
          missing->size() > 1 ? absl::StrCat(" and ", missing->size() - 1, " more") : ""));
    }
    return absl::OkStatus();
  }

  // The registered worker that sent `message`, by its routing id.
  const WorkerState* Sender(const net::ReceivedMessage& message) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return registry_.ByRoutingId(message.from().routing_id);
  }

  absl::Status Reply(const net::ReceivedMessage& request,
                     const std::function<void(schema::Envelope::Builder)>& fill) {
    capnp::MallocMessageBuilder reply;
    fill(net::InitEnvelope(reply, request.envelope().getRequestId()));
    return net::SendMessage(socket_, request.from().routing_id, reply);
  }

  absl::Status Handle(const net::ReceivedMessage& message) {
    const schema::Envelope::Reader envelope = message.envelope();
    switch (envelope.which()) {
      case schema::Envelope::PING:
        return Reply(message, [](schema::Envelope::Builder out) { out.setPong(); });
      case schema::Envelope::WORKER_HELLO: {
        absl::StatusOr<WorkerOffer> offer = OfferFrom(envelope.getWorkerHello(), message.from());
        if (!offer.ok()) return offer.status();
        const std::string id = offer->id;
        std::vector<digest::Digest> holds;
        for (capnp::Text::Reader text : envelope.getWorkerHello().getHolds()) {
          absl::StatusOr<digest::Digest> blob =
              transfer::ParseDigest(text, "holds", message.from().peer);
          if (!blob.ok()) return blob.status();
          holds.push_back(*blob);
        }
        const std::string summary =
            absl::StrCat("worker ", id, " joined from ", message.from().peer, ": ", offer->slots,
                         " slot(s), blobs on ", offer->blob_endpoint);
        {
          absl::MutexLock lock(&mu_);
          absl::Status registered = registry_.Register(*offer, absl::Now());
          if (!registered.ok()) return registered;
          scheduler_.OnWorkerJoined(*offer, holds);
        }
        Log(absl::StrCat(
            summary,
            holds.empty() ? "" : absl::StrCat(", holding ", holds.size(), " result blob(s)")));
        return Reply(message, [&](schema::Envelope::Builder out) {
          auto welcome = out.initWelcome();
          welcome.setLeaseMillis(static_cast<uint32_t>(absl::ToInt64Milliseconds(options_.lease)));
          welcome.setHeartbeatMillis(
              static_cast<uint32_t>(absl::ToInt64Milliseconds(options_.heartbeat)));
        });
      }
      case schema::Envelope::HEARTBEAT: {
        const schema::Heartbeat::Reader beat = envelope.getHeartbeat();
        bool known = false;
        {
          absl::MutexLock lock(&mu_);
          known = registry_.Heartbeat(beat.getWorkerId().cStr(), message.from().public_key,
                                      beat.getSlotsInUse(), beat.getStoreBytes(), absl::Now());
        }
        return Reply(message, [known](schema::Envelope::Builder out) {
          out.initHeartbeatAck().setKnown(known);
        });
      }
      case schema::Envelope::CLUSTER_STATUS: {
        const std::vector<WorkerState> workers = Workers();
        const absl::Time now = absl::Now();
        return Reply(message, [&](schema::Envelope::Builder out) {
          auto status = out.initClusterStatusReply();
          auto list = status.initWorkers(workers.size());
          for (size_t i = 0; i < workers.size(); ++i) {
            FillStatus(workers[i], scheduler_, now, list[i]);
          }
          status.setBlobEndpoint(options_.blobs.endpoint);
          status.setPublicKey(options_.blobs.public_key);
          status.setActiveBuilds(static_cast<uint32_t>(scheduler_.active_builds()));
        });
      }
      case schema::Envelope::SUBMIT_BUILD: {
        absl::StatusOr<SubmitResult> accepted;
        {
          absl::MutexLock lock(&mu_);
          accepted = scheduler_.Submit(message.from().routing_id, envelope.getRequestId(),
                                       envelope.getSubmitBuild(), absl::Now());
        }
        if (!accepted.ok()) {
          Log(absl::StrCat("build from ", message.from().peer,
                           " refused: ", accepted.status().message()));
          return accepted.status();
        }
        absl::Status replied = Reply(message, [&](schema::Envelope::Builder out) {
          auto reply = out.initBuildAccepted();
          reply.setBuildId(accepted->build_id);
          reply.setStages(accepted->stages);
        });
        absl::MutexLock lock(&mu_);
        scheduler_.Start(accepted->build_id, absl::Now());
        return replied;
      }
      case schema::Envelope::CANCEL_BUILD: {
        {
          absl::MutexLock lock(&mu_);
          absl::Status cancelled = scheduler_.Cancel(envelope.getCancelBuild().cStr(), absl::Now());
          if (!cancelled.ok()) return cancelled;
        }
        return Reply(message, [](schema::Envelope::Builder out) { out.setCancelled(); });
      }
      case schema::Envelope::STAGE_EVENT: {
        absl::MutexLock lock(&mu_);
        const WorkerState* worker = Sender(message);
        if (worker == nullptr) {
          const absl::Status refused = absl::PermissionDeniedError(absl::StrCat(
              message.from().peer, ": stage event from a peer that is not a registered worker"));
          Log(std::string(refused.message()));
          return refused;
        }
        absl::Status handled = scheduler_.OnStageEvent(*worker, envelope.getRequestId(),
                                                       envelope.getStageEvent(), absl::Now());
        if (!handled.ok()) {
          Log(absl::StrCat("stage event refused: ", handled.message()));
          return handled;
        }
        return absl::OkStatus();
      }
      case schema::Envelope::LOCATE_BLOBS: {
        absl::StatusOr<std::vector<digest::Digest>> blobs =
            transfer::ParseDigestList(envelope.getLocateBlobs(), message.from().peer);
        if (!blobs.ok()) return blobs.status();
        return Reply(message, [&](schema::Envelope::Builder out) {
          auto list = out.initBlobLocations(blobs->size());
          absl::MutexLock lock(&mu_);
          for (size_t i = 0; i < blobs->size(); ++i) {
            list[i].setDigest((*blobs)[i].ToString());
            const std::vector<BlobHolder> holders = scheduler_.Holders((*blobs)[i]);
            auto holder_list = list[i].initHolders(holders.size());
            for (size_t k = 0; k < holders.size(); ++k) {
              holder_list[k].setEndpoint(holders[k].endpoint);
              holder_list[k].setPublicKey(holders[k].public_key);
            }
          }
        });
      }
      case schema::Envelope::DRAIN_WORKER: {
        const std::string id = envelope.getDrainWorker().cStr();
        {
          absl::MutexLock lock(&mu_);
          absl::Status drained = registry_.Drain(id);
          if (!drained.ok()) return drained;
        }
        Log(absl::StrCat("worker ", id, " is draining (asked by ", message.from().peer, ")"));
        return Reply(message, [](schema::Envelope::Builder out) { out.setDrained(); });
      }
      default:
        return absl::UnimplementedError(
            absl::StrCat(message.from().peer, ": message kind ", static_cast<int>(envelope.which()),
                         " is not served on the coordinator's control socket"));
    }
  }

  zmq::context_t& context_;
  zmq::socket_t socket_;
  ClusterServiceOptions options_;
  mutable absl::Mutex mu_;
  WorkerRegistry registry_ ABSL_GUARDED_BY(mu_);
  // Used on the loop's thread only (its calls happen under mu_ anyway, as
  // they read the registry).
  BuildScheduler scheduler_;
};

absl::StatusOr<std::unique_ptr<ClusterService>> ClusterService::Start(
    zmq::context_t& context, net::SocketSecurity security, ClusterServiceOptions options) {
  std::unique_ptr<ClusterService> service(new ClusterService());
  absl::StatusOr<zmq::socket_t> socket = net::BindRouter(
      context, security, options.endpoint, options.limits, "the cluster", &service->endpoint_);
  if (!socket.ok()) return socket.status();
  service->loop_ = std::make_unique<Loop>(context, *std::move(socket), std::move(options));
  service->thread_ = std::thread([raw = service.get()] { raw->loop_->Run(raw->stop_); });
  return service;
}

ClusterService::~ClusterService() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

std::vector<WorkerState> ClusterService::Workers() const { return loop_->Workers(); }

}  // namespace stagefarm::coordinator
