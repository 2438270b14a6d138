#include "common/oci/layer_decompress.h"

#include <isa-l/igzip_lib.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/digest/digest.h"
#include "common/oci/diff_id_hasher.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/compressed_blobs.h"
#include "tests/testing/random_blobs.h"

namespace stagefarm::oci {
namespace {

using ::testing::HasSubstr;

using testing::GzipFields;
using testing::GzipMember;
using testing::ZstdFrame;

// Seeded random bytes and hex text: part incompressible, part not.
std::string MixedData(size_t size, uint64_t seed = 1) {
  std::string data = testing::RandomBytes(seed, size / 2);
  static constexpr char kHex[] = "0123456789abcdef";
  while (data.size() < size) data.push_back(kHex[(data.size() * 7919) % 16]);
  return data;
}

// Decompresses `blob` fed in pieces of `piece` bytes into an output buffer of
// `room` bytes at a time, then calls Finish.
absl::StatusOr<std::string> Decompress(absl::string_view blob, size_t piece = 4096,
                                       size_t room = 65536) {
  LayerDecompressor decompressor(DetectLayerCompression(blob));
  std::string out;
  std::string buffer(room, '\0');
  for (size_t offset = 0; offset < blob.size(); offset += piece) {
    absl::string_view in = blob.substr(offset, piece);
    const char* const end = in.data() + in.size();
    absl::StatusOr<size_t> n = 0;
    for (int calls = 0; !in.empty() || *n == buffer.size(); ++calls) {
      const size_t before = in.size();
      n = decompressor.Decompress(&in, absl::MakeSpan(buffer));
      if (!n.ok()) return n.status();
      if (in.size() > before || in.data() + in.size() != end || *n > buffer.size()) {
        return absl::InternalError("Decompress took more than its input or gave more than room");
      }
      if (calls > 100000000) return absl::InternalError("Decompress does not finish");
      out.append(buffer.data(), *n);
    }
  }
  if (absl::Status status = decompressor.Finish(); !status.ok()) return status;
  return out;
}

TEST(DetectLayerCompressionTest, ByMagicNumberElsePlainTar) {
  EXPECT_EQ(DetectLayerCompression("\x1f\x8b\x08\x00"), LayerCompression::kGzip);
  EXPECT_EQ(DetectLayerCompression("\x28\xb5\x2f\xfd"), LayerCompression::kZstd);
  EXPECT_EQ(DetectLayerCompression("etc/passwd"), LayerCompression::kNone);
  EXPECT_EQ(DetectLayerCompression("BZh9"), LayerCompression::kNone);
  EXPECT_EQ(DetectLayerCompression("\x28\xb5\x2f"), LayerCompression::kNone);
  EXPECT_EQ(DetectLayerCompression(""), LayerCompression::kNone);
}

TEST(LayerDecompressorTest, Gzip_SingleMember_WhateverThePieceAndBufferSizes) {
  const std::string data = MixedData(300000);
  const std::string blob = GzipMember(data);
  for (size_t piece : {size_t{1}, size_t{7}, size_t{4096}, blob.size()}) {
    for (size_t room : {size_t{1}, size_t{1000}, size_t{1} << 20}) {
      if (piece == 1 && room == 1) continue;  // slow and adds nothing to 1 x 1000
      absl::StatusOr<std::string> out = Decompress(blob, piece, room);
      ASSERT_TRUE(out.ok()) << piece << " " << room << ": " << out.status();
      EXPECT_TRUE(*out == data) << piece << " " << room;
    }
  }
}

TEST(LayerDecompressorTest, Gzip_StoredIncompressibleData) {
  const std::string data = testing::RandomBytes(5, 1 << 20);
  absl::StatusOr<std::string> out = Decompress(GzipMember(data, 0), 10000, 3000);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(*out == data);
}

// pigz and concatenated `gzip` outputs are several members; so is an empty
// member (gzip of nothing).
TEST(LayerDecompressorTest, Gzip_MultiMember_IsOneStream) {
  const std::string a = MixedData(100000, 1);
  const std::string b = MixedData(70001, 2);
  const std::string blob = GzipMember(a) + GzipMember("") + GzipMember(b, 1);
  for (size_t piece : {size_t{1}, size_t{3}, size_t{8}, size_t{4095}, blob.size()}) {
    absl::StatusOr<std::string> out = Decompress(blob, piece, 777);
    ASSERT_TRUE(out.ok()) << piece << ": " << out.status();
    EXPECT_TRUE(*out == a + b) << piece;
  }
}

// ISA-L 2.30's own header parsing (ISAL_GZIP) fails on this header when it
// comes in several pieces; the decompressor parses it itself.
TEST(LayerDecompressorTest, Gzip_OptionalHeaderFields_AreSkippedInAnyPieces) {
  const std::string data = MixedData(50000);
  GzipFields fields{.extra = std::string(300, 'x') + std::string("\0\x1f\x8b", 3),
                    .name = "layer.tar",
                    .comment = std::string(70000, 'c'),
                    .header_crc = true};
  std::string blob = GzipMember(data, 6, &fields);
  ASSERT_EQ(static_cast<uint8_t>(blob[3]), 0x02 | 0x04 | 0x08 | 0x10);
  GzipFields name_only{.name = "second"};
  blob += GzipMember(data, 6, &name_only);
  for (size_t piece : {size_t{1}, size_t{2}, size_t{5}, size_t{301}, blob.size()}) {
    absl::StatusOr<std::string> out = Decompress(blob, piece);
    ASSERT_TRUE(out.ok()) << piece << ": " << out.status();
    EXPECT_TRUE(*out == data + data) << piece;
  }
}

TEST(LayerDecompressorTest, Gzip_BadHeaderCrc_IsDataLoss) {
  GzipFields fields{.name = "layer.tar", .header_crc = true};
  std::string blob = GzipMember("content", 6, &fields);
  const size_t crc_at = 10 + fields.name.size() + 1;
  blob[crc_at] = static_cast<char>(blob[crc_at] ^ 0x01);
  absl::StatusOr<std::string> out = Decompress(blob, 3);
  EXPECT_TRUE(absl::IsDataLoss(out.status())) << out.status();
  EXPECT_THAT(out.status().message(), HasSubstr("header CRC"));
}

TEST(LayerDecompressorTest, Gzip_BadHeaderFields_AreDataLoss) {
  std::string blob = GzipMember("content");
  std::string method = blob;
  method[2] = 7;
  EXPECT_THAT(Decompress(method).status().message(), HasSubstr("compression method 7"));
  std::string reserved = blob;
  reserved[3] = static_cast<char>(0x20);
  EXPECT_THAT(Decompress(reserved).status().message(), HasSubstr("reserved header flags"));
}

TEST(LayerDecompressorTest, Gzip_CorruptDeflateData_IsDataLossNamingTheOffset) {
  std::string blob = GzipMember(MixedData(100000));
  // The first block's header: final, type 3 (reserved).
  blob[10] = static_cast<char>(0x07);
  absl::StatusOr<std::string> out = Decompress(blob);
  EXPECT_TRUE(absl::IsDataLoss(out.status())) << out.status();
  EXPECT_THAT(out.status().message(), HasSubstr("gzip: member 1 (at byte 0): corrupt deflate"));
  EXPECT_THAT(out.status().message(), HasSubstr("near byte"));

  // Garbled in the middle of a member that is not the first.
  const std::string first = GzipMember("first");
  std::string second = GzipMember(MixedData(100000, 3));
  for (size_t i = second.size() / 2; i < second.size() / 2 + 64; ++i) second[i] = '\xff';
  out = Decompress(first + second);
  EXPECT_TRUE(absl::IsDataLoss(out.status())) << out.status();
  EXPECT_THAT(out.status().message(),
              HasSubstr(absl::StrCat("gzip: member 2 (at byte ", first.size(), ")")));
}

// A 10,000-byte gzip member with one trailer byte, `from_end` bytes before
// its end, XORed with `flip`: DataLoss saying `why`, read a byte at a time
// and 4 KiB at a time.
void ExpectBadTrailerIsDataLoss(size_t from_end, char flip, const std::string& why) {
  std::string blob = GzipMember(MixedData(10000));
  blob[blob.size() - from_end] = static_cast<char>(blob[blob.size() - from_end] ^ flip);
  for (size_t piece : {size_t{1}, size_t{4096}}) {
    absl::StatusOr<std::string> out = Decompress(blob, piece);
    EXPECT_TRUE(absl::IsDataLoss(out.status())) << out.status();
    EXPECT_THAT(out.status().message(), HasSubstr(why));
  }
}

TEST(LayerDecompressorTest, Gzip_BadCrc_IsDataLossSayingSo) {
  ExpectBadTrailerIsDataLoss(8, 0x10, "CRC32 of the data is");
}

TEST(LayerDecompressorTest, Gzip_BadIsize_IsDataLossSayingSo) {
  ExpectBadTrailerIsDataLoss(4, 0x01, "the data is 10000 bytes, the trailer's ISIZE says 10001");
}

TEST(LayerDecompressorTest, Gzip_TruncatedAnywhere_IsDataLossNamingWhere) {
  GzipFields fields{.name = "layer.tar"};
  const std::string member = GzipMember(MixedData(100000), 6, &fields);
  const std::string blob = GzipMember("first") + member;
  const size_t second = blob.size() - member.size();
  struct Cut {
    size_t at;
    const char* where;
  };
  for (const Cut& cut :
       {Cut{3, "inside the header of member 1"}, Cut{second + 1, "inside the header of member 2"},
        Cut{second + 14, "inside the header of member 2"},
        Cut{second + member.size() / 2, "inside the deflate data of member 2"},
        Cut{blob.size() - 3, "inside the trailer of member 2"}}) {
    absl::StatusOr<std::string> out = Decompress(blob.substr(0, cut.at), 1000);
    EXPECT_TRUE(absl::IsDataLoss(out.status())) << cut.at << ": " << out.status();
    EXPECT_THAT(out.status().message(), HasSubstr(absl::StrCat("gzip: truncated: the stream ends "
                                                               "at byte ",
                                                               cut.at, ", ", cut.where)));
  }
}

TEST(LayerDecompressorTest, Gzip_TrailingGarbage_IsDataLoss) {
  const std::string member = GzipMember(MixedData(1000));
  for (const std::string& garbage :
       {std::string("x"), std::string(1024, '\0'), std::string("not gzip at all")}) {
    absl::StatusOr<std::string> out = Decompress(member + garbage, 100);
    EXPECT_TRUE(absl::IsDataLoss(out.status())) << out.status();
    EXPECT_THAT(out.status().message(), HasSubstr(absl::StrCat("gzip: trailing garbage at byte ",
                                                               member.size(), ", after member 1")));
  }
}

TEST(LayerDecompressorTest, Zstd_SingleAndMultiFrame_AreOneStream) {
  const std::string a = MixedData(300000, 1);
  const std::string b = MixedData(5000, 2);
  const std::string single = ZstdFrame(a);
  const std::string multi = ZstdFrame(a) + ZstdFrame("") + ZstdFrame(b);
  for (size_t piece : {size_t{1}, size_t{4096}, multi.size()}) {
    for (size_t room : {size_t{999}, size_t{1} << 20}) {
      absl::StatusOr<std::string> out = Decompress(single, piece, room);
      ASSERT_TRUE(out.ok()) << out.status();
      EXPECT_TRUE(*out == a);
      out = Decompress(multi, piece, room);
      ASSERT_TRUE(out.ok()) << out.status();
      EXPECT_TRUE(*out == a + b);
    }
  }
}

TEST(LayerDecompressorTest, Zstd_CorruptTruncatedOrFollowedByGarbage_IsDataLoss) {
  const std::string frame = ZstdFrame(MixedData(100000));
  std::string corrupt = frame;
  for (size_t i = frame.size() / 2; i < frame.size() / 2 + 16; ++i) corrupt[i] = '\x55';
  absl::StatusOr<std::string> out = Decompress(corrupt);
  EXPECT_TRUE(absl::IsDataLoss(out.status())) << out.status();
  EXPECT_THAT(out.status().message(), HasSubstr("zstd: frame 1 (at byte 0): "));

  out = Decompress(frame.substr(0, frame.size() - 5));
  EXPECT_TRUE(absl::IsDataLoss(out.status())) << out.status();
  EXPECT_THAT(out.status().message(), HasSubstr("zstd: truncated"));

  out = Decompress(frame + "garbage!");
  EXPECT_TRUE(absl::IsDataLoss(out.status())) << out.status();
  EXPECT_THAT(out.status().message(),
              HasSubstr(absl::StrCat("zstd: trailing garbage at byte ", frame.size())));
}

TEST(LayerDecompressorTest, None_PassesBytesThrough) {
  const std::string data = MixedData(10000);
  absl::StatusOr<std::string> out = Decompress(data, 333, 100);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, data);
}

// Whatever the bytes after a gzip or zstd magic number, every call returns,
// takes only a prefix of its input, and the end is DataLoss (or, rarely, a
// valid stream). Random edits of valid streams, fed in random pieces: this
// found ISA-L claiming more input than it was given after some errors.
TEST(LayerDecompressorTest, Hostile_RandomlyEditedStreams_AlwaysEndCleanly) {
  std::mt19937_64 random(42);
  const std::string data = MixedData(40000);
  GzipFields fields{.extra = "xx", .name = "nm", .comment = "comment", .header_crc = true};
  const std::vector<std::string> valid = {
      GzipMember(data, 1), GzipMember(data, 6, &fields) + GzipMember(data.substr(0, 100), 0),
      GzipMember("", 9), ZstdFrame(data) + ZstdFrame(data)};
  for (int i = 0; i < 3000; ++i) {
    std::string blob = valid[random() % valid.size()];
    for (int edits = 1 + static_cast<int>(random() % 4); edits > 0; --edits) {
      const size_t at = random() % blob.size();
      switch (random() % 4) {
        case 0:
          blob[at] = static_cast<char>(blob[at] ^ (1 << (random() % 8)));
          break;
        case 1:
          blob[at] = static_cast<char>(random());
          break;
        case 2:
          blob.resize(std::max<size_t>(at, 4));
          break;
        default:
          blob.insert(at, std::string(1 + random() % 20, static_cast<char>(random())));
      }
    }
    const size_t piece = 1 + random() % 5000;
    const size_t room = 1 + random() % 70000;
    absl::StatusOr<std::string> out = Decompress(blob, piece, room);
    EXPECT_TRUE(out.ok() || absl::IsDataLoss(out.status())) << i << ": " << out.status();
  }
}

// What the decompressor relies on from ISA-L: with ISAL_GZIP_NO_HDR_VER,
// isal_inflate checks both halves of a member's trailer (CRC32 and ISIZE)
// and consumes its input up to the trailer's end, never beyond, however the
// input is cut.
TEST(IsalInflateTest, NoHdrVer_ChecksTheTrailerAndStopsAtItsEnd) {
  const std::string data = MixedData(100000);
  const std::string member = GzipMember(data);
  const std::string body = member.substr(10);  // no optional fields
  auto inflate = [&](const std::string& input, size_t piece, size_t* left) {
    inflate_state state;
    isal_inflate_init(&state);
    state.crc_flag = ISAL_GZIP_NO_HDR_VER;
    std::string out(data.size() + 10, '\0');
    state.next_out = reinterpret_cast<uint8_t*>(out.data());
    state.avail_out = static_cast<uint32_t>(out.size());
    for (size_t offset = 0; offset < input.size(); offset += piece) {
      const size_t n = std::min(piece, input.size() - offset);
      state.next_in = reinterpret_cast<uint8_t*>(const_cast<char*>(input.data() + offset));
      state.avail_in = static_cast<uint32_t>(n);
      const int result = isal_inflate(&state);
      if (result != ISAL_DECOMP_OK) return result;
      if (state.block_state == ISAL_BLOCK_FINISH) {
        *left = input.size() - offset - (n - state.avail_in);
        return ISAL_DECOMP_OK;
      }
    }
    return ISAL_END_INPUT;
  };
  for (size_t piece : {size_t{1}, size_t{3}, size_t{8}, size_t{1000}, body.size() + 5}) {
    size_t left = 0;
    EXPECT_EQ(inflate(body + std::string("\x1f\x8b\x08\x00\x00", 5), piece, &left), ISAL_DECOMP_OK)
        << piece;
    EXPECT_EQ(left, 5u) << piece;
    std::string bad_crc = body;
    bad_crc[bad_crc.size() - 8] = static_cast<char>(bad_crc[bad_crc.size() - 8] ^ 1);
    EXPECT_EQ(inflate(bad_crc, piece, &left), ISAL_INCORRECT_CHECKSUM) << piece;
    std::string bad_size = body;
    bad_size[bad_size.size() - 1] = static_cast<char>(bad_size[bad_size.size() - 1] ^ 1);
    EXPECT_EQ(inflate(bad_size, piece, &left), ISAL_INCORRECT_CHECKSUM) << piece;
  }
}

TEST(DiffIdHasherTest, IsTheDigestOfTheUncompressedBytesWhateverTheCompression) {
  const std::string tar = MixedData(200000);
  const digest::Digest expected = [&] {
    digest::Sha256 hash;
    hash.Update(tar);
    return hash.Finish();
  }();
  const std::string half = tar.substr(0, 100000);
  const std::string rest = tar.substr(100000);
  struct Blob {
    std::string bytes;
    LayerCompression compression;
  };
  for (const Blob& blob : {Blob{tar, LayerCompression::kNone},
                           Blob{GzipMember(half) + GzipMember(rest), LayerCompression::kGzip},
                           Blob{ZstdFrame(half) + ZstdFrame(rest), LayerCompression::kZstd}}) {
    for (size_t piece : {size_t{1}, size_t{3}, size_t{65536}}) {
      DiffIdHasher hasher;
      for (size_t offset = 0; offset < blob.bytes.size(); offset += piece) {
        ASSERT_TRUE(hasher.Update(absl::string_view(blob.bytes).substr(offset, piece)).ok());
      }
      absl::StatusOr<digest::Digest> diff_id = hasher.Finish();
      ASSERT_TRUE(diff_id.ok()) << diff_id.status();
      EXPECT_EQ(*diff_id, expected);
      EXPECT_EQ(hasher.compression(), blob.compression);
    }
  }
}

TEST(DiffIdHasherTest, CorruptOrTruncatedStreamsAreDataLoss) {
  const std::string blob = GzipMember(MixedData(10000));
  std::string bad_crc = blob;
  bad_crc[bad_crc.size() - 6] = static_cast<char>(bad_crc[bad_crc.size() - 6] ^ 1);
  DiffIdHasher hasher;
  absl::Status status = hasher.Update(bad_crc);
  EXPECT_TRUE(absl::IsDataLoss(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("CRC32"));

  DiffIdHasher truncated;
  ASSERT_TRUE(truncated.Update(blob.substr(0, blob.size() / 2)).ok());
  absl::StatusOr<digest::Digest> diff_id = truncated.Finish();
  EXPECT_TRUE(absl::IsDataLoss(diff_id.status())) << diff_id.status();
  EXPECT_THAT(diff_id.status().message(), HasSubstr("truncated"));

  DiffIdHasher trailing;
  ASSERT_TRUE(trailing.Update(blob).ok());
  EXPECT_TRUE(absl::IsDataLoss(trailing.Update("junk"))) << "trailing garbage";
}

}  // namespace
}  // namespace stagefarm::oci
