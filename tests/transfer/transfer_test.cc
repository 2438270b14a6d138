// Blob transfer over real sockets on loopback between real stores: fetching
// from one or more holders, uploads, and the faults a cluster meets.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/cas/blob_store.h"
#include "common/digest/digest.h"
#include "common/net/curve_keys.h"
#include "common/net/envelope_frame.h"
#include "common/net/socket_security.h"
#include "common/net/zap_authenticator.h"
#include "common/transfer/blob_fetcher.h"
#include "common/transfer/blob_server.h"
#include "common/transfer/blob_uploader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/random_blobs.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm::transfer {
namespace {

using digest::Digest;
using stagefarm::testing::HashStored;
using stagefarm::testing::kMiB;
using stagefarm::testing::PutRandom;
using stagefarm::testing::RandomBytes;
using stagefarm::testing::TempDir;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class TransferTest : public ::testing::Test {
 protected:
  std::unique_ptr<cas::BlobStore> OpenStore(const std::string& name) {
    absl::StatusOr<std::unique_ptr<cas::BlobStore>> store =
        cas::BlobStore::Open(dir_.path() / name);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }
  std::unique_ptr<BlobServer> Serve(cas::BlobStore& store, BlobServerOptions options = {}) {
    absl::StatusOr<std::unique_ptr<BlobServer>> server =
        BlobServer::Start(context_, store, net::SocketSecurity::Insecure(), std::move(options));
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }
  static Peer PlainPeer(const BlobServer& server) {
    return Peer{server.endpoint(), net::SocketSecurity::Insecure()};
  }
  // Fetch options that notice a dead peer within a test's patience.
  static FetchOptions Quick() {
    FetchOptions options;
    options.request_timeout = absl::Milliseconds(500);
    return options;
  }
  static void ExpectStored(cas::BlobStore& store, const Digest& blob, uint64_t size) {
    absl::StatusOr<std::pair<Digest, uint64_t>> stored = HashStored(store, blob);
    ASSERT_TRUE(stored.ok()) << stored.status();
    EXPECT_EQ(stored->first, blob);
    EXPECT_EQ(stored->second, size);
  }

  TempDir dir_{"transfer_test"};
  zmq::context_t context_;
};

TEST_F(TransferTest, EmptyTinyChunkBoundaryAndLargeBlobsRoundTrip) {
  std::unique_ptr<cas::BlobStore> holder = OpenStore("holder");
  std::unique_ptr<cas::BlobStore> receiver = OpenStore("receiver");
  std::vector<std::pair<Digest, uint64_t>> blobs;
  const uint64_t sizes[] = {0, 3, 256 * 1024, 4 * kMiB, 4 * kMiB + 1, 40 * kMiB};
  for (uint64_t i = 0; i < std::size(sizes); ++i) {
    absl::StatusOr<Digest> blob = PutRandom(*holder, 100 + i, sizes[i]);
    ASSERT_TRUE(blob.ok()) << blob.status();
    blobs.emplace_back(*blob, sizes[i]);
  }
  // 4 MiB of one repeated byte is cut at the chunker's maximum: an exact
  // chunk boundary at the blob's end.
  std::string boundary(4 * kMiB, 'z');
  ASSERT_TRUE(holder->Put(boundary, digest::Sha256Of(boundary)).ok());
  blobs.emplace_back(digest::Sha256Of(boundary), boundary.size());

  std::unique_ptr<BlobServer> server = Serve(*holder);
  std::vector<Digest> wanted;
  for (const auto& [blob, size] : blobs) wanted.push_back(blob);
  absl::StatusOr<FetchReport> report =
      FetchBlobs(context_, *receiver, wanted, {PlainPeer(*server)});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->blobs_fetched, blobs.size());
  EXPECT_THAT(report->faults, IsEmpty());
  for (const auto& [blob, size] : blobs) ExpectStored(*receiver, blob, size);

  // A second fetch finds everything local and asks nobody.
  const uint64_t sent = server->stats().chunks_sent;
  report = FetchBlobs(context_, *receiver, wanted, {PlainPeer(*server)});
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->blobs_fetched, 0u);
  EXPECT_EQ(server->stats().chunks_sent, sent);
}

TEST_F(TransferTest, OnlyChunksTheReceiverLacksAreSent) {
  std::unique_ptr<cas::BlobStore> holder = OpenStore("holder");
  std::unique_ptr<cas::BlobStore> receiver = OpenStore("receiver");
  std::string v1 = RandomBytes(7, 32 * kMiB);
  std::string v2 = v1;
  v2[v2.size() / 2] ^= 0x5a;
  ASSERT_TRUE(holder->Put(v2, digest::Sha256Of(v2)).ok());
  ASSERT_TRUE(receiver->Put(v1, digest::Sha256Of(v1)).ok());
  std::unique_ptr<BlobServer> server = Serve(*holder);
  const Digest blob = digest::Sha256Of(v2);
  absl::StatusOr<FetchReport> report =
      FetchBlobs(context_, *receiver, {blob}, {PlainPeer(*server)});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_LE(report->bytes_received, 2 * cas::ChunkerOptions().max_size);
  EXPECT_GE(report->bytes_already_local, 24 * kMiB);
  EXPECT_EQ(server->stats().bytes_sent, report->bytes_received);
  ExpectStored(*receiver, blob, v2.size());
}

TEST_F(TransferTest, TwoHoldersBothServeOneFetch) {
  std::unique_ptr<cas::BlobStore> a = OpenStore("a");
  std::unique_ptr<cas::BlobStore> b = OpenStore("b");
  std::unique_ptr<cas::BlobStore> receiver = OpenStore("receiver");
  absl::StatusOr<Digest> blob = PutRandom(*a, 9, 48 * kMiB);
  ASSERT_TRUE(PutRandom(*b, 9, 48 * kMiB).ok());
  std::unique_ptr<BlobServer> server_a = Serve(*a);
  std::unique_ptr<BlobServer> server_b = Serve(*b);
  absl::StatusOr<FetchReport> report =
      FetchBlobs(context_, *receiver, {*blob}, {PlainPeer(*server_a), PlainPeer(*server_b)});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_GT(server_a->stats().chunks_sent, 0u);
  EXPECT_GT(server_b->stats().chunks_sent, 0u);
  EXPECT_EQ(server_a->stats().bytes_sent + server_b->stats().bytes_sent, 48 * kMiB);
  ExpectStored(*receiver, *blob, 48 * kMiB);
}

// A build context: thousands of small blobs. Their manifests are asked for
// many to a request, and each blob comes from a holder that has it.
TEST_F(TransferTest, ManySmallBlobsAreAskedForInBatchesFromTheHoldersThatHaveThem) {
  std::unique_ptr<cas::BlobStore> all = OpenStore("all");
  std::unique_ptr<cas::BlobStore> half = OpenStore("half");
  std::unique_ptr<cas::BlobStore> receiver = OpenStore("receiver");
  constexpr int kBlobs = 1500;
  std::vector<std::pair<Digest, uint64_t>> blobs;
  std::vector<Digest> wanted;
  for (int i = 0; i < kBlobs; ++i) {
    const uint64_t size = 1 + (i * 7919) % 8192;
    absl::StatusOr<Digest> blob = PutRandom(*all, 1000 + i, size);
    ASSERT_TRUE(blob.ok()) << blob.status();
    if (i % 2 == 0) {
      ASSERT_TRUE(PutRandom(*half, 1000 + i, size).ok());
    }
    blobs.emplace_back(*blob, size);
    wanted.push_back(*blob);
  }
  std::unique_ptr<BlobServer> server_all = Serve(*all);
  std::unique_ptr<BlobServer> server_half = Serve(*half);
  absl::StatusOr<FetchReport> report =
      FetchBlobs(context_, *receiver, wanted, {PlainPeer(*server_half), PlainPeer(*server_all)});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->blobs_fetched, static_cast<size_t>(kBlobs));
  EXPECT_THAT(report->faults, IsEmpty());
  for (const auto& [blob, size] : blobs) ExpectStored(*receiver, blob, size);
  // 1,500 blobs in batches of 256: 6 requests to each holder at most, where
  // one request a blob would have been 1,500.
  EXPECT_LE(server_all->stats().manifest_requests, 6u);
  EXPECT_LE(server_half->stats().manifest_requests, 6u);
  // Each blob is one chunk, sent once, by a holder that has it.
  EXPECT_EQ(server_all->stats().chunks_sent + server_half->stats().chunks_sent,
            static_cast<uint64_t>(kBlobs));
  EXPECT_GE(server_all->stats().chunks_sent, static_cast<uint64_t>(kBlobs / 2));
}

// Manifests of many chunks each: a batch whose answer would pass the holder's
// envelope limit is refused by it (ResourceExhausted) and asked for again in
// smaller batches, which it answers.
TEST_F(TransferTest, ManifestsPastTheHoldersEnvelopeLimitAreAskedForInSmallerBatches) {
  cas::BlobStoreOptions small_chunks;
  small_chunks.chunker.min_size = 1024;
  small_chunks.chunker.avg_size = 1024;
  small_chunks.chunker.max_size = 4096;
  auto open = [&](const std::string& name) {
    absl::StatusOr<std::unique_ptr<cas::BlobStore>> store =
        cas::BlobStore::Open(dir_.path() / name, small_chunks);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  };
  std::unique_ptr<cas::BlobStore> holder = open("holder");
  std::unique_ptr<cas::BlobStore> receiver = open("receiver");
  ASSERT_TRUE(holder && receiver);
  std::vector<Digest> wanted;
  for (int i = 0; i < 40; ++i) {
    absl::StatusOr<Digest> blob = PutRandom(*holder, 50 + i, 96 * 1024);
    ASSERT_TRUE(blob.ok()) << blob.status();
    absl::StatusOr<cas::BlobManifest> manifest = holder->Manifest(*blob);
    ASSERT_TRUE(manifest.ok());
    ASSERT_GE(manifest->chunks.size(), 24u);
    wanted.push_back(*blob);
  }
  BlobServerOptions options;
  options.limits.max_envelope_bytes = 64 * 1024;  // about 10 of these manifests
  std::unique_ptr<BlobServer> server = Serve(*holder, options);
  absl::StatusOr<FetchReport> report =
      FetchBlobs(context_, *receiver, wanted, {PlainPeer(*server)});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->blobs_fetched, wanted.size());
  EXPECT_THAT(report->faults, IsEmpty());
  for (const Digest& blob : wanted) ExpectStored(*receiver, blob, 96 * 1024);
  EXPECT_GT(server->stats().errors_sent, 0u);
  EXPECT_GE(server->stats().manifest_requests, 4u);
}

TEST_F(TransferTest, CorruptChunkIsRefetchedFromAnotherHolderAndThePeerReported) {
  std::unique_ptr<cas::BlobStore> bad = OpenStore("bad");
  std::unique_ptr<cas::BlobStore> good = OpenStore("good");
  std::unique_ptr<cas::BlobStore> receiver = OpenStore("receiver");
  absl::StatusOr<Digest> blob = PutRandom(*bad, 11, 16 * kMiB);
  ASSERT_TRUE(PutRandom(*good, 11, 16 * kMiB).ok());
  std::atomic<int> tampered{0};
  BlobServerOptions corrupting;
  corrupting.tamper_chunk = [&](const Digest&, std::string& bytes) {
    bytes[bytes.size() / 3] ^= 1;
    ++tampered;
  };
  std::unique_ptr<BlobServer> bad_server = Serve(*bad, corrupting);
  std::unique_ptr<BlobServer> good_server = Serve(*good);
  std::vector<PeerFault> reported;
  FetchOptions options;
  options.on_fault = [&](const PeerFault& fault) { reported.push_back(fault); };
  absl::StatusOr<FetchReport> report = FetchBlobs(
      context_, *receiver, {*blob}, {PlainPeer(*bad_server), PlainPeer(*good_server)}, options);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_GT(tampered.load(), 0);
  ASSERT_FALSE(reported.empty());
  EXPECT_THAT(report->faults, Contains(AllOf(Field(&PeerFault::peer, bad_server->endpoint()),
                                             Field(&PeerFault::what, HasSubstr("hashes to")))));
  EXPECT_EQ(reported.size(), report->faults.size());
  ExpectStored(*receiver, *blob, 16 * kMiB);
}

TEST_F(TransferTest, OnlyCorruptHolderFailsTheFetchAndStoresNothing) {
  std::unique_ptr<cas::BlobStore> bad = OpenStore("bad");
  std::unique_ptr<cas::BlobStore> receiver = OpenStore("receiver");
  absl::StatusOr<Digest> blob = PutRandom(*bad, 12, 6 * kMiB);
  BlobServerOptions corrupting;
  corrupting.tamper_chunk = [](const Digest&, std::string& bytes) { bytes[0] ^= 1; };
  std::unique_ptr<BlobServer> server = Serve(*bad, corrupting);
  absl::StatusOr<FetchReport> report =
      FetchBlobs(context_, *receiver, {*blob}, {PlainPeer(*server)});
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(report.status().message(), HasSubstr(server->endpoint()));
  EXPECT_FALSE(*receiver->Has(*blob));
  ASSERT_TRUE(receiver->CollectGarbage(uint64_t{1} << 40).ok());
  EXPECT_EQ(receiver->StoredBytes(), 0u);
}

TEST_F(TransferTest, HolderDyingMidTransferIsReplacedByAnother) {
  std::unique_ptr<cas::BlobStore> a = OpenStore("a");
  std::unique_ptr<cas::BlobStore> b = OpenStore("b");
  std::unique_ptr<cas::BlobStore> receiver = OpenStore("receiver");
  absl::StatusOr<Digest> blob = PutRandom(*a, 13, 64 * kMiB);
  ASSERT_TRUE(PutRandom(*b, 13, 64 * kMiB).ok());
  std::unique_ptr<BlobServer> server_a = Serve(*a);
  std::unique_ptr<BlobServer> server_b = Serve(*b);
  const std::vector<Peer> holders = {PlainPeer(*server_a), PlainPeer(*server_b)};
  FetchOptions options = Quick();
  options.on_progress = [&](const FetchProgress& progress) {
    if (server_a != nullptr && progress.bytes_received > 16 * kMiB) server_a.reset();
  };
  absl::StatusOr<FetchReport> report = FetchBlobs(context_, *receiver, {*blob}, holders, options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(server_a, nullptr);
  ExpectStored(*receiver, *blob, 64 * kMiB);
}

TEST_F(TransferTest, FetchResumesWhenTheOnlyHolderComesBack) {
  std::unique_ptr<cas::BlobStore> holder = OpenStore("holder");
  std::unique_ptr<cas::BlobStore> receiver = OpenStore("receiver");
  absl::StatusOr<Digest> blob = PutRandom(*holder, 14, 64 * kMiB);
  BlobServerOptions options;
  std::unique_ptr<BlobServer> server = Serve(*holder, options);
  options.endpoint = server->endpoint();  // the same port when it comes back
  std::thread restart;
  FetchOptions fetch = Quick();
  bool stopped = false;
  fetch.on_progress = [&](const FetchProgress& progress) {
    if (stopped || progress.bytes_received < 24 * kMiB) return;
    stopped = true;
    server.reset();
    restart = std::thread([&] {
      absl::SleepFor(absl::Seconds(1));
      server = Serve(*holder, options);
    });
  };
  absl::StatusOr<FetchReport> report =
      FetchBlobs(context_, *receiver, {*blob},
                 {Peer{options.endpoint, net::SocketSecurity::Insecure()}}, fetch);
  if (restart.joinable()) restart.join();
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_TRUE(stopped);
  // Resumed, not restarted: the bytes before the stop were not fetched again
  // (only the chunks in flight at the stop may be).
  EXPECT_LE(report->bytes_received, 64 * kMiB + 8 * 4 * kMiB);
  ExpectStored(*receiver, *blob, 64 * kMiB);
}

TEST_F(TransferTest, UnknownDigestIsNotFoundNamingIt) {
  std::unique_ptr<cas::BlobStore> holder = OpenStore("holder");
  std::unique_ptr<cas::BlobStore> receiver = OpenStore("receiver");
  std::unique_ptr<BlobServer> server = Serve(*holder);
  const Digest unknown = digest::Sha256Of("nobody has this");
  absl::StatusOr<FetchReport> report =
      FetchBlobs(context_, *receiver, {unknown}, {PlainPeer(*server)});
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(report.status().message(), HasSubstr(unknown.ToString()));
  EXPECT_THAT(report.status().message(), HasSubstr(server->endpoint()));
}

// A holder that answers every request with a message of the wrong shape.
class MalformedHolder {
 public:
  explicit MalformedHolder(zmq::context_t& context) : socket_(context, zmq::socket_type::router) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind("tcp://127.0.0.1:0");
    endpoint_ = socket_.get(zmq::sockopt::last_endpoint);
    thread_ = std::thread([this] {
      int answer = 0;
      while (!stop_) {
        zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
        if (zmq::poll(&item, 1, std::chrono::milliseconds(50)) == 0) continue;
        std::vector<zmq::message_t> frames;
        zmq::message_t frame;
        do {
          (void)socket_.recv(frame);
          frames.push_back(std::move(frame));
        } while (frames.back().more());
        // Alternate between garbage bytes and a chunk reply without data.
        socket_.send(frames[0], zmq::send_flags::sndmore);
        if (answer++ % 2 == 0) {
          socket_.send(zmq::buffer(std::string("not cap'n proto")), zmq::send_flags::none);
        } else {
          socket_.send(frames[1], zmq::send_flags::none);  // the request echoed back
        }
      }
    });
  }
  ~MalformedHolder() {
    stop_ = true;
    thread_.join();
  }
  const std::string& endpoint() const { return endpoint_; }

 private:
  zmq::socket_t socket_;
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

TEST_F(TransferTest, PeerSendingMalformedFramesIsReportedAndAnotherHolderServes) {
  std::unique_ptr<cas::BlobStore> good = OpenStore("good");
  std::unique_ptr<cas::BlobStore> receiver = OpenStore("receiver");
  absl::StatusOr<Digest> blob = PutRandom(*good, 15, 12 * kMiB);
  MalformedHolder malformed(context_);
  std::unique_ptr<BlobServer> server = Serve(*good);
  absl::StatusOr<FetchReport> report = FetchBlobs(
      context_, *receiver, {*blob},
      {Peer{malformed.endpoint(), net::SocketSecurity::Insecure()}, PlainPeer(*server)}, Quick());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->faults, Contains(Field(&PeerFault::peer, malformed.endpoint())));
  ExpectStored(*receiver, *blob, 12 * kMiB);
}

TEST_F(TransferTest, ServerAnswersMalformedAndUnexpectedRequestsWithErrorsAndKeepsServing) {
  std::unique_ptr<cas::BlobStore> holder = OpenStore("holder");
  std::unique_ptr<BlobServer> server = Serve(*holder);
  zmq::socket_t client(context_, zmq::socket_type::dealer);
  client.set(zmq::sockopt::linger, 0);
  client.connect(server->endpoint());
  auto expect_error = [&](absl::StatusCode code, absl::string_view substring) {
    absl::StatusOr<net::ReceivedMessage> reply = net::ReceiveMessage(client, absl::Seconds(5));
    ASSERT_TRUE(reply.ok()) << reply.status();
    ASSERT_EQ(reply->envelope().which(), schema::Envelope::ERROR);
    absl::Status error = net::StatusFromError(reply->envelope().getError(), "server");
    EXPECT_EQ(error.code(), code) << error;
    EXPECT_THAT(error.message(), HasSubstr(substring));
  };
  client.send(zmq::buffer(std::string("garbage!")), zmq::send_flags::none);
  expect_error(absl::StatusCode::kInvalidArgument, "envelope");

  capnp::MallocMessageBuilder bad_digest;
  net::InitEnvelope(bad_digest, 2).initStatBlobs().initDigests(1).set(0, "sha256:xyz");
  ASSERT_TRUE(net::SendMessage(client, "", bad_digest).ok());
  expect_error(absl::StatusCode::kInvalidArgument, "sha256:xyz");

  capnp::MallocMessageBuilder unknown_chunk;
  schema::ChunkAddress::Builder address = net::InitEnvelope(unknown_chunk, 3).initGetChunk();
  address.setBlob(digest::Sha256Of("b").ToString());
  address.setChunk(digest::Sha256Of("c").ToString());
  ASSERT_TRUE(net::SendMessage(client, "", unknown_chunk).ok());
  expect_error(absl::StatusCode::kNotFound, digest::Sha256Of("c").ToString());

  capnp::MallocMessageBuilder pong;
  net::InitEnvelope(pong, 4).setPong();
  ASSERT_TRUE(net::SendMessage(client, "", pong).ok());
  expect_error(absl::StatusCode::kUnimplemented, "not a request");

  capnp::MallocMessageBuilder put_without_data;
  net::InitEnvelope(put_without_data, 5).initPutBlob().setDigest(digest::Sha256Of("").ToString());
  ASSERT_TRUE(net::SendMessage(client, "", put_without_data).ok());
  expect_error(absl::StatusCode::kInvalidArgument, "data frames");

  capnp::MallocMessageBuilder lying_put;
  net::InitEnvelope(lying_put, 6).initPutBlob().setDigest(digest::Sha256Of("x").ToString());
  std::vector<zmq::message_t> frames;
  frames.emplace_back(std::string("y"));
  ASSERT_TRUE(net::SendMessage(client, "", lying_put, std::move(frames)).ok());
  expect_error(absl::StatusCode::kInvalidArgument, digest::Sha256Of("x").ToString());
  EXPECT_FALSE(*holder->Has(digest::Sha256Of("x")));

  // Still serving.
  capnp::MallocMessageBuilder ping;
  net::InitEnvelope(ping, 7).setPing();
  ASSERT_TRUE(net::SendMessage(client, "", ping).ok());
  absl::StatusOr<net::ReceivedMessage> reply = net::ReceiveMessage(client, absl::Seconds(5));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->envelope().which(), schema::Envelope::PONG);
  EXPECT_EQ(server->stats().errors_sent, 6u);
}

TEST_F(TransferTest, UploadSessionsAreBoundedAndExpireWhenIdle) {
  std::unique_ptr<cas::BlobStore> holder = OpenStore("holder");
  std::unique_ptr<cas::BlobStore> scratch = OpenStore("scratch");
  BlobServerOptions options;
  options.max_upload_sessions = 1;
  options.upload_idle_timeout = absl::Milliseconds(300);
  std::unique_ptr<BlobServer> server = Serve(*holder, options);
  zmq::socket_t client(context_, zmq::socket_type::dealer);
  client.set(zmq::sockopt::linger, 0);
  client.connect(server->endpoint());
  // Two manifests to offer, taken from blobs in another store.
  std::vector<cas::BlobManifest> manifests;
  for (uint64_t seed : {31, 32}) {
    absl::StatusOr<Digest> blob = PutRandom(*scratch, seed, 2 * kMiB);
    manifests.push_back(*scratch->Manifest(*blob));
  }
  auto offer = [&](const cas::BlobManifest& manifest, uint64_t id) {
    capnp::MallocMessageBuilder message;
    FillManifest(manifest, net::InitEnvelope(message, id).initOfferBlob());
    EXPECT_TRUE(net::SendMessage(client, "", message).ok());
    absl::StatusOr<net::ReceivedMessage> reply = net::ReceiveMessage(client, absl::Seconds(5));
    EXPECT_TRUE(reply.ok()) << reply.status();
    return reply;
  };
  absl::StatusOr<net::ReceivedMessage> first = offer(manifests[0], 1);
  ASSERT_EQ(first->envelope().which(), schema::Envelope::OFFER_REPLY);
  EXPECT_EQ(first->envelope().getOfferReply().getWanted().size(), manifests[0].chunks.size());
  absl::StatusOr<net::ReceivedMessage> second = offer(manifests[1], 2);
  ASSERT_EQ(second->envelope().which(), schema::Envelope::ERROR);
  EXPECT_EQ(net::StatusFromError(second->envelope().getError(), "server").code(),
            absl::StatusCode::kResourceExhausted);

  // Idle past the timeout: the first session is gone, so a chunk for it is
  // refused and the second blob can be offered.
  absl::SleepFor(absl::Milliseconds(600));
  capnp::MallocMessageBuilder chunk;
  schema::ChunkAddress::Builder address = net::InitEnvelope(chunk, 3).initPutChunk();
  address.setBlob(manifests[0].digest.ToString());
  address.setIndex(0);
  address.setChunk(manifests[0].chunks[0].digest.ToString());
  std::vector<zmq::message_t> frames;
  frames.emplace_back(std::string(manifests[0].chunks[0].length, 'x'));
  ASSERT_TRUE(net::SendMessage(client, "", chunk, std::move(frames)).ok());
  absl::StatusOr<net::ReceivedMessage> refused = net::ReceiveMessage(client, absl::Seconds(5));
  ASSERT_TRUE(refused.ok());
  ASSERT_EQ(refused->envelope().which(), schema::Envelope::ERROR);
  EXPECT_THAT(net::StatusFromError(refused->envelope().getError(), "server").message(),
              HasSubstr("no upload of blob"));
  EXPECT_EQ(offer(manifests[1], 4)->envelope().which(), schema::Envelope::OFFER_REPLY);
}

class CurveTransferTest : public TransferTest {
 protected:
  void SetUp() override {
    server_keys_ = *net::CurveKeyPair::Generate();
    client_keys_ = *net::CurveKeyPair::Generate();
    stranger_keys_ = *net::CurveKeyPair::Generate();
    absl::StatusOr<std::unique_ptr<net::ZapAuthenticator>> zap =
        net::ZapAuthenticator::Start(context_, {client_keys_.public_key});
    ASSERT_TRUE(zap.ok()) << zap.status();
    zap_ = *std::move(zap);
  }
  void TearDown() override { zap_.reset(); }
  std::unique_ptr<BlobServer> ServeCurve(cas::BlobStore& store) {
    absl::StatusOr<std::unique_ptr<BlobServer>> server =
        BlobServer::Start(context_, store, *net::SocketSecurity::CurveServer(server_keys_));
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }
  Peer CurvePeer(const BlobServer& server, const net::CurveKeyPair& own) {
    return Peer{server.endpoint(), *net::SocketSecurity::CurveClient(own, server_keys_.public_key)};
  }

  net::CurveKeyPair server_keys_;
  net::CurveKeyPair client_keys_;
  net::CurveKeyPair stranger_keys_;
  std::unique_ptr<net::ZapAuthenticator> zap_;
};

TEST_F(CurveTransferTest, AuthorisedPeerFetchesOverCurve) {
  std::unique_ptr<cas::BlobStore> holder = OpenStore("holder");
  std::unique_ptr<cas::BlobStore> receiver = OpenStore("receiver");
  absl::StatusOr<Digest> blob = PutRandom(*holder, 16, 10 * kMiB);
  std::unique_ptr<BlobServer> server = ServeCurve(*holder);
  absl::StatusOr<FetchReport> report =
      FetchBlobs(context_, *receiver, {*blob}, {CurvePeer(*server, client_keys_)});
  ASSERT_TRUE(report.ok()) << report.status();
  ExpectStored(*receiver, *blob, 10 * kMiB);
  EXPECT_GT(zap_->accepted_count(), 0u);
}

TEST_F(CurveTransferTest, PeerWithUnlistedKeyGetsNothing) {
  std::unique_ptr<cas::BlobStore> holder = OpenStore("holder");
  std::unique_ptr<cas::BlobStore> receiver = OpenStore("receiver");
  absl::StatusOr<Digest> blob = PutRandom(*holder, 17, 2 * kMiB);
  std::unique_ptr<BlobServer> server = ServeCurve(*holder);
  FetchOptions options = Quick();
  options.max_attempts = 2;
  absl::StatusOr<FetchReport> report =
      FetchBlobs(context_, *receiver, {*blob}, {CurvePeer(*server, stranger_keys_)}, options);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(report.status().message(), HasSubstr("no answer from"));
  EXPECT_GT(zap_->rejected_count(), 0u);
  EXPECT_EQ(server->stats().chunks_sent, 0u);
  EXPECT_FALSE(*receiver->Has(*blob));
}

// --------------------------------------------------------------- uploads

class UploadTest : public TransferTest {
 protected:
  // Writes `bytes` to a file under the temp dir and lists it for upload.
  UploadItem WriteFile(const std::string& name, const std::string& bytes) {
    std::filesystem::path path = dir_.path() / "context" / name;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << bytes;
    return UploadItem{path, digest::Sha256Of(bytes), ""};
  }
};

TEST_F(UploadTest, SendsOnlyMissingBlobsAndChunks) {
  std::unique_ptr<cas::BlobStore> coordinator = OpenStore("coordinator");
  std::unique_ptr<BlobServer> server = Serve(*coordinator);
  const Peer to = PlainPeer(*server);
  std::vector<UploadItem> items;
  for (int i = 0; i < 300; ++i) {
    items.push_back(WriteFile(absl::StrCat("src/file", i, ".txt"), absl::StrCat("content ", i)));
  }
  items.push_back(WriteFile("empty", ""));
  items.push_back(WriteFile("duplicate.txt", "content 7"));  // the same blob twice
  std::string large = RandomBytes(21, 24 * kMiB);
  items.push_back(WriteFile("large.bin", large));

  absl::StatusOr<UploadReport> report = UploadFiles(context_, to, items);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->blobs_missing, 302u);
  EXPECT_EQ(report->blobs_uploaded, 302u);
  for (const UploadItem& item : items) {
    absl::StatusOr<std::string> stored = coordinator->ReadAll(item.digest);
    ASSERT_TRUE(stored.ok()) << item.path << ": " << stored.status();
  }

  // Nothing is missing the second time.
  report = UploadFiles(context_, to, items);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->blobs_missing, 0u);
  EXPECT_EQ(report->bytes_sent, 0u);

  // One byte changed in the large file: about one chunk travels.
  large[large.size() / 2] ^= 1;
  items.back() = WriteFile("large.bin", large);
  report = UploadFiles(context_, to, items);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->blobs_missing, 1u);
  EXPECT_LE(report->bytes_sent, 2 * cas::ChunkerOptions().max_size);
  EXPECT_GE(report->bytes_skipped, 16 * kMiB);
  ExpectStored(*coordinator, items.back().digest, large.size());
}

TEST_F(UploadTest, FileChangedSinceHashedIsRefusedNamingIt) {
  std::unique_ptr<cas::BlobStore> coordinator = OpenStore("coordinator");
  std::unique_ptr<BlobServer> server = Serve(*coordinator);
  UploadItem small = WriteFile("a.txt", "before");
  std::ofstream(small.path, std::ios::binary) << "after!";
  absl::StatusOr<UploadReport> report = UploadFiles(context_, PlainPeer(*server), {small});
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(report.status().message(), HasSubstr(small.path.string()));

  UploadItem large = WriteFile("b.bin", RandomBytes(22, 6 * kMiB));
  WriteFile("b.bin", RandomBytes(23, 6 * kMiB));
  report = UploadFiles(context_, PlainPeer(*server), {large});
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(*coordinator->Has(large.digest));
}

TEST_F(UploadTest, BlobsOfALocalStoreUploadOnlyWhatTheReceiverLacks) {
  std::unique_ptr<cas::BlobStore> client = OpenStore("client");
  std::unique_ptr<cas::BlobStore> coordinator = OpenStore("coordinator");
  std::unique_ptr<BlobServer> server = Serve(*coordinator);
  const std::string small = "a small layer";
  const std::string large = RandomBytes(31, 9 * kMiB);  // several chunks: offered, not put
  const std::string present = RandomBytes(32, 2 * kMiB);
  const std::string layer_type = "application/vnd.oci.image.layer.v1.tar";
  const Digest small_digest = digest::Sha256Of(small);
  const Digest large_digest = digest::Sha256Of(large);
  const Digest present_digest = digest::Sha256Of(present);
  ASSERT_TRUE(client->Put(small, small_digest, layer_type).ok());
  ASSERT_TRUE(client->Put(large, large_digest, layer_type).ok());
  ASSERT_TRUE(client->Put(present, present_digest, layer_type).ok());
  ASSERT_TRUE(coordinator->Put(present, present_digest, layer_type).ok());

  const std::vector<Digest> blobs = {small_digest, large_digest, present_digest};
  absl::StatusOr<UploadReport> report = UploadBlobs(context_, PlainPeer(*server), *client, blobs);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->blobs_missing, 2u);
  EXPECT_EQ(report->blobs_uploaded, 2u);
  EXPECT_EQ(report->bytes_sent, small.size() + large.size());
  ExpectStored(*coordinator, small_digest, small.size());
  ExpectStored(*coordinator, large_digest, large.size());
  ExpectStored(*coordinator, present_digest, present.size());
  for (const Digest& blob : blobs) {
    absl::StatusOr<cas::BlobInfo> info = coordinator->Stat(blob);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->media_type, layer_type);
  }

  report = UploadBlobs(context_, PlainPeer(*server), *client, blobs);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->blobs_missing, 0u);
  EXPECT_EQ(report->bytes_sent, 0u);
}

TEST_F(UploadTest, BlobMissingFromTheLocalStoreIsNotFoundNamingIt) {
  std::unique_ptr<cas::BlobStore> client = OpenStore("client");
  std::unique_ptr<cas::BlobStore> coordinator = OpenStore("coordinator");
  std::unique_ptr<BlobServer> server = Serve(*coordinator);
  const Digest absent = digest::Sha256Of("never stored");
  absl::StatusOr<UploadReport> report =
      UploadBlobs(context_, PlainPeer(*server), *client, {absent});
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(report.status().message(), HasSubstr(absent.ToString()));
}

// A sparse multi-GiB file with a few random regions: uploaded to one node,
// then fetched from it by another, and identical at the end.
TEST_F(UploadTest, MultiGiBSparseFileUploadsAndFetches) {
  constexpr uint64_t kSize = uint64_t{3} << 30;
  std::filesystem::path path = dir_.path() / "sparse.img";
  {
    int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(kSize)), 0);
    for (uint64_t at : {uint64_t{0}, kSize / 3, kSize / 2 + 12345, kSize - 3 * kMiB}) {
      std::string bytes = RandomBytes(at, 3 * kMiB);
      ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(at)),
                static_cast<ssize_t>(bytes.size()));
    }
    ::close(fd);
  }
  digest::Sha256 hasher;
  {
    std::ifstream in(path, std::ios::binary);
    std::string buffer(8 * kMiB, '\0');
    while (in.read(buffer.data(), buffer.size()) || in.gcount() > 0) {
      hasher.Update(absl::string_view(buffer.data(), in.gcount()));
    }
  }
  const Digest blob = hasher.Finish();
  std::unique_ptr<cas::BlobStore> first = OpenStore("first");
  std::unique_ptr<cas::BlobStore> second = OpenStore("second");
  std::unique_ptr<BlobServer> server = Serve(*first);
  absl::StatusOr<UploadReport> upload =
      UploadFiles(context_, PlainPeer(*server), {UploadItem{path, blob, ""}});
  ASSERT_TRUE(upload.ok()) << upload.status();
  // The zero runs are one repeated chunk: sent once.
  EXPECT_LT(upload->bytes_sent, 64 * kMiB);
  absl::StatusOr<FetchReport> fetch = FetchBlobs(context_, *second, {blob}, {PlainPeer(*server)});
  ASSERT_TRUE(fetch.ok()) << fetch.status();
  EXPECT_LT(fetch->bytes_received, 64 * kMiB);
  ExpectStored(*second, blob, kSize);
}

}  // namespace
}  // namespace stagefarm::transfer
