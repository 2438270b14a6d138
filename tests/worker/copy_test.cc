// COPY into a root filesystem: BuildKit's semantics on real files (fidelity
// cases 01-copy-basics and 02-copy-ownership as filesystem checks), and
// hostile sources and destinations that must stay inside their roots.
#include "worker/copy/copy.h"

#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm::worker {
namespace {

using ::testing::HasSubstr;

class CopyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    context_ = dir_.path() / "context";
    rootfs_ = dir_.path() / "rootfs";
    Write(context_ / "hello.txt", "hello\n", 0644);
    Write(context_ / "one.conf", "one\n", 0644);
    Write(context_ / "two.conf", "two\n", 0644);
    Write(context_ / "run.sh", "#!/bin/sh\necho run\n", 0755);
    Write(context_ / "srcdir/a.txt", "a\n", 0644);
    Write(context_ / "srcdir/sub/b.txt", "b\n", 0644);
    Write(rootfs_ / "etc/passwd",
          "root:x:0:0:root:/root:/bin/sh\napp:x:1234:2345:app user:/home/app:/bin/sh\n", 0644);
    Write(rootfs_ / "etc/group", "root:x:0:\nappgrp:x:2345:\nextra:x:3456:app\n", 0644);
  }
  static void Write(const std::filesystem::path& path, const std::string& content, mode_t mode) {
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << content;
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
  }
  fs::RootDir Root(const std::filesystem::path& path) { return *fs::RootDir::Open(path); }
  absl::StatusOr<CopyStats> Copy(std::vector<std::string> sources, const std::string& dest,
                                 CopyOptions options = {.owner = std::nullopt,
                                                        .reset_owner = true,
                                                        .mode = std::nullopt,
                                                        .excludes = {}}) {
    fs::RootDir source = Root(context_);
    fs::RootDir destination = Root(rootfs_);
    return CopyInto(source, sources, destination, dest, options);
  }
  // "f 0644 0:0 hello\n"-style summary of one destination path.
  std::string Describe(const std::string& path) {
    struct stat info;
    const std::filesystem::path full = rootfs_ / path.substr(1);
    if (::lstat(full.c_str(), &info) != 0) return "missing";
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", info.st_mode & 07777);
    std::string kind = S_ISDIR(info.st_mode) ? "d" : S_ISLNK(info.st_mode) ? "l" : "f";
    std::string out = absl::StrCat(kind, " ", mode, " ", info.st_uid, ":", info.st_gid);
    if (S_ISREG(info.st_mode)) {
      std::ifstream in(full, std::ios::binary);
      out += " " + std::string(std::istreambuf_iterator<char>(in), {});
    } else if (S_ISLNK(info.st_mode)) {
      out += " -> " + std::filesystem::read_symlink(full).string();
    }
    return out;
  }

  stagefarm::testing::TempDir dir_{"copy_test"};
  std::filesystem::path context_;
  std::filesystem::path rootfs_;
};

TEST_F(CopyTest, BasicsAsInFidelityCase01) {
  ASSERT_TRUE(Copy({"hello.txt"}, "/hello.txt").ok());
  ASSERT_TRUE(Copy({"hello.txt"}, "/etc/renamed.conf").ok());
  ASSERT_TRUE(Copy({"hello.txt"}, "/opt/withslash/").ok());
  ASSERT_TRUE(Copy({"hello.txt"}, "/opt/noslash").ok());
  ASSERT_TRUE(Copy({"srcdir"}, "/dstdir").ok());
  ASSERT_TRUE(Copy({"*.conf"}, "/etc/confs/").ok());
  ASSERT_TRUE(Copy({"hello.txt"}, "/deep/nested/path/").ok());
  ASSERT_TRUE(Copy({"run.sh"}, "/usr/local/bin/").ok());
  ASSERT_TRUE(Copy({"hello.txt", "one.conf"}, "/dstdir/").ok());

  EXPECT_EQ(Describe("/hello.txt"), "f 0644 0:0 hello\n");
  EXPECT_EQ(Describe("/etc/renamed.conf"), "f 0644 0:0 hello\n");
  EXPECT_EQ(Describe("/opt/withslash"), "d 0755 0:0");
  EXPECT_EQ(Describe("/opt/withslash/hello.txt"), "f 0644 0:0 hello\n");
  EXPECT_EQ(Describe("/opt/noslash"), "f 0644 0:0 hello\n");
  EXPECT_EQ(Describe("/dstdir"), "d 0755 0:0");
  EXPECT_EQ(Describe("/dstdir/a.txt"), "f 0644 0:0 a\n");
  EXPECT_EQ(Describe("/dstdir/sub/b.txt"), "f 0644 0:0 b\n");
  EXPECT_EQ(Describe("/dstdir/srcdir"), "missing");  // contents, not the directory
  EXPECT_EQ(Describe("/dstdir/hello.txt"), "f 0644 0:0 hello\n");
  EXPECT_EQ(Describe("/etc/confs/one.conf"), "f 0644 0:0 one\n");
  EXPECT_EQ(Describe("/etc/confs/two.conf"), "f 0644 0:0 two\n");
  EXPECT_EQ(Describe("/deep/nested"), "d 0755 0:0");
  EXPECT_EQ(Describe("/deep/nested/path/hello.txt"), "f 0644 0:0 hello\n");
  EXPECT_EQ(Describe("/usr/local/bin/run.sh"), "f 0755 0:0 #!/bin/sh\necho run\n");
}

TEST_F(CopyTest, OwnershipAndModesAsInFidelityCase02) {
  fs::RootDir root = Root(rootfs_);
  auto owner = [&](const std::string& spec) { return ResolveChown(root, spec); };
  EXPECT_EQ(owner("1000:1000")->uid, 1000u);
  EXPECT_EQ(owner("1001")->gid, 1001u);                // uid only: same number as gid
  EXPECT_EQ(owner("app:appgrp")->gid, 2345u);          // names via passwd and group
  EXPECT_EQ(owner("app")->gid, 2345u);                 // the user's primary group
  EXPECT_EQ(owner("app:extra")->gid, 3456u);
  EXPECT_EQ(owner("1234:3456")->uid, 1234u);
  EXPECT_THAT(owner("nobody").status().message(), HasSubstr("no user \"nobody\""));
  EXPECT_THAT(owner("app:nogroup").status().message(), HasSubstr("no group \"nogroup\""));
  EXPECT_FALSE(owner(":1").ok());

  CopyOptions chown{.owner = *owner("app:extra"), .reset_owner = true, .mode = std::nullopt,
                    .excludes = {}};
  ASSERT_TRUE(Copy({"srcdir"}, "/srv/conf/", chown).ok());
  EXPECT_EQ(Describe("/srv"), "d 0755 1234:3456");  // created parent: owner too
  EXPECT_EQ(Describe("/srv/conf"), "d 0755 1234:3456");
  EXPECT_EQ(Describe("/srv/conf/a.txt"), "f 0644 1234:3456 a\n");
  chown.owner = *owner("app:appgrp");
  ASSERT_TRUE(Copy({"hello.txt"}, "/srv/new/nested/dirs/", chown).ok());
  EXPECT_EQ(Describe("/srv/new/nested"), "d 0755 1234:2345");
  EXPECT_EQ(Describe("/srv/new/nested/dirs/hello.txt"), "f 0644 1234:2345 hello\n");

  CopyOptions chmod{.owner = std::nullopt, .reset_owner = true, .mode = 0640, .excludes = {}};
  ASSERT_TRUE(Copy({"hello.txt"}, "/srv/mode-0640.txt", chmod).ok());
  EXPECT_EQ(Describe("/srv/mode-0640.txt"), "f 0640 0:0 hello\n");
  CopyOptions both{.owner = Owner{1234, 3456}, .reset_owner = true, .mode = 0600, .excludes = {}};
  ASSERT_TRUE(Copy({"hello.txt"}, "/srv/secret.txt", both).ok());
  EXPECT_EQ(Describe("/srv/secret.txt"), "f 0600 1234:3456 hello\n");
}

TEST_F(CopyTest, FromAStageOwnersAreKeptUnlessChowned) {
  ASSERT_EQ(::chown((context_ / "hello.txt").c_str(), 42, 43), 0);
  CopyOptions from_stage{.owner = std::nullopt, .reset_owner = false, .mode = std::nullopt,
                         .excludes = {}};
  ASSERT_TRUE(Copy({"hello.txt"}, "/kept.txt", from_stage).ok());
  EXPECT_EQ(Describe("/kept.txt"), "f 0644 42:43 hello\n");
  ASSERT_TRUE(Copy({"hello.txt"}, "/context.txt").ok());
  EXPECT_EQ(Describe("/context.txt"), "f 0644 0:0 hello\n");
}

TEST_F(CopyTest, MissingSourceIsNotFoundButAnEmptyGlobCopiesNothing) {
  absl::StatusOr<CopyStats> missing = Copy({"nope.txt"}, "/x");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("\"nope.txt\""));
  absl::StatusOr<CopyStats> empty = Copy({"*.nothing"}, "/x/");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->entries, 0u);
  EXPECT_EQ(Describe("/x"), "missing");
}

TEST_F(CopyTest, SymlinksHardlinksAndExcludes) {
  std::filesystem::create_symlink("a.txt", context_ / "srcdir/link");
  std::filesystem::create_hard_link(context_ / "srcdir/a.txt", context_ / "srcdir/hard");
  Write(context_ / "srcdir/skip.log", "log\n", 0644);
  CopyOptions options{.owner = std::nullopt, .reset_owner = true, .mode = std::nullopt,
                      .excludes = {"**/*.log"}};
  ASSERT_TRUE(Copy({"srcdir"}, "/tree", options).ok());
  EXPECT_EQ(Describe("/tree/link"), "l 0777 0:0 -> a.txt");
  struct stat a, hard;
  ASSERT_EQ(::stat((rootfs_ / "tree/a.txt").c_str(), &a), 0);
  ASSERT_EQ(::stat((rootfs_ / "tree/hard").c_str(), &hard), 0);
  EXPECT_EQ(a.st_ino, hard.st_ino);
  EXPECT_EQ(Describe("/tree/skip.log"), "missing");
  // A symlink named as a source is followed.
  std::filesystem::create_symlink("hello.txt", context_ / "alias");
  ASSERT_TRUE(Copy({"alias"}, "/followed").ok());
  EXPECT_EQ(Describe("/followed"), "f 0644 0:0 hello\n");
}

TEST_F(CopyTest, DirectorySourceKeepsTheExistingDestinationAndFollowsASymlinkToIt) {
  // As in fidelity case 15-copy-onto-existing.
  std::filesystem::create_directories(rootfs_ / "merge/sub");
  ASSERT_EQ(::chmod((rootfs_ / "merge").c_str(), 0700), 0);
  ASSERT_EQ(::chown((rootfs_ / "merge").c_str(), 5, 5), 0);
  ASSERT_EQ(::chown((rootfs_ / "merge/sub").c_str(), 5, 5), 0);
  std::filesystem::create_directories(rootfs_ / "real/dir");
  std::filesystem::create_symlink("/real/dir", rootfs_ / "link-to-dir");
  ASSERT_TRUE(Copy({"srcdir"}, "/merge/").ok());
  ASSERT_TRUE(Copy({"srcdir"}, "/link-to-dir").ok());
  EXPECT_EQ(Describe("/merge"), "d 0700 5:5");      // the destination itself: untouched
  EXPECT_EQ(Describe("/merge/sub"), "d 0755 0:0");  // a copied directory: the source's
  EXPECT_EQ(Describe("/merge/sub/b.txt"), "f 0644 0:0 b\n");
  EXPECT_EQ(Describe("/link-to-dir"), "l 0777 0:0 -> /real/dir");
  EXPECT_EQ(Describe("/real/dir/a.txt"), "f 0644 0:0 a\n");
}

TEST_F(CopyTest, HostileSymlinksStayInsideTheirRoots) {
  // A destination symlink to "/" resolves to the root filesystem's own root.
  std::filesystem::create_symlink("/", rootfs_ / "evil");
  ASSERT_TRUE(Copy({"hello.txt"}, "/evil/tmp/planted.txt").ok());
  EXPECT_EQ(Describe("/tmp/planted.txt"), "f 0644 0:0 hello\n");
  EXPECT_FALSE(std::filesystem::exists("/tmp/planted.txt"));
  // A source symlink out of the context resolves inside the context.
  std::filesystem::create_symlink("/etc/passwd", context_ / "steal");
  absl::StatusOr<CopyStats> stolen = Copy({"steal"}, "/stolen");
  EXPECT_FALSE(stolen.ok());
  EXPECT_EQ(Describe("/stolen"), "missing");
  std::filesystem::create_symlink("../../../../etc", context_ / "up");
  absl::StatusOr<CopyStats> up = Copy({"up/passwd"}, "/stolen2");
  EXPECT_FALSE(up.ok());
  EXPECT_EQ(Describe("/stolen2"), "missing");
  // ".." in a destination is cleaned at the root.
  ASSERT_TRUE(Copy({"hello.txt"}, "/../../outside.txt").ok());
  EXPECT_EQ(Describe("/outside.txt"), "f 0644 0:0 hello\n");
}

TEST_F(CopyTest, ParentsKeepTheSourcePathBelowThePivot) {
  CopyOptions options;
  options.reset_owner = true;
  options.parents = true;
  // BuildKit's documented examples: paths kept whole, globs per match, and
  // a "/./" pivot that drops what is above it.
  ASSERT_TRUE(Copy({"srcdir/a.txt", "srcdir/sub/b.txt"}, "/p/", options).ok());
  EXPECT_EQ(Describe("/p/srcdir/a.txt"), "f 0644 0:0 a\n");
  EXPECT_EQ(Describe("/p/srcdir/sub/b.txt"), "f 0644 0:0 b\n");
  ASSERT_TRUE(Copy({"*.conf"}, "/globbed", options).ok());
  EXPECT_EQ(Describe("/globbed/one.conf"), "f 0644 0:0 one\n");
  EXPECT_EQ(Describe("/globbed/two.conf"), "f 0644 0:0 two\n");
  ASSERT_TRUE(Copy({"./srcdir/./sub/b.txt"}, "/pivot/", options).ok());
  EXPECT_EQ(Describe("/pivot/sub/b.txt"), "f 0644 0:0 b\n");
  EXPECT_EQ(Describe("/pivot/srcdir"), "missing");
  ASSERT_TRUE(Copy({"srcdir/sub"}, "/dir/", options).ok());
  EXPECT_EQ(Describe("/dir/srcdir/sub/b.txt"), "f 0644 0:0 b\n");
}

TEST_F(CopyTest, AFileCannotReplaceADirectory) {
  std::filesystem::create_directories(rootfs_ / "dir/inner");
  ASSERT_TRUE(Copy({"hello.txt"}, "/dir").ok());  // an existing directory: copied into it
  EXPECT_EQ(Describe("/dir/hello.txt"), "f 0644 0:0 hello\n");
  Write(context_ / "tree/inner", "x", 0644);
  absl::StatusOr<CopyStats> clash = Copy({"tree"}, "/dir");
  EXPECT_EQ(clash.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(clash.status().message(), HasSubstr("/dir/inner"));
}

// The destination on another file system (copy_file_range refuses: EXDEV),
// which fills up: the error is the full disk's, naming the file.
TEST_F(CopyTest, DestinationOutOfSpaceSaysSoNamingTheFile) {
  const std::filesystem::path small = rootfs_ / "small";
  std::filesystem::create_directories(small);
  if (::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=1536k") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs: " << strerror(errno) << " (tests run as root)";
  }
  Write(context_ / "big.bin", std::string(4 << 20, 'x'), 0644);
  absl::StatusOr<CopyStats> copied = Copy({"big.bin"}, "/small/");
  ::umount2(small.c_str(), MNT_DETACH);
  EXPECT_EQ(copied.status().code(), absl::StatusCode::kResourceExhausted) << copied.status();
  EXPECT_THAT(copied.status().message(), HasSubstr("No space left on device"));
  EXPECT_THAT(copied.status().message(), HasSubstr("/small/big.bin"));
}

}  // namespace
}  // namespace stagefarm::worker
