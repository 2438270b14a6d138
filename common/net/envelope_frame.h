// Sending and receiving stagefarm messages on ZeroMQ sockets.
//
// A message is one multipart ZeroMQ message: on a ROUTER socket the peer's
// routing id, then one Cap'n Proto frame holding a schema::Envelope (a flat
// array, no packing), then zero or more raw data frames for blob bytes. Every
// received message is validated before a caller sees it: frame count and
// sizes, a Cap'n Proto decode under tight ReaderOptions with every pointer
// checked, the protocol version and the message kind. A malformed message
// becomes a status that the caller can send back with SendError; it never
// crashes the node and never leaves half a message in the socket.
#ifndef STAGEFARM_COMMON_NET_ENVELOPE_FRAME_H_
#define STAGEFARM_COMMON_NET_ENVELOPE_FRAME_H_

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/net/socket_security.h"
#include "absl/time/time.h"
#include "schemas/envelope.capnp.h"

namespace stagefarm::net {

// The largest frame a peer may send, set as ZMQ_MAXMSGSIZE on every socket:
// a peer that sends a bigger frame is disconnected by libzmq before the frame
// is allocated in full. 16 MiB holds the largest blob chunk (the chunker caps
// chunks well below this) with room to spare.
inline constexpr int64_t kMaxFrameBytes = int64_t{16} << 20;

// Bounds applied to every received message.
struct FrameLimits {
  // ZMQ_MAXMSGSIZE: per frame, enforced by libzmq.
  int64_t max_frame_bytes = kMaxFrameBytes;
  // The Cap'n Proto envelope frame; blob bytes never travel inside it.
  size_t max_envelope_bytes = size_t{1} << 20;
  // Raw data frames after the envelope.
  size_t max_data_frames = 64;
  // Cap'n Proto nesting depth; our schemas nest a few levels at most. (The
  // traversal limit is derived from max_envelope_bytes.)
  int nesting_limit = 16;
};

// Sets ZMQ_MAXMSGSIZE from `limits` on `socket`; call before bind/connect.
absl::Status ApplyFrameLimits(zmq::socket_t& socket, const FrameLimits& limits = {});

// A ROUTER socket a node serves on: linger 0, ROUTER_MANDATORY (a reply to a
// peer that has gone fails instead of vanishing), a 2 s send timeout (a slow
// peer cannot stall the server), `security` and `limits` applied, bound to
// `endpoint`. `bound` receives the endpoint as bound (the port chosen for
// port 0). Unavailable "cannot serve <what> on ENDPOINT: ..." when it cannot
// bind.
absl::StatusOr<zmq::socket_t> BindRouter(zmq::context_t& context, const SocketSecurity& security,
                                         const std::string& endpoint, const FrameLimits& limits,
                                         absl::string_view what, std::string* bound);

// Where a reply goes and who sent a message, for error messages.
struct ReplyAddress {
  // The ROUTER routing id of the sender; empty on other socket types.
  std::string routing_id;
  // The request id of the message, 0 when it could not be decoded.
  uint64_t request_id = 0;
  // "peer 127.0.0.1 on tcp://127.0.0.1:7700", for messages a user reads.
  std::string peer;
  // The sender's Z85 CURVE public key as accepted by the ZapAuthenticator
  // (ZAP user id); empty on sockets without CURVE.
  std::string public_key;
};

// A received, validated message. Owns the envelope's bytes and data frames.
class ReceivedMessage {
 public:
  ReceivedMessage(ReceivedMessage&&) = default;
  ReceivedMessage& operator=(ReceivedMessage&&) = default;

  const ReplyAddress& from() const { return from_; }
  // Valid while this object lives. Every pointer in it was bounds-checked,
  // every typed field read once, and its kind is one this node knows, so
  // reading it does not throw (Cap'n Proto's traversal limit aside: see
  // FrameLimits::max_envelope_bytes).
  schema::Envelope::Reader envelope() const { return envelope_; }
  // The raw data frames that followed the envelope, in order.
  std::vector<zmq::message_t>& data_frames() { return data_frames_; }
  const std::vector<zmq::message_t>& data_frames() const { return data_frames_; }

 private:
  friend absl::StatusOr<ReceivedMessage> ReceiveMessage(zmq::socket_t&, absl::Duration,
                                                        ReplyAddress*, const FrameLimits&);
  ReceivedMessage() = default;

  ReplyAddress from_;
  kj::Array<capnp::word> words_;
  std::unique_ptr<capnp::FlatArrayMessageReader> reader_;
  schema::Envelope::Reader envelope_;
  std::vector<zmq::message_t> data_frames_;
};

// Waits up to `timeout` (absl::InfiniteDuration() blocks) for one message on
// `socket` and validates it.
// Errors:
//  - DeadlineExceeded: nothing arrived.
//  - InvalidArgument: too many frames, a bad or oversized envelope frame, a
//    Cap'n Proto decode failure (naming the peer and the reason).
//  - FailedPrecondition: the peer speaks another protocol version.
//  - Unimplemented: a message kind this node does not know.
//  - Unavailable: the socket failed (for example its context is closing).
// On every error but DeadlineExceeded and Unavailable the whole multipart
// message has been consumed and, when `from` is not null, *from says whom to
// answer with SendError (request_id is set when the envelope decoded).
absl::StatusOr<ReceivedMessage> ReceiveMessage(zmq::socket_t& socket, absl::Duration timeout,
                                               ReplyAddress* from = nullptr,
                                               const FrameLimits& limits = {});

// Initialises the root of `message` as an Envelope with this node's protocol
// version and `request_id`; the caller then sets the kind.
schema::Envelope::Builder InitEnvelope(capnp::MessageBuilder& message, uint64_t request_id);

// Sends `envelope` (built with InitEnvelope) and `data_frames` as one
// multipart message, prefixed by `routing_id` when it is not empty (ROUTER
// sockets; a ROUTER silently drops messages for an unknown routing id unless
// ZMQ_ROUTER_MANDATORY is set). The data frames are sent without copying. Blocks like zmq_send
// (bounded by the socket's ZMQ_SNDTIMEO); returns Unavailable naming the endpoint when the message
// was not queued.
absl::Status SendMessage(zmq::socket_t& socket, absl::string_view routing_id,
                         capnp::MessageBuilder& envelope,
                         std::vector<zmq::message_t> data_frames = {});

// Fills `message` with an Error envelope carrying `status`'s code and message.
void BuildErrorEnvelope(const absl::Status& status, uint64_t request_id,
                        capnp::MessageBuilder& message);

// Sends an Error envelope for `status` (which must not be OK) to `to`.
absl::Status SendError(zmq::socket_t& socket, const ReplyAddress& to, const absl::Status& status);

// Turns a received Error back into a status, its message prefixed by `peer`.
// An unknown or OK code becomes Unknown: an error reply is never success.
absl::Status StatusFromError(schema::Error::Reader error, absl::string_view peer);

}  // namespace stagefarm::net

#endif  // STAGEFARM_COMMON_NET_ENVELOPE_FRAME_H_
