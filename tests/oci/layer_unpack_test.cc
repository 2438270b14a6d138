#include "common/oci/layer_unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/compressed_blobs.h"
#include "tests/testing/random_blobs.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm::oci {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;
namespace stdfs = std::filesystem;

constexpr time_t kMtime = 1700000000;

// One tar entry as a test writes it; fields a type does not use are ignored.
struct Entry {
  std::string path = {};
  mode_t type = AE_IFREG;
  std::string content = {};
  std::string symlink = {};   // target of an AE_IFLNK
  std::string hardlink = {};  // makes the entry a hardlink to this name
  mode_t mode = 0644;
  int64_t uid = 0;
  int64_t gid = 0;
  time_t mtime = kMtime;
  std::vector<std::pair<std::string, std::string>> xattrs = {};
  unsigned major = 0;
  unsigned minor = 0;
};

enum class Compression { kNone, kGzip, kZstd, kBzip2, kXz };

la_ssize_t AppendCallback(archive*, void* out, const void* data, size_t size) {
  static_cast<std::string*>(out)->append(static_cast<const char*>(data), size);
  return static_cast<la_ssize_t>(size);
}

// A pax tar of `entries`, built with libarchive's writer as image builders'
// tar writers would produce it (xattrs as SCHILY.xattr records).
std::string MakeTar(const std::vector<Entry>& entries,
                    Compression compression = Compression::kNone) {
  std::string out;
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (compression == Compression::kGzip) archive_write_add_filter_gzip(a);
  if (compression == Compression::kZstd) archive_write_add_filter_zstd(a);
  if (compression == Compression::kBzip2) archive_write_add_filter_bzip2(a);
  if (compression == Compression::kXz) archive_write_add_filter_xz(a);
  archive_write_set_bytes_in_last_block(a, 1);
  EXPECT_EQ(archive_write_open(a, &out, nullptr, AppendCallback, nullptr), ARCHIVE_OK)
      << archive_error_string(a);
  for (const Entry& e : entries) {
    archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, e.path.c_str());
    archive_entry_set_filetype(entry, e.type);
    archive_entry_set_perm(entry, e.mode);
    archive_entry_set_uid(entry, e.uid);
    archive_entry_set_gid(entry, e.gid);
    archive_entry_set_mtime(entry, e.mtime, 0);
    if (e.type == AE_IFLNK) archive_entry_set_symlink(entry, e.symlink.c_str());
    if (!e.hardlink.empty()) archive_entry_set_hardlink(entry, e.hardlink.c_str());
    if (e.type == AE_IFCHR || e.type == AE_IFBLK) {
      archive_entry_set_rdevmajor(entry, e.major);
      archive_entry_set_rdevminor(entry, e.minor);
    }
    for (const auto& [key, value] : e.xattrs) {
      archive_entry_xattr_add_entry(entry, key.c_str(), value.data(), value.size());
    }
    const bool has_data = e.type == AE_IFREG && e.hardlink.empty();
    archive_entry_set_size(entry, has_data ? static_cast<la_int64_t>(e.content.size()) : 0);
    EXPECT_EQ(archive_write_header(a, entry), ARCHIVE_OK) << archive_error_string(a);
    if (has_data && !e.content.empty()) {
      EXPECT_EQ(archive_write_data(a, e.content.data(), e.content.size()),
                static_cast<la_ssize_t>(e.content.size()));
    }
    archive_entry_free(entry);
  }
  EXPECT_EQ(archive_write_close(a), ARCHIVE_OK);
  archive_write_free(a);
  return out;
}

// A reader handing out `bytes` in small pieces, so entries straddle reads;
// how far it has read in `*offset` when given.
LayerReader ReaderOf(const std::string& bytes, size_t piece = 1000, size_t* offset = nullptr) {
  std::shared_ptr<size_t> owned;
  if (offset == nullptr) {
    owned = std::make_shared<size_t>(0);
    offset = owned.get();
  }
  return [&bytes, piece, offset, owned]() -> absl::StatusOr<absl::string_view> {
    const size_t n = std::min(piece, bytes.size() - *offset);
    absl::string_view out(bytes.data() + *offset, n);
    *offset += n;
    return out;
  };
}

using testing::GzipMember;
using testing::ZstdFrame;

// FNAME, FEXTRA, FCOMMENT and FHCRC in a gzip header, as few tools write them.
const testing::GzipFields kAllGzipFields{.extra = "stagefarm extra field",
                                         .name = "layer.tar",
                                         .comment = "made by a test",
                                         .header_crc = true};

// Threads of this process, as the kernel counts them.
size_t ThreadCount() {
  size_t threads = 0;
  for ([[maybe_unused]] const auto& task : stdfs::directory_iterator("/proc/self/task")) ++threads;
  return threads;
}

// ThreadCount once it is down to `expected`, or after a second: a thread
// that has ended leaves the kernel's list a moment after pthread_join
// returns; one left running never does.
size_t SettledThreadCount(size_t expected) {
  for (int i = 0; i < 1000 && ThreadCount() > expected; ++i) usleep(1000);
  return ThreadCount();
}

std::string ReadFile(const stdfs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct stat Lstat(const stdfs::path& path) {
  struct stat st {};
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path;
  return st;
}

std::vector<std::string> Names(const stdfs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : stdfs::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  return names;
}

// The root sits one level below the test's directory, beside "outside", so
// an escape has somewhere real to land and be detected.
class LayerUnpackTest : public ::testing::Test {
 protected:
  LayerUnpackTest() : dir_("layer_unpack_test") {
    stdfs::create_directory(root_path());
    stdfs::create_directory(outside_path());
    std::ofstream(outside_path() / "secret") << "outside";
  }
  stdfs::path root_path() const { return dir_.path() / "root"; }
  stdfs::path outside_path() const { return dir_.path() / "outside"; }

  absl::StatusOr<ApplyStats> Apply(const std::string& tar, ApplyOptions options = {}) {
    absl::StatusOr<fs::RootDir> root = fs::RootDir::Open(root_path());
    if (!root.ok()) return root.status();
    return ApplyLayer(*root, ReaderOf(tar), options);
  }
  absl::StatusOr<ApplyStats> Apply(const std::vector<Entry>& entries) {
    return Apply(MakeTar(entries));
  }

  testing::TempDir dir_;
};

TEST_F(LayerUnpackTest, EveryEntryType_IsCreatedWithOwnerModeAndMtime) {
  const std::string content(300000, 'x');  // spans many reads and blocks
  absl::StatusOr<ApplyStats> stats = Apply({
      {.path = "./dir/", .type = AE_IFDIR, .mode = 0750, .uid = 1000, .gid = 1001},
      {.path = "dir/file", .content = content, .mode = 0640, .uid = 1000, .gid = 1001},
      {.path = "dir/suid", .content = "#!", .mode = 04755, .uid = 0, .gid = 0},
      {.path = "dir/sgid", .type = AE_IFDIR, .mode = 02775, .uid = 5, .gid = 50},
      {.path = "tmp", .type = AE_IFDIR, .mode = 01777},
      {.path = "dir/link", .type = AE_IFLNK, .symlink = "../nowhere", .uid = 7, .gid = 8},
      {.path = "dir/hard", .hardlink = "dir/file"},
      {.path = "dev/null", .type = AE_IFCHR, .mode = 0666, .major = 1, .minor = 3},
      {.path = "dev/loop0", .type = AE_IFBLK, .mode = 0660, .gid = 6, .major = 7, .minor = 0},
      {.path = "run/fifo", .type = AE_IFIFO, .mode = 0600, .uid = 3},
  });
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->entries, 10u);
  EXPECT_EQ(stats->bytes, content.size() + 2);
  EXPECT_EQ(stats->whiteouts, 0u);

  const struct stat dir = Lstat(root_path() / "dir");
  EXPECT_TRUE(S_ISDIR(dir.st_mode));
  EXPECT_EQ(dir.st_mode & 07777, 0750u);
  EXPECT_EQ(dir.st_uid, 1000u);
  EXPECT_EQ(dir.st_gid, 1001u);
  // Set after dir/file, dir/link, ... were written into it.
  EXPECT_EQ(dir.st_mtim.tv_sec, kMtime);

  const struct stat file = Lstat(root_path() / "dir" / "file");
  EXPECT_TRUE(S_ISREG(file.st_mode));
  EXPECT_EQ(file.st_mode & 07777, 0640u);
  EXPECT_EQ(file.st_uid, 1000u);
  EXPECT_EQ(file.st_mtim.tv_sec, kMtime);
  EXPECT_EQ(file.st_nlink, 2u);
  EXPECT_EQ(ReadFile(root_path() / "dir" / "file"), content);

  EXPECT_EQ(Lstat(root_path() / "dir" / "suid").st_mode & 07777, 04755u);
  EXPECT_EQ(Lstat(root_path() / "dir" / "sgid").st_mode & 07777, 02775u);
  EXPECT_EQ(Lstat(root_path() / "tmp").st_mode & 07777, 01777u);

  const struct stat link = Lstat(root_path() / "dir" / "link");
  EXPECT_TRUE(S_ISLNK(link.st_mode));
  EXPECT_EQ(link.st_uid, 7u);
  EXPECT_EQ(link.st_gid, 8u);
  EXPECT_EQ(link.st_mtim.tv_sec, kMtime);
  EXPECT_EQ(stdfs::read_symlink(root_path() / "dir" / "link"), "../nowhere");

  EXPECT_EQ(Lstat(root_path() / "dir" / "hard").st_ino, file.st_ino);

  const struct stat null = Lstat(root_path() / "dev" / "null");
  EXPECT_TRUE(S_ISCHR(null.st_mode));
  EXPECT_EQ(null.st_rdev, makedev(1, 3));
  EXPECT_EQ(null.st_mode & 07777, 0666u);
  const struct stat loop = Lstat(root_path() / "dev" / "loop0");
  EXPECT_TRUE(S_ISBLK(loop.st_mode));
  EXPECT_EQ(loop.st_rdev, makedev(7, 0));
  EXPECT_EQ(loop.st_gid, 6u);
  const struct stat fifo = Lstat(root_path() / "run" / "fifo");
  EXPECT_TRUE(S_ISFIFO(fifo.st_mode));
  EXPECT_EQ(fifo.st_uid, 3u);
  // Parents the tar does not list are made 0755.
  EXPECT_EQ(Lstat(root_path() / "run").st_mode & 07777, 0755u);
}

TEST_F(LayerUnpackTest, Xattrs_UserAndFileCapabilitySurviveTheChown) {
  // struct vfs_cap_data, revision 2: effective flag, cap_net_raw (13) permitted.
  const std::string capability(
      "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00",
      20);
  absl::StatusOr<ApplyStats> stats = Apply({
      {.path = "ping",
       .content = "elf",
       .mode = 04755,
       .uid = 1000,
       .xattrs = {{"user.origin", "debian"}, {"security.capability", capability}}},
      {.path = "d", .type = AE_IFDIR, .xattrs = {{"user.dir", "yes"}}},
  });
  ASSERT_TRUE(stats.ok()) << stats.status();
  const std::string ping = (root_path() / "ping").string();
  char buffer[64];
  ssize_t n = lgetxattr(ping.c_str(), "user.origin", buffer, sizeof(buffer));
  EXPECT_EQ(std::string(buffer, std::max<ssize_t>(n, 0)), "debian");
  n = lgetxattr(ping.c_str(), "security.capability", buffer, sizeof(buffer));
  EXPECT_EQ(std::string(buffer, std::max<ssize_t>(n, 0)), capability);
  EXPECT_EQ(Lstat(ping).st_mode & 07777, 04755u);
  n = lgetxattr((root_path() / "d").c_str(), "user.dir", buffer, sizeof(buffer));
  EXPECT_EQ(std::string(buffer, std::max<ssize_t>(n, 0)), "yes");
}

TEST_F(LayerUnpackTest, PreserveOwnershipOff_LeavesEntriesToTheCaller) {
  ApplyOptions options;
  options.preserve_ownership = false;
  ASSERT_TRUE(
      Apply(MakeTar({{.path = "f", .content = "x", .uid = 1234, .gid = 1234}}), options).ok());
  EXPECT_EQ(Lstat(root_path() / "f").st_uid, getuid());
}

TEST_F(LayerUnpackTest, LaterEntries_ReplaceEarlierOnesOfAnotherType) {
  ASSERT_TRUE(Apply({{.path = "a/deep/file", .content = "lower"},
                     {.path = "b", .content = "file"},
                     {.path = "c", .type = AE_IFDIR},
                     {.path = "c/kept", .content = "kept"}})
                  .ok());
  ASSERT_TRUE(Apply({{.path = "a", .content = "a file over a directory"},
                     {.path = "b", .type = AE_IFDIR, .mode = 0700},
                     {.path = "c", .type = AE_IFDIR, .mode = 0711}})
                  .ok());
  EXPECT_EQ(ReadFile(root_path() / "a"), "a file over a directory");
  EXPECT_TRUE(S_ISDIR(Lstat(root_path() / "b").st_mode));
  // A directory over a directory keeps its contents and takes the new mode.
  EXPECT_EQ(ReadFile(root_path() / "c" / "kept"), "kept");
  EXPECT_EQ(Lstat(root_path() / "c").st_mode & 07777, 0711u);
}

TEST_F(LayerUnpackTest, Whiteouts_RemoveFilesAndTreesOfLowerLayers) {
  ASSERT_TRUE(Apply({{.path = "gone", .content = "x"},
                     {.path = "dir/sub/deep/file", .content = "x"},
                     {.path = "dir/stays", .content = "x"}})
                  .ok());
  absl::StatusOr<ApplyStats> stats = Apply({{.path = ".wh.gone"},
                                            {.path = "dir/.wh.sub"},
                                            {.path = "dir/.wh.never-existed"},
                                            {.path = "missing/.wh.x"}});
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->whiteouts, 4u);
  EXPECT_THAT(Names(root_path()), UnorderedElementsAre("dir"));
  EXPECT_THAT(Names(root_path() / "dir"), UnorderedElementsAre("stays"));
}

TEST_F(LayerUnpackTest, OpaqueMarker_ClearsLowerEntriesWhetherBeforeOrAfterNewOnes) {
  ASSERT_TRUE(Apply({{.path = "a/old", .content = "x"},
                     {.path = "a/olddir/x", .content = "x"},
                     {.path = "b/old", .content = "x"},
                     {.path = "b/sub/old", .content = "x"}})
                  .ok());
  absl::StatusOr<ApplyStats> stats = Apply({
      // Marker after this layer's entries: they are kept.
      {.path = "a", .type = AE_IFDIR},
      {.path = "a/new1", .content = "new"},
      {.path = "a/.wh..wh..opq"},
      {.path = "a/new2", .content = "new"},
      // Marker first; this layer's b/sub replaces the lower one's contents.
      {.path = "b", .type = AE_IFDIR},
      {.path = "b/.wh..wh..opq"},
      {.path = "b/sub", .type = AE_IFDIR},
      {.path = "b/sub/new", .content = "new"},
  });
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->whiteouts, 2u);
  EXPECT_THAT(Names(root_path() / "a"), UnorderedElementsAre("new1", "new2"));
  EXPECT_THAT(Names(root_path() / "b"), UnorderedElementsAre("sub"));
  EXPECT_THAT(Names(root_path() / "b" / "sub"), UnorderedElementsAre("new"));
}

TEST_F(LayerUnpackTest, OpaqueMarker_KeepsThisLayersSubdirectoryButClearsItsLowerContents) {
  ASSERT_TRUE(
      Apply({{.path = "d/sub/old", .content = "x"}, {.path = "d/other", .content = "x"}}).ok());
  ASSERT_TRUE(Apply({{.path = "d", .type = AE_IFDIR},
                     {.path = "d/sub", .type = AE_IFDIR},
                     {.path = "d/sub/new", .content = "x"},
                     {.path = "d/.wh..wh..opq"}})
                  .ok());
  EXPECT_THAT(Names(root_path() / "d"), UnorderedElementsAre("sub"));
  EXPECT_THAT(Names(root_path() / "d" / "sub"), UnorderedElementsAre("new"));
}

TEST_F(LayerUnpackTest, OverlayWhiteouts_BecomeCharDevicesAndTheOpaqueXattr) {
  ApplyOptions options;
  options.whiteouts = ApplyOptions::Whiteouts::kOverlay;
  absl::StatusOr<ApplyStats> stats = Apply(MakeTar({{.path = ".wh.gone"},
                                                    {.path = "d", .type = AE_IFDIR},
                                                    {.path = "d/.wh..wh..opq"},
                                                    {.path = "d/kept", .content = "x"},
                                                    {.path = "d/replaced", .content = "x"},
                                                    {.path = "d/.wh.replaced"},
                                                    {.path = "implicit/.wh..wh..opq"},
                                                    {.path = "implicit/sub/.wh.x"},
                                                    {.path = ".wh.redo"},
                                                    {.path = "redo", .type = AE_IFDIR}}),
                                           options);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->whiteouts, 6u);
  for (const char* whiteout : {"gone", "d/replaced", "implicit/sub/x"}) {
    const struct stat st = Lstat(root_path() / whiteout);
    EXPECT_TRUE(S_ISCHR(st.st_mode)) << whiteout;
    EXPECT_EQ(st.st_rdev, makedev(0, 0)) << whiteout;
  }
  EXPECT_EQ(ReadFile(root_path() / "d/kept"), "x");
  for (const char* dir : {"d", "implicit", "redo"}) {
    char value[4] = {};
    EXPECT_EQ(lgetxattr((root_path() / dir).c_str(), "trusted.overlay.opaque", value, 4), 1) << dir;
    EXPECT_EQ(value[0], 'y') << dir;
  }
  EXPECT_EQ(lgetxattr((root_path() / "implicit/sub").c_str(), "trusted.overlay.opaque", nullptr, 0),
            -1);
}

TEST_F(LayerUnpackTest, CompressedLayers_GzipAndZstdAreRead) {
  for (Compression compression : {Compression::kGzip, Compression::kZstd}) {
    const std::string tar =
        MakeTar({{.path = "etc/os-release", .content = "ID=debian\n"}}, compression);
    ASSERT_NE(tar.substr(0, 2), "et");
    absl::StatusOr<ApplyStats> stats = Apply(tar);
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(ReadFile(root_path() / "etc" / "os-release"), "ID=debian\n");
    stdfs::remove_all(root_path() / "etc");
  }
}

TEST_F(LayerUnpackTest, CompressedLayers_GzipMembersAndZstdFramesAreOneTar) {
  const std::string big = testing::RandomBytes(3, 3 << 20);
  const std::string tar = MakeTar({{.path = "etc/os-release", .content = "ID=debian\n"},
                                   {.path = "big", .content = big},
                                   {.path = "last", .content = "x"}});
  const size_t half = tar.size() / 2 + 77;  // inside "big"
  const std::string head = tar.substr(0, half);
  const std::string rest = tar.substr(half);
  const size_t threads = ThreadCount();
  for (const std::string& layer : {GzipMember(tar, 6, &kAllGzipFields),
                                   GzipMember(head, 1) + GzipMember(rest, 6, &kAllGzipFields),
                                   ZstdFrame(tar), ZstdFrame(head) + ZstdFrame(rest)}) {
    absl::StatusOr<ApplyStats> stats = Apply(layer);
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(stats->entries, 3u);
    EXPECT_EQ(ReadFile(root_path() / "etc" / "os-release"), "ID=debian\n");
    EXPECT_TRUE(ReadFile(root_path() / "big") == big);
    EXPECT_EQ(ReadFile(root_path() / "last"), "x");
    EXPECT_EQ(SettledThreadCount(threads), threads);
    stdfs::remove_all(root_path());
    stdfs::create_directory(root_path());
  }
}

// A layer whose tar fits in the first buffer (1 MiB) is decompressed on the
// caller's thread; a larger one on a thread of its own after that.
TEST_F(LayerUnpackTest, CompressedLayers_OnlyALargeLayerIsReadFromAnotherThread) {
  absl::StatusOr<fs::RootDir> root = fs::RootDir::Open(root_path());
  ASSERT_TRUE(root.ok());
  for (const size_t size : {size_t{100000}, size_t{3} << 20}) {
    const std::string layer =
        GzipMember(MakeTar({{.path = "f", .content = testing::RandomBytes(8, size)}}), 1);
    size_t offset = 0;
    bool other_thread = false;
    absl::StatusOr<ApplyStats> stats =
        ApplyLayer(*root,
                   [&, caller = std::this_thread::get_id()]() -> absl::StatusOr<absl::string_view> {
                     other_thread |= std::this_thread::get_id() != caller;
                     absl::string_view piece = absl::string_view(layer).substr(offset, 65536);
                     offset += piece.size();
                     return piece;
                   },
                   {});
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(other_thread, size > (1 << 20)) << size;
  }
}

// What the decompressor does not know (ADD's local archives) is libarchive's.
TEST_F(LayerUnpackTest, CompressedLayers_Bzip2AndXzAreRead) {
  for (Compression compression : {Compression::kBzip2, Compression::kXz}) {
    const std::string tar = MakeTar({{.path = "f", .content = "bz or xz"}}, compression);
    absl::StatusOr<ApplyStats> stats = Apply(tar);
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(ReadFile(root_path() / "f"), "bz or xz");
    stdfs::remove(root_path() / "f");
  }
}

// Every way a compressed layer can be broken stops the unpack with the
// decompressor's DataLoss, wherever in the blob it is (after the tar's end
// included), and leaves no thread behind: a layer decompressed on the
// caller's thread alone (under 1 MiB of tar) and one with a thread.
TEST_F(LayerUnpackTest, CompressedLayers_BrokenStreamsAreDataLossAndLeaveNoThread) {
  for (const size_t size : {size_t{600000}, size_t{3} << 20}) {
    const std::string tar = MakeTar({{.path = "a", .content = testing::RandomBytes(4, size)},
                                     {.path = "b", .content = std::string(300000, 'b')}});
    const std::string gzip = GzipMember(tar, 1);
    const std::string zstd = ZstdFrame(tar);
    auto flipped = [](std::string bytes, size_t at) {
      bytes[at] = static_cast<char>(bytes[at] ^ 0x01);
      return bytes;
    };
    // The first block's header says final, type 3 (reserved).
    std::string garbled = gzip;
    garbled[10] = '\x07';
    struct Case {
      std::string layer;
      std::string message;
    };
    const std::vector<Case> cases = {
        {garbled, "gzip: member 1 (at byte 0): corrupt deflate data"},
        {flipped(gzip, gzip.size() - 8), "CRC32 of the data is"},
        {flipped(gzip, gzip.size() - 4), "the trailer's ISIZE says"},
        {gzip.substr(0, gzip.size() / 2), "gzip: truncated: the stream ends at byte"},
        {gzip.substr(0, gzip.size() - 2), "inside the trailer of member 1"},
        {gzip + "trailing", absl::StrCat("gzip: trailing garbage at byte ", gzip.size())},
        {zstd.substr(0, zstd.size() / 2), "zstd: truncated"},
        {zstd + "trailing", absl::StrCat("zstd: trailing garbage at byte ", zstd.size())},
    };
    const size_t threads = ThreadCount();
    for (const Case& c : cases) {
      absl::StatusOr<ApplyStats> stats = Apply(c.layer);
      EXPECT_TRUE(absl::IsDataLoss(stats.status()))
          << size << ": " << c.message << ": " << stats.status();
      EXPECT_THAT(stats.status().message(), HasSubstr(c.message)) << size;
      EXPECT_EQ(SettledThreadCount(threads), threads) << size << ": " << c.message;
      stdfs::remove_all(root_path());
      stdfs::create_directory(root_path());
    }
  }
}

TEST_F(LayerUnpackTest, CompressedLayers_ReaderErrorMidStreamIsReturnedAsItIs) {
  const std::string layer =
      GzipMember(MakeTar({{.path = "a", .content = testing::RandomBytes(5, 4 << 20)}}), 1);
  absl::StatusOr<fs::RootDir> root = fs::RootDir::Open(root_path());
  ASSERT_TRUE(root.ok());
  const size_t threads = ThreadCount();
  size_t offset = 0;
  const LayerReader pieces = ReaderOf(layer, 65536, &offset);
  absl::StatusOr<ApplyStats> stats = ApplyLayer(*root,
                                                [&]() -> absl::StatusOr<absl::string_view> {
                                                  if (offset >= layer.size() / 2)
                                                    return absl::DataLossError("chunk 7");
                                                  return pieces();
                                                },
                                                {});
  EXPECT_TRUE(absl::IsDataLoss(stats.status())) << stats.status();
  EXPECT_EQ(stats.status().message(), "chunk 7");
  EXPECT_EQ(SettledThreadCount(threads), threads);
}

// An entry refused partway through a large layer stops the inflating thread
// where it is: the rest of the blob is never read.
TEST_F(LayerUnpackTest, CompressedLayers_WriterErrorStopsTheInflatingThreadEarly) {
  constexpr size_t kMiB = 1 << 20;
  const std::string layer =
      GzipMember(MakeTar({{.path = "before", .content = testing::RandomBytes(6, 8 * kMiB)},
                          {.path = "../../escape", .content = "x"},
                          {.path = "after", .content = testing::RandomBytes(7, 32 * kMiB)}}),
                 1);
  absl::StatusOr<fs::RootDir> root = fs::RootDir::Open(root_path());
  ASSERT_TRUE(root.ok());
  const size_t threads = ThreadCount();
  size_t offset = 0;
  absl::StatusOr<ApplyStats> stats = ApplyLayer(*root, ReaderOf(layer, 65536, &offset), {});
  EXPECT_TRUE(absl::IsInvalidArgument(stats.status())) << stats.status();
  EXPECT_THAT(stats.status().message(), HasSubstr("\"../../escape\""));
  EXPECT_EQ(SettledThreadCount(threads), threads);
  // The escape is at 8 MiB; the thread may have run a few 1 MiB buffers ahead.
  EXPECT_LT(offset, 16 * kMiB) << "of " << layer.size();
  EXPECT_TRUE(stdfs::exists(root_path() / "before"));
  EXPECT_FALSE(stdfs::exists(root_path() / "after"));
}

// Hostile input. Each case decides between "refused with an error naming the
// entry" and "lands inside the root"; never outside.

// moby's pkg/archive refuses a name whose ".." leaves the root (breakoutError);
// containerd clamps it to the root (fs.RootPath). We refuse: such a name only
// comes from a broken or malicious image, and clamping would write files the
// image author did not ask for.
TEST_F(LayerUnpackTest, Hostile_DotDotEscapeIsRefusedNamingTheEntry) {
  absl::StatusOr<ApplyStats> stats = Apply({{.path = "../../etc/passwd", .content = "root::0:0"}});
  EXPECT_TRUE(absl::IsInvalidArgument(stats.status())) << stats.status();
  EXPECT_THAT(stats.status().message(), HasSubstr("\"../../etc/passwd\""));
  EXPECT_THAT(stats.status().message(), HasSubstr("escapes the root"));
  stats = Apply({{.path = "a/../../x", .content = "x"}});
  EXPECT_TRUE(absl::IsInvalidArgument(stats.status())) << stats.status();
  EXPECT_TRUE(Names(root_path()).empty());
  EXPECT_FALSE(stdfs::exists(dir_.path() / "x"));
  // A ".." that stays inside is only a detour.
  ASSERT_TRUE(Apply({{.path = "a/b/../../c", .content = "x"}}).ok());
  EXPECT_EQ(ReadFile(root_path() / "c"), "x");
}

// Every tar tool strips a leading "/" (GNU tar, containerd, moby): the entry
// lands at the same path inside the root.
TEST_F(LayerUnpackTest, Hostile_AbsolutePathLandsInsideTheRoot) {
  ASSERT_TRUE(Apply({{.path = "/abs/path", .content = "x"}}).ok());
  EXPECT_EQ(ReadFile(root_path() / "abs" / "path"), "x");
}

// containerd resolves each entry's parent with fs.RootPath, which follows
// symlinks as if the root were "/": "evil -> /" then "evil/etc/passwd" writes
// <root>/etc/passwd. RESOLVE_IN_ROOT gives the same answer from the kernel.
TEST_F(LayerUnpackTest, Hostile_SymlinkToSlashThenEntryThroughItLandsInsideTheRoot) {
  const std::string host_passwd = ReadFile("/etc/passwd");
  const struct stat host_before = Lstat("/etc/passwd");
  absl::StatusOr<ApplyStats> stats = Apply({
      {.path = "evil", .type = AE_IFLNK, .symlink = "/"},
      {.path = "evil/etc/passwd", .content = "pwned::0:0::/:/bin/sh\n"},
  });
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(ReadFile(root_path() / "etc" / "passwd"), "pwned::0:0::/:/bin/sh\n");
  EXPECT_EQ(ReadFile("/etc/passwd"), host_passwd);
  const struct stat host_after = Lstat("/etc/passwd");
  EXPECT_EQ(host_after.st_ino, host_before.st_ino);
  EXPECT_EQ(host_after.st_mtim.tv_sec, host_before.st_mtim.tv_sec);
  EXPECT_EQ(host_after.st_mtim.tv_nsec, host_before.st_mtim.tv_nsec);
  EXPECT_TRUE(stdfs::is_symlink(root_path() / "evil"));
}

// A chain of relative links whose ".." would climb out is clamped at the root
// at every step, as in a chroot.
TEST_F(LayerUnpackTest, Hostile_SymlinkChainWithDotDotStaysInsideTheRoot) {
  absl::StatusOr<ApplyStats> stats = Apply({
      {.path = "a/b", .type = AE_IFDIR},
      {.path = "a/b/up", .type = AE_IFLNK, .symlink = "../../../.."},
      {.path = "hop", .type = AE_IFLNK, .symlink = "a/b/up/a/b/up/outside"},
      {.path = "outside", .type = AE_IFDIR},
      {.path = "hop/secret", .content = "overwritten"},
      {.path = "a/b/up/escaped", .content = "x"},
  });
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(ReadFile(outside_path() / "secret"), "outside");
  EXPECT_EQ(ReadFile(root_path() / "outside" / "secret"), "overwritten");
  EXPECT_EQ(ReadFile(root_path() / "escaped"), "x");
  EXPECT_FALSE(stdfs::exists(dir_.path() / "escaped"));
}

// A parent that is a dangling symlink is an error (containerd would make the
// directory it points at, inside the root); nothing is created anywhere.
TEST_F(LayerUnpackTest, Hostile_EntryBelowDanglingSymlinkIsRefused) {
  absl::StatusOr<ApplyStats> stats = Apply({
      {.path = "dangling", .type = AE_IFLNK, .symlink = "../../../outside/newdir"},
      {.path = "dangling/file", .content = "x"},
  });
  EXPECT_TRUE(absl::IsFailedPrecondition(stats.status())) << stats.status();
  EXPECT_THAT(stats.status().message(), HasSubstr("\"dangling/file\""));
  EXPECT_FALSE(stdfs::exists(outside_path() / "newdir"));
  EXPECT_FALSE(stdfs::exists(root_path() / "outside"));
}

// A replaced entry is removed without following it: a file entry over a
// symlink to a host directory replaces the symlink.
TEST_F(LayerUnpackTest, Hostile_FileOverSymlinkReplacesTheLinkNotItsTarget) {
  ASSERT_TRUE(Apply({{.path = "link", .type = AE_IFLNK, .symlink = outside_path().string()},
                     {.path = "link", .content = "replaced"}})
                  .ok());
  EXPECT_FALSE(stdfs::is_symlink(root_path() / "link"));
  EXPECT_EQ(ReadFile(root_path() / "link"), "replaced");
  EXPECT_EQ(ReadFile(outside_path() / "secret"), "outside");
}

// moby refuses a hardlink target outside the destination ("invalid hardlink");
// containerd clamps it. As for names, a ".." escape is refused.
TEST_F(LayerUnpackTest, Hostile_HardlinkClimbingOutIsRefused) {
  absl::StatusOr<ApplyStats> stats = Apply({{.path = "h", .hardlink = "../../outside/secret"}});
  EXPECT_TRUE(absl::IsInvalidArgument(stats.status())) << stats.status();
  EXPECT_THAT(stats.status().message(), HasSubstr("\"h\""));
  EXPECT_THAT(stats.status().message(), HasSubstr("\"../../outside/secret\""));
  EXPECT_FALSE(stdfs::exists(root_path() / "h"));
}

// An absolute hardlink target names a path in the image, as containerd's
// hardlinkRootPath reads it: it must exist inside the root, and the link is to
// the root's file, never the host's.
TEST_F(LayerUnpackTest, Hostile_AbsoluteHardlinkTargetResolvesInsideTheRoot) {
  absl::StatusOr<ApplyStats> stats = Apply({{.path = "h", .hardlink = "/etc/passwd"}});
  EXPECT_TRUE(absl::IsNotFound(stats.status())) << stats.status();
  EXPECT_THAT(stats.status().message(), HasSubstr("\"/etc/passwd\" does not exist in the root"));

  // Also through a symlink to the host's /etc: still the root's etc.
  stats = Apply({{.path = "etc/passwd", .content = "image"},
                 {.path = "hostetc", .type = AE_IFLNK, .symlink = "/etc"},
                 {.path = "h", .hardlink = "/etc/passwd"},
                 {.path = "h2", .hardlink = "hostetc/passwd"}});
  ASSERT_TRUE(stats.ok()) << stats.status();
  const ino_t image_passwd = Lstat(root_path() / "etc" / "passwd").st_ino;
  EXPECT_EQ(Lstat(root_path() / "h").st_ino, image_passwd);
  EXPECT_EQ(Lstat(root_path() / "h2").st_ino, image_passwd);
  EXPECT_NE(Lstat("/etc/passwd").st_ino, image_passwd);
}

TEST_F(LayerUnpackTest, Hostile_HardlinkToAMissingOrDirectoryTargetIsRefused) {
  absl::StatusOr<ApplyStats> stats = Apply({{.path = "h", .hardlink = "nope"}});
  EXPECT_TRUE(absl::IsNotFound(stats.status())) << stats.status();
  stats = Apply({{.path = "d", .type = AE_IFDIR}, {.path = "h", .hardlink = "d"}});
  EXPECT_TRUE(absl::IsInvalidArgument(stats.status())) << stats.status();
  EXPECT_THAT(stats.status().message(), HasSubstr("is a directory"));
}

// ".wh.." and ".wh..." would whiteout the directory itself or its parent
// (containerd would join ".." to the directory and remove it); refused.
TEST_F(LayerUnpackTest, Hostile_WhiteoutOfDotDotIsRefused) {
  ASSERT_TRUE(Apply({{.path = "keep/file", .content = "x"}}).ok());
  for (const char* name : {".wh...", "keep/.wh...", "keep/.wh.."}) {
    absl::StatusOr<ApplyStats> stats = Apply({{.path = name}});
    EXPECT_TRUE(absl::IsInvalidArgument(stats.status())) << name << ": " << stats.status();
    EXPECT_THAT(stats.status().message(), HasSubstr(absl::StrCat("\"", name, "\"")));
  }
  EXPECT_EQ(ReadFile(root_path() / "keep" / "file"), "x");
  EXPECT_EQ(ReadFile(outside_path() / "secret"), "outside");
}

// A whiteout through a symlink removes inside the root only.
TEST_F(LayerUnpackTest, Hostile_WhiteoutThroughSymlinkStaysInsideTheRoot) {
  ASSERT_TRUE(Apply({{.path = "up", .type = AE_IFLNK, .symlink = "../outside"}}).ok());
  ASSERT_TRUE(Apply({{.path = "up/.wh.secret"}}).ok());
  EXPECT_EQ(ReadFile(outside_path() / "secret"), "outside");
}

TEST_F(LayerUnpackTest, Hostile_TruncatedTarIsDataLoss) {
  const std::string tar = MakeTar(
      {{.path = "big", .content = std::string(100000, 'y')}, {.path = "after", .content = "x"}});
  const std::string truncated = tar.substr(0, 50000);
  absl::StatusOr<ApplyStats> stats = Apply(truncated);
  EXPECT_TRUE(absl::IsDataLoss(stats.status())) << stats.status();
  EXPECT_THAT(stats.status().message(), HasSubstr("\"big\""));
  EXPECT_FALSE(stdfs::exists(root_path() / "after"));
}

TEST_F(LayerUnpackTest, Hostile_GarbageIsDataLoss) {
  absl::StatusOr<ApplyStats> stats = Apply(std::string(4096, '\x7f'));
  EXPECT_TRUE(absl::IsDataLoss(stats.status())) << stats.status();
}

TEST_F(LayerUnpackTest, ReaderError_IsReturnedAsItIs) {
  absl::StatusOr<fs::RootDir> root = fs::RootDir::Open(root_path());
  ASSERT_TRUE(root.ok());
  absl::StatusOr<ApplyStats> stats = ApplyLayer(
      *root, []() -> absl::StatusOr<absl::string_view> { return absl::DataLossError("chunk 7"); },
      {});
  EXPECT_TRUE(absl::IsDataLoss(stats.status())) << stats.status();
  EXPECT_EQ(stats.status().message(), "chunk 7");
}

}  // namespace
}  // namespace stagefarm::oci
