#include "cli/cluster_command.h"

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "capnp/message.h"
#include "cli/coordinator_client.h"
#include "cli/subcommand.h"
#include "common/net/curve_keys.h"
#include "common/net/envelope_frame.h"
#include "common/net/socket_security.h"
#include "nlohmann/json.hpp"
#include "schemas/cluster.capnp.h"
#include "schemas/envelope.capnp.h"
#include "zmq.hpp"

namespace stagefarm::cli {
namespace {

namespace stdfs = std::filesystem;

// Sends one request to the coordinator and returns its reply (an Error reply
// becomes its status). Unavailable when nothing answers in five seconds.
absl::StatusOr<net::ReceivedMessage> AskCoordinator(
    const ParsedArgs& args, const std::function<void(schema::Envelope::Builder)>& fill) {
  absl::StatusOr<ClientKeys> keys = ClientKeysFromFlags(args);
  if (!keys.ok()) return keys.status();
  absl::StatusOr<std::unique_ptr<CoordinatorClient>> client =
      CoordinatorClient::Connect(args.Get("coordinator", "tcp://127.0.0.1:7700"), *keys);
  if (!client.ok()) return client.status();
  return (*client)->Ask(fill);
}

std::string Megabytes(uint64_t bytes) { return absl::StrFormat("%.1fMB", bytes / 1e6); }

int Status(const std::vector<std::string>& args) {
  ParsedArgs parsed;
  std::vector<FlagSpec> specs = ConnectionFlags();
  specs.push_back({"format", "", true, false, "table (default) or json"});
  if (auto stop = ParseCommand(args, "stagefarm cluster status [flags]", specs, 0, 0,
                               "no arguments", parsed)) {
    return *stop;
  }
  const std::string format = parsed.Get("format", "table");
  if (format != "table" && format != "json") {
    return Fail(absl::StrCat("--format must be table or json, not \"", format, "\""), kExitUsage);
  }
  absl::StatusOr<net::ReceivedMessage> reply =
      AskCoordinator(parsed, [](schema::Envelope::Builder out) { out.setClusterStatus(); });
  if (!reply.ok()) {
    return Fail(reply.status().message(),
                absl::IsInvalidArgument(reply.status()) ? kExitUsage : kExitError);
  }
  if (!reply->envelope().isClusterStatusReply()) {
    return Fail("the coordinator answered clusterStatus with something else");
  }
  auto workers = reply->envelope().getClusterStatusReply().getWorkers();
  if (format == "json") {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (schema::WorkerStatus::Reader w : workers) {
      nlohmann::ordered_json platforms = nlohmann::ordered_json::array();
      for (capnp::Text::Reader p : w.getPlatforms()) platforms.push_back(p.cStr());
      nlohmann::ordered_json labels = nlohmann::ordered_json::array();
      for (capnp::Text::Reader l : w.getLabels()) labels.push_back(l.cStr());
      nlohmann::ordered_json running = nlohmann::ordered_json::array();
      for (capnp::Text::Reader r : w.getRunning()) running.push_back(r.cStr());
      out.push_back({{"worker", w.getWorkerId().cStr()},
                     {"platforms", platforms},
                     {"slots", w.getSlots()},
                     {"slots_in_use", w.getSlotsInUse()},
                     {"blob_endpoint", w.getBlobEndpoint().cStr()},
                     {"store_bytes", w.getStoreBytes()},
                     {"store_cap_bytes", w.getStoreCapBytes()},
                     {"since_heartbeat_ms", w.getSinceHeartbeatMillis()},
                     {"draining", w.getDraining()},
                     {"version", w.getVersion().cStr()},
                     {"labels", labels},
                     {"public_key", w.getPublicKey().cStr()},
                     {"running", running}});
    }
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  std::printf("%-24s %-14s %-7s %-10s %-10s %-8s %s\n", "WORKER", "PLATFORMS", "SLOTS", "STORE",
              "HEARTBEAT", "STATE", "BLOBS");
  for (schema::WorkerStatus::Reader w : workers) {
    std::vector<std::string> platforms;
    for (capnp::Text::Reader p : w.getPlatforms()) platforms.push_back(p.cStr());
    std::printf("%-24s %-14s %-7s %-10s %-10s %-8s %s\n", w.getWorkerId().cStr(),
                absl::StrJoin(platforms, ",").c_str(),
                absl::StrCat(w.getSlotsInUse(), "/", w.getSlots()).c_str(),
                Megabytes(w.getStoreBytes()).c_str(),
                absl::StrFormat("%.1fs ago", w.getSinceHeartbeatMillis() / 1000.0).c_str(),
                w.getDraining() ? "draining" : "ready", w.getBlobEndpoint().cStr());
    for (capnp::Text::Reader running : w.getRunning()) {
      std::printf("  running %s\n", running.cStr());
    }
  }
  return 0;
}

int Drain(const std::vector<std::string>& args) {
  ParsedArgs parsed;
  if (auto stop = ParseCommand(args, "stagefarm cluster drain [flags] WORKER", ConnectionFlags(),
                               1, 1, "one WORKER id", parsed)) {
    return *stop;
  }
  const std::string worker = parsed.positional[0];
  absl::StatusOr<net::ReceivedMessage> reply = AskCoordinator(
      parsed, [&worker](schema::Envelope::Builder out) { out.setDrainWorker(worker); });
  if (!reply.ok()) {
    return Fail(reply.status().message(),
                absl::IsInvalidArgument(reply.status()) ? kExitUsage : kExitError);
  }
  if (!reply->envelope().isDrained()) return Fail("the coordinator answered drain with something else");
  std::printf("worker %s is draining: no new stages; running ones finish\n", worker.c_str());
  return 0;
}

}  // namespace

int ClusterCommand(const std::vector<std::string>& args) {
  constexpr char kUsage[] =
      "usage: stagefarm cluster status|drain ...\n"
      "  status [--format table|json]  the coordinator's workers: platforms, slots, store, "
      "heartbeat\n"
      "  drain WORKER                  no new stages for WORKER; running ones finish\n"
      "Connection flags: --coordinator ENDPOINT, and --key NAME.key --coordinator-public-key "
      "FILE (CURVE) or --insecure.\n";
  if (args.empty()) return Fail(kUsage, kExitUsage);
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "status") return Status(rest);
  if (args[0] == "drain") return Drain(rest);
  if (args[0] == "--help" || args[0] == "-h") {
    std::fputs(kUsage + 7, stdout);
    return 0;
  }
  return Fail(absl::StrCat("unknown cluster command \"", args[0], "\"\n", kUsage), kExitUsage);
}

}  // namespace stagefarm::cli
