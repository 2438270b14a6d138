// A worker's tie to its coordinator: one DEALER socket on which the worker
// says hello (schema::WorkerHello), then keeps its lease with heartbeats at
// the interval the coordinator asked for. When the coordinator does not know
// it any more (it restarted, or dropped the worker) or stops answering, the
// worker says hello again until it is welcomed: a restarted coordinator gets
// its workers back by itself.
//
// The same socket carries the build's traffic: what the coordinator sends
// unasked (assignStage, cancelStage) goes to `on_message`, and stage events
// from the threads running assignments go out through Send. Only the link's
// thread touches the socket (ZeroMQ sockets are not thread-safe); Send queues
// the serialized message and wakes that thread through an eventfd, so an
// event leaves within a poll wake-up, not a heartbeat interval.
#ifndef STAGEFARM_WORKER_COORDINATOR_LINK_H_
#define STAGEFARM_WORKER_COORDINATOR_LINK_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "capnp/message.h"
#include "common/net/envelope_frame.h"
#include "common/net/socket_security.h"
#include "zmq.hpp"

namespace stagefarm::worker {

struct CoordinatorLinkOptions {
  std::string coordinator;  // the coordinator's control endpoint
  // What the worker says about itself (see schemas/cluster.capnp).
  std::string worker_id;
  std::vector<std::string> platforms;  // "linux/amd64"
  uint32_t slots = 1;
  std::string blob_endpoint;
  uint64_t store_cap_bytes = 0;
  std::string version;
  std::vector<std::string> labels;
  // Read at each hello and heartbeat.
  std::function<uint64_t()> store_bytes;
  std::function<uint32_t()> slots_in_use;
  // Read at each hello: the result blobs ("sha256:...") the store holds.
  std::function<std::vector<std::string>()> holds;
  // Called on the link's thread with each message the coordinator sends
  // unasked (assignStage, cancelStage). It must not block: the link's
  // heartbeats and every Send wait while it runs.
  std::function<void(const net::ReceivedMessage&)> on_message;
  // How long to wait for a reply before saying hello again.
  absl::Duration reply_timeout = absl::Seconds(5);
  // Called on the link's thread with a line for the log (welcomed, lost the
  // coordinator, refused).
  std::function<void(const std::string&)> log;
};

class CoordinatorLink {
 public:
  // Connects a DEALER in `context` with `security` (CURVE client with the
  // coordinator's public key, or insecure) and starts the link's thread.
  static absl::StatusOr<std::unique_ptr<CoordinatorLink>> Start(zmq::context_t& context,
                                                                net::SocketSecurity security,
                                                                CoordinatorLinkOptions options);
  // Stops the thread.
  ~CoordinatorLink();
  CoordinatorLink(const CoordinatorLink&) = delete;
  CoordinatorLink& operator=(const CoordinatorLink&) = delete;

  // Whether the coordinator has welcomed this worker and acknowledged its
  // last heartbeat.
  bool registered() const { return registered_.load(); }

  // Queues `message` (an envelope, built with net::InitEnvelope) for the
  // coordinator; safe from any thread. Messages leave in the order Send was
  // called. A message that cannot be sent (the coordinator unreachable for
  // the socket's send timeout) is dropped and logged: the coordinator
  // re-runs what it did not hear about.
  void Send(capnp::MessageBuilder& message);

 private:
  class Loop;
  CoordinatorLink() = default;

  std::unique_ptr<Loop> loop_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> registered_{false};
  // An eventfd that wakes the link's thread when Send queued a message.
  int wake_ = -1;
  absl::Mutex mu_;
  std::vector<zmq::message_t> outbox_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace stagefarm::worker

#endif  // STAGEFARM_WORKER_COORDINATOR_LINK_H_
