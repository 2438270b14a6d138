#include "common/net/zap_authenticator.h"

#include <capnp/message.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/net/curve_keys.h"
#include "common/net/envelope_frame.h"
#include "common/net/socket_security.h"

namespace stagefarm::net {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr absl::Duration kReplyTimeout = absl::Seconds(2);
// Long enough for a CURVE handshake on loopback to complete many times over.
constexpr absl::Duration kSilenceTimeout = absl::Milliseconds(500);

CurveKeyPair MustGenerate() {
  absl::StatusOr<CurveKeyPair> keys = CurveKeyPair::Generate();
  EXPECT_TRUE(keys.ok()) << keys.status();
  return keys.ok() ? *keys : CurveKeyPair{};
}

// Rejected keys as the authenticator reports them, read from the test thread.
class RejectLog {
 public:
  ZapAuthenticator::RejectCallback Callback() {
    return [this](absl::string_view key, absl::string_view address) {
      absl::MutexLock lock(&mutex_);
      keys_.emplace_back(key);
      addresses_.emplace_back(address);
    };
  }
  std::vector<std::string> keys() {
    absl::MutexLock lock(&mutex_);
    return keys_;
  }
  std::vector<std::string> addresses() {
    absl::MutexLock lock(&mutex_);
    return addresses_;
  }

 private:
  absl::Mutex mutex_;
  std::vector<std::string> keys_ ABSL_GUARDED_BY(mutex_);
  std::vector<std::string> addresses_ ABSL_GUARDED_BY(mutex_);
};

// A ROUTER server bound on an ephemeral loopback port.
struct Server {
  Server(zmq::context_t& context, const SocketSecurity& security)
      : socket(context, zmq::socket_type::router) {
    socket.set(zmq::sockopt::linger, 0);
    status = security.Apply(context, socket);
    if (status.ok()) status = ApplyFrameLimits(socket);
    if (status.ok()) {
      socket.bind("tcp://127.0.0.1:*");
      endpoint = socket.get(zmq::sockopt::last_endpoint);
    }
  }
  zmq::socket_t socket;
  absl::Status status;
  std::string endpoint;
};

zmq::socket_t ConnectClient(zmq::context_t& context, const SocketSecurity& security,
                            const std::string& endpoint) {
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  EXPECT_TRUE(security.Apply(context, socket).ok());
  EXPECT_TRUE(ApplyFrameLimits(socket).ok());
  socket.connect(endpoint);
  return socket;
}

absl::Status SendPing(zmq::socket_t& socket, uint64_t request_id) {
  capnp::MallocMessageBuilder message;
  InitEnvelope(message, request_id).setPing();
  return SendMessage(socket, "", message);
}

// Answers one ping on `server` with a pong; returns what ReceiveMessage said.
// `*sender_key`, when given, receives the sender's authenticated public key.
absl::Status ServeOnePing(zmq::socket_t& server, absl::Duration timeout,
                          std::string* sender_key = nullptr) {
  absl::StatusOr<ReceivedMessage> request = ReceiveMessage(server, timeout);
  if (!request.ok()) return request.status();
  if (sender_key != nullptr) *sender_key = request->from().public_key;
  capnp::MallocMessageBuilder reply;
  InitEnvelope(reply, request->from().request_id).setPong();
  return SendMessage(server, request->from().routing_id, reply);
}

class ZapAuthenticatorTest : public ::testing::Test {
 protected:
  // Connects a client with `security`, sends a ping and expects the server to
  // receive nothing within kSilenceTimeout.
  void ExpectServerHearsNothing(Server& server, const SocketSecurity& security) {
    zmq::socket_t client = ConnectClient(client_context_, security, server.endpoint);
    client.set(zmq::sockopt::sndtimeo, 0);
    (void)SendPing(client, 1);
    EXPECT_EQ(ReceiveMessage(server.socket, kSilenceTimeout).status().code(),
              absl::StatusCode::kDeadlineExceeded);
  }

  zmq::context_t server_context_;
  zmq::context_t client_context_;
  CurveKeyPair server_keys_ = MustGenerate();
};

TEST_F(ZapAuthenticatorTest, AuthorisedClient_GetsReplyOverCurve) {
  CurveKeyPair client_keys = MustGenerate();
  absl::StatusOr<std::unique_ptr<ZapAuthenticator>> auth =
      ZapAuthenticator::Start(server_context_, {client_keys.public_key});
  ASSERT_TRUE(auth.ok()) << auth.status();
  absl::StatusOr<SocketSecurity> server_security = SocketSecurity::CurveServer(server_keys_);
  ASSERT_TRUE(server_security.ok());
  Server server(server_context_, *server_security);
  ASSERT_TRUE(server.status.ok()) << server.status;

  absl::StatusOr<SocketSecurity> client_security =
      SocketSecurity::CurveClient(client_keys, server_keys_.public_key);
  ASSERT_TRUE(client_security.ok());
  zmq::socket_t client = ConnectClient(client_context_, *client_security, server.endpoint);
  ASSERT_TRUE(SendPing(client, 7).ok());
  std::string sender_key;
  ASSERT_TRUE(ServeOnePing(server.socket, kReplyTimeout, &sender_key).ok());
  EXPECT_EQ(sender_key, client_keys.public_key);
  absl::StatusOr<ReceivedMessage> reply = ReceiveMessage(client, kReplyTimeout);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_TRUE(reply->envelope().isPong());
  EXPECT_EQ(reply->envelope().getRequestId(), 7u);
  EXPECT_GE((*auth)->accepted_count(), 1u);
  EXPECT_EQ((*auth)->rejected_count(), 0u);
}

TEST_F(ZapAuthenticatorTest, UnauthorisedClient_GetsNothingAndIsReported) {
  CurveKeyPair allowed = MustGenerate();
  CurveKeyPair intruder = MustGenerate();
  RejectLog log;
  absl::StatusOr<std::unique_ptr<ZapAuthenticator>> auth =
      ZapAuthenticator::Start(server_context_, {allowed.public_key}, log.Callback());
  ASSERT_TRUE(auth.ok()) << auth.status();
  absl::StatusOr<SocketSecurity> server_security = SocketSecurity::CurveServer(server_keys_);
  ASSERT_TRUE(server_security.ok());
  Server server(server_context_, *server_security);
  ASSERT_TRUE(server.status.ok()) << server.status;

  absl::StatusOr<SocketSecurity> client_security =
      SocketSecurity::CurveClient(intruder, server_keys_.public_key);
  ASSERT_TRUE(client_security.ok());
  zmq::socket_t client = ConnectClient(client_context_, *client_security, server.endpoint);
  // The DEALER queues the ping; it is never delivered because the handshake fails.
  client.set(zmq::sockopt::sndtimeo, 0);
  (void)SendPing(client, 1);
  EXPECT_EQ(ReceiveMessage(server.socket, kSilenceTimeout).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(ReceiveMessage(client, absl::Milliseconds(50)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_GE((*auth)->rejected_count(), 1u);
  EXPECT_EQ((*auth)->accepted_count(), 0u);
  ASSERT_FALSE(log.keys().empty());
  EXPECT_EQ(log.keys()[0], intruder.public_key);
  EXPECT_EQ(log.addresses()[0], "127.0.0.1");
}

TEST_F(ZapAuthenticatorTest, ClientWithWrongServerKey_GetsNothing) {
  CurveKeyPair client_keys = MustGenerate();
  CurveKeyPair impostor = MustGenerate();
  absl::StatusOr<std::unique_ptr<ZapAuthenticator>> auth =
      ZapAuthenticator::Start(server_context_, {client_keys.public_key});
  ASSERT_TRUE(auth.ok());
  absl::StatusOr<SocketSecurity> server_security = SocketSecurity::CurveServer(server_keys_);
  ASSERT_TRUE(server_security.ok());
  Server server(server_context_, *server_security);
  ASSERT_TRUE(server.status.ok());
  absl::StatusOr<SocketSecurity> client_security =
      SocketSecurity::CurveClient(client_keys, impostor.public_key);
  ASSERT_TRUE(client_security.ok());
  ExpectServerHearsNothing(server, *client_security);
}

TEST_F(ZapAuthenticatorTest, PlainClient_CannotTalkToCurveServer) {
  absl::StatusOr<std::unique_ptr<ZapAuthenticator>> auth =
      ZapAuthenticator::Start(server_context_, {});
  ASSERT_TRUE(auth.ok());
  absl::StatusOr<SocketSecurity> server_security = SocketSecurity::CurveServer(server_keys_);
  ASSERT_TRUE(server_security.ok());
  Server server(server_context_, *server_security);
  ASSERT_TRUE(server.status.ok());
  ExpectServerHearsNothing(server, SocketSecurity::Insecure());
}

TEST_F(ZapAuthenticatorTest, InsecureOnBothSides_TalksPlainWithoutAuthenticator) {
  Server server(server_context_, SocketSecurity::Insecure());
  ASSERT_TRUE(server.status.ok());
  zmq::socket_t client =
      ConnectClient(client_context_, SocketSecurity::Insecure(), server.endpoint);
  ASSERT_TRUE(SendPing(client, 3).ok());
  std::string sender_key = "unset";
  ASSERT_TRUE(ServeOnePing(server.socket, kReplyTimeout, &sender_key).ok());
  EXPECT_EQ(sender_key, "");
  absl::StatusOr<ReceivedMessage> reply = ReceiveMessage(client, kReplyTimeout);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_TRUE(reply->envelope().isPong());
}

TEST_F(ZapAuthenticatorTest, CurveServerWithoutAuthenticator_IsRefused) {
  absl::StatusOr<SocketSecurity> security = SocketSecurity::CurveServer(server_keys_);
  ASSERT_TRUE(security.ok());
  zmq::socket_t socket(server_context_, zmq::socket_type::router);
  absl::Status status = security->Apply(server_context_, socket);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("ZapAuthenticator"));
}

TEST_F(ZapAuthenticatorTest, CurveClient_RejectsMalformedServerKey) {
  absl::StatusOr<SocketSecurity> security =
      SocketSecurity::CurveClient(MustGenerate(), "too-short");
  EXPECT_EQ(security.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(security.status().message(), HasSubstr("server public key"));
}

TEST_F(ZapAuthenticatorTest, Start_SecondInSameContextIsAlreadyExists) {
  absl::StatusOr<std::unique_ptr<ZapAuthenticator>> first =
      ZapAuthenticator::Start(server_context_, {});
  ASSERT_TRUE(first.ok());
  absl::StatusOr<std::unique_ptr<ZapAuthenticator>> second =
      ZapAuthenticator::Start(server_context_, {});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists);
  // Another context is independent.
  absl::StatusOr<std::unique_ptr<ZapAuthenticator>> other =
      ZapAuthenticator::Start(client_context_, {});
  EXPECT_TRUE(other.ok()) << other.status();
}

TEST_F(ZapAuthenticatorTest, AfterAuthenticatorStops_CurveServerFailsClosed) {
  CurveKeyPair client_keys = MustGenerate();
  absl::StatusOr<std::unique_ptr<ZapAuthenticator>> auth =
      ZapAuthenticator::Start(server_context_, {client_keys.public_key});
  ASSERT_TRUE(auth.ok());
  absl::StatusOr<SocketSecurity> server_security = SocketSecurity::CurveServer(server_keys_);
  ASSERT_TRUE(server_security.ok());
  Server server(server_context_, *server_security);
  ASSERT_TRUE(server.status.ok());
  auth->reset();  // Without ZMQ_ZAP_ENFORCE_DOMAIN libzmq would now accept anyone.

  absl::StatusOr<SocketSecurity> client_security =
      SocketSecurity::CurveClient(client_keys, server_keys_.public_key);
  ASSERT_TRUE(client_security.ok());
  ExpectServerHearsNothing(server, *client_security);
}

TEST_F(ZapAuthenticatorTest, Stop_JoinsPromptlyAndAllowsRestart) {
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<std::unique_ptr<ZapAuthenticator>> auth =
        ZapAuthenticator::Start(server_context_, {});
    ASSERT_TRUE(auth.ok()) << auth.status();
    EXPECT_TRUE(ZapAuthenticator::IsRunningIn(server_context_));
    const auto start = std::chrono::steady_clock::now();
    auth->reset();
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(500));
    EXPECT_FALSE(ZapAuthenticator::IsRunningIn(server_context_));
  }
}

}  // namespace
}  // namespace stagefarm::net
