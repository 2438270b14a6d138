#include "coordinator/build_scheduler.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "capnp/serialize.h"
#include "common/build/build_definition.h"
#include "common/build/hand_off.h"
#include "common/net/envelope_frame.h"
#include "schemas/envelope.capnp.h"

namespace stagefarm::coordinator {
namespace {

// The cache index entries this scheduler keeps in the coordinator's store.
constexpr absl::string_view kCachePrefix = "cluster/v1/";

std::string Text(capnp::Text::Reader text) { return std::string(text.cStr(), text.size()); }

bool PlatformMatches(const oci::Platform& wanted, const std::vector<oci::Platform>& offered) {
  for (const oci::Platform& platform : offered) {
    if (platform.os != wanted.os || platform.architecture != wanted.architecture) continue;
    if (wanted.variant.empty() || platform.variant.empty() || wanted.variant == platform.variant) {
      return true;
    }
  }
  return false;
}

std::string StageLabel(const graph::PlannedStage& stage) {
  return stage.name.empty() ? absl::StrCat("stage-", stage.index) : stage.name;
}

}  // namespace

// A stage's result: its image, the artifacts it exported, by path list.
struct BuildScheduler::Result {
  oci::BuiltImage image;
  std::map<std::vector<std::string>, oci::Descriptor> artifacts;

  std::vector<digest::Digest> Blobs() const {
    std::vector<digest::Digest> blobs;
    for (const oci::Descriptor& layer : image.layers) blobs.push_back(layer.digest);
    for (const auto& [paths, artifact] : artifacts) blobs.push_back(artifact.digest);
    return blobs;
  }
};

struct BuildScheduler::Stage {
  enum class State { kIdle, kWaiting, kRunning, kShared, kDone };
  State state = State::kIdle;      // kIdle: not needed (cached above it, or not in the plan)
  std::optional<std::string> key;  // the result cache key, when known
  std::optional<Result> result;
  std::vector<int> consumers;  // needed stages that read it
  int critical_path = 0;       // instructions on the longest path to the target, its own included
  int attempts = 0;
  absl::Time not_before = absl::InfinitePast();
  std::optional<absl::Time> no_worker_since;
  uint64_t assignment = 0;  // kRunning, or kShared: the one it waits for
};

struct BuildScheduler::Build {
  std::string id;
  std::string client;  // routing id of the submitter
  uint64_t request_id = 0;
  absl::Time started;
  build::BuildDefinition definition;
  // The definition as sent to workers (build::SerializeDefinition), made
  // once: every send shares its bytes.
  zmq::message_t definition_frame;
  build::PlannedBuild plan;
  std::vector<Stage> stages;
  // Per stage: what it reads of each stage (build::ConsumerNeeds), and the
  // path lists its readers want as artifacts (build::ProducerExports).
  std::vector<std::map<int, build::StageNeed>> needs;
  std::vector<std::vector<std::vector<std::string>>> exports;
  bool announce_queued = false;
  // Workers that were sent the definition: later assignments omit it.
  std::set<std::string> definition_sent;
  // Waiting stages whose inputs are done: (-critical path, index).
  std::set<std::pair<int, int>> ready;
  int target = 0;
  uint32_t needed = 0;
  uint32_t cached = 0;
};

struct BuildScheduler::Assignment {
  std::string build_id;
  int stage = 0;
  std::string worker;
  std::string key;                     // cache key it runs ("" when none)
  std::vector<digest::Digest> inputs;  // blobs the worker fetches
  std::string step;                    // "step N/M", for the status view
  // Other stages (any build) with the same key, waiting for this result.
  std::vector<std::pair<std::string, int>> sharers;
};

BuildScheduler::BuildScheduler(BuildSchedulerOptions options) : options_(std::move(options)) {}
BuildScheduler::~BuildScheduler() = default;

void BuildScheduler::Log(const std::string& line) const {
  if (options_.log) options_.log(line);
}

size_t BuildScheduler::active_builds() const { return builds_.size(); }

void BuildScheduler::SendEvent(Build& build, int stage, schema::BuildEvent::Kind kind,
                               const std::function<void(schema::BuildEvent::Builder)>& fill,
                               absl::Time now) {
  capnp::MallocMessageBuilder message;
  schema::BuildEvent::Builder event = net::InitEnvelope(message, build.request_id).initBuildEvent();
  event.setBuildId(build.id);
  event.setTime(absl::ToUnixMicros(now));
  event.setStage(stage);
  if (stage >= 0) event.setStageName(build.plan.graph.stages[stage].name);
  event.setKind(kind);
  if (fill) fill(event);
  // A client that went away misses its events; the build goes on (its
  // results are cached for the next one).
  options_.send(build.client, message, {}).IgnoreError();
}

std::optional<BuildScheduler::Result> BuildScheduler::LookupCache(const std::string& key) {
  if (options_.cache_store == nullptr) return std::nullopt;
  const std::string entry_key = absl::StrCat(kCachePrefix, key);
  absl::StatusOr<std::string> entry = options_.cache_store->GetCacheEntry(entry_key);
  if (!entry.ok()) return std::nullopt;
  Result result;
  absl::Status parsed = [&]() -> absl::Status {
    if (entry->size() % sizeof(capnp::word) != 0) return absl::DataLossError("misaligned");
    kj::Array<capnp::word> words = kj::heapArray<capnp::word>(entry->size() / sizeof(capnp::word));
    memcpy(words.begin(), entry->data(), entry->size());
    try {
      capnp::FlatArrayMessageReader reader(words);
      schema::StageResult::Reader stored = reader.getRoot<schema::StageResult>();
      absl::StatusOr<oci::BuiltImage> image = build::FromSchema(stored.getImage());
      if (!image.ok()) return image.status();
      result.image = *std::move(image);
      for (schema::Artifact::Reader artifact : stored.getArtifacts()) {
        absl::StatusOr<oci::Descriptor> layer = build::FromSchema(artifact.getLayer());
        if (!layer.ok()) return layer.status();
        std::vector<std::string> paths;
        for (capnp::Text::Reader path : artifact.getPaths()) paths.push_back(Text(path));
        result.artifacts.emplace(std::move(paths), *std::move(layer));
      }
    } catch (const kj::Exception& e) {
      return absl::DataLossError(e.getDescription().cStr());
    }
    return absl::OkStatus();
  }();
  // Trusted only while a live worker holds every layer; artifacts without a
  // holder are forgotten (consumers then read the layers).
  bool held = parsed.ok();
  if (held) {
    for (const oci::Descriptor& layer : result.image.layers) {
      auto it = locations_.find(layer.digest);
      if (it == locations_.end() || it->second.empty()) held = false;
    }
  }
  if (!held) {
    Log(absl::StrCat("cache entry ", key, " dropped: ",
                     parsed.ok() ? "no live worker holds its layers" : parsed.message()));
    options_.cache_store->DeleteCacheEntry(entry_key).IgnoreError();
    return std::nullopt;
  }
  for (auto it = result.artifacts.begin(); it != result.artifacts.end();) {
    auto holders = locations_.find(it->second.digest);
    it = holders == locations_.end() || holders->second.empty() ? result.artifacts.erase(it)
                                                                : std::next(it);
  }
  return result;
}

void BuildScheduler::StoreCache(const std::string& key, const Result& result) {
  if (options_.cache_store == nullptr || key.empty()) return;
  capnp::MallocMessageBuilder message;
  schema::StageResult::Builder stored = message.initRoot<schema::StageResult>();
  build::ToSchema(result.image, stored.initImage());
  auto artifacts = stored.initArtifacts(result.artifacts.size());
  size_t i = 0;
  for (const auto& [paths, layer] : result.artifacts) {
    auto list = artifacts[i].initPaths(paths.size());
    for (size_t k = 0; k < paths.size(); ++k) list.set(k, paths[k]);
    build::ToSchema(layer, artifacts[i].initLayer());
    ++i;
  }
  stored.setCacheKey(key);
  kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  absl::Status put = options_.cache_store->PutCacheEntry(
      absl::StrCat(kCachePrefix, key),
      absl::string_view(reinterpret_cast<const char*>(words.begin()), words.asBytes().size()));
  if (!put.ok()) Log(absl::StrCat("cache entry ", key, " not stored: ", put.message()));
}

absl::StatusOr<SubmitResult> BuildScheduler::Submit(const std::string& client, uint64_t request_id,
                                                    schema::BuildRequest::Reader request,
                                                    absl::Time now) {
  auto build = std::make_unique<Build>();
  absl::StatusOr<build::BuildDefinition> definition = build::FromSchema(request.getDefinition());
  if (!definition.ok()) return definition.status();
  build->definition = *std::move(definition);
  absl::StatusOr<build::PlannedBuild> plan = build::PlanBuild(build->definition);
  if (!plan.ok()) return plan.status();
  build->plan = *std::move(plan);
  const std::string frame = build::SerializeDefinition(request.getDefinition());
  build->definition_frame.rebuild(frame.data(), frame.size());
  build->id = absl::StrCat("b", next_build_++, "-", absl::Hex(absl::ToUnixMicros(now) & 0xffffff));
  build->client = client;
  build->request_id = request_id;
  build->started = now;
  const graph::StageGraph& graph = build->plan.graph;
  build->target = graph.target;
  build->stages.resize(graph.stages.size());
  build->needs.resize(graph.stages.size());
  for (const graph::PlannedStage& stage : graph.stages) {
    if (stage.needed) build->needs[stage.index] = build::ConsumerNeeds(graph, stage.index);
  }
  build->exports = build::ProducerExports(build->needs);
  for (const graph::PlannedStage& stage : graph.stages) {
    Stage& state = build->stages[stage.index];
    if (!build->plan.keys.empty() && build->plan.keys[stage.index]) {
      state.key = build->plan.keys[stage.index]->result.ToString();
    }
  }
  // From the target down: a cached stage is done, and what only it needed
  // is not needed.
  std::vector<int> todo = {build->target};
  std::vector<bool> seen(graph.stages.size(), false);
  while (!todo.empty()) {
    const int index = todo.back();
    todo.pop_back();
    if (seen[index]) continue;
    seen[index] = true;
    Stage& state = build->stages[index];
    ++build->needed;
    if (!build->definition.no_cache && state.key) {
      if (std::optional<Result> cached = LookupCache(*state.key)) {
        state.state = Stage::State::kDone;
        state.result = *std::move(cached);
        ++build->cached;
        continue;
      }
    }
    state.state = Stage::State::kWaiting;
    for (int dep : graph.stages[index].deps) todo.push_back(dep);
  }
  // Consumers and critical paths (a stage only reads earlier ones).
  for (int index = static_cast<int>(graph.stages.size()) - 1; index >= 0; --index) {
    Stage& state = build->stages[index];
    if (state.state != Stage::State::kWaiting) continue;
    int longest = 0;
    for (int consumer : state.consumers) {
      longest = std::max(longest, build->stages[consumer].critical_path);
    }
    state.critical_path = longest + 1 + static_cast<int>(graph.stages[index].instructions.size());
    for (int dep : graph.stages[index].deps) build->stages[dep].consumers.push_back(index);
  }
  SubmitResult accepted{build->id, build->needed, build->cached};
  Log(absl::StrCat("build ", build->id, " submitted by ", Text(request.getClient()), ": ",
                   build->needed, " stage(s), ", build->cached, " cached"));
  builds_.emplace(build->id, std::move(build));
  return accepted;
}

void BuildScheduler::Start(const std::string& build_id, absl::Time now) {
  auto it = builds_.find(build_id);
  if (it == builds_.end()) return;
  Build& build = *it->second;
  for (size_t index = 0; index < build.stages.size(); ++index) {
    if (build.stages[index].state == Stage::State::kDone) {
      SendEvent(build, index, schema::BuildEvent::Kind::CACHED, nullptr, now);
    }
  }
  // "queued" goes out after the first stages are dispatched (Dispatch), so
  // that announcing a large build does not delay its start.
  build.announce_queued = true;
  if (build.stages[build.target].state == Stage::State::kDone) {
    FinishBuild(build, now);
    return;
  }
  for (size_t index = 0; index < build.stages.size(); ++index) MarkReady(build, index);
}

absl::Status BuildScheduler::Cancel(absl::string_view build_id, absl::Time now) {
  auto it = builds_.find(std::string(build_id));
  if (it == builds_.end()) {
    return absl::NotFoundError(
        absl::StrCat("no build \"", absl::CHexEscape(build_id), "\" is running"));
  }
  FailBuild(*it->second, "cancelled", now);
  return absl::OkStatus();
}

void BuildScheduler::MarkReady(Build& build, int index) {
  Stage& stage = build.stages[index];
  if (stage.state != Stage::State::kWaiting) return;
  for (int dep : build.plan.graph.stages[index].deps) {
    if (build.stages[dep].state != Stage::State::kDone) return;
  }
  build.ready.insert({-stage.critical_path, index});
}

void BuildScheduler::Unready(Build& build, int index) {
  build.ready.erase({-build.stages[index].critical_path, index});
}

void BuildScheduler::OnWorkerJoined(const WorkerOffer& worker,
                                    absl::Span<const digest::Digest> holds) {
  for (auto& [id, build] : builds_) build->definition_sent.erase(worker.id);
  worker_blobs_[worker.id] = BlobHolder{worker.blob_endpoint, worker.public_key};
  for (const digest::Digest& blob : holds) locations_[blob].insert(worker.id);
}

void BuildScheduler::OnWorkerLost(const std::string& worker_id, absl::Time now) {
  worker_blobs_.erase(worker_id);
  for (auto& [blob, holders] : locations_) holders.erase(worker_id);
  std::vector<uint64_t> lost;
  for (const auto& [id, assignment] : assignments_) {
    if (assignment->worker == worker_id) lost.push_back(id);
  }
  for (uint64_t id : lost) {
    const std::string build_id = assignments_[id]->build_id;
    const int stage = assignments_[id]->stage;
    std::vector<std::pair<std::string, int>> sharers = assignments_[id]->sharers;
    Release(id);
    auto it = builds_.find(build_id);
    if (it != builds_.end()) {
      Requeue(*it->second, stage, absl::StrCat("worker ", worker_id, " was lost"), now, true);
    }
    for (const auto& [sharer_build, sharer_stage] : sharers) {
      auto other = builds_.find(sharer_build);
      if (other == builds_.end()) continue;
      Requeue(*other->second, sharer_stage, absl::StrCat("worker ", worker_id, " was lost"), now,
              false);
    }
  }
}

void BuildScheduler::Release(uint64_t assignment) {
  auto it = assignments_.find(assignment);
  if (it == assignments_.end()) return;
  if (--slots_used_[it->second->worker] == 0) slots_used_.erase(it->second->worker);
  if (!it->second->key.empty()) {
    auto flight = in_flight_.find(it->second->key);
    if (flight != in_flight_.end() && flight->second == assignment) in_flight_.erase(flight);
  }
  assignments_.erase(it);
}

void BuildScheduler::Requeue(Build& build, int index, const std::string& why, absl::Time now,
                             bool count) {
  Stage& stage = build.stages[index];
  if (stage.state == Stage::State::kDone) return;
  if (count) ++stage.attempts;
  if (stage.attempts >= options_.max_attempts) {
    FailBuild(
        build,
        absl::StrCat(build.definition.dockerfile_name, ":", build.plan.graph.stages[index].line,
                     ": stage ", StageLabel(build.plan.graph.stages[index]), " failed ",
                     stage.attempts, " times; last: ", why),
        now);
    return;
  }
  stage.state = Stage::State::kWaiting;
  stage.assignment = 0;
  stage.not_before = now + options_.retry_backoff * stage.attempts;
  SendEvent(
      build, index, schema::BuildEvent::Kind::RETRIED,
      [&](schema::BuildEvent::Builder event) { event.setText(why); }, now);
  MarkReady(build, index);
}

void BuildScheduler::RevertProducer(Build& build, int index, absl::Time now) {
  Stage& stage = build.stages[index];
  if (stage.state != Stage::State::kDone) return;
  stage.state = Stage::State::kWaiting;
  stage.result.reset();
  if (stage.key && options_.cache_store != nullptr) {
    options_.cache_store->DeleteCacheEntry(absl::StrCat(kCachePrefix, *stage.key)).IgnoreError();
  }
  for (int consumer : stage.consumers) Unready(build, consumer);
  // Its own inputs may be gone too: it finds out when it is dispatched.
  for (int dep : build.plan.graph.stages[index].deps) {
    if (build.stages[dep].state == Stage::State::kIdle) {
      // Cached above it at submit: now it must be runnable again.
      build.stages[dep].state = Stage::State::kWaiting;
      build.stages[dep].consumers.push_back(index);
      MarkReady(build, dep);
    }
  }
  SendEvent(
      build, index, schema::BuildEvent::Kind::RETRIED,
      [](schema::BuildEvent::Builder event) {
        event.setText("its results were lost with the workers that held them");
      },
      now);
  MarkReady(build, index);
}

void BuildScheduler::Complete(Build& build, int index, const Result& result, bool cached,
                              const std::string& worker, double seconds, uint64_t bytes_fetched,
                              absl::Time now) {
  Stage& stage = build.stages[index];
  Unready(build, index);
  stage.state = Stage::State::kDone;
  stage.assignment = 0;
  stage.result = result;
  SendEvent(
      build, index,
      cached ? schema::BuildEvent::Kind::CACHED : schema::BuildEvent::Kind::STAGE_DONE,
      [&](schema::BuildEvent::Builder event) {
        event.setWorkerId(worker);
        event.setSeconds(seconds);
        event.setBytesFetched(bytes_fetched);
      },
      now);
  if (index == build.target) {
    FinishBuild(build, now);
    return;
  }
  for (int consumer : stage.consumers) MarkReady(build, consumer);
}

void BuildScheduler::FinishBuild(Build& build, absl::Time now) {
  const Result& result = *build.stages[build.target].result;
  std::vector<digest::Digest> layers;
  for (const oci::Descriptor& layer : result.image.layers) layers.push_back(layer.digest);
  const std::vector<BlobHolder> holders = HoldersOf(layers);
  SendEvent(
      build, -1, schema::BuildEvent::Kind::DONE,
      [&](schema::BuildEvent::Builder event) {
        event.setSeconds(absl::ToDoubleSeconds(now - build.started));
        build::ToSchema(result.image, event.initResult());
        auto list = event.initHolders(holders.size());
        for (size_t i = 0; i < holders.size(); ++i) {
          list[i].setEndpoint(holders[i].endpoint);
          list[i].setPublicKey(holders[i].public_key);
        }
      },
      now);
  Log(absl::StrCat("build ", build.id, " done in ", absl::FormatDuration(now - build.started)));
  builds_.erase(build.id);
}

void BuildScheduler::FailBuild(Build& build, const std::string& why, absl::Time now) {
  const std::string id = build.id;
  SendEvent(
      build, -1, schema::BuildEvent::Kind::FAILED,
      [&](schema::BuildEvent::Builder event) { event.setText(why); }, now);
  Log(absl::StrCat("build ", id, " failed: ", why));
  // Its running stages stop, unless another build waits for the same result.
  for (auto& [assignment_id, assignment] : assignments_) {
    if (assignment->build_id != id) continue;
    bool shared = false;
    for (const auto& [sharer_build, stage] : assignment->sharers) {
      if (sharer_build != id && builds_.count(sharer_build) > 0) shared = true;
    }
    if (shared) continue;
    auto worker = worker_blobs_.find(assignment->worker);
    if (worker == worker_blobs_.end()) continue;
    capnp::MallocMessageBuilder message;
    net::InitEnvelope(message, assignment_id).setCancelStage(assignment_id);
    // The worker's routing id is only known to the registry: the service
    // sends cancellations by worker id (see send's contract).
    options_.send(absl::StrCat("worker:", assignment->worker), message, {}).IgnoreError();
  }
  builds_.erase(id);
}

std::vector<BlobHolder> BuildScheduler::HoldersOf(const std::vector<digest::Digest>& blobs) const {
  std::set<std::string> workers;
  for (const digest::Digest& blob : blobs) {
    auto it = locations_.find(blob);
    if (it != locations_.end()) workers.insert(it->second.begin(), it->second.end());
  }
  std::vector<BlobHolder> holders;
  for (const std::string& worker : workers) {
    auto it = worker_blobs_.find(worker);
    if (it != worker_blobs_.end()) holders.push_back(it->second);
  }
  return holders;
}

std::vector<BlobHolder> BuildScheduler::Holders(const digest::Digest& blob) const {
  return HoldersOf({blob});
}

bool BuildScheduler::Available(const Result& result, const std::vector<std::string>* paths) const {
  auto held = [this](const digest::Digest& blob) {
    auto it = locations_.find(blob);
    return it != locations_.end() && !it->second.empty();
  };
  if (paths != nullptr) {
    auto artifact = result.artifacts.find(*paths);
    if (artifact != result.artifacts.end() && held(artifact->second.digest)) return true;
  }
  for (const oci::Descriptor& layer : result.image.layers) {
    if (!held(layer.digest)) return false;
  }
  return true;
}

std::vector<std::string> BuildScheduler::RunningOn(absl::string_view worker_id) const {
  std::vector<std::string> running;
  for (const auto& [id, assignment] : assignments_) {
    if (assignment->worker != worker_id) continue;
    std::string name = absl::StrCat("stage-", assignment->stage);
    auto build = builds_.find(assignment->build_id);
    if (build != builds_.end()) {
      name = StageLabel(build->second->plan.graph.stages[assignment->stage]);
    }
    running.push_back(absl::StrCat(assignment->build_id, " ", name,
                                   assignment->step.empty() ? "" : " ", assignment->step));
  }
  return running;
}

uint32_t BuildScheduler::SlotsUsed(absl::string_view worker_id) const {
  auto it = slots_used_.find(worker_id);
  return it == slots_used_.end() ? 0 : it->second;
}

void BuildScheduler::Dispatch(const std::map<std::string, WorkerState, std::less<>>& workers,
                              absl::Time now) {
  bool progress = true;
  while (progress && !builds_.empty()) {
    progress = false;
    // With every slot taken, nothing can go out, except for stages that no
    // worker runs (which must time out) or that share a running result;
    // those are looked at again once a slot frees or the grace passes.
    bool free_slot = false;
    for (const auto& [id, worker] : workers) {
      if (!worker.draining && SlotsUsed(id) < worker.offer.slots) free_slot = true;
    }
    if (!free_slot && now - last_full_scan_ < absl::Seconds(1)) break;
    if (!free_slot) last_full_scan_ = now;
    // One stage per build per pass, starting after the build served last.
    std::vector<std::string> order;
    for (auto it = builds_.upper_bound(last_served_); it != builds_.end(); ++it) {
      order.push_back(it->first);
    }
    for (auto it = builds_.begin(); it != builds_.end() && it->first <= last_served_; ++it) {
      order.push_back(it->first);
    }
    for (const std::string& id : order) {
      auto it = builds_.find(id);
      if (it == builds_.end()) continue;
      if (TryDispatch(*it->second, workers, now)) {
        last_served_ = id;
        progress = true;
      }
    }
  }
  for (auto& [id, build] : builds_) {
    if (!build->announce_queued) continue;
    build->announce_queued = false;
    std::vector<uint32_t> queued;
    for (size_t index = 0; index < build->stages.size(); ++index) {
      const Stage::State state = build->stages[index].state;
      if (state != Stage::State::kIdle && state != Stage::State::kDone) queued.push_back(index);
    }
    SendEvent(
        *build, -1, schema::BuildEvent::Kind::QUEUED,
        [&](schema::BuildEvent::Builder event) {
          auto stages = event.initQueuedStages(queued.size());
          auto names = event.initQueuedNames(queued.size());
          for (size_t i = 0; i < queued.size(); ++i) {
            stages.set(i, queued[i]);
            names.set(i, build->plan.graph.stages[queued[i]].name);
          }
        },
        now);
  }
}

bool BuildScheduler::TryDispatch(Build& build,
                                 const std::map<std::string, WorkerState, std::less<>>& workers,
                                 absl::Time now) {
  const graph::StageGraph& graph = build.plan.graph;
  // The ready set changes under the loop (stages leave it, producers come
  // back to it): each turn resumes after the entry just looked at.
  for (std::pair<int, int> cursor(std::numeric_limits<int>::min(), -1);;) {
    auto it = build.ready.upper_bound(cursor);
    if (it == build.ready.end()) break;
    cursor = *it;
    const int index = cursor.second;
    Stage& stage = build.stages[index];
    if (stage.not_before > now) continue;
    // Its inputs must still be somewhere; a producer whose results are
    // gone runs again first.
    const std::map<int, build::StageNeed>& needs = build.needs[index];
    bool inputs_here = true;
    for (const auto& [producer, need] : needs) {
      const Stage& made = build.stages[producer];
      if (!made.result || !Available(*made.result, need.whole ? nullptr : &need.paths)) {
        RevertProducer(build, producer, now);
        inputs_here = false;
      }
    }
    if (!inputs_here) {
      Unready(build, index);
      continue;
    }
    // The same result already being made: wait for it.
    if (stage.key) {
      auto flight = in_flight_.find(*stage.key);
      if (flight != in_flight_.end()) {
        Unready(build, index);
        stage.state = Stage::State::kShared;
        stage.assignment = flight->second;
        assignments_[flight->second]->sharers.push_back({build.id, index});
        return true;
      }
    }
    // Its inputs' blobs, to score the workers by what they hold.
    std::vector<std::pair<digest::Digest, uint64_t>> input_blobs;
    for (const auto& [producer, need] : needs) {
      const Result& made = *build.stages[producer].result;
      auto artifact = need.whole ? made.artifacts.end() : made.artifacts.find(need.paths);
      if (artifact != made.artifacts.end()) {
        input_blobs.push_back({artifact->second.digest, artifact->second.size});
      } else {
        for (const oci::Descriptor& layer : made.image.layers) {
          input_blobs.push_back({layer.digest, layer.size});
        }
      }
    }
    // Bytes of those inputs each worker holds, from the blobs' holders.
    absl::flat_hash_map<absl::string_view, uint64_t> held_bytes;
    for (const auto& [blob, size] : input_blobs) {
      auto held = locations_.find(blob);
      if (held == locations_.end()) continue;
      for (const std::string& holder : held->second) held_bytes[holder] += size;
    }
    const oci::Platform& platform = graph.stages[index].platform;
    const WorkerState* best = nullptr;
    uint64_t best_bytes = 0;
    uint32_t best_free = 0;
    bool any_platform = false;
    for (const auto& [id, worker] : workers) {
      if (worker.draining || !PlatformMatches(platform, worker.offer.platforms)) continue;
      if (worker_blobs_.count(id) == 0) continue;  // joined, but not through OnWorkerJoined
      any_platform = true;
      const uint32_t used = SlotsUsed(id);
      if (used >= worker.offer.slots) continue;
      auto held = held_bytes.find(id);
      const uint64_t bytes = held == held_bytes.end() ? 0 : held->second;
      const uint32_t free = worker.offer.slots - used;
      if (best == nullptr || bytes > best_bytes || (bytes == best_bytes && free > best_free)) {
        best = &worker;
        best_bytes = bytes;
        best_free = free;
      }
    }
    if (!any_platform) {
      if (!stage.no_worker_since) stage.no_worker_since = now;
      if (now - *stage.no_worker_since >= options_.no_worker_grace) {
        FailBuild(build,
                  absl::StrCat(build.definition.dockerfile_name, ":", graph.stages[index].line,
                               ": stage ", StageLabel(graph.stages[index]),
                               ": no live worker runs ", platform.String(), " (waited ",
                               absl::FormatDuration(options_.no_worker_grace), ")"),
                  now);
        return false;
      }
      continue;
    }
    stage.no_worker_since.reset();
    if (best == nullptr) continue;  // every worker for it is busy
    const uint64_t id = next_assignment_++;
    auto assignment = std::make_unique<Assignment>();
    assignment->build_id = build.id;
    assignment->stage = index;
    assignment->worker = best->offer.id;
    assignment->key = stage.key.value_or("");
    for (const auto& [blob, size] : input_blobs) assignment->inputs.push_back(blob);
    assignments_.emplace(id, std::move(assignment));
    ++slots_used_[best->offer.id];
    if (stage.key) in_flight_[*stage.key] = id;
    Unready(build, index);
    stage.state = Stage::State::kRunning;
    stage.assignment = id;
    SendAssign(build, index, *best, id);
    ++dispatched_;
    return true;
  }
  return false;
}

void BuildScheduler::SendAssign(Build& build, int index, const WorkerState& worker, uint64_t id) {
  capnp::MallocMessageBuilder message;
  schema::StageAssign::Builder assign = net::InitEnvelope(message, id).initAssignStage();
  assign.setBuildId(build.id);
  assign.setStage(index);
  // Each worker gets a build's definition once and keeps it for the build's
  // later assignments (a worker that joins again is sent it again).
  std::vector<zmq::message_t> frames;
  if (build.definition_sent.insert(worker.offer.id).second) {
    assign.setDefinitionFrame(true);
    frames.emplace_back().copy(build.definition_frame);  // shares the bytes
  }
  const std::map<int, build::StageNeed>& needs = build.needs[index];
  auto inputs = assign.initInputs(needs.size());
  size_t i = 0;
  for (const auto& [producer, need] : needs) {
    const Result& made = *build.stages[producer].result;
    schema::StageInput::Builder input = inputs[i++];
    input.setStage(producer);
    schema::StageResult::Builder result = input.initResult();
    build::ToSchema(made.image, result.initImage());
    std::vector<digest::Digest> blobs;
    for (const oci::Descriptor& layer : made.image.layers) blobs.push_back(layer.digest);
    auto artifact = need.whole ? made.artifacts.end() : made.artifacts.find(need.paths);
    if (artifact != made.artifacts.end()) {
      auto list = result.initArtifacts(1);
      auto paths = list[0].initPaths(artifact->first.size());
      for (size_t k = 0; k < artifact->first.size(); ++k) paths.set(k, artifact->first[k]);
      build::ToSchema(artifact->second, list[0].initLayer());
      blobs.push_back(artifact->second.digest);
    }
    if (build.stages[producer].key) result.setCacheKey(*build.stages[producer].key);
    const std::vector<BlobHolder> holders = HoldersOf(blobs);
    auto holder_list = input.initHolders(holders.size());
    for (size_t k = 0; k < holders.size(); ++k) {
      holder_list[k].setEndpoint(holders[k].endpoint);
      holder_list[k].setPublicKey(holders[k].public_key);
    }
  }
  for (auto list : {assign.initContextHolders(1), assign.initImageHolders(1)}) {
    list[0].setEndpoint(options_.coordinator_blobs.endpoint);
    list[0].setPublicKey(options_.coordinator_blobs.public_key);
  }
  const std::vector<std::vector<std::string>>& exports = build.exports[index];
  auto requests = assign.initExports(exports.size());
  for (size_t k = 0; k < exports.size(); ++k) {
    auto paths = requests[k].initPaths(exports[k].size());
    for (size_t p = 0; p < exports[k].size(); ++p) paths.set(p, exports[k][p]);
  }
  absl::Status sent = options_.send(worker.offer.routing_id, message, std::move(frames));
  if (!sent.ok()) {
    Log(absl::StrCat("assignment ", id, " to worker ", worker.offer.id,
                     " not sent: ", sent.message()));
  }
}

absl::Status BuildScheduler::OnStageEvent(const WorkerState& worker, uint64_t assignment_id,
                                          schema::StageEvent::Reader event, absl::Time now) {
  auto it = assignments_.find(assignment_id);
  if (it == assignments_.end()) {
    return absl::NotFoundError(absl::StrCat("worker ", worker.offer.id, ": assignment ",
                                            assignment_id, " is not running"));
  }
  Assignment& assignment = *it->second;
  if (assignment.worker != worker.offer.id) {
    return absl::PermissionDeniedError(absl::StrCat("worker ", worker.offer.id, ": assignment ",
                                                    assignment_id, " belongs to worker ",
                                                    assignment.worker));
  }
  if (Text(event.getBuildId()) != assignment.build_id ||
      event.getStage() != static_cast<uint32_t>(assignment.stage)) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker ", worker.offer.id, ": event for build \"",
                     absl::CHexEscape(Text(event.getBuildId())), "\" stage ", event.getStage(),
                     " on assignment ", assignment_id, " which runs build ", assignment.build_id,
                     " stage ", assignment.stage));
  }
  auto build_it = builds_.find(assignment.build_id);
  Build* build = build_it == builds_.end() ? nullptr : build_it->second.get();
  const int index = assignment.stage;
  auto forward = [&](schema::BuildEvent::Kind kind) {
    if (build == nullptr) return;
    SendEvent(
        *build, index, kind,
        [&](schema::BuildEvent::Builder out) {
          out.setWorkerId(worker.offer.id);
          out.setStep(event.getStep());
          out.setSteps(event.getSteps());
          out.setText(event.getText());
        },
        now);
  };
  switch (event.getKind()) {
    case schema::StageEvent::Kind::STARTED:
      forward(schema::BuildEvent::Kind::STARTED);
      return absl::OkStatus();
    case schema::StageEvent::Kind::STEP:
      assignment.step = absl::StrCat("step ", event.getStep(), "/", event.getSteps());
      forward(schema::BuildEvent::Kind::STEP);
      return absl::OkStatus();
    case schema::StageEvent::Kind::LOG:
      forward(schema::BuildEvent::Kind::LOG);
      return absl::OkStatus();
    case schema::StageEvent::Kind::NOTE:
      forward(schema::BuildEvent::Kind::NOTE);
      return absl::OkStatus();
    case schema::StageEvent::Kind::FINISHED: {
      Result result;
      absl::Status parsed = [&]() -> absl::Status {
        absl::StatusOr<oci::BuiltImage> image = build::FromSchema(event.getResult().getImage());
        if (!image.ok()) return image.status();
        result.image = *std::move(image);
        for (schema::Artifact::Reader artifact : event.getResult().getArtifacts()) {
          absl::StatusOr<oci::Descriptor> layer = build::FromSchema(artifact.getLayer());
          if (!layer.ok()) return layer.status();
          std::vector<std::string> paths;
          for (capnp::Text::Reader path : artifact.getPaths()) paths.push_back(Text(path));
          result.artifacts.emplace(std::move(paths), *std::move(layer));
        }
        if (options_.check_holds) return options_.check_holds(worker.offer, result.Blobs());
        return absl::OkStatus();
      }();
      const std::string key = assignment.key;
      const std::vector<std::pair<std::string, int>> sharers = assignment.sharers;
      const std::vector<digest::Digest> inputs = assignment.inputs;
      Release(assignment_id);
      if (!parsed.ok()) {
        const std::string why =
            absl::StrCat("worker ", worker.offer.id, ": result refused: ", parsed.message());
        if (build != nullptr) Requeue(*build, index, why, now, true);
        for (const auto& [sharer_build, stage] : sharers) {
          auto other = builds_.find(sharer_build);
          if (other != builds_.end()) Requeue(*other->second, stage, why, now, false);
        }
        return absl::FailedPreconditionError(why);
      }
      for (const digest::Digest& blob : result.Blobs()) {
        locations_[blob].insert(worker.offer.id);
      }
      for (const digest::Digest& blob : inputs) locations_[blob].insert(worker.offer.id);
      StoreCache(key, result);
      if (build != nullptr) {
        Complete(*build, index, result, false, worker.offer.id, event.getSeconds(),
                 event.getBytesFetched(), now);
      }
      for (const auto& [sharer_build, stage] : sharers) {
        auto other = builds_.find(sharer_build);
        if (other == builds_.end()) continue;
        Complete(*other->second, stage, result, true, worker.offer.id, 0, 0, now);
      }
      return absl::OkStatus();
    }
    case schema::StageEvent::Kind::FAILED: {
      const std::vector<std::pair<std::string, int>> sharers = assignment.sharers;
      Release(assignment_id);
      const std::string why = Text(event.getText());
      if (event.getInputsLost()) {
        // It may have lost the build's definition too (a restart): resend.
        if (build != nullptr) build->definition_sent.erase(worker.offer.id);
        const std::string retry = absl::StrCat("worker ", worker.offer.id, ": ", why);
        if (build != nullptr) Requeue(*build, index, retry, now, true);
        for (const auto& [sharer_build, stage] : sharers) {
          auto other = builds_.find(sharer_build);
          if (other != builds_.end()) Requeue(*other->second, stage, retry, now, false);
        }
        return absl::OkStatus();
      }
      if (build != nullptr) {
        SendEvent(
            *build, index, schema::BuildEvent::Kind::STAGE_FAILED,
            [&](schema::BuildEvent::Builder out) {
              out.setWorkerId(worker.offer.id);
              out.setText(why);
            },
            now);
        FailBuild(*build, why, now);
      }
      for (const auto& [sharer_build, stage] : sharers) {
        auto other = builds_.find(sharer_build);
        if (other != builds_.end()) FailBuild(*other->second, why, now);
      }
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat("worker ", worker.offer.id,
                                                     ": unknown stage event kind ",
                                                     static_cast<int>(event.getKind())));
  }
}

}  // namespace stagefarm::coordinator
