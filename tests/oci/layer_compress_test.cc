#include "common/oci/layer_compress.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/digest/digest.h"
#include "common/oci/exported_image.h"
#include "common/oci/local_images.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/random_blobs.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm::oci {
namespace {

using ::testing::HasSubstr;
using testing::kMiB;
using ::testing::TestWithParam;
using ::testing::Values;

// Layer-like bytes: runs of seeded random bytes (compressed files) between
// runs of repeated text (sources, configs, tar headers), so that both the
// literal and the match paths of the compressors are exercised.
std::string LayerLikeBytes(uint64_t seed, size_t size) {
  std::string out;
  std::string random;
  testing::RandomStream stream(seed);
  for (int run = 0; out.size() < size; ++run) {
    if (run % 2 == 0) {
      stream.Fill(&random, 3000 + (run * 7919) % 60000);
      out += random;
    } else {
      for (int line = 0; line < 200 + run % 300; ++line) {
        absl::StrAppend(&out, "usr/share/doc/package-", run, "/copyright line ", line,
                        ": Permission is hereby granted, free of charge\n");
      }
    }
  }
  out.resize(size);
  return out;
}

// Compresses `input` with `threads` workers, fed in `piece`-byte writes.
std::string Compress(LayerCompression compression, absl::string_view input, int threads,
                     size_t piece = 64 * 1024, std::optional<int> level = std::nullopt) {
  std::string out;
  absl::StatusOr<std::unique_ptr<LayerCompressor>> compressor =
      LayerCompressor::Create(compression, level, threads, [&](absl::string_view bytes) {
        out.append(bytes.data(), bytes.size());
        return absl::OkStatus();
      });
  EXPECT_TRUE(compressor.ok()) << compressor.status();
  if (!compressor.ok()) return "";
  for (size_t at = 0; at < input.size(); at += piece) {
    EXPECT_TRUE((*compressor)->Write(input.substr(at, piece)).ok());
  }
  EXPECT_TRUE((*compressor)->Finish().ok());
  return out;
}

// zlib's inflate with gzip framing; checks that the stream is one member
// that ends exactly at the end of `compressed`.
std::string Gunzip(const std::string& compressed) {
  z_stream stream{};
  EXPECT_EQ(inflateInit2(&stream, 15 + 16), Z_OK);
  std::string out;
  std::string buffer(256 * 1024, '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  stream.avail_in = static_cast<uInt>(compressed.size());
  int result = Z_OK;
  while (result == Z_OK) {
    stream.next_out = reinterpret_cast<Bytef*>(buffer.data());
    stream.avail_out = static_cast<uInt>(buffer.size());
    result = inflate(&stream, Z_NO_FLUSH);
    out.append(buffer.data(), buffer.size() - stream.avail_out);
  }
  EXPECT_EQ(result, Z_STREAM_END) << (stream.msg ? stream.msg : "");
  EXPECT_EQ(stream.avail_in, 0u) << "bytes after the first gzip member";
  inflateEnd(&stream);
  return out;
}

std::string Unzstd(const std::string& compressed) {
  ZSTD_DCtx* context = ZSTD_createDCtx();
  std::string out;
  std::string buffer(ZSTD_DStreamOutSize(), '\0');
  ZSTD_inBuffer input{compressed.data(), compressed.size(), 0};
  size_t result = 1;
  while (input.pos < input.size || result != 0) {
    ZSTD_outBuffer output{buffer.data(), buffer.size(), 0};
    result = ZSTD_decompressStream(context, &output, &input);
    EXPECT_FALSE(ZSTD_isError(result)) << ZSTD_getErrorName(result);
    if (ZSTD_isError(result)) break;
    out.append(buffer.data(), output.pos);
    if (output.pos == 0 && input.pos == input.size && result != 0) {
      ADD_FAILURE() << "truncated zstd frame";
      break;
    }
  }
  ZSTD_freeDCtx(context);
  return out;
}

// Runs `command` on a file holding `input`; returns its standard output.
std::string RunOnFile(const std::string& command, const std::string& input) {
  testing::TempDir dir("layer-compress-cli");
  const std::filesystem::path file = dir.path() / "input";
  std::ofstream(file, std::ios::binary) << input;
  FILE* pipe = popen(absl::StrCat(command, " ", file.string()).c_str(), "r");
  EXPECT_NE(pipe, nullptr);
  if (pipe == nullptr) return "";
  std::string out;
  char buffer[65536];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, n);
  EXPECT_EQ(pclose(pipe), 0) << command;
  return out;
}

class RoundTripTest : public TestWithParam<size_t> {};

TEST_P(RoundTripTest, Gzip_InflatesWithZlibAndGzip) {
  const std::string input = LayerLikeBytes(1, GetParam());
  const std::string compressed = Compress(LayerCompression::kGzip, input, 2);
  EXPECT_EQ(Gunzip(compressed), input);
  EXPECT_EQ(RunOnFile("gzip -dc", compressed), input);
}

TEST_P(RoundTripTest, Zstd_DecompressesWithLibzstdAndZstd) {
  const std::string input = LayerLikeBytes(2, GetParam());
  const std::string compressed = Compress(LayerCompression::kZstd, input, 2);
  EXPECT_EQ(Unzstd(compressed), input);
  EXPECT_EQ(RunOnFile("zstd -q -dc", compressed), input);
}

TEST_P(RoundTripTest, OutputIsTheSameWithOneAndFourThreadsAndAnyWriteSize) {
  const std::string input = LayerLikeBytes(3, GetParam());
  for (LayerCompression compression : {LayerCompression::kGzip, LayerCompression::kZstd}) {
    const std::string one = Compress(compression, input, 1);
    EXPECT_EQ(Compress(compression, input, 4), one);
    EXPECT_EQ(Compress(compression, input, 2, /*piece=*/4093), one);
    EXPECT_EQ(Compress(compression, input, 3, /*piece=*/std::max<size_t>(input.size(), 1)), one);
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, RoundTripTest,
                         Values(0, 100, kGzipBlockSize - 1, kGzipBlockSize, kGzipBlockSize + 1,
                                20 * kMiB),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return absl::StrCat("Bytes", info.param);
                         });

TEST(LayerCompressorTest, Gzip_RandomDataOverManyBlocksRoundTrips) {
  const std::string input = testing::RandomBytes(4, 5 * kGzipBlockSize + 12345);
  EXPECT_EQ(Gunzip(Compress(LayerCompression::kGzip, input, 3)), input);
}

TEST(LayerCompressorTest, Gzip_HeaderIsGos) {
  const std::string level1 = Compress(LayerCompression::kGzip, "hello", 1, 64, 1);
  EXPECT_EQ(level1.substr(0, 10), absl::string_view("\x1f\x8b\x08\0\0\0\0\0\x04\xff", 10));
  const std::string level6 = Compress(LayerCompression::kGzip, "hello", 1, 64, 6);
  EXPECT_EQ(level6.substr(0, 10), absl::string_view("\x1f\x8b\x08\0\0\0\0\0\0\xff", 10));
  const std::string level9 = Compress(LayerCompression::kGzip, "hello", 1, 64, 9);
  EXPECT_EQ(level9.substr(0, 10), absl::string_view("\x1f\x8b\x08\0\0\0\0\0\x02\xff", 10));
  EXPECT_EQ(Gunzip(level9), "hello");
}

// zstd uses both cores only if the libzstd linked in was built with
// multithreading; Debian's static archive is not (cmake/StaticDependencies.cmake).
TEST(LayerCompressorTest, Zstd_TheLinkedLibraryCanUseWorkerThreads) {
  const ZSTD_bounds workers = ZSTD_cParam_getBounds(ZSTD_c_nbWorkers);
  ASSERT_FALSE(ZSTD_isError(workers.error)) << ZSTD_getErrorName(workers.error);
  EXPECT_GE(workers.upperBound, 2);
}

TEST(LayerCompressorTest, LevelsOutOfRangeAreRefused) {
  const auto sink = [](absl::string_view) { return absl::OkStatus(); };
  EXPECT_TRUE(absl::IsInvalidArgument(
      LayerCompressor::Create(LayerCompression::kGzip, 10, 1, sink).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      LayerCompressor::Create(LayerCompression::kZstd, 1000, 1, sink).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      LayerCompressor::Create(LayerCompression::kNone, std::nullopt, 1, sink).status()));
}

TEST(LayerCompressorTest, SinkErrorIsReturnedAndSpendsTheCompressor) {
  absl::StatusOr<std::unique_ptr<LayerCompressor>> compressor = LayerCompressor::Create(
      LayerCompression::kGzip, std::nullopt, 2,
      [](absl::string_view) { return absl::UnavailableError("disk gone"); });
  ASSERT_TRUE(compressor.ok());
  const std::string input = LayerLikeBytes(5, 8 * kGzipBlockSize);
  absl::Status status = (*compressor)->Write(input);
  if (status.ok()) status = (*compressor)->Finish();
  EXPECT_TRUE(absl::IsUnavailable(status)) << status;
  EXPECT_TRUE(absl::IsFailedPrecondition((*compressor)->Finish()));
}

// ---------------------------------------------------------------- CompressLayers

class CompressLayersTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen() {
    store_.reset();
    absl::StatusOr<std::unique_ptr<cas::BlobStore>> store = cas::BlobStore::Open(dir_.path());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  Descriptor PutLayer(const std::string& bytes,
                      std::string media_type = LayerMediaType(LayerCompression::kNone)) {
    const digest::Digest digest = digest::Sha256Of(bytes);
    EXPECT_TRUE(store_->Put(bytes, digest, media_type).ok());
    return Descriptor{media_type, digest, bytes.size(), {}};
  }

  // `compression` on two threads.
  static CompressOptions OptionsFor(LayerCompression compression) {
    CompressOptions options;
    options.compression = compression;
    options.threads = 2;
    return options;
  }

  // CompressLayers, counting the uncompressed bytes it reports as compressed.
  absl::StatusOr<std::vector<Descriptor>> Run(absl::Span<const Descriptor> layers,
                                              LayerCompression compression,
                                              uint64_t* compressed_bytes = nullptr) {
    CompressOptions options = OptionsFor(compression);
    options.on_progress = [compressed_bytes](uint64_t done, uint64_t total) {
      EXPECT_LE(done, total);
      if (compressed_bytes != nullptr) *compressed_bytes = done;
    };
    return CompressLayers(*store_, layers, options);
  }

  testing::TempDir dir_{"layer-compress"};
  std::unique_ptr<cas::BlobStore> store_;
};

TEST_F(CompressLayersTest, StoresTheCompressedBlobWithItsMediaType) {
  const std::string tar = LayerLikeBytes(10, 3 * kMiB + 17);
  const Descriptor layer = PutLayer(tar);
  for (LayerCompression compression : {LayerCompression::kGzip, LayerCompression::kZstd}) {
    uint64_t compressed_bytes = 0;
    absl::StatusOr<std::vector<Descriptor>> out = Run({layer}, compression, &compressed_bytes);
    ASSERT_TRUE(out.ok()) << out.status();
    ASSERT_EQ(out->size(), 1u);
    const Descriptor& result = (*out)[0];
    EXPECT_EQ(result.media_type, LayerMediaType(compression));
    EXPECT_EQ(compressed_bytes, tar.size());
    absl::StatusOr<cas::BlobInfo> info = store_->Stat(result.digest);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->size, result.size);
    EXPECT_EQ(info->media_type, result.media_type);
    absl::StatusOr<std::string> blob = store_->ReadAll(result.digest);
    ASSERT_TRUE(blob.ok());
    EXPECT_LT(blob->size(), tar.size());
    EXPECT_EQ(compression == LayerCompression::kGzip ? Gunzip(*blob) : Unzstd(*blob), tar);
  }
}

TEST_F(CompressLayersTest, DockerLayerKeepsDockerMediaTypes) {
  const Descriptor layer =
      PutLayer(LayerLikeBytes(11, 5000), "application/vnd.docker.image.rootfs.diff.tar");
  absl::StatusOr<std::vector<Descriptor>> gzip = Run({layer}, LayerCompression::kGzip);
  ASSERT_TRUE(gzip.ok()) << gzip.status();
  EXPECT_EQ((*gzip)[0].media_type, "application/vnd.docker.image.rootfs.diff.tar.gzip");
  absl::StatusOr<std::vector<Descriptor>> zstd = Run({layer}, LayerCompression::kZstd);
  ASSERT_TRUE(zstd.ok()) << zstd.status();
  EXPECT_EQ((*zstd)[0].media_type, "application/vnd.docker.image.rootfs.diff.tar.zstd");
}

TEST_F(CompressLayersTest, SecondCallReusesTheRememberedBlobWithoutCompressing) {
  const Descriptor layer = PutLayer(LayerLikeBytes(12, 2 * kMiB));
  uint64_t compressed_bytes = 0;
  absl::StatusOr<std::vector<Descriptor>> first =
      Run({layer}, LayerCompression::kGzip, &compressed_bytes);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(compressed_bytes, layer.size);

  compressed_bytes = 0;
  absl::StatusOr<std::vector<Descriptor>> second =
      Run({layer}, LayerCompression::kGzip, &compressed_bytes);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(compressed_bytes, 0u);
  EXPECT_EQ((*second)[0].digest, (*first)[0].digest);
  EXPECT_EQ((*second)[0].size, (*first)[0].size);
  EXPECT_EQ((*second)[0].media_type, (*first)[0].media_type);
  absl::StatusOr<std::string> entry = store_->GetCacheEntry(
      absl::StrCat("compressed/v1/gzip-", kDefaultGzipLevel, "/", layer.digest.ToString()));
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(*entry, absl::StrCat((*first)[0].digest.ToString(), " ", (*first)[0].size));

  // Another level is another blob.
  CompressOptions level9;
  level9.level = 9;
  level9.on_progress = [&](uint64_t done, uint64_t) { compressed_bytes = done; };
  absl::StatusOr<std::vector<Descriptor>> other = CompressLayers(*store_, {layer}, level9);
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(compressed_bytes, layer.size);
  EXPECT_NE((*other)[0].digest, (*first)[0].digest);
}

TEST_F(CompressLayersTest, RecompressesWhenTheRememberedBlobWasDeleted) {
  const Descriptor layer = PutLayer(LayerLikeBytes(13, kMiB));
  absl::StatusOr<std::vector<Descriptor>> first = Run({layer}, LayerCompression::kZstd);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(store_->Delete((*first)[0].digest).ok());

  uint64_t compressed_bytes = 0;
  absl::StatusOr<std::vector<Descriptor>> again =
      Run({layer}, LayerCompression::kZstd, &compressed_bytes);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(compressed_bytes, layer.size);
  // Deterministic: the same bytes again, stored again.
  EXPECT_EQ((*again)[0].digest, (*first)[0].digest);
  absl::StatusOr<bool> has = store_->Has((*again)[0].digest);
  ASSERT_TRUE(has.ok());
  EXPECT_TRUE(*has);
}

TEST_F(CompressLayersTest, CompressedAndForeignLayersPassThroughAndOrderIsKept) {
  const Descriptor plain = PutLayer(LayerLikeBytes(14, 10000));
  Descriptor gzipped = PutLayer(Compress(LayerCompression::kGzip, "already", 1),
                                LayerMediaType(LayerCompression::kGzip));
  gzipped.annotations["org.example"] = "kept";
  // Not stored: passing through must not read it.
  Descriptor foreign{"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                     digest::Sha256Of("elsewhere"),
                     9,
                     {}};
  uint64_t compressed_bytes = 0;
  absl::StatusOr<std::vector<Descriptor>> out =
      Run({gzipped, plain, foreign}, LayerCompression::kZstd, &compressed_bytes);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), 3u);
  EXPECT_EQ((*out)[0].digest, gzipped.digest);
  EXPECT_EQ((*out)[0].annotations, gzipped.annotations);
  EXPECT_EQ((*out)[1].media_type, LayerMediaType(LayerCompression::kZstd));
  EXPECT_EQ((*out)[2].digest, foreign.digest);
  EXPECT_EQ(compressed_bytes, plain.size);
}

TEST_F(CompressLayersTest, NoneReturnsTheInput) {
  const Descriptor plain = PutLayer("a layer");
  absl::StatusOr<std::vector<Descriptor>> out = Run({plain}, LayerCompression::kNone);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].digest, plain.digest);
  EXPECT_EQ((*out)[0].media_type, plain.media_type);
}

TEST_F(CompressLayersTest, MissingLayerIsNotFoundNamingItsDigest) {
  const Descriptor missing{
      LayerMediaType(LayerCompression::kNone), digest::Sha256Of("absent"), 6, {}};
  absl::StatusOr<std::vector<Descriptor>> out = Run({missing}, LayerCompression::kGzip);
  EXPECT_TRUE(absl::IsNotFound(out.status())) << out.status();
  EXPECT_THAT(out.status().message(), HasSubstr(missing.digest.ToString()));
}

TEST_F(CompressLayersTest, WrongDescriptorSizeIsInvalidArgument) {
  Descriptor layer = PutLayer("twelve bytes");
  layer.size = 13;
  absl::StatusOr<std::vector<Descriptor>> out = Run({layer}, LayerCompression::kGzip);
  EXPECT_TRUE(absl::IsInvalidArgument(out.status())) << out.status();
  EXPECT_THAT(out.status().message(), HasSubstr(layer.digest.ToString()));
}

TEST_F(CompressLayersTest, CorruptLayerIsDataLossNamingItsDigest) {
  const Descriptor layer = PutLayer(testing::RandomBytes(15, 100'000));
  store_.reset();
  // The layer's only chunk, flipped.
  ASSERT_TRUE(testing::CorruptFirstStoredChunk(dir_.path()).ok());
  Reopen();
  absl::StatusOr<std::vector<Descriptor>> out = Run({layer}, LayerCompression::kGzip);
  EXPECT_TRUE(absl::IsDataLoss(out.status())) << out.status();
  EXPECT_THAT(out.status().message(), HasSubstr("compressing layer " + layer.digest.ToString()));
}

// ------------------------------------------------------------------ WriteExport

// The files under `dir`, relative, sorted.
std::vector<std::string> FilesUnder(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) {
      names.push_back(std::filesystem::relative(entry.path(), dir).string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class WriteExportTest : public CompressLayersTest {
 protected:
  // An image of one uncompressed layer, stored.
  LayoutImage StoredImage() {
    const Descriptor layer = PutLayer(LayerLikeBytes(16, 3 * kMiB + 5));
    ImageConfig config;
    config.architecture = "amd64";
    config.os = "linux";
    config.diff_ids = {layer.digest};
    absl::StatusOr<LayoutImage> image = StoreImage(*store_, config, {layer}, "v1", {"a/b:v1"});
    EXPECT_TRUE(image.ok()) << image.status();
    return *image;
  }

  // The stored way to `image` exported with `options`: compressed into the
  // store (PrepareExport), then WriteImageTar from it, with `image`'s
  // annotations and tags. Expects the same manifest as `exported`; returns
  // the tar's bytes.
  std::string StoredWayTar(const LayoutImage& image, const CompressOptions& options,
                           const LayoutImage& exported) {
    absl::StatusOr<LocalImage> local = ReadImage(*store_, image.manifest.digest);
    EXPECT_TRUE(local.ok()) << local.status();
    if (!local.ok()) return "";
    absl::StatusOr<ExportedImage> prepared = PrepareExport(*store_, *local, options);
    EXPECT_TRUE(prepared.ok()) << prepared.status();
    if (!prepared.ok()) return "";
    EXPECT_EQ(prepared->layout.manifest.digest, exported.manifest.digest);
    LayoutImage stored_layout = prepared->layout;
    stored_layout.manifest.annotations = image.manifest.annotations;
    stored_layout.repo_tags = image.repo_tags;
    const std::filesystem::path stored_tar = out_.path() / "stored.tar";
    EXPECT_TRUE(WriteImageTar(*store_, {stored_layout}, stored_tar, true).ok());
    return ReadFile(stored_tar);
  }

  testing::TempDir out_{"write-export"};
};

TEST_F(WriteExportTest, GivesPrepareExportsImageByteForByteWithoutStoringTheLayer) {
  const LayoutImage image = StoredImage();
  for (LayerCompression compression : {LayerCompression::kGzip, LayerCompression::kZstd}) {
    SCOPED_TRACE(LayerMediaType(compression));
    const CompressOptions options = OptionsFor(compression);
    const std::filesystem::path staged_tar = out_.path() / "staged.tar";
    const std::filesystem::path staged_dir = out_.path() / "staged-dir";
    absl::StatusOr<LayoutImage> exported = WriteExport(
        *store_, image, options, {{staged_tar, false, true}, {staged_dir, true, false}});
    ASSERT_TRUE(exported.ok()) << exported.status();
    ASSERT_EQ(exported->layers.size(), 1u);
    EXPECT_EQ(exported->layers[0].media_type, LayerMediaType(compression));
    EXPECT_EQ(exported->manifest.annotations, image.manifest.annotations);
    EXPECT_EQ(exported->repo_tags, image.repo_tags);
    // Staged, not stored, not remembered; nothing partial or staging is left.
    absl::StatusOr<bool> has = store_->Has(exported->layers[0].digest);
    ASSERT_TRUE(has.ok());
    EXPECT_FALSE(*has);
    std::vector<std::string> expected = {
        "staged-dir/blobs/sha256/" + exported->config.digest.hex(),
        "staged-dir/blobs/sha256/" + exported->layers[0].digest.hex(),
        "staged-dir/blobs/sha256/" + exported->manifest.digest.hex(),
        "staged-dir/index.json",
        "staged-dir/oci-layout",
        "staged.tar"};
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(FilesUnder(out_.path()), expected);

    // The stored way: compressed into the store, then written from it.
    EXPECT_EQ(ReadFile(staged_tar), StoredWayTar(image, options, *exported));
    EXPECT_EQ(ReadFile(staged_dir / "blobs/sha256" / exported->layers[0].digest.hex()),
              *store_->ReadAll(exported->layers[0].digest));

    // Now remembered: written from the store, the same bytes again.
    const std::filesystem::path again_tar = out_.path() / "again.tar";
    absl::StatusOr<LayoutImage> again =
        WriteExport(*store_, image, options, {{again_tar, false, true}});
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(ReadFile(again_tar), ReadFile(staged_tar));
    std::filesystem::remove_all(out_.path());
    std::filesystem::create_directories(out_.path());
  }
}

// The entries of the tar at `path`, in order: name and contents (libarchive
// checks each header's checksum as it reads).
std::vector<std::pair<std::string, std::string>> TarEntries(const std::filesystem::path& path) {
  std::vector<std::pair<std::string, std::string>> entries;
  archive* reader = archive_read_new();
  archive_read_support_format_tar(reader);
  EXPECT_EQ(archive_read_open_filename(reader, path.c_str(), 1 << 16), ARCHIVE_OK);
  archive_entry* entry = nullptr;
  int status = ARCHIVE_OK;
  while ((status = archive_read_next_header(reader, &entry)) == ARCHIVE_OK) {
    std::string data(static_cast<size_t>(archive_entry_size(entry)), '\0');
    if (!data.empty()) {
      EXPECT_EQ(archive_read_data(reader, data.data(), data.size()),
                static_cast<la_ssize_t>(data.size()));
    }
    entries.emplace_back(archive_entry_pathname(entry), std::move(data));
  }
  EXPECT_EQ(status, ARCHIVE_EOF) << archive_error_string(reader);
  archive_read_free(reader);
  return entries;
}

// One tar: each layer compressed straight into it (no staging), the same
// bytes as the stored way; a layer that comes twice is in it once, and a
// layer stored compressed goes in as it is; the layers come first, in order.
TEST_F(WriteExportTest, ASingleTarGetsItsLayersCompressedStraightIntoIt) {
  const Descriptor a = PutLayer(LayerLikeBytes(16, 3 * kMiB + 5));
  const Descriptor b = PutLayer(LayerLikeBytes(17, 700));
  const Descriptor gzip = PutLayer("not really gzip", LayerMediaType(LayerCompression::kGzip));
  ImageConfig config;
  config.architecture = "amd64";
  config.os = "linux";
  config.diff_ids = {a.digest, b.digest, a.digest, digest::Sha256Of("its diff id")};
  absl::StatusOr<LayoutImage> image =
      StoreImage(*store_, config, {a, b, a, gzip}, "v1", {"a/b:v1"});
  ASSERT_TRUE(image.ok()) << image.status();
  for (LayerCompression compression : {LayerCompression::kGzip, LayerCompression::kZstd}) {
    SCOPED_TRACE(LayerMediaType(compression));
    const CompressOptions options = OptionsFor(compression);
    const std::filesystem::path tar = out_.path() / "image.tar";
    absl::StatusOr<LayoutImage> exported =
        WriteExport(*store_, *image, options, {{tar, false, true}});
    ASSERT_TRUE(exported.ok()) << exported.status();
    EXPECT_EQ(FilesUnder(out_.path()), std::vector<std::string>{"image.tar"});
    ASSERT_EQ(exported->layers.size(), 4u);
    EXPECT_EQ(exported->layers[2], exported->layers[0]);
    EXPECT_EQ(exported->layers[3], gzip);
    for (int i : {0, 1}) {
      EXPECT_EQ(exported->layers[i].media_type, LayerMediaType(compression));
      absl::StatusOr<bool> has = store_->Has(exported->layers[i].digest);
      ASSERT_TRUE(has.ok());
      EXPECT_FALSE(*has) << "layer " << i << " was stored";
    }

    // The stored way gives the same image and the same tar.
    EXPECT_EQ(ReadFile(tar), StoredWayTar(*image, options, *exported));

    // Readable, each blob's bytes under its name (the headers written after
    // the bytes are right), the layers first.
    const std::vector<std::pair<std::string, std::string>> entries = TarEntries(tar);
    ASSERT_EQ(entries.size(), 10u);  // 2 directories, 3 layers, config, manifest, 3 files
    EXPECT_EQ(entries[0].first, "blobs/");
    EXPECT_EQ(entries[1].first, "blobs/sha256/");
    for (int i : {0, 1, 3}) {
      const Descriptor& layer = exported->layers[i];
      const auto& [name, bytes] = entries[2 + (i == 3 ? 2 : i)];
      EXPECT_EQ(name, "blobs/sha256/" + layer.digest.hex());
      EXPECT_EQ(bytes.size(), layer.size);
      EXPECT_EQ(digest::Sha256Of(bytes), layer.digest);
    }
    EXPECT_EQ(entries[7].first, "index.json");
    EXPECT_EQ(entries[8].first, "manifest.json");
    EXPECT_EQ(entries[9].first, "oci-layout");
    std::filesystem::remove_all(out_.path());
    std::filesystem::create_directories(out_.path());
  }
}

TEST_F(WriteExportTest, AMissingLayerFailsAndLeavesNothingBehind) {
  LayoutImage image = StoredImage();
  image.layers[0].digest = digest::Sha256Of("absent");
  CompressOptions options;
  for (bool directory : {false, true}) {
    const std::filesystem::path dest = out_.path() / (directory ? "dir" : "image.tar");
    absl::StatusOr<LayoutImage> exported =
        WriteExport(*store_, image, options, {{dest, directory, false}});
    EXPECT_TRUE(absl::IsNotFound(exported.status())) << exported.status();
    EXPECT_THAT(exported.status().message(), HasSubstr(image.layers[0].digest.ToString()));
    EXPECT_THAT(FilesUnder(out_.path()), ::testing::IsEmpty());
  }
}

}  // namespace
}  // namespace stagefarm::oci
