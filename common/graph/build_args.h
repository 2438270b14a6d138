// Build arguments as BuildKit's Dockerfile frontend scopes them: the values
// given with `--build-arg`, the automatic platform arguments, and the global
// scope that `FROM` lines see (the ARGs before the first FROM).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/dockerfile/instructions.h"
#include "common/dockerfile/shell_lexer.h"
#include "common/oci/platform.h"

namespace stagefarm::graph {

// (name, value) pairs in a fixed order.
using Variables = std::vector<std::pair<std::string, std::string>>;

// The `--build-arg` values of one build.
class BuildArgs {
 public:
  // Parses "NAME=value" entries; a repeated NAME takes its last value.
  // InvalidArgument for an entry without '=' or with an empty name (a bare
  // NAME is the client's to resolve from its environment, as buildx does).
  static absl::StatusOr<BuildArgs> Parse(const std::vector<std::string>& entries);

  // The value given for `name` (case-sensitive), or nullopt.
  std::optional<absl::string_view> Get(absl::string_view name) const;

  // The proxy variables every RUN receives whether or not an ARG declares
  // them, and which never enter a cache key: for each of HTTP_PROXY,
  // HTTPS_PROXY, FTP_PROXY, NO_PROXY and ALL_PROXY given in any case, both
  // the upper- and lower-case name with the value (when one kind is given in
  // several cases, the value of the name that sorts last wins, as in
  // BuildKit's proxyEnvFromBuildArgs).
  Variables ProxyEnv() const;

  // The names given that the build does not consume, sorted: not declared by
  // any ARG in `declared`, not a proxy variable, not an automatic platform
  // argument, not a frontend option (BUILDKIT_*, SOURCE_DATE_EPOCH).
  std::vector<std::string> Unconsumed(const absl::flat_hash_set<std::string>& declared) const;

  bool empty() const { return values_.empty(); }

 private:
  absl::btree_map<std::string, std::string> values_;
};

// The warning for build args nothing consumed, worded as the reference
// (moby's legacy builder; BuildKit prints none): "[Warning] One or more
// build-args [A B] were not consumed". Empty when `names` is empty.
std::string UnconsumedWarning(const std::vector<std::string>& names);

// The automatic arguments of the global scope (BuildKit's defaultArgs):
// BUILDPLATFORM, BUILDOS, BUILDOSVERSION, BUILDARCH, BUILDVARIANT and the same
// with TARGET, plus TARGETSTAGE (`target_stage`, or "default" when empty).
// A build arg of the same name replaces each value.
dockerfile::ShellEnv AutomaticArgs(const oci::Platform& build, const oci::Platform& target,
                                   absl::string_view target_stage, const BuildArgs& build_args);

// True for the names AutomaticArgs sets.
bool IsAutomaticArg(absl::string_view name);

// The global scope FROM lines see: `automatic`, then each meta ARG in order
// (its build arg if given, else its default expanded against the scope so
// far; an ARG with neither leaves the scope as it is). InvalidArgument
// "FILE:LINE: <lexer message>" when a default fails to expand.
absl::StatusOr<dockerfile::ShellEnv> GlobalScope(const std::vector<dockerfile::Arg>& meta_args,
                                                 const dockerfile::ShellLexer& lexer,
                                                 dockerfile::ShellEnv automatic,
                                                 const BuildArgs& build_args,
                                                 absl::string_view filename);

}  // namespace stagefarm::graph
