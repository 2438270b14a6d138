// How `stagefarm plan` shows a stage graph: a table and dependency tree for
// people, JSON for scripts, Graphviz for pictures.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/graph/plan_cache_keys.h"
#include "common/graph/stage_graph.h"

namespace stagefarm::cli {

// Every stage (with what it needs), the target's dependency tree, and the waves.
std::string PlanText(const graph::StageGraph& graph);

// {"target", "stages": [{"index", "name" (null when unnamed), "base"
// ({"image"}, {"stage"} or {"scratch": true}), "platform", "deps", "images",
// "needed", "instructions", ...}], "waves", ...}; the fields past the issue's
// shape are the build and target platforms, the edges, each needed stage's
// context paths and stage reads, and its expanded instructions ("steps").
// `keys` (from graph::ComputePlanCacheKeys, one per stage) adds a cache key to
// every step and a result key to every needed stage.
std::string PlanJson(const graph::StageGraph& graph,
                     const std::vector<std::optional<graph::StageKeys>>& keys);

// A Graphviz digraph: one box per stage (dashed when not needed), one ellipse
// per external image read through --from, an arrow from what is read to the
// stage reading it.
std::string PlanDot(const graph::StageGraph& graph);

}  // namespace stagefarm::cli
