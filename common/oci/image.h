// The image config: the JSON document an OCI image's manifest names as its
// config, in the shape BuildKit writes it (the OCI image config with Docker's
// Healthcheck, OnBuild, Shell and ArgsEscaped kept in "config", as BuildKit
// does even under OCI media types).
//
// Parsing takes untrusted input (a base image's config comes from a
// registry). Serialising is deterministic and byte-compatible with what
// BuildKit's exporter writes: the top-level keys in sorted order (the
// exporter re-marshals the document through a Go map), the keys of "config",
// "rootfs" and history entries in Go struct field order, empty fields left
// out where Go's `omitempty` leaves them out, maps sorted by key, compact,
// with Go's string escaping (<, >, & as \u003c, \u003e, \u0026).
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/digest/digest.h"
#include "common/oci/platform.h"

namespace stagefarm::oci {

// Docker's health check ("Healthcheck"). Zero durations and retries mean
// "use the engine's default" and are left out of the JSON, as Go's
// omitempty does. `test` is {"NONE"}, {"CMD", args...} or {"CMD-SHELL", cmd}.
struct HealthcheckConfig {
  std::vector<std::string> test;
  absl::Duration interval;
  absl::Duration timeout;
  absl::Duration start_period;
  absl::Duration start_interval;
  int64_t retries = 0;

  bool operator==(const HealthcheckConfig&) const = default;
};

// The "config" object: how to run a container from the image. Empty fields
// are not written (an empty Cmd and an absent Cmd are the same, as in every
// Go implementation of the spec).
struct ContainerConfig {
  std::string user;
  std::set<std::string> exposed_ports;  // "8080/tcp"
  std::vector<std::string> env;         // "NAME=value", in order
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::set<std::string> volumes;
  std::string working_dir;
  std::map<std::string, std::string> labels;
  std::string stop_signal;
  bool args_escaped = false;
  std::optional<HealthcheckConfig> healthcheck;
  std::vector<std::string> on_build;
  std::vector<std::string> shell;

  bool operator==(const ContainerConfig&) const = default;
};

// One "history" entry.
struct HistoryEntry {
  std::optional<absl::Time> created;
  std::string created_by;
  std::string author;
  std::string comment;
  bool empty_layer = false;

  bool operator==(const HistoryEntry&) const = default;
};

struct ImageConfig {
  std::optional<absl::Time> created;
  std::string author;
  std::string architecture;
  std::string os;
  std::string os_version;
  std::vector<std::string> os_features;
  std::string variant;
  ContainerConfig config;
  std::string rootfs_type = "layers";
  std::vector<digest::Digest> diff_ids;  // uncompressed layer digests, bottom first
  std::vector<HistoryEntry> history;

  bool operator==(const ImageConfig&) const = default;
};

// The media type of an image config blob.
inline constexpr absl::string_view kImageConfigMediaType =
    "application/vnd.oci.image.config.v1+json";

// Parses a config document as Go's encoding/json fills BuildKit's image
// struct: unknown keys are ignored (and so dropped: "container_config",
// "docker_version"...), null stands for an absent value, keys match exactly.
// Returns InvalidArgument for input that is not a JSON object and for a
// value of the wrong type, naming the field by its path, e.g.
// "image config: config.Env[2]: expected a string, got number"; also for a
// "created" that is not an RFC 3339 time and a diff_id that is not a digest.
absl::StatusOr<ImageConfig> ParseImageConfig(absl::string_view json);

// Serialises as BuildKit's exporter does (see the file comment). Times are
// written in UTC as Go's RFC3339Nano ("2024-01-02T03:04:05.5Z").
std::string SerializeImageConfig(const ImageConfig& config);

// The config BuildKit starts a `FROM scratch` stage with: the platform,
// rootfs type "layers", WorkingDir "/" and Env PATH=<default path>.
ImageConfig ScratchConfig(const Platform& platform);

// The PATH BuildKit gives an image without one (system.DefaultPathEnv for Linux).
inline constexpr absl::string_view kDefaultPathEnv =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// Appends `text` as a JSON string as Go's encoding/json writes it: quotes,
// backslash and control characters escaped (\n \r \t \b \f, others \u00XX),
// <, >, & as \u003c \u003e \u0026, U+2028 and U+2029 as \u2028 \u2029,
// invalid UTF-8 bytes as \ufffd.
void AppendGoJsonString(std::string& out, absl::string_view text);

// Go's time.Duration.String(): "0s", "1.5s", "1m30s", "1h0m0s", "500ms".
std::string GoDurationString(absl::Duration duration);

}  // namespace stagefarm::oci
