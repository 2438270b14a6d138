#include "common/net/zap_authenticator.h"

#include <zmq.h>

#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/net/curve_keys.h"

namespace stagefarm::net {
namespace {

constexpr char kZapEndpoint[] = "inproc://zeromq.zap.01";
constexpr absl::string_view kZapVersion = "1.0";

// Contexts with a running authenticator, by libzmq handle.
absl::Mutex registry_mutex;
absl::flat_hash_set<const void*>& Registry() ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mutex) {
  static auto* registry = new absl::flat_hash_set<const void*>();
  return *registry;
}

absl::string_view View(const zmq::message_t& message) {
  return absl::string_view(message.data<char>(), message.size());
}

}  // namespace

absl::StatusOr<std::unique_ptr<ZapAuthenticator>> ZapAuthenticator::Start(
    zmq::context_t& context, absl::flat_hash_set<std::string> authorized_keys,
    RejectCallback on_reject) {
  {
    absl::MutexLock lock(&registry_mutex);
    if (!Registry().insert(context.handle()).second) {
      return absl::AlreadyExistsError(
          absl::StrCat("a ZAP authenticator already runs on ", kZapEndpoint, " in this context"));
    }
  }
  std::unique_ptr<ZapAuthenticator> authenticator;
  try {
    authenticator.reset(
        new ZapAuthenticator(context, std::move(authorized_keys), std::move(on_reject)));
  } catch (const zmq::error_t& e) {
    absl::MutexLock lock(&registry_mutex);
    Registry().erase(context.handle());
    if (e.num() == EADDRINUSE) {
      return absl::AlreadyExistsError(
          absl::StrCat("cannot bind ", kZapEndpoint, ": another ZAP handler is bound: ", e.what()));
    }
    return absl::InternalError(
        absl::StrCat("cannot start ZAP authenticator on ", kZapEndpoint, ": ", e.what()));
  }
  return authenticator;
}

ZapAuthenticator::ZapAuthenticator(zmq::context_t& context,
                                   absl::flat_hash_set<std::string> authorized_keys,
                                   RejectCallback on_reject)
    : context_(context),
      authorized_keys_(std::move(authorized_keys)),
      on_reject_(std::move(on_reject)),
      handler_(context, zmq::socket_type::rep),
      stop_receiver_(context, zmq::socket_type::pair),
      stop_sender_(context, zmq::socket_type::pair) {
  // A name never used before in this process: the context is shared, and a
  // closed socket's inproc endpoint is released asynchronously.
  static std::atomic<uint64_t> instances{0};
  const std::string stop_endpoint =
      absl::StrCat("inproc://stagefarm.zap.stop.", instances.fetch_add(1));
  for (zmq::socket_t* socket : {&handler_, &stop_receiver_, &stop_sender_}) {
    socket->set(zmq::sockopt::linger, 0);
  }
  handler_.bind(kZapEndpoint);
  stop_receiver_.bind(stop_endpoint);
  stop_sender_.connect(stop_endpoint);
  // Sockets migrate to the thread here; std::thread's start is a full barrier.
  thread_ = std::thread([this] { Run(); });
}

ZapAuthenticator::~ZapAuthenticator() {
  try {
    stop_sender_.send(zmq::message_t(), zmq::send_flags::none);
  } catch (const zmq::error_t&) {
    // The context is being terminated: the thread's poll fails and it exits.
  }
  thread_.join();
  try {
    // Closing alone releases the endpoint asynchronously; unbinding frees it
    // now, so a new authenticator can start in this context right away.
    handler_.unbind(kZapEndpoint);
  } catch (const zmq::error_t&) {
    // Already gone with a terminating context.
  }
  handler_.close();
  stop_receiver_.close();
  stop_sender_.close();
  absl::MutexLock lock(&registry_mutex);
  Registry().erase(context_.handle());
}

bool ZapAuthenticator::IsRunningIn(zmq::context_t& context) {
  absl::MutexLock lock(&registry_mutex);
  return Registry().contains(context.handle());
}

void ZapAuthenticator::Run() {
  zmq::pollitem_t items[] = {{handler_.handle(), 0, ZMQ_POLLIN, 0},
                             {stop_receiver_.handle(), 0, ZMQ_POLLIN, 0}};
  try {
    while (true) {
      zmq::poll(items, 2, std::chrono::milliseconds(-1));
      if (items[1].revents & ZMQ_POLLIN) return;
      if (!(items[0].revents & ZMQ_POLLIN)) continue;
      std::vector<zmq::message_t> request;
      while (true) {
        zmq::message_t part;
        if (!handler_.recv(part, zmq::recv_flags::none)) break;
        bool more = part.more();
        request.push_back(std::move(part));
        if (!more) break;
      }
      Answer(request);
    }
  } catch (const zmq::error_t&) {
    // ETERM: the context is shutting down; no handshake can need us anymore.
  }
}

void ZapAuthenticator::Answer(std::vector<zmq::message_t>& request) {
  // RFC 27 request: version, request id, domain, address, identity,
  // mechanism, credentials...
  std::string status_code = "400";
  std::string status_text = "not authorised";
  std::string public_key;
  std::string address;
  std::string request_id;
  if (request.size() < 6 || View(request[0]) != kZapVersion) {
    status_code = "500";
    status_text = "malformed ZAP request";
  } else {
    request_id = std::string(View(request[1]));
    address = std::string(View(request[3]));
    if (View(request[5]) == "CURVE" && request.size() == 7 && request[6].size() == 32) {
      char z85[kCurveKeyZ85Length + 1];
      zmq_z85_encode(z85, request[6].data<uint8_t>(), 32);
      public_key = z85;
      if (authorized_keys_.contains(public_key)) {
        status_code = "200";
        status_text = "OK";
      }
    } else {
      status_text = absl::StrCat("mechanism ", View(request[5]), " is not accepted");
    }
  }
  if (status_code == "200") {
    accepted_.fetch_add(1);
  } else {
    rejected_.fetch_add(1);
    if (on_reject_) on_reject_(public_key, address);
  }
  // Reply: version, request id, status code, status text, user id, metadata.
  const std::string user_id = status_code == "200" ? public_key : "";
  handler_.send(zmq::buffer(kZapVersion.data(), kZapVersion.size()), zmq::send_flags::sndmore);
  handler_.send(zmq::buffer(request_id), zmq::send_flags::sndmore);
  handler_.send(zmq::buffer(status_code), zmq::send_flags::sndmore);
  handler_.send(zmq::buffer(status_text), zmq::send_flags::sndmore);
  handler_.send(zmq::buffer(user_id), zmq::send_flags::sndmore);
  handler_.send(zmq::message_t(), zmq::send_flags::none);
}

}  // namespace stagefarm::net
