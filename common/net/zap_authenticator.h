// The ZAP handler (ZeroMQ RFC 27) that checks CURVE clients against the
// allow-list of authorised public keys.
//
// libzmq asks the handler bound to `inproc://zeromq.zap.01` in a socket's
// context whether to accept each CURVE handshake. By default, with no handler
// bound, libzmq accepts every client; SocketSecurity therefore refuses to make
// a CURVE server socket where no ZapAuthenticator runs and sets it to fail
// closed if the authenticator stops.
#ifndef STAGEFARM_COMMON_NET_ZAP_AUTHENTICATOR_H_
#define STAGEFARM_COMMON_NET_ZAP_AUTHENTICATOR_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stagefarm::net {

// The ZAP domain stagefarm server sockets announce.
inline constexpr absl::string_view kZapDomain = "stagefarm";

class ZapAuthenticator {
 public:
  // Called on the authenticator's thread for each refused handshake with the
  // client's Z85 public key (empty for a non-CURVE mechanism) and its
  // address (for example "127.0.0.1"). Must not block.
  using RejectCallback =
      std::function<void(absl::string_view public_key, absl::string_view peer_address)>;

  // Binds the ZAP endpoint in `context` and starts answering on a new thread:
  // 200 for a CURVE client whose public key is in `authorized_keys` (with the
  // key as ZAP user id, so ReplyAddress::public_key names the sender), 400
  // for anything else. A refused client retries at its reconnect interval,
  // so it is counted and reported once per attempt. `context` must outlive the authenticator. Fails
  // with AlreadyExists when a handler is already bound in `context` (one per context), or Internal
  // when the sockets cannot be made.
  static absl::StatusOr<std::unique_ptr<ZapAuthenticator>> Start(
      zmq::context_t& context, absl::flat_hash_set<std::string> authorized_keys,
      RejectCallback on_reject = nullptr);

  // Stops the thread, joins it and unbinds the ZAP endpoint. CURVE server
  // sockets configured by SocketSecurity then refuse every handshake.
  ~ZapAuthenticator();

  ZapAuthenticator(const ZapAuthenticator&) = delete;
  ZapAuthenticator& operator=(const ZapAuthenticator&) = delete;

  // Whether a ZapAuthenticator is running in `context`.
  static bool IsRunningIn(zmq::context_t& context);

  uint64_t accepted_count() const { return accepted_.load(); }
  uint64_t rejected_count() const { return rejected_.load(); }

 private:
  ZapAuthenticator(zmq::context_t& context, absl::flat_hash_set<std::string> authorized_keys,
                   RejectCallback on_reject);

  void Run();
  // Answers one ZAP request already read from handler_.
  void Answer(std::vector<zmq::message_t>& request);

  zmq::context_t& context_;
  const absl::flat_hash_set<std::string> authorized_keys_;
  const RejectCallback on_reject_;
  zmq::socket_t handler_;        // REP on the ZAP endpoint; used only by thread_.
  zmq::socket_t stop_receiver_;  // PAIR; used only by thread_.
  zmq::socket_t stop_sender_;    // PAIR; used only by the destructor.
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> rejected_{0};
  std::thread thread_;
};

}  // namespace stagefarm::net

#endif  // STAGEFARM_COMMON_NET_ZAP_AUTHENTICATOR_H_
