// stagefarm-worker: executes build stages and serves blobs to peers. Execution
// arrives with the worker issue; today the daemon accepts its documented flags
// (or a --flagfile) and reports them.
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"

ABSL_FLAG(std::string, coordinator, "tcp://127.0.0.1:7700", "Coordinator endpoint");
ABSL_FLAG(std::string, listen, "tcp://0.0.0.0:7701", "ZeroMQ endpoint serving blobs to peers");
ABSL_FLAG(std::string, data_dir, "/var/lib/stagefarm/worker",
          "Directory for the store, snapshots, cache mounts and scratch");
ABSL_FLAG(int, slots, 2, "Stages this worker runs at once");
ABSL_FLAG(std::string, platform, "linux/amd64", "Platforms this worker builds for");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "stagefarm-worker --coordinator tcp://HOST:7700 --listen tcp://0.0.0.0:7701 --data-dir DIR "
      "[--slots N] [--platform ...]");
  absl::ParseCommandLine(argc, argv);
  std::printf("stagefarm-worker: coordinator=%s listen=%s data-dir=%s slots=%d platform=%s\n",
              absl::GetFlag(FLAGS_coordinator).c_str(), absl::GetFlag(FLAGS_listen).c_str(),
              absl::GetFlag(FLAGS_data_dir).c_str(), absl::GetFlag(FLAGS_slots),
              absl::GetFlag(FLAGS_platform).c_str());
  std::fprintf(stderr, "stagefarm-worker: stage execution is not implemented yet; exiting\n");
  return 0;
}
