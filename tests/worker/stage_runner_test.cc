// Builds on a real cluster: an in-process coordinator (its control socket,
// its blob server and store) and two stagefarm-worker processes, which run
// the stages they are assigned (worker/stage_runner.h) and report through
// their coordinator link. A client in the test uploads its context, submits
// the build and reads its events, as the CLI will.
#include <cstdio>
#include <filesystem>
#include <fstream>
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
#include "common/transfer/blob_fetcher.h"
#include "common/transfer/blob_server.h"
#include "common/transfer/blob_uploader.h"
#include "coordinator/cluster_service.h"
#include "gtest/gtest.h"
#include "schemas/envelope.capnp.h"
#include "tests/testing/daemon.h"
#include "tests/testing/random_blobs.h"

namespace stagefarm {
namespace {

namespace stdfs = std::filesystem;

// A build as the client saw it end.
struct Outcome {
  bool done = false;
  std::string failure;                       // the failed event's text
  oci::BuiltImage image;                     // done: the target's image
  std::vector<transfer::Peer> holders;       // done: who holds its layers
  std::map<std::string, std::string> ran_on;  // stage name -> worker, from started events
  std::set<std::string> cached;              // stage names the cache had
  std::vector<std::string> log;              // every event, one line each
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
    coordinator::ClusterServiceOptions options;
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
    absl::StatusOr<std::unique_ptr<coordinator::ClusterService>> service =
        coordinator::ClusterService::Start(context_, net::SocketSecurity::Insecure(), options);
    ASSERT_TRUE(service.ok()) << service.status();
    service_ = *std::move(service);
    for (const char* name : {"w1", "w2"}) {
      workers_.push_back(std::make_unique<testing::Daemon>(
          STAGEFARM_WORKER_BINARY,
          std::vector<std::string>{"--insecure", "--coordinator", service_->endpoint(),
                                   "--listen", "tcp://127.0.0.1:0", "--data-dir",
                                   (dir_.path() / name).string(), "--worker-id", name,
                                   "--slots", "1", "--platform", "linux/amd64"}));
      ASSERT_FALSE(workers_.back()->Await("stagefarm-worker: serving blobs on ").empty());
    }
    for (absl::Time until = absl::Now() + absl::Seconds(10);
         service_->Workers().size() < 2 && absl::Now() < until;) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    ASSERT_EQ(service_->Workers().size(), 2u);
  }

  void TearDown() override {
    for (auto& worker : workers_) EXPECT_EQ(worker->Stop(), 0);
    workers_.clear();
    service_.reset();
    blobs_.reset();
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
  Outcome Build(const std::string& dockerfile, const fs::ContextIndex& index) {
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
  const fs::ContextIndex index = Context({{"a.txt", "content of a\n"}, {"b.txt", "content of b\n"}});
  const Outcome outcome = Build(kThreeStages, index);
  ASSERT_TRUE(outcome.done) << outcome.failure << "\n" << Join(outcome.log);
  ASSERT_EQ(outcome.image.layers.size(), 2u) << Join(outcome.log);
  EXPECT_EQ(outcome.image.config.diff_ids.size(), 2u);
  // a and b were ready together and each worker has one slot.
  ASSERT_EQ(outcome.ran_on.count("a"), 1u) << Join(outcome.log);
  ASSERT_EQ(outcome.ran_on.count("b"), 1u) << Join(outcome.log);
  EXPECT_NE(outcome.ran_on.at("a"), outcome.ran_on.at("b")) << Join(outcome.log);
  const std::string first = Layer(outcome.image.layers[0], outcome.holders);
  const std::string second = Layer(outcome.image.layers[1], outcome.holders);
  EXPECT_TRUE(absl::StrContains(first, "a.txt") && absl::StrContains(first, "content of a"));
  EXPECT_TRUE(absl::StrContains(second, "b.txt") && absl::StrContains(second, "content of b"));
}

TEST_F(StageRunnerTest, TheSameBuildAgainComesFromTheClusterCache) {
  const fs::ContextIndex index = Context({{"a.txt", "content of a\n"}, {"b.txt", "content of b\n"}});
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

}  // namespace
}  // namespace stagefarm
