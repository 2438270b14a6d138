// Talking to a coordinator from the command line: the connection flags every
// client command shares, CURVE (or an explicit --insecure), one-shot
// requests, and a whole remote build — upload what the coordinator lacks,
// submit, follow the events, fetch the image's layers.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cli/command_line.h"
#include "cli/progress.h"
#include "common/build/build_definition.h"
#include "common/cas/blob_store.h"
#include "common/net/curve_keys.h"
#include "common/net/envelope_frame.h"
#include "common/net/socket_security.h"
#include "common/transfer/wire.h"
#include "zmq.hpp"

namespace stagefarm::cli {

// --coordinator, --key, --coordinator-public-key, --insecure.
std::vector<FlagSpec> ConnectionFlags();

// How this client secures its sockets: CURVE with its own keys (for the
// coordinator and for the workers it fetches from), or plain.
struct ClientKeys {
  bool insecure = false;
  net::CurveKeyPair own;
  std::string coordinator_public_key;

  absl::StatusOr<net::SocketSecurity> ForCoordinator() const;
  // For a peer's blob server with `public_key` (Z85; ignored when insecure).
  absl::StatusOr<net::SocketSecurity> ForPeer(const std::string& public_key) const;
};

// CURVE with --key and --coordinator-public-key, or plain with --insecure;
// like the daemons, never plain by default. InvalidArgument otherwise.
absl::StatusOr<ClientKeys> ClientKeysFromFlags(const ParsedArgs& args);

// One DEALER connection to a coordinator's control socket.
class CoordinatorClient {
 public:
  static absl::StatusOr<std::unique_ptr<CoordinatorClient>> Connect(std::string endpoint,
                                                                    ClientKeys keys);

  // Sends one request and returns its reply; an Error reply becomes its
  // status. Unavailable when nothing answers within `timeout`.
  absl::StatusOr<net::ReceivedMessage> Ask(
      const std::function<void(schema::Envelope::Builder)>& fill,
      absl::Duration timeout = absl::Seconds(5));

  const std::string& endpoint() const { return endpoint_; }
  const ClientKeys& keys() const { return keys_; }
  zmq::context_t& context() { return context_; }

  // What a remote build gives back: the target's image and who holds its
  // layers (already fetched into the local store by RunBuild).
  struct BuildResult {
    std::string build_id;
    oci::BuiltImage image;
    uint64_t bytes_uploaded = 0;
  };
  // Uploads the definition's context files (read from `context_dir`; a named
  // context's from its NamedContext::dir) and
  // its images' layers (from `local`) that the coordinator lacks, submits
  // the build, passes every event to `on_event`, and at the end fetches the
  // image's layers into `local`. The build's failure is its status, with the
  // reason the worker gave (FILE:LINE, exit code, output tail).
  // Once `interrupted` is set (Ctrl-C), the build is cancelled on the
  // cluster and RunBuild returns Cancelled when the coordinator confirms.
  absl::StatusOr<BuildResult> RunBuild(const build::BuildDefinition& definition,
                                       const std::filesystem::path& context_dir,
                                       cas::BlobStore& local,
                                       const std::function<void(const ProgressEvent&)>& on_event,
                                       const std::atomic<bool>* interrupted = nullptr);

 private:
  CoordinatorClient(std::string endpoint, ClientKeys keys)
      : endpoint_(std::move(endpoint)), keys_(std::move(keys)) {}

  std::string endpoint_;
  ClientKeys keys_;
  zmq::context_t context_;
  std::optional<zmq::socket_t> socket_;
  uint64_t next_request_ = 1;
};

}  // namespace stagefarm::cli
