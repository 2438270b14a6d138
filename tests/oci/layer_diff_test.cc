#include "common/oci/layer_diff.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/cas/blob_store.h"
#include "common/oci/layer_unpack.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/random_blobs.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm::oci {
namespace {

using ::testing::ElementsAre;
namespace stdfs = std::filesystem;

void WriteFile(const stdfs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  ASSERT_TRUE(out.good()) << path;
}

void SetTime(const stdfs::path& path, time_t mtime) {
  const timespec times[2] = {{mtime, 0}, {mtime, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << path;
}

// The tree a step starts from.
void MakeLower(const stdfs::path& lower) {
  for (const char* dir : {"etc", "dir", "dir/sub", "opaque", "replace_dir"}) {
    stdfs::create_directories(lower / dir);
  }
  WriteFile(lower / "etc/keep", "keep");
  WriteFile(lower / "etc/modify", "old");
  WriteFile(lower / "etc/delete", "bye");
  WriteFile(lower / "dir/a", "a");
  WriteFile(lower / "dir/sub/b", "b");
  WriteFile(lower / "opaque/x", "x");
  WriteFile(lower / "opaque/y", "y");
  WriteFile(lower / "replace_dir/z", "z");
  ASSERT_EQ(chown((lower / "dir").c_str(), 7, 8), 0);
  ASSERT_EQ(lsetxattr((lower / "etc/keep").c_str(), "user.kept", "1", 1, 0), 0);
}

// What a build step does to its root filesystem: create, modify, delete,
// replace a directory by a file, special files, hardlinks, owners, xattrs,
// and (with `recreate_dir`) rm -rf + mkdir of a directory.
void RunStep(const stdfs::path& root, bool recreate_dir) {
  WriteFile(root / "etc/modify", "new content");
  ASSERT_EQ(unlink((root / "etc/delete").c_str()), 0);
  stdfs::remove_all(root / "replace_dir");
  WriteFile(root / "replace_dir", "now a file");
  stdfs::create_directories(root / "new");
  WriteFile(root / "new/file", "setuid program");
  ASSERT_EQ(chown((root / "new/file").c_str(), 1000, 1001), 0);
  ASSERT_EQ(chmod((root / "new/file").c_str(), 04755), 0);
  ASSERT_EQ(lsetxattr((root / "new/file").c_str(), "user.test", "value", 5, 0), 0);
  ASSERT_EQ(link((root / "new/file").c_str(), (root / "new/link").c_str()), 0);
  ASSERT_EQ(symlink("../etc/keep", (root / "new/sym").c_str()), 0);
  ASSERT_EQ(mkfifo((root / "new/fifo").c_str(), 0600), 0);
  ASSERT_EQ(mknod((root / "new/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  ASSERT_EQ(chmod((root / "new/null").c_str(), 0666), 0);
  ASSERT_EQ(mkdir((root / "new/sticky").c_str(), 01777), 0);
  ASSERT_EQ(chmod((root / "new/sticky").c_str(), 01777), 0);
  if (recreate_dir) {
    stdfs::remove_all(root / "opaque");
    stdfs::create_directories(root / "opaque");
    WriteFile(root / "opaque/w", "w");
  }
}

// An overlay mount of one lower dir, unmounted when the object goes.
class Overlay {
 public:
  explicit Overlay(const stdfs::path& base) : base_(base) {
    for (const char* dir : {"lower", "upper", "work", "merged"})
      stdfs::create_directories(base / dir);
  }
  ~Overlay() {
    if (mounted_) umount2(merged().c_str(), MNT_DETACH);
  }
  // Mounts; false (with errno's text in *error) when overlayfs is unavailable.
  bool Mount(std::string* error) {
    const std::string data = absl::StrCat(
        "lowerdir=", lower().string(), ",upperdir=", upper().string(),
        ",workdir=", (base_ / "work").string(), ",redirect_dir=off,metacopy=off,index=off");
    if (mount("overlay", merged().c_str(), "overlay", 0, data.c_str()) != 0) {
      *error = strerror(errno);
      return false;
    }
    mounted_ = true;
    return true;
  }
  stdfs::path lower() const { return base_ / "lower"; }
  stdfs::path upper() const { return base_ / "upper"; }
  stdfs::path merged() const { return base_ / "merged"; }

 private:
  stdfs::path base_;
  bool mounted_ = false;
};

#define MOUNT_OR_SKIP(overlay)                                                        \
  do {                                                                                \
    std::string mount_error;                                                          \
    if (!(overlay).Mount(&mount_error)) GTEST_SKIP() << "overlayfs: " << mount_error; \
  } while (0)

LowerExists ExistsIn(const stdfs::path& lower) {
  return [lower](absl::string_view path) -> absl::StatusOr<bool> {
    struct stat st {};
    return lstat((lower / std::string(path)).c_str(), &st) == 0;
  };
}

struct Written {
  std::string tar;
  std::string blob;
};

ByteSink AppendTo(std::string* out) {
  return [out](absl::string_view bytes) {
    out->append(bytes.data(), bytes.size());
    return absl::OkStatus();
  };
}

// One tar entry as read back, in a form tests compare.
struct TarEntry {
  std::string path;
  std::string description;  // type, mode, owner, size or target, xattrs
  time_t mtime;
  std::string content;
};

std::vector<TarEntry> ReadTar(const std::string& tar) {
  std::vector<TarEntry> entries;
  archive* a = archive_read_new();
  archive_read_support_format_tar(a);
  archive_read_support_filter_all(a);
  EXPECT_EQ(archive_read_open_memory(a, tar.data(), tar.size()), ARCHIVE_OK);
  archive_entry* entry = nullptr;
  while (archive_read_next_header(a, &entry) == ARCHIVE_OK) {
    TarEntry out;
    out.path = archive_entry_pathname(entry);
    out.mtime = archive_entry_mtime(entry);
    const mode_t type = archive_entry_filetype(entry);
    std::string d = absl::StrCat(type == AE_IFDIR   ? "d"
                                 : type == AE_IFLNK ? "l"
                                 : type == AE_IFCHR ? "c"
                                 : type == AE_IFIFO ? "p"
                                                    : "f",
                                 " ", absl::StrCat(absl::Hex(archive_entry_perm(entry))), " ",
                                 archive_entry_uid(entry), ":", archive_entry_gid(entry));
    if (const char* hardlink = archive_entry_hardlink(entry)) absl::StrAppend(&d, " => ", hardlink);
    if (type == AE_IFLNK) absl::StrAppend(&d, " -> ", archive_entry_symlink(entry));
    if (type == AE_IFCHR) {
      absl::StrAppend(&d, " ", archive_entry_rdevmajor(entry), ",", archive_entry_rdevminor(entry));
    }
    if (archive_entry_xattr_reset(entry) > 0) {
      const char* key = nullptr;
      const void* value = nullptr;
      size_t size = 0;
      while (archive_entry_xattr_next(entry, &key, &value, &size) == ARCHIVE_OK) {
        absl::StrAppend(&d, " ", key, "=", std::string(static_cast<const char*>(value), size));
      }
    }
    out.description = d;
    char buffer[4096];
    la_ssize_t n;
    while ((n = archive_read_data(a, buffer, sizeof(buffer))) > 0) out.content.append(buffer, n);
    entries.push_back(std::move(out));
  }
  archive_read_free(a);
  return entries;
}

std::vector<std::string> Paths(const std::vector<TarEntry>& entries) {
  std::vector<std::string> paths;
  for (const TarEntry& e : entries) paths.push_back(e.path);
  return paths;
}

const TarEntry& Find(const std::vector<TarEntry>& entries, const std::string& path) {
  for (const TarEntry& e : entries) {
    if (e.path == path) return e;
  }
  ADD_FAILURE() << "no entry " << path;
  static const TarEntry kNone{};
  return kNone;
}

// Every entry of a tree: type, mode, owner, size, content, symlink target,
// device number, xattrs (not overlayfs' own), the first path of a file with
// several names. Not mtimes (the comparison of images ignores them).
std::map<std::string, std::string> Tree(const stdfs::path& root) {
  std::map<std::string, std::string> tree;
  std::map<std::pair<dev_t, ino_t>, std::string> first;
  for (auto it = stdfs::recursive_directory_iterator(root); it != stdfs::end(it); ++it) {
    const stdfs::path& path = it->path();
    const std::string rel = stdfs::relative(path, root).string();
    struct stat st {};
    EXPECT_EQ(lstat(path.c_str(), &st), 0) << path;
    std::string d = absl::StrCat(absl::Hex(st.st_mode), " ", st.st_uid, ":", st.st_gid);
    if (S_ISREG(st.st_mode)) {
      std::ifstream in(path, std::ios::binary);
      absl::StrAppend(&d, " ", st.st_size, " [",
                      std::string(std::istreambuf_iterator<char>(in), {}), "]");
      if (st.st_nlink > 1) {
        auto [found, inserted] = first.try_emplace({st.st_dev, st.st_ino}, rel);
        absl::StrAppend(&d, " link-group ", found->second);
      }
    }
    if (S_ISLNK(st.st_mode)) absl::StrAppend(&d, " -> ", stdfs::read_symlink(path).string());
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      absl::StrAppend(&d, " ", major(st.st_rdev), ",", minor(st.st_rdev));
    }
    char names[4096];
    const ssize_t size = llistxattr(path.c_str(), names, sizeof(names));
    for (ssize_t i = 0; i < size;) {
      const std::string key(names + i);
      i += static_cast<ssize_t>(key.size()) + 1;
      if (key.rfind("trusted.overlay.", 0) == 0) continue;
      char value[256];
      const ssize_t n = lgetxattr(path.c_str(), key.c_str(), value, sizeof(value));
      absl::StrAppend(&d, " ", key, "=", std::string(value, n > 0 ? n : 0));
    }
    tree[rel] = d;
  }
  return tree;
}

void CopyTree(const stdfs::path& from, const stdfs::path& to) {
  ASSERT_EQ(std::system(absl::StrCat("cp -a ", from.string(), " ", to.string()).c_str()), 0);
}

TEST(LayerDiffTest, OverlayUpper_GivesExpectedEntriesInOrder) {
  testing::TempDir temp("layer_diff");
  Overlay overlay(temp.path());
  MakeLower(overlay.lower());
  MOUNT_OR_SKIP(overlay);
  RunStep(overlay.merged(), /*recreate_dir=*/true);

  Written out;
  absl::StatusOr<LayerDigests> layer =
      WriteLayerFromUpper(overlay.upper(), ExistsIn(overlay.lower()), AppendTo(&out.tar),
                          AppendTo(&out.blob), DiffOptions{});
  ASSERT_TRUE(layer.ok()) << layer.status();
  const std::vector<TarEntry> entries = ReadTar(out.tar);
  EXPECT_THAT(Paths(entries),
              ElementsAre("etc/", "etc/.wh.delete", "etc/modify", "new/", "new/fifo", "new/file",
                          "new/link", "new/null", "new/sticky/", "new/sym", "opaque/",
                          "opaque/.wh..wh..opq", "opaque/w", "replace_dir"));
  EXPECT_EQ(layer->entries, entries.size());
  EXPECT_EQ(Find(entries, "etc/.wh.delete").description, "f 0 0:0");
  EXPECT_EQ(Find(entries, "opaque/.wh..wh..opq").description, "f 0 0:0");
  EXPECT_EQ(Find(entries, "etc/modify").content, "new content");
  EXPECT_EQ(Find(entries, "new/file").description, "f 9ed 1000:1001 user.test=value");
  EXPECT_EQ(Find(entries, "new/file").content, "setuid program");
  EXPECT_EQ(Find(entries, "new/link").description, "f 9ed 1000:1001 => new/file user.test=value");
  EXPECT_EQ(Find(entries, "new/null").description, "c 1b6 0:0 1,3");
  EXPECT_EQ(Find(entries, "new/fifo").description, "p 180 0:0");
  EXPECT_EQ(Find(entries, "new/sticky/").description, "d 3ff 0:0");
  EXPECT_EQ(Find(entries, "new/sym").description, "l 1ff 0:0 -> ../etc/keep");
  EXPECT_EQ(Find(entries, "replace_dir").content, "now a file");

  EXPECT_EQ(layer->diff_id, digest::Sha256Of(out.tar));
  EXPECT_EQ(layer->tar_size, out.tar.size());
  EXPECT_EQ(layer->blob_digest, digest::Sha256Of(out.blob));
  EXPECT_EQ(layer->blob_size, out.blob.size());
}

TEST(LayerDiffTest, OverlayUpper_AppliedOntoLowerGivesTheMergedView) {
  testing::TempDir temp("layer_diff");
  Overlay overlay(temp.path());
  MakeLower(overlay.lower());
  MOUNT_OR_SKIP(overlay);
  RunStep(overlay.merged(), /*recreate_dir=*/true);
  Written out;
  absl::StatusOr<LayerDigests> layer =
      WriteLayerFromUpper(overlay.upper(), ExistsIn(overlay.lower()), AppendTo(&out.tar),
                          AppendTo(&out.blob), DiffOptions{});
  ASSERT_TRUE(layer.ok()) << layer.status();

  const stdfs::path applied = temp.path() / "applied";
  CopyTree(overlay.lower(), applied);
  absl::StatusOr<fs::RootDir> root = fs::RootDir::Open(applied);
  ASSERT_TRUE(root.ok()) << root.status();
  bool done = false;
  // The compressed blob, to check it is a layer too.
  absl::StatusOr<ApplyStats> stats = ApplyLayer(
      *root,
      [&]() -> absl::StatusOr<absl::string_view> {
        if (done) return absl::string_view();
        done = true;
        return absl::string_view(out.blob);
      },
      ApplyOptions{});
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(Tree(applied), Tree(overlay.merged()));
}

TEST(LayerDiffTest, SourceDateEpoch_ClampsLaterTimesOnly) {
  testing::TempDir temp("layer_diff");
  Overlay overlay(temp.path());
  MakeLower(overlay.lower());
  MOUNT_OR_SKIP(overlay);
  WriteFile(overlay.merged() / "old", "old");
  SetTime(overlay.merged() / "old", 500);
  WriteFile(overlay.merged() / "recent", "recent");
  Written out;
  DiffOptions options;
  options.source_date_epoch = 1000;
  absl::StatusOr<LayerDigests> layer = WriteLayerFromUpper(
      overlay.upper(), ExistsIn(overlay.lower()), AppendTo(&out.tar), AppendTo(&out.blob), options);
  ASSERT_TRUE(layer.ok()) << layer.status();
  const std::vector<TarEntry> entries = ReadTar(out.tar);
  EXPECT_THAT(Paths(entries), ElementsAre("old", "recent"));
  EXPECT_EQ(Find(entries, "old").mtime, 500);
  EXPECT_EQ(Find(entries, "recent").mtime, 1000);

  // Same tree, same epoch: the same bytes.
  Written again;
  layer = WriteLayerFromUpper(overlay.upper(), ExistsIn(overlay.lower()), AppendTo(&again.tar),
                              AppendTo(&again.blob), options);
  ASSERT_TRUE(layer.ok()) << layer.status();
  EXPECT_EQ(again.tar, out.tar);
  EXPECT_EQ(again.blob, out.blob);
}

TEST(LayerDiffTest, UpperIsEmpty_TrueUntilTheStepWrites) {
  testing::TempDir temp("layer_diff");
  Overlay overlay(temp.path());
  MakeLower(overlay.lower());
  MOUNT_OR_SKIP(overlay);
  // Reading changes nothing.
  std::ifstream(overlay.merged() / "etc/keep").get();
  absl::StatusOr<bool> empty = UpperIsEmpty(overlay.upper());
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(*empty);
  WriteFile(overlay.merged() / "file", "x");
  empty = UpperIsEmpty(overlay.upper());
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_FALSE(*empty);
  EXPECT_TRUE(absl::IsNotFound(UpperIsEmpty(temp.path() / "missing").status()));
}

TEST(LayerDiffTest, WhiteoutOfNothingBelow_IsDropped) {
  testing::TempDir temp("layer_diff");
  stdfs::create_directories(temp.path() / "upper");
  ASSERT_EQ(mknod((temp.path() / "upper/gone").c_str(), S_IFCHR, makedev(0, 0)), 0);
  ASSERT_EQ(mknod((temp.path() / "upper/stale").c_str(), S_IFCHR, makedev(0, 0)), 0);
  Written out;
  absl::StatusOr<LayerDigests> layer = WriteLayerFromUpper(
      temp.path() / "upper",
      [](absl::string_view path) -> absl::StatusOr<bool> { return path == "gone"; },
      AppendTo(&out.tar), AppendTo(&out.blob), DiffOptions{});
  ASSERT_TRUE(layer.ok()) << layer.status();
  EXPECT_THAT(Paths(ReadTar(out.tar)), ElementsAre(".wh.gone"));
}

TEST(LayerDiffTest, RedirectedDirectoryOrMetacopy_IsRefused) {
  testing::TempDir temp("layer_diff");
  stdfs::create_directories(temp.path() / "upper/moved");
  ASSERT_EQ(
      lsetxattr((temp.path() / "upper/moved").c_str(), "trusted.overlay.redirect", "/old", 4, 0),
      0);
  Written out;
  absl::StatusOr<LayerDigests> layer =
      WriteLayerFromUpper(temp.path() / "upper", ExistsIn(temp.path()), AppendTo(&out.tar),
                          AppendTo(&out.blob), DiffOptions{});
  EXPECT_TRUE(absl::IsFailedPrecondition(layer.status())) << layer.status();
  EXPECT_THAT(std::string(layer.status().message()), ::testing::HasSubstr("redirect_dir=off"));
}

std::string Decompress(const std::string& blob) {
  archive* a = archive_read_new();
  archive_read_support_format_raw(a);
  archive_read_support_filter_all(a);
  EXPECT_EQ(archive_read_open_memory(a, blob.data(), blob.size()), ARCHIVE_OK);
  archive_entry* entry = nullptr;
  std::string out;
  if (archive_read_next_header(a, &entry) == ARCHIVE_OK) {
    char buffer[65536];
    la_ssize_t n;
    while ((n = archive_read_data(a, buffer, sizeof(buffer))) > 0) out.append(buffer, n);
  }
  archive_read_free(a);
  return out;
}

TEST(LayerDiffTest, GzipAndZstd_DecompressToTheSameTar) {
  testing::TempDir temp("layer_diff");
  stdfs::create_directories(temp.path() / "upper/d");
  // Large enough for several compressor output buffers.
  WriteFile(temp.path() / "upper/d/big", testing::RandomBytes(7, 3 * testing::kMiB));
  WriteFile(temp.path() / "upper/small", "small");
  Written gzip;
  Written zstd;
  DiffOptions options;
  options.source_date_epoch = 0;
  absl::StatusOr<LayerDigests> gz =
      WriteLayerFromUpper(temp.path() / "upper", ExistsIn(temp.path()), AppendTo(&gzip.tar),
                          AppendTo(&gzip.blob), options);
  ASSERT_TRUE(gz.ok()) << gz.status();
  options.compression = LayerCompression::kZstd;
  absl::StatusOr<LayerDigests> zs =
      WriteLayerFromUpper(temp.path() / "upper", ExistsIn(temp.path()), AppendTo(&zstd.tar),
                          AppendTo(&zstd.blob), options);
  ASSERT_TRUE(zs.ok()) << zs.status();
  EXPECT_EQ(gzip.tar, zstd.tar);
  EXPECT_EQ(gz->diff_id, zs->diff_id);
  EXPECT_EQ(gzip.blob.substr(0, 2), "\x1f\x8b");
  EXPECT_EQ(zstd.blob.substr(0, 4), "\x28\xb5\x2f\xfd");
  EXPECT_EQ(Decompress(gzip.blob), gzip.tar);
  EXPECT_EQ(Decompress(zstd.blob), zstd.tar);
  EXPECT_EQ(zs->blob_digest, digest::Sha256Of(zstd.blob));
  EXPECT_EQ(zs->compression, LayerCompression::kZstd);
  EXPECT_EQ(LayerMediaType(zs->compression), "application/vnd.oci.image.layer.v1.tar+zstd");
}

TEST(LayerDiffTest, Uncompressed_BlobIsTheTarItself) {
  testing::TempDir temp("layer_diff");
  stdfs::create_directories(temp.path() / "upper");
  WriteFile(temp.path() / "upper/f", "plain");
  Written plain;
  DiffOptions options;
  options.compression = LayerCompression::kNone;
  absl::StatusOr<LayerDigests> layer =
      WriteLayerFromUpper(temp.path() / "upper", ExistsIn(temp.path()), AppendTo(&plain.tar),
                          AppendTo(&plain.blob), options);
  ASSERT_TRUE(layer.ok()) << layer.status();
  EXPECT_EQ(plain.blob, plain.tar);
  EXPECT_EQ(layer->blob_digest, layer->diff_id);
  EXPECT_EQ(LayerMediaType(layer->compression), "application/vnd.oci.image.layer.v1.tar");
}

TEST(LayerDiffTest, IntoBlobWriters_CommitUnderTheReportedDigests) {
  testing::TempDir temp("layer_diff");
  stdfs::create_directories(temp.path() / "upper/d");
  WriteFile(temp.path() / "upper/d/f", testing::RandomBytes(3, testing::kMiB));
  absl::StatusOr<std::unique_ptr<cas::BlobStore>> store =
      cas::BlobStore::Open(temp.path() / "store");
  ASSERT_TRUE(store.ok()) << store.status();
  std::unique_ptr<cas::BlobWriter> tar = (*store)->NewWriter();
  std::unique_ptr<cas::BlobWriter> blob = (*store)->NewWriter();
  absl::StatusOr<LayerDigests> layer = WriteLayerFromUpper(
      temp.path() / "upper", ExistsIn(temp.path()),
      [&](absl::string_view bytes) { return tar->Write(bytes); },
      [&](absl::string_view bytes) { return blob->Write(bytes); }, DiffOptions{});
  ASSERT_TRUE(layer.ok()) << layer.status();
  EXPECT_TRUE(tar->Commit(layer->diff_id, "application/vnd.oci.image.layer.v1.tar").ok());
  EXPECT_TRUE(blob->Commit(layer->blob_digest, LayerMediaType(layer->compression)).ok());
  EXPECT_TRUE((*store)->Has(layer->diff_id).value_or(false));
  EXPECT_TRUE((*store)->Has(layer->blob_digest).value_or(false));
}

// An uncompressed layer into a BlobWriter committed as written: named by the
// store's digest, which is the tar's (the same as hashing it here), and the
// store's error comes back as it is.
TEST(LayerDiffTest, TarDigestFromTheSink_NamesTheLayerAsHashingItWould) {
  testing::TempDir temp("layer_diff");
  stdfs::create_directories(temp.path() / "upper/d");
  WriteFile(temp.path() / "upper/d/f", testing::RandomBytes(4, 3 * testing::kMiB));
  absl::StatusOr<std::unique_ptr<cas::BlobStore>> store =
      cas::BlobStore::Open(temp.path() / "store");
  ASSERT_TRUE(store.ok()) << store.status();
  DiffOptions options;
  options.compression = LayerCompression::kNone;
  Written hashed;
  absl::StatusOr<LayerDigests> expected =
      WriteLayerFromUpper(temp.path() / "upper", ExistsIn(temp.path()), AppendTo(&hashed.tar),
                          AppendTo(&hashed.blob), options);
  ASSERT_TRUE(expected.ok()) << expected.status();

  std::unique_ptr<cas::BlobWriter> writer = (*store)->NewWriter();
  int calls = 0;
  options.tar_digest = [&] {
    ++calls;
    return writer->CommitAsWritten("application/vnd.oci.image.layer.v1.tar");
  };
  absl::StatusOr<LayerDigests> layer = WriteLayerFromUpper(
      temp.path() / "upper", ExistsIn(temp.path()),
      [](absl::string_view) { return absl::OkStatus(); },
      [&](absl::string_view bytes) { return writer->Write(bytes); }, options);
  ASSERT_TRUE(layer.ok()) << layer.status();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(layer->diff_id, expected->diff_id);
  EXPECT_EQ(layer->blob_digest, expected->diff_id);
  EXPECT_EQ(layer->tar_size, hashed.tar.size());
  absl::StatusOr<std::string> stored = (*store)->ReadAll(layer->diff_id);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(*stored, hashed.tar);

  options.tar_digest = [] { return absl::DataLossError("the store broke"); };
  layer = WriteLayerFromUpper(
      temp.path() / "upper", ExistsIn(temp.path()),
      [](absl::string_view) { return absl::OkStatus(); },
      [](absl::string_view) { return absl::OkStatus(); }, options);
  EXPECT_TRUE(absl::IsDataLoss(layer.status())) << layer.status();
}

TEST(LayerDiffTest, SinkError_IsReturned) {
  testing::TempDir temp("layer_diff");
  stdfs::create_directories(temp.path() / "upper");
  WriteFile(temp.path() / "upper/f", "x");
  std::string blob;
  absl::StatusOr<LayerDigests> layer = WriteLayerFromUpper(
      temp.path() / "upper", ExistsIn(temp.path()),
      [](absl::string_view) { return absl::UnavailableError("disk full"); }, AppendTo(&blob),
      DiffOptions{});
  EXPECT_TRUE(absl::IsUnavailable(layer.status())) << layer.status();
}

// A sink that fails mid-layer (a full disk under the store): its error comes
// back, and the tar writer, freed with data still buffered, writes nothing
// more to it.
TEST(LayerDiffTest, SinkErrorMidLayer_IsReturnedAndTheSinkIsNotWrittenAgain) {
  testing::TempDir temp("layer_diff");
  stdfs::create_directories(temp.path() / "upper");
  WriteFile(temp.path() / "upper/big", std::string(4 << 20, 'x'));
  int calls = 0;
  std::string blob;
  absl::StatusOr<LayerDigests> layer = WriteLayerFromUpper(
      temp.path() / "upper", ExistsIn(temp.path()),
      [&calls](absl::string_view) {
        return ++calls < 2 ? absl::OkStatus()
                           : absl::ResourceExhaustedError("no space left on device");
      },
      AppendTo(&blob), DiffOptions{});
  EXPECT_EQ(layer.status(), absl::ResourceExhaustedError("no space left on device"));
  EXPECT_EQ(calls, 2);
}

TEST(LayerDiffTest, CopyFallback_GivesTheSameTarAsTheOverlay) {
  testing::TempDir temp("layer_diff");
  Overlay overlay(temp.path());
  MakeLower(overlay.lower());
  MOUNT_OR_SKIP(overlay);
  const stdfs::path copy = temp.path() / "copy";
  CopyTree(overlay.lower(), copy);
  RunStep(overlay.merged(), /*recreate_dir=*/false);
  RunStep(copy, /*recreate_dir=*/false);

  DiffOptions options;
  options.source_date_epoch = 1;  // times differ between the two runs; the epoch hides them
  Written from_upper;
  absl::StatusOr<LayerDigests> upper_layer =
      WriteLayerFromUpper(overlay.upper(), ExistsIn(overlay.lower()), AppendTo(&from_upper.tar),
                          AppendTo(&from_upper.blob), options);
  ASSERT_TRUE(upper_layer.ok()) << upper_layer.status();
  Written from_copy;
  absl::StatusOr<LayerDigests> copy_layer = WriteLayerFromCopy(
      overlay.lower(), copy, AppendTo(&from_copy.tar), AppendTo(&from_copy.blob), options);
  ASSERT_TRUE(copy_layer.ok()) << copy_layer.status();
  EXPECT_EQ(Paths(ReadTar(from_copy.tar)), Paths(ReadTar(from_upper.tar)));
  EXPECT_EQ(copy_layer->diff_id, upper_layer->diff_id);
  EXPECT_EQ(from_copy.blob, from_upper.blob);
}

TEST(LayerDiffTest, CopyFallback_AppliedOntoLowerGivesTheCopy) {
  testing::TempDir temp("layer_diff");
  const stdfs::path lower = temp.path() / "lower";
  MakeLower(lower);
  const stdfs::path copy = temp.path() / "copy";
  CopyTree(lower, copy);
  RunStep(copy, /*recreate_dir=*/true);
  // A change of content only (same size, same mtime) is still found.
  WriteFile(copy / "dir/a", "A");
  struct stat before {};
  ASSERT_EQ(lstat((lower / "dir/a").c_str(), &before), 0);
  const timespec times[2] = {before.st_atim, before.st_mtim};
  ASSERT_EQ(utimensat(AT_FDCWD, (copy / "dir/a").c_str(), times, 0), 0);
  Written out;
  absl::StatusOr<LayerDigests> layer =
      WriteLayerFromCopy(lower, copy, AppendTo(&out.tar), AppendTo(&out.blob), DiffOptions{});
  ASSERT_TRUE(layer.ok()) << layer.status();
  const std::vector<std::string> paths = Paths(ReadTar(out.tar));
  EXPECT_THAT(paths, ::testing::Contains("opaque/.wh.x"));
  EXPECT_THAT(paths, ::testing::Contains("dir/a"));
  EXPECT_THAT(paths, ::testing::Not(::testing::Contains("etc/keep")));

  const stdfs::path applied = temp.path() / "applied";
  CopyTree(lower, applied);
  absl::StatusOr<fs::RootDir> root = fs::RootDir::Open(applied);
  ASSERT_TRUE(root.ok()) << root.status();
  bool done = false;
  absl::StatusOr<ApplyStats> stats = ApplyLayer(
      *root,
      [&]() -> absl::StatusOr<absl::string_view> {
        if (done) return absl::string_view();
        done = true;
        return absl::string_view(out.tar);
      },
      ApplyOptions{});
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(Tree(applied), Tree(copy));
}

TEST(LayerDiffTest, CopyFallback_NoChangeGivesNoEntries) {
  testing::TempDir temp("layer_diff");
  MakeLower(temp.path() / "lower");
  CopyTree(temp.path() / "lower", temp.path() / "copy");
  Written out;
  absl::StatusOr<LayerDigests> layer =
      WriteLayerFromCopy(temp.path() / "lower", temp.path() / "copy", AppendTo(&out.tar),
                         AppendTo(&out.blob), DiffOptions{});
  ASSERT_TRUE(layer.ok()) << layer.status();
  EXPECT_EQ(layer->entries, 0u);
  absl::StatusOr<bool> unchanged = CopyUnchanged(temp.path() / "lower", temp.path() / "copy");
  ASSERT_TRUE(unchanged.ok()) << unchanged.status();
  EXPECT_TRUE(*unchanged);
}

TEST(LayerDiffTest, CopyFallback_NewNameOfAnUnchangedFileCarriesTheFileAlong) {
  testing::TempDir temp("layer_diff");
  MakeLower(temp.path() / "lower");
  CopyTree(temp.path() / "lower", temp.path() / "copy");
  ASSERT_EQ(link((temp.path() / "copy/etc/keep").c_str(), (temp.path() / "copy/etc/zlink").c_str()),
            0);
  absl::StatusOr<bool> unchanged = CopyUnchanged(temp.path() / "lower", temp.path() / "copy");
  ASSERT_TRUE(unchanged.ok()) << unchanged.status();
  EXPECT_FALSE(*unchanged);
  Written out;
  absl::StatusOr<LayerDigests> layer =
      WriteLayerFromCopy(temp.path() / "lower", temp.path() / "copy", AppendTo(&out.tar),
                         AppendTo(&out.blob), DiffOptions{});
  ASSERT_TRUE(layer.ok()) << layer.status();
  const std::vector<TarEntry> entries = ReadTar(out.tar);
  EXPECT_THAT(Paths(entries), ElementsAre("etc/", "etc/keep", "etc/zlink"));
  EXPECT_EQ(Find(entries, "etc/zlink").description, "f 1a4 0:0 => etc/keep user.kept=1");
}

}  // namespace
}  // namespace stagefarm::oci
