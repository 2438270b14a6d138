// stagefarm-worker: executes build stages and serves blobs to peers. Today
// the daemon accepts its documented flags (or a --flagfile), checks its
// security flags (it refuses to start, exit 2, unless they configure CURVE
// completely or ask for --insecure alone), serves its content store to peers
// on --listen, and joins the coordinator (worker_id, platforms, slots, blob
// endpoint), keeping its lease with heartbeats and joining again when the
// coordinator restarts, and runs the stages the coordinator assigns to it
// (worker/stage_runner.h), until SIGINT or SIGTERM: then the running stages
// are cancelled (the coordinator hears "cancelled") and their threads joined.
// With --store-size-cap it keeps the store under that size as far as
// unreferenced blobs allow, collecting only while no stage runs
// (worker/store_collector.h).
// --check stops after the checks.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/daemon/blob_service.h"
#include "common/daemon/daemon_args.h"
#include "common/process/allocator.h"
#include "worker/build/stage_executor.h"
#include "worker/coordinator_link.h"
#include "worker/stage_runner.h"
#include "worker/store_collector.h"

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
ABSL_FLAG(std::string, worker_id, "",
          "This worker's id in the cluster (default: kept in DATA_DIR/worker-id, made once "
          "from the host name)");
ABSL_FLAG(std::vector<std::string>, labels, {}, "Operator labels, key=value,...");
ABSL_FLAG(std::string, advertise, "",
          "The blob endpoint peers are told to use (default: --listen's bound endpoint, "
          "0.0.0.0 replaced by the host name)");
ABSL_FLAG(std::string, store_size_cap, "0",
          "Keep the store under this many bytes (suffix K, M, G or T; 0: no cap) by collecting "
          "blobs no result holds, least recently used first, while no stage runs");
ABSL_FLAG(bool, check, false, "Check the flags and keys, report them, and exit without serving");

namespace {

constexpr int kExitUsage = 2;

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

// The worker's id: --worker-id, else the one kept in DATA_DIR/worker-id, else
// a new one (host name and random hex) written there, so that a restarted
// worker is the same worker to the coordinator.
absl::StatusOr<std::string> WorkerId(const std::filesystem::path& data_dir) {
  if (!absl::GetFlag(FLAGS_worker_id).empty()) return absl::GetFlag(FLAGS_worker_id);
  const std::filesystem::path file = data_dir / "worker-id";
  std::string id;
  if (std::ifstream in(file); in && std::getline(in, id) && !id.empty()) return id;
  std::string host;
  for (char c : HostName()) {
    host += (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-') ? c : '-';
  }
  std::random_device random;
  id = absl::StrCat(host.substr(0, 40), "-", absl::Hex(random() & 0xffffff, absl::kZeroPad6));
  std::error_code error;
  std::filesystem::create_directories(data_dir, error);
  std::ofstream out(file);
  out << id << "\n";
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", file.native()));
  return id;
}

// What the worker runs beside its blob server. Stopping ends the store
// collector, cancels the running stages while the link can still report them,
// then stops the link (no more assignments arrive), then the runner.
struct WorkerNode {
  std::unique_ptr<stagefarm::worker::StageExecutor> executor;
  std::unique_ptr<stagefarm::worker::StageRunner> runner;
  std::unique_ptr<stagefarm::worker::CoordinatorLink> link;
  std::unique_ptr<stagefarm::worker::StoreCollector> collector;

  ~WorkerNode() {
    collector.reset();
    if (runner) runner->Stop();
    link.reset();
    runner.reset();
  }
};

// What peers are told to connect to for this worker's blobs.
std::string AdvertisedEndpoint(const std::string& bound) {
  if (!absl::GetFlag(FLAGS_advertise).empty()) return absl::GetFlag(FLAGS_advertise);
  std::string endpoint = bound;
  for (const char* any : {"//0.0.0.0:", "//*:"}) {
    if (const size_t at = endpoint.find(any); at != std::string::npos) {
      endpoint = absl::StrCat(endpoint.substr(0, at), "//", HostName(), ":",
                              endpoint.substr(at + std::string(any).size()));
    }
  }
  return endpoint;
}

}  // namespace

int main(int argc, char** argv) {
  stagefarm::process::KeepFreedMemoryForReuse();
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
  if (absl::GetFlag(FLAGS_slots) < 1) {
    std::fprintf(stderr, "stagefarm-worker: --slots must be at least 1\n");
    return kExitUsage;
  }
  absl::StatusOr<uint64_t> store_size_cap =
      stagefarm::worker::ParseByteSize(absl::GetFlag(FLAGS_store_size_cap));
  if (!store_size_cap.ok()) {
    std::fprintf(stderr, "stagefarm-worker: --store-size-cap: %s\n",
                 std::string(store_size_cap.status().message()).c_str());
    return kExitUsage;
  }
  std::printf("stagefarm-worker: store-size-cap=%llu\n",
              static_cast<unsigned long long>(*store_size_cap));
  auto join = [size_cap = *store_size_cap](
                  zmq::context_t& context, const stagefarm::net::NodeSecurity& security,
                  stagefarm::cas::BlobStore& store,
                  const std::string& blob_endpoint) -> absl::StatusOr<std::shared_ptr<void>> {
    absl::StatusOr<std::string> id = WorkerId(absl::GetFlag(FLAGS_data_dir));
    if (!id.ok()) return id.status();
    absl::StatusOr<stagefarm::net::SocketSecurity> socket_security =
        security.ForClient(security.coordinator_public_key);
    if (!socket_security.ok()) return socket_security.status();
    stagefarm::worker::CoordinatorLinkOptions options;
    options.coordinator = absl::GetFlag(FLAGS_coordinator);
    options.worker_id = *id;
    options.platforms = absl::StrSplit(absl::GetFlag(FLAGS_platform), ',', absl::SkipEmpty());
    options.slots = static_cast<uint32_t>(absl::GetFlag(FLAGS_slots));
    options.blob_endpoint = AdvertisedEndpoint(blob_endpoint);
    options.store_cap_bytes = size_cap;
    options.version = "0.1";
    options.labels = absl::GetFlag(FLAGS_labels);
    auto log = [](const std::string& line) {
      std::printf("stagefarm-worker: %s\n", line.c_str());
      std::fflush(stdout);
    };
    auto node = std::make_shared<WorkerNode>();
    stagefarm::worker::ExecutorOptions executor_options;
    executor_options.data_dir = absl::GetFlag(FLAGS_data_dir);
    absl::StatusOr<std::unique_ptr<stagefarm::worker::StageExecutor>> executor =
        stagefarm::worker::StageExecutor::Open(&store, executor_options);
    if (!executor.ok()) return executor.status();
    node->executor = *std::move(executor);
    if (const size_t discarded = node->executor->snapshots().discarded_at_open()) {
      log(absl::StrCat(discarded,
                       " snapshots were written before this machine last started and are "
                       "discarded; their layers are unpacked again from the store when needed"));
    }
    stagefarm::worker::StageRunnerOptions runner_options;
    runner_options.worker_id = *id;
    runner_options.peer_security = [security](const std::string& public_key) {
      return security.ForClient(public_key);
    };
    runner_options.log = log;
    // The link exists before any assignment arrives, and outlives the runner's threads.
    WorkerNode* raw = node.get();
    node->runner = std::make_unique<stagefarm::worker::StageRunner>(
        context, *node->executor, runner_options,
        [raw](capnp::MessageBuilder& event) { raw->link->Send(event); });
    // Assignments reach the runner through the collector's exclusive
    // section, so that no collection overlaps a stage's start.
    node->collector = std::make_unique<stagefarm::worker::StoreCollector>(
        store, [raw] { return raw->runner->running() == 0; },
        stagefarm::worker::StoreCollectorOptions{.size_cap = size_cap, .log = log});
    options.store_bytes = [&store] { return store.StoredBytes(); };
    options.slots_in_use = [raw] { return raw->runner->running(); };
    options.holds = [&store, log]() -> std::vector<std::string> {
      absl::StatusOr<std::vector<std::string>> held = stagefarm::worker::HeldBlobs(store);
      if (held.ok()) return *std::move(held);
      log(absl::StrCat("cannot list the blobs held: ", held.status().message()));
      return {};
    };
    options.on_message = [raw, log](const stagefarm::net::ReceivedMessage& message) {
      absl::Status handled;
      raw->collector->Exclusive([&] { handled = raw->runner->Handle(message); });
      if (!handled.ok()) log(std::string(handled.message()));
    };
    options.log = log;
    std::printf("stagefarm-worker: joining %s as %s\n", options.coordinator.c_str(), id->c_str());
    std::fflush(stdout);
    absl::StatusOr<std::unique_ptr<stagefarm::worker::CoordinatorLink>> link =
        stagefarm::worker::CoordinatorLink::Start(context, *socket_security, options);
    if (!link.ok()) return link.status();
    node->link = *std::move(link);
    node->collector->Start();
    return std::shared_ptr<void>(std::move(node));
  };
  return stagefarm::daemon::RunBlobNode(
      "stagefarm-worker", security_flags, {.serves = true, .connects_to_coordinator = true},
      absl::GetFlag(FLAGS_check), absl::GetFlag(FLAGS_listen), absl::GetFlag(FLAGS_data_dir), join);
}
