#include "common/dockerfile/dockerignore.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <iterator>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/dockerfile/go_text.h"

namespace stagefarm::dockerfile {
namespace {

using go::kByteOrderMark;
using go::kMaxRune;
using go::kRuneError;
using go::TrimSpace;

// ---------------------------------------------------------------------------
// Paths.

// Whether CleanPath(path) == path, without building the cleaned path.
bool IsClean(absl::string_view path) {
  if (path == "/" || path == ".") return true;
  if (path.empty() || path.back() == '/') return false;
  const bool rooted = path[0] == '/';
  if (rooted) path.remove_prefix(1);
  bool leading_dot_dots = !rooted;  // a relative path keeps the `..` it starts with
  for (size_t start = 0; start <= path.size();) {
    size_t end = path.find('/', start);
    if (end == absl::string_view::npos) end = path.size();
    const absl::string_view element = path.substr(start, end - start);
    if (element.empty() || element == ".") return false;
    if (element == "..") {
      if (!leading_dot_dots) return false;
    } else {
      leading_dot_dots = false;
    }
    start = end + 1;
  }
  return true;
}

// Go's filepath.Dir: CleanPath of everything before the last slash ("." when
// there is no slash). A view into `path` when that is already clean, else into
// `*storage`.
absl::string_view ParentDir(absl::string_view path, std::string* storage) {
  const size_t slash = path.rfind('/');
  if (slash == absl::string_view::npos) return ".";
  if (slash == 0) return "/";
  const absl::string_view dir = path.substr(0, slash);
  if (IsClean(dir)) return dir;
  *storage = CleanPath(dir);
  return *storage;
}

// The first `count` slash-separated elements of `path` (which has at least
// that many), joined as they are in `path`.
absl::string_view FirstElements(absl::string_view path, size_t count) {
  size_t end = 0;
  for (size_t seen = 0; seen < count; ++seen) {
    end = path.find('/', seen == 0 ? 0 : end + 1);
    if (end == absl::string_view::npos) return path;
  }
  return path.substr(0, end);
}

// ---------------------------------------------------------------------------
// Go's filepath.Match, as a chunk scanner: a pattern is a sequence of chunks,
// each optionally preceded by stars.

absl::Status BadPattern() { return absl::InvalidArgumentError("syntax error in pattern"); }

struct Chunk {
  bool star;
  absl::string_view text;
  absl::string_view rest;
};

Chunk ScanChunk(absl::string_view pattern) {
  bool star = false;
  while (!pattern.empty() && pattern[0] == '*') {
    pattern.remove_prefix(1);
    star = true;
  }
  bool in_class = false;
  size_t i = 0;
  for (; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\') {
      if (i + 1 < pattern.size()) ++i;  // a trailing `\` is reported by MatchChunk
    } else if (c == '[') {
      in_class = true;
    } else if (c == ']') {
      in_class = false;
    } else if (c == '*' && !in_class) {
      break;
    }
  }
  return {star, pattern.substr(0, i), pattern.substr(i)};
}

enum class ChunkResult { kMatch, kNoMatch, kBadPattern };

// One character of a `[...]` class in a glob: false when malformed (missing,
// `-` or `]`, a lone trailing `\`, not UTF-8, or the class is unterminated).
bool GlobClassChar(absl::string_view* chunk, char32_t* out) {
  if (chunk->empty() || (*chunk)[0] == '-' || (*chunk)[0] == ']') return false;
  if ((*chunk)[0] == '\\') {
    chunk->remove_prefix(1);
    if (chunk->empty()) return false;
  }
  const go::DecodedRune rune = go::DecodeRune(*chunk);
  chunk->remove_prefix(rune.width);
  *out = rune.rune;
  return !(rune.rune == kRuneError && rune.width == 1) && !chunk->empty();
}

// Matches `chunk` against the start of `s`; on kMatch `*rest` is what follows.
// After a mismatch the rest of the chunk is still checked for syntax, so a
// malformed chunk is reported whatever `s` is.
ChunkResult MatchChunk(absl::string_view chunk, absl::string_view s, absl::string_view* rest) {
  bool failed = false;
  while (!chunk.empty()) {
    if (!failed && s.empty()) failed = true;
    switch (chunk[0]) {
      case '[': {
        char32_t r = 0;
        if (!failed) {
          const go::DecodedRune rune = go::DecodeRune(s);
          r = rune.rune;
          s.remove_prefix(rune.width);
        }
        chunk.remove_prefix(1);
        bool negated = false;
        if (!chunk.empty() && chunk[0] == '^') {
          negated = true;
          chunk.remove_prefix(1);
        }
        bool in_class = false;
        for (int ranges = 0;; ++ranges) {
          if (!chunk.empty() && chunk[0] == ']' && ranges > 0) {
            chunk.remove_prefix(1);
            break;
          }
          char32_t lo;
          if (!GlobClassChar(&chunk, &lo)) return ChunkResult::kBadPattern;
          char32_t hi = lo;
          if (chunk[0] == '-') {
            chunk.remove_prefix(1);
            if (!GlobClassChar(&chunk, &hi)) return ChunkResult::kBadPattern;
          }
          if (lo <= r && r <= hi) in_class = true;
        }
        if (in_class == negated) failed = true;
        break;
      }
      case '?':
        if (!failed) {
          if (s[0] == '/') failed = true;
          s.remove_prefix(go::DecodeRune(s).width);
        }
        chunk.remove_prefix(1);
        break;
      case '\\':
        chunk.remove_prefix(1);
        if (chunk.empty()) return ChunkResult::kBadPattern;
        [[fallthrough]];
      default:
        if (!failed) {
          if (chunk[0] != s[0]) failed = true;
          s.remove_prefix(1);
        }
        chunk.remove_prefix(1);
        break;
    }
  }
  if (failed) return ChunkResult::kNoMatch;
  *rest = s;
  return ChunkResult::kMatch;
}

// ---------------------------------------------------------------------------
// Reading ignore files.

struct IgnoreLine {
  int number;
  std::string pattern;
};

// bufio.Scanner's default limit, which the reference's line reader keeps: a
// line must fit, with its newline, in 64 KiB.
constexpr size_t kMaxLineBytes = 64 * 1024;

absl::Status LineError(absl::string_view source, int line, absl::string_view what) {
  if (source.empty()) return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", what));
  return absl::InvalidArgumentError(absl::StrCat(source, ":", line, ": ", what));
}

// The reference's ReadAll, keeping each pattern's line number. `source` names
// the content in errors (may be empty).
absl::StatusOr<std::vector<IgnoreLine>> ReadIgnoreLines(absl::string_view content,
                                                        absl::string_view source) {
  std::vector<IgnoreLine> lines;
  for (int number = 1; !content.empty(); ++number) {
    const size_t newline = content.find('\n');
    absl::string_view line = content.substr(0, newline);
    content.remove_prefix(newline == absl::string_view::npos ? content.size() : newline + 1);
    if (line.size() >= kMaxLineBytes) {
      return LineError(source, number, "longer than 65535 bytes, the reference's limit");
    }
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (number == 1 && absl::StartsWith(line, kByteOrderMark)) {
      line.remove_prefix(kByteOrderMark.size());
    }
    if (absl::StartsWith(line, "#")) continue;
    line = TrimSpace(line);
    if (line.empty()) continue;
    const bool exclusion = line[0] == '!';
    if (exclusion) line = TrimSpace(line.substr(1));
    std::string pattern;
    if (!line.empty()) {
      pattern = CleanPath(line);
      if (pattern.size() > 1 && pattern[0] == '/') pattern.erase(0, 1);
    }
    if (exclusion) pattern = absl::StrCat("!", pattern);
    lines.push_back({number, std::move(pattern)});
  }
  return lines;
}

// The whole file, or nullopt when it does not exist.
absl::StatusOr<std::optional<std::string>> ReadFileIfExists(const std::filesystem::path& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    return absl::ErrnoToStatus(errno, absl::StrCat("opening ", path.native()));
  }
  std::string content;
  char buffer[16 * 1024];
  for (;;) {
    const ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      close(fd);
      return absl::ErrnoToStatus(error, absl::StrCat("reading ", path.native()));
    }
    if (n == 0) break;
    content.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return content;
}

}  // namespace

// ---------------------------------------------------------------------------
// The regular expressions the reference builds from patterns, run by a small
// Thompson-NFA simulation instead of a regexp library: linear in the path
// length times the expression length, whatever the pattern.
//
// Only Go regexp syntax that can occur in those expressions is understood. The
// reference escapes `.+()$` and rewrites `*` and `?`, so an unescaped `+` never
// occurs, and groups occur only as `(.*/)`. It means to escape `|{}` too, but
// its escape table only has room for bytes below 64, so those reach Go's regexp
// as they are: `a|b` is an alternation (`^a|b$` is `^a` or `b$`, so matching is
// a search, not anchored) and `a{2}` a counted repetition. What passes through
// from patterns verbatim is honoured as Go does: `[...]` classes (ranges, `^`,
// `[:alpha:]`, `\d`), `^`, and backslash escapes (`\d`, `\b`, `\Q...\E`, `\x41`).
// Unicode classes (`\pL`) are the one unsupported construct: such a pattern
// reports a syntax error on use.

namespace internal {
namespace {

using RuneRange = std::pair<char32_t, char32_t>;

class RuneSet {
 public:
  // The union of `ranges` (any order, may overlap), complemented when `negate`.
  RuneSet(std::vector<RuneRange> ranges, bool negate) {
    std::sort(ranges.begin(), ranges.end());
    std::vector<RuneRange> merged;
    for (const RuneRange& range : ranges) {
      if (!merged.empty() && range.first <= merged.back().second + 1) {
        merged.back().second = std::max(merged.back().second, range.second);
      } else {
        merged.push_back(range);
      }
    }
    if (negate) merged = Complement(merged);
    for (const RuneRange& range : merged) {
      for (char32_t r = range.first; r <= range.second && r < 0x80; ++r) {
        ascii_[r >> 6] |= uint64_t{1} << (r & 63);
      }
      if (range.second >= 0x80) {
        wide_.push_back({std::max<char32_t>(range.first, 0x80), range.second});
      }
    }
  }

  bool Contains(char32_t r) const {
    if (r < 0x80) return (ascii_[r >> 6] >> (r & 63)) & 1;
    auto after = std::upper_bound(
        wide_.begin(), wide_.end(), r,
        [](char32_t value, const RuneRange& range) { return value < range.first; });
    return after != wide_.begin() && r <= std::prev(after)->second;
  }

  // The runes in [0, kMaxRune] that `sorted` (sorted, disjoint) does not hold.
  static std::vector<RuneRange> Complement(const std::vector<RuneRange>& sorted) {
    std::vector<RuneRange> out;
    char32_t next = 0;
    for (const RuneRange& range : sorted) {
      if (range.first > next) out.push_back({next, range.first - 1});
      next = range.second + 1;
    }
    if (next <= kMaxRune) out.push_back({next, kMaxRune});
    return out;
  }

 private:
  uint64_t ascii_[2] = {0, 0};
  std::vector<RuneRange> wide_;  // sorted, disjoint, all >= 0x80
};

enum class Assertion : uint8_t { kBeginText, kEndText, kWordBoundary, kNotWordBoundary };

struct Inst {
  enum class Op : uint8_t { kRune, kSplit, kJump, kAssert, kMatch };
  Op op;
  Assertion assertion = Assertion::kBeginText;  // kAssert
  uint32_t x = 0;  // kRune: index into Program::sets; kSplit, kJump: a target
  uint32_t y = 0;  // kSplit: the other target
};

// A parsed expression: alternatives, each a sequence of repeated terms.
struct Term;
using Sequence = std::vector<Term>;
using Alternation = std::vector<Sequence>;

struct Term {
  enum class Kind { kRunes, kAssert, kGroup };
  Kind kind;
  uint32_t set = 0;                             // kRunes
  Assertion assertion = Assertion::kBeginText;  // kAssert
  Alternation group = {};                       // kGroup
  // The term repeats min to max times (max -1: unbounded); `counted` when
  // written `{min,max}` rather than `*` or `?`.
  int min = 1;
  int max = 1;
  bool counted = false;
};

// Go's limits: a counted repetition, or nested counted repetitions together,
// may not exceed 1000; an expression whose program would take more than
// 128 MiB is "too large" (approximated here by counting our instructions).
constexpr int kMaxRepeat = 1000;
constexpr size_t kMaxInstructions = (size_t{128} << 20) / 40;

bool IsWordByte(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

int HexValue(char32_t c) {
  if (c >= '0' && c <= '9') return static_cast<int>(c - '0');
  if (c >= 'a' && c <= 'f') return static_cast<int>(c - 'a' + 10);
  if (c >= 'A' && c <= 'F') return static_cast<int>(c - 'A' + 10);
  return -1;
}

// Go's Perl classes (`\d`, `\s`, `\w`) and POSIX classes (`[:alpha:]`); ASCII only.
std::vector<RuneRange> PerlClass(char letter) {
  switch (letter) {
    case 'd':
      return {{'0', '9'}};
    case 's':
      return {{'\t', '\n'}, {'\f', '\r'}, {' ', ' '}};
    default:  // 'w'
      return {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
  }
}

std::optional<std::vector<RuneRange>> PosixClass(absl::string_view name) {
  if (name == "alnum") return std::vector<RuneRange>{{'0', '9'}, {'A', 'Z'}, {'a', 'z'}};
  if (name == "alpha") return std::vector<RuneRange>{{'A', 'Z'}, {'a', 'z'}};
  if (name == "ascii") return std::vector<RuneRange>{{0, 0x7F}};
  if (name == "blank") return std::vector<RuneRange>{{'\t', '\t'}, {' ', ' '}};
  if (name == "cntrl") return std::vector<RuneRange>{{0, 0x1F}, {0x7F, 0x7F}};
  if (name == "digit") return std::vector<RuneRange>{{'0', '9'}};
  if (name == "graph") return std::vector<RuneRange>{{'!', '~'}};
  if (name == "lower") return std::vector<RuneRange>{{'a', 'z'}};
  if (name == "print") return std::vector<RuneRange>{{' ', '~'}};
  if (name == "punct") {
    return std::vector<RuneRange>{{'!', '/'}, {':', '@'}, {'[', '`'}, {'{', '~'}};
  }
  if (name == "space") return std::vector<RuneRange>{{'\t', '\r'}, {' ', ' '}};
  if (name == "upper") return std::vector<RuneRange>{{'A', 'Z'}};
  if (name == "word") return std::vector<RuneRange>{{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
  if (name == "xdigit") return std::vector<RuneRange>{{'0', '9'}, {'A', 'F'}, {'a', 'f'}};
  return std::nullopt;
}

void AppendClass(const std::vector<RuneRange>& group, bool negated, std::vector<RuneRange>* out) {
  const std::vector<RuneRange> ranges = negated ? RuneSet::Complement(group) : group;
  out->insert(out->end(), ranges.begin(), ranges.end());
}

// Parses Go regexp syntax (the subset above) into terms, failing as Go's
// regexp.Compile fails.
class ExpressionParser {
 public:
  ExpressionParser(absl::string_view expression, std::vector<RuneSet>* sets)
      : rest_(expression), sets_(sets) {}

  bool Parse(Alternation* alternation) { return ParseAlternation(alternation, /*in_group=*/false); }

 private:
  bool ParseAlternation(Alternation* alternation, bool in_group) {
    alternation->emplace_back();
    bool after_repeat = false;
    while (!rest_.empty()) {
      Sequence* terms = &alternation->back();
      const char c = rest_[0];
      bool repeat = false;
      switch (c) {
        case '|':
          rest_.remove_prefix(1);
          alternation->emplace_back();
          break;
        case '(': {
          rest_.remove_prefix(1);
          Term group{.kind = Term::Kind::kGroup};
          if (!ParseAlternation(&group.group, /*in_group=*/true)) return false;
          terms->push_back(std::move(group));
          break;
        }
        case ')':
          rest_.remove_prefix(1);
          return in_group;
        case '*':
        case '?':
          if (!Repeat(0, c == '*' ? -1 : 1, /*counted=*/false, after_repeat, terms)) return false;
          rest_.remove_prefix(1);
          repeat = true;
          break;
        case '{': {
          int min;
          int max;
          size_t length;
          if (!ParseRepeatBraces(&min, &max, &length)) {
            rest_.remove_prefix(1);  // not a repetition: a literal `{`
            PushSet({{'{', '{'}}, /*negate=*/false, terms);
            break;
          }
          if (min < 0 || min > kMaxRepeat || max > kMaxRepeat || (max >= 0 && min > max)) {
            return false;
          }
          if (!Repeat(min, max, /*counted=*/true, after_repeat, terms)) return false;
          rest_.remove_prefix(length);
          repeat = true;
          break;
        }
        case '^':
          rest_.remove_prefix(1);
          PushAssertion(Assertion::kBeginText, terms);
          break;
        case '$':
          rest_.remove_prefix(1);
          PushAssertion(Assertion::kEndText, terms);
          break;
        case '.':  // any character but newline
          rest_.remove_prefix(1);
          PushSet({{'\n', '\n'}}, /*negate=*/true, terms);
          break;
        case '[':
          if (!ParseClass(terms)) return false;
          break;
        case '\\':
          if (!ParseBackslash(terms)) return false;
          break;
        default: {
          char32_t literal;
          if (!NextRune(&literal)) return false;
          PushSet({{literal, literal}}, /*negate=*/false, terms);
          break;
        }
      }
      after_repeat = repeat;
    }
    return !in_group;  // a group must be closed
  }

  // Applies a repetition to the last term. Go rejects one with nothing to
  // repeat (at the start, after `|` or `(`) and one right after another; a term
  // repeated already (`a{2}\Q\E{3}`) is repeated as a whole.
  static bool Repeat(int min, int max, bool counted, bool after_repeat, Sequence* terms) {
    if (after_repeat || terms->empty()) return false;
    Term& last = terms->back();
    if (last.min != 1 || last.max != 1) {
      Term group{.kind = Term::Kind::kGroup};
      group.group.push_back({std::move(last)});
      last = std::move(group);
    }
    last.min = min;
    last.max = max;
    last.counted = counted;
    return !counted || (min < 2 && max < 2) || RepeatIsValid(last, kMaxRepeat);
  }

  // Go's repeatIsValid: nested counted repetitions may not multiply past `n`.
  static bool RepeatIsValid(const Term& term, int n) {
    if (term.counted) {
      if (term.max == 0) return true;
      const int m = term.max < 0 ? term.min : term.max;
      if (m > n) return false;
      if (m > 0) n /= m;
    }
    for (const Sequence& terms : term.group) {
      for (const Term& inner : terms) {
        if (!RepeatIsValid(inner, n)) return false;
      }
    }
    return true;
  }

  // Go's parseRepeat: `{n}`, `{n,}` or `{n,m}` at the start of `rest_`, with
  // decimal numbers without leading zeros; n is -1 when too large to hold.
  bool ParseRepeatBraces(int* min, int* max, size_t* length) const {
    absl::string_view t = rest_.substr(1);
    if (!ParseRepeatCount(&t, min) || t.empty()) return false;
    if (t[0] != ',') {
      *max = *min;
    } else {
      t.remove_prefix(1);
      if (t.empty()) return false;
      if (t[0] == '}') {
        *max = -1;
      } else if (!ParseRepeatCount(&t, max)) {
        return false;
      } else if (*max < 0) {
        *min = -1;  // too large: reported by the caller
      }
    }
    if (t.empty() || t[0] != '}') return false;
    *length = rest_.size() - t.size() + 1;
    return true;
  }

  static bool ParseRepeatCount(absl::string_view* t, int* out) {
    const auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
    if (t->empty() || !is_digit((*t)[0])) return false;
    if (t->size() >= 2 && (*t)[0] == '0' && is_digit((*t)[1])) return false;
    int value = 0;
    for (; !t->empty() && is_digit((*t)[0]); t->remove_prefix(1)) {
      if (value >= 100000000) value = -1;
      if (value >= 0) value = value * 10 + ((*t)[0] - '0');
    }
    *out = value;
    return true;
  }

  bool NextRune(char32_t* out) {
    const go::DecodedRune rune = go::DecodeRune(rest_);
    if (rune.rune == kRuneError && rune.width == 1) return false;
    rest_.remove_prefix(rune.width);
    *out = rune.rune;
    return true;
  }

  void PushSet(std::vector<RuneRange> ranges, bool negate, Sequence* terms) {
    sets_->emplace_back(std::move(ranges), negate);
    terms->push_back({.kind = Term::Kind::kRunes, .set = static_cast<uint32_t>(sets_->size() - 1)});
  }

  static void PushAssertion(Assertion assertion, Sequence* terms) {
    terms->push_back({.kind = Term::Kind::kAssert, .assertion = assertion});
  }

  static bool IsPerlClassLetter(char c) {
    return c == 'd' || c == 'D' || c == 's' || c == 'S' || c == 'w' || c == 'W';
  }

  // A backslash outside a class: an assertion, `\Q...\E`, a Perl class or an
  // escaped character.
  bool ParseBackslash(Sequence* terms) {
    if (rest_.size() < 2) return false;  // trailing backslash
    const char letter = rest_[1];
    switch (letter) {
      case 'A':
        rest_.remove_prefix(2);
        PushAssertion(Assertion::kBeginText, terms);
        return true;
      case 'z':
        rest_.remove_prefix(2);
        PushAssertion(Assertion::kEndText, terms);
        return true;
      case 'b':
        rest_.remove_prefix(2);
        PushAssertion(Assertion::kWordBoundary, terms);
        return true;
      case 'B':
        rest_.remove_prefix(2);
        PushAssertion(Assertion::kNotWordBoundary, terms);
        return true;
      case 'Q': {
        // Literal text up to `\E` or the end of the expression (which then
        // swallows the final `$`, as it does in Go).
        rest_.remove_prefix(2);
        const size_t end = rest_.find("\\E");
        absl::string_view text = rest_.substr(0, end);
        rest_.remove_prefix(end == absl::string_view::npos ? rest_.size() : end + 2);
        std::swap(rest_, text);
        while (!rest_.empty()) {
          char32_t literal;
          if (!NextRune(&literal)) return false;
          PushSet({{literal, literal}}, /*negate=*/false, terms);
        }
        rest_ = text;
        return true;
      }
      case 'C':  // any byte: Go does not support it
      case 'p':  // Unicode classes: unsupported here (see above)
      case 'P':
        return false;
      default:
        break;
    }
    if (IsPerlClassLetter(letter)) {
      std::vector<RuneRange> ranges;
      AppendClass(PerlClass(static_cast<char>(letter | 0x20)), letter < 'a', &ranges);
      rest_.remove_prefix(2);
      PushSet(std::move(ranges), /*negate=*/false, terms);
      return true;
    }
    char32_t literal;
    if (!ParseEscape(&literal)) return false;
    PushSet({{literal, literal}}, /*negate=*/false, terms);
    return true;
  }

  // Go's parseEscape, with `rest_` at the backslash.
  bool ParseEscape(char32_t* out) {
    rest_.remove_prefix(1);
    if (rest_.empty()) return false;
    char32_t c;
    if (!NextRune(&c)) return false;
    const auto is_octal = [this] { return !rest_.empty() && rest_[0] >= '0' && rest_[0] <= '7'; };
    switch (c) {
      case '1':
      case '2':
      case '3':
      case '4':
      case '5':
      case '6':
      case '7':
        if (!is_octal()) return false;  // a backreference: unsupported
        [[fallthrough]];
      case '0':
        *out = c - '0';
        for (int digits = 1; digits < 3 && is_octal(); ++digits) {
          *out = *out * 8 + static_cast<char32_t>(rest_[0] - '0');
          rest_.remove_prefix(1);
        }
        return true;
      case 'x': {
        char32_t first;
        if (rest_.empty() || !NextRune(&first)) return false;
        if (first == '{') {
          char32_t value = 0;
          int digits = 0;
          for (;;) {
            char32_t d;
            if (rest_.empty() || !NextRune(&d)) return false;
            if (d == '}') break;
            if (HexValue(d) < 0) return false;
            value = value * 16 + static_cast<char32_t>(HexValue(d));
            if (value > kMaxRune) return false;
            ++digits;
          }
          *out = value;
          return digits > 0;
        }
        char32_t second;
        if (rest_.empty() || !NextRune(&second)) return false;
        if (HexValue(first) < 0 || HexValue(second) < 0) return false;
        *out = static_cast<char32_t>(HexValue(first) * 16 + HexValue(second));
        return true;
      }
      case 'a':
        *out = '\a';
        return true;
      case 'f':
        *out = '\f';
        return true;
      case 'n':
        *out = '\n';
        return true;
      case 'r':
        *out = '\r';
        return true;
      case 't':
        *out = '\t';
        return true;
      case 'v':
        *out = '\v';
        return true;
      default:
        // ASCII punctuation (`_` included) escapes itself; any other letter,
        // digit or non-ASCII character is an error.
        *out = c;
        return c < 0x80 && (c == '_' || !IsWordByte(static_cast<char>(c)));
    }
  }

  // One class character: an escape or a plain character.
  bool ClassChar(char32_t* out) {
    if (rest_.empty()) return false;  // missing `]`
    if (rest_[0] == '\\') return ParseEscape(out);
    return NextRune(out);
  }

  // Go's parseClass, with `rest_` at the `[`.
  bool ParseClass(Sequence* terms) {
    rest_.remove_prefix(1);
    bool negate = false;
    if (!rest_.empty() && rest_[0] == '^') {
      negate = true;
      rest_.remove_prefix(1);
    }
    std::vector<RuneRange> ranges;
    // `]` is a plain character when first.
    for (bool first = true; rest_.empty() || rest_[0] != ']' || first; first = false) {
      if (rest_.size() > 2 && rest_[0] == '[' && rest_[1] == ':') {
        const size_t close = rest_.find(":]", 2);
        if (close != absl::string_view::npos) {
          absl::string_view name = rest_.substr(2, close - 2);
          const bool negated = absl::StartsWith(name, "^");
          if (negated) name.remove_prefix(1);
          const std::optional<std::vector<RuneRange>> group = PosixClass(name);
          if (!group) return false;
          AppendClass(*group, negated, &ranges);
          rest_.remove_prefix(close + 2);
          continue;
        }
      }
      if (rest_.size() >= 2 && rest_[0] == '\\') {
        if (rest_[1] == 'p' || rest_[1] == 'P') return false;  // unsupported (see above)
        if (IsPerlClassLetter(rest_[1])) {
          AppendClass(PerlClass(static_cast<char>(rest_[1] | 0x20)), rest_[1] < 'a', &ranges);
          rest_.remove_prefix(2);
          continue;
        }
      }
      char32_t lo;
      if (!ClassChar(&lo)) return false;
      char32_t hi = lo;
      if (rest_.size() >= 2 && rest_[0] == '-' && rest_[1] != ']') {
        rest_.remove_prefix(1);
        if (!ClassChar(&hi) || hi < lo) return false;
      }
      ranges.push_back({lo, hi});
    }
    rest_.remove_prefix(1);
    PushSet(std::move(ranges), negate, terms);
    return true;
  }

  absl::string_view rest_;
  std::vector<RuneSet>* sets_;
};

// The number of instructions Emit produces, saturating at kMaxInstructions + 1.
size_t CodeSize(const Alternation& alternation) {
  const auto saturate = [](size_t n) { return std::min(n, kMaxInstructions + 1); };
  size_t size = 2 * (alternation.size() - 1);  // a split and a jump per extra alternative
  for (const Sequence& terms : alternation) {
    for (const Term& term : terms) {
      const size_t body = term.kind == Term::Kind::kGroup ? CodeSize(term.group) : 1;
      // min copies, then a loop (split, body, jump) or max - min (split, body) pairs.
      const size_t copies =
          term.max < 0 ? static_cast<size_t>(term.min) + 1 : static_cast<size_t>(term.max);
      const size_t control = term.max < 0 ? 2 : static_cast<size_t>(term.max - term.min);
      size = saturate(size + saturate(copies * body) + control);
    }
  }
  return size;
}

// Emits code for `alternation` (Thompson construction).
void Emit(const Alternation& alternation, std::vector<Inst>* code) {
  const auto here = [code] { return static_cast<uint32_t>(code->size()); };
  std::vector<uint32_t> jumps_to_end;
  for (size_t i = 0; i < alternation.size(); ++i) {
    uint32_t split = 0;
    const bool last = i + 1 == alternation.size();
    if (!last) {
      split = here();
      code->push_back({.op = Inst::Op::kSplit, .x = split + 1});
    }
    for (const Term& term : alternation[i]) {
      const auto body = [&] {
        switch (term.kind) {
          case Term::Kind::kRunes:
            code->push_back({.op = Inst::Op::kRune, .x = term.set});
            break;
          case Term::Kind::kAssert:
            code->push_back({.op = Inst::Op::kAssert, .assertion = term.assertion});
            break;
          case Term::Kind::kGroup:
            Emit(term.group, code);
            break;
        }
      };
      for (int n = 0; n < term.min; ++n) body();
      if (term.max < 0) {
        const uint32_t loop = here();
        code->push_back({.op = Inst::Op::kSplit, .x = loop + 1});
        body();
        code->push_back({.op = Inst::Op::kJump, .x = loop});
        (*code)[loop].y = here();
        continue;
      }
      std::vector<uint32_t> optional_splits;
      for (int n = term.min; n < term.max; ++n) {
        optional_splits.push_back(here());
        code->push_back({.op = Inst::Op::kSplit, .x = here() + 1});
        body();
      }
      for (uint32_t s : optional_splits) (*code)[s].y = here();
    }
    if (!last) {
      jumps_to_end.push_back(here());
      code->push_back({.op = Inst::Op::kJump});
      (*code)[split].y = here();
    }
  }
  for (uint32_t jump : jumps_to_end) (*code)[jump].x = here();
}

// A set of program counters, held inline for small programs.
class PcSet {
 public:
  explicit PcSet(size_t size) : words_((size + 63) / 64, 0) {}

  void Clear() { std::fill(words_.begin(), words_.end(), 0); }
  bool Empty() const {
    return std::all_of(words_.begin(), words_.end(), [](uint64_t w) { return w == 0; });
  }
  bool Contains(uint32_t pc) const { return (words_[pc >> 6] >> (pc & 63)) & 1; }
  // Returns false when `pc` was already present.
  bool Insert(uint32_t pc) {
    const uint64_t bit = uint64_t{1} << (pc & 63);
    if (words_[pc >> 6] & bit) return false;
    words_[pc >> 6] |= bit;
    return true;
  }
  template <typename F>
  void ForEach(F f) const {
    for (size_t i = 0; i < words_.size(); ++i) {
      for (uint64_t w = words_[i]; w != 0; w &= w - 1) {
        f(static_cast<uint32_t>(i * 64 + static_cast<size_t>(__builtin_ctzll(w))));
      }
    }
  }

 private:
  absl::InlinedVector<uint64_t, 4> words_;
};

// What the empty-width assertions see at a position.
struct Context {
  bool at_begin;
  bool at_end;
  bool word_before;
  bool word_after;
};

bool Holds(Assertion assertion, const Context& context) {
  switch (assertion) {
    case Assertion::kBeginText:
      return context.at_begin;
    case Assertion::kEndText:
      return context.at_end;
    case Assertion::kWordBoundary:
      return context.word_before != context.word_after;
    case Assertion::kNotWordBoundary:
      return context.word_before == context.word_after;
  }
  return false;
}

}  // namespace

struct Program {
  std::vector<Inst> code;  // ends with the only kMatch
  std::vector<RuneSet> sets;
  // The program starts with `^`: a match can only start at the beginning.
  bool anchored = false;

  // Whether the expression matches `text`, or, with `at_slashes`, some prefix
  // of `text` that ends at a '/' or at the end. Go's MatchString semantics: a
  // match may start and end anywhere in the text.
  bool MatchesPrefix(absl::string_view text, bool at_slashes) const {
    const auto match_pc = static_cast<uint32_t>(code.size() - 1);
    PcSet entries(code.size());
    PcSet next(code.size());
    PcSet reached(code.size());
    absl::InlinedVector<uint32_t, 32> stack;
    // Everything reachable from `entries` without consuming input.
    const auto closure = [&](const Context& context) {
      reached.Clear();
      entries.ForEach([&](uint32_t pc) { stack.push_back(pc); });
      while (!stack.empty()) {
        const uint32_t pc = stack.back();
        stack.pop_back();
        if (!reached.Insert(pc)) continue;
        const Inst& inst = code[pc];
        switch (inst.op) {
          case Inst::Op::kJump:
            stack.push_back(inst.x);
            break;
          case Inst::Op::kSplit:
            stack.push_back(inst.y);
            stack.push_back(inst.x);
            break;
          case Inst::Op::kAssert:
            if (Holds(inst.assertion, context)) stack.push_back(pc + 1);
            break;
          case Inst::Op::kRune:
          case Inst::Op::kMatch:
            break;
        }
      }
      return reached.Contains(match_pc);
    };
    for (size_t pos = 0;;) {
      if (pos == 0 || !anchored) entries.Insert(0);  // a match may start here
      const bool at_end = pos == text.size();
      const bool word_before = pos > 0 && IsWordByte(text[pos - 1]);
      // The prefix text[:pos] ends here: assertions see its end.
      if ((at_end || (at_slashes && text[pos] == '/')) && closure({.at_begin = pos == 0,
                                                                   .at_end = true,
                                                                   .word_before = word_before,
                                                                   .word_after = false})) {
        return true;
      }
      if (at_end) return false;
      // A match ending inside the text is a match of every longer prefix.
      if (closure({.at_begin = pos == 0,
                   .at_end = false,
                   .word_before = word_before,
                   .word_after = IsWordByte(text[pos])})) {
        return true;
      }
      const go::DecodedRune rune = go::DecodeRune(text.substr(pos));
      next.Clear();
      reached.ForEach([&](uint32_t pc) {
        const Inst& inst = code[pc];
        if (inst.op == Inst::Op::kRune && sets[inst.x].Contains(rune.rune)) next.Insert(pc + 1);
      });
      if (next.Empty() && anchored) return false;
      std::swap(entries, next);
      pos += rune.width;
    }
  }
};

namespace {

// The compiled expression, or null when Go's regexp.Compile would reject it.
std::shared_ptr<const Program> Compile(absl::string_view expression) {
  auto program = std::make_shared<Program>();
  Alternation alternation;
  if (!ExpressionParser(expression, &program->sets).Parse(&alternation)) return nullptr;
  if (CodeSize(alternation) > kMaxInstructions) return nullptr;
  Emit(alternation, &program->code);
  program->code.push_back({.op = Inst::Op::kMatch});
  program->anchored = program->code[0].op == Inst::Op::kAssert &&
                      program->code[0].assertion == Assertion::kBeginText;
  return program;
}

}  // namespace
}  // namespace internal

namespace {

// The reference's compile step: the match type and, for kRegexp, the Go
// regular expression, built character by character as Go's text/scanner
// yields them (a leading BOM is skipped; bytes that are not UTF-8 become
// U+FFFD).
struct Translation {
  MatchType type = MatchType::kExact;
  std::string expression;
};

// The characters the reference escapes. It lists `.+()|{}$`, but its bitmap
// (bit c/8 of byte c%8) loses every character from 64 up, so `|{}` stay bare.
bool ShouldEscape(char32_t c) { return c == '.' || c == '+' || c == '(' || c == ')' || c == '$'; }

Translation Translate(absl::string_view pattern) {
  Translation out;
  std::string expression = "^";
  if (absl::StartsWith(pattern, kByteOrderMark)) pattern.remove_prefix(kByteOrderMark.size());
  const auto peek_is = [&pattern](char c) { return !pattern.empty() && pattern[0] == c; };
  for (int i = 0; !pattern.empty(); ++i) {
    const go::DecodedRune rune = go::DecodeRune(pattern);
    pattern.remove_prefix(rune.width);
    const char32_t c = rune.rune;
    if (c == '*' && peek_is('*')) {
      pattern.remove_prefix(1);
      if (peek_is('/')) pattern.remove_prefix(1);  // `**/` is `**`
      if (!pattern.empty()) {
        expression += "(.*/)?";
        out.type = MatchType::kRegexp;
      } else if (out.type == MatchType::kExact) {
        out.type = MatchType::kPrefix;
      } else {
        expression += ".*";
        out.type = MatchType::kRegexp;
      }
      if (i == 0) out.type = MatchType::kSuffix;
    } else if (c == '*') {
      expression += "[^/]*";
      out.type = MatchType::kRegexp;
    } else if (c == '?') {
      expression += "[^/]";
      out.type = MatchType::kRegexp;
    } else if (ShouldEscape(c)) {
      expression += '\\';
      expression += static_cast<char>(c);
    } else if (c == '\\') {
      expression += '\\';
      if (!pattern.empty()) {
        const go::DecodedRune escaped = go::DecodeRune(pattern);
        pattern.remove_prefix(escaped.width);
        go::AppendRune(expression, escaped.rune);
        out.type = MatchType::kRegexp;
      }
    } else if (c == '[' || c == ']') {
      expression += static_cast<char>(c);
      out.type = MatchType::kRegexp;
    } else {
      go::AppendRune(expression, c);
    }
  }
  if (out.type == MatchType::kRegexp) out.expression = std::move(expression) + "$";
  return out;
}

absl::Status PatternSyntaxError(absl::string_view pattern) {
  return absl::InvalidArgumentError(
      absl::StrCat("syntax error in pattern \"", absl::CHexEscape(pattern), "\""));
}

}  // namespace

// ---------------------------------------------------------------------------
// Public functions.

std::string CleanPath(absl::string_view path) {
  if (path.empty()) return ".";
  const bool rooted = path[0] == '/';
  std::string out;
  out.reserve(path.size());
  size_t dot_dot = 0;  // out[:dot_dot] cannot be backtracked over
  if (rooted) {
    out.push_back('/');
    dot_dot = 1;
  }
  for (size_t r = rooted ? 1 : 0; r < path.size();) {
    const auto element_ends = [&](size_t at) { return at == path.size() || path[at] == '/'; };
    if (path[r] == '/') {
      ++r;
    } else if (path[r] == '.' && element_ends(r + 1)) {
      ++r;
    } else if (path[r] == '.' && path[r + 1] == '.' && element_ends(r + 2)) {
      r += 2;
      if (out.size() > dot_dot) {
        size_t w = out.size() - 1;
        while (w > dot_dot && out[w] != '/') --w;
        out.resize(w);
      } else if (!rooted) {
        if (!out.empty()) out.push_back('/');
        out += "..";
        dot_dot = out.size();
      }
    } else {
      if (out.size() != (rooted ? 1 : 0)) out.push_back('/');
      for (; r < path.size() && path[r] != '/'; ++r) out.push_back(path[r]);
    }
  }
  if (out.empty()) return ".";
  return out;
}

absl::StatusOr<bool> MatchGlob(absl::string_view pattern, absl::string_view name) {
  while (!pattern.empty()) {
    const Chunk chunk = ScanChunk(pattern);
    pattern = chunk.rest;
    // A trailing star matches the rest of the name unless it has a '/'.
    if (chunk.star && chunk.text.empty()) return name.find('/') == absl::string_view::npos;
    absl::string_view rest;
    ChunkResult result = MatchChunk(chunk.text, name, &rest);
    // The last chunk must consume the whole name.
    if (result == ChunkResult::kMatch && (rest.empty() || !pattern.empty())) {
      name = rest;
      continue;
    }
    if (result == ChunkResult::kBadPattern) return BadPattern();
    bool advanced = false;
    if (chunk.star) {
      // Let the star swallow 1, 2, ... characters, never a '/'.
      for (size_t i = 0; i < name.size() && name[i] != '/' && !advanced; ++i) {
        result = MatchChunk(chunk.text, name.substr(i + 1), &rest);
        if (result == ChunkResult::kBadPattern) return BadPattern();
        if (result == ChunkResult::kMatch && (!pattern.empty() || rest.empty())) {
          name = rest;
          advanced = true;
        }
      }
    }
    if (advanced) continue;
    // No match; still report a syntax error anywhere in the rest.
    while (!pattern.empty()) {
      const Chunk later = ScanChunk(pattern);
      pattern = later.rest;
      if (MatchChunk(later.text, "", &rest) == ChunkResult::kBadPattern) return BadPattern();
    }
    return false;
  }
  return name.empty();
}

absl::StatusOr<std::vector<std::string>> ReadDockerignore(absl::string_view content) {
  absl::StatusOr<std::vector<IgnoreLine>> lines = ReadIgnoreLines(content, "");
  if (!lines.ok()) return lines.status();
  std::vector<std::string> patterns;
  patterns.reserve(lines->size());
  for (IgnoreLine& line : *lines) patterns.push_back(std::move(line.pattern));
  return patterns;
}

absl::StatusOr<BuildIgnoreFile> LoadBuildIgnoreFile(const std::filesystem::path& context_dir,
                                                    const std::filesystem::path& dockerfile) {
  std::vector<std::filesystem::path> candidates;
  if (!dockerfile.empty()) candidates.emplace_back(dockerfile.native() + ".dockerignore");
  candidates.push_back(context_dir / ".dockerignore");
  for (const std::filesystem::path& path : candidates) {
    absl::StatusOr<std::optional<std::string>> content = ReadFileIfExists(path);
    if (!content.ok()) return content.status();
    if (!content->has_value()) continue;
    absl::StatusOr<std::vector<IgnoreLine>> lines = ReadIgnoreLines(**content, path.native());
    if (!lines.ok()) return lines.status();
    BuildIgnoreFile file;
    file.path = path;
    for (IgnoreLine& line : *lines) {
      absl::StatusOr<std::optional<IgnorePattern>> pattern = IgnorePattern::Parse(line.pattern);
      if (!pattern.ok()) return LineError(path.native(), line.number, pattern.status().message());
      file.patterns.push_back(std::move(line.pattern));
    }
    return file;
  }
  return BuildIgnoreFile{};
}

absl::StatusOr<std::optional<IgnorePattern>> IgnorePattern::Parse(absl::string_view raw) {
  const absl::string_view trimmed = TrimSpace(raw);
  if (trimmed.empty()) return std::nullopt;
  IgnorePattern pattern;
  pattern.pattern_ = CleanPath(trimmed);
  if (pattern.pattern_[0] == '!') {
    if (pattern.pattern_.size() == 1) {
      return absl::InvalidArgumentError("illegal exclusion pattern: \"!\"");
    }
    pattern.exclusion_ = true;
    pattern.pattern_.erase(0, 1);
  }
  // filepath.Match reports syntax errors whatever the name; "." is the reference's.
  if (!MatchGlob(pattern.pattern_, ".").ok()) return PatternSyntaxError(pattern.pattern_);
  pattern.elements_ =
      1 + static_cast<size_t>(std::count(pattern.pattern_.begin(), pattern.pattern_.end(), '/'));
  Translation translation = Translate(pattern.pattern_);
  pattern.match_type_ = translation.type;
  if (translation.type == MatchType::kRegexp) {
    pattern.expression_ = std::move(translation.expression);
    pattern.program_ = internal::Compile(pattern.expression_);
  }
  return std::optional<IgnorePattern>(std::move(pattern));
}

absl::StatusOr<bool> IgnorePattern::Match(absl::string_view path) const {
  const absl::string_view pattern = pattern_;
  switch (match_type_) {
    case MatchType::kExact:
      return path == pattern;
    case MatchType::kPrefix:
      return absl::StartsWith(path, pattern.substr(0, pattern.size() - 2));
    case MatchType::kSuffix: {
      const absl::string_view suffix = pattern.substr(2);
      // `**/foo` also matches "foo" itself.
      return absl::EndsWith(path, suffix) || (suffix[0] == '/' && path == suffix.substr(1));
    }
    case MatchType::kRegexp:
      if (program_ == nullptr) return PatternSyntaxError(pattern_);
      return program_->MatchesPrefix(path, /*at_slashes=*/false);
  }
  return false;
}

bool IgnorePattern::MatchesSomeAncestor(absl::string_view dir) const {
  const absl::string_view pattern = pattern_;
  switch (match_type_) {
    case MatchType::kExact:
      return absl::StartsWith(dir, pattern) &&
             (dir.size() == pattern.size() || dir[pattern.size()] == '/');
    case MatchType::kPrefix:
      // If any leading part of `dir` has the prefix, `dir` itself has it.
      return absl::StartsWith(dir, pattern.substr(0, pattern.size() - 2));
    case MatchType::kSuffix: {
      const absl::string_view suffix = pattern.substr(2);
      for (size_t end = 0; end <= dir.size(); ++end) {
        if (end < dir.size() && dir[end] != '/') continue;
        const absl::string_view ancestor = dir.substr(0, end);
        if (absl::EndsWith(ancestor, suffix) ||
            (suffix[0] == '/' && ancestor == suffix.substr(1))) {
          return true;
        }
      }
      return false;
    }
    case MatchType::kRegexp:
      return program_ != nullptr && program_->MatchesPrefix(dir, /*at_slashes=*/true);
  }
  return false;
}

absl::StatusOr<PatternMatcher> PatternMatcher::Create(absl::Span<const std::string> patterns) {
  PatternMatcher matcher;
  matcher.patterns_.reserve(patterns.size());
  for (const std::string& raw : patterns) {
    absl::StatusOr<std::optional<IgnorePattern>> pattern = IgnorePattern::Parse(raw);
    if (!pattern.ok()) return pattern.status();
    if (!pattern->has_value()) continue;
    matcher.has_exclusions_ = matcher.has_exclusions_ || (*pattern)->exclusion();
    matcher.patterns_.push_back(std::move(**pattern));
  }
  return matcher;
}

// In every matching loop below, a pattern is skipped when it cannot change the
// outcome: an inclusion once the path is excluded, an exclusion while it is not.
// The reference skips them too, so a skipped pattern never reports an error.

absl::StatusOr<bool> PatternMatcher::MatchesOrParentMatches(absl::string_view path) const {
  std::string storage;
  const absl::string_view dir = ParentDir(path, &storage);
  bool matched = false;
  for (const IgnorePattern& pattern : patterns_) {
    if (pattern.exclusion() != matched) continue;
    absl::StatusOr<bool> match = pattern.Match(path);
    if (!match.ok()) return match.status();
    if (*match || (dir != "." && pattern.MatchesSomeAncestor(dir))) matched = !pattern.exclusion();
  }
  return matched;
}

absl::StatusOr<bool> PatternMatcher::MatchesExact(absl::string_view path) const {
  return MatchesUsingParentResult(path, /*parent_matched=*/false);
}

absl::StatusOr<bool> PatternMatcher::MatchesUsingParentResult(absl::string_view path,
                                                              bool parent_matched) const {
  bool matched = parent_matched;
  for (const IgnorePattern& pattern : patterns_) {
    if (pattern.exclusion() != matched) continue;
    absl::StatusOr<bool> match = pattern.Match(path);
    if (!match.ok()) return match.status();
    if (*match) matched = !pattern.exclusion();
  }
  return matched;
}

absl::StatusOr<bool> PatternMatcher::MatchesUsingParentResults(absl::string_view path,
                                                               const MatchInfo& parent,
                                                               MatchInfo* info) const {
  const std::vector<bool>& parent_matched = parent.parent_matched_;
  const bool known_parent = !parent_matched.empty();
  if (known_parent && parent_matched.size() != patterns_.size()) {
    return absl::InvalidArgumentError("wrong number of values in parentMatched");
  }
  // When `info` is `&parent`, each entry is read before it is overwritten.
  info->parent_matched_.resize(patterns_.size());
  std::string storage;
  std::optional<absl::string_view> dir;  // computed on first need
  bool matched = false;
  for (size_t i = 0; i < patterns_.size(); ++i) {
    const IgnorePattern& pattern = patterns_[i];
    bool match = known_parent && parent_matched[i];
    if (!match) {
      if (pattern.exclusion() != matched) {
        info->parent_matched_[i] = false;
        continue;
      }
      absl::StatusOr<bool> own = pattern.Match(path);
      if (!own.ok()) return own.status();
      match = *own;
      // Without the parent's results, try the ancestors as MatchesOrParentMatches does.
      if (!match && !known_parent) {
        if (!dir) dir = ParentDir(path, &storage);
        match = *dir != "." && pattern.MatchesSomeAncestor(*dir);
      }
    }
    info->parent_matched_[i] = match;
    if (match) matched = !pattern.exclusion();
  }
  return matched;
}

absl::StatusOr<bool> PatternMatcher::MatchesWithOneAncestor(absl::string_view path) const {
  std::string storage;
  const absl::string_view dir = ParentDir(path, &storage);
  const size_t dir_elements =
      dir == "." ? 0 : 1 + static_cast<size_t>(std::count(dir.begin(), dir.end(), '/'));
  bool matched = false;
  for (const IgnorePattern& pattern : patterns_) {
    if (pattern.exclusion() != matched) continue;
    absl::StatusOr<bool> match = pattern.Match(path);
    if (!match.ok()) return match.status();
    bool hit = *match;
    if (!hit && pattern.elements_ <= dir_elements) {
      absl::StatusOr<bool> ancestor = pattern.Match(FirstElements(dir, pattern.elements_));
      hit = ancestor.ok() && *ancestor;
    }
    if (hit) matched = !pattern.exclusion();
  }
  return matched;
}

absl::StatusOr<bool> Matches(absl::string_view path, absl::Span<const std::string> patterns) {
  absl::StatusOr<PatternMatcher> matcher = PatternMatcher::Create(patterns);
  if (!matcher.ok()) return matcher.status();
  const std::string cleaned = CleanPath(path);
  if (cleaned == ".") return false;  // never exclude the whole context
  return matcher->MatchesWithOneAncestor(cleaned);
}

}  // namespace stagefarm::dockerfile
