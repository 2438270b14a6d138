// What `stagefarm plan` and `stagefarm build` share: reading the Dockerfile,
// parsing it, and planning its stages for the flags given.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dockerfile/instructions.h"
#include "common/dockerfile/parser.h"
#include "common/graph/stage_graph.h"

namespace stagefarm::cli {

// Reads a whole file ("-" is standard input).
absl::StatusOr<std::string> ReadInput(const std::string& path);

// `--build-arg NAME` without a value takes $NAME from this process's
// environment, and is dropped when that is unset (as buildx does).
std::vector<std::string> ResolveBuildArgs(const std::vector<std::string>& given);

// Prints the parser's warnings as "FILE:LINE: warning: TEXT" to stderr.
void PrintWarnings(const std::string& filename, const dockerfile::ParseResult& result);

struct LoadedPlan {
  dockerfile::ParseResult ast;
  dockerfile::StagedDockerfile staged;
  graph::StageGraph graph;
};

// Reads and plans `file` (parser and planner warnings go to stderr).
// Errors are the parser's and planner's, with FILE:LINE.
absl::StatusOr<LoadedPlan> LoadPlan(const std::string& file, graph::PlanOptions options);

}  // namespace stagefarm::cli
