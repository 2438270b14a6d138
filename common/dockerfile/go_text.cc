#include "common/dockerfile/go_text.h"

#include <algorithm>
#include <cstdint>
#include <iterator>

namespace stagefarm::dockerfile::go {
namespace {

struct RuneRange {
  char32_t first;
  char32_t last;
};

constexpr RuneRange kPrintRanges[] = {
#include "common/dockerfile/print_table.inc"
};

struct RuneMapping {
  char32_t from;
  char32_t to;
};

constexpr RuneMapping kLowerMappings[] = {
#include "common/dockerfile/lower_table.inc"
};

char32_t LowerRune(char32_t r) {
  if (r < 0x80) return (r >= 'A' && r <= 'Z') ? r + ('a' - 'A') : r;
  const auto* end = std::end(kLowerMappings);
  const auto* it = std::lower_bound(std::begin(kLowerMappings), end, r,
                                    [](const RuneMapping& m, char32_t v) { return m.from < v; });
  return (it != end && it->from == r) ? it->to : r;
}

constexpr char kHex[] = "0123456789abcdef";

void AppendHex(std::string& out, uint32_t value, int digits) {
  for (int shift = (digits - 1) * 4; shift >= 0; shift -= 4) out += kHex[(value >> shift) & 0xF];
}

}  // namespace

DecodedRune DecodeRune(absl::string_view s) {
  const auto b0 = static_cast<unsigned char>(s[0]);
  if (b0 < 0x80) return {b0, 1};
  auto cont = [&](size_t i) {
    return i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80;
  };
  auto at = [&](size_t i) {
    return static_cast<char32_t>(static_cast<unsigned char>(s[i]) & 0x3F);
  };
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (!cont(1)) return {kRuneError, 1};
    return {(static_cast<char32_t>(b0 & 0x1F) << 6) | at(1), 2};
  }
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (!cont(1) || !cont(2)) return {kRuneError, 1};
    const auto b1 = static_cast<unsigned char>(s[1]);
    if (b0 == 0xE0 && b1 < 0xA0) return {kRuneError, 1};   // overlong
    if (b0 == 0xED && b1 >= 0xA0) return {kRuneError, 1};  // surrogate
    return {(static_cast<char32_t>(b0 & 0x0F) << 12) | (at(1) << 6) | at(2), 3};
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return {kRuneError, 1};
    const auto b1 = static_cast<unsigned char>(s[1]);
    if (b0 == 0xF0 && b1 < 0x90) return {kRuneError, 1};   // overlong
    if (b0 == 0xF4 && b1 >= 0x90) return {kRuneError, 1};  // past U+10FFFF
    return {(static_cast<char32_t>(b0 & 0x07) << 18) | (at(1) << 12) | (at(2) << 6) | at(3), 4};
  }
  return {kRuneError, 1};
}

DecodedRune DecodeLastRune(absl::string_view s) {
  size_t start = s.size() - 1;
  const size_t limit = s.size() >= 4 ? s.size() - 4 : 0;
  while (start > limit && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  const DecodedRune d = DecodeRune(s.substr(start));
  if (start + d.width != s.size()) return {kRuneError, 1};
  return d;
}

void AppendRune(std::string& out, char32_t r) {
  if (r > 0x10FFFF || (r >= 0xD800 && r <= 0xDFFF)) r = kRuneError;
  if (r < 0x80) {
    out += static_cast<char>(r);
  } else if (r < 0x800) {
    out += static_cast<char>(0xC0 | (r >> 6));
    out += static_cast<char>(0x80 | (r & 0x3F));
  } else if (r < 0x10000) {
    out += static_cast<char>(0xE0 | (r >> 12));
    out += static_cast<char>(0x80 | ((r >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (r & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (r >> 18));
    out += static_cast<char>(0x80 | ((r >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((r >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (r & 0x3F));
  }
}

bool IsSpace(char32_t r) {
  if (r <= 0xFF) {
    return r == ' ' || (r >= '\t' && r <= '\r') || r == 0x85 || r == 0xA0;
  }
  return r == 0x1680 || (r >= 0x2000 && r <= 0x200A) || r == 0x2028 || r == 0x2029 || r == 0x202F ||
         r == 0x205F || r == 0x3000;
}

bool IsPrint(char32_t r) {
  const auto* end = std::end(kPrintRanges);
  const auto* it =
      std::upper_bound(std::begin(kPrintRanges), end, r,
                       [](char32_t v, const RuneRange& range) { return v < range.first; });
  if (it == std::begin(kPrintRanges)) return false;
  --it;
  return r <= it->last;
}

absl::string_view TrimLeftSpace(absl::string_view s) {
  while (!s.empty()) {
    const DecodedRune d = DecodeRune(s);
    if (d.width == 1 && d.rune == kRuneError) break;
    if (!IsSpace(d.rune)) break;
    s.remove_prefix(d.width);
  }
  return s;
}

absl::string_view TrimRightSpace(absl::string_view s) {
  while (!s.empty()) {
    const DecodedRune d = DecodeLastRune(s);
    if ((d.width == 1 && d.rune == kRuneError) || !IsSpace(d.rune)) break;
    s.remove_suffix(d.width);
  }
  return s;
}

absl::string_view TrimSpace(absl::string_view s) { return TrimRightSpace(TrimLeftSpace(s)); }

std::string ToLower(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  const bool ascii =
      std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  if (ascii) {
    for (char c : s) out += (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
    return out;
  }
  while (!s.empty()) {
    const DecodedRune d = DecodeRune(s);
    AppendRune(out, LowerRune(d.rune));
    s.remove_prefix(d.width);
  }
  return out;
}

namespace {

// strconv's appendEscapedRune: `r` as it appears inside a literal quoted
// with `quote`.
void AppendEscapedRune(std::string& out, char32_t r, char quote) {
  if (r == static_cast<char32_t>(quote) || r == '\\') {
    out += '\\';
    out += static_cast<char>(r);
    return;
  }
  if (IsPrint(r)) {
    AppendRune(out, r);
    return;
  }
  switch (r) {
    case '\a':
      out += "\\a";
      break;
    case '\b':
      out += "\\b";
      break;
    case '\f':
      out += "\\f";
      break;
    case '\n':
      out += "\\n";
      break;
    case '\r':
      out += "\\r";
      break;
    case '\t':
      out += "\\t";
      break;
    case '\v':
      out += "\\v";
      break;
    default:
      if (r < ' ' || r == 0x7F) {
        out += "\\x";
        AppendHex(out, r, 2);
      } else if (r < 0x10000) {
        out += "\\u";
        AppendHex(out, r, 4);
      } else {
        out += "\\U";
        AppendHex(out, r, 8);
      }
  }
}

}  // namespace

void AppendQuoted(std::string& out, absl::string_view s) {
  out += '"';
  while (!s.empty()) {
    const DecodedRune d = DecodeRune(s);
    if (d.width == 1 && d.rune == kRuneError) {
      out += "\\x";
      AppendHex(out, static_cast<unsigned char>(s[0]), 2);
      s.remove_prefix(1);
      continue;
    }
    s.remove_prefix(d.width);
    AppendEscapedRune(out, d.rune, '"');
  }
  out += '"';
}

std::string QuoteRune(int64_t value) {
  const char32_t r = value < 0 || value > kMaxRune || (value >= 0xD800 && value <= 0xDFFF)
                         ? kRuneError
                         : static_cast<char32_t>(value);
  std::string out = "'";
  AppendEscapedRune(out, r, '\'');
  return out + "'";
}

std::string Quote(absl::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  AppendQuoted(out, s);
  return out;
}

}  // namespace stagefarm::dockerfile::go
