// Shell-word expansion for Dockerfile instructions: quotes, escapes, $VAR and ${VAR...}
// substitution and word splitting, with the semantics of BuildKit's
// frontend/dockerfile/shell/lex.go (Linux: variable names are case-sensitive).
//
// This is not a shell: there is no command substitution, arithmetic, globbing or field
// splitting on IFS. What is supported, exactly as BuildKit supports it:
//   $NAME ${NAME}                      plain substitution; unset expands to ""
//   ${NAME:-word} ${NAME-word}         default when unset (":" also when empty)
//   ${NAME:+word} ${NAME+word}         alternative when set (":" only when non-empty)
//   ${NAME:?msg}  ${NAME?msg}          error "NAME: msg" when unset (":" also when empty)
//   ${NAME#pat} ${NAME##pat}           remove shortest / longest matching prefix
//   ${NAME%pat} ${NAME%%pat}           remove shortest / longest matching suffix
//   ${NAME/pat/repl} ${NAME//pat/repl} replace the first / every match; in the "//" form
//                                      repl is a Go regexp template ("$0" is the match,
//                                      "$$" is "$", other "$name"s are empty)
//   $1 $@ $* $# $? $- $$ $! $0         positional and special parameters, looked up like
//                                      any name (a Dockerfile never sets them)
// Patterns know `*`, `?` and `\`-escapes of `*`, `?`, `\`, `}` and `/`; `[` is a literal
// (BuildKit translates patterns to Go regexps, so like them `*` and `?` never match "\n").
// Input is read as UTF-8: a byte that is not part of valid UTF-8 becomes U+FFFD, and a
// leading byte-order mark is dropped, as Go's text/scanner does.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace stagefarm::dockerfile {

// Looks a variable up by name: its value ("" when set but empty), or nullopt when unset.
// The returned view must stay valid until the expansion that asked for it returns.
using EnvLookup = absl::FunctionRef<std::optional<absl::string_view>(absl::string_view name)>;

// An ordered environment, as ENV and ARG build one. Callable, so it can be passed wherever
// an EnvLookup is expected: `lexer.ProcessWord(word, env)`.
class ShellEnv {
 public:
  ShellEnv() = default;
  // Each entry is "NAME=value", split at the first '='; an entry without '=' sets NAME to
  // the empty string. When a name repeats, the last value wins.
  explicit ShellEnv(absl::Span<const std::string> entries);
  ShellEnv(std::initializer_list<absl::string_view> entries);

  // Sets `name` to `value`. A name that is already set keeps its position in entries().
  void Set(absl::string_view name, absl::string_view value);

  // The value of `name`, or nullopt when unset. The view is invalidated by the next Set().
  std::optional<absl::string_view> Get(absl::string_view name) const;
  std::optional<absl::string_view> operator()(absl::string_view name) const { return Get(name); }

  // (name, value) pairs in the order the names were first set.
  const std::vector<std::pair<std::string, std::string>>& entries() const { return entries_; }

 private:
  void SetEntry(absl::string_view entry);

  std::vector<std::pair<std::string, std::string>> entries_;
  absl::flat_hash_map<std::string, size_t> index_;  // name -> position in entries_
};

// Switches that mirror the public fields of BuildKit's shell.Lex. All default to off, which
// is how instructions expand their arguments.
struct ShellLexerOptions {
  // Keep quote characters in the result instead of removing them.
  bool raw_quotes = false;
  // Keep escape tokens in the result instead of removing them.
  bool raw_escapes = false;
  // Leave references to unset variables as written ("$X", "${X:-d}") instead of expanding.
  bool skip_unset_env = false;
  // Treat ' and " as ordinary characters.
  bool skip_process_quotes = false;
};

// The result of expanding one word, with the variables it referenced.
struct ExpandedWord {
  // The expanded word, quotes removed and inner whitespace kept (ProcessWord's result).
  std::string word;
  // The expansion split on unquoted whitespace (ProcessWords' result).
  std::vector<std::string> words;
  // Names that were looked up and found set (possibly empty).
  absl::flat_hash_set<std::string> matched;
  // Names that were looked up and found unset.
  absl::flat_hash_set<std::string> unmatched;
};

// Expands shell words. Stateless between calls; safe to share across threads.
class ShellLexer {
 public:
  // How deeply ${NAME<op>word} may nest inside another's word, counting the word itself
  // as the first level. BuildKit has no limit; this one keeps hostile input from exhausting
  // the stack (each level costs about 2 KiB of it, 12 KiB under AddressSanitizer), far
  // above anything a real Dockerfile writes.
  static constexpr int kMaxNestingDepth = 100;

  // `escape_token` is the Dockerfile escape character, '\\' or '`'.
  explicit ShellLexer(char escape_token, ShellLexerOptions options = {});

  // Replaces variable references in `word` using `env` and removes quotes and escapes.
  // Fails with InvalidArgument, naming the word, on unterminated quotes, malformed ${...},
  // a ${NAME?msg} whose variable is unset, a bad pattern, or nesting beyond
  // kMaxNestingDepth.
  absl::StatusOr<std::string> ProcessWord(absl::string_view word, EnvLookup env) const;

  // As ProcessWord, then splits the result on whitespace that was not quoted or escaped,
  // including whitespace that came from a substitution. Empty words are dropped.
  //
  // Faithful to BuildKit (its lexer shares one word buffer across nesting levels), the
  // part of the current word that precedes a ${NAME<op>...} with any operator, quoted or
  // not, is dropped from the split result: ProcessWords("x ab${X:-c}d") is {"x", "cd"},
  // while ProcessWord gives "x abcd". Plain $NAME and ${NAME} are not affected.
  absl::StatusOr<std::vector<std::string>> ProcessWords(absl::string_view word,
                                                        EnvLookup env) const;

  // Both of the above at once, plus which variables were referenced. Names referenced in
  // a branch that was not taken (the default in ${SET:-$OTHER}) are still reported.
  absl::StatusOr<ExpandedWord> ProcessWordWithMatches(absl::string_view word, EnvLookup env) const;

 private:
  char escape_token_;
  ShellLexerOptions options_;
};

}  // namespace stagefarm::dockerfile
