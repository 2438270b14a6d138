// libFuzzer entry point for the Dockerfile frontend: the parser, the dump, the
// shell-word expander on every argument the parser produced (with both escape
// tokens) and on the raw input, and the .dockerignore reader and matcher.
// Any crash, hang, leak or sanitizer report is a bug; results are not checked
// here (the unit tests do that), only that every path returns.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "common/dockerfile/dockerignore.h"
#include "common/dockerfile/parser.h"
#include "common/dockerfile/shell_lexer.h"

namespace {

using stagefarm::dockerfile::ShellEnv;
using stagefarm::dockerfile::ShellLexer;

void ExpandAll(const ShellLexer& lexer, const ShellEnv& env, const std::string& word) {
  (void)lexer.ProcessWordWithMatches(word, env);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const ShellEnv env{"PWD=/home", "SPACED=a b  c", "EMPTY=", "KOREAN=한국어"};

  auto parsed = stagefarm::dockerfile::Parse(text);
  if (parsed.ok()) {
    (void)stagefarm::dockerfile::Dump(*parsed);
    const ShellLexer lexer(parsed->directives.escape_token);
    for (const auto& node : parsed->children) {
      for (const auto& arg : node.args) ExpandAll(lexer, env, arg);
      for (const auto& heredoc : node.heredocs) ExpandAll(lexer, env, heredoc.content);
    }
  }

  // The expander on arbitrary input, bounded so one case stays fast.
  const std::string word = text.substr(0, 4096);
  ExpandAll(ShellLexer('\\'), env, word);
  ExpandAll(ShellLexer('`'), env, word);

  auto patterns = stagefarm::dockerfile::ReadDockerignore(text.substr(0, 4096));
  if (patterns.ok()) {
    auto matcher = stagefarm::dockerfile::PatternMatcher::Create(*patterns);
    if (matcher.ok()) {
      for (const char* path : {"a", "a/b/c", "dir/file.txt", ".git/config", "x/y/z/w/v"}) {
        (void)matcher->MatchesOrParentMatches(path);
      }
    }
  }
  return 0;
}
