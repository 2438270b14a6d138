// What one stage needs of the stages it reads, and so what each stage hands
// off when it ends (ARCHITECTURE.md, "Hand-off"). The coordinator and the
// workers both derive it from the plan, so they agree without saying it.
//
// A stage built FROM another needs all of its layers. A stage that only
// COPYs --from (or mounts from=) another needs just the paths it reads: the
// producer packs those into one artifact blob, and the consumer fetches that
// instead of the producer's layers. Reading "/" needs the whole stage.
#ifndef STAGEFARM_COMMON_BUILD_HAND_OFF_H_
#define STAGEFARM_COMMON_BUILD_HAND_OFF_H_

#include <map>
#include <string>
#include <vector>

#include "common/graph/stage_graph.h"

namespace stagefarm::build {

struct StageNeed {
  bool whole = false;               // every layer
  std::vector<std::string> paths;   // else these paths (sorted, unique)
};

// For each stage `consumer` reads, by stage index.
std::map<int, StageNeed> ConsumerNeeds(const graph::StageGraph& graph, int consumer);

// For every stage, the distinct path lists its readers want as artifacts
// (never the whole stage), sorted; from every stage's ConsumerNeeds (empty
// maps for stages that read nothing or are not needed).
std::vector<std::vector<std::vector<std::string>>> ProducerExports(
    const std::vector<std::map<int, StageNeed>>& needs);

}  // namespace stagefarm::build

#endif  // STAGEFARM_COMMON_BUILD_HAND_OFF_H_
