#include "common/oci/platform.h"

#include <sys/utsname.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/types/span.h"

namespace stagefarm::oci {
namespace {

// Go's GOOS and GOARCH values, as containerd's isKnownOS and isKnownArch list them.
constexpr absl::string_view kKnownOs[] = {
    "aix",   "android", "darwin", "dragonfly", "freebsd", "hurd",    "illumos", "ios", "js",
    "linux", "nacl",    "netbsd", "openbsd",   "plan9",   "solaris", "windows", "zos"};
constexpr absl::string_view kKnownArch[] = {
    "386",     "amd64",   "amd64p32", "arm",    "armbe",  "arm64",    "arm64be",   "ppc64",
    "ppc64le", "loong64", "mips",     "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le",
    "ppc",     "riscv",   "riscv64",  "s390",   "s390x",  "sparc",    "sparc64",   "wasm"};

bool Contains(absl::Span<const absl::string_view> list, absl::string_view value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

absl::Status InvalidArgument(absl::string_view specifier, absl::string_view reason) {
  return absl::InvalidArgumentError(
      absl::StrCat("\"", specifier, "\": ", reason, ": invalid argument"));
}

std::string NormalizeOs(absl::string_view os) {
  std::string lower = absl::AsciiStrToLower(os);
  return lower == "macos" ? "darwin" : lower;
}

// containerd's normalizeArch.
std::pair<std::string, std::string> NormalizeArch(absl::string_view arch_in,
                                                  absl::string_view variant_in) {
  std::string arch = absl::AsciiStrToLower(arch_in);
  std::string variant = absl::AsciiStrToLower(variant_in);
  if (arch == "i386") {
    arch = "386";
    variant.clear();
  } else if (arch == "x86_64" || arch == "x86-64" || arch == "amd64") {
    arch = "amd64";
    if (variant == "v1") variant.clear();
  } else if (arch == "aarch64" || arch == "arm64") {
    arch = "arm64";
    if (variant == "8" || variant == "v8" || variant == "v8.0") {
      variant.clear();
    } else if (variant == "9" || variant == "9.0" || variant == "v9.0") {
      variant = "v9";
    }
  } else if (arch == "armhf") {
    arch = "arm";
    variant = "v7";
  } else if (arch == "armel") {
    arch = "arm";
    variant = "v6";
  } else if (arch == "arm") {
    if (variant.empty() || variant == "7") {
      variant = "v7";
    } else if (variant == "5" || variant == "6" || variant == "8") {
      variant = absl::StrCat("v", variant);
    }
  }
  return {arch, variant};
}

// ^[A-Za-z0-9_.-]+$
bool IsSpecifierComponent(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

// ^([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.-]*)\))?$ into (os, version).
bool SplitOsAndVersion(absl::string_view s, std::string& os, std::string& version) {
  absl::string_view name = s;
  absl::string_view ver;
  if (const size_t open = s.find('('); open != absl::string_view::npos) {
    if (s.back() != ')') return false;
    name = s.substr(0, open);
    ver = s.substr(open + 1, s.size() - open - 2);
    for (char c : ver) {
      if (!absl::ascii_isalnum(c) && c != '_' && c != '.' && c != '-') return false;
    }
  }
  if (name.empty()) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != '-') return false;
  }
  os = std::string(name);
  version = std::string(ver);
  return true;
}

}  // namespace

std::string Platform::String() const {
  std::string out = absl::StrCat(os, "/", architecture);
  if (!variant.empty()) absl::StrAppend(&out, "/", variant);
  return out;
}

Platform HostPlatform() {
  struct utsname name;
  const std::string machine = uname(&name) == 0 ? name.machine : "x86_64";
  Platform host;
  host.os = "linux";
  if (machine == "armv7l") {
    std::tie(host.architecture, host.variant) = NormalizeArch("arm", "v7");
  } else if (machine == "armv6l") {
    std::tie(host.architecture, host.variant) = NormalizeArch("arm", "v6");
  } else if (machine == "i686" || machine == "i586" || machine == "i486") {
    host.architecture = "386";
  } else {
    // x86_64, aarch64, i386 normalise; ppc64le, s390x, riscv64 keep their names.
    std::tie(host.architecture, host.variant) = NormalizeArch(machine, "");
  }
  return host;
}

absl::StatusOr<Platform> ParsePlatform(absl::string_view specifier) {
  if (specifier.find('*') != absl::string_view::npos) {
    return InvalidArgument(specifier, "wildcards not yet supported");
  }
  const std::vector<absl::string_view> parts = absl::StrSplit(specifier, absl::MaxSplits('/', 3));
  Platform p;
  if (!SplitOsAndVersion(parts[0], p.os, p.os_version)) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", parts[0], "\" is an invalid OS component of \"", specifier,
                     "\": OSAndVersion specifier component must match "
                     "\"^([A-Za-z0-9_-]+)(?:\\(([A-Za-z0-9_.-]*)\\))?$\": invalid argument"));
  }
  p.os = NormalizeOs(p.os);
  for (size_t i = 1; i < parts.size(); ++i) {
    if (!IsSpecifierComponent(parts[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", parts[i], "\" is an invalid component of \"", specifier,
                       "\": platform specifier component must match \"^[A-Za-z0-9_.-]+$\": "
                       "invalid argument"));
    }
  }
  switch (parts.size()) {
    case 1:
      if (Contains(kKnownOs, p.os)) {
        const Platform host = HostPlatform();
        p.architecture = host.architecture;
        p.variant = host.variant;
        break;
      }
      std::tie(p.architecture, p.variant) = NormalizeArch(parts[0], "");
      if (!Contains(kKnownArch, p.architecture)) {
        return InvalidArgument(specifier, "unknown operating system or architecture");
      }
      p.os = "linux";
      p.os_version.clear();
      break;
    case 2:
      std::tie(p.architecture, p.variant) = NormalizeArch(parts[1], "");
      break;
    case 3:
      std::tie(p.architecture, p.variant) = NormalizeArch(parts[1], parts[2]);
      break;
    default:
      return InvalidArgument(specifier, "cannot parse platform specifier");
  }
  // platforms.Normalize.
  std::tie(p.architecture, p.variant) = NormalizeArch(p.architecture, p.variant);
  return p;
}

}  // namespace stagefarm::oci
