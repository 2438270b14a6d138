#include "cli/plan_output.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace stagefarm::cli {
namespace {

std::string StageLabel(const graph::PlannedStage& stage) {
  return stage.name.empty() ? absl::StrCat("#", stage.index) : stage.name;
}

}  // namespace

std::string PlanText(const graph::StageGraph& graph) {
  std::string out;
  size_t width = 5;
  for (const auto& stage : graph.stages) width = std::max(width, StageLabel(stage).size());
  absl::StrAppendFormat(&out, "%-4s %-*s %-5s %-28s %s\n", "#", static_cast<int>(width), "STAGE",
                        "LINE", "FROM", "NEEDS");
  for (const auto& stage : graph.stages) {
    // Each distinct dependency once, in first-use order (JSON keeps every edge).
    std::vector<std::string> needs;
    auto add = [&needs](std::string need) {
      if (std::find(needs.begin(), needs.end(), need) == needs.end())
        needs.push_back(std::move(need));
    };
    for (const auto& edge : stage.edges) {
      add(absl::StrCat(StageLabel(graph.stages[edge.stage]), " (", graph::EdgeKindName(edge.kind),
                       ")"));
    }
    for (const auto& image : stage.external_images) add(absl::StrCat(image, " (image)"));
    std::string from = stage.base;
    if (!stage.platform.empty()) from = absl::StrCat(from, " [", stage.platform, "]");
    absl::StrAppendFormat(&out, "%-4d %-*s %-5d %-28s %s%s\n", stage.index, static_cast<int>(width),
                          StageLabel(stage), stage.line, from,
                          needs.empty() ? "-" : absl::StrJoin(needs, ", "),
                          stage.needed ? "" : "  [not needed for the target]");
  }
  absl::StrAppend(&out, "target: ", StageLabel(graph.stages[graph.target]), "\n");
  return out;
}

std::string PlanJson(const graph::StageGraph& graph) {
  nlohmann::json stages = nlohmann::json::array();
  for (const auto& stage : graph.stages) {
    nlohmann::json edges = nlohmann::json::array();
    for (const auto& edge : stage.edges) {
      edges.push_back({{"stage", edge.stage},
                       {"kind", std::string(graph::EdgeKindName(edge.kind))},
                       {"line", edge.line}});
    }
    stages.push_back({{"index", stage.index},
                      {"name", stage.name},
                      {"line", stage.line},
                      {"base", stage.base},
                      {"base_is_stage", stage.base_is_stage},
                      {"platform", stage.platform},
                      {"instructions", stage.instructions},
                      {"needs", edges},
                      {"external_images", stage.external_images},
                      {"needed", stage.needed}});
  }
  nlohmann::json doc = {{"target", graph.target}, {"stages", stages}};
  return doc.dump(2) + "\n";
}

}  // namespace stagefarm::cli
