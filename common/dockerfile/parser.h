// The Dockerfile parser: bytes in, a syntax tree out, faithful to the reference
// (BuildKit's frontend/dockerfile/parser). It knows nothing of what instructions
// mean; common/dockerfile/instructions.h turns nodes into typed instructions.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stagefarm::dockerfile {

// A here-document attached to a RUN, COPY or ADD line (`<<EOF`, `<<-EOF`,
// `3<<'EOF'`). `content` is the body with a trailing newline per line; with
// `chomp` (`<<-`) leading tabs are removed when the instruction is expanded,
// not here (the reference keeps them in the node).
struct Heredoc {
  std::string name;
  std::string content;
  uint64_t file_descriptor = 0;  // `3<<EOF`; digits past uint64 saturate
  bool expand = true;            // false when any part of the delimiter was quoted
  bool chomp = false;            // `<<-`

  bool operator==(const Heredoc&) const = default;
};

// One instruction of a Dockerfile.
struct Node {
  // The instruction keyword exactly as written (`FROM`, `from`, `RuN`). Error
  // messages quote it as written; the dump lower-cases it.
  std::string keyword;
  // The leading `--flag[=value]` words, quotes removed (`--` ends them, dropped).
  std::vector<std::string> flags;
  // The arguments, shaped per instruction as the reference shapes them:
  //   FROM, EXPOSE: whitespace-split words.
  //   RUN, CMD, ENTRYPOINT, SHELL: the JSON array's strings when `json_form`,
  //     else one string with the rest of the line verbatim.
  //   ADD, COPY, VOLUME: the JSON array's strings, else whitespace-split words.
  //   ENV, LABEL: triples (key, value, separator); separator is "=" for the
  //     k=v form and "" for the legacy `ENV key value...` form.
  //   ARG: the words, quotes kept.
  //   MAINTAINER, USER, WORKDIR, STOPSIGNAL: one string.
  //   HEALTHCHECK: the sub-command (`CMD`, `NONE`...) then the RUN/CMD shape.
  //   ONBUILD: empty; the trigger is in `onbuild_trigger`.
  //   unknown keywords: one empty string.
  std::vector<std::string> args;
  // For ONBUILD: the wrapped instruction.
  std::shared_ptr<const Node> onbuild_trigger;
  // The arguments came from a JSON array (exec form).
  bool json_form = false;
  std::vector<Heredoc> heredocs;
  // The logical line as joined from its physical lines (continuations removed,
  // comment and blank lines dropped), without heredoc bodies.
  std::string original;
  // 1-based, inclusive: the first and last physical line of the instruction,
  // heredoc bodies included.
  int start_line = 0;
  int end_line = 0;
};

// A non-fatal finding, as the reference reports them (e.g. an empty
// continuation line).
struct Warning {
  std::string short_text;
  std::vector<std::string> detail;
  std::string url;
  int start_line = 0;
  int end_line = 0;
};

// Parser directives from the leading comment block.
struct Directives {
  char escape_token = '\\';
  std::string syntax;  // `# syntax=`, empty when absent
  std::string check;   // `# check=`, empty when absent
};

struct ParseResult {
  std::vector<Node> children;  // one per instruction, in file order
  Directives directives;
  std::vector<Warning> warnings;
  int start_line = 0;  // of the first instruction
  int end_line = 0;    // of the last instruction
};

// Parses a whole Dockerfile. `filename` prefixes error messages
// ("Dockerfile:12: ..."). A UTF-8 BOM and CRLF line ends are accepted.
// Returns InvalidArgument for input the reference rejects (no instructions,
// bad directives, JSON arrays with non-string elements, ENV without a value,
// unterminated heredocs...). Input over the size limit is rejected with
// ResourceExhausted rather than parsed.
absl::StatusOr<ParseResult> Parse(absl::string_view data,
                                  absl::string_view filename = "Dockerfile");

// The upper bound Parse accepts, in bytes.
inline constexpr size_t kMaxDockerfileBytes = 64 << 20;

// The reference's `Node.Dump()` of the whole tree plus a final newline: the
// format of the conformance `result` files.
std::string Dump(const ParseResult& result);
std::string DumpNode(const Node& node);

// Exposed for instruction parsing and tests: the reference's parseWords, which
// splits on unquoted, unescaped whitespace and keeps quotes and escapes.
std::vector<std::string> ParseWords(absl::string_view rest, char escape_token);

// A heredoc parsed from one word (`<<EOF`, `<<-'EOF'`, `<< EOF`): nullptr-like
// empty optional when the word is not a heredoc, an error for an unterminated
// quote in the delimiter.
struct HeredocSpec {
  bool is_heredoc = false;
  Heredoc heredoc;  // name, file_descriptor, expand, chomp; no content
};
absl::StatusOr<HeredocSpec> ParseHeredoc(absl::string_view word);

// The heredocs a (shell-form) instruction line opens, in order.
absl::StatusOr<std::vector<Heredoc>> HeredocsFromLine(absl::string_view line);

}  // namespace stagefarm::dockerfile
