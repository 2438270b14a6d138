// What both daemons run today: this node's content store served to its peers
// on the --listen endpoint (blob fetches, and context uploads on the
// coordinator), secured as NodeSecurity decided, until SIGINT or SIGTERM.
#ifndef STAGEFARM_COMMON_DAEMON_BLOB_SERVICE_H_
#define STAGEFARM_COMMON_DAEMON_BLOB_SERVICE_H_

#include <filesystem>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/net/node_security.h"

namespace stagefarm::daemon {

// Blocks SIGINT and SIGTERM in the calling thread; call first thing in main,
// before any thread starts, so that every thread inherits the mask and
// ServeBlobsUntilSignal receives the signal.
void BlockStopSignals();

// Opens `<data_dir>/cas`, serves it on `listen` and prints
// "<program>: serving blobs on ENDPOINT" (the bound endpoint) on stdout, then
// waits for SIGINT or SIGTERM and stops cleanly. Errors name the endpoint or
// the directory.
absl::Status ServeBlobsUntilSignal(absl::string_view program, absl::string_view listen,
                                   const std::filesystem::path& data_dir,
                                   const net::NodeSecurity& security);

// The part of a daemon's main after its flags are parsed: decides security
// from `flags` for `role` (exit 2 with "<program>: message" on stderr when
// they are wrong), prints "<program>: security: ...", and unless `check_only`
// serves the store until a stop signal. Returns the process exit code.
int RunBlobNode(absl::string_view program, const net::NodeSecurityFlags& flags,
                const net::NodeRole& role, bool check_only, absl::string_view listen,
                const std::filesystem::path& data_dir);

}  // namespace stagefarm::daemon

#endif  // STAGEFARM_COMMON_DAEMON_BLOB_SERVICE_H_
