#include "common/graph/stage_graph.h"

#include <sys/utsname.h>

#include <variant>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/dockerfile/run_flags.h"
#include "common/dockerfile/shell_lexer.h"

namespace stagefarm::graph {
namespace {

using dockerfile::ShellEnv;
using dockerfile::ShellLexer;

absl::Status At(absl::string_view filename, int line, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(filename, ":", line, ": ", message));
}

// Sets <prefix>PLATFORM, <prefix>OS, <prefix>ARCH and <prefix>VARIANT from
// "os/arch[/variant]".
void SetPlatformArgs(absl::string_view prefix, absl::string_view platform, ShellEnv& env) {
  std::vector<std::string> parts = absl::StrSplit(platform, '/');
  parts.resize(3);
  env.Set(absl::StrCat(prefix, "PLATFORM"), platform);
  env.Set(absl::StrCat(prefix, "OS"), parts[0]);
  env.Set(absl::StrCat(prefix, "ARCH"), parts[1]);
  env.Set(absl::StrCat(prefix, "VARIANT"), parts[2]);
}

// The global scope FROM lines see: the automatic platform args, then the meta
// ARGs in order, each default expanded against what came before, overridden
// by --build-arg.
absl::StatusOr<ShellEnv> MetaArgScope(const dockerfile::StagedDockerfile& dockerfile,
                                      const ShellLexer& lexer,
                                      const std::vector<std::string>& build_args,
                                      absl::string_view filename,
                                      absl::string_view target_platform) {
  absl::flat_hash_map<std::string, std::string> overrides;
  for (const std::string& kv : build_args) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos) continue;
    overrides[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  ShellEnv env;
  SetPlatformArgs("BUILD", HostPlatform(), env);
  SetPlatformArgs("TARGET", target_platform.empty() ? HostPlatform() : target_platform, env);
  for (const dockerfile::Arg& arg : dockerfile.meta_args) {
    for (const dockerfile::ArgDefinition& def : arg.args) {
      if (auto it = overrides.find(def.key); it != overrides.end()) {
        env.Set(def.key, it->second);
        continue;
      }
      if (!def.value) continue;
      absl::StatusOr<std::string> value = lexer.ProcessWord(*def.value, env);
      if (!value.ok()) return At(filename, arg.location.start_line, value.status().message());
      env.Set(def.key, *value);
    }
  }
  return env;
}

}  // namespace

std::string HostPlatform() {
  struct utsname name;
  std::string arch = uname(&name) == 0 ? name.machine : "x86_64";
  if (arch == "x86_64") return "linux/amd64";
  if (arch == "aarch64") return "linux/arm64";
  if (arch == "armv7l") return "linux/arm/v7";
  if (arch == "armv6l") return "linux/arm/v6";
  if (arch == "i686" || arch == "i386") return "linux/386";
  return absl::StrCat("linux/", arch);  // ppc64le, s390x, riscv64 keep their names
}

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

absl::StatusOr<StageGraph> BuildStageGraph(const dockerfile::StagedDockerfile& dockerfile,
                                           char escape_token,
                                           const std::vector<std::string>& build_args,
                                           absl::string_view target, absl::string_view filename,
                                           absl::string_view target_platform) {
  if (dockerfile.stages.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(filename, ": dockerfile contains no stages to build"));
  }
  const ShellLexer lexer(escape_token);
  absl::StatusOr<ShellEnv> scope =
      MetaArgScope(dockerfile, lexer, build_args, filename, target_platform);
  if (!scope.ok()) return scope.status();

  StageGraph graph;
  absl::flat_hash_map<std::string, int> by_name;
  for (size_t i = 0; i < dockerfile.stages.size(); ++i) {
    const dockerfile::Stage& stage = dockerfile.stages[i];
    PlannedStage planned;
    planned.index = static_cast<int>(i);
    planned.name = stage.name();
    planned.line = stage.from.location.start_line;
    planned.instructions = stage.commands.size();
    if (!planned.name.empty() && !by_name.emplace(planned.name, planned.index).second) {
      return At(filename, planned.line,
                absl::StrCat("duplicate stage name \"", planned.name, "\""));
    }
    absl::StatusOr<std::string> base = lexer.ProcessWord(stage.from.base_name, *scope);
    if (!base.ok()) return At(filename, planned.line, base.status().message());
    if (base->empty()) {
      return At(filename, planned.line,
                absl::StrCat("base name (", stage.from.base_name, ") should not be blank"));
    }
    planned.base = *std::move(base);
    if (!stage.from.platform.empty()) {
      absl::StatusOr<std::string> platform = lexer.ProcessWord(stage.from.platform, *scope);
      if (!platform.ok()) return At(filename, planned.line, platform.status().message());
      planned.platform = *std::move(platform);
    }
    graph.stages.push_back(std::move(planned));
  }

  // A reference names a stage when it matches a stage name (any position) or
  // is the index of an earlier stage.
  auto resolve = [&](absl::string_view ref, int current,
                     int line) -> absl::StatusOr<std::optional<int>> {
    const std::string lower = absl::AsciiStrToLower(ref);
    if (auto it = by_name.find(lower); it != by_name.end()) return std::optional<int>(it->second);
    int index = 0;
    if (absl::SimpleAtoi(ref, &index)) {
      if (index < 0 || index >= current) {
        return At(
            filename, line,
            absl::StrCat("invalid stage index ", ref, ": only earlier stages can be referenced"));
      }
      return std::optional<int>(index);
    }
    return std::optional<int>();
  };

  for (size_t i = 0; i < dockerfile.stages.size(); ++i) {
    const dockerfile::Stage& stage = dockerfile.stages[i];
    PlannedStage& planned = graph.stages[i];
    const int current = static_cast<int>(i);
    if (auto it = by_name.find(absl::AsciiStrToLower(planned.base));
        it != by_name.end() && it->second != current) {
      planned.base_is_stage = true;
      planned.edges.push_back({it->second, EdgeKind::kFrom, planned.line});
    }
    auto add_from = [&](absl::string_view ref, EdgeKind kind, int line) -> absl::Status {
      absl::StatusOr<std::optional<int>> resolved = resolve(ref, current, line);
      if (!resolved.ok()) return resolved.status();
      if (*resolved) {
        planned.edges.push_back({**resolved, kind, line});
      } else {
        planned.external_images.emplace_back(ref);
      }
      return absl::OkStatus();
    };
    for (const dockerfile::Instruction& instruction : stage.commands) {
      const int line = dockerfile::BaseOf(instruction).location.start_line;
      if (const auto* copy = std::get_if<dockerfile::Copy>(&instruction);
          copy && !copy->from.empty()) {
        if (absl::Status s = add_from(copy->from, EdgeKind::kCopyFrom, line); !s.ok()) return s;
      }
      if (const auto* run = std::get_if<dockerfile::Run>(&instruction)) {
        for (const std::string& spec : run->mounts) {
          absl::StatusOr<dockerfile::Mount> mount = dockerfile::ParseMount(
              spec, [](absl::string_view word) -> absl::StatusOr<std::string> {
                return std::string(word);
              });
          if (!mount.ok()) return At(filename, line, mount.status().message());
          if (mount->from.empty()) continue;
          if (absl::Status s = add_from(mount->from, EdgeKind::kMountFrom, line); !s.ok()) return s;
        }
      }
    }
  }

  if (target.empty()) {
    graph.target = static_cast<int>(graph.stages.size()) - 1;
  } else {
    auto it = by_name.find(absl::AsciiStrToLower(target));
    if (it == by_name.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(filename, ": target stage \"", target, "\" could not be found"));
    }
    graph.target = it->second;
  }

  // Depth-first from the target: marks what is needed and finds cycles.
  enum class Mark { kNone, kActive, kDone };
  std::vector<Mark> marks(graph.stages.size(), Mark::kNone);
  std::vector<std::pair<int, size_t>> stack = {{graph.target, 0}};
  marks[graph.target] = Mark::kActive;
  while (!stack.empty()) {
    auto& [node, next_edge] = stack.back();
    PlannedStage& stage = graph.stages[node];
    stage.needed = true;
    if (next_edge == stage.edges.size()) {
      marks[node] = Mark::kDone;
      stack.pop_back();
      continue;
    }
    const StageEdge& edge = stage.edges[next_edge++];
    if (marks[edge.stage] == Mark::kActive) {
      return At(
          filename, edge.line,
          absl::StrCat("circular dependency detected on stage: ",
                       graph.stages[edge.stage].name.empty() ? absl::StrCat(edge.stage)
                                                             : graph.stages[edge.stage].name));
    }
    if (marks[edge.stage] == Mark::kNone) {
      marks[edge.stage] = Mark::kActive;
      stack.push_back({edge.stage, 0});
    }
  }
  return graph;
}

}  // namespace stagefarm::graph
