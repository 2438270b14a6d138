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

std::vector<std::vector<std::vector<std::string>>> ProducerExports(
    const std::vector<std::map<int, StageNeed>>& needs) {
  std::vector<std::vector<std::vector<std::string>>> exports(needs.size());
  for (const std::map<int, StageNeed>& reads : needs) {
    for (const auto& [producer, need] : reads) {
      if (!need.whole) exports[producer].push_back(need.paths);
    }
  }
  for (std::vector<std::vector<std::string>>& lists : exports) {
    std::sort(lists.begin(), lists.end());
    lists.erase(std::unique(lists.begin(), lists.end()), lists.end());
  }
  return exports;
}

}  // namespace stagefarm::build
