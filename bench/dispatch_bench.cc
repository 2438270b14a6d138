// dispatch_bench: how fast the coordinator hands out the stages of a large
// build (issue 6), with the workers' own work taken out.
//
//   dispatch_bench [--stages N] [--workers W] [--stage-ms T] [--runs R] [--seed S]
//                  [--print-dockerfile]
//
// Generates a Dockerfile of N no-op stages (default 1,000) forming a seeded
// random DAG: stage sI (FROM scratch, one ENV so that every stage has its own
// cache key) reads 0 to 2 earlier stages with `COPY --from=sJ /nothing* /`
// (a glob that matches nothing), and a last stage reads every stage nobody
// else reads, so the target needs all N. Each run starts a ClusterService in
// this process (its own ZeroMQ context and I/O thread, as in its own
// process; loopback TCP, no CURVE, no cluster cache), W simulated
// workers (default 50; one slot each, each its own DEALER socket over TCP,
// all driven from one thread with zmq::poll) that answer every assignStage
// with a finished stageEvent carrying an empty scratch image, and a client
// DEALER that submits the build and waits for done.
//
// With --stage-ms 0 (the default) a worker answers at once, so the
// coordinator is saturated: the run measures its throughput, and the
// latencies are mostly the queue of finished events waiting for its one
// thread. With --stage-ms T a worker holds each stage T ms before it answers
// (a stage that does nothing still takes a real worker some time; the hold
// ends on a timerfd, to the microsecond, not on zmq::poll's whole
// milliseconds), which
// offers at most W / T stages per second: the run measures latency at that
// load, the way a service's latency is quoted at a given throughput.
//
// Per run, one JSON line on stdout (and with --runs above 1, a last line with
// the reaction percentiles over every stage of every run):
//  - seconds: buildAccepted to done, as the client sees them;
//    dispatches_per_s = N / seconds;
//  - latency_ms (p50, p99, max) per stage: the assignment's arrival at its
//    worker minus the moment the stage became ready, which is the later of
//    buildAccepted and the sending of the finished event of the last of its
//    dependencies to finish (the bench knows the DAG from the same plan the
//    coordinator makes). This includes waiting for a free worker: with W
//    one-slot workers and more than W stages ready at once, most wait for
//    others to finish, however fast the coordinator is;
//  - reaction_ms (p50, p99, max): the same, but from the later of ready and
//    the moment the worker that got the stage became free (sent the finished
//    event of its previous stage, or buildAccepted): how long the coordinator
//    took to act on the event that made the assignment possible. (Another
//    worker may have been free earlier: the stage then waited behind stages
//    with a longer critical path, by design.)
//  - accept_ms: submitBuild sent to buildAccepted received (the
//    coordinator's planning of the build);
//  - load_average at the start of the run.
// Every stage must be dispatched exactly once; anything else (a stage sent
// twice or never, a failed build, a refused event) ends the bench with a
// message on stderr and exit status 1. Progress goes to stderr.
#include <stdlib.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_flags.h"
#include "capnp/message.h"
#include "common/build/build_definition.h"
#include "common/net/envelope_frame.h"
#include "common/net/socket_security.h"
#include "common/oci/image.h"
#include "common/oci/platform.h"
#include "common/process/allocator.h"
#include "coordinator/cluster_service.h"
#include "schemas/build.capnp.h"
#include "schemas/cluster.capnp.h"
#include "schemas/envelope.capnp.h"

namespace stagefarm::bench {
namespace {

constexpr char kPlatform[] = "linux/amd64";
// Assignments carry the whole Dockerfile: allow what the coordinator allows.
const net::FrameLimits kLimits = {.max_envelope_bytes = size_t{16} << 20};

[[noreturn]] void Die(absl::string_view message) {
  std::fprintf(stderr, "dispatch_bench: %.*s\n", static_cast<int>(message.size()), message.data());
  std::exit(1);
}

template <typename T>
T Check(absl::StatusOr<T> value, absl::string_view what) {
  if (!value.ok()) Die(absl::StrCat(what, ": ", value.status().message()));
  return *std::move(value);
}
void Check(const absl::Status& status, absl::string_view what) {
  if (!status.ok()) Die(absl::StrCat(what, ": ", status.message()));
}

int IntFlag(const std::map<std::string, std::string>& flags, const std::string& name, int fallback,
            int minimum) {
  auto it = flags.find(name);
  if (it == flags.end()) return fallback;
  int value = 0;
  if (!absl::SimpleAtoi(it->second, &value) || value < minimum) {
    Die(absl::StrCat("--", name, " wants a whole number of at least ", minimum, ", not \"",
                     it->second, "\""));
  }
  return value;
}

// `stages` no-op stages (at least 2): s0 … s(N-2) read 0 to 2 earlier ones
// each, chosen by `seed`, and the last, "final", reads every stage nobody
// else reads.
std::string GenerateDockerfile(int stages, uint32_t seed) {
  std::mt19937 random(seed);
  std::vector<bool> read(stages - 1, false);
  std::string out;
  for (int i = 0; i < stages - 1; ++i) {
    absl::StrAppend(&out, "FROM scratch AS s", i, "\nENV STAGE=", i, "\n");
    const int reads = std::min(i, static_cast<int>(random() % 3));
    std::vector<int> chosen;
    while (static_cast<int>(chosen.size()) < reads) {
      const int from = static_cast<int>(random() % i);
      if (std::find(chosen.begin(), chosen.end(), from) != chosen.end()) continue;
      chosen.push_back(from);
      read[from] = true;
      absl::StrAppend(&out, "COPY --from=s", from, " /nothing* /\n");
    }
  }
  absl::StrAppend(&out, "FROM scratch AS final\nENV STAGE=final\n");
  for (int i = 0; i < stages - 1; ++i) {
    if (!read[i]) absl::StrAppend(&out, "COPY --from=s", i, " /nothing* /\n");
  }
  return out;
}

build::BuildDefinition Definition(const std::string& dockerfile) {
  build::BuildDefinition definition;
  definition.dockerfile = dockerfile;
  definition.platform = kPlatform;
  return definition;
}

// One simulated worker: a DEALER with its own routing id.
struct SimulatedWorker {
  std::string id;
  std::unique_ptr<zmq::socket_t> socket;
  absl::Duration heartbeat = absl::Seconds(1);
  absl::Time next_heartbeat = absl::InfiniteFuture();
  // When it sent the finished event of its last stage (its one slot freed).
  absl::Time free_since = absl::InfinitePast();
};

// An assignment a simulated worker holds until `due` (--stage-ms).
struct HeldStage {
  absl::Time due;
  size_t worker = 0;
  uint64_t request_id = 0;
  std::string build_id;
  uint32_t stage = 0;
  bool operator>(const HeldStage& other) const { return due > other.due; }
};

struct Spread {
  double p50 = 0, p99 = 0, max = 0;
};

struct Figures {
  double seconds = 0;
  double dispatches_per_s = 0;
  Spread latency_ms;
  Spread reaction_ms;
  double accept_ms = 0;
  // Every stage's reaction, for the percentiles over all runs.
  std::vector<double> reactions;
};

void Send(zmq::socket_t& socket, capnp::MessageBuilder& message, absl::string_view what) {
  Check(net::SendMessage(socket, "", message), what);
}

// The message a received Error carries, or a note on an unexpected kind.
std::string Unexpected(const net::ReceivedMessage& message) {
  if (message.envelope().isError()) {
    return std::string(
        net::StatusFromError(message.envelope().getError(), "coordinator").message());
  }
  return absl::StrCat("unexpected message kind ", static_cast<int>(message.envelope().which()));
}

// Nearest-rank percentiles of `values` (not empty).
Spread SpreadOf(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  auto rank = [&](double fraction) {
    const size_t rank =
        static_cast<size_t>(std::ceil(fraction * static_cast<double>(values.size())));
    return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
  };
  return Spread{rank(0.50), rank(0.99), values.back()};
}

std::string Json(const Spread& spread) {
  return absl::StrFormat("{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}", spread.p50, spread.p99,
                         spread.max);
}

// One build of `dockerfile` (whose plan has `deps` per stage) on a fresh
// coordinator with `worker_count` simulated workers.
Figures Run(const std::string& dockerfile, const std::vector<std::vector<int>>& deps,
            int worker_count, absl::Duration stage_time) {
  const size_t stages = deps.size();
  coordinator::ClusterServiceOptions options;
  options.blobs.endpoint = "tcp://127.0.0.1:1";  // never contacted: the workers fetch nothing
  zmq::context_t coordinator_context;
  std::unique_ptr<coordinator::ClusterService> service =
      Check(coordinator::ClusterService::Start(coordinator_context, net::SocketSecurity::Insecure(),
                                               options),
            "starting the coordinator");
  zmq::context_t context;  // the workers' and the client's
  const std::string endpoint = service->endpoint();

  // The result every stage reports: an empty scratch image.
  const oci::Platform platform = Check(oci::ParsePlatform(kPlatform), "platform");
  const oci::BuiltImage empty{oci::ScratchConfig(platform), {}};

  std::vector<SimulatedWorker> workers(worker_count);
  for (int w = 0; w < worker_count; ++w) {
    SimulatedWorker& worker = workers[w];
    worker.id = absl::StrCat("sim-", w);
    worker.socket = std::make_unique<zmq::socket_t>(context, zmq::socket_type::dealer);
    worker.socket->set(zmq::sockopt::linger, 0);
    worker.socket->set(zmq::sockopt::routing_id, worker.id);
    worker.socket->connect(endpoint);
    capnp::MallocMessageBuilder hello;
    auto out = net::InitEnvelope(hello, 1).initWorkerHello();
    out.setWorkerId(worker.id);
    out.initPlatforms(1).set(0, kPlatform);
    out.setSlots(1);
    out.setBlobEndpoint(absl::StrCat("tcp://127.0.0.1:", 20000 + w));
    out.setVersion("dispatch_bench");
    Send(*worker.socket, hello, "workerHello");
  }
  zmq::socket_t client(context, zmq::socket_type::dealer);
  client.set(zmq::sockopt::linger, 0);
  client.connect(endpoint);

  // Held stages end on a timer of their own: zmq::poll's timeout is in whole
  // milliseconds, which would end a 10 ms stage up to 1 ms late and bunch
  // the finishes of stages that started within the same millisecond.
  const int timer = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
  if (timer < 0) Die(absl::StrCat("timerfd_create: ", std::strerror(errno)));
  std::vector<zmq::pollitem_t> items;
  items.push_back({nullptr, timer, ZMQ_POLLIN, 0});
  items.push_back({client.handle(), 0, ZMQ_POLLIN, 0});
  for (SimulatedWorker& worker : workers) {
    items.push_back({worker.socket->handle(), 0, ZMQ_POLLIN, 0});
  }
  constexpr size_t kFirstSocket = 1;

  std::vector<int> assigned(stages, 0);
  std::vector<absl::Time> arrived(stages, absl::InfinitePast());
  std::vector<absl::Time> finished_sent(stages, absl::InfinitePast());
  std::vector<absl::Time> worker_free(stages, absl::InfinitePast());
  std::optional<absl::Time> submitted, accepted, done;
  int welcomed = 0;
  const absl::Time deadline = absl::Now() + absl::Minutes(2);

  auto submit = [&] {
    capnp::MallocMessageBuilder request;
    auto out = net::InitEnvelope(request, 42).initSubmitBuild();
    build::ToSchema(Definition(dockerfile), out.initDefinition());
    out.setClient("dispatch_bench");
    submitted = absl::Now();
    Send(client, request, "submitBuild");
  };

  auto on_client = [&](const net::ReceivedMessage& message) {
    const schema::Envelope::Reader envelope = message.envelope();
    if (envelope.isBuildAccepted()) {
      accepted = absl::Now();
      if (envelope.getBuildAccepted().getStages() != stages) {
        Die(absl::StrCat("the coordinator needs ", envelope.getBuildAccepted().getStages(),
                         " stages of the build, not all ", stages));
      }
      return;
    }
    if (!envelope.isBuildEvent()) Die(absl::StrCat("client: ", Unexpected(message)));
    const schema::BuildEvent::Reader event = envelope.getBuildEvent();
    if (event.getKind() == schema::BuildEvent::Kind::DONE) done = absl::Now();
    if (event.getKind() == schema::BuildEvent::Kind::FAILED) {
      Die(absl::StrCat("the build failed: ", event.getText().cStr()));
    }
  };

  std::priority_queue<HeldStage, std::vector<HeldStage>, std::greater<>> held;
  // Sends the finished events of the held stages that are due.
  auto finish_due = [&] {
    while (!held.empty() && held.top().due <= absl::Now()) {
      const HeldStage stage = held.top();
      held.pop();
      SimulatedWorker& worker = workers[stage.worker];
      capnp::MallocMessageBuilder reply;
      auto event = net::InitEnvelope(reply, stage.request_id).initStageEvent();
      event.setBuildId(stage.build_id);
      event.setStage(stage.stage);
      event.setWorkerId(worker.id);
      event.setKind(schema::StageEvent::Kind::FINISHED);
      build::ToSchema(empty, event.initResult().initImage());
      Send(*worker.socket, reply, "stageEvent");
      finished_sent[stage.stage] = absl::Now();
      worker.free_since = finished_sent[stage.stage];
    }
  };

  auto on_worker = [&](SimulatedWorker& worker, const net::ReceivedMessage& message) {
    const schema::Envelope::Reader envelope = message.envelope();
    switch (envelope.which()) {
      case schema::Envelope::WELCOME:
        worker.heartbeat = absl::Milliseconds(envelope.getWelcome().getHeartbeatMillis());
        worker.next_heartbeat = absl::Now() + worker.heartbeat;
        if (++welcomed == worker_count) submit();
        return;
      case schema::Envelope::HEARTBEAT_ACK:
        if (!envelope.getHeartbeatAck().getKnown()) Die(worker.id + ": the coordinator forgot it");
        return;
      case schema::Envelope::ASSIGN_STAGE: {
        const absl::Time now = absl::Now();
        const schema::StageAssign::Reader assign = envelope.getAssignStage();
        const uint32_t stage = assign.getStage();
        if (stage >= stages) Die(absl::StrCat(worker.id, ": assigned stage ", stage));
        ++assigned[stage];
        arrived[stage] = now;
        worker_free[stage] = worker.free_since;
        held.push(HeldStage{now + stage_time, static_cast<size_t>(&worker - workers.data()),
                            envelope.getRequestId(), assign.getBuildId(), stage});
        return;
      }
      default:
        Die(absl::StrCat(worker.id, ": ", Unexpected(message)));
    }
  };

  while (!done) {
    if (absl::Now() > deadline) {
      Die(absl::StrCat("no done within 2 minutes: ", welcomed, " worker(s) welcomed, ",
                       std::count_if(assigned.begin(), assigned.end(), [](int n) { return n > 0; }),
                       " stage(s) assigned"));
    }
    // Wakes for the next held stage to end (the timer), a message, or the
    // heartbeats (the 100 ms cap).
    if (!held.empty()) {
      const timespec due = absl::ToTimespec(held.top().due);
      const itimerspec at = {{0, 0}, due.tv_sec == 0 && due.tv_nsec == 0 ? timespec{0, 1} : due};
      if (timerfd_settime(timer, TFD_TIMER_ABSTIME, &at, nullptr) != 0) {
        Die(absl::StrCat("timerfd_settime: ", std::strerror(errno)));
      }
    }
    zmq::poll(items.data(), items.size(), std::chrono::milliseconds(100));
    if (items[0].revents & ZMQ_POLLIN) {
      uint64_t expirations = 0;
      if (read(timer, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN) {
        Die(absl::StrCat("reading the timerfd: ", std::strerror(errno)));
      }
    }
    for (size_t i = kFirstSocket; i < items.size(); ++i) {
      if ((items[i].revents & ZMQ_POLLIN) == 0) continue;
      zmq::socket_t& socket = i == kFirstSocket ? client : *workers[i - kFirstSocket - 1].socket;
      while (true) {
        absl::StatusOr<net::ReceivedMessage> message =
            net::ReceiveMessage(socket, absl::ZeroDuration(), nullptr, kLimits);
        if (message.status().code() == absl::StatusCode::kDeadlineExceeded) break;
        Check(message.status(), "receiving");
        if (i == kFirstSocket) {
          on_client(*message);
        } else {
          on_worker(workers[i - kFirstSocket - 1], *message);
        }
      }
    }
    finish_due();
    const absl::Time now = absl::Now();
    for (SimulatedWorker& worker : workers) {
      if (now < worker.next_heartbeat) continue;
      capnp::MallocMessageBuilder beat;
      net::InitEnvelope(beat, 2).initHeartbeat().setWorkerId(worker.id);
      Send(*worker.socket, beat, "heartbeat");
      worker.next_heartbeat = now + worker.heartbeat;
    }
  }
  close(timer);
  if (!accepted) Die("done before buildAccepted");

  // An assignment can overtake buildAccepted (they travel on different
  // connections): its latency counts as 0.
  std::vector<double> latencies, reactions;
  for (size_t stage = 0; stage < stages; ++stage) {
    if (assigned[stage] != 1) {
      Die(absl::StrCat("stage ", stage, " was dispatched ", assigned[stage], " times, not once"));
    }
    absl::Time ready = *accepted;
    for (int dep : deps[stage]) ready = std::max(ready, finished_sent[dep]);
    latencies.push_back(std::max(0.0, absl::ToDoubleMilliseconds(arrived[stage] - ready)));
    reactions.push_back(std::max(
        0.0, absl::ToDoubleMilliseconds(arrived[stage] - std::max(ready, worker_free[stage]))));
  }
  Figures figures;
  figures.seconds = absl::ToDoubleSeconds(*done - *accepted);
  figures.dispatches_per_s = static_cast<double>(stages) / figures.seconds;
  figures.latency_ms = SpreadOf(latencies);
  figures.reaction_ms = SpreadOf(reactions);
  figures.reactions = std::move(reactions);
  figures.accept_ms = absl::ToDoubleMilliseconds(*accepted - *submitted);
  return figures;
}

int Main(int argc, char** argv) {
  const std::map<std::string, std::string> flags = Check(ParseBenchFlags(argc, argv), "flags");
  for (const auto& [name, value] : flags) {
    if (name != "stages" && name != "workers" && name != "stage-ms" && name != "runs" &&
        name != "seed" && name != "print-dockerfile") {
      Die(absl::StrCat("unknown flag --", name,
                       "; usage: dispatch_bench [--stages N] [--workers W] [--stage-ms T]"
                       " [--runs R] [--seed S] [--print-dockerfile]"));
    }
  }
  const int stages = IntFlag(flags, "stages", 1000, 2);
  const int workers = IntFlag(flags, "workers", 50, 1);
  const int stage_ms = IntFlag(flags, "stage-ms", 0, 0);
  const int runs = IntFlag(flags, "runs", 3, 1);
  const int seed = IntFlag(flags, "seed", 1, 0);
  const std::string dockerfile = GenerateDockerfile(stages, static_cast<uint32_t>(seed));
  if (flags.count("print-dockerfile") > 0) {
    std::fputs(dockerfile.c_str(), stdout);
    return 0;
  }

  // The DAG as the coordinator will see it: the same plan.
  const build::PlannedBuild plan = Check(build::PlanBuild(Definition(dockerfile)), "planning");
  if (plan.graph.stages.size() != static_cast<size_t>(stages)) {
    Die(absl::StrCat("the plan has ", plan.graph.stages.size(), " stages, not ", stages));
  }
  std::vector<std::vector<int>> deps;
  for (const graph::PlannedStage& stage : plan.graph.stages) {
    if (!stage.needed) Die(absl::StrCat("stage ", stage.name, " is not needed by the target"));
    deps.push_back(stage.deps);
  }

  std::vector<double> all_reactions;
  for (int run = 1; run <= runs; ++run) {
    double load[3] = {0, 0, 0};
    if (getloadavg(load, 3) != 3) Die("getloadavg failed");
    std::fprintf(stderr, "dispatch_bench: run %d of %d: %d stages on %d workers, %d ms each\n", run,
                 runs, stages, workers, stage_ms);
    const Figures figures = Run(dockerfile, deps, workers, absl::Milliseconds(stage_ms));
    std::printf(
        "{\"bench\":\"dispatch\",\"run\":%d,\"stages\":%d,\"workers\":%d,\"stage_ms\":%d,"
        "\"seed\":%d,\"load_average\":[%.2f,%.2f,%.2f],\"seconds\":%.4f,"
        "\"dispatches_per_s\":%.1f,\"latency_ms\":%s,\"reaction_ms\":%s,\"accept_ms\":%.2f,"
        "\"dispatched_once\":true}\n",
        run, stages, workers, stage_ms, seed, load[0], load[1], load[2], figures.seconds,
        figures.dispatches_per_s, Json(figures.latency_ms).c_str(),
        Json(figures.reaction_ms).c_str(), figures.accept_ms);
    std::fflush(stdout);
    all_reactions.insert(all_reactions.end(), figures.reactions.begin(), figures.reactions.end());
  }
  if (runs > 1) {
    std::printf("{\"bench\":\"dispatch\",\"runs\":%d,\"dispatches\":%zu,\"reaction_ms\":%s}\n",
                runs, all_reactions.size(), Json(SpreadOf(all_reactions)).c_str());
  }
  return 0;
}

}  // namespace
}  // namespace stagefarm::bench

int main(int argc, char** argv) {
  // As the coordinator it stands for does.
  stagefarm::process::KeepFreedMemoryForReuse();
  return stagefarm::bench::Main(argc, argv);
}
