// Runs the stages the coordinator assigns to this node (schemas/build.capnp,
// assignStage), each on its own thread:
//  1. plans the build's definition again (build::PlanBuild is deterministic,
//     so the stage index and cache keys are the coordinator's);
//  2. fetches what the stage reads into the node's store, from the holders
//     the assignment names: the producers' layers, or the artifact of exactly
//     the paths it reads when the producer exported one (build::ConsumerNeeds);
//     the layers of the external images it names; the context files it
//     copies;
//  3. materialises those context files and runs the stage with the node's
//     StageExecutor, streaming its steps, output and notes as stage events;
//  4. exports the artifacts its consumers asked for, records every layer and
//     artifact it made or fetched as a `held/<digest>` ref (what a restarted
//     coordinator is told the node holds), and reports finished with the
//     result, or failed with the reason (inputsLost when the inputs could not
//     be fetched, so that the coordinator re-runs their producers).
// cancelStage stops an assignment before its next instruction; it reports
// failed "cancelled".
#ifndef STAGEFARM_WORKER_STAGE_RUNNER_H_
#define STAGEFARM_WORKER_STAGE_RUNNER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "capnp/message.h"
#include "common/build/build_definition.h"
#include "common/cas/blob_store.h"
#include "common/net/envelope_frame.h"
#include "common/net/socket_security.h"
#include "common/transfer/blob_fetcher.h"
#include "schemas/build.capnp.h"
#include "schemas/envelope.capnp.h"
#include "worker/build/stage_executor.h"
#include "zmq.hpp"

namespace stagefarm::worker {

// The refs under which a node records the result blobs it holds.
inline constexpr absl::string_view kHeldRefPrefix = "held/";

// Every digest ("sha256:...") under the `held/` refs of `store`.
absl::StatusOr<std::vector<std::string>> HeldBlobs(const cas::BlobStore& store);

struct StageRunnerOptions {
  std::string worker_id;  // in every stage event
  // Security for a socket to a holder's blob server, given its CURVE public
  // key (Z85; empty without CURVE).
  std::function<absl::StatusOr<net::SocketSecurity>(const std::string& public_key)> peer_security;
  transfer::FetchOptions fetch;
  // A line for the node's log (an assignment started, ended).
  std::function<void(const std::string&)> log;
};

// A build this node runs stages of: its definition (sent with the node's
// first assignment of the build, then omitted) and its plan, made once.
struct KnownBuild {
  build::BuildDefinition definition;
  build::PlannedBuild plan;
};

class StageRunner {
 public:
  // Delivers one stage event (a whole envelope) to the coordinator; called
  // from the assignment's thread, in the order the events happen.
  using SendEvent = std::function<void(capnp::MessageBuilder& envelope)>;

  // `context` (for the fetches) and `executor` (its store is the node's)
  // outlive the runner.
  StageRunner(zmq::context_t& context, const StageExecutor& executor, StageRunnerOptions options,
              SendEvent send);
  // Stop().
  ~StageRunner();
  StageRunner(const StageRunner&) = delete;
  StageRunner& operator=(const StageRunner&) = delete;

  // Takes a message from the coordinator and returns at once: assignStage
  // starts the assignment (its envelope's request id) on a new thread, with
  // a copy of the message and of the definition frame it may carry;
  // cancelStage flags the assignment it names. InvalidArgument for any other
  // kind, or an assignment that says it carries a definition and has no data
  // frame; an assignment already running, or a cancel for one that is not,
  // is ignored. Safe from any thread.
  absl::Status Handle(const net::ReceivedMessage& message);

  // Cancels every running assignment, waits for their threads (their failed
  // "cancelled" events sent), and refuses assignments from then on: Handle
  // returns FailedPrecondition.
  void Stop();

  // Assignments running now (the slots in use).
  uint32_t running() const;

  // Runs assignment `id` on the calling thread, from start to its finished
  // or failed event; `definition` is the build definition frame it came with
  // (empty: none). Stops before the next instruction once `cancelled` is set.
  void Run(uint64_t id, schema::StageAssign::Reader assign, absl::string_view definition,
           const std::atomic<bool>& cancelled) const;

 private:
  struct Assignment {
    std::unique_ptr<capnp::MallocMessageBuilder> message;
    std::string definition;  // build::SerializeDefinition bytes, or empty
    std::atomic<bool> cancelled{false};
    std::atomic<bool> done{false};
    std::thread thread;
  };

  // Joins the threads of assignments that ended.
  void Reap() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The build `assign` belongs to: planned from `definition` when it came
  // with one (and remembered), else the one remembered. FailedPrecondition
  // when the node does not know it (it restarted, or forgot it): the
  // coordinator sends the definition again with the retry.
  absl::StatusOr<std::shared_ptr<const KnownBuild>> Known(schema::StageAssign::Reader assign,
                                                          absl::string_view definition) const;

  // The builds known here, most recently used last; a few are kept.
  static constexpr size_t kKnownBuilds = 16;
  mutable absl::Mutex known_mu_;
  mutable std::deque<std::pair<std::string, std::shared_ptr<const KnownBuild>>> known_
      ABSL_GUARDED_BY(known_mu_);

  zmq::context_t& context_;
  const StageExecutor& executor_;
  StageRunnerOptions options_;
  SendEvent send_;
  mutable absl::Mutex mu_;
  std::map<uint64_t, std::unique_ptr<Assignment>> assignments_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace stagefarm::worker

#endif  // STAGEFARM_WORKER_STAGE_RUNNER_H_
