#include "cli/plan_input.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"

namespace stagefarm::cli {

absl::StatusOr<std::string> ReadInput(const std::string& path) {
  std::ostringstream out;
  if (path == "-") {
    out << std::cin.rdbuf();
    return out.str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  out << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return out.str();
}

std::vector<std::string> ResolveBuildArgs(const std::vector<std::string>& given) {
  std::vector<std::string> out;
  for (const std::string& arg : given) {
    if (arg.find('=') != std::string::npos) {
      out.push_back(arg);
    } else if (const char* value = std::getenv(arg.c_str())) {
      out.push_back(absl::StrCat(arg, "=", value));
    }
  }
  return out;
}

void PrintWarnings(const std::string& filename, const dockerfile::ParseResult& result) {
  for (const dockerfile::Warning& w : result.warnings) {
    std::fprintf(stderr, "%s:%d: warning: %s\n", filename.c_str(), w.start_line,
                 w.short_text.c_str());
  }
}

absl::StatusOr<LoadedPlan> LoadPlan(const std::string& file, graph::PlanOptions options) {
  absl::StatusOr<std::string> data = ReadInput(file);
  if (!data.ok()) return data.status();
  LoadedPlan plan;
  absl::StatusOr<dockerfile::ParseResult> ast = dockerfile::Parse(*data, file);
  if (!ast.ok()) return ast.status();
  plan.ast = *std::move(ast);
  PrintWarnings(file, plan.ast);
  absl::StatusOr<dockerfile::StagedDockerfile> staged = dockerfile::ParseStages(plan.ast, file);
  if (!staged.ok()) return staged.status();
  plan.staged = *std::move(staged);
  options.filename = file;
  absl::StatusOr<graph::StageGraph> stage_graph =
      graph::BuildStageGraph(plan.staged, plan.ast.directives.escape_token, options);
  if (!stage_graph.ok()) return stage_graph.status();
  plan.graph = *std::move(stage_graph);
  for (const std::string& warning : plan.graph.warnings) {
    std::fprintf(stderr, "%s\n", warning.c_str());
  }
  return plan;
}

}  // namespace stagefarm::cli
