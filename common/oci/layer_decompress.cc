#include "common/oci/layer_decompress.h"

#include <isa-l/crc.h>
#include <isa-l/igzip_lib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace stagefarm::oci {
namespace {

// RFC 1952 header flags.
constexpr uint8_t kFlagHeaderCrc = 0x02;
constexpr uint8_t kFlagExtra = 0x04;
constexpr uint8_t kFlagName = 0x08;
constexpr uint8_t kFlagComment = 0x10;
constexpr uint8_t kFlagsReserved = 0xe0;
constexpr uint8_t kMethodDeflate = 8;
constexpr size_t kFixedHeaderSize = 10;
constexpr size_t kTrailerSize = 8;

// ISA-L and libzstd count in 32-bit and size_t lengths; a piece larger than
// the former is taken in several steps.
constexpr size_t kMaxStep = std::numeric_limits<uint32_t>::max();

uint32_t LoadLittleEndian32(const uint8_t* bytes) {
  return static_cast<uint32_t>(bytes[0]) | static_cast<uint32_t>(bytes[1]) << 8 |
         static_cast<uint32_t>(bytes[2]) << 16 | static_cast<uint32_t>(bytes[3]) << 24;
}

const char* InflateErrorName(int result) {
  switch (result) {
    case ISAL_INVALID_BLOCK:
      return "invalid block";
    case ISAL_INVALID_SYMBOL:
      return "invalid code";
    case ISAL_INVALID_LOOKBACK:
      return "distance too far back";
    default:
      return "corrupt data";
  }
}

}  // namespace

LayerCompression DetectLayerCompression(absl::string_view first_bytes) {
  const auto byte = [&](size_t i) {
    return i < first_bytes.size() ? static_cast<unsigned char>(first_bytes[i]) : 0u;
  };
  if (byte(0) == 0x1f && byte(1) == 0x8b) return LayerCompression::kGzip;
  if (byte(0) == 0x28 && byte(1) == 0xb5 && byte(2) == 0x2f && byte(3) == 0xfd) {
    return LayerCompression::kZstd;
  }
  return LayerCompression::kNone;
}

// Gzip members one after another. ISA-L inflates the deflate data and checks
// each member's trailer (ISAL_GZIP_NO_HDR_VER: CRC32 and ISIZE, input
// consumed up to the trailer's end and no further); the header is parsed
// here, because isal_inflate's own parsing (ISAL_GZIP, ISA-L 2.30) loses the
// header's flags when a header with optional fields arrives in more than one
// piece, and then fails or misreads the member.
class LayerDecompressor::Gzip {
 public:
  Gzip() {
    isal_inflate_init(&inflate_);
    inflate_.crc_flag = ISAL_GZIP_NO_HDR_VER;
  }

  absl::StatusOr<size_t> Decompress(absl::string_view* in, absl::Span<char> out) {
    size_t written = 0;
    while (true) {
      if (stage_ == Stage::kBetweenMembers) {
        if (in->empty()) return written;
        StartMember();
      }
      if (stage_ == Stage::kHeader) {
        absl::StatusOr<bool> header = ReadHeader(in);
        if (!header.ok()) return header.status();
        if (!*header) return written;  // `in` is used up
        isal_inflate_reset(&inflate_);
        stage_ = Stage::kDeflate;
      }
      if (written == out.size()) return written;
      const size_t in_step = std::min(in->size(), kMaxStep);
      const size_t out_step = std::min(out.size() - written, kMaxStep);
      // ISA-L does not write through next_in; an empty piece still needs a pointer.
      inflate_.next_in = reinterpret_cast<uint8_t*>(
          const_cast<char*>(in->empty() ? reinterpret_cast<const char*>(tail_) : in->data()));
      inflate_.avail_in = static_cast<uint32_t>(in_step);
      inflate_.next_out = reinterpret_cast<uint8_t*>(out.data() + written);
      inflate_.avail_out = static_cast<uint32_t>(out_step);
      const int result = isal_inflate(&inflate_);
      if (inflate_.avail_in > in_step || inflate_.avail_out > out_step) {
        // After some errors (seen: ISAL_INVALID_LOOKBACK on hostile input)
        // ISA-L's counts claim more input than it was given.
        return Corrupt(absl::StrCat("corrupt deflate data (", InflateErrorName(result),
                                    ") near byte ", consumed_));
      }
      const size_t used = in_step - inflate_.avail_in;
      const size_t produced = out_step - inflate_.avail_out;
      KeepTail(in->substr(0, used));
      in->remove_prefix(used);
      consumed_ += used;
      written += produced;
      member_size_ += produced;
      if (result == ISAL_INCORRECT_CHECKSUM) return TrailerMismatch();
      if (result != ISAL_DECOMP_OK) {
        return Corrupt(absl::StrCat("corrupt deflate data (", InflateErrorName(result),
                                    ") near byte ", consumed_));
      }
      if (inflate_.block_state == ISAL_BLOCK_FINISH) {
        stage_ = Stage::kBetweenMembers;
        continue;
      }
      if (used == 0 && produced == 0) {
        if (in->empty()) return written;
        // Input and room both offered and neither taken: stop rather than spin.
        return Corrupt(absl::StrCat("inflate made no progress at byte ", consumed_));
      }
    }
  }

  absl::Status Finish() const {
    if (stage_ == Stage::kBetweenMembers) return absl::OkStatus();
    absl::string_view where = "header";
    if (stage_ == Stage::kDeflate) {
      where = inflate_.block_state == ISAL_BLOCK_INPUT_DONE ||
                      inflate_.block_state == ISAL_CHECKSUM_CHECK
                  ? "trailer"
                  : "deflate data";
    }
    return absl::DataLossError(absl::StrCat("gzip: truncated: the stream ends at byte ", consumed_,
                                            ", inside the ", where, " of member ", member_,
                                            " (which starts at byte ", member_start_, ")"));
  }

 private:
  enum class Stage { kHeader, kDeflate, kBetweenMembers };
  // The parts of a member's header, in their order; only kFixed is always there.
  enum class Field { kFixed, kExtraLength, kExtra, kName, kComment, kHeaderCrc, kDone };

  void StartMember() {
    ++member_;
    member_start_ = consumed_;
    member_size_ = 0;
    stage_ = Stage::kHeader;
    field_ = Field::kFixed;
    have_ = 0;
    header_crc_ = 0;
  }

  absl::Status Corrupt(absl::string_view what) const {
    return absl::DataLossError(
        absl::StrCat("gzip: member ", member_, " (at byte ", member_start_, "): ", what));
  }

  // The field after `field` that this member's flags say is present.
  Field After(Field field) const {
    switch (field) {
      case Field::kFixed:
        if (flags_ & kFlagExtra) return Field::kExtraLength;
        [[fallthrough]];
      case Field::kExtraLength:
      case Field::kExtra:
        if (flags_ & kFlagName) return Field::kName;
        [[fallthrough]];
      case Field::kName:
        if (flags_ & kFlagComment) return Field::kComment;
        [[fallthrough]];
      case Field::kComment:
        if (flags_ & kFlagHeaderCrc) return Field::kHeaderCrc;
        [[fallthrough]];
      default:
        return Field::kDone;
    }
  }

  // Takes `n` bytes of header from the front of `*in`; all but the header
  // CRC itself count towards it.
  void Take(absl::string_view* in, size_t n) {
    if (field_ != Field::kHeaderCrc) {
      header_crc_ =
          crc32_gzip_refl(header_crc_, reinterpret_cast<const unsigned char*>(in->data()), n);
    }
    in->remove_prefix(n);
    consumed_ += n;
  }

  // Copies bytes of a fixed-size field into fixed_ until it holds `size`.
  bool Gather(absl::string_view* in, size_t size) {
    const size_t n = std::min(size - have_, in->size());
    std::memcpy(fixed_ + have_, in->data(), n);
    have_ += n;
    Take(in, n);
    return have_ == size;
  }

  // Reads the member's header from `*in`: true once it is complete, false
  // when `*in` is used up first.
  absl::StatusOr<bool> ReadHeader(absl::string_view* in) {
    while (field_ != Field::kDone) {
      if (in->empty()) return false;
      switch (field_) {
        case Field::kFixed: {
          const size_t before = have_;
          const bool complete = Gather(in, kFixedHeaderSize);
          // Checked as the bytes come, so that a few stray bytes after the
          // last member are named for what they are.
          if ((before < 1 && have_ >= 1 && fixed_[0] != 0x1f) ||
              (before < 2 && have_ >= 2 && fixed_[1] != 0x8b)) {
            if (member_ > 1) {
              return absl::DataLossError(absl::StrCat("gzip: trailing garbage at byte ",
                                                      member_start_, ", after member ", member_ - 1,
                                                      " (not a gzip header)"));
            }
            return Corrupt("not a gzip header");
          }
          if (before < 3 && have_ >= 3 && fixed_[2] != kMethodDeflate) {
            return Corrupt(absl::StrCat("compression method ", static_cast<int>(fixed_[2]),
                                        ", not deflate (8)"));
          }
          if (before < 4 && have_ >= 4 && (fixed_[3] & kFlagsReserved) != 0) {
            return Corrupt(absl::StrFormat("reserved header flags set (0x%02x)", fixed_[3]));
          }
          if (!complete) break;
          flags_ = fixed_[3];
          have_ = 0;
          field_ = After(Field::kFixed);
          break;
        }
        case Field::kExtraLength:
          if (!Gather(in, 2)) break;
          extra_left_ = static_cast<uint32_t>(fixed_[0]) | static_cast<uint32_t>(fixed_[1]) << 8;
          have_ = 0;
          field_ = Field::kExtra;
          break;
        case Field::kExtra: {
          const size_t n = std::min<size_t>(extra_left_, in->size());
          Take(in, n);
          extra_left_ -= static_cast<uint32_t>(n);
          if (extra_left_ == 0) field_ = After(Field::kExtra);
          break;
        }
        case Field::kName:
        case Field::kComment: {
          // Zero-terminated, of any length: skipped, never kept.
          const size_t end = in->find('\0');
          Take(in, end == absl::string_view::npos ? in->size() : end + 1);
          if (end != absl::string_view::npos) field_ = After(field_);
          break;
        }
        case Field::kHeaderCrc: {
          if (!Gather(in, 2)) break;
          const uint32_t stored =
              static_cast<uint32_t>(fixed_[0]) | static_cast<uint32_t>(fixed_[1]) << 8;
          if (stored != (header_crc_ & 0xffff)) {
            return Corrupt(absl::StrFormat("header CRC is 0x%04x, the header says 0x%04x",
                                           header_crc_ & 0xffff, stored));
          }
          have_ = 0;
          field_ = Field::kDone;
          break;
        }
        case Field::kDone:
          break;
      }
    }
    return true;
  }

  // The last kTrailerSize bytes consumed: once ISA-L has checked a
  // trailer, the trailer itself, to say which half of it is wrong.
  void KeepTail(absl::string_view used) {
    const size_t n = std::min(used.size(), kTrailerSize);
    if (n == 0) return;
    std::memmove(tail_, tail_ + n, kTrailerSize - n);
    std::memcpy(tail_ + kTrailerSize - n, used.data() + used.size() - n, n);
  }

  absl::Status TrailerMismatch() const {
    const uint32_t crc = LoadLittleEndian32(tail_);
    const uint32_t size = LoadLittleEndian32(tail_ + 4);
    if (crc != inflate_.crc) {
      return Corrupt(absl::StrFormat("CRC32 of the data is 0x%08x, the trailer says 0x%08x",
                                     inflate_.crc, crc));
    }
    if (size != static_cast<uint32_t>(member_size_)) {
      return Corrupt(absl::StrCat("the data is ", member_size_, " bytes, the trailer's ISIZE says ",
                                  size, " (mod 2^32)"));
    }
    return Corrupt("trailer does not match the data");
  }

  inflate_state inflate_{};
  Stage stage_ = Stage::kHeader;
  Field field_ = Field::kFixed;
  uint8_t fixed_[kFixedHeaderSize] = {};
  size_t have_ = 0;  // bytes in fixed_
  uint8_t flags_ = 0;
  uint32_t extra_left_ = 0;
  uint32_t header_crc_ = 0;
  uint8_t tail_[kTrailerSize] = {};
  uint64_t member_ = 1;  // counted from 1
  uint64_t member_start_ = 0;
  uint64_t member_size_ = 0;  // decompressed bytes of this member so far
  uint64_t consumed_ = 0;
};

// Zstd frames one after another, as ZSTD_decompressStream reads them.
class LayerDecompressor::Zstd {
 public:
  Zstd() : stream_(ZSTD_createDStream()) {}
  ~Zstd() { ZSTD_freeDStream(stream_); }
  Zstd(const Zstd&) = delete;
  Zstd& operator=(const Zstd&) = delete;

  absl::StatusOr<size_t> Decompress(absl::string_view* in, absl::Span<char> out) {
    if (stream_ == nullptr) return absl::ResourceExhaustedError("zstd: ZSTD_createDStream failed");
    ZSTD_inBuffer input{in->data(), std::min(in->size(), kMaxStep), 0};
    ZSTD_outBuffer output{out.data(), out.size(), 0};
    absl::Status status = absl::OkStatus();
    while (output.pos < output.size && (input.pos < input.size || pending_)) {
      const size_t in_before = input.pos;
      const size_t out_before = output.pos;
      const size_t result = ZSTD_decompressStream(stream_, &output, &input);
      if (ZSTD_isError(result)) {
        if (frame_end_ && ZSTD_getErrorCode(result) == ZSTD_error_prefix_unknown) {
          status =
              absl::DataLossError(absl::StrCat("zstd: trailing garbage at byte ", frame_start_,
                                               ", after frame ", frames_, " (not a zstd frame)"));
        } else {
          status = absl::DataLossError(absl::StrCat("zstd: frame ", frames_ + 1, " (at byte ",
                                                    frame_start_, "): ", ZSTD_getErrorName(result),
                                                    " near byte ", consumed_ + input.pos));
        }
        break;
      }
      pending_ = output.pos == output.size;
      const bool progress = input.pos != in_before || output.pos != out_before;
      if (result == 0) {
        if (progress) {
          ++frames_;
          frame_start_ = consumed_ + input.pos;
        }
        frame_end_ = true;
      } else if (progress) {
        frame_end_ = false;
      } else if (input.pos < input.size) {
        // Input and room both offered and neither taken: stop rather than spin.
        status = absl::DataLossError(absl::StrCat("zstd: no progress at byte ", consumed_));
        break;
      } else {
        break;
      }
    }
    in->remove_prefix(input.pos);
    consumed_ += input.pos;
    if (!status.ok()) return status;
    return output.pos;
  }

  absl::Status Finish() const {
    if (frame_end_) return absl::OkStatus();
    return absl::DataLossError(absl::StrCat("zstd: truncated: the stream ends at byte ", consumed_,
                                            ", inside frame ", frames_ + 1,
                                            " (which starts at byte ", frame_start_, ")"));
  }

 private:
  ZSTD_DStream* stream_;
  bool frame_end_ = false;    // the last frame read is complete and flushed
  bool pending_ = false;      // the last call filled the output: more may be waiting
  uint64_t frames_ = 0;       // complete frames
  uint64_t frame_start_ = 0;  // where the frame after them starts
  uint64_t consumed_ = 0;
};

LayerDecompressor::LayerDecompressor(LayerCompression compression) : compression_(compression) {
  if (compression == LayerCompression::kGzip) gzip_ = std::make_unique<Gzip>();
  if (compression == LayerCompression::kZstd) zstd_ = std::make_unique<Zstd>();
}

LayerDecompressor::~LayerDecompressor() = default;

absl::StatusOr<size_t> LayerDecompressor::Decompress(absl::string_view* in, absl::Span<char> out) {
  if (gzip_ != nullptr) return gzip_->Decompress(in, out);
  if (zstd_ != nullptr) return zstd_->Decompress(in, out);
  const size_t n = std::min(in->size(), out.size());
  std::memcpy(out.data(), in->data(), n);
  in->remove_prefix(n);
  return n;
}

absl::Status LayerDecompressor::Finish() const {
  if (gzip_ != nullptr) return gzip_->Finish();
  if (zstd_ != nullptr) return zstd_->Finish();
  return absl::OkStatus();
}

}  // namespace stagefarm::oci
