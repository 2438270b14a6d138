#include "worker/snapshots/snapshots.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm::snapshots {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
namespace stdfs = std::filesystem;

digest::Digest Parse(absl::string_view text) { return *digest::Digest::Parse(text); }

TEST(ChainIdsTest, MatchHandComputedValues) {
  const digest::Digest a = digest::Sha256Of("a");
  const digest::Digest b = digest::Sha256Of("b");
  const digest::Digest c = digest::Sha256Of("c");
  // printf 'sha256:<a> sha256:<b>' | sha256sum, and so on.
  EXPECT_THAT(
      ChainIds({a, b, c}),
      ElementsAre(
          a, Parse("sha256:51c0c8ace48498d6f5fee6b0592cc06f2da0f3cbe09c5a34a97dce85c3889676"),
          Parse("sha256:2fce7f8ce91bcf0a1428b36e1024639fdbd9469eea762dba98aa749631885106")));
  EXPECT_TRUE(ChainIds({}).empty());
}

// A tar entry: a file with content, a directory (path ends in "/"), or a
// whiteout / opaque marker (a ".wh." name, empty).
struct Entry {
  std::string path;
  std::string content = {};
  mode_t mode = 0644;
  int64_t uid = 0;
};

la_ssize_t Append(archive*, void* out, const void* data, size_t size) {
  static_cast<std::string*>(out)->append(static_cast<const char*>(data), size);
  return static_cast<la_ssize_t>(size);
}

std::string MakeTar(const std::vector<Entry>& entries) {
  std::string out;
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_open(a, &out, nullptr, Append, nullptr);
  for (const Entry& e : entries) {
    archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, e.path.c_str());
    const bool dir = e.path.back() == '/';
    archive_entry_set_filetype(entry, dir ? AE_IFDIR : AE_IFREG);
    archive_entry_set_perm(entry, dir ? 0755 : e.mode);
    archive_entry_set_uid(entry, e.uid);
    archive_entry_set_mtime(entry, 1700000000, 0);
    archive_entry_set_size(entry, dir ? 0 : e.content.size());
    archive_write_header(a, entry);
    if (!dir) archive_write_data(a, e.content.data(), e.content.size());
    archive_entry_free(entry);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

// A layer whose opens are counted.
struct CountedLayer {
  explicit CountedLayer(std::string bytes)
      : tar(std::move(bytes)), opens(std::make_shared<std::atomic<int>>(0)) {}

  LayerSource Source() const {
    std::string bytes = tar;
    std::shared_ptr<std::atomic<int>> counter = opens;
    return LayerSource{
        digest::Sha256Of(tar), [bytes, counter]() -> absl::StatusOr<oci::LayerReader> {
          ++*counter;
          auto done = std::make_shared<bool>(false);
          return oci::LayerReader([bytes, done]() -> absl::StatusOr<absl::string_view> {
            if (*done) return absl::string_view();
            *done = true;
            return absl::string_view(bytes);
          });
        }};
  }

  std::string tar;
  std::shared_ptr<std::atomic<int>> opens;
};

// Base: etc/a, etc/b, dir/x, owned files. Top: deletes etc/a, makes dir
// opaque with a new dir/y.
CountedLayer BaseLayer() {
  return CountedLayer(
      MakeTar({{"etc/"}, {"etc/a", "a"}, {"etc/b", "b", 0600, 33}, {"dir/"}, {"dir/x", "x"}}));
}
CountedLayer TopLayer() {
  return CountedLayer(
      MakeTar({{"etc/"}, {"etc/.wh.a"}, {"dir/"}, {"dir/.wh..wh..opq"}, {"dir/y", "y"}}));
}

std::vector<std::string> Names(const stdfs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : stdfs::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Every entry: mode, owner, size and content, symlink target. Not mtimes.
std::map<std::string, std::string> Tree(const stdfs::path& root) {
  std::map<std::string, std::string> tree;
  for (auto it = stdfs::recursive_directory_iterator(root); it != stdfs::end(it); ++it) {
    struct stat st {};
    EXPECT_EQ(lstat(it->path().c_str(), &st), 0);
    std::string d = absl::StrCat(absl::Hex(st.st_mode), " ", st.st_uid, ":", st.st_gid);
    if (S_ISREG(st.st_mode)) {
      std::ifstream in(it->path(), std::ios::binary);
      absl::StrAppend(&d, " [", std::string(std::istreambuf_iterator<char>(in), {}), "]");
    }
    tree[stdfs::relative(it->path(), root).string()] = d;
  }
  return tree;
}

void WriteFile(const stdfs::path& path, const std::string& content) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
}

class SnapshotsTest : public ::testing::Test {
 protected:
  SnapshotsTest() : temp_("snapshots_test") {
    absl::StatusOr<std::unique_ptr<Snapshots>> opened = Snapshots::Open(temp_.path() / "data");
    EXPECT_TRUE(opened.ok()) << opened.status();
    if (opened.ok()) snapshots_ = *std::move(opened);
  }

  testing::TempDir temp_;
  std::unique_ptr<Snapshots> snapshots_;
};

TEST_F(SnapshotsTest, Ensure_UnpacksEachLayerOnceAsOverlayLowerDirs) {
  const CountedLayer base = BaseLayer();
  const CountedLayer top = TopLayer();
  absl::StatusOr<std::vector<Snapshot>> first = snapshots_->Ensure({base.Source(), top.Source()});
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->size(), 2u);
  const std::vector<digest::Digest> chain = ChainIds({base.Source().diff_id, top.Source().diff_id});
  EXPECT_EQ((*first)[0].chain_id, chain[0]);
  EXPECT_EQ((*first)[1].chain_id, chain[1]);
  EXPECT_EQ((*first)[1].dir, temp_.path() / "data/snapshots" / chain[1].hex());
  EXPECT_TRUE((*first)[0].unpacked_now);
  EXPECT_TRUE((*first)[1].unpacked_now);
  // The top layer's whiteout and opaque marker, in overlayfs' form.
  struct stat st {};
  ASSERT_EQ(lstat(((*first)[1].dir / "etc/a").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0));
  char value[2] = {};
  EXPECT_EQ(lgetxattr(((*first)[1].dir / "dir").c_str(), "trusted.overlay.opaque", value, 2), 1);

  absl::StatusOr<std::vector<Snapshot>> second = snapshots_->Ensure({base.Source(), top.Source()});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE((*second)[0].unpacked_now);
  EXPECT_FALSE((*second)[1].unpacked_now);
  EXPECT_EQ(*base.opens, 1);
  EXPECT_EQ(*top.opens, 1);
  EXPECT_THAT(Names(snapshots_->dir()),
              ::testing::UnorderedElementsAre(chain[0].hex(), chain[1].hex()));
}

TEST_F(SnapshotsTest, Ensure_ConcurrentCallersUnpackOnce) {
  const CountedLayer base = BaseLayer();
  std::vector<std::thread> threads;
  std::atomic<int> failures = 0;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      if (!snapshots_->Ensure({base.Source()}).ok()) ++failures;
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(*base.opens, 1);
}

TEST_F(SnapshotsTest, Ensure_FailedUnpackLeavesNothing) {
  CountedLayer broken(MakeTar({{"ok", "fine"}}).substr(0, 700));
  broken.tar.append("garbage");
  absl::StatusOr<std::vector<Snapshot>> result = snapshots_->Ensure({broken.Source()});
  EXPECT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("unpacking layer sha256:"));
  EXPECT_TRUE(Names(snapshots_->dir()).empty());
}

TEST_F(SnapshotsTest, Open_RemovesWhatAnInterruptedUnpackLeft) {
  stdfs::create_directories(snapshots_->dir() / "tmp-abc.123456/etc");
  absl::StatusOr<std::unique_ptr<Snapshots>> reopened = Snapshots::Open(temp_.path() / "data");
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_TRUE(Names(snapshots_->dir()).empty());
}

TEST_F(SnapshotsTest, Open_KeepsSnapshotsOfThisBootAndDiscardsThoseOfAnother) {
  const CountedLayer base = BaseLayer();
  ASSERT_TRUE(snapshots_->Ensure({base.Source()}).ok());
  const stdfs::path boot_file = temp_.path() / "data/snapshots-boot-id";
  std::string this_boot;
  {
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    std::getline(in, this_boot);
  }
  ASSERT_FALSE(this_boot.empty());
  {
    std::ifstream in(boot_file);
    std::string recorded;
    std::getline(in, recorded);
    EXPECT_EQ(recorded, this_boot);
  }

  // Reopened in the same boot: the snapshot is kept.
  absl::StatusOr<std::unique_ptr<Snapshots>> same = Snapshots::Open(temp_.path() / "data");
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ((*same)->discarded_at_open(), 0u);
  EXPECT_EQ(Names(snapshots_->dir()).size(), 1u);

  // Written in another boot: it may have lost unwritten data, so it goes, and
  // the next Ensure unpacks the layer again.
  WriteFile(boot_file, "00000000-1111-2222-3333-444444444444");
  absl::StatusOr<std::unique_ptr<Snapshots>> rebooted = Snapshots::Open(temp_.path() / "data");
  ASSERT_TRUE(rebooted.ok()) << rebooted.status();
  EXPECT_EQ((*rebooted)->discarded_at_open(), 1u);
  EXPECT_TRUE(Names(snapshots_->dir()).empty());
  absl::StatusOr<std::vector<Snapshot>> again = (*rebooted)->Ensure({base.Source()});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE((*again)[0].unpacked_now);
  EXPECT_EQ(*base.opens, 2);
  absl::StatusOr<std::unique_ptr<Snapshots>> after = Snapshots::Open(temp_.path() / "data");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ((*after)->discarded_at_open(), 0u);
}

// The step's overlay is volatile: unmounting it does not sync the file system.
TEST_F(SnapshotsTest, PrepareRootfs_OverlayIsMountedVolatile) {
  const CountedLayer base = BaseLayer();
  absl::StatusOr<std::vector<Snapshot>> chain = snapshots_->Ensure({base.Source()});
  ASSERT_TRUE(chain.ok()) << chain.status();
  absl::StatusOr<std::unique_ptr<Rootfs>> rootfs =
      snapshots_->PrepareRootfs(*chain, temp_.path() / "step", RootfsOptions{});
  ASSERT_TRUE(rootfs.ok()) << rootfs.status();
  if ((*rootfs)->mode() != RootfsMode::kOverlay) GTEST_SKIP() << (*rootfs)->mode_reason();
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::string line;
  std::string found;
  while (std::getline(mountinfo, line)) {
    if (line.find(" " + (*rootfs)->root().native() + " ") != std::string::npos) found = line;
  }
  ASSERT_FALSE(found.empty()) << "no mount at " << (*rootfs)->root();
  EXPECT_THAT(found, HasSubstr(" overlay "));
  EXPECT_THAT(found, HasSubstr("volatile"));
  EXPECT_TRUE((*rootfs)->Finish().ok());
}

TEST_F(SnapshotsTest, PrepareRootfs_OverlayShowsTheStackAndTheStepsLayer) {
  const CountedLayer base = BaseLayer();
  const CountedLayer top = TopLayer();
  absl::StatusOr<std::vector<Snapshot>> chain = snapshots_->Ensure({base.Source(), top.Source()});
  ASSERT_TRUE(chain.ok()) << chain.status();
  absl::StatusOr<std::unique_ptr<Rootfs>> rootfs =
      snapshots_->PrepareRootfs(*chain, temp_.path() / "step", RootfsOptions{});
  ASSERT_TRUE(rootfs.ok()) << rootfs.status();
  if ((*rootfs)->mode() != RootfsMode::kOverlay) GTEST_SKIP() << (*rootfs)->mode_reason();
  EXPECT_THAT((*rootfs)->mode_reason(), HasSubstr("overlayfs"));
  const stdfs::path root = (*rootfs)->root();
  EXPECT_THAT(Names(root / "etc"), ElementsAre("b"));
  EXPECT_THAT(Names(root / "dir"), ElementsAre("y"));
  absl::StatusOr<bool> unchanged = (*rootfs)->Unchanged();
  ASSERT_TRUE(unchanged.ok()) << unchanged.status();
  EXPECT_TRUE(*unchanged);

  ASSERT_EQ(unlink((root / "etc/b").c_str()), 0);
  WriteFile(root / "dir/z", "z");
  std::string tar;
  const oci::ByteSink discard = [](absl::string_view) { return absl::OkStatus(); };
  absl::StatusOr<oci::LayerDigests> layer = (*rootfs)->WriteLayer(
      [&](absl::string_view bytes) {
        tar.append(bytes.data(), bytes.size());
        return absl::OkStatus();
      },
      discard, oci::DiffOptions{});
  ASSERT_TRUE(layer.ok()) << layer.status();
  EXPECT_EQ(layer->entries, 4u);  // dir/, dir/z, etc/, etc/.wh.b
  EXPECT_THAT(tar, HasSubstr("etc/.wh.b"));
}

TEST_F(SnapshotsTest, PrepareRootfs_OverlayLayerDropsWhiteoutsOfWhatTheStackHides) {
  const CountedLayer base = BaseLayer();
  const CountedLayer top = TopLayer();
  absl::StatusOr<std::vector<Snapshot>> chain = snapshots_->Ensure({base.Source(), top.Source()});
  ASSERT_TRUE(chain.ok()) << chain.status();
  absl::StatusOr<std::unique_ptr<Rootfs>> rootfs =
      snapshots_->PrepareRootfs(*chain, temp_.path() / "step", RootfsOptions{});
  ASSERT_TRUE(rootfs.ok()) << rootfs.status();
  if ((*rootfs)->mode() != RootfsMode::kOverlay) GTEST_SKIP() << (*rootfs)->mode_reason();
  // Whiteouts made behind overlayfs' back, as a stale upper could hold them:
  // etc/a is whited out by the top layer, dir/x hidden by its opaque dir/.
  const stdfs::path upper = temp_.path() / "step/upper";
  for (const char* dir : {"etc", "dir"}) ASSERT_EQ(mkdir((upper / dir).c_str(), 0755), 0);
  for (const char* name : {"etc/a", "etc/b", "dir/x"}) {
    ASSERT_EQ(mknod((upper / name).c_str(), S_IFCHR, makedev(0, 0)), 0) << name;
  }
  std::string tar;
  absl::StatusOr<oci::LayerDigests> layer = (*rootfs)->WriteLayer(
      [&](absl::string_view bytes) {
        tar.append(bytes.data(), bytes.size());
        return absl::OkStatus();
      },
      [](absl::string_view) { return absl::OkStatus(); }, oci::DiffOptions{});
  ASSERT_TRUE(layer.ok()) << layer.status();
  EXPECT_EQ(layer->entries, 3u);  // dir/, etc/, etc/.wh.b
  EXPECT_THAT(tar, HasSubstr("etc/.wh.b"));
  EXPECT_THAT(tar, ::testing::Not(HasSubstr(".wh.a")));
  EXPECT_THAT(tar, ::testing::Not(HasSubstr(".wh.x")));
}

TEST_F(SnapshotsTest, PrepareRootfs_CopyFallbackGivesTheSameTreeAndTheSameLayer) {
  const CountedLayer base = BaseLayer();
  const CountedLayer top = TopLayer();
  absl::StatusOr<std::vector<Snapshot>> chain = snapshots_->Ensure({base.Source(), top.Source()});
  ASSERT_TRUE(chain.ok()) << chain.status();
  absl::StatusOr<std::unique_ptr<Rootfs>> overlay =
      snapshots_->PrepareRootfs(*chain, temp_.path() / "overlay-step", RootfsOptions{});
  ASSERT_TRUE(overlay.ok()) << overlay.status();
  if ((*overlay)->mode() != RootfsMode::kOverlay) GTEST_SKIP() << (*overlay)->mode_reason();
  RootfsOptions force;
  force.force_copy = true;
  absl::StatusOr<std::unique_ptr<Rootfs>> copy =
      snapshots_->PrepareRootfs(*chain, temp_.path() / "copy-step", force);
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ((*copy)->mode(), RootfsMode::kCopy);
  EXPECT_THAT((*copy)->mode_reason(), HasSubstr("copy forced"));
  EXPECT_EQ(Tree((*copy)->root()), Tree((*overlay)->root()));
  absl::StatusOr<bool> unchanged = (*copy)->Unchanged();
  ASSERT_TRUE(unchanged.ok()) << unchanged.status();
  EXPECT_TRUE(*unchanged);

  oci::DiffOptions options;
  options.source_date_epoch = 1;
  std::vector<std::string> tars;
  for (Rootfs* rootfs : {overlay->get(), copy->get()}) {
    const stdfs::path root = rootfs->root();
    ASSERT_EQ(unlink((root / "etc/b").c_str()), 0);
    WriteFile(root / "dir/z", "z");
    ASSERT_EQ(chown((root / "dir/z").c_str(), 5, 6), 0);
    std::string& tar = tars.emplace_back();
    absl::StatusOr<oci::LayerDigests> layer = rootfs->WriteLayer(
        [&](absl::string_view bytes) {
          tar.append(bytes.data(), bytes.size());
          return absl::OkStatus();
        },
        [](absl::string_view) { return absl::OkStatus(); }, options);
    ASSERT_TRUE(layer.ok()) << layer.status();
  }
  EXPECT_EQ(tars[0], tars[1]);
}

TEST_F(SnapshotsTest, StepLayer_StackedAsASnapshotGivesTheStepsView) {
  const CountedLayer base = BaseLayer();
  const CountedLayer top = TopLayer();
  std::vector<LayerSource> sources = {base.Source(), top.Source()};
  absl::StatusOr<std::vector<Snapshot>> chain = snapshots_->Ensure(sources);
  ASSERT_TRUE(chain.ok()) << chain.status();
  absl::StatusOr<std::unique_ptr<Rootfs>> step =
      snapshots_->PrepareRootfs(*chain, temp_.path() / "step", RootfsOptions{});
  ASSERT_TRUE(step.ok()) << step.status();
  if ((*step)->mode() != RootfsMode::kOverlay) GTEST_SKIP() << (*step)->mode_reason();
  const stdfs::path root = (*step)->root();
  // Delete, replace a lower directory by rm -rf + mkdir (opaque), add.
  ASSERT_EQ(unlink((root / "etc/b").c_str()), 0);
  stdfs::remove_all(root / "dir");
  stdfs::create_directories(root / "dir/new");
  WriteFile(root / "dir/new/f", "f");
  WriteFile(root / "top", "top");
  std::string blob;
  absl::StatusOr<oci::LayerDigests> layer =
      (*step)->WriteLayer([](absl::string_view) { return absl::OkStatus(); },
                          [&](absl::string_view bytes) {
                            blob.append(bytes.data(), bytes.size());
                            return absl::OkStatus();
                          },
                          oci::DiffOptions{});
  ASSERT_TRUE(layer.ok()) << layer.status();

  // The step's layer (its compressed blob) as a third snapshot.
  sources.push_back(LayerSource{layer->diff_id, [&blob]() -> absl::StatusOr<oci::LayerReader> {
                                  auto done = std::make_shared<bool>(false);
                                  return oci::LayerReader(
                                      [&blob, done]() -> absl::StatusOr<absl::string_view> {
                                        if (*done) return absl::string_view();
                                        *done = true;
                                        return absl::string_view(blob);
                                      });
                                }});
  absl::StatusOr<std::vector<Snapshot>> next = snapshots_->Ensure(sources);
  ASSERT_TRUE(next.ok()) << next.status();
  for (const RootfsOptions& options : {RootfsOptions{}, RootfsOptions{.force_copy = true}}) {
    absl::StatusOr<std::unique_ptr<Rootfs>> stacked = snapshots_->PrepareRootfs(
        *next, temp_.path() / (options.force_copy ? "copy" : "overlay"), options);
    ASSERT_TRUE(stacked.ok()) << stacked.status();
    EXPECT_EQ(Tree((*stacked)->root()), Tree(root)) << (*stacked)->mode_reason();
    EXPECT_THAT(Names((*stacked)->root() / "dir"), ElementsAre("new"));
  }
}

TEST_F(SnapshotsTest, PrepareRootfs_FromScratch) {
  absl::StatusOr<std::unique_ptr<Rootfs>> rootfs =
      snapshots_->PrepareRootfs({}, temp_.path() / "step", RootfsOptions{});
  ASSERT_TRUE(rootfs.ok()) << rootfs.status();
  EXPECT_TRUE(Names((*rootfs)->root()).empty());
  WriteFile((*rootfs)->root() / "f", "f");
  absl::StatusOr<bool> unchanged = (*rootfs)->Unchanged();
  ASSERT_TRUE(unchanged.ok()) << unchanged.status();
  EXPECT_FALSE(*unchanged);
}

}  // namespace
}  // namespace stagefarm::snapshots
