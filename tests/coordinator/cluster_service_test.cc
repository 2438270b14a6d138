// Workers joining a coordinator and keeping their lease: the registry's rules
// with a test clock, then the real control socket and worker links over
// loopback, with and without CURVE.
#include "coordinator/cluster_service.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "capnp/message.h"
#include "common/net/curve_keys.h"
#include "common/net/envelope_frame.h"
#include "common/net/zap_authenticator.h"
#include "coordinator/worker_registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schemas/cluster.capnp.h"
#include "schemas/envelope.capnp.h"
#include "worker/coordinator_link.h"

namespace stagefarm::coordinator {
namespace {

using ::testing::HasSubstr;

WorkerOffer Offer(const std::string& id, const std::string& key = "") {
  WorkerOffer offer;
  offer.id = id;
  offer.platforms = {oci::Platform{"linux", "amd64", "", ""}};
  offer.slots = 2;
  offer.blob_endpoint = "tcp://127.0.0.1:7701";
  offer.public_key = key;
  return offer;
}

TEST(WorkerRegistryTest, LeaseRenewedByHeartbeatsAndDroppedWithout) {
  WorkerRegistry registry(absl::Seconds(10));
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  ASSERT_TRUE(registry.Register(Offer("w1"), t0).ok());
  ASSERT_TRUE(registry.Register(Offer("w2"), t0).ok());
  EXPECT_TRUE(registry.Heartbeat("w1", "", 1, 42, t0 + absl::Seconds(8)));
  EXPECT_TRUE(registry.Expire(t0 + absl::Seconds(10)).empty());
  EXPECT_THAT(registry.Expire(t0 + absl::Seconds(11)), ::testing::ElementsAre("w2"));
  EXPECT_EQ(registry.workers().at("w1").slots_in_use, 1u);
  EXPECT_EQ(registry.workers().at("w1").offer.store_bytes, 42u);
  EXPECT_FALSE(registry.Heartbeat("w2", "", 0, 0, t0 + absl::Seconds(12)));  // must say hello
  EXPECT_FALSE(registry.Heartbeat("nobody", "", 0, 0, t0));
}

TEST(WorkerRegistryTest, BadOffersAreRefusedNamingTheField) {
  WorkerRegistry registry(absl::Seconds(10));
  const absl::Time now = absl::Now();
  EXPECT_THAT(registry.Register(Offer("bad id/x"), now).message(), HasSubstr("must be 1 to 64"));
  WorkerOffer no_slots = Offer("w");
  no_slots.slots = 0;
  EXPECT_THAT(registry.Register(no_slots, now).message(), HasSubstr("offers no slots"));
  WorkerOffer no_platform = Offer("w");
  no_platform.platforms.clear();
  EXPECT_THAT(registry.Register(no_platform, now).message(), HasSubstr("offers no platform"));
  WorkerOffer no_endpoint = Offer("w");
  no_endpoint.blob_endpoint.clear();
  EXPECT_THAT(registry.Register(no_endpoint, now).message(), HasSubstr("no blob endpoint"));
  WorkerOffer bad_label = Offer("w");
  bad_label.labels = {"gpu"};
  EXPECT_THAT(registry.Register(bad_label, now).message(), HasSubstr("is not key=value"));
  EXPECT_TRUE(registry.workers().empty());
}

TEST(WorkerRegistryTest, AnIdCannotBeTakenOverUnderAnotherKeyWhileItsOwnerLives) {
  WorkerRegistry registry(absl::Seconds(10));
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  ASSERT_TRUE(registry.Register(Offer("w1", "keyA"), t0).ok());
  const absl::Status taken = registry.Register(Offer("w1", "keyB"), t0 + absl::Seconds(1));
  EXPECT_EQ(taken.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_FALSE(registry.Heartbeat("w1", "keyB", 0, 0, t0 + absl::Seconds(1)));
  // The same key says hello again (a restart): fine, and a drain survives it.
  ASSERT_TRUE(registry.Drain("w1").ok());
  ASSERT_TRUE(registry.Register(Offer("w1", "keyA"), t0 + absl::Seconds(2)).ok());
  EXPECT_TRUE(registry.workers().at("w1").draining);
  // Once the owner's lease ran out, the id is free.
  EXPECT_TRUE(registry.Register(Offer("w1", "keyB"), t0 + absl::Seconds(20)).ok());
  EXPECT_EQ(registry.Drain("w9").code(), absl::StatusCode::kNotFound);
}

TEST(WorkerRegistryTest, ASenderIsFoundByTheConnectionItRegisteredOverLast) {
  WorkerRegistry registry(absl::Seconds(10));
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  WorkerOffer w1 = Offer("w1");
  w1.routing_id = "route-1";
  WorkerOffer w2 = Offer("w2");
  w2.routing_id = "route-2";
  ASSERT_TRUE(registry.Register(w1, t0).ok());
  ASSERT_TRUE(registry.Register(w2, t0).ok());
  ASSERT_NE(registry.ByRoutingId("route-1"), nullptr);
  EXPECT_EQ(registry.ByRoutingId("route-1")->offer.id, "w1");
  EXPECT_EQ(registry.ByRoutingId("route-2")->offer.id, "w2");
  EXPECT_EQ(registry.ByRoutingId("route-3"), nullptr);
  // w1 reconnects: its old connection no longer speaks for it.
  w1.routing_id = "route-3";
  ASSERT_TRUE(registry.Register(w1, t0 + absl::Seconds(1)).ok());
  EXPECT_EQ(registry.ByRoutingId("route-1"), nullptr);
  EXPECT_EQ(registry.ByRoutingId("route-3")->offer.id, "w1");
  // w2 hellos over w1's old connection id, then w1 hellos again elsewhere:
  // the connection stays w2's.
  w2.routing_id = "route-1";
  ASSERT_TRUE(registry.Register(w2, t0 + absl::Seconds(2)).ok());
  EXPECT_EQ(registry.ByRoutingId("route-1")->offer.id, "w2");
  EXPECT_EQ(registry.ByRoutingId("route-2"), nullptr);
  // A worker whose lease ran out is no sender any more.
  EXPECT_THAT(registry.Expire(t0 + absl::Seconds(11.5)), ::testing::ElementsAre("w1"));
  EXPECT_EQ(registry.ByRoutingId("route-3"), nullptr);
  EXPECT_EQ(registry.ByRoutingId("route-1")->offer.id, "w2");
}

// Waits up to five seconds for `condition`.
template <typename Condition>
bool Eventually(Condition condition) {
  for (absl::Time until = absl::Now() + absl::Seconds(5); absl::Now() < until;) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return condition();
}

worker::CoordinatorLinkOptions LinkOptions(const std::string& coordinator, const std::string& id) {
  worker::CoordinatorLinkOptions options;
  options.coordinator = coordinator;
  options.worker_id = id;
  options.platforms = {"linux/amd64"};
  options.slots = 1;
  options.blob_endpoint = "tcp://127.0.0.1:17701";
  options.version = "test";
  options.reply_timeout = absl::Milliseconds(500);
  return options;
}

// One request on a fresh DEALER, as `stagefarm cluster` sends it.
absl::StatusOr<net::ReceivedMessage> Ask(
    zmq::context_t& context, const std::string& endpoint,
    const std::function<void(schema::Envelope::Builder)>& fill,
    net::SocketSecurity security = net::SocketSecurity::Insecure()) {
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  if (absl::Status status = security.Apply(context, socket); !status.ok()) return status;
  socket.connect(endpoint);
  capnp::MallocMessageBuilder request;
  fill(net::InitEnvelope(request, 7));
  if (absl::Status sent = net::SendMessage(socket, "", request); !sent.ok()) return sent;
  return net::ReceiveMessage(socket, absl::Seconds(5));
}

TEST(ClusterServiceTest, WorkersJoinAreListedDrainedAndDroppedWhenSilent) {
  zmq::context_t context;
  ClusterServiceOptions options;
  options.lease = absl::Milliseconds(600);
  options.heartbeat = absl::Milliseconds(100);
  absl::StatusOr<std::unique_ptr<ClusterService>> service =
      ClusterService::Start(context, net::SocketSecurity::Insecure(), options);
  ASSERT_TRUE(service.ok()) << service.status();
  const std::string endpoint = (*service)->endpoint();

  auto w1 = worker::CoordinatorLink::Start(context, net::SocketSecurity::Insecure(),
                                           LinkOptions(endpoint, "w1"));
  auto w2 = worker::CoordinatorLink::Start(context, net::SocketSecurity::Insecure(),
                                           LinkOptions(endpoint, "w2"));
  ASSERT_TRUE(w1.ok() && w2.ok());
  ASSERT_TRUE(Eventually([&] { return (*service)->Workers().size() == 2; }));
  EXPECT_TRUE(Eventually([&] { return (*w1)->registered() && (*w2)->registered(); }));

  absl::StatusOr<net::ReceivedMessage> status =
      Ask(context, endpoint, [](schema::Envelope::Builder out) { out.setClusterStatus(); });
  ASSERT_TRUE(status.ok()) << status.status();
  ASSERT_TRUE(status->envelope().isClusterStatusReply());
  auto workers = status->envelope().getClusterStatusReply().getWorkers();
  ASSERT_EQ(workers.size(), 2u);
  EXPECT_EQ(std::string(workers[0].getWorkerId().cStr()), "w1");
  EXPECT_EQ(std::string(workers[0].getPlatforms()[0].cStr()), "linux/amd64");
  EXPECT_EQ(std::string(workers[0].getBlobEndpoint().cStr()), "tcp://127.0.0.1:17701");

  absl::StatusOr<net::ReceivedMessage> drained =
      Ask(context, endpoint, [](schema::Envelope::Builder out) { out.setDrainWorker("w2"); });
  ASSERT_TRUE(drained.ok());
  EXPECT_TRUE(drained->envelope().isDrained());
  absl::StatusOr<net::ReceivedMessage> unknown =
      Ask(context, endpoint, [](schema::Envelope::Builder out) { out.setDrainWorker("w9"); });
  ASSERT_TRUE(unknown.ok());
  ASSERT_TRUE(unknown->envelope().isError());
  EXPECT_THAT(std::string(unknown->envelope().getError().getMessage().cStr()),
              HasSubstr("no worker \"w9\""));

  // A worker that stops is dropped after its lease; the other stays.
  w2->reset();
  EXPECT_TRUE(Eventually([&] { return (*service)->Workers().size() == 1; }));
  EXPECT_EQ((*service)->Workers()[0].offer.id, "w1");

  // A message the control socket does not serve gets an error, not silence.
  absl::StatusOr<net::ReceivedMessage> wrong =
      Ask(context, endpoint, [](schema::Envelope::Builder out) { out.initStatBlobs(); });
  ASSERT_TRUE(wrong.ok());
  EXPECT_TRUE(wrong->envelope().isError());
}

TEST(ClusterServiceTest, ARestartedCoordinatorGetsItsWorkersBack) {
  zmq::context_t context;
  ClusterServiceOptions options;
  options.lease = absl::Milliseconds(600);
  options.heartbeat = absl::Milliseconds(100);
  absl::StatusOr<std::unique_ptr<ClusterService>> first =
      ClusterService::Start(context, net::SocketSecurity::Insecure(), options);
  ASSERT_TRUE(first.ok());
  const std::string endpoint = (*first)->endpoint();
  auto link = worker::CoordinatorLink::Start(context, net::SocketSecurity::Insecure(),
                                             LinkOptions(endpoint, "w1"));
  ASSERT_TRUE(link.ok());
  ASSERT_TRUE(Eventually([&] { return (*first)->Workers().size() == 1; }));

  first->reset();               // the coordinator goes away...
  options.endpoint = endpoint;  // ...and comes back on the same port, knowing nobody
  // libzmq closes the old listener asynchronously: the port frees shortly.
  absl::StatusOr<std::unique_ptr<ClusterService>> second;
  ASSERT_TRUE(Eventually([&] {
    second = ClusterService::Start(context, net::SocketSecurity::Insecure(), options);
    return second.ok();
  })) << second.status();
  EXPECT_TRUE(Eventually([&] { return (*second)->Workers().size() == 1; }));
  EXPECT_TRUE(Eventually([&] { return (*link)->registered(); }));
}

TEST(ClusterServiceTest, WithCurveOnlyAuthorisedWorkersJoinAndTheirKeyIsKnown) {
  zmq::context_t context;
  absl::StatusOr<net::CurveKeyPair> server = net::CurveKeyPair::Generate();
  absl::StatusOr<net::CurveKeyPair> allowed = net::CurveKeyPair::Generate();
  absl::StatusOr<net::CurveKeyPair> stranger = net::CurveKeyPair::Generate();
  ASSERT_TRUE(server.ok() && allowed.ok() && stranger.ok());
  absl::StatusOr<std::unique_ptr<net::ZapAuthenticator>> zap =
      net::ZapAuthenticator::Start(context, {allowed->public_key});
  ASSERT_TRUE(zap.ok()) << zap.status();
  ClusterServiceOptions options;
  options.lease = absl::Seconds(2);
  options.heartbeat = absl::Milliseconds(100);
  absl::StatusOr<net::SocketSecurity> server_security = net::SocketSecurity::CurveServer(*server);
  absl::StatusOr<net::SocketSecurity> good_security =
      net::SocketSecurity::CurveClient(*allowed, server->public_key);
  absl::StatusOr<net::SocketSecurity> bad_security =
      net::SocketSecurity::CurveClient(*stranger, server->public_key);
  ASSERT_TRUE(server_security.ok() && good_security.ok() && bad_security.ok());
  absl::StatusOr<std::unique_ptr<ClusterService>> service =
      ClusterService::Start(context, *server_security, options);
  ASSERT_TRUE(service.ok()) << service.status();
  const std::string endpoint = (*service)->endpoint();

  auto good =
      worker::CoordinatorLink::Start(context, *good_security, LinkOptions(endpoint, "good"));
  auto bad = worker::CoordinatorLink::Start(context, *bad_security, LinkOptions(endpoint, "bad"));
  ASSERT_TRUE(good.ok() && bad.ok());
  ASSERT_TRUE(Eventually([&] { return (*good)->registered(); }));
  absl::SleepFor(absl::Milliseconds(500));
  ASSERT_EQ((*service)->Workers().size(), 1u);
  EXPECT_EQ((*service)->Workers()[0].offer.id, "good");
  EXPECT_EQ((*service)->Workers()[0].offer.public_key, allowed->public_key);
  EXPECT_FALSE((*bad)->registered());
}

}  // namespace
}  // namespace stagefarm::coordinator
