#include "cli/plan_output.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace stagefarm::cli {
namespace {

using graph::PlannedStage;
using graph::StageBase;

std::string StageLabel(const PlannedStage& stage) {
  return stage.name.empty() ? absl::StrCat("#", stage.index) : stage.name;
}

std::string BaseText(const graph::StageGraph& graph, const PlannedStage& stage) {
  switch (stage.base.kind) {
    case StageBase::Kind::kImage:
      return stage.base.image.String();
    case StageBase::Kind::kStage:
      return absl::StrCat("stage ", StageLabel(graph.stages[stage.base.stage]));
    case StageBase::Kind::kScratch:
      return "scratch";
  }
  return "";
}

// Each distinct dependency once, in first-use order.
std::vector<std::string> Needs(const graph::StageGraph& graph, const PlannedStage& stage) {
  std::vector<std::string> needs;
  auto add = [&needs](std::string need) {
    if (std::find(needs.begin(), needs.end(), need) == needs.end()) {
      needs.push_back(std::move(need));
    }
  };
  for (const graph::StageEdge& edge : stage.edges) {
    add(absl::StrCat(StageLabel(graph.stages[edge.stage]), " (", graph::EdgeKindName(edge.kind),
                     edge.onbuild ? ", onbuild" : "", ")"));
  }
  for (const oci::ImageRef& image : stage.images) add(absl::StrCat(image.String(), " (image)"));
  return needs;
}

void AppendTree(const graph::StageGraph& graph, int index, const std::string& prefix,
                std::vector<bool>& shown, std::string& out) {
  const PlannedStage& stage = graph.stages[index];
  shown[index] = true;
  struct Child {
    std::string label;
    int stage;  // -1 for an image
  };
  std::vector<Child> children;
  for (int dep : stage.deps) {
    std::vector<std::string> kinds;
    for (const graph::StageEdge& edge : stage.edges) {
      const std::string kind(graph::EdgeKindName(edge.kind));
      if (edge.stage == dep && std::find(kinds.begin(), kinds.end(), kind) == kinds.end()) {
        kinds.push_back(kind);
      }
    }
    children.push_back({absl::StrCat(StageLabel(graph.stages[dep]), " (#", dep, ", ",
                                     absl::StrJoin(kinds, ", "), ")"),
                        dep});
  }
  for (const oci::ImageRef& image : stage.images) {
    children.push_back({absl::StrCat(image.String(), " (image)"), -1});
  }
  for (size_t i = 0; i < children.size(); ++i) {
    const bool last = i + 1 == children.size();
    const Child& child = children[i];
    const bool repeat = child.stage >= 0 && shown[child.stage];
    absl::StrAppend(&out, prefix, last ? "`-- " : "|-- ", child.label,
                    repeat && !graph.stages[child.stage].deps.empty() ? " ..." : "", "\n");
    if (child.stage >= 0 && !repeat) {
      AppendTree(graph, child.stage, absl::StrCat(prefix, last ? "    " : "|   "), shown, out);
    }
  }
}

nlohmann::ordered_json SourceJson(const graph::Source& source) {
  nlohmann::ordered_json out = {{"kind", std::string(graph::SourceKindName(source.kind))}};
  if (source.kind == graph::SourceKind::kStage) out["stage"] = source.stage;
  if (source.kind == graph::SourceKind::kImage) out["image"] = source.image.String();
  if (!source.context.empty()) out["context"] = source.context;
  out["path"] = source.path;
  return out;
}

// A DOT double-quoted string.
std::string DotString(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  out += '"';
  return out;
}

}  // namespace

std::string PlanText(const graph::StageGraph& graph) {
  std::string out;
  size_t stage_width = 5;
  size_t base_width = 4;
  for (const PlannedStage& stage : graph.stages) {
    stage_width = std::max(stage_width, StageLabel(stage).size());
    base_width = std::max(base_width, BaseText(graph, stage).size());
  }
  base_width = std::min<size_t>(base_width, 48);
  absl::StrAppendFormat(&out, "%-4s %-*s %-5s %-*s %s\n", "#", static_cast<int>(stage_width),
                        "STAGE", "LINE", static_cast<int>(base_width), "FROM", "NEEDS");
  for (const PlannedStage& stage : graph.stages) {
    const std::vector<std::string> needs = Needs(graph, stage);
    absl::StrAppendFormat(&out, "%-4d %-*s %-5d %-*s %s%s\n", stage.index,
                          static_cast<int>(stage_width), StageLabel(stage), stage.line,
                          static_cast<int>(base_width), BaseText(graph, stage),
                          needs.empty() ? "-" : absl::StrJoin(needs, ", "),
                          stage.needed ? "" : "  [not needed for the target]");
  }
  const PlannedStage& target = graph.stages[graph.target];
  absl::StrAppend(&out, "\ntarget: ", StageLabel(target),
                  target.name.empty() ? "" : absl::StrCat(" (#", target.index, ")"), " for ",
                  graph.target_platform.String(), ", built on ", graph.build_platform.String(),
                  "\n");
  std::vector<bool> shown(graph.stages.size(), false);
  absl::StrAppend(&out, StageLabel(target), "\n");
  AppendTree(graph, graph.target, "", shown, out);
  absl::StrAppend(&out, "\nwaves (the stages of a wave can run at the same time):\n");
  for (size_t w = 0; w < graph.waves.size(); ++w) {
    std::vector<std::string> labels;
    for (int index : graph.waves[w]) labels.push_back(StageLabel(graph.stages[index]));
    absl::StrAppend(&out, "  ", w + 1, ": ", absl::StrJoin(labels, ", "), "\n");
  }
  return out;
}

std::string PlanJson(const graph::StageGraph& graph,
                     const std::vector<std::optional<graph::StageKeys>>& keys) {
  nlohmann::ordered_json stages = nlohmann::ordered_json::array();
  for (const PlannedStage& stage : graph.stages) {
    nlohmann::ordered_json base;
    switch (stage.base.kind) {
      case StageBase::Kind::kImage:
        base = {{"image", stage.base.image.String()}};
        break;
      case StageBase::Kind::kStage:
        base = {{"stage", stage.base.stage}};
        break;
      case StageBase::Kind::kScratch:
        base = {{"scratch", true}};
        break;
    }
    nlohmann::ordered_json images = nlohmann::ordered_json::array();
    for (const oci::ImageRef& image : stage.images) images.push_back(image.String());
    nlohmann::ordered_json edges = nlohmann::ordered_json::array();
    for (const graph::StageEdge& edge : stage.edges) {
      edges.push_back({{"stage", edge.stage},
                       {"kind", std::string(graph::EdgeKindName(edge.kind))},
                       {"line", edge.line},
                       {"onbuild", edge.onbuild}});
    }
    nlohmann::ordered_json stage_reads = nlohmann::ordered_json::array();
    for (const graph::StageRead& read : stage.stage_reads) {
      stage_reads.push_back({{"stage", read.stage}, {"path", read.path}});
    }
    nlohmann::ordered_json steps = nlohmann::ordered_json::array();
    const std::optional<graph::StageKeys>& stage_keys = keys[stage.index];
    for (size_t i = 0; i < stage.instructions.size(); ++i) {
      const graph::PlannedInstruction& instruction = stage.instructions[i];
      nlohmann::ordered_json reads = nlohmann::ordered_json::array();
      for (const graph::Source& source : instruction.reads) reads.push_back(SourceJson(source));
      nlohmann::ordered_json step = {{"line", instruction.location.start_line},
                                     {"text", instruction.text}};
      if (instruction.onbuild) step["onbuild"] = true;
      if (!reads.empty()) step["reads"] = std::move(reads);
      if (stage_keys) step["cache_key"] = stage_keys->instructions[i].ToString();
      steps.push_back(std::move(step));
    }
    nlohmann::ordered_json entry = {
        {"index", stage.index},
        {"name",
         stage.name.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(stage.name)},
        {"base", std::move(base)},
        {"platform", stage.platform.String()},
        {"deps", stage.deps},
        {"images", std::move(images)},
        {"needed", stage.needed},
        {"instructions", stage.instruction_count},
        {"line", stage.line},
        {"base_name", stage.base_name},
        {"edges", std::move(edges)},
    };
    if (stage.needed) {
      entry["context_paths"] = stage.context_paths;
      if (!stage.named_context_paths.empty()) {
        entry["named_context_paths"] = stage.named_context_paths;
      }
      if (!stage.replaced_by.empty()) entry["replaced_by"] = stage.replaced_by;
      entry["stage_reads"] = std::move(stage_reads);
      entry["steps"] = std::move(steps);
      if (stage_keys) entry["result_key"] = stage_keys->result.ToString();
    }
    stages.push_back(std::move(entry));
  }
  nlohmann::ordered_json doc = {{"target", graph.target},
                                {"stages", std::move(stages)},
                                {"waves", graph.waves},
                                {"build_platform", graph.build_platform.String()},
                                {"target_platform", graph.target_platform.String()}};
  return doc.dump(2) + "\n";
}

std::string PlanDot(const graph::StageGraph& graph) {
  std::string out = "digraph stages {\n  rankdir=LR;\n  node [shape=box];\n";
  std::vector<std::string> images;
  for (const PlannedStage& stage : graph.stages) {
    std::string label = absl::StrCat(StageLabel(stage), "\n", BaseText(graph, stage));
    absl::StrAppend(&out, "  s", stage.index, " [label=", DotString(label),
                    stage.index == graph.target ? ", penwidth=2" : "",
                    stage.needed ? "" : ", style=dashed", "];\n");
    for (const oci::ImageRef& image : stage.images) images.push_back(image.String());
  }
  std::sort(images.begin(), images.end());
  images.erase(std::unique(images.begin(), images.end()), images.end());
  for (size_t i = 0; i < images.size(); ++i) {
    absl::StrAppend(&out, "  i", i, " [shape=ellipse, label=", DotString(images[i]), "];\n");
  }
  for (const PlannedStage& stage : graph.stages) {
    std::vector<std::pair<int, std::string>> drawn;
    for (const graph::StageEdge& edge : stage.edges) {
      std::pair<int, std::string> key(edge.stage, std::string(graph::EdgeKindName(edge.kind)));
      if (std::find(drawn.begin(), drawn.end(), key) != drawn.end()) continue;
      drawn.push_back(key);
      absl::StrAppend(&out, "  s", edge.stage, " -> s", stage.index,
                      " [label=", DotString(key.second),
                      edge.kind == graph::EdgeKind::kFrom ? ", style=bold" : "", "];\n");
    }
    for (const oci::ImageRef& image : stage.images) {
      const size_t i =
          std::lower_bound(images.begin(), images.end(), image.String()) - images.begin();
      absl::StrAppend(&out, "  i", i, " -> s", stage.index, ";\n");
    }
  }
  out += "}\n";
  return out;
}

}  // namespace stagefarm::cli
