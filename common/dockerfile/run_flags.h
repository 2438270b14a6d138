// The typed values of RUN's flags: `--mount`, `--network`, `--security` and
// `--device`, parsed and validated as BuildKit's
// frontend/dockerfile/instructions/commands_run*.go do.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stagefarm::dockerfile {

enum class MountType { kBind, kCache, kTmpfs, kSecret, kSsh };
enum class MountSharing { kShared, kPrivate, kLocked };

// "bind", "cache", ...; "shared", "private", "locked".
absl::string_view MountTypeName(MountType type);
absl::string_view MountSharingName(MountSharing sharing);

// One `RUN --mount=...` value. Fields hold what was written; the defaults the
// reference applies later, at dispatch, are the functions below.
struct Mount {
  MountType type = MountType::kBind;
  std::string from;    // stage or image to mount from; empty: the build context
  std::string source;  // `source`/`src`
  std::string target;  // `target`/`dst`/`destination`
  // `ro`/`readonly`/`rw`/`readwrite`; when none is given: false for cache and
  // tmpfs, true for the other types.
  bool read_only = false;
  int64_t size_limit = 0;               // tmpfs `size` in bytes; 0 when not given
  std::string id;                       // `id`: cache id, secret id or ssh id
  std::optional<MountSharing> sharing;  // cache `sharing`, when given
  bool required = false;                // secret and ssh only
  std::optional<std::string> env;       // secret: also expose as this env variable
  std::optional<uint32_t> mode;         // cache, secret, ssh: octal permission bits
  std::optional<uint32_t> uid;          // cache, secret, ssh
  std::optional<uint32_t> gid;          // cache, secret, ssh

  bool operator==(const Mount&) const = default;
};

// Variable expansion of one word (the reference's SingleWordExpander). The
// stage graph supplies it; tests pass the identity.
using WordExpander = absl::FunctionRef<absl::StatusOr<std::string>(absl::string_view word)>;

// Parses one `--mount` value: comma-separated `key=value` fields in CSV
// quoting, each value passed through `expand` first. Returns InvalidArgument
// with the reference's message naming the offending field or value, e.g.
// `unsupported mount type "cach" (did you mean cache?)`, `invalid value for
// ro: maybe`, `unexpected key 'size' for mount type 'bind'`, `mode not allowed
// for "bind" type mounts`, `invalid secret mount. one of source, target
// required`; errors of `expand` are returned unchanged.
absl::StatusOr<Mount> ParseMount(absl::string_view spec, WordExpander expand);

// The raw `from` field of a `--mount` value as written, before any expansion
// (the last one when repeated, as the reference's parser keeps it); empty when
// there is none. InvalidArgument when `spec` is not valid CSV.
absl::StatusOr<std::string> MountFromField(absl::string_view spec);

// The checks the reference makes when the RUN instruction is parsed, before
// any expansion: the value must be valid CSV and `from` must not use a
// variable ("'from' doesn't support variable expansion, define alias stage
// instead"). Everything else is checked by ParseMount.
absl::Status CheckMountBeforeExpansion(absl::string_view spec);

// Dispatch-time defaults, as BuildKit's dockerfile2llb applies them.
// The cache sharing mode: as given, else shared.
MountSharing EffectiveSharing(const Mount& mount);
// The cache id: as given, else the cleaned target path.
std::string CacheId(const Mount& mount);
// The ssh agent id: as given, else "default".
std::string SshId(const Mount& mount);
// Where a secret goes: its id is `source`, else `id`, else the base name of
// `target`; it is mounted at `target`, else /run/secrets/<id> unless it is
// exposed as an env variable (then `file` is unset). InvalidArgument "one of
// source, target required" when no id can be derived.
struct SecretPlacement {
  std::string id;
  std::optional<std::string> file;
};
absl::StatusOr<SecretPlacement> PlaceSecret(const Mount& mount);

// `RUN --network=`.
enum class NetworkMode { kDefault, kNone, kHost };
// InvalidArgument `invalid network mode "bridge"` for anything but
// default, none and host (case-sensitive).
absl::StatusOr<NetworkMode> ParseNetworkMode(absl::string_view value);

// `RUN --security=`.
enum class SecurityMode { kSandbox, kInsecure };
// InvalidArgument `security "x" is not valid` for anything but sandbox and
// insecure (case-sensitive).
absl::StatusOr<SecurityMode> ParseSecurityMode(absl::string_view value);

// `RUN --device=name[,required[=bool]]`.
struct Device {
  std::string name;
  bool required = false;

  bool operator==(const Device&) const = default;
};
// The first field without a known key is the name; `name=` sets it
// explicitly. InvalidArgument with the reference's message otherwise, e.g.
// "device name already set to x".
absl::StatusOr<Device> ParseDevice(absl::string_view spec);

}  // namespace stagefarm::dockerfile
