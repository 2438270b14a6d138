// Platforms ("linux/amd64", "linux/arm/v7") as containerd's `platforms`
// package parses and normalises them, which is what BuildKit and buildx use
// for `--platform` and `FROM --platform`.
#pragma once

#include <compare>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stagefarm::oci {

struct Platform {
  std::string os;            // "linux", "windows", "darwin"
  std::string architecture;  // "amd64", "arm64", "arm", "386", ...
  std::string variant;       // "v7" for arm; empty for arm64 v8 and amd64 v1
  std::string os_version;    // "10.0.17763" from "windows(10.0.17763)"; usually empty

  // "os/arch[/variant]", containerd's platforms.Format (no OS version).
  std::string String() const;

  auto operator<=>(const Platform&) const = default;
};

// Parses a platform specifier as containerd's platforms.Parse and then
// normalises it (platforms.Normalize): names are lower-cased, "x86_64" is
// amd64, "aarch64" is arm64 without a variant, "arm" is arm/v7, "macos" is
// darwin. A single component is an OS (the architecture is this host's) or
// an architecture (the OS is linux). InvalidArgument for anything else, e.g.
// "\"foo\": unknown operating system or architecture: invalid argument".
absl::StatusOr<Platform> ParsePlatform(absl::string_view specifier);

// The platform this process runs on (normalised): the default build and
// target platform.
Platform HostPlatform();

}  // namespace stagefarm::oci
