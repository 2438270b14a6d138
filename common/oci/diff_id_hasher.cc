#include "common/oci/diff_id_hasher.h"

#include <zlib.h>
#include <zstd.h>

#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace stagefarm::oci {

class DiffIdHasher::Decoder {
 public:
  Decoder() : buffer_(64 * 1024, '\0') {}
  ~Decoder() {
    if (zlib_started_) inflateEnd(&zlib_);
    ZSTD_freeDStream(zstd_);  // accepts nullptr
  }
  absl::Status Update(absl::string_view bytes) {
    if (!compression_) {
      prefix_.append(bytes.data(), bytes.size());
      if (prefix_.size() < 4) return absl::OkStatus();
      if (absl::Status status = Start(); !status.ok()) return status;
      std::string prefix = std::move(prefix_);
      return Feed(prefix);
    }
    return Feed(bytes);
  }

  absl::StatusOr<digest::Digest> Finish() {
    if (!compression_) {
      if (absl::Status status = Start(); !status.ok()) return status;
      std::string prefix = std::move(prefix_);
      if (absl::Status status = Feed(prefix); !status.ok()) return status;
    }
    if (*compression_ != LayerCompression::kNone && !at_frame_end_) {
      return absl::DataLossError("compressed stream ends early");
    }
    return hash_.Finish();
  }

  LayerCompression compression() const { return compression_.value_or(LayerCompression::kNone); }

 private:
  absl::Status Start() {
    const auto byte = [&](size_t i) {
      return i < prefix_.size() ? static_cast<unsigned char>(prefix_[i]) : 0u;
    };
    if (byte(0) == 0x1f && byte(1) == 0x8b) {
      compression_ = LayerCompression::kGzip;
      if (inflateInit2(&zlib_, 15 + 16) != Z_OK) {
        return absl::ResourceExhaustedError("gzip: inflateInit2 failed");
      }
      zlib_started_ = true;
    } else if (byte(0) == 0x28 && byte(1) == 0xb5 && byte(2) == 0x2f && byte(3) == 0xfd) {
      compression_ = LayerCompression::kZstd;
      zstd_ = ZSTD_createDStream();
      if (zstd_ == nullptr) return absl::ResourceExhaustedError("zstd: ZSTD_createDStream failed");
    } else {
      compression_ = LayerCompression::kNone;
    }
    return absl::OkStatus();
  }

  absl::Status Feed(absl::string_view in) {
    if (in.empty()) return absl::OkStatus();
    if (*compression_ == LayerCompression::kNone) {
      hash_.Update(in);
      return absl::OkStatus();
    }
    if (*compression_ == LayerCompression::kGzip) {
      zlib_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
      zlib_.avail_in = static_cast<uInt>(in.size());
      while (true) {
        if (at_frame_end_) {
          if (zlib_.avail_in == 0) break;
          inflateReset(&zlib_);  // another gzip member follows
          at_frame_end_ = false;
        }
        zlib_.next_out = reinterpret_cast<Bytef*>(buffer_.data());
        zlib_.avail_out = static_cast<uInt>(buffer_.size());
        const int result = inflate(&zlib_, Z_NO_FLUSH);
        if (result != Z_OK && result != Z_STREAM_END && result != Z_BUF_ERROR) {
          return absl::DataLossError(
              absl::StrCat("gzip: ", zlib_.msg != nullptr ? zlib_.msg : "corrupt stream"));
        }
        hash_.Update(absl::string_view(buffer_.data(), buffer_.size() - zlib_.avail_out));
        at_frame_end_ = result == Z_STREAM_END;
        // Done with this input once it is consumed and the output had room to spare.
        if (result == Z_BUF_ERROR || (zlib_.avail_in == 0 && zlib_.avail_out != 0)) break;
      }
      return absl::OkStatus();
    }
    ZSTD_inBuffer input{in.data(), in.size(), 0};
    while (true) {
      ZSTD_outBuffer output{buffer_.data(), buffer_.size(), 0};
      const size_t result = ZSTD_decompressStream(zstd_, &output, &input);
      if (ZSTD_isError(result)) {
        return absl::DataLossError(absl::StrCat("zstd: ", ZSTD_getErrorName(result)));
      }
      hash_.Update(absl::string_view(buffer_.data(), output.pos));
      at_frame_end_ = result == 0;
      if (input.pos == input.size && output.pos < output.size) break;
    }
    return absl::OkStatus();
  }

  std::optional<LayerCompression> compression_;  // known after 4 bytes
  std::string prefix_;
  std::string buffer_;
  z_stream zlib_{};
  bool zlib_started_ = false;
  ZSTD_DStream* zstd_ = nullptr;
  bool at_frame_end_ = false;
  digest::Sha256 hash_;
};

DiffIdHasher::DiffIdHasher() : decoder_(std::make_unique<Decoder>()) {}
DiffIdHasher::~DiffIdHasher() = default;

absl::Status DiffIdHasher::Update(absl::string_view bytes) { return decoder_->Update(bytes); }

absl::StatusOr<digest::Digest> DiffIdHasher::Finish() { return decoder_->Finish(); }

LayerCompression DiffIdHasher::compression() const { return decoder_->compression(); }

}  // namespace stagefarm::oci
