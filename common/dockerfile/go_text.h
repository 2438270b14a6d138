// Text primitives with the exact semantics of the Go standard library
// functions the reference parser is built on (unicode.IsSpace, utf8 decoding,
// strings.TrimSpace, strconv.Quote). Byte-for-byte fidelity of the AST dump and
// of word splitting depends on these edge cases (invalid UTF-8, U+0085, U+00A0).
#pragma once

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace stagefarm::dockerfile::go {

inline constexpr char32_t kRuneError = 0xFFFD;
inline constexpr char32_t kMaxRune = 0x10FFFF;
inline constexpr absl::string_view kByteOrderMark = "\xEF\xBB\xBF";

struct DecodedRune {
  char32_t rune;
  int width;  // bytes consumed; 1 for an invalid byte (rune is then kRuneError)
};

// utf8.DecodeRuneInString: the first rune of `s` (which must be non-empty).
// Invalid encodings, overlongs, surrogates and values past U+10FFFF decode as
// {kRuneError, 1}.
DecodedRune DecodeRune(absl::string_view s);

// utf8.DecodeLastRuneInString: the last rune of `s` (non-empty); {kRuneError,
// 1} when the tail is not a complete valid encoding.
DecodedRune DecodeLastRune(absl::string_view s);

// Appends the UTF-8 encoding of `r` (Go's string(rune)): invalid code points
// become U+FFFD.
void AppendRune(std::string& out, char32_t r);

// unicode.IsSpace.
bool IsSpace(char32_t r);

// unicode.IsPrint / strconv.IsPrint: categories L, M, N, P, S and U+0020.
bool IsPrint(char32_t r);

// strings.TrimSpace / TrimLeftFunc(IsSpace) / TrimRightFunc(IsSpace), decoding
// UTF-8 (an invalid byte is never space).
absl::string_view TrimSpace(absl::string_view s);
absl::string_view TrimLeftSpace(absl::string_view s);
absl::string_view TrimRightSpace(absl::string_view s);

// strings.ToLower: Unicode simple lowercase mapping; when the input is not all
// ASCII, invalid UTF-8 bytes are replaced by U+FFFD as Go's strings.Map does.
std::string ToLower(absl::string_view s);

// strconv.Quote: a double-quoted Go string literal.
std::string Quote(absl::string_view s);
void AppendQuoted(std::string& out, absl::string_view s);

// strconv.QuoteRune (fmt's %q of an integer): a single-quoted Go rune literal;
// values that are not Unicode scalar values quote U+FFFD.
std::string QuoteRune(int64_t value);

}  // namespace stagefarm::dockerfile::go
