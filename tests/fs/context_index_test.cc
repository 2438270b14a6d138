#include "common/fs/context_index.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm::fs {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class ContextIndexTest : public ::testing::Test {
 protected:
  std::filesystem::path Context() const { return temp_.path() / "ctx"; }
  std::filesystem::path Dockerfile() const { return Context() / "Dockerfile"; }

  void SetUp() override {
    std::filesystem::create_directory(Context());
    Write("Dockerfile", "FROM scratch\n");
  }

  void Write(const std::string& path, const std::string& content, mode_t mode = 0644) {
    const std::filesystem::path full = Context() / path;
    std::filesystem::create_directories(full.parent_path());
    std::ofstream(full, std::ios::binary | std::ios::trunc) << content;
    ASSERT_EQ(chmod(full.c_str(), mode), 0) << full;
  }
  void Mkdir(const std::string& path, mode_t mode = 0755) {
    std::filesystem::create_directories(Context() / path);
    ASSERT_EQ(chmod((Context() / path).c_str(), mode), 0);
  }
  void Symlink(const std::string& target, const std::string& path) {
    std::filesystem::create_directories((Context() / path).parent_path());
    ASSERT_EQ(symlink(target.c_str(), (Context() / path).c_str()), 0) << path;
  }
  // Sets both atime and mtime of `path` to `seconds` since the epoch.
  void SetTimes(const std::string& path, time_t seconds) {
    const timespec times[2] = {{seconds, 0}, {seconds, 0}};
    ASSERT_EQ(utimensat(AT_FDCWD, (Context() / path).c_str(), times, AT_SYMLINK_NOFOLLOW), 0);
  }

  ContextIndex Index() {
    absl::StatusOr<ContextIndex> index = ContextIndex::Build(Context(), Dockerfile());
    EXPECT_TRUE(index.ok()) << index.status();
    return index.ok() ? *std::move(index) : ContextIndex();
  }

  static std::vector<std::string> Paths(const ContextIndex& index) {
    std::vector<std::string> paths;
    for (const ContextEntry& entry : index.entries()) paths.push_back(entry.path);
    return paths;
  }

  static std::vector<std::string> Paths(const std::vector<const ContextEntry*>& selection) {
    std::vector<std::string> paths;
    for (const ContextEntry* entry : selection) paths.push_back(entry->path);
    return paths;
  }

  // The paths Select returns for `sources`; fails the test on error.
  std::vector<std::string> Selected(const ContextIndex& index,
                                    const std::vector<std::string>& sources) {
    absl::StatusOr<std::vector<const ContextEntry*>> selection = index.Select(sources);
    EXPECT_TRUE(selection.ok()) << selection.status();
    return selection.ok() ? Paths(*selection) : std::vector<std::string>{"<error>"};
  }

  // The selection digest of `sources` in a freshly built index.
  std::string DigestOf(const std::vector<std::string>& sources) {
    const ContextIndex index = Index();
    absl::StatusOr<std::vector<const ContextEntry*>> selection = index.Select(sources);
    EXPECT_TRUE(selection.ok()) << selection.status();
    return selection.ok() ? SelectionDigest(*selection).ToString() : "<error>";
  }

  testing::TempDir temp_{"context_index_test"};
};

TEST_F(ContextIndexTest, Walk_RecordsTypeModeOwnerSizeAndContentDigest) {
  Write("app/main.go", "package main\n", 04755);
  Mkdir("app/empty", 01777);
  Symlink("main.go", "app/link");
  const ContextIndex index = Index();
  EXPECT_THAT(Paths(index),
              ElementsAre("Dockerfile", "app", "app/empty", "app/link", "app/main.go"));

  const ContextEntry* file = index.Find("app/main.go");
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(file->type, EntryType::kFile);
  EXPECT_EQ(file->mode, 04755u);
  EXPECT_EQ(file->uid, getuid());
  EXPECT_EQ(file->gid, getgid());
  EXPECT_EQ(file->size, 13u);
  EXPECT_EQ(file->content, digest::Sha256Of("package main\n"));
  EXPECT_THAT(file->link_target, IsEmpty());

  const ContextEntry* dir = index.Find("app/empty");
  ASSERT_NE(dir, nullptr);
  EXPECT_EQ(dir->type, EntryType::kDirectory);
  EXPECT_EQ(dir->mode, 01777u);
  EXPECT_EQ(dir->size, 0u);
  EXPECT_FALSE(dir->content.has_value());

  const ContextEntry* link = index.Find("app/link");
  ASSERT_NE(link, nullptr);
  EXPECT_EQ(link->type, EntryType::kSymlink);
  EXPECT_EQ(link->link_target, "main.go");
  EXPECT_EQ(link->size, 7u);
  EXPECT_FALSE(link->content.has_value());
  EXPECT_THAT(index.skipped(), IsEmpty());
}

TEST_F(ContextIndexTest, Walk_HashesLargeFilesInPiecesToTheWholeFileDigest) {
  std::string big(3 * 1024 * 1024 + 17, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 + i / 1000);
  Write("big.bin", big);
  const ContextIndex index = Index();
  const ContextEntry* entry = index.Find("big.bin");
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->size, big.size());
  EXPECT_EQ(entry->content, digest::Sha256Of(big));
}

TEST_F(ContextIndexTest, Walk_DoesNotFollowSymlinkOutOfRoot) {
  const std::filesystem::path outside = temp_.path() / "outside";
  std::filesystem::create_directory(outside);
  std::ofstream(outside / "secret") << "top secret";
  Symlink(outside.string(), "escape");
  Symlink("../outside/secret", "relative-escape");
  const ContextIndex index = Index();
  EXPECT_THAT(Paths(index), ElementsAre("Dockerfile", "escape", "relative-escape"));
  EXPECT_EQ(index.Find("escape")->link_target, outside.string());
  EXPECT_EQ(index.Find("escape")->type, EntryType::kSymlink);
}

TEST_F(ContextIndexTest, Walk_SkipsFifoWithAReason) {
  ASSERT_EQ(mkfifo((Context() / "pipe").c_str(), 0644), 0);
  const ContextIndex index = Index();
  EXPECT_EQ(index.Find("pipe"), nullptr);
  ASSERT_EQ(index.skipped().size(), 1u);
  EXPECT_EQ(index.skipped()[0].path, "pipe");
  EXPECT_THAT(index.skipped()[0].reason, HasSubstr("FIFO"));
}

// Times are recorded (a COPY from a context made elsewhere writes them) but
// change no selection digest, so no cache key.
TEST_F(ContextIndexTest, Walk_RecordsModificationTimesOutsideTheSelectionDigest) {
  Write("a.txt", "a");
  Mkdir("d");
  Write("d/b.txt", "b");
  Symlink("a.txt", "l");
  const ContextIndex before = Index();
  for (const char* path : {"a.txt", "d", "d/b.txt", "l", "."}) SetTimes(path, 1000000000);
  const ContextIndex after = Index();
  ASSERT_EQ(before.entries().size(), after.entries().size());
  for (size_t i = 0; i < after.entries().size(); ++i) {
    ContextEntry moved = after.entries()[i];
    if (moved.path != "Dockerfile") {
      EXPECT_EQ(moved.mtime_ns, int64_t{1000000000} * 1000000000) << moved.path;
    }
    moved.mtime_ns = before.entries()[i].mtime_ns;
    EXPECT_EQ(moved, before.entries()[i]);
  }
  const std::vector<std::string> everything = {"."};
  absl::StatusOr<std::vector<const ContextEntry*>> selected_before = before.Select(everything);
  absl::StatusOr<std::vector<const ContextEntry*>> selected_after = after.Select(everything);
  ASSERT_TRUE(selected_before.ok() && selected_after.ok());
  EXPECT_EQ(SelectionDigest(*selected_before), SelectionDigest(*selected_after));
}

TEST_F(ContextIndexTest, Walk_MissingContextDirectoryIsNotFoundNamingIt) {
  absl::StatusOr<ContextIndex> index =
      ContextIndex::Build(temp_.path() / "nope", temp_.path() / "nope" / "Dockerfile");
  EXPECT_EQ(index.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(index.status().message(), HasSubstr("nope"));
}

// Build's status as text. Root reads files whatever their mode, so as root
// the walk runs in a child process that has become nobody first.
std::string BuildStatusUnprivileged(const std::filesystem::path& context,
                                    const std::filesystem::path& dockerfile) {
  if (geteuid() != 0) return ContextIndex::Build(context, dockerfile).status().ToString();
  int fds[2];
  if (pipe(fds) != 0) return "pipe failed";
  const pid_t child = fork();
  if (child == 0) {
    close(fds[0]);
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
    const std::string status = ContextIndex::Build(context, dockerfile).status().ToString();
    _exit(write(fds[1], status.data(), status.size()) == static_cast<ssize_t>(status.size()) ? 0
                                                                                             : 3);
  }
  close(fds[1]);
  std::string status;
  char buffer[4096];
  for (ssize_t n; (n = read(fds[0], buffer, sizeof(buffer))) > 0;) status.append(buffer, n);
  close(fds[0]);
  int exit_status = 0;
  if (child < 0 || waitpid(child, &exit_status, 0) != child || exit_status != 0) {
    return absl::StrCat("child failed: ", exit_status);
  }
  return status;
}

TEST_F(ContextIndexTest, Walk_UnreadableIncludedFileIsAnErrorNamingIt) {
  Write("locked", "x", 0000);
  ASSERT_EQ(chmod(temp_.path().c_str(), 0755), 0);  // let nobody reach the context
  EXPECT_EQ(BuildStatusUnprivileged(Context(), Dockerfile()),
            absl::StrCat("PERMISSION_DENIED: ", (Context() / "locked").string(),
                         ": open: Permission denied"));
}

TEST_F(ContextIndexTest, Dockerignore_ExcludesAndReincludes) {
  Write(".dockerignore", "*.log\nbuild\n!build/keep.txt\nsecrets/\n");
  Write("app.go", "app");
  Write("debug.log", "noise");
  Write("sub/nested.log", "kept: *.log matches only at the top");
  Write("build/out.o", "object");
  Write("build/keep.txt", "keep me");
  Write("build/deep/x.o", "object");
  Write("secrets/key", "hunter2");
  const ContextIndex index = Index();
  EXPECT_THAT(Paths(index), ElementsAre(".dockerignore", "Dockerfile", "app.go", "build",
                                        "build/keep.txt", "sub", "sub/nested.log"));
}

TEST_F(ContextIndexTest, Dockerignore_ExcludedDirectoryWithoutReinclusionIsNotEntered) {
  Write(".dockerignore", "node_modules\n");
  Write("node_modules/pkg/index.js", "x");
  EXPECT_THAT(Paths(Index()), ElementsAre(".dockerignore", "Dockerfile"));
  // Unreadable but excluded: the walk must not even try to open it.
  ASSERT_EQ(chmod((Context() / "node_modules").c_str(), 0), 0);
  ASSERT_EQ(chmod(temp_.path().c_str(), 0755), 0);
  EXPECT_EQ(BuildStatusUnprivileged(Context(), Dockerfile()), "OK");
  ASSERT_EQ(chmod((Context() / "node_modules").c_str(), 0755), 0);
}

TEST_F(ContextIndexTest, Dockerignore_UnreadableExcludedDirectoryIsSkippedEvenWithReinclusions) {
  Write(".dockerignore", "private\n!keep.txt\n");
  Write("private/data", "x");
  Write("keep.txt", "k");
  ASSERT_EQ(chmod((Context() / "private").c_str(), 0), 0);
  ASSERT_EQ(chmod(temp_.path().c_str(), 0755), 0);
  EXPECT_EQ(BuildStatusUnprivileged(Context(), Dockerfile()), "OK");
  ASSERT_EQ(chmod((Context() / "private").c_str(), 0755), 0);
}

TEST_F(ContextIndexTest, Dockerignore_DockerfileSpecificFileWins) {
  Write(".dockerignore", "a.txt\n");
  Write("Dockerfile.dockerignore", "b.txt\n");
  Write("a.txt", "a");
  Write("b.txt", "b");
  const ContextIndex index = Index();
  EXPECT_THAT(Paths(index),
              ElementsAre(".dockerignore", "Dockerfile", "Dockerfile.dockerignore", "a.txt"));
}

TEST_F(ContextIndexTest, Dockerignore_BadPatternIsAnErrorNamingTheFileAndLine) {
  Write(".dockerignore", "ok\n[\n");
  absl::StatusOr<ContextIndex> index = ContextIndex::Build(Context(), Dockerfile());
  EXPECT_EQ(index.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(index.status().message(), HasSubstr(".dockerignore:2"));
}

TEST_F(ContextIndexTest, Dockerignore_ExcludedSourceIsNotFound) {
  Write(".dockerignore", "secret.txt\n");
  Write("secret.txt", "x");
  absl::StatusOr<std::vector<const ContextEntry*>> selection =
      Index().Select({std::string("secret.txt")});
  EXPECT_EQ(selection.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(selection.status().message(), "source \"secret.txt\": \"/secret.txt\": not found");
}

TEST_F(ContextIndexTest, Select_FileSelectsJustThatFile) {
  Write("a.txt", "a");
  Write("b.txt", "b");
  EXPECT_THAT(Selected(Index(), {"a.txt"}), ElementsAre("a.txt"));
}

TEST_F(ContextIndexTest, Select_DirectorySelectsItAndEverythingBelow) {
  Write("src/a.c", "a");
  Write("src/lib/b.c", "b");
  Write("src.txt", "not below src");
  Write("srcx/c.c", "not below src");
  Symlink("../src.txt", "src/lib/link");
  const ContextIndex index = Index();
  const std::vector<std::string> expected = {"src", "src/a.c", "src/lib", "src/lib/b.c",
                                             "src/lib/link"};
  EXPECT_EQ(Selected(index, {"src"}), expected);
  EXPECT_EQ(Selected(index, {"src/"}), expected);
  EXPECT_EQ(Selected(index, {"./src/."}), expected);
}

TEST_F(ContextIndexTest, Select_DotSelectsTheWholeContext) {
  Write("a", "a");
  Write("d/b", "b");
  const ContextIndex index = Index();
  EXPECT_EQ(Selected(index, {"."}), Paths(index));
  EXPECT_EQ(Selected(index, {"/"}), Paths(index));
}

TEST_F(ContextIndexTest, Select_LeadingSlashAndDotDotAreClampedToTheRoot) {
  Write("etc/passwd", "not the host's");
  Write("a.txt", "a");
  const ContextIndex index = Index();
  EXPECT_THAT(Selected(index, {"../../etc/passwd"}), ElementsAre("etc/passwd"));
  EXPECT_THAT(Selected(index, {"/a.txt"}), ElementsAre("a.txt"));
  EXPECT_THAT(Selected(index, {"etc/../../a.txt"}), ElementsAre("a.txt"));
  EXPECT_EQ(Selected(index, {".."}), Paths(index));
}

TEST_F(ContextIndexTest, Select_GlobMatchesEachPathWhole) {
  Write("a.txt", "a");
  Write("b.txt", "b");
  Write("c.md", "c");
  Write("docs/d.txt", "d");
  Write("docs/e/f.txt", "f");
  const ContextIndex index = Index();
  EXPECT_THAT(Selected(index, {"*.txt"}), ElementsAre("a.txt", "b.txt"));
  EXPECT_THAT(Selected(index, {"docs/*.txt"}), ElementsAre("docs/d.txt"));
  EXPECT_THAT(Selected(index, {"*/*.txt"}), ElementsAre("docs/d.txt"));
  EXPECT_THAT(Selected(index, {"?.md", "[ab].txt"}), ElementsAre("a.txt", "b.txt", "c.md"));
}

TEST_F(ContextIndexTest, Select_GlobMatchingADirectorySelectsEverythingBelowIt) {
  Write("pkg1/a.go", "a");
  Write("pkg2/sub/b.go", "b");
  Write("other/c.go", "c");
  EXPECT_THAT(Selected(Index(), {"pkg*"}),
              ElementsAre("pkg1", "pkg1/a.go", "pkg2", "pkg2/sub", "pkg2/sub/b.go"));
}

// As BuildKit's containsWildcards decides: a source whose only wildcards are
// backslash-escaped is no pattern, and is looked up as written.
TEST_F(ContextIndexTest, Select_EscapedWildcardIsNoPattern) {
  Write("a\\*b", "backslash and star in the name");
  Write("axb", "x");
  EXPECT_THAT(Selected(Index(), {"a\\*b"}), ElementsAre("a\\*b"));
}

TEST_F(ContextIndexTest, Select_SeveralSourcesAreMergedWithoutDuplicates) {
  Write("d/a", "a");
  Write("d/b", "b");
  EXPECT_THAT(Selected(Index(), {"d/b", "d", "d/*"}), ElementsAre("d", "d/a", "d/b"));
}

TEST_F(ContextIndexTest, Select_MissingSourceIsNotFoundNamingIt) {
  Write("a.txt", "a");
  absl::StatusOr<std::vector<const ContextEntry*>> selection =
      Index().Select({std::string("a.txt"), std::string("./target/app.jar")});
  EXPECT_EQ(selection.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(selection.status().message(),
            "source \"./target/app.jar\": \"/target/app.jar\": not found");
}

TEST_F(ContextIndexTest, Select_NoSourcesIsAnError) {
  absl::StatusOr<std::vector<const ContextEntry*>> selection = Index().Select({});
  EXPECT_EQ(selection.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(selection.status().message(), "no source files were specified");
}

// BuildKit passes AllowEmptyWildcard for Dockerfile COPY/ADD.
TEST_F(ContextIndexTest, Select_GlobMatchingNothingInAnExistingDirectorySelectsNothing) {
  Write("a.txt", "a");
  const ContextIndex index = Index();
  EXPECT_THAT(Selected(index, {"requirements*.txt"}), IsEmpty());
  EXPECT_THAT(Selected(index, {"requirements*.txt", "a.txt"}), ElementsAre("a.txt"));
}

TEST_F(ContextIndexTest, Select_GlobUnderAMissingDirectoryIsNotFound) {
  absl::StatusOr<std::vector<const ContextEntry*>> selection =
      Index().Select({std::string("folder/b/*")});
  EXPECT_EQ(selection.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(selection.status().message(), "source \"folder/b/*\": \"/folder/b\": not found");
}

TEST_F(ContextIndexTest, Select_MalformedGlobIsInvalidArgumentNamingIt) {
  absl::StatusOr<std::vector<const ContextEntry*>> selection = Index().Select({std::string("a[")});
  EXPECT_EQ(selection.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(selection.status().message(), HasSubstr("source \"a[\": syntax error in pattern"));
}

TEST_F(ContextIndexTest, Select_SymlinkSourceSelectsTheLinkAndItsTarget) {
  Write("real/a.txt", "a");
  Symlink("real", "alias");
  Symlink("/real/a.txt", "abs-alias");
  const ContextIndex index = Index();
  EXPECT_THAT(Selected(index, {"alias"}), ElementsAre("alias", "real", "real/a.txt"));
  EXPECT_THAT(Selected(index, {"alias/a.txt"}), ElementsAre("alias", "real/a.txt"));
  EXPECT_THAT(Selected(index, {"abs-alias"}), ElementsAre("abs-alias", "real/a.txt"));
  EXPECT_THAT(Selected(index, {"alias/*.txt"}), ElementsAre("alias", "real/a.txt"));
}

TEST_F(ContextIndexTest, Select_SymlinkPointingOutOfTheRootResolvesInsideIt) {
  Write("etc/hosts", "the context's own");
  Symlink("../../../etc/hosts", "hosts");
  Symlink("/etc/hosts", "abs-hosts");
  Symlink("../../../nowhere", "dangling");
  const ContextIndex index = Index();
  EXPECT_THAT(Selected(index, {"hosts"}), ElementsAre("etc/hosts", "hosts"));
  EXPECT_THAT(Selected(index, {"abs-hosts"}), ElementsAre("abs-hosts", "etc/hosts"));
  absl::StatusOr<std::vector<const ContextEntry*>> selection =
      index.Select({std::string("dangling")});
  EXPECT_EQ(selection.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ContextIndexTest, Select_SymlinkLoopIsAnError) {
  Symlink("b", "a");
  Symlink("a", "b");
  absl::StatusOr<std::vector<const ContextEntry*>> selection = Index().Select({std::string("a")});
  EXPECT_EQ(selection.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(selection.status().message(), HasSubstr("too many levels of symbolic links"));
}

TEST_F(ContextIndexTest, SelectionDigest_ChangesWithContent) {
  Write("app/main.go", "v1");
  const std::string before = DigestOf({"app"});
  Write("app/main.go", "v2");
  EXPECT_NE(DigestOf({"app"}), before);
}

TEST_F(ContextIndexTest, SelectionDigest_ChangesWithMode) {
  Write("run.sh", "#!/bin/sh\n", 0644);
  const std::string before = DigestOf({"run.sh"});
  ASSERT_EQ(chmod((Context() / "run.sh").c_str(), 0755), 0);
  EXPECT_NE(DigestOf({"run.sh"}), before);
}

TEST_F(ContextIndexTest, SelectionDigest_ChangesWithDirectoryModeAndLinkTarget) {
  Write("d/a", "a");
  Symlink("a", "d/l");
  const std::string before = DigestOf({"d"});
  ASSERT_EQ(chmod((Context() / "d").c_str(), 0700), 0);
  const std::string after_chmod = DigestOf({"d"});
  EXPECT_NE(after_chmod, before);
  std::filesystem::remove(Context() / "d/l");
  Symlink("./a", "d/l");
  EXPECT_NE(DigestOf({"d"}), after_chmod);
}

TEST_F(ContextIndexTest, SelectionDigest_ChangesWithRenameAndWithAnAddedFile) {
  Write("d/a", "a");
  const std::string before = DigestOf({"d"});
  std::filesystem::rename(Context() / "d/a", Context() / "d/b");
  const std::string renamed = DigestOf({"d"});
  EXPECT_NE(renamed, before);
  Write("d/c", "");
  EXPECT_NE(DigestOf({"d"}), renamed);
}

TEST_F(ContextIndexTest, SelectionDigest_IgnoresModificationTimes) {
  Write("d/a", "a");
  Symlink("a", "d/l");
  const std::string before = DigestOf({"d"});
  for (const char* path : {"d", "d/a", "d/l"}) SetTimes(path, 1234567890);
  EXPECT_EQ(DigestOf({"d"}), before);
}

TEST_F(ContextIndexTest, SelectionDigest_IgnoresFilesOutsideTheSelection) {
  Write("a.txt", "a");
  Write("b.txt", "b");
  const std::string before = DigestOf({"a.txt"});
  Write("b.txt", "changed");
  EXPECT_EQ(DigestOf({"a.txt"}), before);
}

ContextEntry Entry(std::string path, EntryType type, uint32_t mode) {
  ContextEntry entry;
  entry.path = std::move(path);
  entry.type = type;
  entry.mode = mode;
  return entry;
}

ContextEntry FileEntry(std::string path, absl::string_view content) {
  ContextEntry entry = Entry(std::move(path), EntryType::kFile, 0644);
  entry.size = content.size();
  entry.content = digest::Sha256Of(content);
  return entry;
}

ContextEntry LinkEntry(std::string path, std::string target) {
  ContextEntry entry = Entry(std::move(path), EntryType::kSymlink, 0777);
  entry.size = target.size();
  entry.link_target = std::move(target);
  return entry;
}

TEST(ContextIndexFromEntriesTest, SortsAndAcceptsAWellFormedManifest) {
  const std::vector<ContextEntry> entries = {
      FileEntry("d/f", "f"), Entry("d", EntryType::kDirectory, 0755), LinkEntry("d/l", "f")};
  absl::StatusOr<ContextIndex> index = ContextIndex::FromEntries(entries);
  ASSERT_TRUE(index.ok()) << index.status();
  std::vector<std::string> paths;
  for (const ContextEntry& entry : index->entries()) paths.push_back(entry.path);
  EXPECT_THAT(paths, ElementsAre("d", "d/f", "d/l"));
}

// A selection digest stored on one machine must match on another: pinned
// here, and reproduced by an independent implementation of the layout in
// context_index.h (Python's hashlib). Changing the layout means a new version
// string in SelectionDigest and a new value here.
TEST(SelectionDigestTest, FixedManifest_DigestIsPinned) {
  ContextEntry file = FileEntry("d/f", "f");
  file.mode = 04755;
  file.uid = 1000;
  file.gid = 1000;
  absl::StatusOr<ContextIndex> index = ContextIndex::FromEntries(
      {Entry("d", EntryType::kDirectory, 0755), file, LinkEntry("d/l", "f")});
  ASSERT_TRUE(index.ok()) << index.status();
  absl::StatusOr<std::vector<const ContextEntry*>> selection = index->Select({std::string("d")});
  ASSERT_TRUE(selection.ok()) << selection.status();
  EXPECT_EQ(SelectionDigest(*selection).ToString(),
            "sha256:6ab1077700970da8a6f31dc3fcc566d42947ae84aae1b391d989488e6bba1be9");
}

// The reference's client sends context files as uid/gid 0, so who owns the
// checkout must not split the cache.
TEST(SelectionDigestTest, OwnersDoNotChangeTheDigest) {
  ContextEntry mine = FileEntry("f", "content");
  ContextEntry theirs = mine;
  theirs.uid = 1234;
  theirs.gid = 5678;
  absl::StatusOr<ContextIndex> a = ContextIndex::FromEntries({mine});
  absl::StatusOr<ContextIndex> b = ContextIndex::FromEntries({theirs});
  ASSERT_TRUE(a.ok() && b.ok());
  auto select = [](const ContextIndex& index) { return *index.Select({std::string("f")}); };
  EXPECT_EQ(SelectionDigest(select(*a)), SelectionDigest(select(*b)));
}

TEST(ContextIndexFromEntriesTest, RejectsMalformedManifestsNamingThePath) {
  const ContextEntry dir = Entry("d", EntryType::kDirectory, 0755);
  const ContextEntry file = FileEntry("d/f", "f");
  auto message = [](std::vector<ContextEntry> entries) {
    absl::StatusOr<ContextIndex> index = ContextIndex::FromEntries(std::move(entries));
    EXPECT_EQ(index.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(index.status().message());
  };
  ContextEntry unclean = file;
  unclean.path = "d/../f";
  EXPECT_THAT(message({dir, unclean}), HasSubstr("\"d/../f\": not a clean path"));
  unclean.path = "/d/f";
  EXPECT_THAT(message({dir, unclean}), HasSubstr("not a clean path"));
  EXPECT_THAT(message({dir, file, file}), HasSubstr("\"d/f\": listed twice"));
  EXPECT_THAT(message({file}), HasSubstr("\"d/f\": parent \"d\" is not a directory"));
  ContextEntry no_digest = file;
  no_digest.content.reset();
  EXPECT_THAT(message({dir, no_digest}), HasSubstr("a file without a content digest"));
  const ContextEntry bad_link = Entry("d/l", EntryType::kSymlink, 0777);
  EXPECT_THAT(message({dir, bad_link}), HasSubstr("a symlink without a target"));
  ContextEntry bad_mode = file;
  bad_mode.mode = 0100644;
  EXPECT_THAT(message({dir, bad_mode}), HasSubstr("above 07777"));
}

TEST_F(ContextIndexTest, Restrict_KeepsWhatTheSourcesSelectAndTheDirectoriesAbove) {
  Write("services/a/main.c", "int main;");
  Write("services/a/lib/util.c", "util");
  Write("services/b/big.bin", std::string(4096, 'b'));
  Write("docs/guide.md", "guide");
  Write("docs/notes.txt", "notes");
  Symlink("services/a", "current");
  const ContextIndex index = Index();
  const std::vector<std::string> sources = {"/current/main.c", "docs/*.md", "missing/file"};
  const ContextIndex part = index.Restrict(sources);
  EXPECT_THAT(Paths(part), ::testing::ElementsAre("current", "docs", "docs/guide.md", "services",
                                                  "services/a", "services/a/main.c"));
  // Each source selects the same on the part as on the whole.
  for (const std::string source : {"/current/main.c", "docs/*.md"}) {
    EXPECT_EQ(Selected(part, {source}), Selected(index, {source})) << source;
  }
  EXPECT_FALSE(part.Select({"missing/file"}).ok());
  // And the part passes the checks of an index received from a client.
  EXPECT_TRUE(ContextIndex::FromEntries(part.entries()).ok());
}

TEST_F(ContextIndexTest, Restrict_ADirectorySourceKeepsEverythingBelowIt) {
  Write("services/a/main.c", "int main;");
  Write("services/a/lib/util.c", "util");
  Write("services/b/big.bin", "b");
  EXPECT_THAT(Paths(Index().Restrict({"services/a"})),
              ::testing::ElementsAre("services", "services/a", "services/a/lib",
                                     "services/a/lib/util.c", "services/a/main.c"));
}

// Longer than the window in which HashCache does not trust a file's stamps.
constexpr absl::Duration kOlderThanRacy = absl::Milliseconds(250);

// The hash cache: an unchanged file is not read again; a changed one is.
TEST_F(ContextIndexTest, HashCache_UnchangedFilesComeFromTheCacheChangedOnesAreRead) {
  Write("a.txt", "alpha");
  Write("b.txt", "beta");
  // A file changed within 100 ms of a walk is not remembered by it.
  absl::SleepFor(kOlderThanRacy);
  const std::filesystem::path file = temp_.path() / "hashes";
  {
    HashCache cache = HashCache::Load(file);
    ASSERT_TRUE(ContextIndex::Build(Context(), Dockerfile(), &cache).ok());
    EXPECT_EQ(cache.hits(), 0u);
    EXPECT_EQ(cache.misses(), 3u);
    ASSERT_TRUE(cache.Save().ok());
  }
  const ContextIndex fresh = Index();
  struct stat before;
  ASSERT_EQ(stat((Context() / "b.txt").c_str(), &before), 0);
  Write("b.txt", "BETA");  // same size, new content
  // Even with the old mtime put back, the ctime moved.
  const timespec times[2] = {before.st_atim, before.st_mtim};
  ASSERT_EQ(utimensat(AT_FDCWD, (Context() / "b.txt").c_str(), times, 0), 0);
  HashCache cache = HashCache::Load(file);
  absl::StatusOr<ContextIndex> cached = ContextIndex::Build(Context(), Dockerfile(), &cache);
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ(cache.hits(), 2u);
  EXPECT_EQ(cache.misses(), 1u);
  EXPECT_EQ(cached->Find("a.txt")->content, fresh.Find("a.txt")->content);
  EXPECT_EQ(cached->Find("b.txt")->content, digest::Sha256Of("BETA"));
}

// A tree large enough that its re-scan stats entries on two threads (over
// 2,000 files, directories of over 32 entries): the same index as a walk
// without the cache, every unchanged file from the cache, a changed one read
// again, an excluded file left out and a removed one gone.
TEST_F(ContextIndexTest, HashCache_ReScanOfALargeTreeMatchesAFreshWalk) {
  Write(".dockerignore", "d07/secret-*\n");
  for (int d = 0; d < 40; ++d) {
    for (int f = 0; f < 60; ++f) {
      Write(absl::StrCat("d", d < 10 ? "0" : "", d, "/f", f), absl::StrCat("content ", d, "/", f));
    }
  }
  Write("d07/secret-1", "excluded");
  absl::SleepFor(kOlderThanRacy);
  const std::filesystem::path file = temp_.path() / "hashes";
  {
    HashCache cache = HashCache::Load(file);
    ASSERT_TRUE(ContextIndex::Build(Context(), Dockerfile(), &cache).ok());
    ASSERT_TRUE(cache.Save().ok());
    ASSERT_GE(cache.size(), 2400u);
  }
  Write("d13/f5", "changed");
  std::filesystem::remove(Context() / "d21/f8");
  const ContextIndex fresh = Index();
  HashCache cache = HashCache::Load(file);
  absl::StatusOr<ContextIndex> cached = ContextIndex::Build(Context(), Dockerfile(), &cache);
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ(cache.misses(), 1u);
  EXPECT_EQ(cache.hits(), 40u * 60u - 2u + 2u);  // + .dockerignore and Dockerfile
  ASSERT_EQ(cached->entries().size(), fresh.entries().size());
  for (size_t i = 0; i < fresh.entries().size(); ++i) {
    const ContextEntry& want = fresh.entries()[i];
    const ContextEntry& got = cached->entries()[i];
    EXPECT_EQ(got.path, want.path);
    EXPECT_EQ(got.type, want.type) << want.path;
    EXPECT_EQ(got.mode, want.mode) << want.path;
    EXPECT_EQ(got.size, want.size) << want.path;
    EXPECT_EQ(got.content, want.content) << want.path;
    EXPECT_EQ(got.mtime_ns, want.mtime_ns) << want.path;
  }
  EXPECT_EQ(cached->Find("d13/f5")->content, digest::Sha256Of("changed"));
  EXPECT_EQ(cached->Find("d21/f8"), nullptr);
  EXPECT_EQ(cached->Find("d07/secret-1"), nullptr);
}

// The cache lists files in the order the walk asked for them. A file added
// and one removed are found out of that order; the next save puts the cache
// in the new walk's order, and a walk after that, of an unchanged tree, leaves
// the file as it is (not rewritten: the same inode).
TEST_F(ContextIndexTest, HashCache_AddedAndRemovedFilesThenAnUnchangedTreeLeavesTheFileAlone) {
  for (int f = 0; f < 20; ++f) Write(absl::StrCat("dir/f", f), absl::StrCat("content ", f));
  absl::SleepFor(kOlderThanRacy);
  const std::filesystem::path file = temp_.path() / "hashes";
  {
    HashCache cache = HashCache::Load(file);
    ASSERT_TRUE(ContextIndex::Build(Context(), Dockerfile(), &cache).ok());
    ASSERT_TRUE(cache.Save().ok());
  }
  Write("dir/added", "new");
  std::filesystem::remove(Context() / "dir/f7");
  absl::SleepFor(kOlderThanRacy);
  {
    HashCache cache = HashCache::Load(file);
    absl::StatusOr<ContextIndex> index = ContextIndex::Build(Context(), Dockerfile(), &cache);
    ASSERT_TRUE(index.ok()) << index.status();
    EXPECT_EQ(cache.hits(), 19u + 1u);  // + the Dockerfile
    EXPECT_EQ(cache.misses(), 1u);
    EXPECT_EQ(index->Find("dir/added")->content, digest::Sha256Of("new"));
    ASSERT_TRUE(cache.Save().ok());
    EXPECT_EQ(cache.size(), 22u);  // the removed file is still in memory, not in the file
  }
  struct stat saved;
  ASSERT_EQ(stat(file.c_str(), &saved), 0);
  HashCache cache = HashCache::Load(file);
  EXPECT_EQ(cache.size(), 21u);
  ASSERT_TRUE(ContextIndex::Build(Context(), Dockerfile(), &cache).ok());
  EXPECT_EQ(cache.hits(), 21u);
  EXPECT_EQ(cache.misses(), 0u);
  ASSERT_TRUE(cache.Save().ok());
  struct stat after;
  ASSERT_EQ(stat(file.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, saved.st_ino);
}

TEST_F(ContextIndexTest, HashCache_AFileChangedJustNowIsNotRemembered) {
  Write("new.txt", "written a moment ago");
  const std::filesystem::path file = temp_.path() / "hashes";
  HashCache first = HashCache::Load(file);
  ASSERT_TRUE(ContextIndex::Build(Context(), Dockerfile(), &first).ok());
  ASSERT_TRUE(first.Save().ok());
  HashCache second = HashCache::Load(file);
  ASSERT_TRUE(ContextIndex::Build(Context(), Dockerfile(), &second).ok());
  EXPECT_EQ(second.hits(), 0u);
}

TEST_F(ContextIndexTest, HashCache_AMalformedCacheFileIsAnEmptyCache) {
  Write("a.txt", "alpha");
  absl::SleepFor(kOlderThanRacy);
  const std::filesystem::path file = temp_.path() / "hashes";
  // A record whose digest is not hex: stamps (40 bytes), path length, digest, path.
  std::ofstream(file) << "stagefarm context hashes v2\n"
                      << std::string(40, '\0') << std::string("\x05\0\0\0", 4)
                      << "sha256:" << std::string(64, 'x') << "a.txt";
  HashCache cache = HashCache::Load(file);
  absl::StatusOr<ContextIndex> index = ContextIndex::Build(Context(), Dockerfile(), &cache);
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(cache.hits(), 0u);
  EXPECT_EQ(index->Find("a.txt")->content, digest::Sha256Of("alpha"));
  ASSERT_TRUE(cache.Save().ok());  // and is replaced by a good one
  HashCache again = HashCache::Load(file);
  ASSERT_TRUE(ContextIndex::Build(Context(), Dockerfile(), &again).ok());
  EXPECT_EQ(again.hits(), 2u);
}

// Paths with spaces, backslashes and newlines are kept in the file and
// found again; a file cut short in its last record is no cache at all.
TEST_F(ContextIndexTest, HashCache_UnusualPathsRoundTripATornFileIsEmpty) {
  Write("with space\\and\nnewline.txt", "odd");
  Write("plain.txt", "plain");
  absl::SleepFor(kOlderThanRacy);
  const std::filesystem::path file = temp_.path() / "hashes";
  {
    HashCache cache = HashCache::Load(file);
    ASSERT_TRUE(ContextIndex::Build(Context(), Dockerfile(), &cache).ok());
    ASSERT_TRUE(cache.Save().ok());
  }
  {
    HashCache cache = HashCache::Load(file);
    absl::StatusOr<ContextIndex> index = ContextIndex::Build(Context(), Dockerfile(), &cache);
    ASSERT_TRUE(index.ok()) << index.status();
    EXPECT_EQ(cache.hits(), 3u);
    EXPECT_EQ(cache.misses(), 0u);
    EXPECT_EQ(index->Find("with space\\and\nnewline.txt")->content, digest::Sha256Of("odd"));
  }
  std::filesystem::resize_file(file, std::filesystem::file_size(file) - 1);
  HashCache torn = HashCache::Load(file);
  EXPECT_EQ(torn.size(), 0u);
}

}  // namespace
}  // namespace stagefarm::fs
