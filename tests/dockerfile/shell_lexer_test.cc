#include "common/dockerfile/shell_lexer.h"

#include <chrono>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/corpus.h"

namespace stagefarm::dockerfile {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// The lines of a file as Go's bufio.Scanner yields them: split on "\n", a trailing "\r"
// dropped, and no empty line after a final "\n".
std::vector<absl::string_view> ScannerLines(absl::string_view content) {
  std::vector<absl::string_view> lines = absl::StrSplit(content, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  for (absl::string_view& line : lines) absl::ConsumeSuffix(&line, "\r");
  return lines;
}

std::string Describe(const absl::StatusOr<std::string>& result) {
  return result.ok() ? absl::StrCat("\"", *result, "\"") : result.status().ToString();
}

std::string Describe(const absl::StatusOr<std::vector<std::string>>& result) {
  return result.ok() ? absl::StrCat("[", absl::StrJoin(*result, ","), "]")
                     : result.status().ToString();
}

// buildkit frontend/dockerfile/shell TestShellParser4EnvVars, on Linux.
TEST(ShellLexerConformanceTest, EnvVarTest_EveryLinuxCaseExpandsLikeBuildKit) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  const std::string content =
      stagefarm::testing::ReadFileOrFail(dir / "buildkit-shell" / "envVarTest");
  const ShellLexer lexer('\\');
  const ShellEnv env = {"PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="};

  int cases_run = 0;
  int line_number = 0;
  for (absl::string_view line : ScannerLines(content)) {
    ++line_number;
    if (absl::StartsWith(line, "#")) continue;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    const std::vector<absl::string_view> fields = absl::StrSplit(line, '|');
    ASSERT_EQ(fields.size(), 3u) << "envVarTest:" << line_number << ": " << line;
    const absl::string_view platform = absl::StripAsciiWhitespace(fields[0]);
    const absl::string_view input = absl::StripAsciiWhitespace(fields[1]);
    const absl::string_view expected = absl::StripAsciiWhitespace(fields[2]);
    ASSERT_TRUE(platform == "A" || platform == "U" || platform == "W")
        << "envVarTest:" << line_number << ": bad platform " << platform;
    if (platform == "W") continue;

    ++cases_run;
    const absl::StatusOr<std::string> result = lexer.ProcessWord(input, env);
    if (expected == "error") {
      EXPECT_FALSE(result.ok()) << "envVarTest:" << line_number << ": " << input
                                << " should fail, got " << Describe(result);
    } else {
      EXPECT_TRUE(result.ok() && *result == expected)
          << "envVarTest:" << line_number << ": " << input << " should give \"" << expected
          << "\", got " << Describe(result);
    }
  }
  EXPECT_EQ(cases_run, 228);
}

// buildkit frontend/dockerfile/shell TestShellParser4Words (the mode that actually runs).
TEST(ShellLexerConformanceTest, WordsTest_EveryCaseSplitsLikeBuildKit) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  const std::string content =
      stagefarm::testing::ReadFileOrFail(dir / "buildkit-shell" / "wordsTest");
  const ShellLexer lexer('\\');
  ShellEnv env;

  int cases_run = 0;
  int line_number = 0;
  for (absl::string_view line : ScannerLines(content)) {
    ++line_number;
    if (absl::StartsWith(line, "#")) continue;
    if (absl::StartsWith(line, "ENV ")) {
      const absl::string_view entry = absl::StripLeadingAsciiWhitespace(line.substr(3));
      const size_t equals = entry.find('=');
      ASSERT_NE(equals, absl::string_view::npos) << "wordsTest:" << line_number;
      env.Set(entry.substr(0, equals), entry.substr(equals + 1));
      continue;
    }
    const std::vector<absl::string_view> sides = absl::StrSplit(line, '|');
    ASSERT_EQ(sides.size(), 2u) << "wordsTest:" << line_number << ": " << line;
    const absl::string_view input = absl::StripAsciiWhitespace(sides[0]);
    absl::string_view expected_text = sides[1];
    while (absl::ConsumePrefix(&expected_text, " ")) {
    }
    const std::vector<std::string> expected = absl::StrSplit(expected_text, ',');

    ++cases_run;
    const absl::StatusOr<std::vector<std::string>> result = lexer.ProcessWords(input, env);
    const std::vector<std::string> got = result.ok() ? *result : std::vector<std::string>{"error"};
    EXPECT_EQ(got, expected) << "wordsTest:" << line_number << ": " << input << " gave "
                             << Describe(result);
  }
  EXPECT_EQ(cases_run, 24);
}

// ---------------------------------------------------------------------------------------
// Substitution forms.

TEST(ShellLexerTest, DefaultAndAlternative_DistinguishUnsetFromEmptyOnlyWithoutColon) {
  const ShellLexer lexer('\\');
  const ShellEnv env = {"FOO=xxx", "BAR="};
  EXPECT_EQ(*lexer.ProcessWord("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", env), "xxx  ccc");
  EXPECT_EQ(*lexer.ProcessWord("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", env), "xxx bbb ccc");
  EXPECT_EQ(*lexer.ProcessWord("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", env), "aaa bbb ");
  EXPECT_EQ(*lexer.ProcessWord("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", env), "aaa  ");
}

TEST(ShellLexerTest, MandatoryVariable_FailsWithTheGivenMessage) {
  const ShellLexer lexer('\\');
  const ShellEnv set = {"VAR=plain", "ARG=x"};
  const ShellEnv empty = {"VAR=", "ARG=x"};
  const ShellEnv unset = {"ARG=x"};

  EXPECT_EQ(*lexer.ProcessWord("${VAR:?message here$ARG}", set), "plain");
  EXPECT_THAT(lexer.ProcessWord("${VAR:?message here$ARG}", empty).status().message(),
              HasSubstr("VAR: message herex"));
  EXPECT_THAT(lexer.ProcessWord("${VAR:?message here$ARG}", unset).status().message(),
              HasSubstr("VAR: message herex"));

  EXPECT_EQ(*lexer.ProcessWord("${VAR?message here$ARG}", set), "plain");
  EXPECT_EQ(*lexer.ProcessWord("${VAR?message here$ARG}", empty), "");
  EXPECT_THAT(lexer.ProcessWord("${VAR?message here$ARG}", unset).status().message(),
              HasSubstr("VAR: message herex"));

  EXPECT_THAT(lexer.ProcessWord("${VAR?}", unset).status().message(),
              HasSubstr("VAR: is not allowed to be unset"));
  EXPECT_THAT(lexer.ProcessWord("${VAR:?}", empty).status().message(),
              HasSubstr("VAR: is not allowed to be empty"));
}

TEST(ShellLexerTest, PrefixAndSuffixRemoval_TakeShortestOrLongestMatch) {
  const ShellLexer lexer('\\');
  const auto expand = [&](absl::string_view word, const ShellEnv& env) {
    return Describe(lexer.ProcessWord(word, env));
  };
  const ShellEnv xxyy = {"FOO=xxyy"};
  EXPECT_EQ(expand("${FOO#*x*y}", xxyy), "\"y\"");
  EXPECT_EQ(expand("${FOO#*}", xxyy), "\"xxyy\"");
  EXPECT_EQ(expand("${FOO#}", xxyy), "\"xxyy\"");
  EXPECT_EQ(expand("${FOO##*x}", xxyy), "\"yy\"");
  EXPECT_EQ(expand("${FOO##}", xxyy), "\"xxyy\"");
  EXPECT_EQ(expand("${FOO%y*}", xxyy), "\"xxy\"");
  EXPECT_EQ(expand("${FOO%%y*}", xxyy), "\"xx\"");
  EXPECT_EQ(expand("${FOO%}", xxyy), "\"xxyy\"");
  EXPECT_EQ(expand("${ABC:-.}${FOO%x}${ABC:-.}", xxyy), "\".xxyy.\"");
  EXPECT_EQ(expand("${FOO#$BAR}", ShellEnv{"FOO=xxyy", "BAR=x"}), "\"xyy\"");
  EXPECT_EQ(expand("${FOO%%$BAR}", ShellEnv{"FOO=xxyy", "BAR="}), "\"xxyy\"");
  EXPECT_EQ(expand("${FOO%.txt}", ShellEnv{"FOO=a.b.txt"}), "\"a.b\"");
  EXPECT_EQ(expand("${FOO%%.*}", ShellEnv{"FOO=a.b.txt"}), "\"a\"");
  EXPECT_EQ(expand("${FOO#?\\?}", ShellEnv{"FOO=???y"}), "\"?y\"");
  EXPECT_EQ(expand("${FOO%%\\**}", ShellEnv{"FOO=xx**"}), "\"xx\"");
  EXPECT_EQ(expand("${FOO%%\\**\\*}", ShellEnv{"FOO=a***yy*"}), "\"a\"");
  // Every regexp metacharacter is literal; "\}" keeps } from closing the ${}.
  EXPECT_EQ(expand("${FOO#()[]{\\}^$.\\*\\?|\\\\}", ShellEnv{"FOO=()[]{}^$.*?|\\x"}), "\"x\"");
}

TEST(ShellLexerTest, PatternOperators_RejectColonForms) {
  const ShellLexer lexer('\\');
  const ShellEnv env = {"FOO=xxyy"};
  for (absl::string_view word : {"${FOO:#}", "${FOO:##}", "${FOO:%}", "${FOO:%%}"}) {
    EXPECT_THAT(lexer.ProcessWord(word, env).status().message(), HasSubstr("unsupported modifier"))
        << word;
  }
}

TEST(ShellLexerTest, Patterns_TreatBracketsLiterallyAndNeverMatchNewline) {
  const ShellLexer lexer('\\');
  EXPECT_EQ(*lexer.ProcessWord("${FOO#[ab]}", ShellEnv{"FOO=[ab]c"}), "c");
  EXPECT_EQ(*lexer.ProcessWord("${FOO#[ab]}", ShellEnv{"FOO=ac"}), "ac");
  // Go's "." does not match "\n", so neither do * and ?.
  EXPECT_EQ(*lexer.ProcessWord("${FOO##*b}", ShellEnv{"FOO=ab\nab"}), "\nab");
  EXPECT_EQ(*lexer.ProcessWord("${FOO#a?}", ShellEnv{"FOO=a\nb"}), "a\nb");
}

TEST(ShellLexerTest, Patterns_RejectEscapesOfOrdinaryCharacters) {
  const ShellLexer lexer('\\');
  const absl::StatusOr<std::string> result = lexer.ProcessWord("${FOO#\\x}", ShellEnv{"FOO=xx"});
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("invalid pattern (\\x) in substitution"));
}

TEST(ShellLexerTest, Replacement_ReplacesFirstOrEveryMatch) {
  const ShellLexer lexer('\\');
  const auto expand = [&](absl::string_view word, const ShellEnv& env) {
    return Describe(lexer.ProcessWord(word, env));
  };
  EXPECT_EQ(
      expand("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", ShellEnv{"FOO=/foo*/*/*.txt", "NEEDLE=\\*/"}),
      "\"/foo.*/*.txt - /foo..*.txt\"");
  EXPECT_EQ(
      expand("${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", ShellEnv{"FOO=/tmp/tmp/bar.txt", "NEEDLE=/tmp"}),
      "\"/tmp/bar.txt - /bar.txt\"");
  EXPECT_EQ(expand("${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
                   ShellEnv{"FOO=/a/foo/b/c.txt", "NEEDLE=/?/", "REPLACEMENT=/"}),
            "\"/foo/b/c.txt - /foo/c.txt\"");
  EXPECT_EQ(expand("${FOO/$NEEDLE/$REPLACEMENT}",
                   ShellEnv{"FOO=http://google.de", "NEEDLE=http://", "REPLACEMENT=https://"}),
            "\"https://google.de\"");
  EXPECT_EQ(expand("${FOO//\\//\\/}", ShellEnv{"FOO=/tmp/foo.txt"}), "\"\\/tmp\\/foo.txt\"");
  EXPECT_EQ(expand("${FOO/$BAR/ww}", ShellEnv{"FOO=xxyy", "BAR="}), "\"wwxxyy\"");
  EXPECT_EQ(expand("${FOO///}", ShellEnv{"FOO=xxyy"}), "\"xxyy\"");
  EXPECT_EQ(expand("${FOO///}", ShellEnv{}), "\"\"");
  EXPECT_FALSE(lexer.ProcessWord("${FOO//ww}", ShellEnv{"FOO=xxyy"}).ok());
  EXPECT_FALSE(lexer.ProcessWord("${FOO//}", ShellEnv{"FOO=xxyy"}).ok());
}

TEST(ShellLexerTest, ReplaceAll_ExpandsDollarReferencesLikeGoTemplates) {
  const ShellLexer lexer('\\');
  // ReplaceAllString reads "$0" as the match, "$$" as "$", other references as empty; the
  // single replacement is inserted literally.
  const ShellEnv env = {"FOO=abcb", "R=<$0|$$|$1|${x}|$>"};
  EXPECT_EQ(*lexer.ProcessWord("${FOO//b/$R}", env), "a<b|$|||$>c<b|$|||$>");
  EXPECT_EQ(*lexer.ProcessWord("${FOO/b/$R}", env), "a<$0|$$|$1|${x}|$>cb");
}

TEST(ShellLexerTest, ReplaceAll_WithEmptyMatchesInsertsBetweenRunes) {
  const ShellLexer lexer('\\');
  EXPECT_EQ(*lexer.ProcessWord("${FOO//$E/-}", ShellEnv{"FOO=aé", "E="}), "-a-é-");
  EXPECT_EQ(*lexer.ProcessWord("${FOO//*/-}", ShellEnv{"FOO=ab"}), "-");
}

// ---------------------------------------------------------------------------------------
// Variable references.

TEST(ShellLexerTest, ProcessWordWithMatches_ReportsFoundAndMissingNames) {
  const ShellLexer lexer('\\');
  const ShellEnv env = {"FOO=xxx", "BAR="};

  absl::StatusOr<ExpandedWord> result = lexer.ProcessWordWithMatches("x", env);
  ASSERT_TRUE(result.ok());
  EXPECT_THAT(result->matched, IsEmpty());
  EXPECT_THAT(result->unmatched, IsEmpty());

  result = lexer.ProcessWordWithMatches("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", env);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->word, "xxx bbb ccc");
  EXPECT_THAT(result->words, ElementsAre("xxx", "bbb", "ccc"));
  EXPECT_THAT(result->matched, UnorderedElementsAre("FOO", "BAR"));
  EXPECT_THAT(result->unmatched, UnorderedElementsAre("BAZ"));

  // The default is expanded, and its names reported, even when it is not used.
  result = lexer.ProcessWordWithMatches("${FOO:-$QUX}$1${@}", env);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->word, "xxx");
  EXPECT_THAT(result->matched, UnorderedElementsAre("FOO"));
  EXPECT_THAT(result->unmatched, UnorderedElementsAre("QUX", "1", "@"));

  result = lexer.ProcessWordWithMatches(
      "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
      ShellEnv{"VERSION=v1.2.3", "TARGETOS=linux", "TARGETARCH=arm", "TARGETVARIANT=v7"});
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->word, "something-v1.2.3.linux-arm-v7.tar.gz");
  EXPECT_THAT(result->matched,
              UnorderedElementsAre("VERSION", "TARGETOS", "TARGETARCH", "TARGETVARIANT"));
}

TEST(ShellLexerTest, UnsupportedForms_AreErrorsThatNameTheWord) {
  const ShellLexer lexer('\\');
  const ShellEnv env = {"FOO=xxx"};
  for (absl::string_view word : {"${FOO=aaa}", "${FOO=:aaa}", "${FOO=}", "${FOO:=x}", "${#FOO}",
                                 "${FOO:1:2}", "${FOO", "${", "${}", "${:-x}"}) {
    const absl::StatusOr<std::string> result = lexer.ProcessWord(word, env);
    ASSERT_FALSE(result.ok()) << word;
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(result.status().message(),
                HasSubstr(absl::StrCat("failed to process \"", word, "\": ")));
  }
  EXPECT_EQ(lexer.ProcessWord("a${FOO", env).status().message(),
            "failed to process \"a${FOO\": unsupported modifier (\xEF\xBF\xBD) in substitution");
  EXPECT_EQ(lexer.ProcessWord("${FOO:-x", env).status().message(),
            "failed to process \"${FOO:-x\": syntax error: missing '}'");
  EXPECT_EQ(lexer.ProcessWord("${}", env).status().message(),
            "failed to process \"${}\": syntax error: bad substitution");
}

TEST(ShellLexerTest, LookupCallable_CanBeALambda) {
  const ShellLexer lexer('\\');
  const auto env = [](absl::string_view name) -> std::optional<absl::string_view> {
    if (name == "HOME") return "/root";
    return std::nullopt;
  };
  EXPECT_EQ(*lexer.ProcessWord("$HOME/${MISSING:-x}", env), "/root/x");
}

// ---------------------------------------------------------------------------------------
// Quotes, escapes and options.

TEST(ShellLexerTest, BacktickEscapeToken_EscapesAndLeavesBackslashLiteral) {
  const ShellLexer lexer('`');
  const ShellEnv env = {"PWD=/home"};
  EXPECT_EQ(*lexer.ProcessWord("C:\\path\\$PWD", env), "C:\\path\\/home");
  EXPECT_EQ(*lexer.ProcessWord("he`$PWD", env), "he$PWD");
  EXPECT_EQ(*lexer.ProcessWord("he``$PWD", env), "he`/home");
  EXPECT_EQ(*lexer.ProcessWord("\"a`\"b`$PWD\\n\"", env), "a\"b$PWD\\n");
  EXPECT_EQ(*lexer.ProcessWord("it`'s", env), "it's");
  EXPECT_EQ(*lexer.ProcessWord("trailing`", env), "trailing");
  EXPECT_THAT(*lexer.ProcessWords("a` b c", env), ElementsAre("a b", "c"));
}

TEST(ShellLexerTest, RawQuotesAndSkipUnsetEnv_KeepTheWordAsWritten) {
  const ShellLexer lexer('\\', {.raw_quotes = true, .skip_unset_env = true});
  const ShellEnv env = {"SET=v"};
  EXPECT_EQ(*lexer.ProcessWord("'a b' \"$SET $X\" $X ${X} ${X:-d} ${X/a/b} ${X//a/b}", env),
            "'a b' \"v $X\" $X ${X} ${X:-d} ${X/a/b} ${X/a/b}");
  // A malformed ${X:} is kept instead of failing when X is unset.
  EXPECT_EQ(*lexer.ProcessWord("${X:}y}", env), "${X:}y}");
}

TEST(ShellLexerTest, RawEscapes_KeepEscapeTokens) {
  const ShellLexer lexer('\\', {.raw_escapes = true});
  const ShellEnv env = {"A=1"};
  EXPECT_EQ(*lexer.ProcessWord("a\\ b\\$A", env), "a\\ b\\$A");
  // Inside double quotes a kept escape before an ordinary character appears twice, as in
  // BuildKit.
  EXPECT_EQ(*lexer.ProcessWord("\"\\$A\\x\"", env), "\\$A\\\\x");
}

TEST(ShellLexerTest, SkipProcessQuotes_TreatsQuotesAsText) {
  const ShellLexer lexer('\\', {.skip_process_quotes = true});
  const ShellEnv env = {"A=1"};
  EXPECT_EQ(*lexer.ProcessWord("'$A' \"$A\"", env), "'1' \"1\"");
  EXPECT_THAT(*lexer.ProcessWords("'a b'", env), ElementsAre("'a", "b'"));
}

// ---------------------------------------------------------------------------------------
// Word splitting.

TEST(ShellLexerTest, ProcessWords_SplitsSubstitutionsButNotQuotes) {
  const ShellLexer lexer('\\');
  const ShellEnv env = {"SPACE=a \t b", "EMPTY="};
  EXPECT_THAT(*lexer.ProcessWords("x${SPACE}y \"${SPACE}\"", env),
              ElementsAre("xa", "by", "a \t b"));
  EXPECT_THAT(*lexer.ProcessWords("\"\" '' $EMPTY", env), IsEmpty());
  EXPECT_THAT(*lexer.ProcessWords("${EMPTY:-\"1 2\"}", env), ElementsAre("1", "2"));
}

TEST(ShellLexerTest, ProcessWords_DropsWordTextBeforeANestedExpansionLikeBuildKit) {
  const ShellLexer lexer('\\');
  const ShellEnv env;
  absl::StatusOr<ExpandedWord> result = lexer.ProcessWordWithMatches("x ab${X:-c}d", env);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->word, "x abcd");
  EXPECT_THAT(result->words, ElementsAre("x", "cd"));
  // A plain ${X} does not start a nested level, so nothing is lost.
  EXPECT_THAT(*lexer.ProcessWords("ab${X}d", env), ElementsAre("abd"));
}

// ---------------------------------------------------------------------------------------
// Hostile input.

TEST(ShellLexerTest, HeredocOperator_KeepsTheBlanksAfterItInTheSameWord) {
  const ShellLexer lexer('\\');
  const auto none = [](absl::string_view) -> std::optional<absl::string_view> {
    return std::nullopt;
  };
  // `<<` swallows spaces, tabs and carriage returns so the delimiter joins it.
  EXPECT_THAT(*lexer.ProcessWords("RUN <<  EOF  > foo", none),
              ElementsAre("RUN", "<<  EOF", ">", "foo"));
  EXPECT_THAT(*lexer.ProcessWords("cat <<\tEOF", none), ElementsAre("cat", "<<\tEOF"));
  // `<<-` then a blank is not joined (BuildKit at the pinned version).
  EXPECT_THAT(*lexer.ProcessWords("<<- EOF", none), ElementsAre("<<-", "EOF"));
  // A single `<` is an ordinary character; the result text is unchanged.
  EXPECT_THAT(*lexer.ProcessWords("a < b<c", none), ElementsAre("a", "<", "b<c"));
  EXPECT_EQ(*lexer.ProcessWord("x <<  y", none), "x <<  y");
}

TEST(ShellLexerTest, DeepNesting_FailsCleanlyInsteadOfOverflowingTheStack) {
  const ShellLexer lexer('\\');
  std::string word;
  constexpr int kDepth = 10000;
  for (int i = 0; i < kDepth; ++i) word += "${a:-";
  word += "x";
  for (int i = 0; i < kDepth; ++i) word += "}";
  const absl::StatusOr<std::string> result = lexer.ProcessWord(word, ShellEnv{});
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("nested more than"));

  std::string quoted;
  for (int i = 0; i < kDepth; ++i) quoted += "\"${a:-";
  EXPECT_FALSE(lexer.ProcessWord(quoted, ShellEnv{}).ok());
}

TEST(ShellLexerTest, NestingUpToTheLimit_ExpandsCorrectly) {
  const ShellLexer lexer('\\');
  const auto nested = [](int levels) {
    std::string word;
    for (int i = 0; i < levels; ++i) word += "\"${a:-";
    word += "x";
    for (int i = 0; i < levels; ++i) word += "}\"";
    return word;
  };
  // The word itself is the first level.
  EXPECT_EQ(Describe(lexer.ProcessWord(nested(ShellLexer::kMaxNestingDepth - 1), ShellEnv{})),
            "\"x\"");
  EXPECT_THAT(
      lexer.ProcessWord(nested(ShellLexer::kMaxNestingDepth), ShellEnv{}).status().message(),
      HasSubstr("nested more than 100 levels deep"));
}

TEST(ShellLexerTest, VeryLongInput_ExpandsInLinearTime) {
  const ShellLexer lexer('\\');
  const ShellEnv env = {"V=value with spaces"};
  std::string word;
  std::string expected;
  constexpr int kRepeats = 200000;
  for (int i = 0; i < kRepeats; ++i) {
    word += "a$V'q'\\  ";
    expected += "avalue with spacesq  ";
  }
  const auto start = std::chrono::steady_clock::now();
  const absl::StatusOr<ExpandedWord> result = lexer.ProcessWordWithMatches(word, env);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->word, expected);
  EXPECT_EQ(result->words.size(), 3u * kRepeats);
  EXPECT_LT(elapsed, std::chrono::seconds(10));
}

TEST(ShellLexerTest, LongValueWithPatterns_IsTrimmedWithoutBlowup) {
  const ShellLexer lexer('\\');
  const ShellEnv env = {absl::StrCat("V=", std::string(500000, 'a'), "b")};
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(*lexer.ProcessWord("${V##*a}", env), "b");
  EXPECT_EQ(*lexer.ProcessWord("${V%%a*}", env), "");
  EXPECT_EQ(lexer.ProcessWord("${V//a/}", env)->size(), 1u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

TEST(ShellLexerTest, InvalidUtf8InTheWord_BecomesReplacementCharacters) {
  const ShellLexer lexer('\\');
  const ShellEnv env = {"RAW=\xFF\xFE"};
  // Like Go's text/scanner, each byte that is not valid UTF-8 reads as U+FFFD; values from
  // the environment are copied as they are.
  EXPECT_EQ(*lexer.ProcessWord("a\xC3(\xED\xA0\x80$RAW", env),
            "a\xEF\xBF\xBD(\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xFF\xFE");
  const absl::StatusOr<std::string> failed = lexer.ProcessWord("\xFF'", env);
  ASSERT_FALSE(failed.ok());
  EXPECT_THAT(failed.status().message(), HasSubstr("failed to process \"\\xff'\""));
}

TEST(ShellLexerTest, NulAndByteOrderMark_AreHandledLikeGoTextScanner) {
  const ShellLexer lexer('\\');
  const ShellEnv env = {"A=1"};
  EXPECT_EQ(*lexer.ProcessWord(absl::string_view("a\0$A", 4), env), std::string("a\0"
                                                                                "1",
                                                                                3));
  EXPECT_EQ(*lexer.ProcessWord("\xEF\xBB\xBF$A\xEF\xBB\xBF", env), "1\xEF\xBB\xBF");
}

TEST(ShellLexerTest, ArbitraryBytes_NeverCrash) {
  const ShellLexer lexer('\\');
  const ShellEnv env = {"A=a b", "B=", "C=*?\\"};
  std::mt19937 rng(20240611);
  const std::string alphabet = "${}:-+?#%/\\'\" \t\nabAB*?[]019@\xFF\xC3\xA9";
  std::uniform_int_distribution<size_t> pick(0, alphabet.size() - 1);
  std::uniform_int_distribution<int> length(0, 40);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int i = 0; i < 20000; ++i) {
    std::string word;
    const int n = length(rng);
    for (int k = 0; k < n; ++k) {
      word += i % 4 == 0 ? static_cast<char>(byte(rng)) : alphabet[pick(rng)];
    }
    const absl::StatusOr<ExpandedWord> result = lexer.ProcessWordWithMatches(word, env);
    if (!result.ok()) {
      EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
}

// ---------------------------------------------------------------------------------------
// ShellEnv.

TEST(ShellEnvTest, LastSetWins_AndNamesKeepTheirFirstPosition) {
  ShellEnv env = {"car=hat", "foo=bar", "car=bike", "bare", "eq=a=b"};
  EXPECT_EQ(env.Get("car"), "bike");
  EXPECT_EQ(env.Get("bare"), "");
  EXPECT_EQ(env.Get("eq"), "a=b");
  EXPECT_EQ(env.Get("missing"), std::nullopt);
  env.Set("foo", "baz");
  using Entry = std::pair<std::string, std::string>;
  EXPECT_THAT(env.entries(), ElementsAre(Entry{"car", "bike"}, Entry{"foo", "baz"},
                                         Entry{"bare", ""}, Entry{"eq", "a=b"}));
  const std::vector<std::string> list = {"X=1", "X=2"};
  EXPECT_EQ(ShellEnv(list).Get("X"), "2");
}

}  // namespace
}  // namespace stagefarm::dockerfile
