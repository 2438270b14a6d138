// The variables one stage's instructions see, kept as BuildKit's dispatch
// state keeps them: the base's environment, then ENV and ARG in order. A
// stage built FROM another starts as a copy of that stage's final scope, so
// it inherits its ENV values, its ARG values and its declared ARGs.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/dockerfile/instructions.h"
#include "common/dockerfile/shell_lexer.h"
#include "common/graph/build_args.h"
#include "common/graph/planned_instruction.h"
#include "common/oci/platform.h"

namespace stagefarm::graph {

// BuildKit's default PATH for a stage whose base sets none (not on Windows).
inline constexpr absl::string_view kDefaultPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

class StageScope {
 public:
  // The scope of a stage built on an image (or scratch) whose config
  // environment is `image_env` ("NAME=value" entries): those variables, plus
  // PATH=kDefaultPath when they have none and `platform` is not Windows.
  static StageScope ForImage(absl::Span<const std::string> image_env,
                             const oci::Platform& platform);

  // What instructions expand against (and RUN's environment).
  const dockerfile::ShellEnv& env() const { return env_; }
  // The same as shared, immutable snapshots; a snapshot is reused until the
  // scope changes.
  std::shared_ptr<const Variables> EnvSnapshot();
  std::shared_ptr<const std::vector<DeclaredArg>> ArgsSnapshot();

  // An ENV instruction, already expanded: each variable replaces its earlier
  // value in place or is appended.
  void ApplyEnv(const dockerfile::Env& expanded);

  // An ARG instruction, as BuildKit's dispatchArg: each name takes the build
  // arg's value when one is given; else its default, expanded against env();
  // else, without a default, the value in `global` (the meta ARGs and the
  // automatic platform args), if any. The name is declared either way; a
  // value also enters env() (except BUILDKIT_SBOM_SCAN_CONTEXT and
  // BUILDKIT_SBOM_SCAN_STAGE, which BuildKit keeps out). Returns the ARG with
  // the resolved values; InvalidArgument with the lexer's message (no
  // location) when a default fails to expand.
  absl::StatusOr<dockerfile::Arg> ApplyArg(const dockerfile::Arg& arg, const BuildArgs& build_args,
                                           const dockerfile::ShellEnv& global,
                                           const dockerfile::ShellLexer& lexer);

 private:
  dockerfile::ShellEnv env_;
  std::vector<DeclaredArg> args_;
  std::shared_ptr<const Variables> env_snapshot_;
  std::shared_ptr<const std::vector<DeclaredArg>> args_snapshot_;
};

}  // namespace stagefarm::graph
