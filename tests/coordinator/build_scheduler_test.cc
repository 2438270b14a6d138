// Builds through the coordinator's control socket, over loopback: a client
// submits, workers that speak the protocol by hand (real DEALER sockets, a
// real blob server and store where results must be held) receive the
// assignments and report; the scheduler's rules are checked by what goes
// over the wire.
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "capnp/message.h"
#include "common/build/build_definition.h"
#include "common/cas/blob_store.h"
#include "common/digest/digest.h"
#include "common/net/envelope_frame.h"
#include "common/oci/image.h"
#include "common/oci/media_types.h"
#include "common/transfer/blob_server.h"
#include "coordinator/cluster_service.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schemas/build.capnp.h"
#include "schemas/cluster.capnp.h"
#include "schemas/envelope.capnp.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm::coordinator {
namespace {

using ::testing::HasSubstr;

constexpr absl::string_view kThreeStages =
    "FROM scratch AS a\nCOPY a.txt /a\n"
    "FROM scratch AS b\nCOPY b.txt /b\n"
    "FROM scratch\nCOPY --from=a /a /\nCOPY --from=b /b /\n";

net::FrameLimits BigLimits() {
  net::FrameLimits limits;
  limits.max_envelope_bytes = size_t{16} << 20;
  return limits;
}

// A DEALER on the control socket.
class Peer {
 public:
  Peer(zmq::context_t& context, const std::string& endpoint)
      : socket_(context, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    EXPECT_TRUE(net::ApplyFrameLimits(socket_, BigLimits()).ok());
    socket_.connect(endpoint);
  }

  void Send(uint64_t request_id, const std::function<void(schema::Envelope::Builder)>& fill) {
    capnp::MallocMessageBuilder message;
    fill(net::InitEnvelope(message, request_id));
    ASSERT_TRUE(net::SendMessage(socket_, "", message).ok());
  }

  // The next message matching `want`, skipping others; nullopt after `timeout`.
  std::optional<net::ReceivedMessage> Next(
      const std::function<bool(const schema::Envelope::Reader&)>& want,
      absl::Duration timeout = absl::Seconds(5)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      absl::StatusOr<net::ReceivedMessage> message =
          net::ReceiveMessage(socket_, deadline - absl::Now(), nullptr, BigLimits());
      if (!message.ok()) continue;
      if (want(message->envelope())) return *std::move(message);
    }
    return std::nullopt;
  }

 private:
  zmq::socket_t socket_;
};

// A worker that speaks the protocol by hand.
class FakeWorker : public Peer {
 public:
  FakeWorker(zmq::context_t& context, const std::string& endpoint, std::string id,
             std::string blob_endpoint = "tcp://127.0.0.1:1", std::string platform = "linux/amd64")
      : Peer(context, endpoint), id_(std::move(id)) {
    Send(1, [&](schema::Envelope::Builder out) {
      auto hello = out.initWorkerHello();
      hello.setWorkerId(id_);
      hello.initPlatforms(1).set(0, platform);
      hello.setSlots(1);
      hello.setBlobEndpoint(blob_endpoint);
    });
    EXPECT_TRUE(Next([](const auto& e) { return e.isWelcome(); }).has_value()) << id_;
  }

  void Heartbeat() {
    Send(2, [&](schema::Envelope::Builder out) { out.initHeartbeat().setWorkerId(id_); });
  }

  // The next assignment: its id and stage.
  std::optional<std::pair<uint64_t, uint32_t>> NextAssign(absl::Duration timeout = absl::Seconds(5)) {
    std::optional<net::ReceivedMessage> message =
        Next([](const auto& e) { return e.isAssignStage(); }, timeout);
    if (!message) return std::nullopt;
    last_build_ = message->envelope().getAssignStage().getBuildId().cStr();
    last_assign_ = std::move(message);
    return std::make_pair(last_assign_->envelope().getRequestId(),
                          last_assign_->envelope().getAssignStage().getStage());
  }
  schema::StageAssign::Reader last_assign() const {
    return last_assign_->envelope().getAssignStage();
  }

  // Reports assignment `id` (stage `stage`) finished with `layers`.
  void Finish(uint64_t id, uint32_t stage, const std::vector<oci::Descriptor>& layers = {},
              const std::string& build = "") {
    oci::BuiltImage image;
    image.config = oci::ScratchConfig(oci::Platform{"linux", "amd64", "", ""});
    image.layers = layers;
    for (const oci::Descriptor& layer : layers) image.config.diff_ids.push_back(layer.digest);
    Send(id, [&](schema::Envelope::Builder out) {
      auto event = out.initStageEvent();
      event.setBuildId(build.empty() ? last_build_ : build);
      event.setStage(stage);
      event.setWorkerId(id_);
      event.setKind(schema::StageEvent::Kind::FINISHED);
      build::ToSchema(image, event.initResult().initImage());
    });
  }

  const std::string& id() const { return id_; }

 private:
  std::string id_;
  std::string last_build_;
  std::optional<net::ReceivedMessage> last_assign_;
};

build::BuildDefinition Definition(absl::string_view dockerfile) {
  build::BuildDefinition definition;
  definition.dockerfile = std::string(dockerfile);
  definition.platform = "linux/amd64";
  std::vector<fs::ContextEntry> entries;
  for (const char* name : {"a.txt", "b.txt"}) {
    fs::ContextEntry entry;
    entry.path = name;
    entry.mode = 0644;
    entry.size = 1;
    entry.content = digest::Sha256Of(name);
    entries.push_back(entry);
  }
  definition.context = *fs::ContextIndex::FromEntries(entries);
  return definition;
}

void Submit(Peer& client, uint64_t id, const build::BuildDefinition& definition) {
  client.Send(id, [&](schema::Envelope::Builder out) {
    build::ToSchema(definition, out.initSubmitBuild().initDefinition());
  });
}

// The build's final event (done or failed), with every event kind seen.
std::optional<net::ReceivedMessage> BuildEnd(Peer& client, std::vector<std::string>* kinds = nullptr,
                                             absl::Duration timeout = absl::Seconds(5)) {
  return client.Next(
      [kinds](const schema::Envelope::Reader& e) {
        if (e.isError()) return true;
        if (!e.isBuildEvent()) return false;
        const auto kind = e.getBuildEvent().getKind();
        if (kinds != nullptr) {
          kinds->push_back(absl::StrCat(static_cast<int>(kind), ":", e.getBuildEvent().getStage()));
        }
        return kind == schema::BuildEvent::Kind::DONE || kind == schema::BuildEvent::Kind::FAILED;
      },
      timeout);
}

struct Coordinator {
  testing::TempDir dir{"build-scheduler"};
  zmq::context_t context;
  std::unique_ptr<cas::BlobStore> store;
  std::unique_ptr<ClusterService> service;

  explicit Coordinator(const std::function<void(ClusterServiceOptions&)>& tune = nullptr) {
    store = *cas::BlobStore::Open(dir.path() / "cas");
    ClusterServiceOptions options;
    options.store = store.get();
    options.blobs.endpoint = "tcp://127.0.0.1:2";
    if (tune) tune(options);
    absl::StatusOr<std::unique_ptr<ClusterService>> started =
        ClusterService::Start(context, net::SocketSecurity::Insecure(), options);
    EXPECT_TRUE(started.ok()) << started.status();
    service = *std::move(started);
  }
  const std::string& endpoint() const { return service->endpoint(); }
};

TEST(BuildSchedulerTest, IndependentStagesRunOnTwoWorkersAtOnceAndARebuildIsCached) {
  Coordinator coordinator;
  FakeWorker w1(coordinator.context, coordinator.endpoint(), "w1");
  FakeWorker w2(coordinator.context, coordinator.endpoint(), "w2");
  Peer client(coordinator.context, coordinator.endpoint());
  Submit(client, 40, Definition(kThreeStages));
  std::optional<net::ReceivedMessage> accepted =
      client.Next([](const auto& e) { return e.isBuildAccepted() || e.isError(); });
  ASSERT_TRUE(accepted && accepted->envelope().isBuildAccepted());
  EXPECT_EQ(accepted->envelope().getBuildAccepted().getStages(), 3u);

  // a and b go out at once, one to each worker.
  auto first = w1.NextAssign();
  auto second = w2.NextAssign();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(std::set<uint32_t>({first->second, second->second}), std::set<uint32_t>({0, 1}));
  // Each is asked to export the path its consumer copies.
  ASSERT_EQ(w1.last_assign().getExports().size(), 1u);
  EXPECT_EQ(std::string(w1.last_assign().getExports()[0].getPaths()[0].cStr()),
            first->second == 0 ? "/a" : "/b");
  w1.Finish(first->first, first->second);
  w2.Finish(second->first, second->second);
  // The final stage reads both; both inputs come with the assignment.
  std::optional<std::pair<uint64_t, uint32_t>> last = w1.NextAssign(absl::Seconds(1));
  FakeWorker* runner = &w1;
  if (!last) {
    last = w2.NextAssign();
    runner = &w2;
  }
  ASSERT_TRUE(last);
  EXPECT_EQ(last->second, 2u);
  EXPECT_EQ(runner->last_assign().getInputs().size(), 2u);
  runner->Finish(last->first, last->second);
  std::optional<net::ReceivedMessage> end = BuildEnd(client);
  ASSERT_TRUE(end);
  ASSERT_EQ(end->envelope().getBuildEvent().getKind(), schema::BuildEvent::Kind::DONE)
      << end->envelope().getBuildEvent().getText().cStr();

  // The same build again: every stage from the cache, nothing assigned.
  std::vector<std::string> kinds;
  Submit(client, 41, Definition(kThreeStages));
  end = BuildEnd(client, &kinds);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->envelope().getBuildEvent().getKind(), schema::BuildEvent::Kind::DONE);
  EXPECT_FALSE(w1.NextAssign(absl::Milliseconds(200)) || w2.NextAssign(absl::Milliseconds(200)));
  // Only the target was looked at: it was cached, so a and b were not needed.
  EXPECT_THAT(kinds, ::testing::Contains(absl::StrCat(
                         static_cast<int>(schema::BuildEvent::Kind::CACHED), ":2")));
}

TEST(BuildSchedulerTest, ForeignAndUnbackedResultsAreRefusedAndTheStageRunsAgain) {
  testing::TempDir dir("unbacked");
  zmq::context_t blob_context;
  std::unique_ptr<cas::BlobStore> worker_store = *cas::BlobStore::Open(dir.path() / "cas");
  std::unique_ptr<transfer::BlobServer> blobs =
      *transfer::BlobServer::Start(blob_context, *worker_store, net::SocketSecurity::Insecure());
  std::vector<std::string> log;
  Coordinator coordinator([&](ClusterServiceOptions& options) {
    options.peer_security = [](const std::string&) -> absl::StatusOr<net::SocketSecurity> {
      return net::SocketSecurity::Insecure();
    };
  });
  FakeWorker w1(coordinator.context, coordinator.endpoint(), "w1", blobs->endpoint());
  FakeWorker w2(coordinator.context, coordinator.endpoint(), "w2");
  Peer client(coordinator.context, coordinator.endpoint());
  Submit(client, 50, Definition("FROM scratch\nCOPY a.txt /a\n"));
  FakeWorker* runner = &w1;
  auto assigned = w1.NextAssign(absl::Seconds(1));
  if (!assigned) {
    assigned = w2.NextAssign();
    runner = &w2;
  }
  ASSERT_TRUE(assigned);
  FakeWorker* other = runner == &w1 ? &w2 : &w1;

  // Another worker reporting on it is refused.
  other->Finish(assigned->first, assigned->second, {}, "any");
  std::optional<net::ReceivedMessage> refused = other->Next([](const auto& e) { return e.isError(); });
  ASSERT_TRUE(refused);
  EXPECT_THAT(refused->envelope().getError().getMessage().cStr(), HasSubstr("belongs to worker"));
  // So is a peer that is no worker at all.
  client.Send(assigned->first, [&](schema::Envelope::Builder out) {
    out.initStageEvent().setKind(schema::StageEvent::Kind::FINISHED);
  });
  refused = client.Next([](const auto& e) { return e.isError(); });
  ASSERT_TRUE(refused);
  EXPECT_THAT(refused->envelope().getError().getMessage().cStr(),
              HasSubstr("not a registered worker"));

  // A result naming a layer its worker does not hold (w1 holds nothing; w2's
  // blob server does not exist) is refused, and the stage is assigned again.
  const std::string bytes = "layer bytes";
  const oci::Descriptor layer{oci::LayerMediaType(oci::LayerCompression::kNone), digest::Sha256Of(bytes),
                              bytes.size(), {}};
  runner->Finish(assigned->first, assigned->second, {layer});
  refused = runner->Next([](const auto& e) { return e.isError(); });
  ASSERT_TRUE(refused);
  EXPECT_THAT(refused->envelope().getError().getMessage().cStr(), HasSubstr("result refused"));
  w1.Heartbeat();
  w2.Heartbeat();
  auto again = w1.NextAssign(absl::Seconds(2));
  runner = &w1;
  if (!again) {
    again = w2.NextAssign();
    runner = &w2;
  }
  ASSERT_TRUE(again) << "the refused stage was not assigned again";
  if (runner == &w1) {
    ASSERT_TRUE(worker_store->Put(bytes, layer.digest).ok());
    runner->Finish(again->first, again->second, {layer});
    std::optional<net::ReceivedMessage> end = BuildEnd(client);
    ASSERT_TRUE(end);
    EXPECT_EQ(end->envelope().getBuildEvent().getKind(), schema::BuildEvent::Kind::DONE)
        << end->envelope().getBuildEvent().getText().cStr();
    EXPECT_EQ(end->envelope().getBuildEvent().getHolders().size(), 1u);
  }
}

TEST(BuildSchedulerTest, MalformedSubmissionsGetAnErrorAndTheServiceGoesOn) {
  Coordinator coordinator;
  Peer client(coordinator.context, coordinator.endpoint());
  Submit(client, 60, Definition("FROM scratch\nBOGUS x\n"));
  std::optional<net::ReceivedMessage> reply = client.Next([](const auto& e) { return e.isError(); });
  ASSERT_TRUE(reply);
  EXPECT_THAT(reply->envelope().getError().getMessage().cStr(), HasSubstr("Dockerfile:2"));

  client.Send(61, [](schema::Envelope::Builder out) {
    auto definition = out.initSubmitBuild().initDefinition();
    definition.setDockerfile(capnp::Data::Reader(reinterpret_cast<const kj::byte*>("FROM scratch"), 12));
    auto entry = definition.initContext(1)[0];
    entry.setPath("../escape");
    entry.setContent("sha256:nothex");
  });
  reply = client.Next([](const auto& e) { return e.isError(); });
  ASSERT_TRUE(reply);
  EXPECT_THAT(reply->envelope().getError().getMessage().cStr(), HasSubstr("context entry"));

  client.Send(62, [](schema::Envelope::Builder out) { out.setCancelBuild("nope"); });
  reply = client.Next([](const auto& e) { return e.isError(); });
  ASSERT_TRUE(reply);
  EXPECT_THAT(reply->envelope().getError().getMessage().cStr(), HasSubstr("no build"));

  client.Send(63, [](schema::Envelope::Builder out) { out.setPing(); });
  EXPECT_TRUE(client.Next([](const auto& e) { return e.isPong(); }));
}

TEST(BuildSchedulerTest, ALostWorkersStageGoesToAnother) {
  Coordinator coordinator([](ClusterServiceOptions& options) {
    options.lease = absl::Milliseconds(800);
    options.heartbeat = absl::Milliseconds(100);
  });
  auto w1 = std::make_unique<FakeWorker>(coordinator.context, coordinator.endpoint(), "w1");
  Peer client(coordinator.context, coordinator.endpoint());
  Submit(client, 70, Definition("FROM scratch\nCOPY a.txt /a\n"));
  auto assigned = w1->NextAssign();
  ASSERT_TRUE(assigned);
  w1.reset();  // gone without a word
  FakeWorker w2(coordinator.context, coordinator.endpoint(), "w2");
  std::optional<std::pair<uint64_t, uint32_t>> again;
  for (absl::Time until = absl::Now() + absl::Seconds(5); !again && absl::Now() < until;) {
    w2.Heartbeat();
    again = w2.NextAssign(absl::Milliseconds(100));
  }
  ASSERT_TRUE(again) << "the lost worker's stage was not given to the other";
  w2.Finish(again->first, again->second);
  std::vector<std::string> kinds;
  std::optional<net::ReceivedMessage> end = BuildEnd(client, &kinds);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->envelope().getBuildEvent().getKind(), schema::BuildEvent::Kind::DONE);
  EXPECT_THAT(kinds, ::testing::Contains(absl::StrCat(
                         static_cast<int>(schema::BuildEvent::Kind::RETRIED), ":0")));
}

TEST(BuildSchedulerTest, TwoBuildsSharingAStageRunItOnce) {
  Coordinator coordinator;
  FakeWorker w1(coordinator.context, coordinator.endpoint(), "w1");
  FakeWorker w2(coordinator.context, coordinator.endpoint(), "w2");
  Peer first(coordinator.context, coordinator.endpoint());
  Peer second(coordinator.context, coordinator.endpoint());
  Submit(first, 80, Definition("FROM scratch AS shared\nCOPY a.txt /a\nFROM scratch\nCOPY --from=shared /a /x\n"));
  Submit(second, 81, Definition("FROM scratch AS shared\nCOPY a.txt /a\nFROM scratch\nCOPY --from=shared /a /y\n"));
  // Exactly one assignment of the shared stage, whichever worker gets it.
  std::vector<std::pair<FakeWorker*, std::pair<uint64_t, uint32_t>>> assigned;
  for (FakeWorker* worker : {&w1, &w2}) {
    if (auto got = worker->NextAssign(absl::Milliseconds(500))) assigned.push_back({worker, *got});
  }
  ASSERT_EQ(assigned.size(), 1u);
  EXPECT_EQ(assigned[0].second.second, 0u);
  assigned[0].first->Finish(assigned[0].second.first, 0);
  // Then each build's own final stage.
  int finals = 0;
  for (int round = 0; round < 4 && finals < 2; ++round) {
    for (FakeWorker* worker : {&w1, &w2}) {
      if (auto got = worker->NextAssign(absl::Milliseconds(300))) {
        EXPECT_EQ(got->second, 1u);
        worker->Finish(got->first, got->second);
        ++finals;
      }
    }
  }
  EXPECT_EQ(finals, 2);
  for (Peer* client : {&first, &second}) {
    std::optional<net::ReceivedMessage> end = BuildEnd(*client);
    ASSERT_TRUE(end);
    EXPECT_EQ(end->envelope().getBuildEvent().getKind(), schema::BuildEvent::Kind::DONE);
  }
}

TEST(BuildSchedulerTest, AStageNoWorkerCanRunFailsTheBuildInsteadOfHanging) {
  Coordinator coordinator([](ClusterServiceOptions& options) {
    options.no_worker_grace = absl::Milliseconds(300);
  });
  FakeWorker w1(coordinator.context, coordinator.endpoint(), "w1");
  Peer client(coordinator.context, coordinator.endpoint());
  build::BuildDefinition definition = Definition("FROM scratch\nCOPY a.txt /a\n");
  definition.platform = "linux/arm64";
  Submit(client, 90, definition);
  std::optional<net::ReceivedMessage> end = BuildEnd(client);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->envelope().getBuildEvent().getKind(), schema::BuildEvent::Kind::FAILED);
  EXPECT_THAT(end->envelope().getBuildEvent().getText().cStr(), HasSubstr("linux/arm64"));
}


TEST(BuildSchedulerTest, TwoBuildsTakeTurnsOnTheCluster) {
  Coordinator coordinator;
  FakeWorker w1(coordinator.context, coordinator.endpoint(), "w1");
  Peer first(coordinator.context, coordinator.endpoint());
  Peer second(coordinator.context, coordinator.endpoint());
  // Each build has three independent stages; one worker with one slot.
  constexpr absl::string_view kWide =
      "FROM scratch AS a\nCOPY a.txt /a\nFROM scratch AS b\nCOPY b.txt /b\n"
      "FROM scratch AS c\nCOPY a.txt /c\nFROM scratch\nCOPY --from=a /a /\n"
      "COPY --from=b /b /\nCOPY --from=c /c /\n";
  Submit(first, 100, Definition(kWide));
  ASSERT_TRUE(first.Next([](const auto& e) { return e.isBuildAccepted(); }));
  // Another build whose stages differ (a shared stage would run once).
  std::string wide = std::string(kWide);
  for (size_t at = wide.find(" /"); at != std::string::npos; at = wide.find(" /", at + 3)) {
    wide.insert(at + 2, "x");
  }
  Submit(second, 101, Definition(wide));
  ASSERT_TRUE(second.Next([](const auto& e) { return e.isBuildAccepted(); }));
  // The first assignment may have gone out before the second build came;
  // from then on the builds alternate.
  std::vector<std::string> order;
  for (int i = 0; i < 6; ++i) {
    auto assigned = w1.NextAssign();
    ASSERT_TRUE(assigned);
    order.push_back(std::string(w1.last_assign().getBuildId().cStr()));
    w1.Finish(assigned->first, assigned->second);
  }
  int switches = 0;
  for (size_t i = 2; i < order.size(); ++i) switches += order[i] != order[i - 1];
  EXPECT_GE(switches, 3) << "builds did not take turns: " << ::testing::PrintToString(order);
}

}  // namespace
}  // namespace stagefarm::coordinator
