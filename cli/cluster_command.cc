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

std::vector<FlagSpec> ConnectionFlags() {
  return {
      {"coordinator", "", true, false, "the coordinator's control endpoint (default tcp://127.0.0.1:7700)"},
      {"key", "", true, false, "this client's CURVE secret key file NAME.key (NAME.pub beside it)"},
      {"coordinator-public-key", "", true, false, "the coordinator's CURVE public key file"},
      {"insecure", "", false, false, "plain TCP without CURVE (a coordinator started --insecure)"},
  };
}

// CURVE with --key and --coordinator-public-key, or plain with --insecure;
// like the daemons, never plain by default.
absl::StatusOr<net::SocketSecurity> ClientSecurity(const ParsedArgs& args) {
  const bool keys = args.Has("key") || args.Has("coordinator-public-key");
  if (args.Has("insecure")) {
    if (keys) return absl::InvalidArgumentError("--insecure conflicts with the key flags");
    return net::SocketSecurity::Insecure();
  }
  if (!args.Has("key") || !args.Has("coordinator-public-key")) {
    return absl::InvalidArgumentError(
        "give --key NAME.key and --coordinator-public-key FILE for CURVE, or --insecure for a "
        "coordinator started with --insecure");
  }
  const stdfs::path key = args.Get("key");
  absl::StatusOr<net::CurveKeyPair> own =
      net::ReadCurveKeyPair(key.parent_path().empty() ? "." : key.parent_path(), key.stem().native());
  if (!own.ok()) return own.status();
  absl::StatusOr<std::string> server = net::ReadCurvePublicKey(args.Get("coordinator-public-key"));
  if (!server.ok()) return server.status();
  return net::SocketSecurity::CurveClient(*own, *server);
}

// Sends one request to the coordinator and returns its reply (an Error reply
// becomes its status). Unavailable when nothing answers in five seconds.
absl::StatusOr<net::ReceivedMessage> AskCoordinator(
    const ParsedArgs& args, const std::function<void(schema::Envelope::Builder)>& fill) {
  absl::StatusOr<net::SocketSecurity> security = ClientSecurity(args);
  if (!security.ok()) return security.status();
  const std::string endpoint = args.Get("coordinator", "tcp://127.0.0.1:7700");
  static zmq::context_t context;
  try {
    zmq::socket_t socket(context, zmq::socket_type::dealer);
    socket.set(zmq::sockopt::linger, 0);
    if (absl::Status applied = security->Apply(context, socket); !applied.ok()) return applied;
    if (absl::Status limited = net::ApplyFrameLimits(socket); !limited.ok()) return limited;
    socket.connect(endpoint);
    capnp::MallocMessageBuilder request;
    fill(net::InitEnvelope(request, 1));
    if (absl::Status sent = net::SendMessage(socket, "", request); !sent.ok()) return sent;
    absl::StatusOr<net::ReceivedMessage> reply = net::ReceiveMessage(socket, absl::Seconds(5));
    if (absl::IsDeadlineExceeded(reply.status())) {
      return absl::UnavailableError(absl::StrCat(
          "no answer from the coordinator at ", endpoint,
          " within 5s (is it running, and does it know this client's key?)"));
    }
    if (!reply.ok()) return reply.status();
    if (reply->envelope().isError()) {
      return net::StatusFromError(reply->envelope().getError(), endpoint);
    }
    return reply;
  } catch (const zmq::error_t& e) {
    return absl::UnavailableError(absl::StrCat("coordinator ", endpoint, ": ", e.what()));
  }
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
                     {"public_key", w.getPublicKey().cStr()}});
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
