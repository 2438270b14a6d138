// A worker's tie to its coordinator: one DEALER socket on which the worker
// says hello (schema::WorkerHello), then keeps its lease with heartbeats at
// the interval the coordinator asked for. When the coordinator does not know
// it any more (it restarted, or dropped the worker) or stops answering, the
// worker says hello again until it is welcomed: a restarted coordinator gets
// its workers back by itself.
#ifndef STAGEFARM_WORKER_COORDINATOR_LINK_H_
#define STAGEFARM_WORKER_COORDINATOR_LINK_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
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

 private:
  class Loop;
  CoordinatorLink() = default;

  std::unique_ptr<Loop> loop_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> registered_{false};
  std::thread thread_;
};

}  // namespace stagefarm::worker

#endif  // STAGEFARM_WORKER_COORDINATOR_LINK_H_
