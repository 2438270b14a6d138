// How `stagefarm plan` shows a stage graph: a table for people, JSON for scripts.
#pragma once

#include <string>

#include "common/graph/stage_graph.h"

namespace stagefarm::cli {

std::string PlanText(const graph::StageGraph& graph);
std::string PlanJson(const graph::StageGraph& graph);

}  // namespace stagefarm::cli
