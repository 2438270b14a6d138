// --output values and compression levels: what is accepted, and the message
// for what is not.
#include "cli/output_spec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace stagefarm::cli {
namespace {

using oci::LayerCompression;
using ::testing::HasSubstr;

std::string Error(const std::string& value) {
  absl::StatusOr<OutputSpec> parsed = ParseOutput(value);
  if (parsed.ok()) return "parsed without error";
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(parsed.status().message());
}

TEST(ParseOutputTest, TypeDestNameAndCompressionAreRead) {
  absl::StatusOr<OutputSpec> oci = ParseOutput("type=oci,dest=out/layout/,compression=zstd");
  ASSERT_TRUE(oci.ok()) << oci.status();
  EXPECT_EQ(oci->type, "oci");
  EXPECT_EQ(oci->dest, "out/layout/");
  EXPECT_TRUE(oci->directory);
  EXPECT_EQ(oci->compression, LayerCompression::kZstd);
  EXPECT_EQ(oci->compression_level, std::nullopt);
  absl::StatusOr<OutputSpec> registry = ParseOutput("type=registry,name=example.com/app:1");
  ASSERT_TRUE(registry.ok()) << registry.status();
  EXPECT_EQ(registry->name, "example.com/app:1");
  EXPECT_EQ(registry->compression, std::nullopt);
}

TEST(ParseOutputTest, CompressionLevelIsReadForGzipAndZstdInEitherOrder) {
  absl::StatusOr<OutputSpec> zstd =
      ParseOutput("type=oci,dest=out.tar,compression=zstd,compression-level=19");
  ASSERT_TRUE(zstd.ok()) << zstd.status();
  EXPECT_EQ(zstd->compression, LayerCompression::kZstd);
  EXPECT_EQ(zstd->compression_level, 19);
  // The level may come first: it is checked against the compression at the end.
  absl::StatusOr<OutputSpec> first =
      ParseOutput("compression-level=22,type=docker,dest=out.tar,compression=zstd");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->compression_level, 22);
  absl::StatusOr<OutputSpec> gzip =
      ParseOutput("type=oci,dest=out.tar,compression=gzip,compression-level=9");
  ASSERT_TRUE(gzip.ok()) << gzip.status();
  EXPECT_EQ(gzip->compression, LayerCompression::kGzip);
  EXPECT_EQ(gzip->compression_level, 9);
  absl::StatusOr<OutputSpec> registry = ParseOutput("type=registry,compression-level=0");
  ASSERT_TRUE(registry.ok()) << registry.status();
  EXPECT_EQ(registry->compression_level, 0);
}

TEST(ParseOutputTest, LevelWithoutCompressionIsAGzipLevel) {
  absl::StatusOr<OutputSpec> spec = ParseOutput("type=oci,dest=out.tar,compression-level=6");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->compression, LayerCompression::kGzip);
  EXPECT_EQ(spec->compression_level, 6);
  // 10 is a zstd level, but the default compression is gzip.
  EXPECT_EQ(Error("type=oci,dest=out.tar,compression-level=10"),
            "--output: compression-level 10 is out of range for gzip (0..9)");
}

TEST(ParseOutputTest, ZstdLevelZeroIsLibzstdsDefaultLevel) {
  // libzstd reads 0 as ZSTD_CLEVEL_DEFAULT (3): the spec says 3, so that the
  // blob and its cache entry are those of no level at all.
  absl::StatusOr<OutputSpec> spec =
      ParseOutput("type=oci,dest=out.tar,compression=zstd,compression-level=0");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->compression_level, 3);
  EXPECT_EQ(spec->compression_level, oci::DefaultLevel(LayerCompression::kZstd));
  // gzip's 0 is a level of its own: stored, not deflated.
  absl::StatusOr<OutputSpec> gzip =
      ParseOutput("type=oci,dest=out.tar,compression=gzip,compression-level=0");
  ASSERT_TRUE(gzip.ok()) << gzip.status();
  EXPECT_EQ(gzip->compression_level, 0);
}

TEST(ParseOutputTest, LevelThatIsNotADecimalIntegerIsRefused) {
  for (const std::string value :
       {"", "x", "3x", "+3", " 3", "3 ", "0x3", "1e2", "3.0", "-", "--3"}) {
    EXPECT_EQ(Error("type=oci,dest=out.tar,compression=zstd,compression-level=" + value),
              "--output: compression-level must be an integer, not \"" + value + "\"")
        << value;
  }
}

TEST(ParseOutputTest, LevelOutOfRangeForItsCompressionIsRefused) {
  EXPECT_EQ(Error("type=oci,dest=out.tar,compression=gzip,compression-level=-1"),
            "--output: compression-level -1 is out of range for gzip (0..9)");
  EXPECT_EQ(Error("type=oci,dest=out.tar,compression=gzip,compression-level=10"),
            "--output: compression-level 10 is out of range for gzip (0..9)");
  EXPECT_EQ(Error("type=oci,dest=out.tar,compression=zstd,compression-level=23"),
            "--output: compression-level 23 is out of range for zstd (-131072..22)");
  EXPECT_EQ(Error("type=oci,dest=out.tar,compression=zstd,compression-level=-131073"),
            "--output: compression-level -131073 is out of range for zstd (-131072..22)");
  // Too large for an int: out of range, not "not an integer".
  EXPECT_EQ(Error("type=oci,dest=out.tar,compression=zstd,compression-level=99999999999"),
            "--output: compression-level 99999999999 is out of range for zstd (-131072..22)");
  // libzstd's negative (fast) levels are levels.
  absl::StatusOr<OutputSpec> fast =
      ParseOutput("type=oci,dest=out.tar,compression=zstd,compression-level=-5");
  ASSERT_TRUE(fast.ok()) << fast.status();
  EXPECT_EQ(fast->compression_level, -5);
}

TEST(ParseOutputTest, LevelWithoutCompressingIsRefused) {
  EXPECT_EQ(Error("type=oci,dest=out.tar,compression=uncompressed,compression-level=1"),
            "--output: compression-level is for gzip or zstd, not uncompressed layers");
  EXPECT_EQ(Error("type=local,dest=out,compression-level=1"),
            "--output type=local writes files: no compression-level");
  EXPECT_EQ(Error("type=local,dest=out,compression=zstd"),
            "--output type=local writes files: no compression");
}

TEST(ParseOutputTest, UnknownFieldListsTheKnownOnes) {
  EXPECT_EQ(Error("type=oci,dest=out.tar,level=1"),
            "--output: unknown field \"level\" (known: type, dest, name, compression, "
            "compression-level)");
  EXPECT_THAT(Error("type=oci,dest=out.tar,compression=brotli"),
              HasSubstr("compression must be gzip, zstd or uncompressed, not \"brotli\""));
}

TEST(ParseCompressionLevelTest, NamesTheFlagItIsGiven) {
  EXPECT_EQ(ParseCompressionLevel("--compression-level", "7", LayerCompression::kGzip).value(), 7);
  EXPECT_EQ(ParseCompressionLevel("--compression-level", "0", LayerCompression::kZstd).value(), 3);
  EXPECT_EQ(ParseCompressionLevel("--compression-level", "seven", LayerCompression::kGzip)
                .status()
                .message(),
            "--compression-level must be an integer, not \"seven\"");
  EXPECT_EQ(ParseCompressionLevel("--compression-level", "12", LayerCompression::kGzip)
                .status()
                .message(),
            "--compression-level 12 is out of range for gzip (0..9)");
}

std::vector<OutputSpec> Outputs(const std::vector<std::string>& values) {
  std::vector<OutputSpec> outputs;
  for (const std::string& value : values) {
    absl::StatusOr<OutputSpec> spec = ParseOutput(value);
    EXPECT_TRUE(spec.ok()) << value << ": " << spec.status();
    if (spec.ok()) outputs.push_back(*std::move(spec));
  }
  return outputs;
}

TEST(CompressionOfTest, NoneGivenIsGzipAtTheDefaultLevel) {
  absl::StatusOr<oci::CompressOptions> compress =
      CompressionOf(Outputs({"type=oci,dest=a.tar", "type=local,dest=dir"}));
  ASSERT_TRUE(compress.ok()) << compress.status();
  EXPECT_EQ(compress->compression, LayerCompression::kGzip);
  EXPECT_EQ(compress->level, std::nullopt);
}

TEST(CompressionOfTest, AnOutputThatGivesNoneTakesTheOthers) {
  absl::StatusOr<oci::CompressOptions> compress = CompressionOf(
      Outputs({"type=oci,dest=a.tar", "type=docker,dest=b.tar,compression=zstd",
               "type=oci,dest=c/,compression=zstd,compression-level=1", "type=registry"}));
  ASSERT_TRUE(compress.ok()) << compress.status();
  EXPECT_EQ(compress->compression, LayerCompression::kZstd);
  EXPECT_EQ(compress->level, 1);
}

TEST(CompressionOfTest, TwoOutputsThatGiveTheSameAgree) {
  // zstd's 0 is its default, 3.
  absl::StatusOr<oci::CompressOptions> compress =
      CompressionOf(Outputs({"type=oci,dest=a.tar,compression=zstd,compression-level=0",
                             "type=docker,dest=b.tar,compression=zstd,compression-level=3"}));
  ASSERT_TRUE(compress.ok()) << compress.status();
  EXPECT_EQ(compress->level, 3);
}

TEST(CompressionOfTest, DifferentCompressionsOrLevelsAreRefused) {
  EXPECT_EQ(CompressionOf(Outputs({"type=oci,dest=a.tar,compression=zstd",
                                   "type=docker,dest=b.tar,compression=gzip"}))
                .status()
                .message(),
            "--output: one output asks for compression=zstd, another for compression=gzip; the "
            "image's layers are compressed once, for every output");
  // A level alone is a gzip level.
  EXPECT_EQ(CompressionOf(Outputs({"type=oci,dest=a.tar,compression-level=5",
                                   "type=docker,dest=b.tar,compression=zstd"}))
                .status()
                .message(),
            "--output: one output asks for compression=gzip, another for compression=zstd; the "
            "image's layers are compressed once, for every output");
  EXPECT_EQ(CompressionOf(Outputs({"type=oci,dest=a.tar,compression=zstd,compression-level=19",
                                   "type=registry,compression=zstd,compression-level=1"}))
                .status()
                .message(),
            "--output: one output asks for compression-level=19, another for "
            "compression-level=1; the image's layers are compressed once, for every output");
}

}  // namespace
}  // namespace stagefarm::cli
