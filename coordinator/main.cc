// stagefarm-coordinator: parses, plans and schedules builds for a cluster of
// workers. Scheduling arrives with the coordinator issue; today the daemon
// accepts its documented flags (or a --flagfile), checks its security flags
// (it refuses to start, exit 2, unless they configure CURVE completely or ask
// for --insecure alone), and serves its content store on --listen, where
// clients upload build contexts, until SIGINT or SIGTERM. --check stops after
// the checks.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/daemon/blob_service.h"
#include "common/daemon/daemon_args.h"

ABSL_FLAG(std::string, listen, "tcp://0.0.0.0:7700", "ZeroMQ endpoint for workers and clients");
ABSL_FLAG(std::string, data_dir, "/var/lib/stagefarm/coordinator",
          "Directory for the coordinator's store (cache index, refs)");
ABSL_FLAG(std::string, curve_secret_key, "",
          "This node's CURVE secret key file NAME.key (NAME.pub beside it)");
ABSL_FLAG(std::string, authorized_keys, "", "Directory of CURVE public keys allowed to connect");
ABSL_FLAG(bool, insecure, false, "Allow plain TCP without CURVE (never in production)");
ABSL_FLAG(bool, check, false, "Check the flags and keys, report them, and exit without serving");

namespace {

constexpr int kExitUsage = 2;

}  // namespace

int main(int argc, char** argv) {
  // Before any thread exists, so that ServeBlobsUntilSignal receives them.
  stagefarm::daemon::BlockStopSignals();
  absl::SetProgramUsageMessage(absl::StrCat(
      "stagefarm-coordinator --listen tcp://0.0.0.0:7700 --data-dir DIR "
      "(--curve-secret-key FILE --authorized-keys DIR | --insecure) [--flagfile FILE]\n\n",
      stagefarm::daemon::kFlagSpellingHelp));
  absl::Status parsed = stagefarm::daemon::ParseDaemonCommandLine(argc, argv);
  if (!parsed.ok()) {
    std::fprintf(stderr, "stagefarm-coordinator: %s\n", std::string(parsed.message()).c_str());
    return kExitUsage;
  }
  std::printf(
      "stagefarm-coordinator: listen=%s data-dir=%s curve-secret-key=%s authorized-keys=%s "
      "insecure=%s\n",
      absl::GetFlag(FLAGS_listen).c_str(), absl::GetFlag(FLAGS_data_dir).c_str(),
      absl::GetFlag(FLAGS_curve_secret_key).c_str(), absl::GetFlag(FLAGS_authorized_keys).c_str(),
      absl::GetFlag(FLAGS_insecure) ? "true" : "false");

  stagefarm::net::NodeSecurityFlags security_flags;
  security_flags.curve_secret_key = absl::GetFlag(FLAGS_curve_secret_key);
  security_flags.authorized_keys = absl::GetFlag(FLAGS_authorized_keys);
  security_flags.insecure = absl::GetFlag(FLAGS_insecure);
  return stagefarm::daemon::RunBlobNode("stagefarm-coordinator", security_flags, {.serves = true},
                                        absl::GetFlag(FLAGS_check), absl::GetFlag(FLAGS_listen),
                                        absl::GetFlag(FLAGS_data_dir));
}
