#include "common/graph/stage_graph.h"

#include <algorithm>
#include <deque>
#include <optional>
#include <utility>
#include <variant>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/dockerfile/dockerignore.h"
#include "common/dockerfile/parser.h"
#include "common/dockerfile/suggestion.h"
#include "common/graph/stage_scope.h"

namespace stagefarm::graph {
namespace {

using dockerfile::Instruction;
using dockerfile::ShellEnv;
using dockerfile::ShellLexer;
using dockerfile::SourceRange;

// What a --from or from= value refers to.
using Origin = SourceRoot;

// One instruction of a stage, with its references resolved.
struct Command {
  const Instruction* instruction = nullptr;
  SourceRange location;
  bool onbuild = false;
  Origin copy_from;                // COPY --from
  std::vector<Origin> mount_from;  // RUN: one per --mount, in order
};

std::string Lines(const SourceRange& range) {
  return range.end_line > range.start_line ? absl::StrCat(range.start_line, "-", range.end_line)
                                           : absl::StrCat(range.start_line);
}

// Go's strconv.Atoi accepting the value: an optional sign and decimal digits
// that fit an int.
std::optional<int> StageIndex(absl::string_view value) {
  absl::string_view digits = value;
  if (!digits.empty() && (digits[0] == '+' || digits[0] == '-')) digits.remove_prefix(1);
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit)) {
    return std::nullopt;
  }
  int index = 0;
  if (!absl::SimpleAtoi(value, &index)) return std::nullopt;
  return index;
}

bool IsRemoteSource(absl::string_view src) {
  return absl::StartsWith(src, "http://") || absl::StartsWith(src, "https://") ||
         absl::StartsWith(src, "git@") || absl::StartsWith(src, "git://") ||
         absl::StartsWith(src, "ssh://");
}

std::string CleanAbsolute(absl::string_view path) {
  return dockerfile::CleanPath(absl::StrCat("/", path));
}

// One stage while the graph is built.
struct StageState {
  const dockerfile::Stage* stage = nullptr;
  std::vector<Command> commands;
  bool triggers_added = false;
  std::optional<StageScope> scope;  // after planning, for the stages built FROM it
};

// Sorts `items` and drops repeats.
template <typename T>
void SortUnique(std::vector<T>& items) {
  std::sort(items.begin(), items.end());
  items.erase(std::unique(items.begin(), items.end()), items.end());
}

class Planner {
 public:
  Planner(const dockerfile::StagedDockerfile& dockerfile, char escape_token,
          const PlanOptions& options)
      : dockerfile_(dockerfile), options_(options), lexer_(escape_token) {}

  absl::StatusOr<StageGraph> Run() {
    if (dockerfile_.stages.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(options_.filename, ": dockerfile contains no stages to build"));
    }
    absl::StatusOr<BuildArgs> build_args = BuildArgs::Parse(options_.build_args);
    if (!build_args.ok()) return build_args.status();
    build_args_ = *std::move(build_args);

    graph_.build_platform = oci::HostPlatform();
    graph_.target_platform = graph_.build_platform;
    if (!options_.platform.empty()) {
      absl::StatusOr<oci::Platform> platform = oci::ParsePlatform(options_.platform);
      if (!platform.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("invalid platform ", options_.platform, ": ",
                                                       platform.status().message()));
      }
      graph_.target_platform = *std::move(platform);
    }
    const std::string target_stage =
        options_.target.empty() ? dockerfile_.stages.back().name() : options_.target;
    absl::StatusOr<ShellEnv> global = GlobalScope(
        dockerfile_.meta_args, lexer_,
        AutomaticArgs(graph_.build_platform, graph_.target_platform, target_stage, build_args_),
        build_args_, options_.filename);
    if (!global.ok()) return global.status();
    global_ = *std::move(global);
    graph_.proxy_env = build_args_.ProxyEnv();

    if (absl::Status s = ResolveStages(); !s.ok()) return s;
    if (absl::Status s = ResolveTarget(); !s.ok()) return s;
    for (size_t i = 0; i < states_.size(); ++i) {
      AddContextRoot(static_cast<int>(i));
      // A stage a named context replaces runs none of its own instructions.
      if (!graph_.stages[i].replaced_by.empty()) continue;
      states_[i].commands.reserve(states_[i].stage->commands.size());
      for (const Instruction& instruction : states_[i].stage->commands) {
        const SourceRange& location = dockerfile::BaseOf(instruction).location;
        if (absl::Status s = AddCommand(static_cast<int>(i), instruction, location, false);
            !s.ok()) {
          return s;
        }
      }
    }
    if (absl::Status s = CheckCycles(); !s.ok()) return s;
    if (absl::Status s = MarkNeeded(); !s.ok()) return s;
    if (absl::Status s = CheckForwardReferences(); !s.ok()) return s;
    Summarize();
    for (size_t i = 0; i < states_.size(); ++i) {
      if (!graph_.stages[i].needed) continue;
      if (absl::Status s = PlanStage(static_cast<int>(i)); !s.ok()) return s;
    }
    declared_args_.insert(meta_arg_names_.begin(), meta_arg_names_.end());
    if (std::string warning = UnconsumedWarning(build_args_.Unconsumed(declared_args_));
        !warning.empty()) {
      graph_.warnings.push_back(std::move(warning));
    }
    return std::move(graph_);
  }

 private:
  absl::Status At(const SourceRange& location, absl::string_view message) const {
    return absl::InvalidArgumentError(
        absl::StrCat(options_.filename, ":", Lines(location), ": ", message));
  }
  absl::Status At(int line, absl::string_view message) const {
    return At(SourceRange{line, line}, message);
  }

  // BuildKit's name for a stage in messages: its name, or stage-N.
  std::string DisplayName(int index) const {
    const std::string& name = graph_.stages[index].name;
    return name.empty() ? absl::StrCat("stage-", index) : name;
  }

  std::optional<int> StageNamed(absl::string_view name) const {
    auto it = by_name_.find(absl::AsciiStrToLower(name));
    if (it == by_name_.end()) return std::nullopt;
    return it->second;
  }

  std::vector<absl::string_view> StageNames() const {
    std::vector<absl::string_view> names;
    for (const PlannedStage& stage : graph_.stages) {
      if (!stage.name.empty()) names.push_back(stage.name);
    }
    return names;
  }

  // The named context `reference` names (PlanOptions::named_contexts), with
  // its name; null when none does.
  const NamedContextSource* NamedContext(absl::string_view reference, std::string* name) const {
    if (options_.named_contexts.empty()) return nullptr;
    absl::StatusOr<std::string> key = NamedContextName(reference);
    if (!key.ok()) return nullptr;
    auto it = options_.named_contexts.find(*key);
    if (it == options_.named_contexts.end()) return nullptr;
    *name = *std::move(key);
    return &it->second;
  }

  // A stage on a named local directory starts as BuildKit's llb.Local state
  // of it: scratch holding the directory's files. Here that is one COPY of
  // the whole context onto scratch, made first in the stage, which the
  // workers run as any COPY (and which keys the stage by the directory's
  // content). Its location is the FROM's.
  void AddContextRoot(int index) {
    const std::string& context = context_roots_[index];
    if (context.empty()) return;
    dockerfile::Copy copy;
    copy.keyword = "COPY";
    copy.location = dockerfile_.stages[index].from.location;
    copy.code = absl::StrCat("COPY --from=", context, " . /");
    copy.from = context;
    copy.files.source_paths = {"."};
    copy.files.dest = "/";
    const SourceRange location = copy.location;
    triggers_.push_back(std::move(copy));
    Command command{&triggers_.back(), location, false, {}, {}};
    command.copy_from.kind = Origin::Kind::kContext;
    command.copy_from.context = context;
    states_[index].commands.push_back(std::move(command));
    ++graph_.stages[index].instruction_count;
  }

  // The external image `ref` names, or BuildKit's error for it (with a hint
  // when it is close to a stage name).
  absl::StatusOr<oci::ImageRef> Image(absl::string_view ref, const SourceRange& location) const {
    absl::StatusOr<oci::ImageRef> image = oci::ParseImageRef(ref);
    if (!image.ok()) {
      return At(location,
                dockerfile::WithSuggestion(absl::StrCat("failed to parse stage name \"", ref,
                                                        "\": ", image.status().message()),
                                           ref, StageNames(), /*case_sensitive=*/false));
    }
    return image;
  }

  // Names, bases and platforms of every stage, from the FROM lines.
  absl::Status ResolveStages() {
    for (const dockerfile::Arg& arg : dockerfile_.meta_args) {
      for (const dockerfile::ArgDefinition& def : arg.args) meta_arg_names_.insert(def.key);
    }
    const int count = static_cast<int>(dockerfile_.stages.size());
    states_.resize(count);
    graph_.stages.resize(count);
    for (int i = 0; i < count; ++i) {
      const dockerfile::Stage& stage = dockerfile_.stages[i];
      const SourceRange& location = stage.from.location;
      PlannedStage& planned = graph_.stages[i];
      states_[i].stage = &stage;
      planned.index = i;
      planned.name = stage.name();
      planned.line = location.start_line;
      planned.instruction_count = stage.commands.size();
      if (!planned.name.empty()) {
        auto [it, inserted] = by_name_.emplace(planned.name, i);
        if (!inserted) {
          return At(location,
                    absl::StrCat("duplicate stage name \"", planned.name,
                                 "\": already defined at line ", graph_.stages[it->second].line));
        }
      }
      absl::StatusOr<std::string> base = ExpandWord(lexer_, stage.from.base_name, global_);
      if (!base.ok()) return At(location, base.status().message());
      if (base->empty()) {
        return At(location,
                  absl::StrCat("base name (", stage.from.base_name, ") should not be blank"));
      }
      planned.base_name = *std::move(base);
      if (!stage.from.platform.empty()) {
        absl::StatusOr<std::string> platform = ExpandWord(lexer_, stage.from.platform, global_);
        if (!platform.ok()) {
          return At(location, absl::StrCat("failed to process arguments for platform ",
                                           stage.from.platform, ": ", platform.status().message()));
        }
        if (platform->empty()) {
          return At(location,
                    absl::StrCat("empty platform value from expression ", stage.from.platform));
        }
        absl::StatusOr<oci::Platform> parsed = oci::ParsePlatform(*platform);
        if (!parsed.ok()) {
          return At(location, absl::StrCat("failed to parse platform ", stage.from.platform, ": ",
                                           parsed.status().message()));
        }
        planned.platform = *std::move(parsed);
      } else {
        planned.platform = graph_.target_platform;
      }
    }
    // Bases, once every name is known: a stage (any case), scratch, a named
    // context, or an image. A stage a named context replaces has that as its
    // base (BuildKit's toDispatchState looks its name up first, and then
    // neither dispatches its instructions nor resolves its FROM).
    context_roots_.assign(count, "");
    for (int i = 0; i < count; ++i) {
      PlannedStage& planned = graph_.stages[i];
      const SourceRange& location = dockerfile_.stages[i].from.location;
      std::string context;
      const NamedContextSource* named = nullptr;
      if (!planned.name.empty() && (named = NamedContext(planned.name, &context)) != nullptr) {
        planned.replaced_by = context;
        states_[i].triggers_added = true;  // no instructions of its own, no triggers
        planned.instruction_count = 0;
      } else if (std::optional<int> stage = StageNamed(planned.base_name); !stage || *stage == i) {
        if (planned.base_name != "scratch") named = NamedContext(planned.base_name, &context);
      }
      if (named != nullptr) {
        if (named->kind == NamedContextSource::Kind::kImage) {
          planned.base.kind = StageBase::Kind::kImage;
          planned.base.image = named->image;
        } else {
          planned.base.kind = StageBase::Kind::kScratch;
          planned.platform = graph_.target_platform;
          context_roots_[i] = context;
        }
        continue;
      }
      if (std::optional<int> stage = StageNamed(planned.base_name); stage && *stage != i) {
        planned.base.kind = StageBase::Kind::kStage;
        planned.base.stage = *stage;
        planned.edges.push_back({*stage, EdgeKind::kFrom, location.start_line, false});
        if (*stage < i) planned.platform = graph_.stages[*stage].platform;
      } else if (planned.base_name == "scratch") {
        planned.base.kind = StageBase::Kind::kScratch;
        planned.platform = graph_.target_platform;
      } else {
        absl::StatusOr<oci::ImageRef> image = Image(planned.base_name, location);
        if (!image.ok()) return image.status();
        planned.base.kind = StageBase::Kind::kImage;
        planned.base.image = *std::move(image);
      }
    }
    return absl::OkStatus();
  }

  absl::Status ResolveTarget() {
    if (options_.target.empty()) {
      graph_.target = static_cast<int>(graph_.stages.size()) - 1;
      return absl::OkStatus();
    }
    std::optional<int> target = StageNamed(options_.target);
    if (!target) {
      return absl::InvalidArgumentError(absl::StrCat(
          options_.filename, ": ",
          dockerfile::WithSuggestion(
              absl::StrCat("target stage \"", options_.target, "\" could not be found"),
              options_.target, StageNames(), /*case_sensitive=*/false)));
    }
    graph_.target = *target;
    return absl::OkStatus();
  }

  // A --from / from= value: a stage by name (and, for COPY, by index),
  // scratch, a named context, or an image (the order of BuildKit's
  // toCommand, then its resolution of the implicit stage it makes for a
  // value that names no stage).
  absl::StatusOr<Origin> ResolveFrom(absl::string_view from, bool allow_index,
                                     const SourceRange& location) const {
    Origin origin;
    if (std::optional<int> index = allow_index ? StageIndex(from) : std::nullopt) {
      if (*index < 0 || *index >= static_cast<int>(graph_.stages.size())) {
        return At(location, absl::StrCat("invalid stage index ", *index));
      }
      origin.kind = Origin::Kind::kStage;
      origin.stage = *index;
    } else if (std::optional<int> stage = StageNamed(from)) {
      origin.kind = Origin::Kind::kStage;
      origin.stage = *stage;
    } else if (from == "scratch") {
      origin.kind = Origin::Kind::kScratch;
    } else if (std::string context;
               const NamedContextSource* named = NamedContext(from, &context)) {
      if (named->kind == NamedContextSource::Kind::kImage) {
        origin.kind = Origin::Kind::kImage;
        origin.image = named->image;
      } else {
        origin.kind = Origin::Kind::kContext;
        origin.context = std::move(context);
      }
    } else {
      absl::StatusOr<oci::ImageRef> image = Image(from, location);
      if (!image.ok()) return image.status();
      origin.kind = Origin::Kind::kImage;
      origin.image = *std::move(image);
    }
    return origin;
  }

  // Appends an instruction to stage `index`, with the edges it adds.
  absl::Status AddCommand(int index, const Instruction& instruction, const SourceRange& location,
                          bool onbuild) {
    Command command{&instruction, location, onbuild, {}, {}};
    PlannedStage& planned = graph_.stages[index];
    auto add_edge = [&](const Origin& origin, EdgeKind kind) {
      if (origin.kind == Origin::Kind::kStage) {
        planned.edges.push_back({origin.stage, kind, location.start_line, onbuild});
      }
    };
    if (const auto* copy = std::get_if<dockerfile::Copy>(&instruction);
        copy && !copy->from.empty()) {
      absl::StatusOr<std::string> literal =
          ExpandWord(lexer_, copy->from, [](absl::string_view) { return std::nullopt; });
      if (!literal.ok() || *literal != copy->from) {
        return At(location,
                  "variable expansion is not supported for --from, define a new stage with FROM "
                  "using ARG from global scope as a workaround");
      }
      absl::StatusOr<Origin> origin = ResolveFrom(copy->from, /*allow_index=*/true, location);
      if (!origin.ok()) return origin.status();
      command.copy_from = *std::move(origin);
      add_edge(command.copy_from, EdgeKind::kCopyFrom);
    }
    if (const auto* run = std::get_if<dockerfile::Run>(&instruction)) {
      for (const std::string& spec : run->mounts) {
        absl::StatusOr<std::string> from = dockerfile::MountFromField(spec);
        if (!from.ok()) return At(location, from.status().message());
        Origin origin;
        if (!from->empty()) {
          absl::StatusOr<Origin> resolved = ResolveFrom(*from, /*allow_index=*/false, location);
          if (!resolved.ok()) return resolved.status();
          origin = *std::move(resolved);
          add_edge(origin, EdgeKind::kMountFrom);
        }
        command.mount_from.push_back(std::move(origin));
      }
    }
    states_[index].commands.push_back(std::move(command));
    return absl::OkStatus();
  }

  // A cycle through any edges, needed or not, as BuildKit checks every stage.
  absl::Status CheckCycles() const {
    enum class Mark { kNone, kActive, kDone };
    std::vector<Mark> marks(graph_.stages.size(), Mark::kNone);
    for (size_t root = 0; root < graph_.stages.size(); ++root) {
      if (marks[root] != Mark::kNone) continue;
      std::vector<std::pair<int, size_t>> stack = {{static_cast<int>(root), 0}};
      marks[root] = Mark::kActive;
      while (!stack.empty()) {
        auto& [node, next] = stack.back();
        const std::vector<StageEdge>& edges = graph_.stages[node].edges;
        if (next == edges.size()) {
          marks[node] = Mark::kDone;
          stack.pop_back();
          continue;
        }
        const StageEdge& edge = edges[next++];
        if (marks[edge.stage] == Mark::kActive) {
          return At(edge.line, absl::StrCat("circular dependency detected on stage: ",
                                            DisplayName(edge.stage)));
        }
        if (marks[edge.stage] == Mark::kNone) {
          marks[edge.stage] = Mark::kActive;
          stack.push_back({edge.stage, 0});
        }
      }
    }
    return absl::OkStatus();
  }

  // The ONBUILD trigger expressions a stage runs first: its base stage's
  // ONBUILD instructions, or its base image's triggers.
  std::vector<std::string> TriggerExpressions(int index) const {
    const PlannedStage& planned = graph_.stages[index];
    std::vector<std::string> triggers;
    if (planned.base.kind == StageBase::Kind::kStage &&
        !graph_.stages[planned.base.stage].replaced_by.empty()) {
      // A stage a named context replaced is that context's image config
      // (BuildKit sets the replaced dispatch state's image to it): its
      // triggers, or none for a directory.
      const PlannedStage& replaced = graph_.stages[planned.base.stage];
      if (replaced.base.kind == StageBase::Kind::kImage && options_.image_config) {
        if (std::optional<ImageConfig> config =
                options_.image_config(replaced.base.image, replaced.platform)) {
          triggers = std::move(config->onbuild);
        }
      }
    } else if (planned.base.kind == StageBase::Kind::kStage) {
      for (const Instruction& instruction : dockerfile_.stages[planned.base.stage].commands) {
        if (const auto* onbuild = std::get_if<dockerfile::Onbuild>(&instruction)) {
          triggers.push_back(onbuild->expression);
        }
      }
    } else if (planned.base.kind == StageBase::Kind::kImage && options_.image_config) {
      if (std::optional<ImageConfig> config =
              options_.image_config(planned.base.image, planned.platform)) {
        triggers = std::move(config->onbuild);
      }
    }
    return triggers;
  }

  // Parses a stage's triggers and puts them before its own instructions.
  absl::Status AddTriggers(int index) {
    StageState& state = states_[index];
    state.triggers_added = true;
    const std::vector<std::string> triggers = TriggerExpressions(index);
    if (triggers.empty()) return absl::OkStatus();
    const SourceRange location = state.stage->from.location;
    std::vector<Command> own = std::move(state.commands);
    state.commands.clear();
    for (const std::string& expression : triggers) {
      auto fail = [&](absl::string_view message) {
        return At(location, absl::StrCat("ONBUILD trigger \"", expression, "\": ", message));
      };
      absl::StatusOr<dockerfile::ParseResult> ast = dockerfile::Parse(expression, "");
      if (!ast.ok()) {
        // Drop the parser's ":LINE: " location, which is inside the trigger.
        absl::string_view message = ast.status().message();
        if (absl::StartsWith(message, ":")) message.remove_prefix(message.find(": ") + 2);
        return fail(message);
      }
      if (ast->children.size() != 1) return fail("onbuild trigger should be a single expression");
      absl::StatusOr<Instruction> instruction = dockerfile::ParseInstruction(ast->children[0]);
      if (!instruction.ok()) return fail(instruction.status().message());
      if (std::holds_alternative<dockerfile::From>(*instruction)) {
        return fail("FROM isn't allowed as an ONBUILD trigger");
      }
      std::visit([&location](auto& typed) { typed.location = location; }, *instruction);
      triggers_.push_back(*std::move(instruction));
      if (absl::Status s = AddCommand(index, triggers_.back(), location, true); !s.ok()) return s;
    }
    graph_.stages[index].instruction_count = state.commands.size() + own.size();
    for (Command& command : own) state.commands.push_back(std::move(command));
    return absl::OkStatus();
  }

  // Marks what the target needs, adding the triggers of each needed stage
  // (which may need more stages) until nothing changes.
  absl::Status MarkNeeded() {
    bool trigger_edges = false;
    while (true) {
      for (PlannedStage& stage : graph_.stages) stage.needed = false;
      std::vector<int> stack = {graph_.target};
      graph_.stages[graph_.target].needed = true;
      while (!stack.empty()) {
        const int node = stack.back();
        stack.pop_back();
        for (const StageEdge& edge : graph_.stages[node].edges) {
          if (!graph_.stages[edge.stage].needed) {
            graph_.stages[edge.stage].needed = true;
            stack.push_back(edge.stage);
          }
        }
      }
      bool changed = false;
      for (size_t i = 0; i < states_.size(); ++i) {
        if (!graph_.stages[i].needed || states_[i].triggers_added) continue;
        const size_t edges_before = graph_.stages[i].edges.size();
        if (absl::Status s = AddTriggers(static_cast<int>(i)); !s.ok()) return s;
        if (graph_.stages[i].edges.size() != edges_before) changed = trigger_edges = true;
      }
      if (!changed) break;
    }
    return trigger_edges ? CheckCycles() : absl::OkStatus();
  }

  // A needed stage may only read earlier stages (the reference fails at
  // dispatch, when the later stage has not been built yet).
  absl::Status CheckForwardReferences() const {
    for (size_t i = 0; i < states_.size(); ++i) {
      const PlannedStage& planned = graph_.stages[i];
      if (!planned.needed) continue;
      const std::string current = DisplayName(static_cast<int>(i));
      if (planned.base.kind == StageBase::Kind::kStage && planned.base.stage > planned.index) {
        return At(planned.line,
                  absl::StrCat("base stage \"", planned.base_name,
                               "\" needs to be defined before current stage \"", current, "\""));
      }
      for (const Command& command : states_[i].commands) {
        if (command.copy_from.kind == Origin::Kind::kStage &&
            command.copy_from.stage > planned.index) {
          return At(
              command.location,
              absl::StrCat("cannot copy from stage \"",
                           std::get<dockerfile::Copy>(*command.instruction).from,
                           "\", it needs to be defined before current stage \"", current, "\""));
        }
        for (const Origin& origin : command.mount_from) {
          if (origin.kind == Origin::Kind::kStage && origin.stage > planned.index) {
            return At(
                command.location,
                absl::StrCat("cannot mount from stage \"", DisplayName(origin.stage),
                             "\", it needs to be defined before current stage \"", current, "\""));
          }
        }
      }
    }
    return absl::OkStatus();
  }

  // Dependencies, external images and waves.
  void Summarize() {
    std::vector<int> wave(graph_.stages.size(), 0);
    for (size_t i = 0; i < states_.size(); ++i) {
      PlannedStage& planned = graph_.stages[i];
      for (const StageEdge& edge : planned.edges) planned.deps.push_back(edge.stage);
      std::sort(planned.deps.begin(), planned.deps.end());
      planned.deps.erase(std::unique(planned.deps.begin(), planned.deps.end()), planned.deps.end());
      for (const Command& command : states_[i].commands) {
        if (command.copy_from.kind == Origin::Kind::kImage) {
          planned.images.push_back(command.copy_from.image);
        }
        for (const Origin& origin : command.mount_from) {
          if (origin.kind == Origin::Kind::kImage) planned.images.push_back(origin.image);
        }
      }
      std::sort(planned.images.begin(), planned.images.end());
      planned.images.erase(std::unique(planned.images.begin(), planned.images.end()),
                           planned.images.end());
      if (!planned.needed) continue;
      for (int dep : planned.deps) wave[i] = std::max(wave[i], wave[dep] + 1);  // deps are earlier
      if (graph_.waves.size() <= static_cast<size_t>(wave[i])) graph_.waves.resize(wave[i] + 1);
      graph_.waves[wave[i]].push_back(static_cast<int>(i));
    }
  }

  // What an instruction reads besides its own stage.
  static std::vector<Source> Reads(const Command& command, const ExpandedInstruction& expanded) {
    std::vector<Source> reads;
    auto read = [&reads](const Origin& origin, absl::string_view path) {
      Source source;
      switch (origin.kind) {
        case Origin::Kind::kScratch:
          return;
        case Origin::Kind::kContext:
          source.kind = SourceKind::kContext;
          source.context = origin.context;
          break;
        case Origin::Kind::kStage:
          source.kind = SourceKind::kStage;
          source.stage = origin.stage;
          break;
        case Origin::Kind::kImage:
          source.kind = SourceKind::kImage;
          source.image = origin.image;
          break;
      }
      source.path = CleanAbsolute(path);
      reads.push_back(std::move(source));
    };
    if (const auto* copy = std::get_if<dockerfile::Copy>(&expanded.instruction)) {
      for (const std::string& src : copy->files.source_paths) read(command.copy_from, src);
    } else if (const auto* add = std::get_if<dockerfile::Add>(&expanded.instruction)) {
      for (const std::string& src : add->files.source_paths) {
        if (IsRemoteSource(src)) {
          reads.push_back({SourceKind::kUrl, -1, {}, "", src});
        } else {
          read(Origin{}, src);
        }
      }
    } else {
      for (size_t k = 0; k < expanded.mounts.size(); ++k) {
        const dockerfile::Mount& mount = expanded.mounts[k];
        const Origin& origin = command.mount_from[k];
        if (mount.type == dockerfile::MountType::kBind ||
            (mount.type == dockerfile::MountType::kCache &&
             (origin.kind != Origin::Kind::kContext || !origin.context.empty()))) {
          read(origin, mount.source);
        }
      }
    }
    return reads;
  }

  // Expands every instruction of a needed stage in order, tracking its scope.
  absl::Status PlanStage(int index) {
    PlannedStage& planned = graph_.stages[index];
    StageState& state = states_[index];
    StageScope scope;
    if (planned.base.kind == StageBase::Kind::kStage) {
      scope = *states_[planned.base.stage].scope;  // earlier and needed, so planned
    } else {
      std::vector<std::string> image_env;
      if (planned.base.kind == StageBase::Kind::kImage && options_.image_config) {
        if (std::optional<ImageConfig> config =
                options_.image_config(planned.base.image, planned.platform)) {
          image_env = std::move(config->env);
        }
      }
      scope = StageScope::ForImage(image_env, planned.platform);
    }
    planned.instructions.reserve(state.commands.size());
    planned.context_paths.reserve(state.commands.size());
    for (const Command& command : state.commands) {
      PlannedInstruction out;
      out.location = command.location;
      out.onbuild = command.onbuild;
      out.platform = planned.platform;
      out.env = scope.EnvSnapshot();
      out.args = scope.ArgsSnapshot();
      ExpandedInstruction expanded;
      if (const auto* arg = std::get_if<dockerfile::Arg>(command.instruction)) {
        absl::StatusOr<dockerfile::Arg> resolved =
            scope.ApplyArg(*arg, build_args_, global_, lexer_);
        if (!resolved.ok()) return At(command.location, resolved.status().message());
        for (const dockerfile::ArgDefinition& def : arg->args) declared_args_.insert(def.key);
        expanded.instruction = *std::move(resolved);
      } else {
        absl::StatusOr<ExpandedInstruction> result =
            Expand(*command.instruction, lexer_, scope.env());
        if (!result.ok()) return At(command.location, result.status().message());
        expanded = *std::move(result);
        if (const auto* env = std::get_if<dockerfile::Env>(&expanded.instruction)) {
          scope.ApplyEnv(*env);
        }
      }
      out.text = NormalizedText(expanded.instruction, expanded.mounts);
      out.reads = Reads(command, expanded);
      for (const Source& source : out.reads) {
        if (source.kind == SourceKind::kContext && source.context.empty()) {
          planned.context_paths.push_back(source.path);
        } else if (source.kind == SourceKind::kContext) {
          planned.named_context_paths[source.context].push_back(source.path);
        }
        if (source.kind == SourceKind::kStage)
          planned.stage_reads.push_back({source.stage, source.path});
      }
      out.instruction = std::move(expanded.instruction);
      out.mounts = std::move(expanded.mounts);
      out.copy_from = command.copy_from;
      out.mount_from = command.mount_from;
      planned.instructions.push_back(std::move(out));
    }
    SortUnique(planned.context_paths);
    for (auto& [name, paths] : planned.named_context_paths) SortUnique(paths);
    SortUnique(planned.stage_reads);
    state.scope = std::move(scope);
    return absl::OkStatus();
  }

  const dockerfile::StagedDockerfile& dockerfile_;
  const PlanOptions& options_;
  const ShellLexer lexer_;
  BuildArgs build_args_;
  ShellEnv global_;
  StageGraph graph_;
  std::vector<StageState> states_;
  absl::flat_hash_map<std::string, int> by_name_;
  // Parsed ONBUILD triggers and the COPY that starts a stage on a named
  // local context (AddContextRoot); stable addresses.
  std::deque<Instruction> triggers_;
  // Per stage: the named local context it starts from (FROM NAME, or a
  // stage NAME replaces), else empty.
  std::vector<std::string> context_roots_;
  absl::flat_hash_set<std::string> meta_arg_names_;
  absl::flat_hash_set<std::string> declared_args_;
};

}  // namespace

absl::string_view EdgeKindName(EdgeKind kind) {
  switch (kind) {
    case EdgeKind::kFrom:
      return "from";
    case EdgeKind::kCopyFrom:
      return "copy-from";
    case EdgeKind::kMountFrom:
      return "mount-from";
  }
  return "unknown";
}

absl::StatusOr<std::string> NamedContextName(absl::string_view reference) {
  absl::StatusOr<oci::ImageRef> ref = oci::ParseImageRef(reference);
  if (!ref.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid context name ", reference, ": ", ref.status().message()));
  }
  const std::string full = ref->Name();
  absl::string_view familiar = full;
  if (!absl::ConsumePrefix(&familiar, "docker.io/library/")) {
    absl::ConsumePrefix(&familiar, "docker.io/");
  }
  std::string name(familiar);
  if (!ref->tag.empty()) absl::StrAppend(&name, ":", ref->tag);
  if (!ref->digest.empty()) absl::StrAppend(&name, "@", ref->digest);
  if (absl::EndsWith(name, ":latest"))
    name.resize(name.size() - absl::string_view(":latest").size());
  return name;
}

NeededContextPaths ContextPathsOfNeededStages(const StageGraph& graph) {
  NeededContextPaths paths;
  for (const PlannedStage& stage : graph.stages) {
    if (!stage.needed) continue;
    paths.own.insert(paths.own.end(), stage.context_paths.begin(), stage.context_paths.end());
    for (const auto& [name, read] : stage.named_context_paths) {
      std::vector<std::string>& all = paths.named[name];
      all.insert(all.end(), read.begin(), read.end());
    }
  }
  return paths;
}

std::vector<std::string> SelectSources(const std::vector<std::string>& plan_paths) {
  std::vector<std::string> sources;
  sources.reserve(plan_paths.size());
  for (const std::string& path : plan_paths) {
    sources.push_back(path == "/" ? "." : path.substr(1));
  }
  return sources;
}

absl::StatusOr<StageGraph> BuildStageGraph(const dockerfile::StagedDockerfile& dockerfile,
                                           char escape_token, const PlanOptions& options) {
  return Planner(dockerfile, escape_token, options).Run();
}

}  // namespace stagefarm::graph
