#include "common/net/socket_security.h"

#include <zmq.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/net/zap_authenticator.h"

namespace stagefarm::net {
namespace {

// ZMQ_ZAP_ENFORCE_DOMAIN, a DRAFT option of libzmq >= 4.2.3 that zmq.h
// declares only under ZMQ_BUILD_DRAFT_API (Debian's libzmq5 accepts it). With
// it, a CURVE handshake fails when no ZAP handler answers; without it libzmq
// accepts every client key whenever no handler is bound.
constexpr int kZmqZapEnforceDomain = 93;

absl::Status ValidateKeyPair(const CurveKeyPair& keys) {
  if (absl::Status s = ValidateCurveKey(keys.public_key, "own public key"); !s.ok()) return s;
  return ValidateCurveKey(keys.secret_key, "own secret key");
}

}  // namespace

absl::StatusOr<SocketSecurity> SocketSecurity::CurveServer(CurveKeyPair own) {
  if (absl::Status s = ValidateKeyPair(own); !s.ok()) return s;
  return SocketSecurity(Mode::kCurveServer, std::move(own), "");
}

absl::StatusOr<SocketSecurity> SocketSecurity::CurveClient(CurveKeyPair own,
                                                           std::string server_public_key) {
  if (absl::Status s = ValidateKeyPair(own); !s.ok()) return s;
  if (absl::Status s = ValidateCurveKey(server_public_key, "server public key"); !s.ok()) {
    return s;
  }
  return SocketSecurity(Mode::kCurveClient, std::move(own), std::move(server_public_key));
}

SocketSecurity SocketSecurity::Insecure() { return SocketSecurity(Mode::kInsecure, {}, ""); }

absl::Status SocketSecurity::Apply(zmq::context_t& context, zmq::socket_t& socket) const {
  try {
    switch (mode_) {
      case Mode::kInsecure:
        return absl::OkStatus();
      case Mode::kCurveServer:
        if (!ZapAuthenticator::IsRunningIn(context)) {
          return absl::FailedPreconditionError(
              "a CURVE server socket needs a ZapAuthenticator running in its context; without "
              "one libzmq would accept every client key");
        }
        socket.set(zmq::sockopt::zap_domain, std::string(kZapDomain));
        if (int enforce = 1;
            zmq_setsockopt(socket.handle(), kZmqZapEnforceDomain, &enforce, sizeof(enforce)) != 0) {
          return absl::FailedPreconditionError(absl::StrCat(
              "this libzmq lacks ZMQ_ZAP_ENFORCE_DOMAIN (", zmq_strerror(zmq_errno()),
              "); without it a CURVE server would accept every client when the ZAP handler "
              "stops, so CURVE is refused"));
        }
        socket.set(zmq::sockopt::curve_server, 1);
        socket.set(zmq::sockopt::curve_secretkey, own_.secret_key);
        return absl::OkStatus();
      case Mode::kCurveClient:
        socket.set(zmq::sockopt::curve_serverkey, server_public_key_);
        socket.set(zmq::sockopt::curve_publickey, own_.public_key);
        socket.set(zmq::sockopt::curve_secretkey, own_.secret_key);
        return absl::OkStatus();
    }
  } catch (const zmq::error_t& e) {
    return absl::InternalError(absl::StrCat("cannot configure CURVE on socket: ", e.what()));
  }
  return absl::InternalError("unknown socket security mode");
}

}  // namespace stagefarm::net
