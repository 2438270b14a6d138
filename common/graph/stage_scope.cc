#include "common/graph/stage_scope.h"

#include <optional>
#include <utility>

namespace stagefarm::graph {

StageScope StageScope::ForImage(absl::Span<const std::string> image_env,
                                const oci::Platform& platform) {
  StageScope scope;
  scope.env_ = dockerfile::ShellEnv(image_env);
  if (!scope.env_.Get("PATH") && platform.os != "windows") scope.env_.Set("PATH", kDefaultPath);
  return scope;
}

std::shared_ptr<const Variables> StageScope::EnvSnapshot() {
  if (env_snapshot_ == nullptr) env_snapshot_ = std::make_shared<const Variables>(env_.entries());
  return env_snapshot_;
}

std::shared_ptr<const std::vector<DeclaredArg>> StageScope::ArgsSnapshot() {
  if (args_snapshot_ == nullptr) {
    args_snapshot_ = std::make_shared<const std::vector<DeclaredArg>>(args_);
  }
  return args_snapshot_;
}

void StageScope::ApplyEnv(const dockerfile::Env& expanded) {
  for (const dockerfile::KeyValue& kv : expanded.vars) env_.Set(kv.key, kv.value);
  env_snapshot_.reset();
}

absl::StatusOr<dockerfile::Arg> StageScope::ApplyArg(const dockerfile::Arg& arg,
                                                     const BuildArgs& build_args,
                                                     const dockerfile::ShellEnv& global,
                                                     const dockerfile::ShellLexer& lexer) {
  dockerfile::Arg resolved = arg;
  for (dockerfile::ArgDefinition& def : resolved.args) {
    if (std::optional<absl::string_view> given = build_args.Get(def.key)) {
      def.value = std::string(*given);
    } else if (def.value) {
      absl::StatusOr<std::string> value = ExpandWord(lexer, *def.value, env_);
      if (!value.ok()) return value.status();
      def.value = *std::move(value);
    } else if (std::optional<absl::string_view> inherited = global.Get(def.key)) {
      def.value = std::string(*inherited);
    }
    if (def.value && def.key != "BUILDKIT_SBOM_SCAN_CONTEXT" &&
        def.key != "BUILDKIT_SBOM_SCAN_STAGE") {
      env_.Set(def.key, *def.value);
      env_snapshot_.reset();
    }
    args_.push_back({def.key, def.value});
    args_snapshot_.reset();
  }
  return resolved;
}

}  // namespace stagefarm::graph
