#include "worker/coordinator_link.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "capnp/serialize.h"
#include "schemas/cluster.capnp.h"
#include "schemas/envelope.capnp.h"

namespace stagefarm::worker {
namespace {

// Assignments are numbered from 1 by the coordinator, in the same envelope
// field as the link's own requests; an error reply to a stage event carries
// the assignment id. The link numbers its hellos and heartbeats from 2^63 so
// that such a reply is never taken for the answer to one of them.
constexpr uint64_t kFirstRequestId = uint64_t{1} << 63;

// Assignments carry whole Dockerfiles and context indexes.
const net::FrameLimits kLimits = {.max_envelope_bytes = size_t{16} << 20};

}  // namespace

class CoordinatorLink::Loop {
 public:
  static constexpr absl::Duration kFirstRetry = absl::Milliseconds(20);

  Loop(zmq::socket_t socket, CoordinatorLinkOptions options, CoordinatorLink& link)
      : socket_(std::move(socket)), options_(std::move(options)), link_(link) {}

  void Run() {
    absl::Time next_request = absl::Now();
    // After a failed send (the coordinator not listening yet, or gone), the
    // next try waits 20 ms, doubling up to a second: a worker started with
    // its coordinator joins as soon as it listens.
    absl::Duration retry = kFirstRetry;
    while (!link_.stop_.load()) {
      const absl::Time now = absl::Now();
      if (!pending_ && now >= next_request) {
        const absl::Status sent = link_.registered_.load() ? SendHeartbeat() : SendHello();
        if (!sent.ok()) {
          Lost(sent);
          next_request = now + retry;
          retry = std::min(retry * 2, absl::Seconds(1));
        } else {
          retry = kFirstRetry;
        }
      }
      if (pending_ && now >= pending_->deadline) {
        Lost(absl::DeadlineExceededError(
            absl::StrCat("no reply within ", absl::FormatDuration(options_.reply_timeout))));
        pending_.reset();
        next_request = now + absl::Seconds(1);
      }
      // Sleep until a message, a Send, the next request or a reply's
      // deadline, and never long, so that a stop is quick.
      absl::Time wake = pending_ ? pending_->deadline : next_request;
      wake = std::min(wake, now + absl::Milliseconds(20));
      zmq::pollitem_t items[] = {
          {static_cast<void*>(socket_), 0, ZMQ_POLLIN, 0},
          {nullptr, link_.wake_, ZMQ_POLLIN, 0},
      };
      const long timeout = std::max<long>(0, absl::ToInt64Milliseconds(wake - now) + 1);
      try {
        zmq::poll(items, 2, std::chrono::milliseconds(timeout));
      } catch (const zmq::error_t& e) {
        if (e.num() == ETERM) return;
        if (e.num() != EINTR) Log(absl::StrCat("poll: ", e.what()));
        continue;
      }
      if (items[1].revents & ZMQ_POLLIN) {
        uint64_t count = 0;
        if (read(link_.wake_, &count, sizeof count) < 0 && errno != EAGAIN) {
          Log(absl::StrCat("eventfd read: ", strerror(errno)));
        }
      }
      SendQueued();
      if (items[0].revents & ZMQ_POLLIN) {
        if (std::optional<absl::Time> next = ReceiveAll(); next) next_request = *next;
      }
    }
  }

 private:
  struct Pending {
    uint64_t id = 0;
    bool hello = false;
    absl::Time deadline;
  };

  void Log(const std::string& line) {
    if (options_.log) options_.log(line);
  }

  void Lost(const absl::Status& why) {
    link_.registered_.store(false);
    if (!announced_loss_) {
      Log(absl::StrCat("coordinator ", options_.coordinator, ": ", why.message()));
      announced_loss_ = true;
    }
  }

  void Welcomed() {
    if (!link_.registered_.load() || announced_loss_) {
      Log(absl::StrCat("welcomed by the coordinator at ", options_.coordinator));
    }
    announced_loss_ = false;
    link_.registered_.store(true);
  }

  // Sends what Send queued, in order. Once one message cannot be sent (the
  // coordinator unreachable for the send timeout), the rest of the batch is
  // dropped rather than waiting out the timeout for each.
  void SendQueued() {
    std::vector<zmq::message_t> queued;
    {
      absl::MutexLock lock(&link_.mu_);
      queued.swap(link_.outbox_);
    }
    for (size_t i = 0; i < queued.size(); ++i) {
      std::string error = "send timeout";
      try {
        if (socket_.send(queued[i], zmq::send_flags::none)) continue;
      } catch (const zmq::error_t& e) {
        error = e.what();
      }
      Log(absl::StrCat("coordinator ", options_.coordinator, ": ", queued.size() - i,
                       " stage event(s) not sent (", error, ")"));
      return;
    }
  }

  // Reads every message waiting. Returns when the next hello or heartbeat is
  // due when a reply to the pending one arrived.
  std::optional<absl::Time> ReceiveAll() {
    std::optional<absl::Time> next;
    for (;;) {
      absl::StatusOr<net::ReceivedMessage> message =
          net::ReceiveMessage(socket_, absl::ZeroDuration(), nullptr, kLimits);
      if (absl::IsDeadlineExceeded(message.status())) return next;
      if (!message.ok()) {
        Log(absl::StrCat("coordinator ", options_.coordinator, ": ", message.status().message()));
        if (absl::IsUnavailable(message.status())) return next;
        continue;
      }
      const schema::Envelope::Reader envelope = message->envelope();
      if (pending_ && envelope.getRequestId() == pending_->id) {
        const absl::StatusOr<absl::Duration> interval = OnReply(envelope);
        pending_.reset();
        if (interval.ok()) {
          next = absl::Now() + *interval;
        } else {
          Lost(interval.status());
          next = absl::Now() + absl::Seconds(1);
        }
        continue;
      }
      switch (envelope.which()) {
        case schema::Envelope::ASSIGN_STAGE:
        case schema::Envelope::CANCEL_STAGE:
          if (options_.on_message) options_.on_message(*message);
          break;
        case schema::Envelope::ERROR:
          // The coordinator refused a stage event (or answered a request
          // that timed out).
          if (envelope.getRequestId() < kFirstRequestId) {
            Log(absl::StrCat(
                "assignment ", envelope.getRequestId(), ": ",
                net::StatusFromError(envelope.getError(), options_.coordinator).message()));
          }
          break;
        default:
          break;  // a late reply to a request that timed out
      }
    }
  }

  // The outcome of the pending hello or heartbeat: when to send the next.
  absl::StatusOr<absl::Duration> OnReply(schema::Envelope::Reader envelope) {
    if (envelope.isError()) return net::StatusFromError(envelope.getError(), options_.coordinator);
    if (pending_->hello) {
      if (!envelope.isWelcome()) {
        return absl::InvalidArgumentError("answered workerHello with something other than welcome");
      }
      const schema::Welcome::Reader welcome = envelope.getWelcome();
      // Never slower than a third of the lease, whatever the coordinator asked.
      absl::Duration heartbeat = absl::Milliseconds(welcome.getHeartbeatMillis());
      const absl::Duration lease = absl::Milliseconds(welcome.getLeaseMillis());
      if (heartbeat <= absl::ZeroDuration() || heartbeat > lease / 3) heartbeat = lease / 3;
      if (heartbeat < absl::Milliseconds(50)) heartbeat = absl::Milliseconds(50);
      heartbeat_ = heartbeat;
      Welcomed();
      return heartbeat_;
    }
    if (!envelope.isHeartbeatAck()) {
      return absl::InvalidArgumentError("answered heartbeat with something other than an ack");
    }
    if (!envelope.getHeartbeatAck().getKnown()) {
      Log("the coordinator does not know this worker any more: saying hello again");
      link_.registered_.store(false);
      return absl::ZeroDuration();
    }
    Welcomed();
    return heartbeat_;
  }

  absl::Status SendRequest(capnp::MallocMessageBuilder& request, uint64_t id, bool hello) {
    if (absl::Status sent = net::SendMessage(socket_, "", request); !sent.ok()) return sent;
    pending_ = Pending{id, hello, absl::Now() + options_.reply_timeout};
    return absl::OkStatus();
  }

  absl::Status SendHello() {
    capnp::MallocMessageBuilder request;
    const uint64_t id = request_id_++;
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
    if (options_.holds) {
      const std::vector<std::string> holds = options_.holds();
      auto list = hello.initHolds(holds.size());
      for (size_t i = 0; i < holds.size(); ++i) list.set(i, holds[i]);
    }
    return SendRequest(request, id, true);
  }

  absl::Status SendHeartbeat() {
    capnp::MallocMessageBuilder request;
    const uint64_t id = request_id_++;
    auto beat = net::InitEnvelope(request, id).initHeartbeat();
    beat.setWorkerId(options_.worker_id);
    beat.setSlotsInUse(options_.slots_in_use ? options_.slots_in_use() : 0);
    beat.setStoreBytes(options_.store_bytes ? options_.store_bytes() : 0);
    return SendRequest(request, id, false);
  }

  zmq::socket_t socket_;
  CoordinatorLinkOptions options_;
  CoordinatorLink& link_;
  uint64_t request_id_ = kFirstRequestId;
  std::optional<Pending> pending_;
  bool announced_loss_ = false;
  absl::Duration heartbeat_ = absl::Seconds(1);
};

absl::StatusOr<std::unique_ptr<CoordinatorLink>> CoordinatorLink::Start(
    zmq::context_t& context, net::SocketSecurity security, CoordinatorLinkOptions options) {
  std::unique_ptr<CoordinatorLink> link(new CoordinatorLink());
  link->wake_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (link->wake_ < 0) return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  try {
    zmq::socket_t socket(context, zmq::socket_type::dealer);
    socket.set(zmq::sockopt::linger, 0);
    socket.set(zmq::sockopt::sndtimeo, 500);
    socket.set(zmq::sockopt::reconnect_ivl, 10);
    socket.set(zmq::sockopt::reconnect_ivl_max, 1000);
    // Replies to requests that timed out are dropped by request id; a
    // reconnect must not replay a backlog of old hellos and heartbeats.
    socket.set(zmq::sockopt::immediate, 1);
    if (absl::Status status = security.Apply(context, socket); !status.ok()) return status;
    if (absl::Status status = net::ApplyFrameLimits(socket, kLimits); !status.ok()) return status;
    socket.connect(options.coordinator);
    link->loop_ = std::make_unique<Loop>(std::move(socket), std::move(options), *link);
  } catch (const zmq::error_t& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot connect to the coordinator at ", options.coordinator, ": ", e.what()));
  }
  link->thread_ = std::thread([raw = link.get()] { raw->loop_->Run(); });
  return link;
}

void CoordinatorLink::Send(capnp::MessageBuilder& message) {
  const kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  const kj::ArrayPtr<const kj::byte> bytes = words.asBytes();
  {
    absl::MutexLock lock(&mu_);
    outbox_.emplace_back(bytes.begin(), bytes.size());
  }
  const uint64_t one = 1;
  // A full counter (it cannot be: the thread reads it) still leaves it readable.
  [[maybe_unused]] const ssize_t written = write(wake_, &one, sizeof one);
}

CoordinatorLink::~CoordinatorLink() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  loop_.reset();
  if (wake_ >= 0) close(wake_);
}

}  // namespace stagefarm::worker
