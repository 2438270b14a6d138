// stagefarm-coordinator: the cluster's coordinator. Today it accepts its
// documented flags (or a --flagfile), checks its security flags (it refuses to
// start, exit 2, unless they configure CURVE completely or ask for --insecure
// alone), and until SIGINT or SIGTERM serves its control socket on --listen
// (workers join and keep their lease, operators ask for the cluster's status
// and drain workers: schemas/cluster.capnp; clients submit builds, whose
// stages it schedules on the workers: schemas/build.capnp) and its content
// store on --blob-listen, where clients upload build contexts and images and
// whose cache index keeps stage results. --check stops after the checks.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/daemon/blob_service.h"
#include "common/daemon/daemon_args.h"
#include "common/process/allocator.h"
#include "coordinator/cluster_service.h"

ABSL_FLAG(std::string, listen, "tcp://0.0.0.0:7700",
          "ZeroMQ endpoint of the control socket, for workers and clients");
ABSL_FLAG(std::string, blob_listen, "tcp://0.0.0.0:7702",
          "ZeroMQ endpoint serving the coordinator's store (context uploads, blob fetches)");
ABSL_FLAG(absl::Duration, lease_timeout, absl::Seconds(10),
          "A worker not heard from for this long is dropped");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(2),
          "How often workers are told to send a heartbeat");
ABSL_FLAG(std::string, data_dir, "/var/lib/stagefarm/coordinator",
          "Directory for the coordinator's store (cache index, refs)");
ABSL_FLAG(std::string, curve_secret_key, "",
          "This node's CURVE secret key file NAME.key (NAME.pub beside it)");
ABSL_FLAG(std::string, authorized_keys, "", "Directory of CURVE public keys allowed to connect");
ABSL_FLAG(bool, insecure, false, "Allow plain TCP without CURVE (never in production)");
ABSL_FLAG(std::string, advertise_blobs, "",
          "The blob endpoint clients and workers are told to use (default: --blob-listen's "
          "bound endpoint, 0.0.0.0 replaced by the host name)");
ABSL_FLAG(int, max_attempts, 4,
          "Runs of one stage (lost workers or inputs) before its build fails");
ABSL_FLAG(absl::Duration, no_worker_grace, absl::Seconds(30),
          "A build whose stages no live worker can run fails after this");
ABSL_FLAG(bool, check, false, "Check the flags and keys, report them, and exit without serving");

namespace {

constexpr int kExitUsage = 2;

}  // namespace

int main(int argc, char** argv) {
  stagefarm::process::KeepFreedMemoryForReuse();
  // Before any thread exists, so that ServeBlobsUntilSignal receives them.
  stagefarm::daemon::BlockStopSignals();
  absl::SetProgramUsageMessage(absl::StrCat(
      "stagefarm-coordinator --listen tcp://0.0.0.0:7700 [--blob-listen tcp://0.0.0.0:7702] "
      "--data-dir DIR "
      "(--curve-secret-key FILE --authorized-keys DIR | --insecure) [--flagfile FILE]\n\n",
      stagefarm::daemon::kFlagSpellingHelp));
  absl::Status parsed = stagefarm::daemon::ParseDaemonCommandLine(argc, argv);
  if (!parsed.ok()) {
    std::fprintf(stderr, "stagefarm-coordinator: %s\n", std::string(parsed.message()).c_str());
    return kExitUsage;
  }
  std::printf(
      "stagefarm-coordinator: listen=%s blob-listen=%s data-dir=%s curve-secret-key=%s "
      "authorized-keys=%s insecure=%s lease-timeout=%s heartbeat-interval=%s\n",
      absl::GetFlag(FLAGS_listen).c_str(), absl::GetFlag(FLAGS_blob_listen).c_str(),
      absl::GetFlag(FLAGS_data_dir).c_str(), absl::GetFlag(FLAGS_curve_secret_key).c_str(),
      absl::GetFlag(FLAGS_authorized_keys).c_str(),
      absl::GetFlag(FLAGS_insecure) ? "true" : "false",
      absl::FormatDuration(absl::GetFlag(FLAGS_lease_timeout)).c_str(),
      absl::FormatDuration(absl::GetFlag(FLAGS_heartbeat_interval)).c_str());

  stagefarm::net::NodeSecurityFlags security_flags;
  security_flags.curve_secret_key = absl::GetFlag(FLAGS_curve_secret_key);
  security_flags.authorized_keys = absl::GetFlag(FLAGS_authorized_keys);
  security_flags.insecure = absl::GetFlag(FLAGS_insecure);
  if (absl::GetFlag(FLAGS_lease_timeout) <= absl::GetFlag(FLAGS_heartbeat_interval)) {
    std::fprintf(stderr,
                 "stagefarm-coordinator: --lease-timeout must be longer than "
                 "--heartbeat-interval\n");
    return kExitUsage;
  }
  auto control = [](zmq::context_t& context, const stagefarm::net::NodeSecurity& security,
                    stagefarm::cas::BlobStore& store,
                    const std::string& blob_endpoint) -> absl::StatusOr<std::shared_ptr<void>> {
    absl::StatusOr<stagefarm::net::SocketSecurity> socket_security = security.ForServer();
    if (!socket_security.ok()) return socket_security.status();
    stagefarm::coordinator::ClusterServiceOptions options;
    options.endpoint = absl::GetFlag(FLAGS_listen);
    options.lease = absl::GetFlag(FLAGS_lease_timeout);
    options.heartbeat = absl::GetFlag(FLAGS_heartbeat_interval);
    options.store = &store;
    options.blobs.endpoint =
        stagefarm::daemon::AdvertisedEndpoint(blob_endpoint, absl::GetFlag(FLAGS_advertise_blobs));
    options.blobs.public_key = security.own.public_key;
    options.peer_security = [&security](const std::string& public_key) {
      return security.ForClient(public_key);
    };
    options.max_attempts = absl::GetFlag(FLAGS_max_attempts);
    options.no_worker_grace = absl::GetFlag(FLAGS_no_worker_grace);
    options.log = [](const std::string& line) {
      std::printf("stagefarm-coordinator: %s\n", line.c_str());
      std::fflush(stdout);
    };
    absl::StatusOr<std::unique_ptr<stagefarm::coordinator::ClusterService>> service =
        stagefarm::coordinator::ClusterService::Start(context, *socket_security, options);
    if (!service.ok()) return service.status();
    std::printf("stagefarm-coordinator: cluster control on %s\n", (*service)->endpoint().c_str());
    std::fflush(stdout);
    return std::shared_ptr<void>(std::move(*service));
  };
  return stagefarm::daemon::RunBlobNode(
      "stagefarm-coordinator", security_flags, {.serves = true}, absl::GetFlag(FLAGS_check),
      absl::GetFlag(FLAGS_blob_listen), absl::GetFlag(FLAGS_data_dir), control);
}
