#include "tests/testing/compressed_blobs.h"

#include <zlib.h>
#include <zstd.h>

#include <cstdio>
#include <cstdlib>

namespace stagefarm::testing {
namespace {

void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "compressed_blobs: %s failed\n", what);
  std::abort();
}

}  // namespace

std::string GzipMember(absl::string_view data, int level, const GzipFields* fields) {
  z_stream z{};
  Check(deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK,
        "deflateInit2");
  gz_header header{};
  std::string extra;
  if (fields != nullptr) {
    extra = fields->extra;
    header.extra = extra.empty() ? nullptr : reinterpret_cast<Bytef*>(extra.data());
    header.extra_len = static_cast<uInt>(extra.size());
    header.name = fields->name.empty()
                      ? nullptr
                      : reinterpret_cast<Bytef*>(const_cast<char*>(fields->name.c_str()));
    header.comment = fields->comment.empty()
                         ? nullptr
                         : reinterpret_cast<Bytef*>(const_cast<char*>(fields->comment.c_str()));
    header.hcrc = fields->header_crc ? 1 : 0;
    Check(deflateSetHeader(&z, &header) == Z_OK, "deflateSetHeader");
  }
  std::string out(deflateBound(&z, data.size()) + 1024, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  Check(deflate(&z, Z_FINISH) == Z_STREAM_END, "deflate");
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string ZstdFrame(absl::string_view data) {
  ZSTD_CCtx* context = ZSTD_createCCtx();
  Check(context != nullptr, "ZSTD_createCCtx");
  ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, 3);
  ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1);
  std::string out(ZSTD_compressBound(data.size()), '\0');
  const size_t n = ZSTD_compress2(context, out.data(), out.size(), data.data(), data.size());
  ZSTD_freeCCtx(context);
  Check(!ZSTD_isError(n), "ZSTD_compress2");
  out.resize(n);
  return out;
}

}  // namespace stagefarm::testing
