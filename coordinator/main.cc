// stagefarm-coordinator: parses, plans and schedules builds for a cluster of
// workers. Scheduling arrives with the coordinator issue; today the daemon
// accepts its documented flags (or a --flagfile) and reports them.
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"

ABSL_FLAG(std::string, listen, "tcp://0.0.0.0:7700", "ZeroMQ endpoint for workers and clients");
ABSL_FLAG(std::string, data_dir, "/var/lib/stagefarm/coordinator",
          "Directory for the coordinator's store (cache index, refs)");
ABSL_FLAG(std::string, curve_secret_key, "", "File with this node's CURVE secret key");
ABSL_FLAG(std::string, authorized_keys, "", "Directory of CURVE public keys allowed to connect");
ABSL_FLAG(bool, insecure, false, "Allow plain TCP without CURVE (never in production)");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "stagefarm-coordinator --listen tcp://0.0.0.0:7700 --data-dir DIR "
      "[--curve-secret-key FILE --authorized-keys DIR]");
  absl::ParseCommandLine(argc, argv);
  std::printf(
      "stagefarm-coordinator: listen=%s data-dir=%s curve-secret-key=%s authorized-keys=%s "
      "insecure=%s\n",
      absl::GetFlag(FLAGS_listen).c_str(), absl::GetFlag(FLAGS_data_dir).c_str(),
      absl::GetFlag(FLAGS_curve_secret_key).c_str(), absl::GetFlag(FLAGS_authorized_keys).c_str(),
      absl::GetFlag(FLAGS_insecure) ? "true" : "false");
  std::fprintf(stderr, "stagefarm-coordinator: scheduling is not implemented yet; exiting\n");
  return 0;
}
