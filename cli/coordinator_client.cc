#include "cli/coordinator_client.h"

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "capnp/message.h"
#include "common/transfer/blob_fetcher.h"
#include "common/transfer/blob_uploader.h"
#include "schemas/build.capnp.h"
#include "schemas/cluster.capnp.h"
#include "schemas/envelope.capnp.h"

namespace stagefarm::cli {
namespace {

namespace stdfs = std::filesystem;

// Silence after which the client asks whether the coordinator still answers.
constexpr absl::Duration kQuietBeforePing = absl::Seconds(15);
constexpr absl::Duration kPingTimeout = absl::Seconds(10);

ProgressEvent::Kind KindFrom(schema::BuildEvent::Kind kind) {
  switch (kind) {
    case schema::BuildEvent::Kind::QUEUED:
      return ProgressEvent::Kind::kQueued;
    case schema::BuildEvent::Kind::STARTED:
      return ProgressEvent::Kind::kStarted;
    case schema::BuildEvent::Kind::STEP:
      return ProgressEvent::Kind::kStep;
    case schema::BuildEvent::Kind::LOG:
      return ProgressEvent::Kind::kLog;
    case schema::BuildEvent::Kind::NOTE:
      return ProgressEvent::Kind::kNote;
    case schema::BuildEvent::Kind::CACHED:
      return ProgressEvent::Kind::kCached;
    case schema::BuildEvent::Kind::STAGE_DONE:
      return ProgressEvent::Kind::kStageDone;
    case schema::BuildEvent::Kind::STAGE_FAILED:
      return ProgressEvent::Kind::kStageFailed;
    case schema::BuildEvent::Kind::RETRIED:
      return ProgressEvent::Kind::kRetried;
    case schema::BuildEvent::Kind::DONE:
      return ProgressEvent::Kind::kBuildDone;
    case schema::BuildEvent::Kind::FAILED:
      return ProgressEvent::Kind::kBuildFailed;
  }
  return ProgressEvent::Kind::kNote;
}

}  // namespace

std::vector<FlagSpec> ConnectionFlags() {
  return {
      {"coordinator", "", true, false, "the coordinator's control endpoint, e.g. tcp://HOST:7700"},
      {"key", "", true, false, "this client's CURVE secret key file NAME.key (NAME.pub beside it)"},
      {"coordinator-public-key", "", true, false, "the coordinator's CURVE public key file"},
      {"insecure", "", false, false, "plain TCP without CURVE (a coordinator started --insecure)"},
  };
}

absl::StatusOr<net::SocketSecurity> ClientKeys::ForCoordinator() const {
  if (insecure) return net::SocketSecurity::Insecure();
  return net::SocketSecurity::CurveClient(own, coordinator_public_key);
}

absl::StatusOr<net::SocketSecurity> ClientKeys::ForPeer(const std::string& public_key) const {
  if (insecure) return net::SocketSecurity::Insecure();
  return net::SocketSecurity::CurveClient(own, public_key);
}

absl::StatusOr<ClientKeys> ClientKeysFromFlags(const ParsedArgs& args) {
  ClientKeys keys;
  const bool curve = args.Has("key") || args.Has("coordinator-public-key");
  if (args.Has("insecure")) {
    if (curve) return absl::InvalidArgumentError("--insecure conflicts with the key flags");
    keys.insecure = true;
    return keys;
  }
  if (!args.Has("key") || !args.Has("coordinator-public-key")) {
    return absl::InvalidArgumentError(
        "give --key NAME.key and --coordinator-public-key FILE for CURVE, or --insecure for a "
        "coordinator started with --insecure");
  }
  const stdfs::path key = args.Get("key");
  absl::StatusOr<net::CurveKeyPair> own = net::ReadCurveKeyPair(
      key.parent_path().empty() ? "." : key.parent_path(), key.stem().native());
  if (!own.ok()) return own.status();
  keys.own = *std::move(own);
  absl::StatusOr<std::string> server = net::ReadCurvePublicKey(args.Get("coordinator-public-key"));
  if (!server.ok()) return server.status();
  keys.coordinator_public_key = *std::move(server);
  return keys;
}

absl::StatusOr<std::unique_ptr<CoordinatorClient>> CoordinatorClient::Connect(std::string endpoint,
                                                                              ClientKeys keys) {
  std::unique_ptr<CoordinatorClient> client(
      new CoordinatorClient(std::move(endpoint), std::move(keys)));
  absl::StatusOr<net::SocketSecurity> security = client->keys_.ForCoordinator();
  if (!security.ok()) return security.status();
  try {
    zmq::socket_t socket(client->context_, zmq::socket_type::dealer);
    socket.set(zmq::sockopt::linger, 0);
    if (absl::Status applied = security->Apply(client->context_, socket); !applied.ok()) {
      return applied;
    }
    net::FrameLimits limits;
    limits.max_envelope_bytes = size_t{16} << 20;
    if (absl::Status limited = net::ApplyFrameLimits(socket, limits); !limited.ok()) return limited;
    socket.connect(client->endpoint_);
    client->socket_ = std::move(socket);
  } catch (const zmq::error_t& e) {
    return absl::UnavailableError(absl::StrCat("coordinator ", client->endpoint_, ": ", e.what()));
  }
  return client;
}

absl::StatusOr<net::ReceivedMessage> CoordinatorClient::Ask(
    const std::function<void(schema::Envelope::Builder)>& fill, absl::Duration timeout) {
  const uint64_t id = next_request_++;
  capnp::MallocMessageBuilder request;
  fill(net::InitEnvelope(request, id));
  if (absl::Status sent = net::SendMessage(*socket_, "", request); !sent.ok()) return sent;
  const absl::Time deadline = absl::Now() + timeout;
  net::FrameLimits limits;
  limits.max_envelope_bytes = size_t{16} << 20;
  for (;;) {
    const absl::Duration left = deadline - absl::Now();
    absl::StatusOr<net::ReceivedMessage> reply =
        left > absl::ZeroDuration() ? net::ReceiveMessage(*socket_, left, nullptr, limits)
                                    : absl::DeadlineExceededError("");
    if (absl::IsDeadlineExceeded(reply.status())) {
      return absl::UnavailableError(absl::StrCat(
          "no answer from the coordinator at ", endpoint_, " within ",
          absl::FormatDuration(timeout), " (is it running, and does it know this client's key?)"));
    }
    if (!reply.ok()) return reply.status();
    if (reply->envelope().getRequestId() != id) continue;  // late, for an earlier request
    if (reply->envelope().isError()) {
      return net::StatusFromError(reply->envelope().getError(), endpoint_);
    }
    return reply;
  }
}

absl::StatusOr<CoordinatorClient::BuildResult> CoordinatorClient::RunBuild(
    const build::BuildDefinition& definition, const stdfs::path& context_dir, cas::BlobStore& local,
    const std::function<void(const ProgressEvent&)>& on_event,
    const std::atomic<bool>* interrupted) {
  BuildResult result;
  // Where the coordinator keeps contexts and images.
  absl::StatusOr<net::ReceivedMessage> status =
      Ask([](schema::Envelope::Builder out) { out.setClusterStatus(); });
  if (!status.ok()) return status.status();
  if (!status->envelope().isClusterStatusReply()) {
    return absl::InternalError(
        absl::StrCat(endpoint_, " answered clusterStatus with something else"));
  }
  const auto cluster = status->envelope().getClusterStatusReply();
  if (cluster.getBlobEndpoint().size() == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the coordinator at ", endpoint_, " serves no blob endpoint"));
  }
  absl::StatusOr<net::SocketSecurity> blob_security = keys_.ForPeer(cluster.getPublicKey().cStr());
  if (!blob_security.ok()) return blob_security.status();
  const transfer::Peer coordinator_blobs{cluster.getBlobEndpoint().cStr(), *blob_security};

  // The context's files, and the named local contexts' from their own
  // directories.
  std::vector<transfer::UploadItem> files;
  auto add_files = [&files](const fs::ContextIndex& index, const stdfs::path& dir) {
    for (const fs::ContextEntry& entry : index.entries()) {
      if (entry.type != fs::EntryType::kFile || !entry.content) continue;
      files.push_back({dir / entry.path, *entry.content, ""});
    }
  };
  add_files(definition.context, context_dir);
  for (const build::NamedContext& named : definition.named_contexts) {
    add_files(named.context, named.dir);
  }
  if (!files.empty()) {
    absl::StatusOr<transfer::UploadReport> uploaded =
        transfer::UploadFiles(context_, coordinator_blobs, files);
    if (!uploaded.ok()) return uploaded.status();
    result.bytes_uploaded += uploaded->bytes_sent;
  }
  std::vector<digest::Digest> layers;
  for (const build::NamedImage& image : definition.images) {
    for (const oci::Descriptor& layer : image.image.layers) layers.push_back(layer.digest);
  }
  if (!layers.empty()) {
    absl::StatusOr<transfer::UploadReport> uploaded =
        transfer::UploadBlobs(context_, coordinator_blobs, local, layers);
    if (!uploaded.ok()) return uploaded.status();
    result.bytes_uploaded += uploaded->bytes_sent;
  }

  // Submit, then follow the build's events to its end.
  const uint64_t id = next_request_++;
  {
    capnp::MallocMessageBuilder request;
    schema::BuildRequest::Builder submit = net::InitEnvelope(request, id).initSubmitBuild();
    build::ToSchema(definition, submit.initDefinition());
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    submit.setClient(absl::StrCat(host, ":", context_dir.native()));
    if (absl::Status sent = net::SendMessage(*socket_, "", request); !sent.ok()) return sent;
  }
  net::FrameLimits limits;
  limits.max_envelope_bytes = size_t{16} << 20;
  absl::Time last_heard = absl::Now();
  uint64_t ping = 0;  // the request id of an unanswered ping, 0 when none
  absl::Time ping_sent;
  std::optional<oci::BuiltImage> image;
  std::vector<transfer::Peer> holders;
  bool cancel_sent = false;
  while (!image) {
    absl::StatusOr<net::ReceivedMessage> message =
        net::ReceiveMessage(*socket_, absl::Milliseconds(100), nullptr, limits);
    const absl::Time now = absl::Now();
    if (interrupted != nullptr && interrupted->load() && !cancel_sent && !result.build_id.empty()) {
      cancel_sent = true;
      capnp::MallocMessageBuilder request;
      net::InitEnvelope(request, next_request_++).setCancelBuild(result.build_id);
      net::SendMessage(*socket_, "", request).IgnoreError();
    }
    if (absl::IsDeadlineExceeded(message.status())) {
      if (ping != 0 && now - ping_sent > kPingTimeout) {
        return absl::UnavailableError(
            absl::StrCat("the coordinator at ", endpoint_, " stopped answering during build ",
                         result.build_id.empty() ? "(not yet accepted)" : result.build_id));
      }
      if (ping == 0 && now - last_heard > kQuietBeforePing) {
        ping = next_request_++;
        ping_sent = now;
        capnp::MallocMessageBuilder request;
        net::InitEnvelope(request, ping).setPing();
        net::SendMessage(*socket_, "", request).IgnoreError();
      }
      continue;
    }
    if (!message.ok()) {
      if (interrupted != nullptr && interrupted->load()) continue;  // EINTR from Ctrl-C
      return message.status();
    }
    last_heard = now;
    const schema::Envelope::Reader envelope = message->envelope();
    if (ping != 0 && envelope.getRequestId() == ping) {
      ping = 0;
      continue;
    }
    if (envelope.getRequestId() != id) continue;
    if (envelope.isError()) return net::StatusFromError(envelope.getError(), endpoint_);
    if (envelope.isBuildAccepted()) {
      result.build_id = envelope.getBuildAccepted().getBuildId().cStr();
      continue;
    }
    if (!envelope.isBuildEvent()) continue;
    const schema::BuildEvent::Reader event = envelope.getBuildEvent();
    ProgressEvent progress;
    progress.time = absl::FromUnixMicros(event.getTime());
    progress.build = event.getBuildId().cStr();
    progress.stage = event.getStage();
    progress.stage_name = event.getStageName().cStr();
    progress.worker = event.getWorkerId().cStr();
    progress.kind = KindFrom(event.getKind());
    progress.step = event.getStep();
    progress.steps = event.getSteps();
    progress.text = std::string(event.getText().cStr(), event.getText().size());
    progress.seconds = event.getSeconds();
    progress.bytes_fetched = event.getBytesFetched();
    if (on_event && event.getKind() == schema::BuildEvent::Kind::QUEUED && progress.stage < 0) {
      // One event for every stage waiting to run.
      const auto stages = event.getQueuedStages();
      const auto names = event.getQueuedNames();
      for (size_t i = 0; i < stages.size(); ++i) {
        progress.stage = static_cast<int>(stages[i]);
        progress.stage_name = i < names.size() ? names[i].cStr() : "";
        on_event(progress);
      }
    } else if (on_event) {
      on_event(progress);
    }
    if (event.getKind() == schema::BuildEvent::Kind::FAILED) {
      if (cancel_sent)
        return absl::CancelledError(absl::StrCat("build ", result.build_id, " cancelled"));
      return absl::AbortedError(progress.text);
    }
    if (event.getKind() == schema::BuildEvent::Kind::DONE) {
      absl::StatusOr<oci::BuiltImage> built = build::FromSchema(event.getResult());
      if (!built.ok()) return built.status();
      image = *std::move(built);
      for (schema::Holder::Reader holder : event.getHolders()) {
        absl::StatusOr<net::SocketSecurity> security = keys_.ForPeer(holder.getPublicKey().cStr());
        if (!security.ok()) return security.status();
        holders.push_back({holder.getEndpoint().cStr(), *std::move(security)});
      }
    }
  }
  // The image's layers, into the local store.
  std::vector<digest::Digest> wanted;
  for (const oci::Descriptor& layer : image->layers) wanted.push_back(layer.digest);
  if (!wanted.empty()) {
    absl::StatusOr<std::vector<digest::Digest>> missing = local.FindMissing(wanted);
    if (!missing.ok()) return missing.status();
    if (!missing->empty()) {
      if (holders.empty()) {
        return absl::UnavailableError(
            absl::StrCat("build ", result.build_id, ": no live worker holds the image's layers"));
      }
      absl::StatusOr<transfer::FetchReport> fetched =
          transfer::FetchBlobs(context_, local, *missing, holders);
      if (!fetched.ok()) return fetched.status();
    }
  }
  result.image = *std::move(image);
  return result;
}

}  // namespace stagefarm::cli
