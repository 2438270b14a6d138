// The worker's link seen from a coordinator's ROUTER socket on loopback: the
// hello carries the held blobs, what the coordinator sends unasked reaches
// on_message, and Send delivers from other threads, in order and at once.
#include "worker/coordinator_link.h"

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "capnp/message.h"
#include "common/net/envelope_frame.h"
#include "gtest/gtest.h"
#include "schemas/envelope.capnp.h"

namespace stagefarm::worker {
namespace {

constexpr char kHeld[] = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

class CoordinatorLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<zmq::socket_t> router = net::BindRouter(
        context_, net::SocketSecurity::Insecure(), "tcp://127.0.0.1:0", {}, "test", &endpoint_);
    ASSERT_TRUE(router.ok()) << router.status();
    router_ = *std::move(router);
    CoordinatorLinkOptions options;
    options.coordinator = endpoint_;
    options.worker_id = "w1";
    options.platforms = {"linux/amd64"};
    options.blob_endpoint = "tcp://127.0.0.1:7701";
    options.holds = [] { return std::vector<std::string>{kHeld}; };
    options.on_message = [this](const net::ReceivedMessage& message) {
      if (message.envelope().isCancelStage()) cancelled_.store(message.envelope().getCancelStage());
    };
    absl::StatusOr<std::unique_ptr<CoordinatorLink>> link =
        CoordinatorLink::Start(context_, net::SocketSecurity::Insecure(), options);
    ASSERT_TRUE(link.ok()) << link.status();
    link_ = *std::move(link);
  }

  // The next message on the coordinator's socket, skipping heartbeats.
  net::ReceivedMessage Next() {
    for (;;) {
      net::ReplyAddress from;
      absl::StatusOr<net::ReceivedMessage> message =
          net::ReceiveMessage(router_, absl::Seconds(5), &from);
      EXPECT_TRUE(message.ok()) << message.status();
      if (!message.ok()) std::abort();
      routing_id_ = message->from().routing_id;
      if (!message->envelope().isHeartbeat()) return *std::move(message);
      capnp::MallocMessageBuilder ack;
      net::InitEnvelope(ack, message->envelope().getRequestId()).initHeartbeatAck().setKnown(true);
      EXPECT_TRUE(net::SendMessage(router_, routing_id_, ack).ok());
    }
  }

  // Answers the hello `message` with a welcome.
  void Welcome(const net::ReceivedMessage& message) {
    capnp::MallocMessageBuilder reply;
    auto welcome = net::InitEnvelope(reply, message.envelope().getRequestId()).initWelcome();
    welcome.setLeaseMillis(3000);
    welcome.setHeartbeatMillis(1000);
    ASSERT_TRUE(net::SendMessage(router_, routing_id_, reply).ok());
  }

  static void SendStep(CoordinatorLink& link, uint64_t assignment, uint32_t step) {
    capnp::MallocMessageBuilder event;
    auto stage_event = net::InitEnvelope(event, assignment).initStageEvent();
    stage_event.setKind(schema::StageEvent::Kind::STEP);
    stage_event.setStep(step);
    link.Send(event);
  }

  zmq::context_t context_;
  std::string endpoint_;
  zmq::socket_t router_;
  std::string routing_id_;
  std::unique_ptr<CoordinatorLink> link_;
  std::atomic<uint64_t> cancelled_{0};
};

TEST_F(CoordinatorLinkTest, HelloCarriesHeldBlobsAndCancelsReachOnMessage) {
  net::ReceivedMessage hello = Next();
  ASSERT_TRUE(hello.envelope().isWorkerHello());
  ASSERT_EQ(hello.envelope().getWorkerHello().getHolds().size(), 1u);
  EXPECT_EQ(std::string(hello.envelope().getWorkerHello().getHolds()[0].cStr()), kHeld);
  // Assignment ids never collide with the link's own request ids.
  EXPECT_GE(hello.envelope().getRequestId(), uint64_t{1} << 63);
  Welcome(hello);
  for (absl::Time until = absl::Now() + absl::Seconds(5);
       !link_->registered() && absl::Now() < until;) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_TRUE(link_->registered());
  capnp::MallocMessageBuilder cancel;
  net::InitEnvelope(cancel, 7).setCancelStage(7);
  ASSERT_TRUE(net::SendMessage(router_, routing_id_, cancel).ok());
  for (absl::Time until = absl::Now() + absl::Seconds(5);
       cancelled_.load() == 0 && absl::Now() < until;) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(cancelled_.load(), 7u);
}

TEST_F(CoordinatorLinkTest, EventsFromManyThreadsArriveInTheirOrderAndWithoutDelay) {
  Welcome(Next());
  // Four runner threads, 250 events each.
  std::vector<std::thread> threads;
  for (uint64_t assignment = 1; assignment <= 4; ++assignment) {
    threads.emplace_back([this, assignment] {
      for (uint32_t step = 1; step <= 250; ++step) SendStep(*link_, assignment, step);
    });
  }
  std::vector<uint32_t> last(5, 0);
  for (int i = 0; i < 1000; ++i) {
    net::ReceivedMessage event = Next();
    ASSERT_TRUE(event.envelope().isStageEvent());
    const uint64_t assignment = event.envelope().getRequestId();
    ASSERT_TRUE(assignment >= 1 && assignment <= 4);
    EXPECT_EQ(event.envelope().getStageEvent().getStep(), last[assignment] + 1);
    last[assignment] = event.envelope().getStageEvent().getStep();
  }
  for (std::thread& thread : threads) thread.join();

  // One event at a time: from Send to the coordinator's socket.
  std::vector<absl::Duration> latencies;
  for (uint32_t step = 1; step <= 50; ++step) {
    const absl::Time sent = absl::Now();
    SendStep(*link_, 9, step);
    Next();
    latencies.push_back(absl::Now() - sent);
  }
  std::sort(latencies.begin(), latencies.end());
  EXPECT_LT(latencies[latencies.size() / 2], absl::Milliseconds(5));
}

}  // namespace
}  // namespace stagefarm::worker
