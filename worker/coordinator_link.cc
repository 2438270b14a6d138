#include "worker/coordinator_link.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "capnp/message.h"
#include "common/net/envelope_frame.h"
#include "schemas/cluster.capnp.h"
#include "schemas/envelope.capnp.h"

namespace stagefarm::worker {

class CoordinatorLink::Loop {
 public:
  Loop(zmq::socket_t socket, CoordinatorLinkOptions options, std::atomic<bool>& registered)
      : socket_(std::move(socket)), options_(std::move(options)), registered_(registered) {}

  void Run(const std::atomic<bool>& stop) {
    stop_ = &stop;
    absl::Duration interval = absl::Seconds(1);
    bool announced_loss = false;
    while (!stop.load()) {
      const bool was_registered = registered_.load();
      absl::StatusOr<absl::Duration> result = was_registered ? SendHeartbeat() : SendHello();
      if (result.ok()) {
        if (!was_registered || announced_loss) {
          Log(absl::StrCat("welcomed by the coordinator at ", options_.coordinator));
        }
        announced_loss = false;
        interval = *result;
      } else {
        registered_.store(false);
        if (!announced_loss) {
          Log(absl::StrCat("coordinator ", options_.coordinator, ": ", result.status().message()));
          announced_loss = true;
        }
        interval = absl::Seconds(1);
      }
      // Sleep in small steps so that a stop is quick.
      for (absl::Time until = absl::Now() + interval; !stop.load() && absl::Now() < until;) {
        absl::SleepFor(std::min(absl::Milliseconds(50), until - absl::Now()));
      }
    }
  }

 private:
  void Log(const std::string& line) {
    if (options_.log) options_.log(line);
  }

  // Sends `request` and waits for its reply, skipping late replies to earlier
  // requests.
  absl::StatusOr<net::ReceivedMessage> Exchange(capnp::MallocMessageBuilder& request,
                                                uint64_t request_id) {
    if (absl::Status sent = net::SendMessage(socket_, "", request); !sent.ok()) return sent;
    const absl::Time deadline = absl::Now() + options_.reply_timeout;
    for (;;) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        return absl::DeadlineExceededError(absl::StrCat(
            "no reply within ", absl::FormatDuration(options_.reply_timeout)));
      }
      if (stop_ != nullptr && stop_->load()) return absl::CancelledError("stopping");
      // Short waits, so that a stop is noticed quickly.
      absl::StatusOr<net::ReceivedMessage> reply =
          net::ReceiveMessage(socket_, std::min(left, absl::Milliseconds(100)));
      if (absl::IsDeadlineExceeded(reply.status())) continue;
      if (!reply.ok()) return reply.status();
      if (reply->envelope().getRequestId() != request_id) continue;
      if (reply->envelope().isError()) {
        return net::StatusFromError(reply->envelope().getError(), options_.coordinator);
      }
      return reply;
    }
  }

  absl::StatusOr<absl::Duration> SendHello() {
    capnp::MallocMessageBuilder request;
    const uint64_t id = ++request_id_;
    auto hello = net::InitEnvelope(request, id).initWorkerHello();
    hello.setWorkerId(options_.worker_id);
    auto platforms = hello.initPlatforms(options_.platforms.size());
    for (size_t i = 0; i < options_.platforms.size(); ++i) platforms.set(i, options_.platforms[i]);
    hello.setSlots(options_.slots);
    hello.setBlobEndpoint(options_.blob_endpoint);
    hello.setStoreBytes(options_.store_bytes ? options_.store_bytes() : 0);
    hello.setStoreCapBytes(options_.store_cap_bytes);
    hello.setVersion(options_.version);
    auto labels = hello.initLabels(options_.labels.size());
    for (size_t i = 0; i < options_.labels.size(); ++i) labels.set(i, options_.labels[i]);
    absl::StatusOr<net::ReceivedMessage> reply = Exchange(request, id);
    if (!reply.ok()) return reply.status();
    if (!reply->envelope().isWelcome()) {
      return absl::InvalidArgumentError("answered workerHello with something other than welcome");
    }
    const schema::Welcome::Reader welcome = reply->envelope().getWelcome();
    // Never slower than a third of the lease, whatever the coordinator asked.
    absl::Duration heartbeat = absl::Milliseconds(welcome.getHeartbeatMillis());
    const absl::Duration lease = absl::Milliseconds(welcome.getLeaseMillis());
    if (heartbeat <= absl::ZeroDuration() || heartbeat > lease / 3) heartbeat = lease / 3;
    if (heartbeat < absl::Milliseconds(50)) heartbeat = absl::Milliseconds(50);
    heartbeat_ = heartbeat;
    registered_.store(true);
    return heartbeat_;
  }

  absl::StatusOr<absl::Duration> SendHeartbeat() {
    capnp::MallocMessageBuilder request;
    const uint64_t id = ++request_id_;
    auto beat = net::InitEnvelope(request, id).initHeartbeat();
    beat.setWorkerId(options_.worker_id);
    beat.setSlotsInUse(options_.slots_in_use ? options_.slots_in_use() : 0);
    beat.setStoreBytes(options_.store_bytes ? options_.store_bytes() : 0);
    absl::StatusOr<net::ReceivedMessage> reply = Exchange(request, id);
    if (!reply.ok()) return reply.status();
    if (!reply->envelope().isHeartbeatAck()) {
      return absl::InvalidArgumentError("answered heartbeat with something other than an ack");
    }
    if (!reply->envelope().getHeartbeatAck().getKnown()) {
      Log("the coordinator does not know this worker any more: saying hello again");
      registered_.store(false);
      return SendHello();
    }
    return heartbeat_;
  }

  zmq::socket_t socket_;
  CoordinatorLinkOptions options_;
  std::atomic<bool>& registered_;
  uint64_t request_id_ = 0;
  const std::atomic<bool>* stop_ = nullptr;
  absl::Duration heartbeat_ = absl::Seconds(1);
};

absl::StatusOr<std::unique_ptr<CoordinatorLink>> CoordinatorLink::Start(
    zmq::context_t& context, net::SocketSecurity security, CoordinatorLinkOptions options) {
  std::unique_ptr<CoordinatorLink> link(new CoordinatorLink());
  try {
    zmq::socket_t socket(context, zmq::socket_type::dealer);
    socket.set(zmq::sockopt::linger, 0);
    socket.set(zmq::sockopt::sndtimeo, 500);
    // Replies to requests that timed out are dropped by request id; a
    // reconnect must not replay a backlog of old hellos and heartbeats.
    socket.set(zmq::sockopt::immediate, 1);
    if (absl::Status status = security.Apply(context, socket); !status.ok()) return status;
    if (absl::Status status = net::ApplyFrameLimits(socket); !status.ok()) return status;
    socket.connect(options.coordinator);
    link->loop_ = std::make_unique<Loop>(std::move(socket), std::move(options), link->registered_);
  } catch (const zmq::error_t& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot connect to the coordinator at ", options.coordinator, ": ", e.what()));
  }
  link->thread_ = std::thread([raw = link.get()] { raw->loop_->Run(raw->stop_); });
  return link;
}

CoordinatorLink::~CoordinatorLink() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

}  // namespace stagefarm::worker
