// The challenge a registry answers 401 with (RFC 7235 `WWW-Authenticate`),
// as docker/distribution's registry client parses it:
//   Bearer realm="https://auth.example/token",service="registry",scope="repository:x:pull"
//   Basic realm="Registry Realm"
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stagefarm::registry {

struct AuthChallenge {
  std::string scheme;                         // lower-case: "bearer", "basic"
  std::map<std::string, std::string> params;  // lower-case names: "realm", "service", "scope"

  // The parameter's value, empty when absent.
  std::string Param(absl::string_view name) const;
};

// Parses one WWW-Authenticate header value, which may hold several
// challenges ("Bearer realm=...,scope=..., Basic realm=..."). Parameter values
// are tokens or quoted strings (backslash escapes honoured). InvalidArgument
// quoting the header for input that is not a challenge list.
absl::StatusOr<std::vector<AuthChallenge>> ParseAuthChallenges(absl::string_view header);

}  // namespace stagefarm::registry
