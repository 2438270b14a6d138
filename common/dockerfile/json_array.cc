#include "common/dockerfile/json_array.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <optional>

#include "common/dockerfile/go_text.h"

namespace stagefarm::dockerfile {
namespace {

constexpr int kMaxDepth = 10000;  // encoding/json's maxNestingDepth

bool IsJsonSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// A cursor over the input with the syntax checks of encoding/json's scanner.
class JsonReader {
 public:
  explicit JsonReader(absl::string_view text) : s_(text) {}

  void SkipSpace() {
    while (pos_ < s_.size() && IsJsonSpace(s_[pos_])) ++pos_;
  }
  bool AtEnd() const { return pos_ >= s_.size(); }
  char Peek() const { return s_[pos_]; }
  void Advance() { ++pos_; }

  // Reads a string literal at the cursor (which is on '"'), decoding escapes
  // like Go's unquote: lone surrogates and invalid UTF-8 become U+FFFD.
  // Returns nullopt on a syntax error.
  std::optional<std::string> ReadString() {
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) return std::nullopt;
      const auto c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) return std::nullopt;
      if (c == '\\') {
        if (pos_ + 1 >= s_.size()) return std::nullopt;
        const char e = s_[pos_ + 1];
        pos_ += 2;
        switch (e) {
          case '"':
            out += '"';
            break;
          case '\\':
            out += '\\';
            break;
          case '/':
            out += '/';
            break;
          case 'b':
            out += '\b';
            break;
          case 'f':
            out += '\f';
            break;
          case 'n':
            out += '\n';
            break;
          case 'r':
            out += '\r';
            break;
          case 't':
            out += '\t';
            break;
          case 'u': {
            auto r = ReadHex4();
            if (!r) return std::nullopt;
            char32_t rune = *r;
            if (rune >= 0xD800 && rune < 0xE000) {
              // A high surrogate followed by `\u` + low surrogate is a pair;
              // anything else is a replacement character and the following
              // escape is read on its own.
              std::optional<char32_t> low;
              if (rune < 0xDC00 && pos_ + 1 < s_.size() && s_[pos_] == '\\' &&
                  s_[pos_ + 1] == 'u') {
                const size_t save = pos_;
                pos_ += 2;
                low = ReadHex4();
                if (!low || *low < 0xDC00 || *low >= 0xE000) {
                  if (!low && !ValidHex4At(save + 2)) return std::nullopt;
                  pos_ = save;
                  low.reset();
                }
              }
              rune = low ? 0x10000 + ((rune - 0xD800) << 10) + (*low - 0xDC00) : go::kRuneError;
            }
            go::AppendRune(out, rune);
            break;
          }
          default:
            return std::nullopt;
        }
        continue;
      }
      const go::DecodedRune d = go::DecodeRune(s_.substr(pos_));
      go::AppendRune(out, d.rune);  // invalid bytes become U+FFFD, as in Go
      pos_ += d.width;
    }
  }

  // Skips a number, true, false or null; false on a syntax error. Numbers
  // beyond float64's range fail decoding in the reference (a non-syntax error
  // that still makes the text shell form), reported as `overflow`.
  bool SkipLiteral(bool& overflow) {
    const size_t start = pos_;
    const char c = s_[pos_];
    if (c == 't') return Expect("true");
    if (c == 'f') return Expect("false");
    if (c == 'n') return Expect("null");
    if (c == '-') ++pos_;
    if (pos_ >= s_.size()) return false;
    if (s_[pos_] == '0') {
      ++pos_;
    } else if (s_[pos_] >= '1' && s_[pos_] <= '9') {
      while (pos_ < s_.size() && IsDigit(s_[pos_])) ++pos_;
    } else {
      return false;
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      if (pos_ >= s_.size() || !IsDigit(s_[pos_])) return false;
      while (pos_ < s_.size() && IsDigit(s_[pos_])) ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (pos_ >= s_.size() || !IsDigit(s_[pos_])) return false;
      while (pos_ < s_.size() && IsDigit(s_[pos_])) ++pos_;
    }
    const std::string number(s_.substr(start, pos_ - start));
    errno = 0;
    const double v = std::strtod(number.c_str(), nullptr);
    if (std::isinf(v)) overflow = true;
    return true;
  }

 private:
  static bool IsDigit(char c) { return c >= '0' && c <= '9'; }
  static int HexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  bool ValidHex4At(size_t at) const {
    if (at + 4 > s_.size()) return false;
    for (size_t i = 0; i < 4; ++i) {
      if (HexValue(s_[at + i]) < 0) return false;
    }
    return true;
  }
  std::optional<char32_t> ReadHex4() {
    if (!ValidHex4At(pos_)) return std::nullopt;
    char32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 4) | HexValue(s_[pos_++]);
    return v;
  }
  bool Expect(absl::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  absl::string_view s_;
  size_t pos_ = 0;
};

}  // namespace

JsonArrayResult DecodeJsonStringArray(absl::string_view text) {
  JsonArrayResult result;
  text = go::TrimLeftSpace(text);
  if (text.empty() || text[0] != '[') return result;

  JsonReader r(text);
  // Containers still open: '[' or '{'. For objects, `expect_key` tracks
  // whether the next token is a key.
  std::vector<char> open;
  bool non_string = false;
  bool overflow = false;
  bool expect_value = true;  // after '[' / ',' / ':' a value must follow
  bool expect_key = false;
  bool just_opened = false;  // right after '[' or '{': a closer is allowed

  r.Advance();  // the top-level '['
  open.push_back('[');
  just_opened = true;
  while (!open.empty()) {
    r.SkipSpace();
    if (r.AtEnd()) return {};
    const char c = r.Peek();
    if (just_opened && ((c == ']' && open.back() == '[') || (c == '}' && open.back() == '{'))) {
      r.Advance();
      open.pop_back();
      just_opened = false;
      expect_key = false;  // `{}` closed before any key
      expect_value = false;
      continue;
    }
    just_opened = false;
    if (expect_key) {
      if (c != '"' || !r.ReadString()) return {};
      r.SkipSpace();
      if (r.AtEnd() || r.Peek() != ':') return {};
      r.Advance();
      expect_key = false;
      expect_value = true;
      continue;
    }
    if (expect_value) {
      const bool top_level_element = open.size() == 1;
      if (c == '"') {
        auto s = r.ReadString();
        if (!s) return {};
        if (top_level_element) result.strings.push_back(std::move(*s));
      } else if (c == '[' || c == '{') {
        if (static_cast<int>(open.size()) >= kMaxDepth) return {};
        if (top_level_element) non_string = true;
        r.Advance();
        open.push_back(c);
        just_opened = true;
        expect_key = c == '{';
        expect_value = c == '[';
        continue;
      } else {
        if (!r.SkipLiteral(overflow)) return {};
        if (top_level_element) non_string = true;
      }
      expect_value = false;
      continue;
    }
    // After a value: a separator or the closer of the innermost container.
    if (c == ',') {
      r.Advance();
      if (open.back() == '{') {
        expect_key = true;
      } else {
        expect_value = true;
      }
      continue;
    }
    if ((c == ']' && open.back() == '[') || (c == '}' && open.back() == '{')) {
      r.Advance();
      open.pop_back();
      continue;
    }
    return {};
  }
  // json.Unmarshal validates the whole text first: only JSON whitespace may
  // follow the value.
  r.SkipSpace();
  if (!r.AtEnd()) return {};
  // Decoding into []interface{} fails on float64 overflow before the element
  // types are looked at, so that input is shell form, not an error.
  if (overflow) return {};
  if (non_string) {
    result.strings.clear();
    result.status = JsonArrayStatus::kNonStringArray;
    return result;
  }
  result.status = JsonArrayStatus::kStrings;
  return result;
}

}  // namespace stagefarm::dockerfile
