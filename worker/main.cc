// stagefarm-worker: executes build stages and serves blobs to peers. Stage
// execution arrives with the worker issue; today the daemon accepts its
// documented flags (or a --flagfile), checks its security flags (it refuses
// to start, exit 2, unless they configure CURVE completely or ask for
// --insecure alone), and serves its content store to peers on --listen until
// SIGINT or SIGTERM. --check stops after the checks.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/daemon/blob_service.h"
#include "common/daemon/daemon_args.h"

ABSL_FLAG(std::string, coordinator, "tcp://127.0.0.1:7700", "Coordinator endpoint");
ABSL_FLAG(std::string, listen, "tcp://0.0.0.0:7701", "ZeroMQ endpoint serving blobs to peers");
ABSL_FLAG(std::string, data_dir, "/var/lib/stagefarm/worker",
          "Directory for the store, snapshots, cache mounts and scratch");
ABSL_FLAG(int, slots, 2, "Stages this worker runs at once");
ABSL_FLAG(std::string, platform, "linux/amd64", "Platforms this worker builds for");
ABSL_FLAG(std::string, curve_secret_key, "",
          "This node's CURVE secret key file NAME.key (NAME.pub beside it)");
ABSL_FLAG(std::string, authorized_keys, "",
          "Directory of CURVE public keys allowed to fetch blobs from this worker");
ABSL_FLAG(std::string, coordinator_public_key, "", "File with the coordinator's CURVE public key");
ABSL_FLAG(bool, insecure, false, "Allow plain TCP without CURVE (never in production)");
ABSL_FLAG(bool, check, false, "Check the flags and keys, report them, and exit without serving");

namespace {

constexpr int kExitUsage = 2;

}  // namespace

int main(int argc, char** argv) {
  // Before any thread exists, so that ServeBlobsUntilSignal receives them.
  stagefarm::daemon::BlockStopSignals();
  absl::SetProgramUsageMessage(absl::StrCat(
      "stagefarm-worker --coordinator tcp://HOST:7700 --listen tcp://0.0.0.0:7701 --data-dir DIR "
      "[--slots N] [--platform ...] (--curve-secret-key FILE --authorized-keys DIR "
      "--coordinator-public-key FILE | --insecure) [--flagfile FILE]\n\n",
      stagefarm::daemon::kFlagSpellingHelp));
  absl::Status parsed = stagefarm::daemon::ParseDaemonCommandLine(argc, argv);
  if (!parsed.ok()) {
    std::fprintf(stderr, "stagefarm-worker: %s\n", std::string(parsed.message()).c_str());
    return kExitUsage;
  }
  std::printf(
      "stagefarm-worker: coordinator=%s listen=%s data-dir=%s slots=%d platform=%s "
      "curve-secret-key=%s authorized-keys=%s coordinator-public-key=%s insecure=%s\n",
      absl::GetFlag(FLAGS_coordinator).c_str(), absl::GetFlag(FLAGS_listen).c_str(),
      absl::GetFlag(FLAGS_data_dir).c_str(), absl::GetFlag(FLAGS_slots),
      absl::GetFlag(FLAGS_platform).c_str(), absl::GetFlag(FLAGS_curve_secret_key).c_str(),
      absl::GetFlag(FLAGS_authorized_keys).c_str(),
      absl::GetFlag(FLAGS_coordinator_public_key).c_str(),
      absl::GetFlag(FLAGS_insecure) ? "true" : "false");

  stagefarm::net::NodeSecurityFlags security_flags;
  security_flags.curve_secret_key = absl::GetFlag(FLAGS_curve_secret_key);
  security_flags.authorized_keys = absl::GetFlag(FLAGS_authorized_keys);
  security_flags.coordinator_public_key = absl::GetFlag(FLAGS_coordinator_public_key);
  security_flags.insecure = absl::GetFlag(FLAGS_insecure);
  return stagefarm::daemon::RunBlobNode(
      "stagefarm-worker", security_flags, {.serves = true, .connects_to_coordinator = true},
      absl::GetFlag(FLAGS_check), absl::GetFlag(FLAGS_listen), absl::GetFlag(FLAGS_data_dir));
}
