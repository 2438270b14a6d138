#include "common/graph/plan_cache_keys.h"

#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/graph/cache_key.h"

namespace stagefarm::graph {
namespace {

digest::Digest ImageKey(const oci::ImageRef& image, const ImageManifestLookup& image_manifest) {
  return BaseImageKey(image.String(), image_manifest ? image_manifest(image) : std::nullopt);
}

digest::Digest BaseKey(const StageBase& base, const std::vector<std::optional<StageKeys>>& keys,
                       const ImageManifestLookup& image_manifest) {
  switch (base.kind) {
    case StageBase::Kind::kImage:
      return ImageKey(base.image, image_manifest);
    case StageBase::Kind::kStage:
      return keys[base.stage]->result;
    case StageBase::Kind::kScratch:
      break;
  }
  return BaseImageKey("scratch", std::nullopt);
}

}  // namespace

absl::StatusOr<std::vector<std::optional<StageKeys>>> ComputePlanCacheKeys(
    const StageGraph& graph, const fs::ContextIndex& context, absl::string_view filename,
    const ImageManifestLookup& image_manifest, const NamedContextIndexes& named_contexts) {
  std::vector<std::optional<StageKeys>> keys(graph.stages.size());
  // Waves put every stage after the stages it needs.
  for (const std::vector<int>& wave : graph.waves) {
    for (int index : wave) {
      const PlannedStage& stage = graph.stages[index];
      const digest::Digest base = BaseKey(stage.base, keys, image_manifest);
      StageKeys stage_keys{base, {}, base};
      for (const PlannedInstruction& planned : stage.instructions) {
        CacheKeyInputs inputs{stage_keys.result};
        inputs.instruction = planned.text;
        inputs.platform = planned.platform.String();
        if (planned.args != nullptr) {
          for (const DeclaredArg& arg : *planned.args) {
            if (arg.value) inputs.build_args[arg.name] = *arg.value;
          }
        }
        if (planned.env != nullptr) {
          for (const auto& [name, value] : *planned.env) inputs.env[name] = value;
        }
        // Sources per context: "" is the build's own, else a named one.
        std::map<std::string, std::vector<std::string>> context_sources;
        for (const Source& read : planned.reads) {
          switch (read.kind) {
            case SourceKind::kContext:
              context_sources[read.context].push_back(read.path);
              break;
            case SourceKind::kStage:
              inputs.inputs.emplace(absl::StrCat("stage:", read.stage, ":", read.path),
                                    keys[read.stage]->result);
              break;
            case SourceKind::kImage:
              inputs.inputs.emplace(absl::StrCat("image:", read.image.String(), ":", read.path),
                                    ImageKey(read.image, image_manifest));
              break;
            case SourceKind::kUrl:
              inputs.inputs.emplace(absl::StrCat("url:", read.path), digest::Sha256Of(read.path));
              break;
          }
        }
        for (const auto& [name, sources] : context_sources) {
          const fs::ContextIndex* index = &context;
          if (!name.empty()) {
            auto it = named_contexts.find(name);
            if (it == named_contexts.end() || it->second == nullptr) {
              return absl::InvalidArgumentError(
                  absl::StrCat(filename, ":", planned.location.start_line, ": build context ", name,
                               " is not defined"));
            }
            index = it->second;
          }
          absl::StatusOr<std::vector<const fs::ContextEntry*>> selection = index->Select(sources);
          if (!selection.ok()) {
            return absl::InvalidArgumentError(
                absl::StrCat(filename, ":", planned.location.start_line, ": ",
                             name.empty() ? "" : absl::StrCat("context ", name, ": "),
                             selection.status().message()));
          }
          inputs.inputs.emplace(
              name.empty() ? std::string("context") : absl::StrCat("context:", name),
              fs::SelectionDigest(*selection));
        }
        stage_keys.result = ComputeCacheKey(inputs);
        stage_keys.instructions.push_back(stage_keys.result);
      }
      keys[index] = std::move(stage_keys);
    }
  }
  return keys;
}

}  // namespace stagefarm::graph
