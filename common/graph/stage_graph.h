// The stage DAG of a Dockerfile, as BuildKit's dockerfile2llb reads it: which
// stage each stage is built on and reads from, which stages the target
// needs, in which waves they can run, and every needed instruction expanded
// with what it reads (see planned_instruction.h).
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/dockerfile/instructions.h"
#include "common/graph/build_args.h"
#include "common/graph/planned_instruction.h"
#include "common/oci/image_ref.h"
#include "common/oci/platform.h"

namespace stagefarm::graph {

// Why one stage reads another.
enum class EdgeKind { kFrom, kCopyFrom, kMountFrom };
absl::string_view EdgeKindName(EdgeKind kind);  // "from", "copy-from", "mount-from"

struct StageEdge {
  int stage = 0;  // index of the stage read
  EdgeKind kind = EdgeKind::kFrom;
  int line = 0;          // the instruction that reads it (a trigger: the FROM it runs under)
  bool onbuild = false;  // from an ONBUILD trigger of the base stage
};

// What a stage starts from.
struct StageBase {
  enum class Kind { kImage, kStage, kScratch };
  Kind kind = Kind::kScratch;
  oci::ImageRef image;  // kImage: normalised, tag "latest" by default
  int stage = -1;       // kStage
};

// A path one stage reads from another stage's result.
struct StageRead {
  int stage = 0;
  std::string path;  // absolute, cleaned; "/" for the whole stage

  auto operator<=>(const StageRead&) const = default;
};

struct PlannedStage {
  int index = 0;
  std::string name;       // lower-cased; empty for an unnamed stage
  std::string base_name;  // the FROM reference after global ARG expansion
  StageBase base;
  // `FROM --platform` expanded and normalised; the base stage's platform for
  // a stage built on a stage, the target platform for scratch and when not
  // given (BuildKit ignores --platform in those two cases).
  oci::Platform platform;
  std::vector<StageEdge> edges;       // the FROM edge first, then in instruction order
  std::vector<int> deps;              // every stage read (base, copies, mounts): sorted, unique
  std::vector<oci::ImageRef> images;  // external images read through --from / from=: sorted, unique
  int line = 0;                       // of the FROM
  bool needed = false;                // the target needs it
  // Instructions the stage runs: its own after the ONBUILD triggers of its
  // base stage (triggers are only counted for needed stages).
  size_t instruction_count = 0;
  // Needed stages only: every instruction in order, triggers first.
  std::vector<PlannedInstruction> instructions;
  // Needed stages only: what the stage reads from the build context (COPY,
  // ADD and bind-mount sources) and from other stages (COPY --from and mount
  // sources; not the base stage, which it starts from whole). Sorted, unique.
  std::vector<std::string> context_paths;
  std::vector<StageRead> stage_reads;
  // Needed stages only: what the stage reads from each named local context
  // (--build-context NAME=DIR), by name; paths as in `context_paths`.
  std::map<std::string, std::vector<std::string>> named_context_paths;
  // The named context that replaces this stage (a stage whose name is a
  // --build-context name): its instructions are not run, and it is the
  // image (base.kind kImage) or the directory (one COPY of it onto scratch).
  // Empty when the stage is the Dockerfile's.
  std::string replaced_by;
};

struct StageGraph {
  std::vector<PlannedStage> stages;
  int target = 0;
  // The needed stages by level: a stage's wave is one past the latest wave of
  // the stages it needs, so each wave can run at the same time once the
  // earlier ones are done. Indices ascending within a wave.
  std::vector<std::vector<int>> waves;
  oci::Platform build_platform;
  oci::Platform target_platform;
  // Given to every RUN and kept out of cache keys (BuildArgs::ProxyEnv).
  Variables proxy_env;
  // Findings that do not stop the build, e.g. "[Warning] One or more
  // build-args [FOO] were not consumed".
  std::vector<std::string> warnings;
};

// What a registry knows about an image that planning needs.
struct ImageConfig {
  std::vector<std::string> env;      // "NAME=value"
  std::vector<std::string> onbuild;  // trigger expressions
};
// Looks up the config of a base image for a platform; nullopt when unknown.
using ImageConfigLookup =
    std::function<std::optional<ImageConfig>(const oci::ImageRef&, const oci::Platform&)>;

// What a --build-context NAME=VALUE gives the planner: an image
// (docker-image://REF) or a local directory, whose content the client
// indexes and sends (the planner only needs to know that it is one).
struct NamedContextSource {
  enum class Kind { kImage, kLocal };
  Kind kind = Kind::kLocal;
  oci::ImageRef image;  // kImage
};

// The name a --build-context NAME or a Dockerfile reference is matched by,
// as BuildKit's dockerui matches named contexts: the reference normalised
// and written in its familiar form without a ":latest" tag, so "alpine",
// "alpine:latest" and "docker.io/library/alpine" are all "alpine", and
// "ghcr.io/o/base:1" stays that. InvalidArgument "invalid context name
// NAME: ..." when it is not a valid reference (empty, upper case, ...).
absl::StatusOr<std::string> NamedContextName(absl::string_view reference);

// What the needed stages of a graph read from the contexts, as plan paths
// (PlannedStage::context_paths): from the build's own context, and from each
// named local context by name. What a client sends, and what a node lays
// out before the stages run.
struct NeededContextPaths {
  std::vector<std::string> own;
  std::map<std::string, std::vector<std::string>> named;
};
NeededContextPaths ContextPathsOfNeededStages(const StageGraph& graph);

// Plan paths ("/", "/dir/file") as fs::ContextIndex::Select takes them
// (".", "dir/file").
std::vector<std::string> SelectSources(const std::vector<std::string>& plan_paths);

struct PlanOptions {
  std::string filename = "Dockerfile";  // prefixes error locations
  std::vector<std::string> build_args;  // "NAME=value"
  std::string target;                   // a stage name (any case); empty: the last stage
  std::string platform;                 // the target platform; empty: this host's
  // Base image configs. Without it (or when it answers nullopt) a stage on an
  // image starts with PATH only and runs no triggers from the image, so
  // references to the image's variables expand to "".
  ImageConfigLookup image_config;
  // --build-context values by NamedContextName. As in BuildKit: a stage
  // whose name is one of them is replaced by it (its instructions are not
  // run); a FROM, COPY --from or mount from= value that names no stage is
  // looked up here before it is taken for an image. A local directory used
  // by FROM is the stage's root filesystem (PlannedStage::replaced_by).
  std::map<std::string, NamedContextSource> named_contexts;
};

// Plans `dockerfile` (parsed with `escape_token`). References resolve as in
// BuildKit: a FROM, COPY --from or RUN --mount from= value names a stage
// when it matches a stage name in any case (a FROM matches after global ARG
// expansion, so `FROM ${TARGETOS}` can choose a stage); COPY --from also
// takes a stage index; anything else is an external image (`scratch` is no
// image). ONBUILD triggers of a stage run first in the stages built FROM it,
// not in their children. The last stage, or the named target, and what it
// needs transitively are needed.
//
// Errors are InvalidArgument "FILE:LINE: message" (FILE:START-END for an
// instruction on several lines) for: a duplicate stage name; a blank or
// unparsable base; a bad FROM --platform; `--from` with a variable; a stage
// index that names no stage; an invalid image reference; a cycle ("circular
// dependency detected on stage: a"); a needed stage reading a later stage
// ("cannot copy from stage \"b\", it needs to be defined before current stage
// \"a\""); an ONBUILD trigger that does not parse (at the FROM it runs
// under); an expansion failure in a needed stage. "FILE: target stage \"x\"
// could not be found" for an unknown target, and a plain message for a bad
// --platform or build arg.
absl::StatusOr<StageGraph> BuildStageGraph(const dockerfile::StagedDockerfile& dockerfile,
                                           char escape_token, const PlanOptions& options);

}  // namespace stagefarm::graph
