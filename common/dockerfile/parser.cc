// The parser follows the reference's structure closely on purpose: the
// observable behaviour (what joins, what splits, what is JSON) is defined by
// that code, quirks included, and every quirk here is one a Dockerfile in the
// wild may depend on.
#include "common/dockerfile/parser.h"

#include <optional>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/dockerfile/go_text.h"
#include "common/dockerfile/json_array.h"
#include "common/dockerfile/shell_lexer.h"

namespace stagefarm::dockerfile {
namespace {

// bufio.Scanner's default limit: a physical line (with its newline) may not
// exceed 64 KiB.
constexpr size_t kMaxLineBytes = size_t{64} * 1024;

// ONBUILD triggers nest recursively in the reference (`ONBUILD ONBUILD RUN x`
// parses; the instruction layer then rejects the chain). Deeper nesting than
// this is refused here so recursion and copies stay bounded.
constexpr int kMaxOnbuildNesting = 64;

constexpr absl::string_view kEmptyContinuationDetail =
    "Empty continuation lines will become errors in a future release";
constexpr absl::string_view kEmptyContinuationUrl =
    "https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/";

// Yields the physical lines of the input with their terminators, like the
// reference's bufio.Scanner with a newline-preserving split function.
class LineScanner {
 public:
  explicit LineScanner(absl::string_view data) : data_(data) {}

  // The next line, or nullopt at the end of input or once a line is too long
  // (too_long() tells which).
  std::optional<absl::string_view> Next() {
    if (too_long_ || pos_ >= data_.size()) return std::nullopt;
    const size_t nl = data_.find('\n', pos_);
    const size_t end = nl == absl::string_view::npos ? data_.size() : nl + 1;
    const size_t len = end - pos_;
    // A terminated line fits when it is at most the buffer size; the last,
    // unterminated line must be strictly shorter (the scanner needs to see
    // EOF before the buffer fills).
    if (len > kMaxLineBytes || (nl == absl::string_view::npos && len >= kMaxLineBytes)) {
      too_long_ = true;
      return std::nullopt;
    }
    absl::string_view line = data_.substr(pos_, len);
    pos_ = end;
    return line;
  }
  bool too_long() const { return too_long_; }

 private:
  absl::string_view data_;
  size_t pos_ = 0;
  bool too_long_ = false;
};

absl::string_view TrimNewline(absl::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool IsComment(absl::string_view line) {
  line = go::TrimLeftSpace(TrimNewline(line));
  return !line.empty() && line[0] == '#';
}

bool IsEmptyContinuationLine(absl::string_view line) {
  return go::TrimLeftSpace(TrimNewline(line)).empty();
}

// The escape token, when it is the last non-blank character of a line and not
// itself escaped, continues the line. Returns the line without the token and
// its trailing blanks, and whether the instruction ends here.
std::pair<absl::string_view, bool> TrimContinuation(absl::string_view line, char escape) {
  size_t end = line.size();
  while (end > 0 && (line[end - 1] == ' ' || line[end - 1] == '\t')) --end;
  if (end == 0 || line[end - 1] != escape) return {line, true};
  if (end >= 2 && line[end - 2] == escape) return {line, true};
  return {line.substr(0, end - 1), false};
}

bool IsRegexSpace(char c) {  // Go regexp's \s
  return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r';
}

bool IsRegexWhitespace(char c) {  // the reference's [\t\v\f\r ]
  return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r';
}

// The reference's reWhitespace.Split(s, n): n < 0 splits everywhere.
std::vector<absl::string_view> SplitWhitespace(absl::string_view s, int n) {
  std::vector<absl::string_view> parts;
  size_t start = 0;
  size_t i = 0;
  while (i < s.size()) {
    if (n > 0 && static_cast<int>(parts.size()) == n - 1) break;
    if (IsRegexWhitespace(s[i])) {
      parts.push_back(s.substr(start, i - start));
      while (i < s.size() && IsRegexWhitespace(s[i])) ++i;
      start = i;
    } else {
      ++i;
    }
  }
  parts.push_back(s.substr(start));
  return parts;
}

// Parser directives: `# key=value` lines at the top of the file.
class DirectiveParser {
 public:
  // Looks at one (left-trimmed, newline-trimmed) line. Returns true when it was
  // a directive; errors for a repeated directive or a bad escape token.
  absl::StatusOr<bool> ParseLine(absl::string_view line, Directives& directives) {
    if (done_) return false;
    if (line.empty() || line[0] != '#') {
      done_ = true;
      return false;
    }
    // BuildKit v0.33 (the pinned version's era): cut the `#`, trim Unicode
    // space (so `#\u00a0escape=`` is a directive), then match
    // ^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$ with ASCII \s. Releases before
    // that matched ^#\s*... with ASCII \s only.
    line = go::TrimLeftSpace(line.substr(1));
    size_t i = 0;
    if (i >= line.size() || !absl::ascii_isalpha(static_cast<unsigned char>(line[i]))) {
      done_ = true;
      return false;
    }
    while (i < line.size() && absl::ascii_isalnum(static_cast<unsigned char>(line[i]))) ++i;
    const std::string key = absl::AsciiStrToLower(line.substr(0, i));
    while (i < line.size() && IsRegexSpace(line[i])) ++i;
    if (i >= line.size() || line[i] != '=') {
      done_ = true;
      return false;
    }
    absl::string_view rest = line.substr(i + 1);
    if (rest.empty()) {
      done_ = true;
      return false;
    }
    size_t lead = 0;
    while (lead < rest.size() && IsRegexSpace(rest[lead])) ++lead;
    absl::string_view value;
    if (lead == rest.size()) {
      value = rest.substr(rest.size() - 1);  // all blanks: the lazy group keeps the last
    } else {
      value = rest.substr(lead);
      while (!value.empty() && IsRegexSpace(value.back())) value.remove_suffix(1);
    }
    if (key != "escape" && key != "syntax" && key != "check") {
      done_ = true;
      return false;
    }
    if (!seen_.insert(key).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("only one ", key, " parser directive can be used"));
    }
    if (key == "escape") {
      if (value != "`" && value != "\\") {
        return absl::InvalidArgumentError(
            absl::StrCat("invalid escape token '", value, "' does not match ` or \\"));
      }
      directives.escape_token = value[0];
    } else if (key == "syntax") {
      directives.syntax = std::string(value);
    } else {
      directives.check = std::string(value);
    }
    return true;
  }

 private:
  bool done_ = false;
  absl::flat_hash_set<std::string> seen_;
};

// The reference's extractBuilderFlags: leading `--` words, byte by byte (so a
// byte >= 0x80 is taken as the Latin-1 code point, and U+0085/U+00A0 bytes
// count as spaces). The escape is always `\` here, whatever the directive.
std::pair<absl::string_view, std::vector<std::string>> ExtractBuilderFlags(absl::string_view line) {
  enum { kInSpaces, kInWord, kInQuote } phase = kInSpaces;
  std::vector<std::string> words;
  std::string word;
  char quote = 0;
  bool blank_ok = false;
  auto is_space = [](unsigned char c) { return go::IsSpace(c); };
  auto append_byte = [&](unsigned char c) { go::AppendRune(word, c); };

  for (size_t pos = 0; pos <= line.size(); ++pos) {
    const unsigned char ch = pos < line.size() ? static_cast<unsigned char>(line[pos]) : 0;
    if (phase == kInSpaces) {
      if (pos == line.size()) break;
      if (is_space(ch)) continue;
      if (ch != '-' || pos + 1 == line.size() || line[pos + 1] != '-') {
        return {line.substr(pos), words};
      }
      phase = kInWord;
    }
    if (pos == line.size()) {  // in a word or a quote
      if (word != "--" && (blank_ok || !word.empty())) words.push_back(word);
      break;
    }
    if (phase == kInWord) {
      if (is_space(ch)) {
        phase = kInSpaces;
        if (word == "--") return {line.substr(pos), words};
        if (blank_ok || !word.empty()) words.push_back(word);
        word.clear();
        blank_ok = false;
        continue;
      }
      if (ch == '\'' || ch == '"') {
        quote = static_cast<char>(ch);
        blank_ok = true;
        phase = kInQuote;
        continue;
      }
      if (ch == '\\') {
        if (pos + 1 == line.size()) continue;
        ++pos;
        append_byte(static_cast<unsigned char>(line[pos]));
        continue;
      }
      append_byte(ch);
      continue;
    }
    // kInQuote
    if (ch == static_cast<unsigned char>(quote)) {
      phase = kInWord;
      continue;
    }
    if (ch == '\\') {
      if (pos + 1 == line.size()) {
        phase = kInWord;
        continue;
      }
      ++pos;
      append_byte(static_cast<unsigned char>(line[pos]));
      continue;
    }
    append_byte(ch);
  }
  return {absl::string_view(), words};
}

struct CommandParts {
  std::string keyword;
  std::vector<std::string> flags;
  absl::string_view args;
};

CommandParts SplitCommand(absl::string_view line) {
  CommandParts parts;
  const std::vector<absl::string_view> cmdline = SplitWhitespace(go::TrimSpace(line), 2);
  parts.keyword = std::string(cmdline[0]);
  if (cmdline.size() == 2) {
    auto [rest, flags] = ExtractBuilderFlags(cmdline[1]);
    parts.flags = std::move(flags);
    parts.args = go::TrimSpace(rest);
  }
  return parts;
}

// Takes `rest` as the exec form when it is a JSON string array: true when it
// was (args filled, json_form set), false when it is not JSON and the caller
// falls back, an error for an array with a non-string element.
absl::StatusOr<bool> TakeJsonArray(absl::string_view rest, Node& node) {
  JsonArrayResult json = DecodeJsonStringArray(rest);
  switch (json.status) {
    case JsonArrayStatus::kStrings:
      node.args = std::move(json.strings);
      node.json_form = true;
      return true;
    case JsonArrayStatus::kNonStringArray:
      return absl::InvalidArgumentError(kNonStringArrayError);
    case JsonArrayStatus::kNotJson:
      break;
  }
  return false;
}

void ParseWhitespaceDelimited(absl::string_view rest, Node& node) {
  if (rest.empty()) return;
  for (absl::string_view word : SplitWhitespace(rest, -1)) node.args.emplace_back(word);
}

// parseMaybeJSON (RUN, CMD, ENTRYPOINT, SHELL): JSON strings, or the text as
// one argument.
absl::Status ParseMaybeJson(absl::string_view rest, Node& node) {
  if (rest.empty()) return absl::OkStatus();
  absl::StatusOr<bool> json = TakeJsonArray(rest, node);
  if (!json.ok()) return json.status();
  if (!*json) node.args.emplace_back(rest);
  return absl::OkStatus();
}

// parseMaybeJSONToList (ADD, COPY, VOLUME): JSON strings, or whitespace-split
// words.
absl::Status ParseMaybeJsonToList(absl::string_view rest, Node& node) {
  absl::StatusOr<bool> json = TakeJsonArray(rest, node);
  if (!json.ok()) return json.status();
  if (!*json) ParseWhitespaceDelimited(rest, node);
  return absl::OkStatus();
}

// parseNameVal (ENV, LABEL): (key, value, separator) triples.
absl::Status ParseNameVal(absl::string_view rest, absl::string_view key, char escape, Node& node) {
  const std::vector<std::string> words = ParseWords(rest, escape);
  if (words.empty()) return absl::OkStatus();
  if (!absl::StrContains(words[0], '=')) {
    const std::vector<absl::string_view> parts = SplitWhitespace(rest, 2);
    if (parts.size() < 2) {
      return absl::InvalidArgumentError(absl::StrCat(key, " must have two arguments"));
    }
    node.args = {std::string(parts[0]), std::string(parts[1]), ""};
    return absl::OkStatus();
  }
  for (const std::string& word : words) {
    const size_t eq = word.find('=');
    if (eq == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Syntax error - can't find = in ", go::Quote(word), ". Must be of the form: name=value"));
    }
    node.args.push_back(word.substr(0, eq));
    node.args.push_back(word.substr(eq + 1));
    node.args.push_back("=");
  }
  return absl::OkStatus();
}

// parseHealthConfig: the type word, then the parseMaybeJSON shape. Scans bytes
// as Latin-1 like the reference.
absl::Status ParseHealthConfig(absl::string_view rest, Node& node) {
  size_t sep = 0;
  while (sep < rest.size() && !go::IsSpace(static_cast<unsigned char>(rest[sep]))) ++sep;
  size_t next = sep;
  while (next < rest.size() && go::IsSpace(static_cast<unsigned char>(rest[next]))) ++next;
  if (sep == 0) return absl::OkStatus();
  Node cmd;
  if (absl::Status s = ParseMaybeJson(rest.substr(next), cmd); !s.ok()) return s;
  node.args.emplace_back(rest.substr(0, sep));
  for (std::string& arg : cmd.args) node.args.push_back(std::move(arg));
  node.json_form = cmd.json_form;
  return absl::OkStatus();
}

absl::StatusOr<Node> NewNodeFromLine(absl::string_view line, char escape, int depth = 0);

absl::Status DispatchArguments(const std::string& lower, absl::string_view rest, char escape,
                               int depth, Node& node) {
  if (lower == "add" || lower == "copy" || lower == "volume")
    return ParseMaybeJsonToList(rest, node);
  if (lower == "run" || lower == "cmd" || lower == "entrypoint" || lower == "shell") {
    return ParseMaybeJson(rest, node);
  }
  if (lower == "from" || lower == "expose") {
    ParseWhitespaceDelimited(rest, node);
    return absl::OkStatus();
  }
  if (lower == "env") return ParseNameVal(rest, "ENV", escape, node);
  if (lower == "label") return ParseNameVal(rest, "LABEL", escape, node);
  if (lower == "arg") {
    node.args = ParseWords(rest, escape);
    return absl::OkStatus();
  }
  if (lower == "maintainer" || lower == "user" || lower == "workdir" || lower == "stopsignal") {
    if (!rest.empty()) node.args.emplace_back(rest);
    return absl::OkStatus();
  }
  if (lower == "healthcheck") return ParseHealthConfig(rest, node);
  if (lower == "onbuild") {
    if (rest.empty()) return absl::OkStatus();
    if (depth >= kMaxOnbuildNesting) {
      return absl::InvalidArgumentError(
          absl::StrCat("ONBUILD triggers nested more than ", kMaxOnbuildNesting, " deep"));
    }
    absl::StatusOr<Node> trigger = NewNodeFromLine(rest, escape, depth + 1);
    if (!trigger.ok()) return trigger.status();
    node.onbuild_trigger = std::make_shared<const Node>(*std::move(trigger));
    return absl::OkStatus();
  }
  // Unknown instructions parse (the instruction layer rejects them) with one
  // empty argument, as the reference's parseIgnore.
  node.args.emplace_back();
  return absl::OkStatus();
}

absl::StatusOr<Node> NewNodeFromLine(absl::string_view line, char escape, int depth) {
  CommandParts parts = SplitCommand(line);
  Node node;
  node.keyword = std::move(parts.keyword);
  node.flags = std::move(parts.flags);
  node.original = std::string(line);
  if (absl::Status s =
          DispatchArguments(go::ToLower(node.keyword), parts.args, escape, depth, node);
      !s.ok()) {
    return s;
  }
  return node;
}

// RUN, COPY and ADD in shell form (directly or as an ONBUILD trigger) may
// carry heredocs.
bool CanContainHeredoc(const Node& node) {
  const Node* target = &node;
  if (go::ToLower(target->keyword) == "onbuild" && target->onbuild_trigger != nullptr) {
    target = target->onbuild_trigger.get();
  }
  const std::string lower = go::ToLower(target->keyword);
  if (lower != "run" && lower != "copy" && lower != "add") return false;
  return !target->json_form;
}

// Words of `text` as the reference's heredoc detection lexes them: escape `\`
// whatever the directive says, unset variables kept as written. Empty when the
// lexer rejects the text.
std::optional<std::vector<std::string>> HeredocLexWords(absl::string_view text, bool raw_quotes,
                                                        bool raw_escapes) {
  ShellLexerOptions options;
  options.raw_quotes = raw_quotes;
  options.raw_escapes = raw_escapes;
  options.skip_unset_env = true;
  const ShellLexer lexer('\\', options);
  const auto no_variables = [](absl::string_view) -> std::optional<absl::string_view> {
    return std::nullopt;
  };
  absl::StatusOr<std::vector<std::string>> words = lexer.ProcessWords(text, no_variables);
  if (!words.ok()) return std::nullopt;
  return *std::move(words);
}

absl::Status LocatedError(absl::string_view filename, int start, int end,
                          absl::string_view message) {
  if (end > start) {
    return absl::InvalidArgumentError(absl::StrCat(filename, ":", start, "-", end, ": ", message));
  }
  return absl::InvalidArgumentError(absl::StrCat(filename, ":", start, ": ", message));
}

}  // namespace

std::vector<std::string> ParseWords(absl::string_view rest, char escape_token) {
  enum { kInSpaces, kInWord, kInQuote } phase = kInSpaces;
  std::vector<std::string> words;
  std::string word;
  char32_t quote = 0;
  bool blank_ok = false;
  char32_t ch = 0;
  int width = 0;
  const auto escape = static_cast<char32_t>(escape_token);

  for (size_t pos = 0; pos <= rest.size(); pos += width) {
    if (pos != rest.size()) {
      const go::DecodedRune d = go::DecodeRune(rest.substr(pos));
      ch = d.rune;
      width = d.width;
    }
    if (phase == kInSpaces) {
      if (pos == rest.size()) break;
      if (go::IsSpace(ch)) continue;
      phase = kInWord;
    }
    if (pos == rest.size()) {  // in a word or a quote
      if (blank_ok || !word.empty()) words.push_back(word);
      break;
    }
    if (phase == kInWord) {
      if (go::IsSpace(ch)) {
        phase = kInSpaces;
        if (blank_ok || !word.empty()) words.push_back(word);
        word.clear();
        blank_ok = false;
        continue;
      }
      if (ch == '\'' || ch == '"') {
        quote = ch;
        blank_ok = true;
        phase = kInQuote;
      }
      if (ch == escape) {
        if (pos + width == rest.size()) continue;  // a trailing escape is dropped
        // Unquoted escape: keep it and the next character, even a quote.
        go::AppendRune(word, ch);
        pos += width;
        const go::DecodedRune d = go::DecodeRune(rest.substr(pos));
        ch = d.rune;
        width = d.width;
      }
      go::AppendRune(word, ch);
      continue;
    }
    // kInQuote
    if (ch == quote) phase = kInWord;
    if (ch == escape && quote != '\'') {
      if (pos + width == rest.size()) {
        phase = kInWord;
        continue;
      }
      pos += width;
      go::AppendRune(word, ch);
      const go::DecodedRune d = go::DecodeRune(rest.substr(pos));
      ch = d.rune;
      width = d.width;
    }
    go::AppendRune(word, ch);
  }
  return words;
}

absl::StatusOr<HeredocSpec> ParseHeredoc(absl::string_view word) {
  // ^(\d*)<<(-?)\s*([^<]*)$
  HeredocSpec spec;
  size_t i = 0;
  while (i < word.size() && absl::ascii_isdigit(static_cast<unsigned char>(word[i]))) ++i;
  const absl::string_view digits = word.substr(0, i);
  if (word.substr(i, 2) != "<<") return spec;
  i += 2;
  const bool chomp = i < word.size() && word[i] == '-';
  if (chomp) ++i;
  while (i < word.size() && IsRegexSpace(word[i])) ++i;
  const absl::string_view rest = word.substr(i);
  if (rest.find('<') != absl::string_view::npos || rest.empty()) return spec;

  uint64_t fd = 0;
  for (char c : digits) {
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (fd > (UINT64_MAX - digit) / 10) {
      fd = UINT64_MAX;
      break;
    }
    fd = fd * 10 + digit;
  }

  // Lexing the delimiter with and without quotes tells whether any part of it
  // was quoted: then the body is not expanded.
  auto unquoted = HeredocLexWords(rest, /*raw_quotes=*/false, /*raw_escapes=*/false);
  if (!unquoted) {
    return absl::InvalidArgumentError(absl::StrCat("invalid heredoc delimiter ", go::Quote(rest)));
  }
  if (unquoted->size() != 1) return spec;
  auto raw = HeredocLexWords(rest, /*raw_quotes=*/true, /*raw_escapes=*/false);
  if (!raw) {
    return absl::InvalidArgumentError(absl::StrCat("invalid heredoc delimiter ", go::Quote(rest)));
  }
  if (raw->size() != unquoted->size()) {
    return absl::InternalError(
        absl::StrCat("internal lexing of heredoc produced inconsistent results: ", rest));
  }
  auto count_quotes = [](absl::string_view s) {
    size_t n = 0;
    for (char c : s) n += (c == '\'' || c == '"');
    return n;
  };
  spec.is_heredoc = true;
  spec.heredoc.name = (*unquoted)[0];
  spec.heredoc.file_descriptor = fd;
  spec.heredoc.chomp = chomp;
  spec.heredoc.expand = count_quotes((*unquoted)[0]) == count_quotes((*raw)[0]);
  return spec;
}

absl::StatusOr<std::vector<Heredoc>> HeredocsFromLine(absl::string_view line) {
  std::vector<Heredoc> docs;
  auto words = HeredocLexWords(line, /*raw_quotes=*/true, /*raw_escapes=*/true);
  if (!words) return docs;
  for (const std::string& word : *words) {
    absl::StatusOr<HeredocSpec> spec = ParseHeredoc(word);
    if (!spec.ok()) return spec.status();
    if (spec->is_heredoc) docs.push_back(std::move(spec->heredoc));
  }
  return docs;
}

absl::StatusOr<ParseResult> Parse(absl::string_view data, absl::string_view filename) {
  if (data.size() > kMaxDockerfileBytes) {
    return absl::ResourceExhaustedError(absl::StrCat(filename, ": Dockerfile is ", data.size(),
                                                     " bytes; the limit is ", kMaxDockerfileBytes));
  }
  ParseResult result;
  DirectiveParser directive_parser;
  LineScanner scanner(data);
  int current_line = 0;
  std::string buf;

  while (std::optional<absl::string_view> raw = scanner.Next()) {
    absl::string_view bytes = *raw;
    if (current_line == 0 && absl::StartsWith(bytes, "\xEF\xBB\xBF")) bytes.remove_prefix(3);
    absl::string_view token = go::TrimLeftSpace(TrimNewline(bytes));
    absl::StatusOr<bool> directive = directive_parser.ParseLine(token, result.directives);
    if (!directive.ok()) {
      return LocatedError(filename, current_line + 1, 0, directive.status().message());
    }
    if (IsComment(token)) token = absl::string_view();
    ++current_line;

    const int start_line = current_line;
    const char escape = result.directives.escape_token;
    auto [first, end_of_instruction] = TrimContinuation(token, escape);
    if (end_of_instruction && first.empty()) continue;
    buf.assign(first.data(), first.size());

    bool has_empty_continuation = false;
    while (!end_of_instruction) {
      std::optional<absl::string_view> next = scanner.Next();
      if (!next) break;
      ++current_line;
      if (IsComment(*next)) continue;
      if (IsEmptyContinuationLine(*next)) {
        has_empty_continuation = true;
        continue;
      }
      auto [part, end] = TrimContinuation(TrimNewline(*next), escape);
      end_of_instruction = end;
      buf.append(part.data(), part.size());
    }

    if (has_empty_continuation) {
      result.warnings.push_back(Warning{
          .short_text = absl::StrCat("Empty continuation line found in: ", buf),
          .detail = {std::string(kEmptyContinuationDetail)},
          .url = std::string(kEmptyContinuationUrl),
          .start_line = current_line,
          .end_line = current_line,
      });
    }

    absl::StatusOr<Node> child = NewNodeFromLine(buf, escape);
    if (!child.ok())
      return LocatedError(filename, start_line, current_line, child.status().message());

    // The cheap test first: almost no line contains "<<".
    if (absl::StrContains(buf, "<<") && CanContainHeredoc(*child)) {
      absl::StatusOr<std::vector<Heredoc>> heredocs = HeredocsFromLine(buf);
      if (!heredocs.ok()) {
        return LocatedError(filename, start_line, current_line, heredocs.status().message());
      }
      for (Heredoc& heredoc : *heredocs) {
        bool terminated = false;
        while (std::optional<absl::string_view> body_line = scanner.Next()) {
          ++current_line;
          absl::string_view candidate = TrimNewline(*body_line);
          if (heredoc.chomp) {
            while (!candidate.empty() && candidate[0] == '\t') candidate.remove_prefix(1);
          }
          if (candidate == heredoc.name) {
            terminated = true;
            break;
          }
          heredoc.content.append(body_line->data(), body_line->size());
        }
        if (!terminated) {
          return LocatedError(filename, start_line, current_line,
                              absl::StrCat("unterminated heredoc ", go::Quote(heredoc.name)));
        }
        child->heredocs.push_back(std::move(heredoc));
      }
    }

    child->start_line = start_line;
    child->end_line = current_line;
    if (result.children.empty()) result.start_line = start_line;
    result.end_line = current_line;
    result.children.push_back(*std::move(child));
  }

  if (result.children.empty()) {
    return LocatedError(filename, current_line == 0 ? 1 : current_line, 0,
                        "file with no instructions");
  }
  if (scanner.too_long()) {
    return LocatedError(
        filename, current_line + 1, 0,
        absl::StrCat("dockerfile line greater than max allowed size of ", kMaxLineBytes - 1));
  }
  return result;
}

}  // namespace stagefarm::dockerfile
