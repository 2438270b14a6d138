#include "common/build/hand_off.h"

#include <algorithm>

namespace stagefarm::build {

std::map<int, StageNeed> ConsumerNeeds(const graph::StageGraph& graph, int consumer) {
  std::map<int, StageNeed> needs;
  const graph::PlannedStage& stage = graph.stages[consumer];
  for (int dep : stage.deps) needs[dep];
  if (stage.base.kind == graph::StageBase::Kind::kStage) needs[stage.base.stage].whole = true;
  for (const graph::StageRead& read : stage.stage_reads) {
    StageNeed& need = needs[read.stage];
    if (read.path == "/" || read.path.empty()) need.whole = true;
    need.paths.push_back(read.path);
  }
  for (auto& [producer, need] : needs) {
    if (need.whole || need.paths.empty()) {
      need.whole = true;
      need.paths.clear();
      continue;
    }
    std::sort(need.paths.begin(), need.paths.end());
    need.paths.erase(std::unique(need.paths.begin(), need.paths.end()), need.paths.end());
  }
  return needs;
}

std::vector<std::vector<std::string>> ProducerExports(const graph::StageGraph& graph,
                                                      int producer) {
  std::vector<std::vector<std::string>> exports;
  for (const graph::PlannedStage& stage : graph.stages) {
    if (!stage.needed) continue;
    if (std::find(stage.deps.begin(), stage.deps.end(), producer) == stage.deps.end()) continue;
    const std::map<int, StageNeed> needs = ConsumerNeeds(graph, stage.index);
    auto it = needs.find(producer);
    if (it == needs.end() || it->second.whole) continue;
    exports.push_back(it->second.paths);
  }
  std::sort(exports.begin(), exports.end());
  exports.erase(std::unique(exports.begin(), exports.end()), exports.end());
  return exports;
}

}  // namespace stagefarm::build
