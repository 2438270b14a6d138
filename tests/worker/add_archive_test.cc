// ADD of local archives: tar, tar.gz, tar.bz2, tar.xz and tar.zst unpacked
// into the destination (recognised by content), other files copied as they
// are, --chown applied, and hostile entries refused.
#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"
#include "worker/copy/copy.h"

namespace stagefarm::worker {
namespace {

using ::testing::HasSubstr;

struct Entry {
  std::string name;
  std::string content;  // a directory when the name ends with "/"
  uid_t uid = 0;
};

// A tar archive with `entries`, compressed with `filter` (ARCHIVE_FILTER_*).
std::string MakeArchive(const std::vector<Entry>& entries, int filter) {
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_add_filter(a, filter);
  std::string out(16 << 20, '\0');
  size_t used = 0;
  archive_write_open_memory(a, out.data(), out.size(), &used);
  for (const Entry& e : entries) {
    archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, e.name.c_str());
    const bool dir = e.name.back() == '/';
    archive_entry_set_filetype(entry, dir ? AE_IFDIR : AE_IFREG);
    archive_entry_set_perm(entry, dir ? 0755 : 0640);
    archive_entry_set_uid(entry, e.uid);
    archive_entry_set_gid(entry, e.uid);
    archive_entry_set_size(entry, dir ? 0 : e.content.size());
    archive_write_header(a, entry);
    if (!dir) archive_write_data(a, e.content.data(), e.content.size());
    archive_entry_free(entry);
  }
  archive_write_close(a);
  archive_write_free(a);
  out.resize(used);
  return out;
}

class AddArchiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_.path() / "context");
    std::filesystem::create_directories(dir_.path() / "rootfs");
  }
  void Put(const std::string& name, const std::string& bytes) {
    std::ofstream(dir_.path() / "context" / name, std::ios::binary) << bytes;
  }
  absl::StatusOr<CopyStats> Add(const std::string& source, const std::string& dest,
                                std::optional<Owner> owner = std::nullopt) {
    CopyOptions options{.owner = owner, .reset_owner = true, .mode = std::nullopt,
                        .excludes = {}, .unpack_archives = true};
    return CopyInto(*fs::RootDir::Open(dir_.path() / "context"), {source},
                    *fs::RootDir::Open(dir_.path() / "rootfs"), dest, options);
  }
  std::string Read(const std::string& path) {
    std::ifstream in(dir_.path() / "rootfs" / path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  struct stat Stat(const std::string& path) {
    struct stat info {};
    ::lstat((dir_.path() / "rootfs" / path).c_str(), &info);
    return info;
  }

  stagefarm::testing::TempDir dir_{"add_archive_test"};
};

TEST_F(AddArchiveTest, EveryCompressionIsUnpackedIntoTheDestination) {
  const std::vector<Entry> entries = {{"app/", "", 0}, {"app/main.txt", "main\n", 1000}};
  const std::pair<const char*, int> kinds[] = {{"a.tar", ARCHIVE_FILTER_NONE},
                                               {"a.tar.gz", ARCHIVE_FILTER_GZIP},
                                               {"a.tar.bz2", ARCHIVE_FILTER_BZIP2},
                                               {"a.tar.xz", ARCHIVE_FILTER_XZ},
                                               {"renamed.bin", ARCHIVE_FILTER_ZSTD}};
  for (const auto& [name, filter] : kinds) {
    Put(name, MakeArchive(entries, filter));
    const std::string dest = std::string("/out/") + name;
    absl::StatusOr<CopyStats> added = Add(name, dest);
    ASSERT_TRUE(added.ok()) << name << ": " << added.status();
    EXPECT_EQ(Read(dest.substr(1) + "/app/main.txt"), "main\n") << name;
    EXPECT_EQ(Stat(dest.substr(1) + "/app/main.txt").st_uid, 1000u) << name;
    EXPECT_EQ(Stat(dest.substr(1) + "/app/main.txt").st_mode & 07777, 0640u) << name;
  }
}

TEST_F(AddArchiveTest, NonArchivesAreCopiedAsTheyAre) {
  Put("notes.txt.gz", "not really gzip\n");
  ASSERT_TRUE(Add("notes.txt.gz", "/n/").ok());
  EXPECT_EQ(Read("n/notes.txt.gz"), "not really gzip\n");
}

TEST_F(AddArchiveTest, ChownAppliesToEveryUnpackedEntry) {
  Put("a.tar", MakeArchive({{"d/", "", 5}, {"d/f", "x", 6}}, ARCHIVE_FILTER_NONE));
  ASSERT_TRUE(Add("a.tar", "/o", Owner{42, 43}).ok());
  EXPECT_EQ(Stat("o/d").st_uid, 42u);
  EXPECT_EQ(Stat("o/d/f").st_gid, 43u);
}

TEST_F(AddArchiveTest, HostileEntriesAreRefusedNamingTheArchive) {
  Put("evil.tar", MakeArchive({{"../../escape.txt", "x", 0}}, ARCHIVE_FILTER_NONE));
  absl::StatusOr<CopyStats> added = Add("evil.tar", "/o/");
  ASSERT_FALSE(added.ok());
  EXPECT_THAT(added.status().message(), HasSubstr("evil.tar"));
  EXPECT_THAT(added.status().message(), HasSubstr("escape"));
  EXPECT_FALSE(std::filesystem::exists(dir_.path() / "escape.txt"));
}

}  // namespace
}  // namespace stagefarm::worker
