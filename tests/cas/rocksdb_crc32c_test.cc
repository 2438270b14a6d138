#include "common/cas/rocksdb_crc32c.h"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "common/cas/blob_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/random_blobs.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm::cas {
namespace {

using ::testing::HasSubstr;

uint32_t Crc(const std::string& data) {
  return rocksdb::crc32c::Extend(0, data.data(), data.size());
}

// CRC-32C one bit at a time, straight from its definition: the reference
// that neither the instruction nor the tables share any code with.
uint32_t BitwiseCrc(const std::string& data) {
  uint32_t crc = 0xffffffff;
  for (unsigned char byte : data) {
    crc ^= byte;
    for (int bit = 0; bit < 8; ++bit) crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78 : crc >> 1;
  }
  return ~crc;
}

TEST(RocksDbCrc32cTest, KnownValues) {
  // The check value of the CRC-32C catalogue entry, and RFC 3720's (iSCSI)
  // test vectors of appendix B.4.
  EXPECT_EQ(Crc("123456789"), 0xe3069283u);
  EXPECT_EQ(Crc(""), 0u);
  EXPECT_EQ(Crc(std::string(32, '\0')), 0x8a9136aau);
  EXPECT_EQ(Crc(std::string(32, '\xff')), 0x62a8ab43u);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(Crc(ascending), 0x46dd794eu);
}

TEST(RocksDbCrc32cTest, InstructionTablesAndDefinitionAgreeAtEveryLengthAndAlignment) {
  const std::string data = testing::RandomBytes(7, 4096 + 64);
  for (size_t offset = 0; offset < 16; ++offset) {
    for (size_t length : {0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4096}) {
      const std::string piece = data.substr(offset, length);
      const uint32_t expected = BitwiseCrc(piece);
      EXPECT_EQ(Crc(piece), expected) << "offset " << offset << " length " << length;
      EXPECT_EQ(ExtendCrc32cWithTables(0, piece.data(), piece.size()), expected)
          << "offset " << offset << " length " << length;
    }
  }
}

TEST(RocksDbCrc32cTest, ExtendContinuesACrc) {
  const std::string data = testing::RandomBytes(8, 100000);
  for (size_t split : {0, 1, 8, 13, 4096, 99999, 100000}) {
    const uint32_t first = Crc(data.substr(0, split));
    const std::string rest = data.substr(split);
    EXPECT_EQ(rocksdb::crc32c::Extend(first, rest.data(), rest.size()), Crc(data)) << split;
    EXPECT_EQ(ExtendCrc32cWithTables(first, rest.data(), rest.size()), Crc(data)) << split;
  }
}

TEST(RocksDbCrc32cTest, CombineGivesTheCrcOfTheConcatenation) {
  const std::string data = testing::RandomBytes(9, (1 << 20) + 3);
  for (size_t split :
       {size_t{0}, size_t{1}, size_t{5}, size_t{4096}, size_t{1} << 20, data.size()}) {
    const std::string a = data.substr(0, split);
    const std::string b = data.substr(split);
    EXPECT_EQ(rocksdb::crc32c::Crc32cCombine(Crc(a), Crc(b), b.size()), Crc(data)) << split;
  }
}

TEST(RocksDbCrc32cTest, WhatRocksDbIsToldMatchesTheImplementation) {
  const bool instruction = std::string(Crc32cImplementation()).starts_with("crc32 instruction");
  EXPECT_EQ(rocksdb::crc32c::IsFastCrc32Supported(),
            instruction ? "Supported on x86" : "Not supported on x86");
}

// The store's RocksDB runs on these functions (Debian's librocksdb would
// print its own "Fast CRC32 supported: Not supported on x86"), and its LOG
// says which CRC32C that is.
TEST(RocksDbCrc32cTest, AStoresLogNamesTheCrc32cInUse) {
  testing::TempDir dir("rocksdb-crc32c");
  absl::StatusOr<digest::Digest> blob;
  {
    absl::StatusOr<std::unique_ptr<BlobStore>> store = BlobStore::Open(dir.path() / "store");
    ASSERT_TRUE(store.ok()) << store.status();
    blob = testing::PutRandom(**store, 10, 1 << 20);
    ASSERT_TRUE(blob.ok()) << blob.status();
  }
  std::ifstream log(dir.path() / "store" / "LOG");
  std::stringstream text;
  text << log.rdbuf();
  EXPECT_THAT(text.str(), HasSubstr(std::string("stagefarm: CRC32C by ") + Crc32cImplementation()));
  EXPECT_THAT(text.str(),
              HasSubstr("Fast CRC32 supported: " + rocksdb::crc32c::IsFastCrc32Supported()));
  // A store written with them opens again, its log and tables checked.
  absl::StatusOr<std::unique_ptr<BlobStore>> reopened = BlobStore::Open(dir.path() / "store");
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  absl::StatusOr<std::unique_ptr<BlobReader>> reader = (*reopened)->Get(*blob);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->length(), uint64_t{1} << 20);
}

}  // namespace
}  // namespace stagefarm::cas
