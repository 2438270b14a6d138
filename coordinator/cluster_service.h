// The coordinator's control socket: one ROUTER that workers and clients
// connect to (schemas/cluster.capnp). Workers join with workerHello and keep
// their lease with heartbeats; operators ask for the cluster's status and
// drain workers. Every message is validated; a bad one gets an Error reply
// naming the problem, and the service keeps serving.
#ifndef STAGEFARM_COORDINATOR_CLUSTER_SERVICE_H_
#define STAGEFARM_COORDINATOR_CLUSTER_SERVICE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/net/envelope_frame.h"
#include "common/net/socket_security.h"
#include "coordinator/build_scheduler.h"
#include "coordinator/worker_registry.h"
#include "zmq.hpp"

namespace stagefarm::coordinator {

struct ClusterServiceOptions {
  // Where to bind; port 0 picks a free port (see endpoint()).
  std::string endpoint = "tcp://127.0.0.1:0";
  // A worker not heard from for `lease` is dropped; workers are told to send
  // a heartbeat every `heartbeat`.
  absl::Duration lease = absl::Seconds(10);
  absl::Duration heartbeat = absl::Seconds(2);
  // Submitted builds and assignments carry whole Dockerfiles and context
  // indexes, so envelopes may be large.
  net::FrameLimits limits = {.max_envelope_bytes = size_t{16} << 20};
  // Called (on the service's thread) with a line for the log: a worker
  // joined, was dropped, is draining; builds submitted, done, failed.
  std::function<void(const std::string&)> log;

  // Builds (build_scheduler.h): the coordinator's own blob server, which
  // holds the contexts and images clients upload; the store behind it, whose
  // cache index keeps stage results across restarts (null: no cluster
  // cache); how to reach a worker's blob server, given its public key, to
  // check that it holds the results it reports (null: results are trusted).
  BlobHolder blobs;
  cas::BlobStore* store = nullptr;
  std::function<absl::StatusOr<net::SocketSecurity>(const std::string& public_key)> peer_security;
  int max_attempts = 4;
  absl::Duration no_worker_grace = absl::Seconds(30);
};

class ClusterService {
 public:
  // Binds the ROUTER socket in `context` with `security` and serves on a new
  // thread. Unavailable naming the endpoint when it cannot bind.
  static absl::StatusOr<std::unique_ptr<ClusterService>> Start(zmq::context_t& context,
                                                               net::SocketSecurity security,
                                                               ClusterServiceOptions options);
  // Stops serving and joins the thread.
  ~ClusterService();
  ClusterService(const ClusterService&) = delete;
  ClusterService& operator=(const ClusterService&) = delete;

  // The bound endpoint, with the port the system chose for port 0.
  const std::string& endpoint() const { return endpoint_; }

  // A copy of every known worker's state.
  std::vector<WorkerState> Workers() const;

 private:
  class Loop;
  ClusterService() = default;

  std::string endpoint_;
  std::unique_ptr<Loop> loop_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace stagefarm::coordinator

#endif  // STAGEFARM_COORDINATOR_CLUSTER_SERVICE_H_
