// What both daemons run today: this node's content store served to its peers
// on the --listen endpoint (blob fetches, and context uploads on the
// coordinator), secured as NodeSecurity decided, until SIGINT or SIGTERM.
#ifndef STAGEFARM_COMMON_DAEMON_BLOB_SERVICE_H_
#define STAGEFARM_COMMON_DAEMON_BLOB_SERVICE_H_

#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/status/statusor.h"
#include "common/cas/blob_store.h"
#include "common/net/node_security.h"
#include "zmq.hpp"

namespace stagefarm::daemon {

// Blocks SIGINT and SIGTERM in the calling thread; call first thing in main,
// before any thread starts, so that every thread inherits the mask and
// ServeBlobsUntilSignal receives the signal.
void BlockStopSignals();

// What a daemon runs beside its blob server (the coordinator's control
// socket, a worker's link to its coordinator), started once the store serves:
// given the context (its ZAP authenticator runs when CURVE is on), the
// node's security, its store and the blob server's bound endpoint. The
// returned handle is held until the stop signal, then destroyed first.
using StartServices = std::function<absl::StatusOr<std::shared_ptr<void>>(
    zmq::context_t& context, const net::NodeSecurity& security, cas::BlobStore& store,
    const std::string& blob_endpoint)>;

// Opens `<data_dir>/cas`, serves it on `listen` and prints
// "<program>: serving blobs on ENDPOINT" (the bound endpoint) on stdout, then
// waits for SIGINT or SIGTERM and stops cleanly. Errors name the endpoint or
// the directory.
absl::Status ServeBlobsUntilSignal(absl::string_view program, absl::string_view listen,
                                   const std::filesystem::path& data_dir,
                                   const net::NodeSecurity& security,
                                   const StartServices& services = nullptr);

// The part of a daemon's main after its flags are parsed: decides security
// from `flags` for `role` (exit 2 with "<program>: message" on stderr when
// they are wrong), prints "<program>: security: ...", and unless `check_only`
// serves the store until a stop signal. Returns the process exit code.
int RunBlobNode(absl::string_view program, const net::NodeSecurityFlags& flags,
                const net::NodeRole& role, bool check_only, absl::string_view listen,
                const std::filesystem::path& data_dir, const StartServices& services = nullptr);

}  // namespace stagefarm::daemon

#endif  // STAGEFARM_COMMON_DAEMON_BLOB_SERVICE_H_
