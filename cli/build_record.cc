#include "cli/build_record.h"

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace stagefarm::cli {
namespace {

using Json = nlohmann::ordered_json;
using Kind = ProgressEvent::Kind;

std::string Rfc3339(absl::Time time) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E6SZ", time, absl::UTCTimeZone());
}

std::string StageLabel(int index, const std::string& name) {
  return name.empty() ? absl::StrCat("stage-", index) : name;
}

struct Step {
  uint32_t number = 0, of = 0;
  std::string text;
  absl::Time start;
};

// One run of a stage on a worker, from its start to its end.
struct Attempt {
  std::string worker;
  absl::Time start;
  std::optional<absl::Time> end;
  std::string outcome;  // "done", "failed", "retried", or "" while it runs
  std::vector<Step> steps;
  uint64_t bytes_fetched = 0;
  double seconds = 0;
};

struct StageHistory {
  int index = -1;
  std::string name;
  std::optional<absl::Time> queued;
  bool cached = false;
  std::optional<absl::Time> cached_at;
  std::vector<Attempt> attempts;
};

// The events of a build, per stage, in the order the stages were first seen.
std::vector<StageHistory> Histories(const std::vector<ProgressEvent>& events) {
  std::map<int, size_t> position;
  std::vector<StageHistory> stages;
  for (const ProgressEvent& event : events) {
    if (event.stage < 0) continue;
    auto [it, added] = position.emplace(event.stage, stages.size());
    if (added) {
      StageHistory history;
      history.index = event.stage;
      history.name = event.stage_name;
      stages.push_back(std::move(history));
    }
    StageHistory& stage = stages[it->second];
    if (stage.name.empty()) stage.name = event.stage_name;
    Attempt* running =
        stage.attempts.empty() || stage.attempts.back().end ? nullptr : &stage.attempts.back();
    switch (event.kind) {
      case Kind::kQueued:
        if (!stage.queued) stage.queued = event.time;
        break;
      case Kind::kStarted:
        if (running != nullptr) {
          running->end = event.time;
          running->outcome = "retried";
        }
        {
          Attempt attempt;
          attempt.worker = event.worker;
          attempt.start = event.time;
          stage.attempts.push_back(std::move(attempt));
        }
        break;
      case Kind::kStep:
        if (running != nullptr) {
          running->steps.push_back(Step{event.step, event.steps, event.text, event.time});
        }
        break;
      case Kind::kCached:
        // The whole stage from the cluster's cache (no attempt), or one
        // step of a running stage that hit the cache.
        if (running == nullptr) {
          stage.cached = true;
          stage.cached_at = event.time;
        }
        break;
      case Kind::kStageDone:
        if (running != nullptr) {
          running->end = event.time;
          running->outcome = "done";
          running->seconds = event.seconds;
          running->bytes_fetched = event.bytes_fetched;
          if (running->worker.empty()) running->worker = event.worker;
        }
        break;
      case Kind::kStageFailed:
      case Kind::kRetried:
        if (running != nullptr) {
          running->end = event.time;
          running->outcome = event.kind == Kind::kRetried ? "retried" : "failed";
        }
        break;
      default:
        break;
    }
  }
  return stages;
}

}  // namespace

void BuildRecord::Add(const ProgressEvent& event) {
  // Output and notes are in no record, and a build's output can be large.
  if (event.kind == Kind::kLog || event.kind == Kind::kNote) return;
  absl::MutexLock lock(&mu_);
  events_.push_back(event);
}

void BuildRecord::AddClientSpan(ClientSpan span) {
  absl::MutexLock lock(&mu_);
  client_spans_.push_back(std::move(span));
}

std::string BuildRecord::MetadataJson(const BuiltImageRecord& image,
                                      const ClientRecord& client) const {
  absl::MutexLock lock(&mu_);
  Json out;
  out["containerimage.config.digest"] = image.config_digest;
  out["containerimage.descriptor"] = {{"mediaType", image.media_type},
                                      {"digest", image.manifest_digest},
                                      {"size", image.manifest_size}};
  out["containerimage.digest"] = image.manifest_digest;
  if (!image.names.empty()) {
    std::string names;
    for (const std::string& name : image.names) {
      absl::StrAppend(&names, names.empty() ? "" : ",", name);
    }
    out["image.name"] = names;
  }
  Json build = Json::object();
  for (const ProgressEvent& event : events_) {
    if (!event.build.empty() && !build.contains("id")) build["id"] = event.build;
    if (event.kind == Kind::kBuildDone) build["seconds"] = event.seconds;
  }
  out["stagefarm.build"] = build;
  Json stages = Json::array();
  for (const StageHistory& stage : Histories(events_)) {
    Json entry = {{"index", stage.index},
                  {"name", StageLabel(stage.index, stage.name)},
                  {"cached", stage.cached}};
    if (stage.queued) entry["queued"] = Rfc3339(*stage.queued);
    if (!stage.attempts.empty()) {
      const Attempt& last = stage.attempts.back();
      entry["worker"] = last.worker;
      entry["start"] = Rfc3339(last.start);
      if (last.end) entry["end"] = Rfc3339(*last.end);
      entry["seconds"] = last.seconds;
      entry["bytes_fetched"] = last.bytes_fetched;
      entry["attempts"] = stage.attempts.size();
    }
    stages.push_back(std::move(entry));
  }
  out["stagefarm.stages"] = std::move(stages);
  out["stagefarm.client"] = {{"context_files", client.context_files},
                             {"context_files_hashed", client.context_files_hashed},
                             {"context_scan_seconds", client.context_scan_seconds},
                             {"bytes_uploaded", client.bytes_uploaded}};
  return out.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

std::string BuildRecord::TraceJson() const {
  absl::MutexLock lock(&mu_);
  std::optional<absl::Time> origin;
  for (const ProgressEvent& event : events_)
    origin = std::min(origin.value_or(event.time), event.time);
  for (const ClientSpan& span : client_spans_)
    origin = std::min(origin.value_or(span.start), span.start);
  const absl::Time zero = origin.value_or(absl::UnixEpoch());
  auto micros = [zero](absl::Time time) { return absl::ToInt64Microseconds(time - zero); };
  absl::Time last = zero;
  for (const ProgressEvent& event : events_) last = std::max(last, event.time);
  for (const ClientSpan& span : client_spans_) last = std::max(last, span.end);

  Json trace = Json::array();
  std::string build_id;
  for (const ProgressEvent& event : events_) {
    if (!event.build.empty()) {
      build_id = event.build;
      break;
    }
  }
  static constexpr int kPid = 1;
  trace.push_back({{"name", "process_name"},
                   {"ph", "M"},
                   {"pid", kPid},
                   {"args", {{"name", absl::StrCat("stagefarm build ", build_id)}}}});
  // Tracks: 0 is the client; then one per worker lane, in order of first use.
  struct Lane {
    std::string worker;
    int tid;
    absl::Time free_at;
  };
  std::vector<Lane> lanes;
  std::map<std::string, int> lanes_of_worker;
  auto name_track = [&trace](int tid, const std::string& name) {
    trace.push_back({{"name", "thread_name"},
                     {"ph", "M"},
                     {"pid", kPid},
                     {"tid", tid},
                     {"args", {{"name", name}}}});
    trace.push_back({{"name", "thread_sort_index"},
                     {"ph", "M"},
                     {"pid", kPid},
                     {"tid", tid},
                     {"args", {{"sort_index", tid}}}});
  };
  name_track(0, "client");
  auto lane_for = [&](const std::string& worker, absl::Time start, absl::Time end) {
    for (Lane& lane : lanes) {
      if (lane.worker == worker && lane.free_at <= start) {
        lane.free_at = end;
        return lane.tid;
      }
    }
    const int count = ++lanes_of_worker[worker];
    const int tid = static_cast<int>(lanes.size()) + 1;
    lanes.push_back(Lane{worker, tid, end});
    name_track(tid, count == 1 ? worker : absl::StrCat(worker, " #", count));
    return tid;
  };
  auto slice = [&](const std::string& name, const std::string& category, int tid, absl::Time start,
                   absl::Time end, Json args) {
    trace.push_back({{"name", name},
                     {"cat", category},
                     {"ph", "X"},
                     {"pid", kPid},
                     {"tid", tid},
                     {"ts", micros(start)},
                     {"dur", std::max<int64_t>(0, micros(end) - micros(start))},
                     {"args", std::move(args)}});
  };

  for (const ClientSpan& span : client_spans_) {
    slice(span.name, "client", 0, span.start, span.end, Json::object());
  }
  // Attempts in start order, so lanes fill as the stages ran.
  struct Placed {
    const StageHistory* stage;
    const Attempt* attempt;
  };
  const std::vector<StageHistory> stages = Histories(events_);
  std::vector<Placed> placed;
  for (const StageHistory& stage : stages) {
    for (const Attempt& attempt : stage.attempts) placed.push_back({&stage, &attempt});
    if (stage.cached && stage.cached_at) {
      trace.push_back({{"name", absl::StrCat(StageLabel(stage.index, stage.name), " (cached)")},
                       {"cat", "cache"},
                       {"ph", "i"},
                       {"s", "t"},
                       {"pid", kPid},
                       {"tid", 0},
                       {"ts", micros(*stage.cached_at)}});
    }
  }
  std::sort(placed.begin(), placed.end(),
            [](const Placed& a, const Placed& b) { return a.attempt->start < b.attempt->start; });
  for (const Placed& item : placed) {
    const Attempt& attempt = *item.attempt;
    const absl::Time end = attempt.end.value_or(last);
    const int tid =
        lane_for(attempt.worker.empty() ? "worker" : attempt.worker, attempt.start, end);
    Json args = {{"stage", item.stage->index},
                 {"worker", attempt.worker},
                 {"outcome", attempt.outcome.empty() ? "unfinished" : attempt.outcome},
                 {"bytes_fetched", attempt.bytes_fetched}};
    slice(StageLabel(item.stage->index, item.stage->name), "stage", tid, attempt.start, end,
          std::move(args));
    // Before its first step a worker fetches what the stage reads (the
    // layers or artifact of the stages before it, the images it names, the
    // context files it copies) and lays out its context: a transfer slice,
    // with the bytes received from peers, so a wait for inputs is not an
    // unexplained gap.
    if (!attempt.steps.empty() && attempt.steps.front().start > attempt.start) {
      slice("fetch inputs", "transfer", tid, attempt.start,
            std::min(attempt.steps.front().start, end), {{"bytes_fetched", attempt.bytes_fetched}});
    }
    for (size_t i = 0; i < attempt.steps.size(); ++i) {
      const Step& step = attempt.steps[i];
      const absl::Time step_end = i + 1 < attempt.steps.size() ? attempt.steps[i + 1].start : end;
      // Names are instructions, cut short (the dump replaces bytes that are
      // not UTF-8, so a cut inside a character is harmless).
      slice(step.text.substr(0, 80), "step", tid, std::max(step.start, attempt.start),
            std::min(step_end, end), {{"step", absl::StrCat(step.number, "/", step.of)}});
    }
  }
  Json out = {{"traceEvents", std::move(trace)}, {"displayTimeUnit", "ms"}};
  return out.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

}  // namespace stagefarm::cli
