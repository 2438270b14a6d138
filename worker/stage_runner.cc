#include "worker/stage_runner.h"

#include <optional>
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/build/build_definition.h"
#include "common/build/hand_off.h"
#include "common/net/envelope_frame.h"
#include "common/oci/image.h"
#include "common/status/prefixed.h"
#include "worker/build/artifacts.h"
#include "worker/build/local_build.h"

namespace stagefarm::worker {
namespace {

namespace stdfs = std::filesystem;

std::string Text(capnp::Text::Reader text) { return std::string(text.cStr(), text.size()); }

// Why an assignment did not finish.
struct Failure {
  absl::Status status;
  bool inputs_lost = false;  // a fetch failed: the holders are gone
};

// The content digests of the context files `sources` select (every file when
// a source selects nothing resolvable: MaterializeContext then copies them
// all).
std::vector<digest::Digest> ContextBlobs(const fs::ContextIndex& index,
                                         const std::vector<std::string>& sources) {
  std::vector<const fs::ContextEntry*> entries;
  absl::StatusOr<std::vector<const fs::ContextEntry*>> selected = index.Select(sources);
  if (selected.ok()) {
    entries = *std::move(selected);
  } else {
    for (const fs::ContextEntry& entry : index.entries()) entries.push_back(&entry);
  }
  std::set<std::string> seen;
  std::vector<digest::Digest> blobs;
  for (const fs::ContextEntry* entry : entries) {
    if (entry->type != fs::EntryType::kFile || !entry->content) continue;
    if (seen.insert(entry->content->ToString()).second) blobs.push_back(*entry->content);
  }
  return blobs;
}

// One assignment, from its message to its last event.
class AssignmentRun {
 public:
  AssignmentRun(zmq::context_t& context, const StageExecutor& executor,
                const StageRunnerOptions& options, const StageRunner::SendEvent& send, uint64_t id,
                schema::StageAssign::Reader assign, const std::atomic<bool>& cancelled,
                std::function<absl::StatusOr<std::shared_ptr<const KnownBuild>>()> known)
      : context_(context),
        executor_(executor),
        options_(options),
        send_(send),
        id_(id),
        assign_(assign),
        cancelled_(cancelled),
        build_id_(Text(assign.getBuildId())),
        stage_index_(assign.getStage()),
        known_build_(std::move(known)) {}

  void Run() {
    const absl::Time start = absl::Now();
    std::optional<Failure> failure = Execute();
    if (failure) {
      Send(schema::StageEvent::Kind::FAILED, [&](schema::StageEvent::Builder event) {
        event.setText(cancelled_.load() ? "cancelled" : std::string(failure->status.message()));
        event.setInputsLost(failure->inputs_lost);
      });
      Log(absl::StrCat("assignment ", id_, " (build ", build_id_, " stage ", stage_index_,
                       ") failed: ", failure->status.message()));
      return;
    }
    Send(schema::StageEvent::Kind::FINISHED, [&](schema::StageEvent::Builder event) {
      event.setSeconds(absl::ToDoubleSeconds(absl::Now() - start));
      event.setBytesFetched(bytes_fetched_);
      schema::StageResult::Builder result = event.initResult();
      build::ToSchema(result_, result.initImage());
      auto artifacts = result.initArtifacts(artifacts_.size());
      for (size_t i = 0; i < artifacts_.size(); ++i) {
        auto paths = artifacts[i].initPaths(artifacts_[i].first.size());
        for (size_t p = 0; p < artifacts_[i].first.size(); ++p) {
          paths.set(p, artifacts_[i].first[p]);
        }
        build::ToSchema(artifacts_[i].second, artifacts[i].initLayer());
      }
      if (result_key_) result.setCacheKey(result_key_->ToString());
    });
    Log(absl::StrCat("assignment ", id_, " (build ", build_id_, " stage ", stage_index_,
                     ") finished in ", absl::FormatDuration(absl::Now() - start)));
  }

 private:
  void Log(const std::string& line) const {
    if (options_.log) options_.log(line);
  }

  template <typename Fill>
  void Send(schema::StageEvent::Kind kind, Fill fill) const {
    capnp::MallocMessageBuilder message;
    schema::StageEvent::Builder event = net::InitEnvelope(message, id_).initStageEvent();
    event.setBuildId(build_id_);
    event.setStage(stage_index_);
    event.setWorkerId(options_.worker_id);
    event.setKind(kind);
    fill(event);
    send_(message);
  }

  void SendText(schema::StageEvent::Kind kind, absl::string_view text) const {
    Send(kind, [&](schema::StageEvent::Builder event) {
      event.setText(capnp::Text::Reader(text.data(), text.size()));
    });
  }

  std::optional<Failure> Cancelled() const {
    if (!cancelled_.load()) return std::nullopt;
    return Failure{absl::CancelledError("cancelled")};
  }

  // Fetches `blobs` from `holders` into the store.
  std::optional<Failure> Fetch(const std::vector<digest::Digest>& blobs,
                               capnp::List<schema::Holder>::Reader holders,
                               absl::string_view what) {
    if (blobs.empty()) return std::nullopt;
    if (std::optional<Failure> cancelled = Cancelled()) return cancelled;
    std::vector<transfer::Peer> peers;
    for (schema::Holder::Reader holder : holders) {
      const std::string endpoint = Text(holder.getEndpoint());
      absl::StatusOr<net::SocketSecurity> security =
          options_.peer_security ? options_.peer_security(Text(holder.getPublicKey()))
                                 : net::SocketSecurity::Insecure();
      if (!security.ok()) {
        return Failure{absl::Status(
            security.status().code(),
            absl::StrCat(what, ": holder ", endpoint, ": ", security.status().message()))};
      }
      peers.push_back(transfer::Peer{endpoint, *std::move(security)});
    }
    absl::StatusOr<transfer::FetchReport> report =
        transfer::FetchBlobs(context_, executor_.store(), blobs, peers, options_.fetch);
    if (!report.ok()) {
      const absl::Status& status = report.status();
      const bool lost =
          absl::IsNotFound(status) || absl::IsUnavailable(status) || absl::IsDataLoss(status);
      return Failure{
          absl::Status(status.code(), absl::StrCat("fetching ", what, ": ", status.message())),
          lost};
    }
    bytes_fetched_ += report->bytes_received;
    return std::nullopt;
  }

  std::optional<Failure> Execute() {
    absl::StatusOr<std::shared_ptr<const KnownBuild>> known = known_build_();
    if (!known.ok()) {
      return Failure{known.status(), absl::IsFailedPrecondition(known.status())};
    }
    known_ = *std::move(known);
    const graph::StageGraph& graph = known_->plan.graph;
    if (stage_index_ >= graph.stages.size() || !graph.stages[stage_index_].needed) {
      return Failure{absl::InvalidArgumentError(absl::StrCat(
          "build ", build_id_, ": stage ", stage_index_,
          " is not a stage the build needs (the plan has ", graph.stages.size(), " stages)"))};
    }
    const graph::PlannedStage& stage = graph.stages[stage_index_];
    SendText(schema::StageEvent::Kind::STARTED,
             stage.base_name.empty() ? std::string("scratch") : stage.base_name);

    // The stages it reads: their layers, or the artifact of the paths it reads.
    std::map<int, schema::StageInput::Reader> given;
    for (schema::StageInput::Reader input : assign_.getInputs())
      given.emplace(input.getStage(), input);
    std::vector<digest::Digest> held;
    for (const auto& [producer, need] : build::ConsumerNeeds(graph, stage_index_)) {
      auto it = given.find(producer);
      if (it == given.end()) {
        return Failure{absl::InvalidArgumentError(
            absl::StrCat("build ", build_id_, ": the assignment of stage ", stage_index_,
                         " lacks the result of stage ", producer, ", which it reads"))};
      }
      const schema::StageResult::Reader result = it->second.getResult();
      absl::StatusOr<BuiltImage> image = build::FromSchema(result.getImage());
      if (!image.ok()) return Failure{image.status()};
      std::optional<oci::Descriptor> artifact;
      if (!need.whole) {
        for (schema::Artifact::Reader offered : result.getArtifacts()) {
          std::vector<std::string> paths;
          for (capnp::Text::Reader path : offered.getPaths()) paths.push_back(Text(path));
          if (paths != need.paths) continue;
          absl::StatusOr<oci::Descriptor> layer = build::FromSchema(offered.getLayer());
          if (!layer.ok()) return Failure{layer.status()};
          artifact = *std::move(layer);
        }
      }
      BuiltImage input = artifact ? ArtifactImage(*image, *artifact) : *std::move(image);
      std::vector<digest::Digest> blobs;
      for (const oci::Descriptor& layer : input.layers) blobs.push_back(layer.digest);
      if (std::optional<Failure> failed =
              Fetch(blobs, it->second.getHolders(),
                    absl::StrCat(artifact ? "the artifact of stage " : "the layers of stage ",
                                 producer))) {
        return failed;
      }
      held.insert(held.end(), blobs.begin(), blobs.end());
      inputs_.emplace(producer, std::move(input));
    }

    // The external images it names.
    std::vector<oci::ImageRef> refs = stage.images;
    if (stage.base.kind == graph::StageBase::Kind::kImage) refs.push_back(stage.base.image);
    std::vector<digest::Digest> image_blobs;
    for (const oci::ImageRef& ref : refs) {
      const build::NamedImage* image = known_->definition.FindImage(ref);
      if (image == nullptr) continue;  // resolving it fails, with the instruction's location
      for (const oci::Descriptor& layer : image->image.layers) image_blobs.push_back(layer.digest);
    }
    if (std::optional<Failure> failed =
            Fetch(image_blobs, assign_.getImageHolders(), "the layers of the build's images")) {
      return failed;
    }
    held.insert(held.end(), image_blobs.begin(), image_blobs.end());

    // The context files it copies.
    const std::vector<std::string> sources = graph::SelectSources(stage.context_paths);
    if (!sources.empty()) {
      if (std::optional<Failure> failed = Fetch(ContextBlobs(known_->definition.context, sources),
                                                assign_.getContextHolders(), "the build context")) {
        return failed;
      }
    }
    // And from the named local contexts, whose files the client uploaded to
    // the same holders.
    for (const auto& [name, paths] : stage.named_context_paths) {
      const build::NamedContext* named = known_->definition.FindNamedContext(name);
      if (named == nullptr || named->image) {
        return Failure{
            absl::NotFoundError(absl::StrCat("build context ", name, " is not defined"))};
      }
      if (std::optional<Failure> failed =
              Fetch(ContextBlobs(named->context, graph::SelectSources(paths)),
                    assign_.getContextHolders(), absl::StrCat("build context ", name))) {
        return failed;
      }
    }
    if (std::optional<Failure> cancelled = Cancelled()) return cancelled;

    absl::StatusOr<ScratchDir> scratch = executor_.NewScratchDir("assignment");
    if (!scratch.ok()) return Failure{scratch.status()};
    const stdfs::path context = scratch->path() / "context";
    if (sources.empty()) {
      std::error_code error;
      stdfs::create_directories(context, error);
      if (error) {
        return Failure{absl::InternalError(absl::StrCat(context.native(), ": ", error.message()))};
      }
    } else if (absl::Status made = MaterializeContextFromStore(
                   executor_.store(), known_->definition.context, sources, context);
               !made.ok()) {
      return Failure{made};
    }

    StageInputs inputs;
    for (const auto& [name, paths] : stage.named_context_paths) {
      const stdfs::path dir =
          scratch->path() / absl::StrCat("named-context-", inputs.named_context_dirs.size());
      if (absl::Status made = MaterializeContextFromStore(
              executor_.store(), known_->definition.FindNamedContext(name)->context,
              graph::SelectSources(paths), dir);
          !made.ok()) {
        return Failure{Prefixed(absl::StrCat("build context ", name), made)};
      }
      inputs.named_context_dirs.emplace(name, dir);
    }
    switch (stage.base.kind) {
      case graph::StageBase::Kind::kScratch:
        inputs.base.config = oci::ScratchConfig(stage.platform);
        break;
      case graph::StageBase::Kind::kImage: {
        const build::NamedImage* image = known_->definition.FindImage(stage.base.image);
        if (image == nullptr) {
          return Failure{absl::NotFoundError(absl::StrCat(
              known_->definition.dockerfile_name, ":", stage.line, ": FROM ", stage.base_name,
              ": the build names no image \"", stage.base.image.String(), "\""))};
        }
        inputs.base = image->image;
        break;
      }
      case graph::StageBase::Kind::kStage:
        // ConsumerNeeds asks for the whole of the base stage.
        inputs.base = inputs_.at(stage.base.stage);
        break;
    }
    inputs.context_dir = context;
    inputs.resolve = [this](const graph::SourceRoot& source) -> absl::StatusOr<BuiltImage> {
      if (source.kind == graph::SourceRoot::Kind::kImage) {
        const build::NamedImage* image = known_->definition.FindImage(source.image);
        if (image == nullptr) {
          return absl::NotFoundError(
              absl::StrCat("the build names no image \"", source.image.String(), "\""));
        }
        return image->image;
      }
      if (source.kind != graph::SourceRoot::Kind::kStage) {
        return absl::InternalError("only a stage or an image is resolved");
      }
      auto it = inputs_.find(source.stage);
      if (it == inputs_.end()) {
        return absl::InternalError(absl::StrCat("stage ", source.stage, " was not fetched"));
      }
      return it->second;
    };
    inputs.proxy_env.assign(graph.proxy_env.begin(), graph.proxy_env.end());
    inputs.dockerfile_name = known_->definition.dockerfile_name;
    if (stage_index_ < known_->plan.keys.size() && known_->plan.keys[stage_index_]) {
      inputs.cache_keys = known_->plan.keys[stage_index_]->instructions;
      result_key_ = known_->plan.keys[stage_index_]->result;
    }
    inputs.use_cache = !known_->definition.no_cache;
    inputs.source_date_epoch = known_->definition.source_date_epoch;
    inputs.secrets = &known_->definition.secrets;
    inputs.cancelled = &cancelled_;
    StageEvents events;
    events.on_step = [this](size_t step, size_t steps, absl::string_view text) {
      Send(schema::StageEvent::Kind::STEP, [&](schema::StageEvent::Builder event) {
        event.setStep(static_cast<uint32_t>(step));
        event.setSteps(static_cast<uint32_t>(steps));
        event.setText(capnp::Text::Reader(text.data(), text.size()));
      });
    };
    events.on_output = [this](absl::string_view output) {
      SendText(schema::StageEvent::Kind::LOG, output);
    };
    events.on_note = [this](absl::string_view line) {
      SendText(schema::StageEvent::Kind::NOTE, line);
    };
    absl::StatusOr<BuiltImage> built = executor_.Run(stage, inputs, events);
    if (!built.ok()) return Failure{built.status()};
    result_ = *std::move(built);
    if (std::optional<Failure> cancelled = Cancelled()) return cancelled;

    // The artifacts its consumers read. One that cannot be made leaves them
    // the whole stage to read, which gives the same result.
    for (schema::ArtifactRequest::Reader request : assign_.getExports()) {
      std::vector<std::string> paths;
      for (capnp::Text::Reader path : request.getPaths()) paths.push_back(Text(path));
      absl::StatusOr<oci::Descriptor> artifact =
          ExportArtifact(executor_, result_, paths, known_->definition.source_date_epoch);
      if (!artifact.ok()) {
        SendText(schema::StageEvent::Kind::NOTE,
                 absl::StrCat("no artifact of ", absl::StrJoin(paths, " "), " (",
                              artifact.status().message(), "): its readers take the whole stage"));
        continue;
      }
      artifacts_.emplace_back(std::move(paths), *std::move(artifact));
    }

    for (const oci::Descriptor& layer : result_.layers) held.push_back(layer.digest);
    for (const auto& [paths, artifact] : artifacts_) held.push_back(artifact.digest);
    for (const digest::Digest& blob : held) {
      absl::Status recorded =
          executor_.store().SetRef(absl::StrCat(kHeldRefPrefix, blob.ToString()), blob);
      if (!recorded.ok()) return Failure{recorded};
    }
    return std::nullopt;
  }

  zmq::context_t& context_;
  const StageExecutor& executor_;
  const StageRunnerOptions& options_;
  const StageRunner::SendEvent& send_;
  const uint64_t id_;
  const schema::StageAssign::Reader assign_;
  const std::atomic<bool>& cancelled_;
  const std::string build_id_;
  const uint32_t stage_index_;

  std::function<absl::StatusOr<std::shared_ptr<const KnownBuild>>()> known_build_;
  std::shared_ptr<const KnownBuild> known_;
  std::map<int, BuiltImage> inputs_;  // the stages it reads, as fetched
  uint64_t bytes_fetched_ = 0;
  BuiltImage result_;
  std::vector<std::pair<std::vector<std::string>, oci::Descriptor>> artifacts_;
  std::optional<digest::Digest> result_key_;
};

}  // namespace

absl::StatusOr<std::vector<std::string>> HeldBlobs(const cas::BlobStore& store) {
  absl::StatusOr<std::vector<std::pair<std::string, digest::Digest>>> refs =
      store.ListRefs(kHeldRefPrefix);
  if (!refs.ok()) return refs.status();
  std::vector<std::string> held;
  held.reserve(refs->size());
  for (const auto& [name, blob] : *refs) held.push_back(blob.ToString());
  return held;
}

StageRunner::StageRunner(zmq::context_t& context, const StageExecutor& executor,
                         StageRunnerOptions options, SendEvent send)
    : context_(context),
      executor_(executor),
      options_(std::move(options)),
      send_(std::move(send)) {}

StageRunner::~StageRunner() { Stop(); }

void StageRunner::Stop() {
  std::map<uint64_t, std::unique_ptr<Assignment>> assignments;
  {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
    assignments.swap(assignments_);
  }
  for (auto& [id, assignment] : assignments) assignment->cancelled.store(true);
  for (auto& [id, assignment] : assignments) assignment->thread.join();
}

void StageRunner::Reap() {
  for (auto it = assignments_.begin(); it != assignments_.end();) {
    if (!it->second->done.load()) {
      ++it;
      continue;
    }
    it->second->thread.join();
    it = assignments_.erase(it);
  }
}

absl::Status StageRunner::Handle(const net::ReceivedMessage& message) {
  const schema::Envelope::Reader envelope = message.envelope();
  const uint64_t id = envelope.getRequestId();
  absl::MutexLock lock(&mu_);
  if (stopped_) return absl::FailedPreconditionError("the worker is stopping");
  Reap();
  switch (envelope.which()) {
    case schema::Envelope::ASSIGN_STAGE: {
      if (assignments_.count(id) > 0) return absl::OkStatus();
      auto assignment = std::make_unique<Assignment>();
      if (envelope.getAssignStage().getDefinitionFrame()) {
        if (message.data_frames().empty()) {
          return absl::InvalidArgumentError(absl::StrCat(message.from().peer, ": assignment ", id,
                                                         " says it carries the build's definition"
                                                         " and has no data frame"));
        }
        const zmq::message_t& frame = message.data_frames().front();
        assignment->definition.assign(frame.data<char>(), frame.size());
      }
      assignment->message = std::make_unique<capnp::MallocMessageBuilder>();
      assignment->message->setRoot(envelope.getAssignStage());
      Assignment* raw = assignment.get();
      assignments_.emplace(id, std::move(assignment));
      raw->thread = std::thread([this, id, raw] {
        Run(id, raw->message->getRoot<schema::StageAssign>().asReader(), raw->definition,
            raw->cancelled);
        raw->done.store(true);
      });
      return absl::OkStatus();
    }
    case schema::Envelope::CANCEL_STAGE: {
      auto it = assignments_.find(envelope.getCancelStage());
      if (it != assignments_.end()) it->second->cancelled.store(true);
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "message kind ", static_cast<int>(envelope.which()), " is not for the stage runner"));
  }
}

uint32_t StageRunner::running() const {
  absl::MutexLock lock(&mu_);
  uint32_t running = 0;
  for (const auto& [id, assignment] : assignments_) {
    if (!assignment->done.load()) ++running;
  }
  return running;
}

void StageRunner::Run(uint64_t id, schema::StageAssign::Reader assign, absl::string_view definition,
                      const std::atomic<bool>& cancelled) const {
  if (options_.log) {
    options_.log(absl::StrCat("assignment ", id, ": build ", Text(assign.getBuildId()), " stage ",
                              assign.getStage()));
  }
  AssignmentRun(context_, executor_, options_, send_, id, assign, cancelled,
                [this, assign, definition] { return Known(assign, definition); })
      .Run();
}

absl::StatusOr<std::shared_ptr<const KnownBuild>> StageRunner::Known(
    schema::StageAssign::Reader assign, absl::string_view definition_frame) const {
  const std::string build_id = Text(assign.getBuildId());
  if (definition_frame.empty()) {
    absl::MutexLock lock(&known_mu_);
    for (auto it = known_.begin(); it != known_.end(); ++it) {
      if (it->first != build_id) continue;
      std::pair<std::string, std::shared_ptr<const KnownBuild>> entry = *it;
      known_.erase(it);
      known_.push_back(entry);
      return entry.second;
    }
    return absl::FailedPreconditionError(
        absl::StrCat("build ", build_id, ": its definition is not known on this worker"));
  }
  auto known = std::make_shared<KnownBuild>();
  absl::StatusOr<build::BuildDefinition> definition =
      build::ParseDefinition(definition_frame, absl::StrCat("build ", build_id));
  if (!definition.ok()) return definition.status();
  known->definition = *std::move(definition);
  absl::StatusOr<build::PlannedBuild> plan = build::PlanBuild(known->definition);
  if (!plan.ok()) return plan.status();
  known->plan = *std::move(plan);
  absl::MutexLock lock(&known_mu_);
  for (auto it = known_.begin(); it != known_.end(); ++it) {
    if (it->first == build_id) {
      known_.erase(it);
      break;
    }
  }
  known_.emplace_back(build_id, known);
  if (known_.size() > kKnownBuilds) known_.pop_front();
  return std::shared_ptr<const KnownBuild>(known);
}

}  // namespace stagefarm::worker
