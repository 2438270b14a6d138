// Builds on a real cluster: an in-process coordinator (its control socket,
// its blob server and store) and two stagefarm-worker processes, which run
// the stages they are assigned (worker/stage_runner.h) and report through
// their coordinator link. A client in the test uploads its context, submits
// the build and reads its events, as the CLI will.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "capnp/message.h"
#include "common/build/build_definition.h"
#include "common/cas/blob_store.h"
#include "common/fs/context_index.h"
#include "common/net/envelope_frame.h"
#include "common/oci/image.h"
#include "common/oci/image_ref.h"
#include "common/oci/layer_diff.h"
#include "common/oci/media_types.h"
#include "common/transfer/blob_fetcher.h"
#include "common/transfer/blob_server.h"
#include "common/transfer/blob_uploader.h"
#include "coordinator/cluster_service.h"
#include "gtest/gtest.h"
#include "schemas/envelope.capnp.h"
#include "tests/testing/busybox_rootfs.h"
#include "tests/testing/daemon.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm {
namespace {

namespace stdfs = std::filesystem;

// A build as the client saw it end.
struct Outcome {
  bool done = false;
  std::string failure;                        // the failed event's text
  oci::BuiltImage image;                      // done: the target's image
  std::vector<transfer::Peer> holders;        // done: who holds its layers
  std::map<std::string, std::string> ran_on;  // stage name -> worker, from started events
  std::set<std::string> cached;               // stage names the cache had
  std::vector<std::string> log;               // every event, one line each
};

class StageRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<cas::BlobStore>> store =
        cas::BlobStore::Open(dir_.path() / "coordinator");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    absl::StatusOr<std::unique_ptr<transfer::BlobServer>> blobs =
        transfer::BlobServer::Start(context_, *store_, net::SocketSecurity::Insecure());
    ASSERT_TRUE(blobs.ok()) << blobs.status();
    blobs_ = *std::move(blobs);
    ASSERT_TRUE(StartCoordinator("tcp://127.0.0.1:0"));
    for (const char* name : {"w1", "w2"}) {
      workers_.push_back(std::make_unique<testing::Daemon>(
          STAGEFARM_WORKER_BINARY,
          std::vector<std::string>{"--insecure", "--coordinator", service_->endpoint(), "--listen",
                                   "tcp://127.0.0.1:0", "--data-dir", (dir_.path() / name).string(),
                                   "--worker-id", name, "--slots", "1", "--platform",
                                   "linux/amd64"}));
      ASSERT_FALSE(workers_.back()->Await("stagefarm-worker: serving blobs on ").empty());
    }
    ASSERT_TRUE(Eventually([&] { return service_->Workers().size() == 2; }));
  }

  void TearDown() override {
    for (auto& worker : workers_) EXPECT_EQ(worker->Stop(), 0);
    workers_.clear();
    service_.reset();
    blobs_.reset();
  }

  // Waits up to 10 s for `condition`.
  template <typename Condition>
  static bool Eventually(Condition condition) {
    for (absl::Time until = absl::Now() + absl::Seconds(10); absl::Now() < until;) {
      if (condition()) return true;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return condition();
  }

  // Starts the coordinator's control socket on `endpoint` (retrying while a
  // previous one's port is still taken).
  bool StartCoordinator(const std::string& endpoint) {
    coordinator::ClusterServiceOptions options;
    options.endpoint = endpoint;
    options.lease = absl::Seconds(5);
    options.heartbeat = absl::Milliseconds(200);
    options.blobs = {blobs_->endpoint(), ""};
    options.store = store_.get();
    options.peer_security = [](const std::string&) -> absl::StatusOr<net::SocketSecurity> {
      return net::SocketSecurity::Insecure();
    };
    options.log = [](const std::string& line) {
      std::fprintf(stderr, "coordinator: %s\n", line.c_str());
    };
    absl::StatusOr<std::unique_ptr<coordinator::ClusterService>> service;
    const bool started = Eventually([&] {
      service =
          coordinator::ClusterService::Start(context_, net::SocketSecurity::Insecure(), options);
      return service.ok();
    });
    EXPECT_TRUE(started) << service.status();
    if (started) service_ = *std::move(service);
    return started;
  }

  // Writes `files` into a fresh context directory and indexes it.
  fs::ContextIndex Context(const std::map<std::string, std::string>& files) {
    const stdfs::path context = dir_.path() / "context";
    stdfs::create_directories(context);
    for (const auto& [name, content] : files) std::ofstream(context / name) << content;
    absl::StatusOr<fs::ContextIndex> index =
        fs::ContextIndex::Build(context, dir_.path() / "Dockerfile");
    EXPECT_TRUE(index.ok()) << index.status();
    return *std::move(index);
  }

  // Uploads the context's files to the coordinator, submits the build and
  // reads its events until it is done or failed.
  // `on_event` sees every build event (and may send on the socket).
  Outcome Build(
      const std::string& dockerfile, const fs::ContextIndex& index,
      std::vector<build::NamedImage> images = {},
      const std::function<void(zmq::socket_t&, schema::BuildEvent::Reader)>& on_event = nullptr) {
    Outcome outcome;
    std::vector<transfer::UploadItem> items;
    for (const fs::ContextEntry& entry : index.entries()) {
      if (entry.type != fs::EntryType::kFile) continue;
      items.push_back({dir_.path() / "context" / entry.path, *entry.content, ""});
    }
    absl::StatusOr<transfer::UploadReport> uploaded = transfer::UploadFiles(
        context_, transfer::Peer{blobs_->endpoint(), net::SocketSecurity::Insecure()}, items);
    EXPECT_TRUE(uploaded.ok()) << uploaded.status();

    build::BuildDefinition definition;
    definition.dockerfile = dockerfile;
    definition.platform = "linux/amd64";
    definition.source_date_epoch = 1700000000;
    definition.context = index;
    definition.images = std::move(images);
    capnp::MallocMessageBuilder request;
    auto submit = net::InitEnvelope(request, 1).initSubmitBuild();
    build::ToSchema(definition, submit.initDefinition());
    submit.setClient("stage_runner_test");
    zmq::socket_t socket(context_, zmq::socket_type::dealer);
    socket.set(zmq::sockopt::linger, 0);
    socket.connect(service_->endpoint());
    EXPECT_TRUE(net::SendMessage(socket, "", request).ok());

    const net::FrameLimits limits = {.max_envelope_bytes = size_t{16} << 20};
    std::map<int, std::string> names;
    for (absl::Time until = absl::Now() + absl::Seconds(60); absl::Now() < until;) {
      absl::StatusOr<net::ReceivedMessage> message =
          net::ReceiveMessage(socket, absl::Milliseconds(200), nullptr, limits);
      if (absl::IsDeadlineExceeded(message.status())) continue;
      if (!message.ok()) {
        ADD_FAILURE() << message.status();
        return outcome;
      }
      const schema::Envelope::Reader envelope = message->envelope();
      if (envelope.isError()) {
        outcome.failure = envelope.getError().getMessage().cStr();
        return outcome;
      }
      if (!envelope.isBuildEvent()) continue;
      const schema::BuildEvent::Reader event = envelope.getBuildEvent();
      if (on_event) on_event(socket, event);
      const std::string stage = event.getStageName().cStr();
      outcome.log.push_back(absl::StrCat(static_cast<int>(event.getKind()), " ", stage, " ",
                                         event.getWorkerId().cStr(), " ", event.getText().cStr()));
      switch (event.getKind()) {
        case schema::BuildEvent::Kind::STARTED:
          outcome.ran_on[stage] = event.getWorkerId().cStr();
          break;
        case schema::BuildEvent::Kind::CACHED:
          outcome.cached.insert(stage);
          break;
        case schema::BuildEvent::Kind::FAILED:
          outcome.failure = event.getText().cStr();
          return outcome;
        case schema::BuildEvent::Kind::DONE: {
          absl::StatusOr<oci::BuiltImage> image = build::FromSchema(event.getResult());
          EXPECT_TRUE(image.ok()) << image.status();
          if (image.ok()) outcome.image = *std::move(image);
          for (schema::Holder::Reader holder : event.getHolders()) {
            outcome.holders.push_back(
                transfer::Peer{holder.getEndpoint().cStr(), net::SocketSecurity::Insecure()});
          }
          outcome.done = true;
          return outcome;
        }
        default:
          break;
      }
    }
    ADD_FAILURE() << "the build did not end within 60 s";
    return outcome;
  }

  // A busybox image (one layer, in the coordinator's store, as a client
  // would upload it), named "busybox".
  build::NamedImage Busybox() {
    build::NamedImage image;
    const stdfs::path rootfs = dir_.path() / "busybox";
    const stdfs::path empty = dir_.path() / "empty";
    EXPECT_TRUE(testing::MakeBusyboxRootfs(rootfs).ok());
    stdfs::create_directories(empty);
    std::unique_ptr<cas::BlobWriter> writer = store_->NewWriter();
    absl::StatusOr<oci::LayerDigests> layer = oci::WriteLayerFromCopy(
        empty, rootfs, [](absl::string_view) { return absl::OkStatus(); },
        [&](absl::string_view bytes) { return writer->Write(bytes); }, oci::DiffOptions());
    EXPECT_TRUE(layer.ok()) << layer.status();
    EXPECT_TRUE(writer->Commit(layer->blob_digest).ok());
    image.ref = *oci::ParseImageRef("busybox");
    image.image.config = oci::ScratchConfig(oci::Platform{"linux", "amd64", "", ""});
    image.image.config.diff_ids = {layer->diff_id};
    image.image.layers = {
        {oci::LayerMediaType(layer->compression), layer->blob_digest, layer->blob_size, {}}};
    return image;
  }

  // Slots in use over all workers, as their heartbeats say.
  uint32_t SlotsInUse() const {
    uint32_t used = 0;
    for (const coordinator::WorkerState& worker : service_->Workers()) {
      used += worker.slots_in_use;
    }
    return used;
  }

  // The layer's bytes (an uncompressed tar), fetched from `holders`.
  std::string Layer(const oci::Descriptor& layer, const std::vector<transfer::Peer>& holders) {
    absl::StatusOr<std::unique_ptr<cas::BlobStore>> store =
        cas::BlobStore::Open(dir_.path() / absl::StrCat("client-", ++clients_));
    EXPECT_TRUE(store.ok()) << store.status();
    absl::StatusOr<transfer::FetchReport> fetched =
        transfer::FetchBlobs(context_, **store, {layer.digest}, holders);
    EXPECT_TRUE(fetched.ok()) << fetched.status();
    absl::StatusOr<std::string> bytes = (*store)->ReadAll(layer.digest);
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    return bytes.ok() ? *bytes : "";
  }

  testing::TempDir dir_{"stage_runner_test"};
  zmq::context_t context_;
  std::unique_ptr<cas::BlobStore> store_;
  std::unique_ptr<transfer::BlobServer> blobs_;
  std::unique_ptr<coordinator::ClusterService> service_;
  std::vector<std::unique_ptr<testing::Daemon>> workers_;
  int clients_ = 0;
};

std::string Join(const std::vector<std::string>& lines) {
  std::string all;
  for (const std::string& line : lines) absl::StrAppend(&all, line, "\n");
  return all;
}

constexpr char kThreeStages[] =
    "FROM scratch AS a\n"
    "COPY a.txt /a.txt\n"
    "FROM scratch AS b\n"
    "COPY b.txt /b.txt\n"
    "FROM scratch\n"
    "COPY --from=a /a.txt /\n"
    "COPY --from=b /b.txt /\n";

TEST_F(StageRunnerTest, ThreeStagesRunOnTwoWorkersAndTheTargetHasBothFiles) {
  const fs::ContextIndex index =
      Context({{"a.txt", "content of a\n"}, {"b.txt", "content of b\n"}});
  const Outcome outcome = Build(kThreeStages, index);
  ASSERT_TRUE(outcome.done) << outcome.failure << "\n" << Join(outcome.log);
  ASSERT_EQ(outcome.image.layers.size(), 2u) << Join(outcome.log);
  EXPECT_EQ(outcome.image.config.diff_ids.size(), 2u);
  // a and b were ready together and each worker has one slot.
  ASSERT_EQ(outcome.ran_on.count("a"), 1u) << Join(outcome.log);
  ASSERT_EQ(outcome.ran_on.count("b"), 1u) << Join(outcome.log);
  EXPECT_NE(outcome.ran_on.at("a"), outcome.ran_on.at("b")) << Join(outcome.log);
  // a and b each exported the one path the target reads as an artifact.
  EXPECT_FALSE(absl::StrContains(Join(outcome.log), "no artifact")) << Join(outcome.log);
  const std::string first = Layer(outcome.image.layers[0], outcome.holders);
  const std::string second = Layer(outcome.image.layers[1], outcome.holders);
  EXPECT_TRUE(absl::StrContains(first, "a.txt") && absl::StrContains(first, "content of a"));
  EXPECT_TRUE(absl::StrContains(second, "b.txt") && absl::StrContains(second, "content of b"));
}

TEST_F(StageRunnerTest, TheSameBuildAgainComesFromTheClusterCache) {
  const fs::ContextIndex index =
      Context({{"a.txt", "content of a\n"}, {"b.txt", "content of b\n"}});
  const Outcome first = Build(kThreeStages, index);
  ASSERT_TRUE(first.done) << first.failure << "\n" << Join(first.log);
  const Outcome second = Build(kThreeStages, index);
  ASSERT_TRUE(second.done) << second.failure << "\n" << Join(second.log);
  EXPECT_TRUE(second.ran_on.empty()) << Join(second.log);
  EXPECT_EQ(second.image.layers, first.image.layers);
}

TEST_F(StageRunnerTest, AFailingCopyFailsTheBuildWithItsLocation) {
  const fs::ContextIndex index = Context({{"a.txt", "content of a\n"}});
  const Outcome outcome = Build("FROM scratch\nCOPY a.txt missing.txt /\n", index);
  EXPECT_FALSE(outcome.done);
  EXPECT_TRUE(absl::StrContains(outcome.failure, "Dockerfile:2")) << outcome.failure;
}

TEST_F(StageRunnerTest, ARestartedCoordinatorTrustsTheResultsItsWorkersStillHold) {
  const fs::ContextIndex index =
      Context({{"a.txt", "content of a\n"}, {"b.txt", "content of b\n"}});
  const Outcome first = Build(kThreeStages, index);
  ASSERT_TRUE(first.done) << first.failure << "\n" << Join(first.log);
  // The cache index is in the coordinator's store; which worker holds what
  // comes back with their hellos (the held/ refs).
  const std::string endpoint = service_->endpoint();
  service_.reset();
  ASSERT_TRUE(StartCoordinator(endpoint));
  ASSERT_TRUE(Eventually([&] { return service_->Workers().size() == 2; }));
  const Outcome second = Build(kThreeStages, index);
  ASSERT_TRUE(second.done) << second.failure << "\n" << Join(second.log);
  EXPECT_TRUE(second.ran_on.empty()) << Join(second.log);
  EXPECT_EQ(second.image.layers, first.image.layers);
}

TEST_F(StageRunnerTest, RunOutputIsStreamedAndACancelledBuildStopsBeforeItsNextStep) {
  const fs::ContextIndex index = Context({});
  bool cancelled = false;
  uint32_t busy_at_cancel = 0;
  const absl::Time start = absl::Now();
  const Outcome outcome =
      Build("FROM busybox\nRUN echo running && sleep 2\nRUN sleep 60\n", index, {Busybox()},
            [&](zmq::socket_t& socket, schema::BuildEvent::Reader event) {
              if (cancelled || event.getKind() != schema::BuildEvent::Kind::LOG ||
                  !absl::StrContains(event.getText().cStr(), "running")) {
                return;
              }
              // Once the worker's heartbeat says it is busy (the RUN sleeps 2 s).
              if (Eventually([&] { return SlotsInUse() == 1; })) busy_at_cancel = 1;
              capnp::MallocMessageBuilder request;
              net::InitEnvelope(request, 2).setCancelBuild(event.getBuildId());
              EXPECT_TRUE(net::SendMessage(socket, "", request).ok());
              cancelled = true;
            });
  ASSERT_TRUE(cancelled) << outcome.failure << "\n" << Join(outcome.log);
  EXPECT_FALSE(outcome.done);
  EXPECT_TRUE(absl::StrContains(outcome.failure, "cancelled")) << outcome.failure;
  // The worker stops after the first RUN, long before the second would end.
  EXPECT_EQ(busy_at_cancel, 1u);
  EXPECT_TRUE(Eventually([&] { return SlotsInUse() == 0; })) << Join(outcome.log);
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
}

}  // namespace
}  // namespace stagefarm
