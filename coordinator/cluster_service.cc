#include "coordinator/cluster_service.h"

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "capnp/message.h"
#include "common/oci/platform.h"
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
      return absl::InvalidArgumentError(absl::StrCat("worker \"", absl::CHexEscape(offer.id),
                                                     "\": platform: ",
                                                     platform.status().message()));
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

void FillStatus(const WorkerState& state, absl::Time now, schema::WorkerStatus::Builder out) {
  const WorkerOffer& offer = state.offer;
  out.setWorkerId(offer.id);
  auto platforms = out.initPlatforms(offer.platforms.size());
  for (size_t i = 0; i < offer.platforms.size(); ++i) platforms.set(i, offer.platforms[i].String());
  out.setSlots(offer.slots);
  out.setSlotsInUse(state.slots_in_use);
  out.setBlobEndpoint(offer.blob_endpoint);
  out.setStoreBytes(offer.store_bytes);
  out.setStoreCapBytes(offer.store_cap_bytes);
  out.setVersion(offer.version);
  auto labels = out.initLabels(offer.labels.size());
  for (size_t i = 0; i < offer.labels.size(); ++i) labels.set(i, offer.labels[i]);
  out.setSinceHeartbeatMillis(
      static_cast<uint64_t>(absl::ToInt64Milliseconds(std::max(now - state.last_heard,
                                                               absl::ZeroDuration()))));
  out.setDraining(state.draining);
  out.setPublicKey(offer.public_key);
}

}  // namespace

class ClusterService::Loop {
 public:
  Loop(zmq::socket_t socket, ClusterServiceOptions options)
      : socket_(std::move(socket)), options_(std::move(options)), registry_(options_.lease) {}

  void Run(const std::atomic<bool>& stop) {
    while (!stop.load()) {
      net::ReplyAddress from;
      absl::StatusOr<net::ReceivedMessage> message =
          net::ReceiveMessage(socket_, absl::Milliseconds(100), &from, options_.limits);
      ExpireLeases();
      if (message.ok()) {
        absl::Status status = Handle(*message);
        if (!status.ok()) net::SendError(socket_, from, status).IgnoreError();
        continue;
      }
      const absl::StatusCode code = message.status().code();
      if (code == absl::StatusCode::kDeadlineExceeded) continue;
      if (code == absl::StatusCode::kUnavailable) return;  // the context is closing
      net::SendError(socket_, from, message.status()).IgnoreError();
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
    }
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
        const std::string summary =
            absl::StrCat("worker ", id, " joined from ", message.from().peer, ": ", offer->slots,
                         " slot(s), blobs on ", offer->blob_endpoint);
        {
          absl::MutexLock lock(&mu_);
          absl::Status registered = registry_.Register(*std::move(offer), absl::Now());
          if (!registered.ok()) return registered;
        }
        Log(summary);
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
          auto list = out.initClusterStatusReply().initWorkers(workers.size());
          for (size_t i = 0; i < workers.size(); ++i) FillStatus(workers[i], now, list[i]);
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
            absl::StrCat(message.from().peer, ": message kind ",
                         static_cast<int>(envelope.which()),
                         " is not served on the coordinator's control socket"));
    }
  }

  zmq::socket_t socket_;
  ClusterServiceOptions options_;
  mutable absl::Mutex mu_;
  WorkerRegistry registry_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::unique_ptr<ClusterService>> ClusterService::Start(
    zmq::context_t& context, net::SocketSecurity security, ClusterServiceOptions options) {
  std::unique_ptr<ClusterService> service(new ClusterService());
  absl::StatusOr<zmq::socket_t> socket = net::BindRouter(
      context, security, options.endpoint, options.limits, "the cluster", &service->endpoint_);
  if (!socket.ok()) return socket.status();
  service->loop_ = std::make_unique<Loop>(*std::move(socket), std::move(options));
  service->thread_ = std::thread([raw = service.get()] { raw->loop_->Run(raw->stop_); });
  return service;
}

ClusterService::~ClusterService() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

std::vector<WorkerState> ClusterService::Workers() const { return loop_->Workers(); }

}  // namespace stagefarm::coordinator
