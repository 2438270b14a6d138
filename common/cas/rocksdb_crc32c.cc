#include "common/cas/rocksdb_crc32c.h"

#include <nmmintrin.h>

#include <array>
#include <cstring>

namespace stagefarm::cas {
namespace {

// CRC-32C's polynomial (Castagnoli), bit-reflected as the crc32 instruction
// and RocksDB use it.
constexpr uint32_t kPolynomial = 0x82f63b78;

constexpr std::array<uint32_t, 256> MakeByteTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t byte = 0; byte < 256; ++byte) {
    uint32_t crc = byte;
    for (int bit = 0; bit < 8; ++bit) crc = crc & 1 ? (crc >> 1) ^ kPolynomial : crc >> 1;
    table[byte] = crc;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kByteTable = MakeByteTable();

// Both take and return the register value (the CRC before its final
// inversion).
uint32_t ExtendWithTable(uint32_t crc, const unsigned char* data, size_t n) {
  for (size_t i = 0; i < n; ++i) crc = kByteTable[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
  return crc;
}

__attribute__((target("sse4.2"))) uint32_t ExtendWithInstruction(uint32_t crc,
                                                                 const unsigned char* data,
                                                                 size_t n) {
  uint64_t wide = crc;
  for (; n >= 8; data += 8, n -= 8) {
    uint64_t word;
    std::memcpy(&word, data, sizeof word);
    wide = _mm_crc32_u64(wide, word);
  }
  crc = static_cast<uint32_t>(wide);
  for (; n > 0; ++data, --n) crc = _mm_crc32_u8(crc, *data);
  return crc;
}

bool HasInstruction() {
  static const bool has = [] {
    __builtin_cpu_init();  // it may be called before the CPU model's constructor ran
    return __builtin_cpu_supports("sse4.2") != 0;
  }();
  return has;
}

// a * b modulo the polynomial, both bit-reflected (x^0 is the top bit).
uint32_t MultiplyModP(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (uint32_t bit = uint32_t{1} << 31; bit != 0; bit >>= 1) {
    if (a & bit) product ^= b;
    b = b & 1 ? (b >> 1) ^ kPolynomial : b >> 1;
  }
  return product;
}

// x^(8 * bytes) modulo the polynomial: appending `bytes` zero bytes to a
// message multiplies its CRC register by this.
uint32_t ShiftByBytes(size_t bytes) {
  uint32_t power = uint32_t{1} << 31;   // x^0
  uint32_t square = uint32_t{1} << 23;  // x^8: one byte
  for (; bytes != 0; bytes >>= 1) {
    if (bytes & 1) power = MultiplyModP(power, square);
    square = MultiplyModP(square, square);
  }
  return power;
}

}  // namespace

const char* Crc32cImplementation() {
  return HasInstruction() ? "crc32 instruction (SSE4.2)" : "lookup tables (no SSE4.2)";
}

uint32_t ExtendCrc32cWithTables(uint32_t init_crc, const char* data, size_t n) {
  return ~ExtendWithTable(~init_crc, reinterpret_cast<const unsigned char*>(data), n);
}

}  // namespace stagefarm::cas

namespace rocksdb::crc32c {

uint32_t Extend(uint32_t init_crc, const char* data, size_t n) {
  if (!stagefarm::cas::HasInstruction()) {
    return stagefarm::cas::ExtendCrc32cWithTables(init_crc, data, n);
  }
  return ~stagefarm::cas::ExtendWithInstruction(~init_crc,
                                                reinterpret_cast<const unsigned char*>(data), n);
}

// CRC(A + B) = CRC(A) * x^(8 |B|) + CRC(B): the inversions at both ends cancel
// out, as in zlib's crc32_combine.
uint32_t Crc32cCombine(uint32_t crc1, uint32_t crc2, size_t crc2len) {
  return stagefarm::cas::MultiplyModP(stagefarm::cas::ShiftByBytes(crc2len), crc1) ^ crc2;
}

std::string IsFastCrc32Supported() {
  return stagefarm::cas::HasInstruction() ? "Supported on x86" : "Not supported on x86";
}

}  // namespace rocksdb::crc32c
