// How a stagefarm socket authenticates and encrypts: CURVE with keys and an
// allow-list, or plain TCP when the operator explicitly asked for --insecure.
// There is no default-constructed SocketSecurity, so no socket is ever plain
// by accident.
#ifndef STAGEFARM_COMMON_NET_SOCKET_SECURITY_H_
#define STAGEFARM_COMMON_NET_SOCKET_SECURITY_H_

#include <string>
#include <utility>
#include <zmq.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/net/curve_keys.h"

namespace stagefarm::net {

class SocketSecurity {
 public:
  // A CURVE server (the side that binds): encrypts with `own` and accepts
  // only the clients the ZapAuthenticator of the socket's context allows.
  static absl::StatusOr<SocketSecurity> CurveServer(CurveKeyPair own);

  // A CURVE client (the side that connects) that talks only to the server
  // holding the secret key of `server_public_key` (Z85).
  static absl::StatusOr<SocketSecurity> CurveClient(CurveKeyPair own,
                                                    std::string server_public_key);

  // Plain, unauthenticated, unencrypted: only for an explicit --insecure or
  // the embedded local cluster.
  static SocketSecurity Insecure();

  bool insecure() const { return mode_ == Mode::kInsecure; }

  // Configures `socket` before it binds or connects (libzmq copies a
  // listener's options at bind time). A CURVE server fails with
  // FailedPrecondition when no ZapAuthenticator runs in `context`; its socket
  // is set to fail closed (ZMQ_ZAP_ENFORCE_DOMAIN), so that clients get
  // nothing, rather than everything, if the authenticator later stops.
  // `context` must be the socket's.
  absl::Status Apply(zmq::context_t& context, zmq::socket_t& socket) const;

 private:
  enum class Mode { kInsecure, kCurveServer, kCurveClient };
  SocketSecurity(Mode mode, CurveKeyPair own, std::string server_public_key)
      : mode_(mode), own_(std::move(own)), server_public_key_(std::move(server_public_key)) {}

  Mode mode_;
  CurveKeyPair own_;
  std::string server_public_key_;
};

}  // namespace stagefarm::net

#endif  // STAGEFARM_COMMON_NET_SOCKET_SECURITY_H_
