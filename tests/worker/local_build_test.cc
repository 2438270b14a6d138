// The build context materialised from its index: from the context directory
// and from a real content store holding the files by digest.
#include "worker/build/local_build.h"

#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include "common/cas/blob_store.h"
#include "common/fs/context_index.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/random_blobs.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm::worker {
namespace {

namespace stdfs = std::filesystem;
using ::testing::HasSubstr;

std::string ReadFile(const stdfs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

// What a materialised tree holds at each path: type, mode, owner, content
// or link target; mtime apart.
struct Node {
  mode_t mode = 0;  // type and permission bits
  uid_t uid = 0;
  gid_t gid = 0;
  std::string data;
  int64_t mtime = 0;
  bool operator==(const Node&) const = default;
};

std::map<std::string, Node> Tree(const stdfs::path& root) {
  std::map<std::string, Node> tree;
  for (const stdfs::directory_entry& entry : stdfs::recursive_directory_iterator(root)) {
    struct stat st {};
    EXPECT_EQ(lstat(entry.path().c_str(), &st), 0);
    Node node{st.st_mode, st.st_uid, st.st_gid, "", st.st_mtim.tv_sec};
    if (S_ISREG(st.st_mode)) node.data = ReadFile(entry.path());
    if (S_ISLNK(st.st_mode)) node.data = stdfs::read_symlink(entry.path()).native();
    tree[entry.path().lexically_relative(root).native()] = node;
  }
  return tree;
}

class LocalBuildTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<cas::BlobStore>> store =
        cas::BlobStore::Open(dir_.path() / "cas");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    context_ = dir_.path() / "context";
    Write("a.txt", "alpha\n", 0644);
    Write("bin/run.sh", "#!/bin/sh\necho run\n", 04755);
    Write("src/lib/deep.c", "int deep;\n", 0600);
    Write("src/empty.txt", "", 0640);
    Write("big.bin", stagefarm::testing::RandomBytes(3, 9 << 20), 0644);
    Write("same-as-a.txt", "alpha\n", 0444);  // one blob for two files
    stdfs::create_directories(context_ / "empty-dir");
    stdfs::create_symlink("../a.txt", context_ / "src/link");
    stdfs::create_symlink("/etc/absolute", context_ / "dangling");
    ASSERT_EQ(chmod((context_ / "src/lib").c_str(), 0700), 0);
    ASSERT_EQ(chmod((context_ / "empty-dir").c_str(), 0750), 0);
    std::ofstream(dir_.path() / "Dockerfile") << "FROM scratch\n";
    absl::StatusOr<fs::ContextIndex> index =
        fs::ContextIndex::Build(context_, dir_.path() / "Dockerfile");
    ASSERT_TRUE(index.ok()) << index.status();
    index_ = std::make_unique<fs::ContextIndex>(*std::move(index));
  }

  void Write(const std::string& name, const std::string& content, mode_t mode) {
    const stdfs::path path = context_ / name;
    stdfs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << content;
    ASSERT_EQ(chmod(path.c_str(), mode), 0);
    const struct utimbuf times = {1600000000, 1600000000};
    ASSERT_EQ(utime(path.c_str(), &times), 0);
  }

  // Puts every file of the index into the store, by its content digest.
  void Upload() {
    for (const fs::ContextEntry& entry : index_->entries()) {
      if (entry.type != fs::EntryType::kFile) continue;
      ASSERT_TRUE(store_->Put(ReadFile(context_ / entry.path), *entry.content).ok()) << entry.path;
    }
  }

  stagefarm::testing::TempDir dir_{"local_build_test"};
  std::unique_ptr<cas::BlobStore> store_;
  stdfs::path context_;
  std::unique_ptr<fs::ContextIndex> index_;
};

TEST_F(LocalBuildTest, ContextFromTheStoreIsTheContextFromTheDirectory) {
  Upload();
  const stdfs::path from_dir = dir_.path() / "from-dir";
  const stdfs::path from_store = dir_.path() / "from-store";
  ASSERT_TRUE(MaterializeContext(context_, *index_, {}, from_dir).ok());
  absl::Status made = MaterializeContextFromStore(*store_, *index_, {}, from_store);
  ASSERT_TRUE(made.ok()) << made;

  std::map<std::string, Node> expected = Tree(from_dir);
  std::map<std::string, Node> actual = Tree(from_store);
  for (const fs::ContextEntry& entry : index_->entries()) {
    EXPECT_TRUE(expected.count(entry.path)) << entry.path;
  }
  for (auto& [path, node] : expected) {
    SCOPED_TRACE(path);
    ASSERT_TRUE(actual.count(path));
    // The index carries the times the walk saw: both trees have them.
    if (S_ISREG(node.mode)) {
      EXPECT_EQ(node.mtime, 1600000000);
    }
    EXPECT_EQ(actual[path], node);
    EXPECT_EQ(node.uid, 0u);
    EXPECT_EQ(node.gid, 0u);
  }
  EXPECT_EQ(actual.size(), expected.size());
  EXPECT_EQ(actual["bin/run.sh"].mode, S_IFREG | index_->Find("bin/run.sh")->mode);
  EXPECT_EQ(actual["src/empty.txt"].mode, S_IFREG | 0640);
  EXPECT_EQ(actual["src/lib"].mode, S_IFDIR | 0700);
  EXPECT_EQ(actual["empty-dir"].mode, S_IFDIR | 0750);
  EXPECT_EQ(actual["src/link"].data, "../a.txt");
  EXPECT_EQ(actual["dangling"].data, "/etc/absolute");
  EXPECT_EQ(actual["big.bin"].data.size(), size_t{9} << 20);
}

TEST_F(LocalBuildTest, ContextFromTheStoreHoldsOnlyWhatTheSourcesSelect) {
  Upload();
  const stdfs::path dest = dir_.path() / "selected";
  absl::Status made = MaterializeContextFromStore(*store_, *index_, {"src/lib", "a.txt"}, dest);
  ASSERT_TRUE(made.ok()) << made;
  std::map<std::string, Node> tree = Tree(dest);
  EXPECT_TRUE(tree.count("a.txt"));
  EXPECT_TRUE(tree.count("src/lib/deep.c"));
  EXPECT_FALSE(tree.count("big.bin"));
  EXPECT_FALSE(tree.count("src/empty.txt"));
}

TEST_F(LocalBuildTest, ContentMissingFromTheStoreIsNotFoundNamingPathAndDigest) {
  Upload();
  const fs::ContextEntry* deep = index_->Find("src/lib/deep.c");
  ASSERT_NE(deep, nullptr);
  ASSERT_TRUE(store_->Delete(*deep->content).ok());
  absl::Status made = MaterializeContextFromStore(*store_, *index_, {}, dir_.path() / "dest");
  EXPECT_EQ(made.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(made.message(), HasSubstr("src/lib/deep.c"));
  EXPECT_THAT(made.message(), HasSubstr(deep->content->ToString()));
}

}  // namespace
}  // namespace stagefarm::worker
