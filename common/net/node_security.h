// How a daemon secures its sockets, decided once at start-up from its flags.
//
// CURVE is on whenever keys are configured, and plain TCP needs an explicit
// --insecure: a daemon given neither, or given both, refuses to start rather
// than guess. Every key file is read and checked here, so that a bad key or
// an unreadable allow-list stops the daemon before it binds anything.
#ifndef STAGEFARM_COMMON_NET_NODE_SECURITY_H_
#define STAGEFARM_COMMON_NET_NODE_SECURITY_H_

#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "common/net/curve_keys.h"
#include "common/net/socket_security.h"

namespace stagefarm::net {

// The security flags as the operator gave them (empty: not given).
struct NodeSecurityFlags {
  // --curve-secret-key FILE: a NAME.key file; its public key is read from
  // NAME.pub beside it (the layout WriteCurveKeyPair makes).
  std::string curve_secret_key;
  // --authorized-keys DIR: the `*.pub` files of the clients allowed to connect.
  std::string authorized_keys;
  // --coordinator-public-key FILE: the coordinator's Z85 public key (a .pub file).
  std::string coordinator_public_key;
  // --insecure: plain, unauthenticated TCP.
  bool insecure = false;
};

// What a daemon does on the network, which decides the flags CURVE needs.
struct NodeRole {
  // Binds a socket others connect to: needs --authorized-keys.
  bool serves = false;
  // Connects to the coordinator: needs --coordinator-public-key.
  bool connects_to_coordinator = false;
};

// The decision: CURVE with loaded, checked keys, or plain TCP because the
// operator asked for it.
struct NodeSecurity {
  bool insecure = false;
  // Empty when insecure.
  CurveKeyPair own;
  // The public keys allowed to connect; empty when insecure or when the role
  // does not serve. A CURVE server hands them to the ZapAuthenticator of its
  // socket's context.
  absl::flat_hash_set<std::string> authorized_keys;
  // Z85; empty when insecure or when the role does not connect to the coordinator.
  std::string coordinator_public_key;

  // One line for a daemon's start-up report: "CURVE (3 authorised keys)" or
  // "INSECURE (plain TCP, --insecure)".
  std::string Summary() const;

  // Security for a socket this node binds: CURVE server with `own`, or
  // insecure. The socket's context needs a ZapAuthenticator started with
  // `authorized_keys` (SocketSecurity::Apply checks).
  absl::StatusOr<SocketSecurity> ForServer() const;

  // Security for a socket this node connects to the server holding the
  // secret key of `server_public_key` (Z85; the coordinator's or a peer's),
  // or insecure. InvalidArgument for a malformed server key under CURVE.
  absl::StatusOr<SocketSecurity> ForClient(std::string server_public_key) const;
};

// Decides and loads the security of a node with `role` from `flags`:
//  - --insecure alone: insecure.
//  - --insecure with any key flag: InvalidArgument ("--insecure conflicts
//    with --curve-secret-key").
//  - no key flag and no --insecure: InvalidArgument telling the operator to
//    configure CURVE or pass --insecure explicitly.
//  - key flags: CURVE; each flag the role needs must be given (InvalidArgument
//    naming the missing one), a flag the role does not use is refused, and
//    every file is read and checked (the error, with the status code of the
//    curve_keys function that failed, names the flag and the file). An
//    allow-list without any `*.pub` file is refused, since it would let
//    nobody in.
absl::StatusOr<NodeSecurity> LoadNodeSecurity(const NodeSecurityFlags& flags, NodeRole role);

}  // namespace stagefarm::net

#endif  // STAGEFARM_COMMON_NET_NODE_SECURITY_H_
