#include "common/oci/local_images.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/oci/media_types.h"
#include "common/oci/platform.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/busybox_rootfs.h"
#include "tests/testing/corpus.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm::oci {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
namespace stdfs = std::filesystem;

la_ssize_t Append(archive*, void* out, const void* data, size_t size) {
  static_cast<std::string*>(out)->append(static_cast<const char*>(data), size);
  return static_cast<la_ssize_t>(size);
}

// One entry of a tar made by a test: a file, or a symlink when `link` is set.
struct TarEntry {
  std::string name;
  std::string content;
  std::string link;
};

// `filter` is libarchive's name of a compression ("gzip", "zstd"), or empty.
std::string TarBytes(const std::vector<TarEntry>& entries, const std::string& filter = "") {
  std::string out;
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (!filter.empty()) archive_write_add_filter_by_name(a, filter.c_str());
  archive_write_set_bytes_in_last_block(a, 1);
  archive_write_open(a, &out, nullptr, Append, nullptr);
  archive_entry* e = archive_entry_new();
  for (const TarEntry& entry : entries) {
    archive_entry_clear(e);
    archive_entry_set_pathname(e, entry.name.c_str());
    if (!entry.link.empty()) {
      archive_entry_set_filetype(e, AE_IFLNK);
      archive_entry_set_symlink(e, entry.link.c_str());
      archive_entry_set_perm(e, 0777);
    } else {
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, 0644);
      archive_entry_set_size(e, static_cast<la_int64_t>(entry.content.size()));
    }
    archive_write_header(a, e);
    if (entry.link.empty()) archive_write_data(a, entry.content.data(), entry.content.size());
  }
  archive_entry_free(e);
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

// A small layer: app/hello.txt.
std::string LayerTar(bool gzip) {
  return TarBytes({{"app/hello.txt", "hi\n", ""}}, gzip ? "gzip" : "");
}

void WriteFile(const stdfs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Every entry of a tar, in order (for rewriting exported archives).
std::vector<TarEntry> ReadTar(const stdfs::path& path) {
  std::vector<TarEntry> out;
  archive* a = archive_read_new();
  archive_read_support_format_tar(a);
  archive_read_open_filename(a, path.c_str(), 10240);
  archive_entry* e;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    if (archive_entry_filetype(e) != AE_IFREG) continue;
    TarEntry entry{archive_entry_pathname(e), "", ""};
    char buffer[8192];
    la_ssize_t n;
    while ((n = archive_read_data(a, buffer, sizeof buffer)) > 0) entry.content.append(buffer, n);
    out.push_back(std::move(entry));
  }
  archive_read_free(a);
  return out;
}

int RunShell(const std::string& command) {
  const int raw = std::system(command.c_str());
  return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
}

// The message as a std::string, which gmock prints readably.
std::string Message(const absl::Status& status) { return std::string(status.message()); }

ImageRef Ref(absl::string_view text) {
  absl::StatusOr<ImageRef> ref = ParseImageRef(text);
  EXPECT_TRUE(ref.ok()) << ref.status();
  return *ref;
}

class LocalImagesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto src = cas::BlobStore::Open(dir_.path() / "src");
    ASSERT_TRUE(src.ok()) << src.status();
    src_ = *std::move(src);
    auto dst = cas::BlobStore::Open(dir_.path() / "dst");
    ASSERT_TRUE(dst.ok()) << dst.status();
    dst_ = *std::move(dst);
  }

  // An image in the source store: one layer (gzip or not), a CMD, `platform`.
  LayoutImage MakeImage(bool gzip = true, Platform platform = HostPlatform()) {
    std::string layer = LayerTar(gzip);
    Descriptor descriptor{LayerMediaType(gzip ? LayerCompression::kGzip : LayerCompression::kNone),
                          digest::Sha256Of(layer),
                          layer.size(),
                          {}};
    EXPECT_TRUE(src_->Put(layer, descriptor.digest).ok());
    ImageConfig config = ScratchConfig(platform);
    config.diff_ids.push_back(digest::Sha256Of(LayerTar(false)));
    config.config.cmd = {"/app/hello.txt"};
    auto image = StoreImage(*src_, config, {descriptor}, "latest", {"example.com/app:latest"});
    EXPECT_TRUE(image.ok()) << image.status();
    return *image;
  }

  // Checks that `imported` is `original`, blob for blob.
  void ExpectSameImage(const LocalImage& imported, const LayoutImage& original) {
    EXPECT_EQ(imported.manifest.digest, original.manifest.digest);
    EXPECT_EQ(imported.config_descriptor.digest, original.config.digest);
    ASSERT_EQ(imported.layers.size(), original.layers.size());
    for (size_t i = 0; i < original.layers.size(); ++i) {
      EXPECT_EQ(imported.layers[i].digest, original.layers[i].digest);
      EXPECT_EQ(imported.layers[i].media_type, original.layers[i].media_type);
      EXPECT_EQ(*dst_->ReadAll(imported.layers[i].digest),
                *src_->ReadAll(original.layers[i].digest));
    }
    EXPECT_EQ(*dst_->ReadAll(imported.manifest.digest), *src_->ReadAll(original.manifest.digest));
  }

  // A docker archive written by hand: manifest.json naming `config_path`
  // and `layer_paths`, plus `files`.
  stdfs::path DockerArchive(const std::string& config_path,
                            const std::vector<std::string>& layer_paths,
                            std::vector<TarEntry> files) {
    std::string manifest = absl::StrCat(R"([{"Config":")", config_path,
                                        R"(","RepoTags":["example.com/app:latest"],"Layers":[)");
    for (size_t i = 0; i < layer_paths.size(); ++i) {
      absl::StrAppend(&manifest, i > 0 ? "," : "", "\"", layer_paths[i], "\"");
    }
    manifest += "]}]";
    files.push_back({"manifest.json", manifest, ""});
    stdfs::path path = dir_.path() / "docker.tar";
    WriteFile(path, TarBytes(files));
    return path;
  }

  // The config of a one-layer image whose layer is `layer_tar` (uncompressed).
  static std::string ConfigFor(const std::string& layer_tar) {
    ImageConfig config = ScratchConfig(HostPlatform());
    config.diff_ids.push_back(digest::Sha256Of(layer_tar));
    return SerializeImageConfig(config);
  }

  // A busybox root filesystem as a tar file; gzip-compressed when `gzip`.
  stdfs::path BusyboxTar(bool gzip) {
    stdfs::path rootfs = dir_.path() / "rootfs";
    if (!stdfs::exists(rootfs)) {
      EXPECT_TRUE(testing::MakeBusyboxRootfs(rootfs).ok());
    }
    stdfs::path tar = dir_.path() / (gzip ? "rootfs.tar.gz" : "rootfs.tar");
    EXPECT_EQ(RunShell(absl::StrCat("tar -C ", rootfs.string(), gzip ? " -czf " : " -cf ",
                                    tar.string(), " .")),
              0);
    return tar;
  }

  void ExpectNothingTagged() {
    auto images = ListImages(*dst_);
    ASSERT_TRUE(images.ok()) << images.status();
    EXPECT_THAT(*images, IsEmpty());
  }

  testing::TempDir dir_{"local_images_test"};
  std::unique_ptr<cas::BlobStore> src_;
  std::unique_ptr<cas::BlobStore> dst_;
  const ImageRef app_ = Ref("example.com/app:latest");
};

TEST_F(LocalImagesTest, OciTar_RoundTripKeepsManifestConfigAndLayers) {
  LayoutImage original = MakeImage();
  stdfs::path tar = dir_.path() / "oci.tar";
  ASSERT_TRUE(WriteImageTar(*src_, {original}, tar, false).ok());
  auto imported = ImportImage(*dst_, tar, app_, {});
  ASSERT_TRUE(imported.ok()) << imported.status();
  ExpectSameImage(*imported, original);
  EXPECT_EQ(imported->config.config.cmd, std::vector<std::string>{"/app/hello.txt"});
  auto resolved = ResolveImage(*dst_, app_);
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(resolved->manifest.digest, original.manifest.digest);
}

TEST_F(LocalImagesTest, OciLayoutDir_RoundTripKeepsManifestConfigAndLayers) {
  LayoutImage original = MakeImage(/*gzip=*/false);
  stdfs::path layout = dir_.path() / "layout";
  ASSERT_TRUE(WriteOciLayoutDir(*src_, {original}, layout).ok());
  auto imported = ImportImage(*dst_, layout, app_, {});
  ASSERT_TRUE(imported.ok()) << imported.status();
  ExpectSameImage(*imported, original);
}

TEST_F(LocalImagesTest, DockerArchive_RoundTripGivesTheSameManifest) {
  LayoutImage original = MakeImage();
  stdfs::path exported = dir_.path() / "exported.tar";
  ASSERT_TRUE(WriteImageTar(*src_, {original}, exported, true).ok());
  // Without index.json and oci-layout it can only be read as a docker archive.
  std::vector<TarEntry> entries;
  for (TarEntry& entry : ReadTar(exported)) {
    if (entry.name != "index.json" && entry.name != "oci-layout") entries.push_back(entry);
  }
  stdfs::path docker = dir_.path() / "docker.tar";
  WriteFile(docker, TarBytes(entries));
  auto imported = ImportImage(*dst_, docker, app_, {});
  ASSERT_TRUE(imported.ok()) << imported.status();
  ExpectSameImage(*imported, original);
}

TEST_F(LocalImagesTest, DockerArchive_UncompressedLayerTarIsStoredAsItIs) {
  const std::string layer = LayerTar(false);
  const std::string config = ConfigFor(layer);
  const std::string config_name = absl::StrCat(digest::Sha256Of(config).hex(), ".json");
  stdfs::path tar = DockerArchive(config_name, {"abc/layer.tar"},
                                  {{config_name, config, ""}, {"abc/layer.tar", layer, ""}});
  auto imported = ImportImage(*dst_, tar, Ref("example.com/app"), {});
  ASSERT_TRUE(imported.ok()) << imported.status();
  ASSERT_EQ(imported->layers.size(), 1u);
  EXPECT_EQ(imported->layers[0].digest, digest::Sha256Of(layer));
  EXPECT_EQ(imported->layers[0].media_type, "application/vnd.oci.image.layer.v1.tar");
  EXPECT_EQ(imported->config_descriptor.digest, digest::Sha256Of(config));
  EXPECT_EQ(imported->manifest.media_type, kManifestMediaType);
}

TEST_F(LocalImagesTest, DockerArchive_ZstdLayerIsKeptCompressed) {
  const std::string layer = TarBytes({{"app/hello.txt", "hi\n", ""}}, "zstd");
  const std::string config = ConfigFor(LayerTar(false));
  stdfs::path tar = DockerArchive("config.json", {"l/layer.tar.zst"},
                                  {{"config.json", config, ""}, {"l/layer.tar.zst", layer, ""}});
  auto imported = ImportImage(*dst_, tar, app_, {});
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->layers[0].digest, digest::Sha256Of(layer));
  EXPECT_EQ(imported->layers[0].media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
}

TEST_F(LocalImagesTest, NestedIndex_ChoosesThisHostsPlatform) {
  LayoutImage host = MakeImage(true, HostPlatform());
  Platform other{"linux", HostPlatform().architecture == "arm64" ? "amd64" : "arm64", "", ""};
  LayoutImage foreign = MakeImage(true, other);
  stdfs::path layout = dir_.path() / "layout";
  ASSERT_TRUE(WriteOciLayoutDir(*src_, {foreign, host}, layout).ok());
  const auto platform_json = [](const Platform& p) {
    return absl::StrCat(R"(,"platform":{"architecture":")", p.architecture, R"(","os":")", p.os,
                        "\"}}");
  };
  const auto entry = [&](const LayoutImage& image, const Platform& p) {
    return absl::StrCat(R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")",
                        image.manifest.digest.ToString(), R"(","size":)", image.manifest.size,
                        platform_json(p));
  };
  const std::string nested = absl::StrCat(
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",)",
      R"("manifests":[)", entry(foreign, other), ",", entry(host, HostPlatform()), "]}");
  const digest::Digest nested_digest = digest::Sha256Of(nested);
  WriteFile(layout / "blobs/sha256" / nested_digest.hex(), nested);
  WriteFile(layout / "index.json",
            SerializeIndex({{std::string(kIndexMediaType),
                             nested_digest,
                             nested.size(),
                             {{std::string(kRefNameAnnotation), "latest"}}}}));
  auto imported = ImportImage(*dst_, layout, app_, {});
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->manifest.digest, host.manifest.digest);
  EXPECT_EQ(imported->config.architecture, HostPlatform().architecture);
}

TEST_F(LocalImagesTest, OciLayout_PicksTheImageWhoseRefNameIsTheTag) {
  LayoutImage latest = MakeImage();
  LayoutImage v1 = MakeImage(false);
  v1.manifest.annotations[std::string(kRefNameAnnotation)] = "v1";
  stdfs::path layout = dir_.path() / "layout";
  ASSERT_TRUE(WriteOciLayoutDir(*src_, {latest, v1}, layout).ok());
  auto imported = ImportImage(*dst_, layout, Ref("example.com/app:v1"), {});
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->manifest.digest, v1.manifest.digest);
  auto unnamed = ImportImage(*dst_, layout, Ref("example.com/app:v2"), {});
  EXPECT_THAT(Message(unnamed.status()), HasSubstr("2 images and none named \"v2\""));
}

TEST_F(LocalImagesTest, Rootfs_ChangeEnvPathGivesTheConfigItsPath) {
  stdfs::path tar = BusyboxTar(false);
  ImportOptions options;
  options.rootfs = true;
  options.changes = {"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                     "CMD [\"sh\"]", "WORKDIR /work", "LABEL a=\"b c\""};
  auto imported = ImportImage(*dst_, tar, Ref("busybox"), options);
  ASSERT_TRUE(imported.ok()) << imported.status();
  const ImageConfig& config = imported->config;
  EXPECT_THAT(config.config.env,
              ElementsAre("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
  EXPECT_THAT(config.config.cmd, ElementsAre("sh"));
  EXPECT_EQ(config.config.working_dir, "/work");
  EXPECT_EQ(config.config.labels.at("a"), "b c");
  EXPECT_EQ(config.architecture, HostPlatform().architecture);
  EXPECT_EQ(config.os, "linux");
  ASSERT_EQ(config.history.size(), 1u);
  EXPECT_EQ(config.history[0].comment, "Imported from rootfs.tar");
  EXPECT_FALSE(config.history[0].created.has_value());
  ASSERT_EQ(imported->layers.size(), 1u);
  const digest::Digest tar_digest = digest::Sha256Of(testing::ReadFileOrFail(tar));
  EXPECT_EQ(imported->layers[0].digest, tar_digest);
  EXPECT_EQ(imported->layers[0].media_type, "application/vnd.oci.image.layer.v1.tar");
  EXPECT_THAT(config.diff_ids, ElementsAre(tar_digest));

  auto resolved = ResolveImage(*dst_, Ref("busybox"));
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(resolved->manifest.digest, imported->manifest.digest);
  auto listed = ListImages(*dst_);
  ASSERT_TRUE(listed.ok());
  EXPECT_THAT(*listed,
              ElementsAre(Pair("docker.io/library/busybox:latest", imported->manifest.digest)));
}

TEST_F(LocalImagesTest, Rootfs_GzipTarIsStoredDecompressed) {
  stdfs::path plain = BusyboxTar(false);
  stdfs::path gzip = BusyboxTar(true);
  ImportOptions options;
  options.rootfs = true;
  auto imported = ImportImage(*dst_, gzip, Ref("busybox"), options);
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->layers[0].digest, digest::Sha256Of(testing::ReadFileOrFail(plain)));
  EXPECT_THAT(imported->config.config.env, IsEmpty());
}

TEST_F(LocalImagesTest, Rootfs_ChangeOtherThanConfigInstructionsIsRefused) {
  stdfs::path tar = BusyboxTar(false);
  ImportOptions options;
  options.rootfs = true;
  options.changes = {"RUN echo hi"};
  auto imported = ImportImage(*dst_, tar, Ref("busybox"), options);
  EXPECT_EQ(imported.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(imported.status()),
              HasSubstr("--change \"RUN echo hi\": RUN is not allowed"));
  ExpectNothingTagged();
}

TEST_F(LocalImagesTest, Rootfs_FileThatIsNotATarIsRefused) {
  stdfs::path file = dir_.path() / "notes.txt";
  WriteFile(file, std::string(2000, 'x'));
  ImportOptions options;
  options.rootfs = true;
  auto imported = ImportImage(*dst_, file, Ref("busybox"), options);
  EXPECT_THAT(Message(imported.status()), HasSubstr("notes.txt: not a readable tar"));
  ExpectNothingTagged();
}

TEST_F(LocalImagesTest, ListAndUntag) {
  LayoutImage original = MakeImage();
  stdfs::path tar = dir_.path() / "oci.tar";
  ASSERT_TRUE(WriteImageTar(*src_, {original}, tar, false).ok());
  ASSERT_TRUE(ImportImage(*dst_, tar, app_, {}).ok());
  ASSERT_TRUE(TagImage(*dst_, Ref("busybox:1"), original.manifest.digest).ok());
  auto listed = ListImages(*dst_);
  ASSERT_TRUE(listed.ok());
  EXPECT_THAT(*listed, ElementsAre(Pair("docker.io/library/busybox:1", original.manifest.digest),
                                   Pair("example.com/app:latest", original.manifest.digest)));

  ASSERT_TRUE(UntagImage(*dst_, Ref("busybox:1")).ok());
  listed = ListImages(*dst_);
  EXPECT_THAT(*listed, ElementsAre(Pair("example.com/app:latest", original.manifest.digest)));
  absl::Status again = UntagImage(*dst_, Ref("busybox:1"));
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(again.message(), "image \"docker.io/library/busybox:1\" not found locally");
  EXPECT_EQ(ResolveImage(*dst_, Ref("busybox:1")).status().message(),
            "image \"docker.io/library/busybox:1\" not found locally");

  auto by_digest = ResolveImage(
      *dst_, Ref(absl::StrCat("example.com/app@", original.manifest.digest.ToString())));
  ASSERT_TRUE(by_digest.ok()) << by_digest.status();
  EXPECT_EQ(by_digest->manifest.digest, original.manifest.digest);
  EXPECT_FALSE(TagImage(*dst_, Ref("x:1"), digest::Sha256Of("absent")).ok());
}

TEST_F(LocalImagesTest, DockerArchive_LayerPathOutsideTheArchiveIsRefused) {
  const std::string config = ConfigFor(LayerTar(false));
  stdfs::path tar =
      DockerArchive("config.json", {"../../etc/passwd"}, {{"config.json", config, ""}});
  auto imported = ImportImage(*dst_, tar, app_, {});
  EXPECT_EQ(imported.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(imported.status()),
              HasSubstr("docker.tar: manifest.json[0].Layers[0]: \"../../etc/passwd\" is outside "
                        "the archive"));
  ExpectNothingTagged();
}

TEST_F(LocalImagesTest, DockerArchive_AbsoluteLayerPathIsRefused) {
  const std::string config = ConfigFor(LayerTar(false));
  stdfs::path tar = DockerArchive("config.json", {"/etc/passwd"}, {{"config.json", config, ""}});
  auto imported = ImportImage(*dst_, tar, app_, {});
  EXPECT_THAT(Message(imported.status()),
              HasSubstr("manifest.json[0].Layers[0]: \"/etc/passwd\" is an absolute path"));
  ExpectNothingTagged();
}

TEST_F(LocalImagesTest, DockerArchive_MissingLayerFileIsNamed) {
  const std::string config = ConfigFor(LayerTar(false));
  stdfs::path tar = DockerArchive("config.json", {"x/layer.tar"}, {{"config.json", config, ""}});
  auto imported = ImportImage(*dst_, tar, app_, {});
  EXPECT_THAT(Message(imported.status()),
              HasSubstr("manifest.json[0].Layers[0]: no file \"x/layer.tar\" in the archive"));
}

TEST_F(LocalImagesTest, DockerArchive_LayerThatIsNotTheConfigsDiffIdIsRefused) {
  const std::string config = ConfigFor(LayerTar(false));
  const std::string other = TarBytes({{"evil", "x", ""}});
  stdfs::path tar = DockerArchive("config.json", {"l/layer.tar"},
                                  {{"config.json", config, ""}, {"l/layer.tar", other, ""}});
  auto imported = ImportImage(*dst_, tar, app_, {});
  EXPECT_THAT(
      Message(imported.status()),
      HasSubstr(absl::StrCat("l/layer.tar (manifest.json[0].Layers[0]): uncompressed "
                             "content has digest ",
                             digest::Sha256Of(other).ToString(), ", the config's diff id is ",
                             digest::Sha256Of(LayerTar(false)).ToString())));
  ExpectNothingTagged();
}

TEST_F(LocalImagesTest, DockerArchive_ConfigWhoseNameIsNotItsDigestIsRefused) {
  const std::string layer = LayerTar(false);
  const std::string config = ConfigFor(layer);
  const std::string wrong_name = absl::StrCat(digest::Sha256Of("other").hex(), ".json");
  stdfs::path tar = DockerArchive(wrong_name, {"l/layer.tar"},
                                  {{wrong_name, config, ""}, {"l/layer.tar", layer, ""}});
  auto imported = ImportImage(*dst_, tar, app_, {});
  EXPECT_THAT(Message(imported.status()),
              HasSubstr(absl::StrCat(wrong_name, " (manifest.json[0].Config): content has digest ",
                                     digest::Sha256Of(config).ToString())));
  ExpectNothingTagged();
}

TEST_F(LocalImagesTest, OciLayout_BlobThatDoesNotMatchItsDigestIsRefused) {
  LayoutImage original = MakeImage();
  stdfs::path layout = dir_.path() / "layout";
  ASSERT_TRUE(WriteOciLayoutDir(*src_, {original}, layout).ok());
  const std::string layer_name = absl::StrCat("blobs/sha256/", original.layers[0].digest.hex());
  WriteFile(layout / layer_name, LayerTar(true) + "tampered");
  auto imported = ImportImage(*dst_, layout, app_, {});
  EXPECT_EQ(imported.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(imported.status()),
              HasSubstr(absl::StrCat(layer_name, " (manifest ", original.manifest.digest.ToString(),
                                     " layers[0]): content has digest")));
  ExpectNothingTagged();

  const std::string config_name = absl::StrCat("blobs/sha256/", original.config.digest.hex());
  WriteFile(layout / config_name, "{}");
  imported = ImportImage(*dst_, layout, app_, {});
  EXPECT_THAT(Message(imported.status()),
              HasSubstr(absl::StrCat(config_name, ": content has digest ",
                                     digest::Sha256Of("{}").ToString(), ", not ",
                                     original.config.digest.ToString())));
  ExpectNothingTagged();
}

TEST_F(LocalImagesTest, OciLayoutDir_SymlinkedBlobIsRefused) {
  LayoutImage original = MakeImage();
  stdfs::path layout = dir_.path() / "layout";
  ASSERT_TRUE(WriteOciLayoutDir(*src_, {original}, layout).ok());
  const stdfs::path config = layout / "blobs/sha256" / original.config.digest.hex();
  stdfs::rename(config, dir_.path() / "config");
  stdfs::create_symlink(dir_.path() / "config", config);
  auto imported = ImportImage(*dst_, layout, app_, {});
  EXPECT_THAT(Message(imported.status()),
              HasSubstr(absl::StrCat("entry \"blobs/sha256/", original.config.digest.hex(),
                                     "\": is a symlink")));
  ExpectNothingTagged();
}

TEST_F(LocalImagesTest, Tar_DuplicateEntryIsRefused) {
  const std::string config = ConfigFor(LayerTar(false));
  stdfs::path tar = DockerArchive("config.json", {"l/layer.tar"},
                                  {{"config.json", config, ""},
                                   {"l/layer.tar", LayerTar(false), ""},
                                   {"./l/layer.tar", TarBytes({{"evil", "x", ""}}), ""}});
  auto imported = ImportImage(*dst_, tar, app_, {});
  EXPECT_THAT(Message(imported.status()),
              HasSubstr("docker.tar: entry \"./l/layer.tar\": duplicate entry"));
  ExpectNothingTagged();
}

TEST_F(LocalImagesTest, Tar_SymlinkOutOfTheArchiveIsRefused) {
  const std::string config = ConfigFor(LayerTar(false));
  for (const std::string target : {"/etc/shadow", "../../etc/shadow"}) {
    stdfs::path tar = DockerArchive("config.json", {"l/layer.tar"},
                                    {{"config.json", config, ""}, {"l/layer.tar", "", target}});
    auto imported = ImportImage(*dst_, tar, app_, {});
    EXPECT_THAT(Message(imported.status()),
                HasSubstr(absl::StrCat("docker.tar: entry \"l/layer.tar\": is a symlink to \"",
                                       target, "\", outside the archive")));
  }
  stdfs::path dangling = DockerArchive("config.json", {"l/layer.tar"},
                                       {{"config.json", config, ""}, {"l/layer.tar", "", "x"}});
  EXPECT_THAT(Message(ImportImage(*dst_, dangling, app_, {}).status()),
              HasSubstr("is a symlink to \"x\", not to a file of the archive"));
  ExpectNothingTagged();
}

// Docker's legacy format links a layer saved twice to its first copy.
TEST_F(LocalImagesTest, Tar_SymlinkToAFileOfTheArchiveIsFollowed) {
  const std::string layer = LayerTar(false);
  const std::string config = ConfigFor(layer);
  stdfs::path tar = DockerArchive("config.json", {"b/layer.tar"},
                                  {{"config.json", config, ""},
                                   {"a/layer.tar", layer, ""},
                                   {"b/layer.tar", "", "../a/layer.tar"}});
  auto imported = ImportImage(*dst_, tar, app_, {});
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->layers[0].digest, digest::Sha256Of(layer));
}

TEST_F(LocalImagesTest, Tar_EntryOutsideTheArchiveIsRefused) {
  const std::string config = ConfigFor(LayerTar(false));
  stdfs::path tar =
      DockerArchive("config.json", {}, {{"config.json", config, ""}, {"../escape", "x", ""}});
  auto imported = ImportImage(*dst_, tar, app_, {});
  EXPECT_THAT(Message(imported.status()),
              HasSubstr("docker.tar: entry \"../escape\": \"../escape\" is outside the archive"));
  ExpectNothingTagged();
}

TEST_F(LocalImagesTest, FileThatIsNoImageArchiveSaysWhatItLacks) {
  stdfs::path tar = dir_.path() / "plain.tar";
  WriteFile(tar, LayerTar(false));
  auto imported = ImportImage(*dst_, tar, app_, {});
  EXPECT_THAT(Message(imported.status()),
              HasSubstr("plain.tar: neither an OCI image layout (index.json) nor a docker archive "
                        "(manifest.json); a root filesystem tar needs --rootfs"));
}

// skopeo's own docker-archive and oci-archive writers, from our layout.
TEST_F(LocalImagesTest, SkopeoCopies_Import) {
  if (RunShell("command -v skopeo >/dev/null") != 0) GTEST_SKIP() << "skopeo is not installed";
  LayoutImage original = MakeImage();
  stdfs::path layout = dir_.path() / "layout";
  ASSERT_TRUE(WriteOciLayoutDir(*src_, {original}, layout).ok());
  const stdfs::path docker = dir_.path() / "skopeo-docker.tar";
  const stdfs::path oci = dir_.path() / "skopeo-oci.tar";
  ASSERT_EQ(
      RunShell(absl::StrCat("skopeo --insecure-policy copy -q oci:", layout.string(),
                            ":latest docker-archive:", docker.string(), ":example.com/app:latest")),
      0);
  ASSERT_EQ(RunShell(absl::StrCat("skopeo --insecure-policy copy -q oci:", layout.string(),
                                  ":latest oci-archive:", oci.string(), ":latest")),
            0);
  auto from_docker = ImportImage(*dst_, docker, app_, {});
  ASSERT_TRUE(from_docker.ok()) << from_docker.status();
  EXPECT_EQ(from_docker->config.diff_ids, std::vector{digest::Sha256Of(LayerTar(false))});
  EXPECT_EQ(from_docker->config.config.cmd, std::vector<std::string>{"/app/hello.txt"});
  auto from_oci = ImportImage(*dst_, oci, Ref("example.com/app:oci"), {});
  ASSERT_TRUE(from_oci.ok()) << from_oci.status();
  EXPECT_EQ(from_oci->config.diff_ids, std::vector{digest::Sha256Of(LayerTar(false))});
}

// A layout umoci made and edited (new image, a file inserted as a gzip
// layer, config set) imports with its manifest as umoci wrote it.
TEST_F(LocalImagesTest, UmociLayout_Imports) {
  if (RunShell("command -v umoci >/dev/null") != 0) GTEST_SKIP() << "umoci is not installed";
  const stdfs::path layout = dir_.path() / "umoci";
  const stdfs::path file = dir_.path() / "hello.txt";
  WriteFile(file, "hi\n");
  const std::string image = absl::StrCat(layout.string(), ":v1");
  ASSERT_EQ(RunShell(absl::StrCat("umoci init --layout ", layout.string(), " && umoci new --image ",
                                  image, " && umoci insert --image ", image, " ", file.string(),
                                  " /app/hello.txt && umoci config --image ", image,
                                  " --config.env PATH=/bin --config.cmd sh")),
            0);
  auto imported = ImportImage(*dst_, layout, Ref("example.com/app:v1"), {});
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_THAT(testing::ReadFileOrFail(layout / "index.json"),
              HasSubstr(imported->manifest.digest.ToString()));
  EXPECT_THAT(imported->config.config.env, ElementsAre("PATH=/bin"));
  EXPECT_THAT(imported->config.config.cmd, ElementsAre("sh"));
  ASSERT_EQ(imported->layers.size(), 1u);
  EXPECT_EQ(imported->layers[0].media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
}

}  // namespace
}  // namespace stagefarm::oci
