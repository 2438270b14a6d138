#include "common/net/node_security.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"

namespace stagefarm::net {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

constexpr NodeRole kCoordinator{.serves = true, .connects_to_coordinator = false};
constexpr NodeRole kWorker{.serves = true, .connects_to_coordinator = true};

// Real key files in a temp dir: this node's keypair in keys/node.{key,pub},
// the coordinator's keypair in coordinator/, and an allow-list in allowed/
// holding one client's public key.
class NodeSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           absl::StrCat("node_security_test_", ::getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    for (const char* sub : {"keys", "coordinator", "allowed"}) {
      std::filesystem::create_directories(dir_ / sub);
    }
    own_ = WriteKeys(dir_ / "keys", "node");
    coordinator_ = WriteKeys(dir_ / "coordinator", "coordinator");
    client_ = WriteKeys(dir_ / "allowed", "client1");
    std::filesystem::remove(dir_ / "allowed/client1.key");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static CurveKeyPair WriteKeys(const std::filesystem::path& dir, const std::string& name) {
    absl::StatusOr<CurveKeyPair> keys = CurveKeyPair::Generate();
    EXPECT_TRUE(keys.ok()) << keys.status();
    absl::Status written = WriteCurveKeyPair(*keys, dir, name);
    EXPECT_TRUE(written.ok()) << written;
    return *keys;
  }

  // Flags for a worker with every CURVE flag pointing at the files above.
  NodeSecurityFlags WorkerFlags() const {
    NodeSecurityFlags flags;
    flags.curve_secret_key = (dir_ / "keys/node.key").string();
    flags.authorized_keys = (dir_ / "allowed").string();
    flags.coordinator_public_key = (dir_ / "coordinator/coordinator.pub").string();
    return flags;
  }

  NodeSecurityFlags CoordinatorFlags() const {
    NodeSecurityFlags flags = WorkerFlags();
    flags.coordinator_public_key.clear();
    return flags;
  }

  std::filesystem::path dir_;
  CurveKeyPair own_;
  CurveKeyPair coordinator_;
  CurveKeyPair client_;
};

TEST_F(NodeSecurityTest, WorkerWithAllKeys_UsesCurveWithLoadedKeys) {
  absl::StatusOr<NodeSecurity> security = LoadNodeSecurity(WorkerFlags(), kWorker);
  ASSERT_TRUE(security.ok()) << security.status();
  EXPECT_FALSE(security->insecure);
  EXPECT_EQ(security->own.public_key, own_.public_key);
  EXPECT_EQ(security->own.secret_key, own_.secret_key);
  EXPECT_THAT(security->authorized_keys, UnorderedElementsAre(client_.public_key));
  EXPECT_EQ(security->coordinator_public_key, coordinator_.public_key);
  EXPECT_EQ(security->Summary(), "CURVE (1 authorised key)");

  absl::StatusOr<SocketSecurity> server = security->ForServer();
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_FALSE(server->insecure());
  absl::StatusOr<SocketSecurity> client = security->ForClient(security->coordinator_public_key);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_FALSE(client->insecure());
}

TEST_F(NodeSecurityTest, CoordinatorNeedsNoCoordinatorKey) {
  absl::StatusOr<NodeSecurity> security = LoadNodeSecurity(CoordinatorFlags(), kCoordinator);
  ASSERT_TRUE(security.ok()) << security.status();
  EXPECT_FALSE(security->insecure);
  EXPECT_EQ(security->own.public_key, own_.public_key);
  EXPECT_EQ(security->authorized_keys.size(), 1u);
  EXPECT_TRUE(security->coordinator_public_key.empty());
}

TEST_F(NodeSecurityTest, InsecureAlone_GivesPlainSockets) {
  NodeSecurityFlags flags;
  flags.insecure = true;
  absl::StatusOr<NodeSecurity> security = LoadNodeSecurity(flags, kWorker);
  ASSERT_TRUE(security.ok()) << security.status();
  EXPECT_TRUE(security->insecure);
  EXPECT_TRUE(security->authorized_keys.empty());
  EXPECT_EQ(security->Summary(), "INSECURE (plain TCP, --insecure)");
  absl::StatusOr<SocketSecurity> server = security->ForServer();
  ASSERT_TRUE(server.ok());
  EXPECT_TRUE(server->insecure());
  absl::StatusOr<SocketSecurity> client = security->ForClient("");
  ASSERT_TRUE(client.ok());
  EXPECT_TRUE(client->insecure());
}

TEST_F(NodeSecurityTest, NeitherKeysNorInsecure_IsRefusedNamingBothWays) {
  for (NodeRole role : {kCoordinator, kWorker}) {
    absl::StatusOr<NodeSecurity> security = LoadNodeSecurity(NodeSecurityFlags{}, role);
    ASSERT_FALSE(security.ok());
    EXPECT_EQ(security.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(security.status().message(), HasSubstr("--curve-secret-key"));
    EXPECT_THAT(security.status().message(), HasSubstr("--authorized-keys"));
    EXPECT_THAT(security.status().message(), HasSubstr("--insecure"));
  }
  absl::StatusOr<NodeSecurity> worker = LoadNodeSecurity(NodeSecurityFlags{}, kWorker);
  EXPECT_THAT(worker.status().message(), HasSubstr("--coordinator-public-key"));
}

TEST_F(NodeSecurityTest, InsecureWithKeys_ConflictsNamingTheKeyFlag) {
  NodeSecurityFlags flags = CoordinatorFlags();
  flags.insecure = true;
  absl::StatusOr<NodeSecurity> security = LoadNodeSecurity(flags, kCoordinator);
  ASSERT_FALSE(security.ok());
  EXPECT_EQ(security.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(security.status().message(),
              HasSubstr("--insecure conflicts with --curve-secret-key"));

  NodeSecurityFlags only_allow_list;
  only_allow_list.authorized_keys = (dir_ / "allowed").string();
  only_allow_list.insecure = true;
  EXPECT_THAT(LoadNodeSecurity(only_allow_list, kCoordinator).status().message(),
              HasSubstr("--insecure conflicts with --authorized-keys"));
}

TEST_F(NodeSecurityTest, ServerWithoutAllowList_NamesTheMissingFlag) {
  NodeSecurityFlags flags = CoordinatorFlags();
  flags.authorized_keys.clear();
  absl::StatusOr<NodeSecurity> security = LoadNodeSecurity(flags, kCoordinator);
  ASSERT_FALSE(security.ok());
  EXPECT_EQ(security.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(security.status().message(), HasSubstr("--authorized-keys is missing"));
}

TEST_F(NodeSecurityTest, AllowListWithoutSecretKey_NamesTheMissingFlag) {
  NodeSecurityFlags flags = CoordinatorFlags();
  flags.curve_secret_key.clear();
  absl::StatusOr<NodeSecurity> security = LoadNodeSecurity(flags, kCoordinator);
  ASSERT_FALSE(security.ok());
  EXPECT_THAT(security.status().message(), HasSubstr("--curve-secret-key is missing"));
}

TEST_F(NodeSecurityTest, WorkerWithoutCoordinatorKey_NamesTheMissingFlag) {
  NodeSecurityFlags flags = WorkerFlags();
  flags.coordinator_public_key.clear();
  absl::StatusOr<NodeSecurity> security = LoadNodeSecurity(flags, kWorker);
  ASSERT_FALSE(security.ok());
  EXPECT_THAT(security.status().message(), HasSubstr("--coordinator-public-key is missing"));
}

TEST_F(NodeSecurityTest, FlagTheRoleDoesNotUse_IsRefusedNotIgnored) {
  absl::StatusOr<NodeSecurity> security = LoadNodeSecurity(WorkerFlags(), kCoordinator);
  ASSERT_FALSE(security.ok());
  EXPECT_THAT(security.status().message(), HasSubstr("--coordinator-public-key"));
  EXPECT_THAT(security.status().message(), HasSubstr("does not use it"));
}

TEST_F(NodeSecurityTest, SecretKeyReadableByOthers_IsRefusedNamingFlagAndFile) {
  ASSERT_EQ(::chmod((dir_ / "keys/node.key").c_str(), 0644), 0);
  absl::StatusOr<NodeSecurity> security = LoadNodeSecurity(WorkerFlags(), kWorker);
  ASSERT_FALSE(security.ok());
  EXPECT_EQ(security.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(security.status().message(), HasSubstr("--curve-secret-key: "));
  EXPECT_THAT(security.status().message(), HasSubstr("node.key: secret key file has mode 0644"));
}

TEST_F(NodeSecurityTest, MissingPublicKeyBesideTheSecretKey_IsRefusedNamingIt) {
  std::filesystem::remove(dir_ / "keys/node.pub");
  absl::StatusOr<NodeSecurity> security = LoadNodeSecurity(WorkerFlags(), kWorker);
  ASSERT_FALSE(security.ok());
  EXPECT_EQ(security.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(security.status().message(), HasSubstr("--curve-secret-key: "));
  EXPECT_THAT(security.status().message(), HasSubstr("node.pub"));
}

TEST_F(NodeSecurityTest, SecretKeyFileNotNamedDotKey_IsRefused) {
  NodeSecurityFlags flags = WorkerFlags();
  flags.curve_secret_key = (dir_ / "keys/node.pub").string();
  absl::StatusOr<NodeSecurity> security = LoadNodeSecurity(flags, kWorker);
  ASSERT_FALSE(security.ok());
  EXPECT_EQ(security.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(security.status().message(), HasSubstr("must name a NAME.key file"));
}

TEST_F(NodeSecurityTest, MalformedPubInAllowList_FailsTheWholeLoadNamingTheFile) {
  std::ofstream(dir_ / "allowed/typo.pub") << "not a key\n";
  absl::StatusOr<NodeSecurity> security = LoadNodeSecurity(WorkerFlags(), kWorker);
  ASSERT_FALSE(security.ok());
  EXPECT_EQ(security.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(security.status().message(), HasSubstr("--authorized-keys: "));
  EXPECT_THAT(security.status().message(), HasSubstr("typo.pub"));
}

TEST_F(NodeSecurityTest, MissingAllowListDirectory_IsRefusedNamingIt) {
  NodeSecurityFlags flags = WorkerFlags();
  flags.authorized_keys = (dir_ / "nope").string();
  absl::StatusOr<NodeSecurity> security = LoadNodeSecurity(flags, kWorker);
  ASSERT_FALSE(security.ok());
  EXPECT_EQ(security.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(security.status().message(), HasSubstr("--authorized-keys: "));
  EXPECT_THAT(security.status().message(), HasSubstr("nope"));
}

TEST_F(NodeSecurityTest, EmptyAllowList_IsRefusedSinceNobodyCouldConnect) {
  std::filesystem::remove(dir_ / "allowed/client1.pub");
  absl::StatusOr<NodeSecurity> security = LoadNodeSecurity(CoordinatorFlags(), kCoordinator);
  ASSERT_FALSE(security.ok());
  EXPECT_THAT(security.status().message(), HasSubstr("--authorized-keys"));
  EXPECT_THAT(security.status().message(), HasSubstr("no *.pub files"));
}

TEST_F(NodeSecurityTest, MalformedCoordinatorKey_IsRefusedNamingFlagAndFile) {
  std::ofstream(dir_ / "coordinator/coordinator.pub", std::ios::trunc) << "short\n";
  absl::StatusOr<NodeSecurity> security = LoadNodeSecurity(WorkerFlags(), kWorker);
  ASSERT_FALSE(security.ok());
  EXPECT_EQ(security.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(security.status().message(), HasSubstr("--coordinator-public-key: "));
  EXPECT_THAT(security.status().message(), HasSubstr("coordinator.pub"));
}

TEST_F(NodeSecurityTest, ForClientWithMalformedServerKey_FailsUnderCurve) {
  absl::StatusOr<NodeSecurity> security = LoadNodeSecurity(WorkerFlags(), kWorker);
  ASSERT_TRUE(security.ok()) << security.status();
  absl::StatusOr<SocketSecurity> client = security->ForClient("not a key");
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace stagefarm::net
