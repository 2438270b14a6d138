// The coordinator's builds: which stages of each submitted build run, where,
// and what they produced (ARCHITECTURE.md, "Schedule" and "Cache").
//
// A submitted build is planned here (the same plan every worker makes) and
// resolved against the cluster cache from its target down: a stage whose
// cache key is in the cache index, with every layer held by a live worker,
// is done without running, and the stages only it needed are not run at all.
// The rest are dispatched as they become ready:
//  - builds take turns, one stage each, so that several builds share the
//    cluster fairly; within a build the stage with the longest remaining
//    critical path goes first;
//  - a stage goes to a live, undrained worker that runs its platform and has
//    a free slot, preferring the one that holds the most bytes of its inputs;
//  - a stage whose cache key another assignment is already running waits for
//    that one and takes its result (two builds sharing a stage run it once);
//  - a stage whose inputs no live worker holds any more sends the stage that
//    made them back to the queue, and waits for it.
// Workers report with stage events. A finished stage's result is checked
// (the worker must hold every blob it names), recorded in the cache index and
// hands its consumers their inputs. A worker that is lost sends its stages
// back to the queue; a stage that fails for want of inputs is retried, up to
// max_attempts; any other failure fails the build with the worker's reason.
// A build whose stages no worker can run fails after no_worker_grace instead
// of waiting for ever.
//
// Single-threaded: the cluster service's loop calls every method.
#ifndef STAGEFARM_COORDINATOR_BUILD_SCHEDULER_H_
#define STAGEFARM_COORDINATOR_BUILD_SCHEDULER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "capnp/message.h"
#include "common/cas/blob_store.h"
#include "common/digest/digest.h"
#include "coordinator/worker_registry.h"
#include "schemas/build.capnp.h"

namespace stagefarm::coordinator {

struct BlobHolder {
  std::string endpoint;
  std::string public_key;  // Z85; empty without CURVE

  auto operator<=>(const BlobHolder&) const = default;
};

struct BuildSchedulerOptions {
  // The coordinator's own blob server: it holds every build's context files
  // and external images (the client uploads them there).
  BlobHolder coordinator_blobs;
  // The coordinator's store, whose cache index keeps stage results across
  // restarts; null: no cluster cache.
  cas::BlobStore* cache_store = nullptr;
  // Runs of one stage (lost workers, lost inputs) before the build fails.
  int max_attempts = 4;
  // A stage no live worker can run (its platform) fails its build after this.
  absl::Duration no_worker_grace = absl::Seconds(30);
  // A stage retried after lost inputs waits attempt × this first.
  absl::Duration retry_backoff = absl::Milliseconds(200);
  std::function<void(const std::string&)> log;
  // Sends `message`, followed by `data_frames`, to the control-socket peer
  // `routing_id`.
  std::function<absl::Status(const std::string& routing_id, capnp::MessageBuilder& message,
                             std::vector<zmq::message_t> data_frames)>
      send;
  // OK when `worker`'s blob server holds every one of `blobs`; null: trusted.
  std::function<absl::Status(const WorkerOffer& worker, absl::Span<const digest::Digest> blobs)>
      check_holds;
};

struct SubmitResult {
  std::string build_id;
  uint32_t stages = 0;  // needed by the target
  uint32_t cached = 0;  // of which the cache had
};

class BuildScheduler {
 public:
  explicit BuildScheduler(BuildSchedulerOptions options);
  ~BuildScheduler();
  BuildScheduler(const BuildScheduler&) = delete;
  BuildScheduler& operator=(const BuildScheduler&) = delete;

  // Plans a client's build. Errors (InvalidArgument with FILE:LINE for the
  // Dockerfile, or naming the bad field) go back to the client; nothing is
  // kept. On success the caller replies buildAccepted, then calls Start.
  absl::StatusOr<SubmitResult> Submit(const std::string& client, uint64_t request_id,
                                      schema::BuildRequest::Reader request, absl::Time now);
  // Sends the build's first events (queued, cached) and finishes it at once
  // when the cache had its target.
  void Start(const std::string& build_id, absl::Time now);
  // Fails the build as cancelled; NotFound when there is no such build.
  absl::Status Cancel(absl::string_view build_id, absl::Time now);

  // A worker joined (or came back) holding `holds`.
  void OnWorkerJoined(const WorkerOffer& worker, absl::Span<const digest::Digest> holds);
  // A worker is gone (lease expired): its blobs are no longer reachable and
  // its stages go back to the queue.
  void OnWorkerLost(const std::string& worker_id, absl::Time now);
  // A stage event from `worker` about assignment `assignment`. Events for
  // assignments it does not own and results it cannot back are refused
  // (the error is for the log and the reply; the stage is retried).
  absl::Status OnStageEvent(const WorkerState& worker, uint64_t assignment,
                            schema::StageEvent::Reader event, absl::Time now);

  // Hands out every stage that can run now.
  void Dispatch(const std::map<std::string, WorkerState, std::less<>>& workers, absl::Time now);

  // The live holders of `blob`.
  std::vector<BlobHolder> Holders(const digest::Digest& blob) const;
  // What `worker_id` runs: "BUILD STAGE step N/M", and how many slots that is.
  std::vector<std::string> RunningOn(absl::string_view worker_id) const;
  uint32_t SlotsUsed(absl::string_view worker_id) const;
  size_t active_builds() const;
  // Assignments sent since the start, and their latencies from ready to sent.
  uint64_t dispatched() const { return dispatched_; }

 private:
  struct Build;
  struct Stage;
  struct Assignment;
  struct Result;

  void Log(const std::string& line) const;
  void SendEvent(Build& build, int stage, schema::BuildEvent::Kind kind,
                 const std::function<void(schema::BuildEvent::Builder)>& fill, absl::Time now);
  std::optional<Result> LookupCache(const std::string& key);
  void StoreCache(const std::string& key, const Result& result);
  bool Available(const Result& result, const std::vector<std::string>* paths) const;
  void MarkReady(Build& build, int index);
  void Unready(Build& build, int index);
  void Complete(Build& build, int index, const Result& result, bool cached,
                const std::string& worker, double seconds, uint64_t bytes_fetched, absl::Time now);
  void Requeue(Build& build, int index, const std::string& why, absl::Time now, bool count);
  void RevertProducer(Build& build, int index, absl::Time now);
  void FailBuild(Build& build, const std::string& why, absl::Time now);
  void FinishBuild(Build& build, absl::Time now);
  void Release(uint64_t assignment);
  bool TryDispatch(Build& build, const std::map<std::string, WorkerState, std::less<>>& workers,
                   absl::Time now);
  void SendAssign(Build& build, int index, const WorkerState& worker, uint64_t id);
  std::vector<BlobHolder> HoldersOf(const std::vector<digest::Digest>& blobs) const;

  BuildSchedulerOptions options_;
  std::map<std::string, std::unique_ptr<Build>> builds_;  // by id, live builds only
  std::string last_served_;                               // round robin: the build served last
  std::map<uint64_t, std::unique_ptr<Assignment>> assignments_;
  // Cache key -> the assignment running it, and the stages waiting for it.
  std::map<std::string, uint64_t> in_flight_;
  // Blob -> ids of the workers holding it; worker -> where to fetch from.
  // (Hashed: every dispatch looks these up once per input blob and worker.)
  absl::flat_hash_map<digest::Digest, absl::flat_hash_set<std::string>> locations_;
  std::map<std::string, BlobHolder, std::less<>> worker_blobs_;
  absl::flat_hash_map<std::string, uint32_t> slots_used_;  // by worker id
  absl::Time last_full_scan_ = absl::InfinitePast();
  uint64_t next_assignment_ = 1;
  uint64_t next_build_ = 1;
  uint64_t dispatched_ = 0;
};

}  // namespace stagefarm::coordinator

#endif  // STAGEFARM_COORDINATOR_BUILD_SCHEDULER_H_
