// The daemons' real path for blobs: stagefarm-worker and
// stagefarm-coordinator started as processes serve their stores (the
// worker's on --listen, the coordinator's on --blob-listen), plain with
// --insecure and with CURVE and an allow-list, and stop on SIGTERM; workers
// join the coordinator's control socket (--listen), keep their lease, and
// `stagefarm cluster` sees and drains them.

#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/cas/blob_store.h"
#include "common/net/curve_keys.h"
#include "common/transfer/blob_fetcher.h"
#include "common/transfer/blob_uploader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/daemon.h"
#include "tests/testing/random_blobs.h"
#include "tests/testing/shell.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm {
namespace {

using ::testing::HasSubstr;
using testing::Daemon;
using testing::kMiB;

class DaemonServingTest : public ::testing::Test {
 protected:
  // A blob put into <data>/cas before the daemon starts.
  digest::Digest PutBlob(const std::filesystem::path& data, uint64_t seed, uint64_t size) {
    auto store = cas::BlobStore::Open(data / "cas");
    EXPECT_TRUE(store.ok()) << store.status();
    absl::StatusOr<digest::Digest> blob = testing::PutRandom(**store, seed, size);
    EXPECT_TRUE(blob.ok()) << blob.status();
    return *blob;
  }
  std::unique_ptr<cas::BlobStore> Store(const std::string& name) {
    return *cas::BlobStore::Open(dir_.path() / name);
  }

  testing::TempDir dir_{"daemon_serving_test"};
  zmq::context_t context_;
};

TEST_F(DaemonServingTest, InsecureWorkerServesItsStoreUntilSigterm) {
  const std::filesystem::path data = dir_.path() / "worker";
  const digest::Digest blob = PutBlob(data, 1, 6 * kMiB);
  Daemon worker(STAGEFARM_WORKER_BINARY, {"--insecure", "--listen", "tcp://127.0.0.1:0",
                                          "--data-dir", data.string()});
  const std::string endpoint = worker.Await("stagefarm-worker: serving blobs on ");
  ASSERT_FALSE(endpoint.empty());
  std::unique_ptr<cas::BlobStore> receiver = Store("receiver");
  absl::StatusOr<transfer::FetchReport> report = transfer::FetchBlobs(
      context_, *receiver, {blob}, {transfer::Peer{endpoint, net::SocketSecurity::Insecure()}});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->blobs_fetched, 1u);
  EXPECT_EQ(worker.Stop(), 0);
}

TEST_F(DaemonServingTest, CurveCoordinatorTakesUploadsOnlyFromListedKeys) {
  const std::filesystem::path keys = dir_.path() / "keys";
  std::filesystem::create_directories(keys / "allowed");
  const net::CurveKeyPair server = *net::CurveKeyPair::Generate();
  const net::CurveKeyPair client = *net::CurveKeyPair::Generate();
  const net::CurveKeyPair stranger = *net::CurveKeyPair::Generate();
  ASSERT_TRUE(net::WriteCurveKeyPair(server, keys, "coordinator").ok());
  ASSERT_TRUE(net::WriteCurveKeyPair(client, keys / "allowed", "client").ok());
  Daemon coordinator(STAGEFARM_COORDINATOR_BINARY,
                     {"--listen", "tcp://127.0.0.1:0", "--blob-listen", "tcp://127.0.0.1:0",
                      "--data-dir", (dir_.path() / "coordinator").string(), "--curve-secret-key",
                      (keys / "coordinator.key").string(), "--authorized-keys",
                      (keys / "allowed").string()});
  const std::string endpoint = coordinator.Await("stagefarm-coordinator: serving blobs on ");
  ASSERT_FALSE(endpoint.empty());

  const std::filesystem::path file = dir_.path() / "context.bin";
  const std::string bytes = testing::RandomBytes(2, 3 * kMiB);
  std::ofstream(file, std::ios::binary) << bytes;
  const std::vector<transfer::UploadItem> items = {{file, digest::Sha256Of(bytes), ""}};

  transfer::UploadOptions quick;
  quick.request_timeout = absl::Seconds(2);
  absl::StatusOr<transfer::UploadReport> refused = transfer::UploadFiles(
      context_,
      transfer::Peer{endpoint, *net::SocketSecurity::CurveClient(stranger, server.public_key)},
      items, quick);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);

  absl::StatusOr<transfer::UploadReport> uploaded = transfer::UploadFiles(
      context_,
      transfer::Peer{endpoint, *net::SocketSecurity::CurveClient(client, server.public_key)},
      items);
  ASSERT_TRUE(uploaded.ok()) << uploaded.status();
  EXPECT_EQ(uploaded->blobs_uploaded, 1u);
  EXPECT_EQ(coordinator.Stop(), 0);
  std::unique_ptr<cas::BlobStore> stored = Store("coordinator/cas");
  EXPECT_TRUE(*stored->Has(digest::Sha256Of(bytes)));
}

// Runs `stagefarm ARGS` and returns stdout and stderr together, and the exit code.
std::pair<int, std::string> Client(const std::string& args) {
  testing::Invocation run = testing::RunShell(absl::StrCat(STAGEFARM_BINARY, " ", args, " 2>&1"));
  return {run.exit_code, std::move(run.output)};
}

TEST_F(DaemonServingTest, CurveWorkersJoinAreListedDrainedAndDroppedWhenKilled) {
  const std::filesystem::path keys = dir_.path() / "keys";
  std::filesystem::create_directories(keys / "allowed");
  const net::CurveKeyPair coordinator_keys = *net::CurveKeyPair::Generate();
  ASSERT_TRUE(net::WriteCurveKeyPair(coordinator_keys, keys, "coordinator").ok());
  for (const char* name : {"w1", "w2", "client"}) {
    const net::CurveKeyPair pair = *net::CurveKeyPair::Generate();
    ASSERT_TRUE(net::WriteCurveKeyPair(pair, keys, name).ok());
    ASSERT_TRUE(net::WriteCurveKeyPair(pair, keys / "allowed", name).ok());
  }
  // A worker whose key the coordinator does not list.
  ASSERT_TRUE(net::WriteCurveKeyPair(*net::CurveKeyPair::Generate(), keys, "stranger").ok());
  // Workers serve their own peers: each lists the other nodes' keys.
  Daemon coordinator(STAGEFARM_COORDINATOR_BINARY,
                     {"--listen", "tcp://127.0.0.1:0", "--blob-listen", "tcp://127.0.0.1:0",
                      "--data-dir", (dir_.path() / "coordinator").string(), "--curve-secret-key",
                      (keys / "coordinator.key").string(), "--authorized-keys",
                      (keys / "allowed").string(), "--lease-timeout", "1.5s",
                      "--heartbeat-interval", "200ms"});
  const std::string control = coordinator.Await("stagefarm-coordinator: cluster control on ");
  ASSERT_FALSE(control.empty());
  auto start_worker = [&](const std::string& name) {
    return std::make_unique<Daemon>(
        STAGEFARM_WORKER_BINARY,
        std::vector<std::string>{"--coordinator", control, "--listen", "tcp://127.0.0.1:0",
                                 "--data-dir", (dir_.path() / name).string(), "--worker-id", name,
                                 "--slots", "3", "--curve-secret-key",
                                 (keys / (name + ".key")).string(), "--authorized-keys",
                                 (keys / "allowed").string(), "--coordinator-public-key",
                                 (keys / "coordinator.pub").string()});
  };
  std::unique_ptr<Daemon> w1 = start_worker("w1");
  std::unique_ptr<Daemon> w2 = start_worker("w2");
  std::unique_ptr<Daemon> stranger = start_worker("stranger");
  EXPECT_FALSE(w1->Await("stagefarm-worker: welcomed by the coordinator").empty());
  EXPECT_FALSE(w2->Await("stagefarm-worker: welcomed by the coordinator").empty());

  const std::string connect =
      absl::StrCat("--coordinator ", control, " --key '", (keys / "client.key").string(),
                   "' --coordinator-public-key '", (keys / "coordinator.pub").string(), "'");
  auto [code, listed] = Client(absl::StrCat("cluster status ", connect));
  EXPECT_EQ(code, 0) << listed;
  EXPECT_THAT(listed, HasSubstr("w1"));
  EXPECT_THAT(listed, HasSubstr("w2"));
  EXPECT_THAT(listed, HasSubstr("0/3"));
  EXPECT_THAT(listed, ::testing::Not(HasSubstr("stranger")));

  auto [drain_code, drained] = Client(absl::StrCat("cluster drain ", connect, " w2"));
  EXPECT_EQ(drain_code, 0) << drained;
  auto [json_code, json] = Client(absl::StrCat("cluster status --format json ", connect));
  EXPECT_EQ(json_code, 0) << json;
  EXPECT_THAT(json, HasSubstr("\"worker\":\"w2\",\"platforms\":[\"linux/amd64\"],\"slots\":3"));
  EXPECT_THAT(json, HasSubstr("\"draining\":true"));

  // A client without an authorised key gets no answer, and is told so.
  auto [refused_code, refused] = Client(absl::StrCat(
      "cluster status --coordinator ", control, " --key '", (keys / "stranger.key").string(),
      "' --coordinator-public-key '", (keys / "coordinator.pub").string(), "'"));
  EXPECT_EQ(refused_code, 1);
  EXPECT_THAT(refused, HasSubstr("no answer from the coordinator"));
  // Without keys or --insecure: a usage error that says what to give.
  auto [usage_code, usage] = Client(absl::StrCat("cluster status --coordinator ", control));
  EXPECT_EQ(usage_code, 2);
  EXPECT_THAT(usage, HasSubstr("--insecure"));

  // A worker that dies is dropped once its lease runs out.
  ::kill(w1->pid(), SIGKILL);
  EXPECT_FALSE(coordinator.Await("stagefarm-coordinator: worker w1 dropped").empty());
  auto [after_code, after] = Client(absl::StrCat("cluster status ", connect));
  EXPECT_EQ(after_code, 0);
  EXPECT_THAT(after, ::testing::Not(HasSubstr("w1 ")));
  EXPECT_THAT(after, HasSubstr("w2"));
  stranger->Stop();
  EXPECT_EQ(w2->Stop(), 0);
  EXPECT_EQ(coordinator.Stop(), 0);
}

}  // namespace
}  // namespace stagefarm
