// The local cluster `stagefarm build` starts when no --coordinator is given:
// a stagefarm-coordinator and N stagefarm-worker processes on loopback, each
// with its own data dir under STAGEFARM_HOME/cluster/, talking the same
// protocol as a real cluster (plain TCP on 127.0.0.1, which ARCHITECTURE.md
// allows the embedded cluster). The coordinator's cache index and the
// workers' stores stay between runs, so a rebuild is cached. Each process
// logs to STAGEFARM_HOME/cluster/<name>.log.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace stagefarm::cli {

struct EmbeddedClusterOptions {
  std::filesystem::path home;  // STAGEFARM_HOME
  int workers = 2;
  int slots = 1;  // per worker
  absl::Duration start_timeout = absl::Seconds(20);
};

class EmbeddedCluster {
 public:
  // Starts the processes and returns once every worker has joined.
  // Errors name the process and point at its log.
  static absl::StatusOr<std::unique_ptr<EmbeddedCluster>> Start(EmbeddedClusterOptions options);
  // Stops every process (SIGTERM, then SIGKILL after 5 s) and reaps it.
  ~EmbeddedCluster();
  EmbeddedCluster(const EmbeddedCluster&) = delete;
  EmbeddedCluster& operator=(const EmbeddedCluster&) = delete;

  const std::string& control_endpoint() const { return control_endpoint_; }

 private:
  EmbeddedCluster() = default;

  // Start's tries: one, and another for each time the coordinator's port was
  // taken between choosing and binding it.
  static constexpr int kStartAttempts = 3;
  // One try; Aborted when the coordinator's port was taken.
  static absl::StatusOr<std::unique_ptr<EmbeddedCluster>> StartOnce(
      const EmbeddedClusterOptions& options, absl::Time deadline);

  struct Process {
    std::string name;
    pid_t pid = -1;
    std::filesystem::path log;
  };
  absl::StatusOr<Process> Spawn(const std::string& name, const std::filesystem::path& binary,
                                const std::vector<std::string>& args,
                                const std::filesystem::path& log);

  std::vector<Process> processes_;
  std::string control_endpoint_;
};

// The directory of a sibling binary: next to this program, in the build
// tree's coordinator/ and worker/ beside its cli/, or on PATH.
std::filesystem::path FindDaemonBinary(const std::string& name);

}  // namespace stagefarm::cli
