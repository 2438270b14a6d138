#include "common/oci/diff_id_hasher.h"

#include <optional>
#include <string>
#include <utility>

#include "absl/types/span.h"
#include "common/oci/layer_decompress.h"

namespace stagefarm::oci {

class DiffIdHasher::Decoder {
 public:
  absl::Status Update(absl::string_view bytes) {
    if (!compression_) {
      prefix_.append(bytes.data(), bytes.size());
      if (prefix_.size() < 4) return absl::OkStatus();
      Start();
      std::string prefix = std::move(prefix_);
      return Feed(prefix);
    }
    return Feed(bytes);
  }

  absl::StatusOr<digest::Digest> Finish() {
    if (!compression_) {
      Start();
      std::string prefix = std::move(prefix_);
      if (absl::Status status = Feed(prefix); !status.ok()) return status;
    }
    if (decompressor_) {
      if (absl::Status status = decompressor_->Finish(); !status.ok()) return status;
    }
    return hash_.Finish();
  }

  LayerCompression compression() const { return compression_.value_or(LayerCompression::kNone); }

 private:
  void Start() {
    compression_ = DetectLayerCompression(prefix_);
    if (*compression_ != LayerCompression::kNone) {
      decompressor_.emplace(*compression_);
      buffer_.resize(kBufferSize);
    }
  }

  absl::Status Feed(absl::string_view in) {
    if (!decompressor_) {
      hash_.Update(in);
      return absl::OkStatus();
    }
    absl::StatusOr<size_t> n = 0;
    // Until the input is used up and the decompressor has nothing more to give.
    while (!in.empty() || *n == buffer_.size()) {
      n = decompressor_->Decompress(&in, absl::MakeSpan(buffer_));
      if (!n.ok()) return n.status();
      hash_.Update(absl::string_view(buffer_.data(), *n));
    }
    return absl::OkStatus();
  }

  static constexpr size_t kBufferSize = 256 * 1024;

  std::optional<LayerCompression> compression_;  // known after 4 bytes
  std::string prefix_;
  std::optional<LayerDecompressor> decompressor_;  // for gzip and zstd
  std::string buffer_;
  digest::Sha256 hash_;
};

DiffIdHasher::DiffIdHasher() : decoder_(std::make_unique<Decoder>()) {}
DiffIdHasher::~DiffIdHasher() = default;

absl::Status DiffIdHasher::Update(absl::string_view bytes) { return decoder_->Update(bytes); }

absl::StatusOr<digest::Digest> DiffIdHasher::Finish() { return decoder_->Finish(); }

LayerCompression DiffIdHasher::compression() const { return decoder_->compression(); }

}  // namespace stagefarm::oci
