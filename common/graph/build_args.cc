#include "common/graph/build_args.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace stagefarm::graph {
namespace {

constexpr absl::string_view kProxyNames[] = {"HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY",
                                             "ALL_PROXY"};

constexpr absl::string_view kAutomaticArgs[] = {
    "BUILDPLATFORM", "BUILDOS",        "BUILDOSVERSION", "BUILDARCH",
    "BUILDVARIANT",  "TARGETPLATFORM", "TARGETOS",       "TARGETOSVERSION",
    "TARGETARCH",    "TARGETVARIANT",  "TARGETSTAGE"};

bool IsProxyName(absl::string_view name) {
  return std::any_of(
      std::begin(kProxyNames), std::end(kProxyNames),
      [name](absl::string_view proxy) { return absl::EqualsIgnoreCase(name, proxy); });
}

bool IsFrontendOption(absl::string_view name) {
  return absl::StartsWith(name, "BUILDKIT_") || name == "SOURCE_DATE_EPOCH";
}

}  // namespace

absl::StatusOr<BuildArgs> BuildArgs::Parse(const std::vector<std::string>& entries) {
  BuildArgs args;
  for (const std::string& entry : entries) {
    const size_t eq = entry.find('=');
    if (eq == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("build arg \"", entry, "\" has no value (expected NAME=value)"));
    }
    if (eq == 0) {
      return absl::InvalidArgumentError(absl::StrCat("build arg \"", entry, "\" has no name"));
    }
    args.values_[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  return args;
}

std::optional<absl::string_view> BuildArgs::Get(absl::string_view name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return absl::string_view(it->second);
}

Variables BuildArgs::ProxyEnv() const {
  Variables env;
  for (absl::string_view proxy : kProxyNames) {
    const std::string* value = nullptr;
    for (const auto& [name, v] : values_) {  // sorted by name: the last match wins
      if (absl::EqualsIgnoreCase(name, proxy)) value = &v;
    }
    if (value == nullptr) continue;
    env.emplace_back(std::string(proxy), *value);
    env.emplace_back(absl::AsciiStrToLower(proxy), *value);
  }
  return env;
}

std::vector<std::string> BuildArgs::Unconsumed(
    const absl::flat_hash_set<std::string>& declared) const {
  std::vector<std::string> out;
  for (const auto& [name, value] : values_) {
    if (declared.contains(name) || IsProxyName(name) || IsAutomaticArg(name) ||
        IsFrontendOption(name)) {
      continue;
    }
    out.push_back(name);
  }
  return out;
}

std::string UnconsumedWarning(const std::vector<std::string>& names) {
  if (names.empty()) return "";
  return absl::StrCat("[Warning] One or more build-args [", absl::StrJoin(names, " "),
                      "] were not consumed");
}

bool IsAutomaticArg(absl::string_view name) {
  return std::find(std::begin(kAutomaticArgs), std::end(kAutomaticArgs), name) !=
         std::end(kAutomaticArgs);
}

dockerfile::ShellEnv AutomaticArgs(const oci::Platform& build, const oci::Platform& target,
                                   absl::string_view target_stage, const BuildArgs& build_args) {
  const std::pair<absl::string_view, std::string> defaults[] = {
      {"BUILDPLATFORM", build.String()},
      {"BUILDOS", build.os},
      {"BUILDOSVERSION", build.os_version},
      {"BUILDARCH", build.architecture},
      {"BUILDVARIANT", build.variant},
      {"TARGETPLATFORM", target.String()},
      {"TARGETOS", target.os},
      {"TARGETOSVERSION", target.os_version},
      {"TARGETARCH", target.architecture},
      {"TARGETVARIANT", target.variant},
      {"TARGETSTAGE", target_stage.empty() ? "default" : std::string(target_stage)},
  };
  dockerfile::ShellEnv env;
  for (const auto& [name, value] : defaults) {
    env.Set(name, build_args.Get(name).value_or(value));
  }
  return env;
}

absl::StatusOr<dockerfile::ShellEnv> GlobalScope(const std::vector<dockerfile::Arg>& meta_args,
                                                 const dockerfile::ShellLexer& lexer,
                                                 dockerfile::ShellEnv automatic,
                                                 const BuildArgs& build_args,
                                                 absl::string_view filename) {
  dockerfile::ShellEnv env = std::move(automatic);
  for (const dockerfile::Arg& arg : meta_args) {
    for (const dockerfile::ArgDefinition& def : arg.args) {
      if (std::optional<absl::string_view> given = build_args.Get(def.key)) {
        env.Set(def.key, *given);
        continue;
      }
      if (!def.value) continue;
      absl::StatusOr<std::string> value = lexer.ProcessWord(*def.value, env);
      if (!value.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(filename, ":", arg.location.start_line, ": ", value.status().message()));
      }
      env.Set(def.key, *value);
    }
  }
  return env;
}

}  // namespace stagefarm::graph
