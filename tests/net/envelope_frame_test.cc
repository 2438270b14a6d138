#include "common/net/envelope_frame.h"

#include <capnp/any.h>
#include <capnp/message.h>
#include <capnp/schema.h>
#include <capnp/serialize.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/net/socket_security.h"
#include "schemas/build.capnp.h"

namespace stagefarm::net {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kReplyTimeout = absl::Seconds(2);
constexpr absl::Duration kSilenceTimeout = absl::Milliseconds(300);

std::string AsString(const zmq::message_t& frame) {
  return std::string(frame.data<char>(), frame.size());
}

std::string EnvelopeBytes(capnp::MessageBuilder& message) {
  kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  return std::string(reinterpret_cast<const char*>(words.asBytes().begin()),
                     words.asBytes().size());
}

std::string PingBytes(uint64_t request_id) {
  capnp::MallocMessageBuilder message;
  InitEnvelope(message, request_id).setPing();
  return EnvelopeBytes(message);
}

// A ROUTER server on an ephemeral loopback port and DEALER clients, plain
// (SocketSecurity::Insecure; CURVE is covered by zap_authenticator_test).
class EnvelopeFrameTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(FrameLimits{}); }

  void StartServer(const FrameLimits& limits) {
    server_ = zmq::socket_t(context_, zmq::socket_type::router);
    server_.set(zmq::sockopt::linger, 0);
    ASSERT_TRUE(SocketSecurity::Insecure().Apply(context_, server_).ok());
    ASSERT_TRUE(ApplyFrameLimits(server_, limits).ok());
    server_.bind("tcp://127.0.0.1:*");
    endpoint_ = server_.get(zmq::sockopt::last_endpoint);
  }

  zmq::socket_t Connect() {
    zmq::socket_t socket(context_, zmq::socket_type::dealer);
    socket.set(zmq::sockopt::linger, 0);
    EXPECT_TRUE(SocketSecurity::Insecure().Apply(context_, socket).ok());
    EXPECT_TRUE(ApplyFrameLimits(socket).ok());
    socket.connect(endpoint_);
    return socket;
  }

  static void SendRaw(zmq::socket_t& socket, const std::vector<std::string>& frames) {
    for (size_t i = 0; i < frames.size(); ++i) {
      socket.send(zmq::buffer(frames[i]),
                  i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }

  // Receives one message on the server expecting `code`, answers it with an
  // error, checks the client gets that error, then checks a valid ping from
  // the same client is still served.
  void ExpectRejectedThenServing(zmq::socket_t& client, absl::StatusCode code,
                                 absl::string_view message_part) {
    ReplyAddress from;
    absl::StatusOr<ReceivedMessage> received =
        ReceiveMessage(server_, kReplyTimeout, &from, limits_);
    ASSERT_EQ(received.status().code(), code) << received.status();
    EXPECT_THAT(std::string(received.status().message()), HasSubstr(message_part));
    EXPECT_THAT(received.status().message(), HasSubstr("peer 127.0.0.1 on " + endpoint_));
    EXPECT_FALSE(from.routing_id.empty());
    ASSERT_TRUE(SendError(server_, from, received.status()).ok());

    absl::StatusOr<ReceivedMessage> reply = ReceiveMessage(client, kReplyTimeout);
    ASSERT_TRUE(reply.ok()) << reply.status();
    ASSERT_TRUE(reply->envelope().isError());
    absl::Status remote = StatusFromError(reply->envelope().getError(), "server");
    EXPECT_EQ(remote.code(), code);
    EXPECT_THAT(std::string(remote.message()), HasSubstr(message_part));

    SendRaw(client, {PingBytes(99)});
    absl::StatusOr<ReceivedMessage> next = ReceiveMessage(server_, kReplyTimeout, nullptr, limits_);
    ASSERT_TRUE(next.ok()) << next.status();
    EXPECT_TRUE(next->envelope().isPing());
    EXPECT_EQ(next->from().request_id, 99u);
  }

  // Sends `message`, whose one text "abcdefg" has its NUL overwritten (the
  // Text pointer's length includes it), and expects it refused.
  void ExpectUnterminatedTextRejected(zmq::socket_t& client, capnp::MessageBuilder& message) {
    std::string bytes = EnvelopeBytes(message);
    const size_t text = bytes.find("abcdefg");
    ASSERT_NE(text, std::string::npos);
    bytes[text + 7] = 'h';
    SendRaw(client, {bytes});
    ExpectRejectedThenServing(client, absl::StatusCode::kInvalidArgument,
                              "malformed Cap'n Proto envelope");
  }

  zmq::context_t context_;
  zmq::socket_t server_;
  std::string endpoint_;
  FrameLimits limits_;
};

TEST_F(EnvelopeFrameTest, RoundTrip_EnvelopeWithDataFramesBothWays) {
  zmq::socket_t client = Connect();
  const std::string big(300 * 1024, 'x');
  std::vector<zmq::message_t> frames;
  frames.emplace_back(big.data(), big.size());
  frames.emplace_back();  // An empty data frame is legitimate (an empty blob).
  frames.emplace_back(std::string_view("tail"));
  capnp::MallocMessageBuilder request;
  InitEnvelope(request, 42).setPing();
  ASSERT_TRUE(SendMessage(client, "", request, std::move(frames)).ok());

  absl::StatusOr<ReceivedMessage> received = ReceiveMessage(server_, kReplyTimeout);
  ASSERT_TRUE(received.ok()) << received.status();
  EXPECT_TRUE(received->envelope().isPing());
  EXPECT_EQ(received->envelope().getVersion(), schema::PROTOCOL_VERSION);
  EXPECT_EQ(received->from().request_id, 42u);
  ASSERT_EQ(received->data_frames().size(), 3u);
  EXPECT_EQ(AsString(received->data_frames()[0]), big);
  EXPECT_EQ(received->data_frames()[1].size(), 0u);
  EXPECT_EQ(AsString(received->data_frames()[2]), "tail");

  capnp::MallocMessageBuilder reply;
  InitEnvelope(reply, received->from().request_id).setPong();
  std::vector<zmq::message_t> reply_frames;
  reply_frames.emplace_back(std::string_view("chunk"));
  ASSERT_TRUE(
      SendMessage(server_, received->from().routing_id, reply, std::move(reply_frames)).ok());
  absl::StatusOr<ReceivedMessage> answer = ReceiveMessage(client, kReplyTimeout);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_TRUE(answer->envelope().isPong());
  EXPECT_EQ(answer->envelope().getRequestId(), 42u);
  EXPECT_TRUE(answer->from().routing_id.empty());
  ASSERT_EQ(answer->data_frames().size(), 1u);
  EXPECT_EQ(AsString(answer->data_frames()[0]), "chunk");
}

TEST_F(EnvelopeFrameTest, RoundTrip_OverInprocPair) {
  zmq::socket_t a(context_, zmq::socket_type::pair);
  zmq::socket_t b(context_, zmq::socket_type::pair);
  a.bind("inproc://envelope_frame_test");
  b.connect("inproc://envelope_frame_test");
  capnp::MallocMessageBuilder message;
  InitEnvelope(message, 5).setPing();
  std::vector<zmq::message_t> frames;
  frames.emplace_back(std::string_view("bytes"));
  ASSERT_TRUE(SendMessage(a, "", message, std::move(frames)).ok());
  absl::StatusOr<ReceivedMessage> received = ReceiveMessage(b, kReplyTimeout);
  ASSERT_TRUE(received.ok()) << received.status();
  EXPECT_TRUE(received->envelope().isPing());
  EXPECT_THAT(received->from().peer, HasSubstr("(local)"));
  ASSERT_EQ(received->data_frames().size(), 1u);
  EXPECT_EQ(AsString(received->data_frames()[0]), "bytes");
}

TEST_F(EnvelopeFrameTest, ErrorEnvelope_CarriesCodeAndMessage) {
  capnp::MallocMessageBuilder message;
  BuildErrorEnvelope(absl::NotFoundError("blob sha256:abc not found"), 17, message);
  auto envelope = message.getRoot<schema::Envelope>().asReader();
  EXPECT_EQ(envelope.getRequestId(), 17u);
  ASSERT_TRUE(envelope.isError());
  absl::Status status = StatusFromError(envelope.getError(), "peer 10.0.0.2");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "peer 10.0.0.2: blob sha256:abc not found");
}

TEST_F(EnvelopeFrameTest, ErrorEnvelope_UnknownOrOkCodeIsNeverSuccess) {
  capnp::MallocMessageBuilder message;
  auto error = InitEnvelope(message, 1).initError();
  for (uint32_t code : {0u, 999u}) {
    error.setCode(code);
    EXPECT_EQ(StatusFromError(error.asReader(), "peer").code(), absl::StatusCode::kUnknown);
  }
}

TEST_F(EnvelopeFrameTest, Receive_NothingWithinTimeoutIsDeadlineExceeded) {
  EXPECT_EQ(ReceiveMessage(server_, absl::Milliseconds(20)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST_F(EnvelopeFrameTest, GarbageBytes_AreRejectedAndServerKeepsServing) {
  zmq::socket_t client = Connect();
  SendRaw(client, {"hello, world"});
  ExpectRejectedThenServing(client, absl::StatusCode::kInvalidArgument,
                            "not a whole number of Cap'n Proto words");
}

TEST_F(EnvelopeFrameTest, WordAlignedGarbage_IsAMalformedEnvelope) {
  zmq::socket_t client = Connect();
  std::string garbage(64, '\xff');
  SendRaw(client, {garbage});
  ExpectRejectedThenServing(client, absl::StatusCode::kInvalidArgument, "malformed Cap'n Proto");
}

TEST_F(EnvelopeFrameTest, RootPointerOutOfBounds_IsAMalformedEnvelope) {
  zmq::socket_t client = Connect();
  // Segment table: one segment of 1 word; the root pointer points far away.
  std::string frame(16, '\0');
  frame[4] = 1;
  const uint64_t pointer = (uint64_t{1000} << 2) | (uint64_t{2} << 32);  // Struct at +1000.
  std::memcpy(frame.data() + 8, &pointer, sizeof(pointer));
  SendRaw(client, {frame});
  ExpectRejectedThenServing(client, absl::StatusCode::kInvalidArgument, "malformed Cap'n Proto");
}

TEST_F(EnvelopeFrameTest, TruncatedEnvelope_IsRejected) {
  zmq::socket_t client = Connect();
  capnp::MallocMessageBuilder message;
  InitEnvelope(message, 3).initError().setMessage(std::string(200, 'm'));
  std::string bytes = EnvelopeBytes(message);
  SendRaw(client, {bytes.substr(0, bytes.size() - 64)});
  ExpectRejectedThenServing(client, absl::StatusCode::kInvalidArgument, "malformed Cap'n Proto");
}

TEST_F(EnvelopeFrameTest, TextWithoutNulTerminator_IsRejectedBeforeUse) {
  zmq::socket_t client = Connect();
  capnp::MallocMessageBuilder message;
  InitEnvelope(message, 3).initError().setMessage("abcdefg");
  ExpectUnterminatedTextRejected(client, message);
}

// The checks reach into lists and structs at any depth: a text in a holder
// of an input of an assignment (union member, struct list, struct, struct
// list, struct, text), and a text element of a text list.
TEST_F(EnvelopeFrameTest, TextWithoutNulTerminatorDeepInsideLists_IsRejectedBeforeUse) {
  for (int where = 0; where < 2; ++where) {
    SCOPED_TRACE(where == 0 ? "holder endpoint" : "export path");
    zmq::socket_t client = Connect();
    capnp::MallocMessageBuilder message;
    schema::StageAssign::Builder assign = InitEnvelope(message, 3).initAssignStage();
    assign.setBuildId("b1");
    auto holders = assign.initInputs(2)[1].initHolders(2);
    holders[0].setEndpoint("tcp://127.0.0.1:1");
    holders[1].setEndpoint(where == 0 ? "abcdefg" : "tcp://127.0.0.1:2");
    auto paths = assign.initExports(1)[0].initPaths(3);
    paths.set(0, "/a");
    paths.set(1, "/b");
    paths.set(2, where == 1 ? "abcdefg" : "/c");
    ExpectUnterminatedTextRejected(client, message);
  }
}

TEST_F(EnvelopeFrameTest, ListOfTheWrongKind_IsRejectedBeforeUse) {
  zmq::socket_t client = Connect();
  // An assignment whose exports list (structs) is a list of bits instead
  // (Cap'n Proto reads other primitive lists as structs, but not bits).
  capnp::MallocMessageBuilder message;
  schema::StageAssign::Builder assign = InitEnvelope(message, 3).initAssignStage();
  const uint32_t exports = capnp::Schema::from<schema::StageAssign>()
                               .getFieldByName("exports")
                               .getProto()
                               .getSlot()
                               .getOffset();
  capnp::toAny(assign).getPointerSection()[exports].initAs<capnp::List<bool>>(24);
  SendRaw(client, {EnvelopeBytes(message)});
  ExpectRejectedThenServing(client, absl::StatusCode::kInvalidArgument,
                            "malformed Cap'n Proto envelope");
}

TEST_F(EnvelopeFrameTest, TrailingBytesAfterEnvelope_AreRejected) {
  zmq::socket_t client = Connect();
  SendRaw(client, {PingBytes(4) + std::string(8, '\0')});
  ExpectRejectedThenServing(client, absl::StatusCode::kInvalidArgument, "8 trailing bytes");
}

TEST_F(EnvelopeFrameTest, EmptyEnvelopeFrame_IsRejected) {
  zmq::socket_t client = Connect();
  SendRaw(client, {""});
  ExpectRejectedThenServing(client, absl::StatusCode::kInvalidArgument, "0 bytes");
}

TEST_F(EnvelopeFrameTest, WrongVersion_IsFailedPreconditionWithRequestIdForTheReply) {
  zmq::socket_t client = Connect();
  capnp::MallocMessageBuilder message;
  InitEnvelope(message, 77).setPing();
  const uint32_t newer = schema::PROTOCOL_VERSION + 1;
  message.getRoot<schema::Envelope>().setVersion(newer);
  SendRaw(client, {EnvelopeBytes(message)});
  ReplyAddress from;
  absl::StatusOr<ReceivedMessage> received = ReceiveMessage(server_, kReplyTimeout, &from);
  EXPECT_EQ(received.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(received.status().message(), HasSubstr(absl::StrCat("protocol version ", newer)));
  EXPECT_EQ(from.request_id, 77u);
  ASSERT_TRUE(SendError(server_, from, received.status()).ok());
  absl::StatusOr<ReceivedMessage> reply = ReceiveMessage(client, kReplyTimeout);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->envelope().getRequestId(), 77u);
  EXPECT_TRUE(reply->envelope().isError());
}

TEST_F(EnvelopeFrameTest, UnknownMessageKind_IsUnimplementedAndRepliedTo) {
  zmq::socket_t client = Connect();
  capnp::MallocMessageBuilder message;
  InitEnvelope(message, 8).setPing();
  // What a newer peer sends: a union discriminant this node has no field for.
  const uint32_t offset =
      capnp::Schema::from<schema::Envelope>().getProto().getStruct().getDiscriminantOffset();
  kj::ArrayPtr<kj::byte> data = message.getRoot<capnp::AnyStruct>().getDataSection();
  const uint16_t unknown_kind = 200;
  std::memcpy(data.begin() + offset * 2, &unknown_kind, sizeof(unknown_kind));
  SendRaw(client, {EnvelopeBytes(message)});
  ExpectRejectedThenServing(client, absl::StatusCode::kUnimplemented, "unknown message kind 200");
}

TEST_F(EnvelopeFrameTest, TooManyFrames_AreRejectedWholeAndNextMessageIsIntact) {
  limits_.max_data_frames = 4;
  zmq::socket_t client = Connect();
  std::vector<std::string> frames = {PingBytes(1)};
  for (int i = 0; i < 10; ++i) frames.push_back("data");
  SendRaw(client, frames);
  ExpectRejectedThenServing(client, absl::StatusCode::kInvalidArgument, "11 frames");
}

TEST_F(EnvelopeFrameTest, EnvelopeOverLimit_IsRejected) {
  limits_.max_envelope_bytes = 256;
  zmq::socket_t client = Connect();
  capnp::MallocMessageBuilder message;
  InitEnvelope(message, 3).initError().setMessage(std::string(1000, 'm'));
  SendRaw(client, {EnvelopeBytes(message)});
  ExpectRejectedThenServing(client, absl::StatusCode::kInvalidArgument, "exceeds the limit of 256");
}

TEST_F(EnvelopeFrameTest, FrameOverMaxMsgSize_DropsThePeerAndOthersAreServed) {
  FrameLimits small;
  small.max_frame_bytes = 64 * 1024;
  StartServer(small);
  zmq::socket_t attacker = Connect();
  SendRaw(attacker, {PingBytes(1), std::string(128 * 1024, 'a')});
  EXPECT_EQ(ReceiveMessage(server_, kSilenceTimeout).status().code(),
            absl::StatusCode::kDeadlineExceeded);

  zmq::socket_t honest = Connect();
  SendRaw(honest, {PingBytes(2), std::string(32 * 1024, 'h')});
  absl::StatusOr<ReceivedMessage> received = ReceiveMessage(server_, kReplyTimeout);
  ASSERT_TRUE(received.ok()) << received.status();
  EXPECT_EQ(received->from().request_id, 2u);
  ASSERT_EQ(received->data_frames().size(), 1u);
  EXPECT_EQ(received->data_frames()[0].size(), 32u * 1024);
}

}  // namespace
}  // namespace stagefarm::net
