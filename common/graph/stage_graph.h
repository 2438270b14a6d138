// The stage DAG of a Dockerfile: which stages a build needs and what each one
// reads from the others. This is the seed the planner grows from; today it
// resolves stage references and prunes to the target (per-instruction ARG/ENV
// scoping and cache keys build on it).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/dockerfile/instructions.h"

namespace stagefarm::graph {

// Why one stage reads another.
enum class EdgeKind { kFrom, kCopyFrom, kMountFrom };
absl::string_view EdgeKindName(EdgeKind kind);

struct StageEdge {
  int stage = 0;  // index of the stage read
  EdgeKind kind = EdgeKind::kFrom;
  int line = 0;  // the instruction that reads it
};

struct PlannedStage {
  int index = 0;
  std::string name;      // lower-cased; empty for an unnamed stage
  std::string base;      // the FROM reference after global ARG expansion
  std::string platform;  // `--platform` after expansion; empty when not given
  bool base_is_stage = false;
  std::vector<StageEdge> edges;              // stages this one reads, in instruction order
  std::vector<std::string> external_images;  // `--from` values that are not stages
  size_t instructions = 0;                   // besides FROM
  int line = 0;                              // of the FROM
  bool needed = false;                       // on the path to the target
};

struct StageGraph {
  std::vector<PlannedStage> stages;
  int target = 0;
};

// The platform this process runs on, as "os/arch[/variant]" (e.g. linux/amd64,
// linux/arm64, linux/arm/v7): the default build and target platform.
std::string HostPlatform();

// Builds the graph for `target_platform` (empty: the host's). FROM lines see
// the meta ARGs and the automatic platform args (BUILDPLATFORM, BUILDOS,
// BUILDARCH, BUILDVARIANT, TARGETPLATFORM, TARGETOS, TARGETARCH,
// TARGETVARIANT). `build_args` are `K=V` (a bare `K` takes the value from
// nothing: it stays unset here; the client fills it from its environment).
// `target` names a stage (case-insensitive); empty means the last stage.
// InvalidArgument "FILE:LINE: ..." for a duplicate stage name, an unknown
// target, a stage index that is not an earlier stage, a cycle, or a FROM that
// expands to nothing.
absl::StatusOr<StageGraph> BuildStageGraph(const dockerfile::StagedDockerfile& dockerfile,
                                           char escape_token,
                                           const std::vector<std::string>& build_args,
                                           absl::string_view target, absl::string_view filename,
                                           absl::string_view target_platform = "");

}  // namespace stagefarm::graph
