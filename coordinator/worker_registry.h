// The coordinator's view of its workers: who joined, what they offer, when
// each was last heard from, and which are draining. Workers hold a lease
// renewed by heartbeats; one not heard from for a lease is dropped (Expire).
// Pure bookkeeping with an injected clock, so every rule is testable without
// sockets; the cluster service (cluster_service.h) feeds it messages.
#ifndef STAGEFARM_COORDINATOR_WORKER_REGISTRY_H_
#define STAGEFARM_COORDINATOR_WORKER_REGISTRY_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/oci/platform.h"

namespace stagefarm::coordinator {

// What a worker says about itself when it joins (schema::WorkerHello), and
// who it is on the wire.
struct WorkerOffer {
  std::string id;
  std::vector<oci::Platform> platforms;
  uint32_t slots = 0;
  std::string blob_endpoint;
  uint64_t store_bytes = 0;
  uint64_t store_cap_bytes = 0;
  std::string version;
  std::vector<std::string> labels;  // "key=value"
  // The CURVE public key it connected with (Z85); empty without CURVE.
  std::string public_key;
  // Its ROUTER routing id on the control socket.
  std::string routing_id;
};

struct WorkerState {
  WorkerOffer offer;
  uint32_t slots_in_use = 0;
  absl::Time last_heard;
  bool draining = false;
};

class WorkerRegistry {
 public:
  explicit WorkerRegistry(absl::Duration lease) : lease_(lease) {}

  // Registers `offer`, or refreshes a worker that says hello again (after a
  // restart, or after the coordinator dropped it). InvalidArgument naming the
  // field for an id that is not 1-64 of [A-Za-z0-9._-], no platform, no
  // slots, an empty blob endpoint or a label without "="; PermissionDenied
  // when a live worker already holds the id under another CURVE key (a node
  // cannot take over another's identity). A draining worker stays draining.
  absl::Status Register(WorkerOffer offer, absl::Time now);

  // Renews the lease of `id` and records its load; false when the registry
  // does not know it (then it must say hello again).
  bool Heartbeat(absl::string_view id, absl::string_view public_key, uint32_t slots_in_use,
                 uint64_t store_bytes, absl::Time now);

  // Drops the workers whose lease ran out before `now` and returns their ids.
  std::vector<std::string> Expire(absl::Time now);

  // No new work for `id`; NotFound when unknown.
  absl::Status Drain(absl::string_view id);

  // Every known worker, by id.
  const std::map<std::string, WorkerState, std::less<>>& workers() const { return workers_; }
  // The known worker whose control connection has `routing_id` (the one that
  // registered over it last); null when none.
  const WorkerState* ByRoutingId(absl::string_view routing_id) const;
  absl::Duration lease() const { return lease_; }

 private:
  // Drops `state`'s routing id unless another worker registered over it since.
  void ForgetRoute(const WorkerState& state);

  absl::Duration lease_;
  std::map<std::string, WorkerState, std::less<>> workers_;
  // Routing id -> worker id, for every worker in workers_ (every stage event
  // is matched to its sender through it).
  absl::flat_hash_map<std::string, std::string> by_routing_id_;
};

}  // namespace stagefarm::coordinator

#endif  // STAGEFARM_COORDINATOR_WORKER_REGISTRY_H_
