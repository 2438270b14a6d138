#include "common/dockerfile/parser.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/testing/corpus.h"

namespace stagefarm::dockerfile {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::SizeIs;

std::vector<fs::path> SortedSubdirs(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_directory()) out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

ParseResult MustParse(absl::string_view text) {
  absl::StatusOr<ParseResult> result = Parse(text);
  EXPECT_TRUE(result.ok()) << result.status() << "\n--- input ---\n" << text;
  return result.ok() ? *std::move(result) : ParseResult{};
}

// ---------------------------------------------------------------------------
// The reference corpus.

TEST(ParserConformance, EveryTestfileDumpsByteForByte) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  int checked = 0;
  for (const fs::path& tc : SortedSubdirs(dir / "buildkit-parser/testfiles")) {
    SCOPED_TRACE(tc.filename().string());
    const std::string input = testing::ReadFileOrFail(tc / "Dockerfile");
    const std::string expected = testing::ReadFileOrFail(tc / "result");
    absl::StatusOr<ParseResult> result = Parse(input);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(Dump(*result), expected);
    ++checked;
  }
  EXPECT_EQ(checked, 17);
}

TEST(ParserConformance, EveryNegativeTestfileIsRejected) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  int checked = 0;
  for (const fs::path& tc : SortedSubdirs(dir / "buildkit-parser/testfiles-negative")) {
    SCOPED_TRACE(tc.filename().string());
    absl::StatusOr<ParseResult> result = Parse(testing::ReadFileOrFail(tc / "Dockerfile"));
    EXPECT_FALSE(result.ok()) << Dump(*result);
    ++checked;
  }
  EXPECT_EQ(checked, 4);
}

TEST(ParserConformance, LineNumbersMatchTheFixture) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  const auto expected = nlohmann::json::parse(
      testing::ReadFileOrFail(dir / "buildkit-parser-extra/testfile-line.expected-lines.json"));
  ParseResult result =
      MustParse(testing::ReadFileOrFail(dir / "buildkit-parser/testfile-line/Dockerfile"));
  EXPECT_EQ(result.start_line, expected["root"]["StartLine"].get<int>());
  EXPECT_EQ(result.end_line, expected["root"]["EndLine"].get<int>());
  ASSERT_THAT(result.children, SizeIs(expected["root"]["children"].get<size_t>()));
  for (size_t i = 0; i < result.children.size(); ++i) {
    EXPECT_EQ(result.children[i].start_line, expected["children"][i][0].get<int>()) << i;
    EXPECT_EQ(result.children[i].end_line, expected["children"][i][1].get<int>()) << i;
  }
}

TEST(ParserConformance, EmptyContinuationLinesWarnOncePerInstruction) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  const auto expected = nlohmann::json::parse(testing::ReadFileOrFail(
      dir / "buildkit-parser-extra/empty-continuation-warnings.expected.json"));
  ParseResult result = MustParse(testing::ReadFileOrFail(
      dir / "buildkit-parser-extra/empty-continuation-warnings.Dockerfile"));
  ASSERT_THAT(result.warnings, SizeIs(expected["warnings_count"].get<size_t>()));
  for (size_t i = 0; i < result.warnings.size(); ++i) {
    const auto& want = expected["warnings"][i];
    for (const auto& part : want["short_contains"]) {
      EXPECT_THAT(result.warnings[i].short_text, HasSubstr(part.get<std::string>()));
    }
    if (want.contains("detail0_contains")) {
      ASSERT_FALSE(result.warnings[i].detail.empty());
      EXPECT_THAT(result.warnings[i].detail[0],
                  HasSubstr(want["detail0_contains"].get<std::string>()));
    }
  }
}

TEST(ParserConformance, ParseWordsKeepsQuotes) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  const std::string tsv = testing::ReadFileOrFail(dir / "buildkit-parser-extra/parse-words.tsv");
  int checked = 0;
  for (absl::string_view line : absl::StrSplit(tsv, '\n')) {
    if (line.empty() || line[0] == '#' || absl::StartsWith(line, "input\t")) continue;
    std::vector<std::string> cols = absl::StrSplit(line, '\t');
    ASSERT_THAT(cols, SizeIs(2)) << line;
    const auto expected = nlohmann::json::parse(cols[1]).get<std::vector<std::string>>();
    EXPECT_EQ(ParseWords(cols[0], '\\'), expected) << line;
    ++checked;
  }
  EXPECT_EQ(checked, 8);
}

void ExpectHeredocs(const nlohmann::json& cases, const ParseResult& result) {
  for (const auto& c : cases) {
    const auto index = c["child_index"].get<size_t>();
    SCOPED_TRACE(absl::StrCat("child ", index, " ", c.value("comment", "")));
    ASSERT_LT(index, result.children.size());
    const Node& node = result.children[index];
    std::vector<Heredoc> expected;
    if (!c["heredocs"].is_null()) {
      for (const auto& h : c["heredocs"]) {
        expected.push_back(Heredoc{.name = h["Name"].get<std::string>(),
                                   .content = h["Content"].get<std::string>(),
                                   .file_descriptor = h["FileDescriptor"].get<uint64_t>(),
                                   .expand = h["Expand"].get<bool>(),
                                   .chomp = h["Chomp"].get<bool>()});
      }
    }
    ASSERT_EQ(node.heredocs.size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_EQ(node.heredocs[i].name, expected[i].name);
      EXPECT_EQ(node.heredocs[i].content, expected[i].content);
      EXPECT_EQ(node.heredocs[i].file_descriptor, expected[i].file_descriptor);
      EXPECT_EQ(node.heredocs[i].expand, expected[i].expand);
      EXPECT_EQ(node.heredocs[i].chomp, expected[i].chomp);
    }
  }
}

TEST(ParserConformance, HeredocsAreExtracted) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  const auto expected = nlohmann::json::parse(
      testing::ReadFileOrFail(dir / "buildkit-heredoc/extracts-heredoc.expected.json"));
  ParseResult result =
      MustParse(testing::ReadFileOrFail(dir / "buildkit-heredoc/extracts-heredoc.Dockerfile"));
  EXPECT_THAT(expected["cases"], SizeIs(27));
  ExpectHeredocs(expected["cases"], result);
}

TEST(ParserConformance, JsonFormNeverCarriesHeredocs) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  const auto expected = nlohmann::json::parse(
      testing::ReadFileOrFail(dir / "buildkit-heredoc/json-no-heredoc.expected.json"));
  ParseResult result =
      MustParse(testing::ReadFileOrFail(dir / "buildkit-heredoc/json-no-heredoc.Dockerfile"));
  EXPECT_THAT(expected["cases"], SizeIs(3));
  ExpectHeredocs(expected["cases"], result);
}

// Rows of a two-column TSV with a header, skipping `#` comments.
std::vector<std::pair<std::string, std::string>> TsvRows(const std::string& text,
                                                         int skip_headers) {
  std::vector<std::pair<std::string, std::string>> rows;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!line.empty() && line[0] == '#') continue;
    if (line.empty()) continue;
    if (skip_headers-- > 0) continue;
    std::vector<std::string> cols = absl::StrSplit(line, absl::MaxSplits('\t', 1));
    cols.resize(2);
    rows.emplace_back(cols[0], cols[1]);
  }
  return rows;
}

TEST(ParserConformance, HeredocNamesFromLine) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  auto rows = TsvRows(testing::ReadFileOrFail(dir / "buildkit-heredoc/heredocs-from-line.tsv"), 1);
  ASSERT_THAT(rows, SizeIs(10));
  for (const auto& [line, names] : rows) {
    SCOPED_TRACE(line);
    absl::StatusOr<std::vector<Heredoc>> docs = HeredocsFromLine(line);
    ASSERT_TRUE(docs.ok()) << docs.status();
    const std::vector<std::string> expected =
        names.empty() ? std::vector<std::string>{} : absl::StrSplit(names, ',');
    // As upstream: every heredoc found must be the expected one at its position.
    ASSERT_LE(docs->size(), expected.size());
    for (size_t i = 0; i < docs->size(); ++i) EXPECT_EQ((*docs)[i].name, expected[i]);
  }
}

TEST(ParserConformance, ParseHeredocWord) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  auto rows = TsvRows(testing::ReadFileOrFail(dir / "buildkit-heredoc/parse-heredoc-words.tsv"), 1);
  ASSERT_THAT(rows, SizeIs(20));
  for (const auto& [word, expected] : rows) {
    SCOPED_TRACE(absl::StrCat("word=[", word, "]"));
    absl::StatusOr<HeredocSpec> spec = ParseHeredoc(word);
    if (expected == "error") {
      EXPECT_FALSE(spec.ok());
    } else if (expected == "none") {
      ASSERT_TRUE(spec.ok()) << spec.status();
      EXPECT_FALSE(spec->is_heredoc);
    } else {
      ASSERT_TRUE(spec.ok()) << spec.status();
      ASSERT_TRUE(spec->is_heredoc);
      EXPECT_EQ(spec->heredoc.name, expected);
    }
  }
}

// ---------------------------------------------------------------------------
// Behaviour the corpus does not cover, checked against the reference's code.

TEST(Parser, ByteOrderMarkAndCrlfAreAccepted) {
  ParseResult result =
      MustParse("\xEF\xBB\xBF# escape=`\r\nFROM busybox\r\nRUN echo a `\r\n  b\r\n");
  EXPECT_EQ(result.directives.escape_token, '`');
  EXPECT_EQ(Dump(result), "(from \"busybox\")\n(run \"echo a   b\")\n");
}

TEST(Parser, DirectivesAreOnlyReadInTheLeadingBlock) {
  EXPECT_EQ(MustParse("# syntax=docker/dockerfile:1\n# check=skip=all\n# ESCAPE = `\nFROM a\n")
                .directives.escape_token,
            '`');
  // A blank line ends the block.
  EXPECT_EQ(MustParse("\n# escape=`\nFROM a\n").directives.escape_token, '\\');
  // So does an unknown directive.
  EXPECT_EQ(MustParse("# foo=bar\n# escape=`\nFROM a\n").directives.escape_token, '\\');
  ParseResult r = MustParse("# syntax = docker/dockerfile:1.7  \n# check=error=true\nFROM a\n");
  EXPECT_EQ(r.directives.syntax, "docker/dockerfile:1.7");
  EXPECT_EQ(r.directives.check, "error=true");
}

TEST(Parser, DirectiveHashMayBeFollowedByAnyUnicodeSpace) {
  // Current BuildKit cuts the `#` and trims Unicode space before matching the
  // key, so U+00A0 after `#` still makes a directive (older releases matched
  // `^#\s*` with ASCII \s and read this line as a plain comment).
  ParseResult r = MustParse(
      "#\xc2\xa0"
      "escape=`\nRUN a `\n  b\n");
  EXPECT_EQ(r.directives.escape_token, '`');
  EXPECT_EQ(Dump(r), "(run \"a   b\")\n");
  EXPECT_EQ(MustParse("#\t escape=`\nFROM a\n").directives.escape_token, '`');
}

TEST(Parser, AllBlankDirectiveValueIsItsLastBlank) {
  // `=\s*(.+?)\s*$` backtracks the greedy `\s*`, so the lazy group gets the
  // last blank.
  EXPECT_EQ(MustParse("# syntax= \t\nFROM a\n").directives.syntax, "\t");
}

TEST(Parser, RepeatedDirectiveIsAnErrorWithItsLine) {
  absl::StatusOr<ParseResult> r = Parse("# escape=`\n# escape=\\\nFROM a\n", "df");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(),
              HasSubstr("df:2: only one escape parser directive can be used"));
}

TEST(Parser, InvalidEscapeTokenIsAnError) {
  absl::StatusOr<ParseResult> r = Parse("# escape=x\nFROM a\n");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("invalid escape token 'x' does not match ` or \\"));
}

TEST(Parser, KeywordKeepsItsCaseButDumpsLowerCase) {
  ParseResult r = MustParse("FrOm busybox AS Build\nfoo bar\n");
  EXPECT_EQ(r.children[0].keyword, "FrOm");
  EXPECT_EQ(Dump(r), "(from \"busybox\" \"AS\" \"Build\")\n(foo \"\")\n");
}

TEST(Parser, UnicodeKeywordsLowerCaseLikeGo) {
  // U+212A KELVIN SIGN lower-cases to ASCII 'k', so this is WORKDIR.
  ParseResult r = MustParse(
      "FROM a\nWOR\xE2\x84\xAA"
      "DIR /x y\n");
  EXPECT_EQ(Dump(r), "(from \"a\")\n(workdir \"/x y\")\n");
}

TEST(Parser, JsonFollowedByTextIsShellFormLikeGoUnmarshal) {
  EXPECT_EQ(Dump(MustParse("SHELL [\"/bin/sh\", \"-c\"] ]\n")),
            "(shell \"[\\\"/bin/sh\\\", \\\"-c\\\"] ]\")\n");
  EXPECT_EQ(Dump(MustParse("COPY [\"a\", \"b\"]x\n")), "(copy \"[\\\"a\\\",\" \"\\\"b\\\"]x\")\n");
  // The syntax error wins over the non-string element.
  EXPECT_EQ(Dump(MustParse("CMD [\"a\", 1] x\n")), "(cmd \"[\\\"a\\\", 1] x\")\n");
}

TEST(Parser, JsonWithNonStringElementIsAnErrorEvenWhenNested) {
  for (const char* text : {"CMD [\"a\", 1]\n", "RUN [\"a\", null]\n", "COPY [[\"a\"], \"b\"]\n",
                           "ENTRYPOINT [{\"a\": \"b\"}]\n", "HEALTHCHECK CMD [true]\n"}) {
    absl::StatusOr<ParseResult> r = Parse(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_THAT(r.status().message(), HasSubstr("arrays must be comprised of strings only"));
  }
}

TEST(Parser, EmptyObjectElementIsANonStringError) {
  for (const char* text : {"COPY [{}]\n", "CMD [\"a\", {}, \"b\"]\n", "RUN [{\"k\": {}}, {}]\n"}) {
    absl::StatusOr<ParseResult> r = Parse(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_THAT(r.status().message(), HasSubstr("arrays must be comprised of strings only"));
  }
}

TEST(Parser, MalformedJsonFallsBackToShellForm) {
  EXPECT_EQ(Dump(MustParse("CMD ['a', 'b']\n")), "(cmd \"['a', 'b']\")\n");
  EXPECT_EQ(Dump(MustParse("CMD [\"a\",]\n")), "(cmd \"[\\\"a\\\",]\")\n");
  EXPECT_EQ(Dump(MustParse("CMD [\"a\\q\"]\n")), "(cmd \"[\\\"a\\\\q\\\"]\")\n");
  // A number beyond float64 fails decoding rather than typing: shell form.
  EXPECT_EQ(Dump(MustParse("CMD [\"a\", 1e999]\n")), "(cmd \"[\\\"a\\\", 1e999]\")\n");
}

TEST(Parser, JsonStringsDecodeLikeGo) {
  // A lone surrogate becomes U+FFFD; a pair combines; invalid UTF-8 becomes U+FFFD.
  EXPECT_EQ(Dump(MustParse("CMD [\"\\ud800x\", \"\\ud83d\\ude00\", \"\xff\"]\n")),
            "(cmd \"\xEF\xBF\xBDx\" \"\xF0\x9F\x98\x80\" \"\xEF\xBF\xBD\")\n");
}

TEST(Parser, DumpQuotesLikeGoStrconv) {
  EXPECT_EQ(Dump(MustParse("RUN a\x01\x7f\xc2\xa0\xe2\x80\x8b\xff b\n")),
            "(run \"a\\x01\\x7f\\u00a0\\u200b\\xff b\")\n");
}

TEST(Parser, FlagsAreReadBytewiseWithBackslashEscapes) {
  EXPECT_EQ(Dump(MustParse("COPY --from=\"a b\" --chown=x\\ y -- --notaflag /d\n")),
            "(copy [\"--from=a b\" \"--chown=x y\"] \"--notaflag\" \"/d\")\n");
  // Bytes >= 0x80 inside flags are taken as Latin-1, as the reference does.
  EXPECT_EQ(Dump(MustParse("COPY --x=\xc3\xa9 a b\n")),
            "(copy [\"--x=\xc3\x83\xc2\xa9\"] \"a\" \"b\")\n");
}

TEST(Parser, EnvLegacyAndKeyValueForms) {
  EXPECT_EQ(
      Dump(MustParse("ENV A b c\nENV A=\"x y\" B=z\\ w\n")),
      "(env \"A\" \"b c\" \"\")\n(env \"A\" \"\\\"x y\\\"\" \"=\" \"B\" \"z\\\\ w\" \"=\")\n");
  absl::StatusOr<ParseResult> r = Parse("FROM a\nENV A=b C\n");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(),
              HasSubstr("Dockerfile:2: Syntax error - can't find = in \"C\". Must be of the form: "
                        "name=value"));
}

TEST(Parser, OnbuildWrapsItsTriggerAndCarriesItsHeredocs) {
  ParseResult r = MustParse("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\nONBUILD\n");
  EXPECT_EQ(Dump(r), "(from \"a\")\n(onbuild (run \"<<EOF\"))\n(onbuild)\n");
  ASSERT_THAT(r.children[1].heredocs, SizeIs(1));
  EXPECT_EQ(r.children[1].heredocs[0].content, "echo hi\n");
  EXPECT_EQ(r.children[1].end_line, 4);
}

TEST(Parser, HeredocBodiesKeepCrlfAndSeveralHeredocsReadInOrder) {
  ParseResult r = MustParse("FROM a\r\nCOPY <<A <<B /d\r\na1\r\nA\r\nb1\r\nB\r\nRUN x\r\n");
  ASSERT_THAT(r.children, SizeIs(3));
  ASSERT_THAT(r.children[1].heredocs, SizeIs(2));
  EXPECT_EQ(r.children[1].heredocs[0].content, "a1\r\n");
  EXPECT_EQ(r.children[1].heredocs[1].content, "b1\r\n");
  EXPECT_EQ(r.children[2].start_line, 7);
}

TEST(Parser, HeredocNeedsToStartAWord) {
  // `cat<<EOF` is not a heredoc: the body lines are instructions of their own.
  ParseResult r = MustParse("FROM a\nRUN cat<<EOF\nhello\nEOF\n");
  EXPECT_THAT(r.children, SizeIs(4));
  EXPECT_TRUE(r.children[1].heredocs.empty());
}

TEST(Parser, UnterminatedHeredocIsAnErrorNamingTheLines) {
  absl::StatusOr<ParseResult> r = Parse("FROM a\nRUN <<EOF\necho\n", "x/Dockerfile");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("x/Dockerfile:2-3: unterminated heredoc"));
}

TEST(Parser, ContinuationQuirks) {
  // `\\` at the end is an escaped escape, not a continuation; `\\\` is not one either.
  ParseResult r = MustParse("RUN a \\\\\nRUN b \\\\\\\nRUN c \\  \t\n  d\n");
  EXPECT_EQ(Dump(r), "(run \"a \\\\\\\\\")\n(run \"b \\\\\\\\\\\\\")\n(run \"c   d\")\n");
  // A continuation at EOF just ends the instruction.
  EXPECT_EQ(Dump(MustParse("RUN a \\")), "(run \"a\")\n");
}

TEST(Parser, NoInstructionsIsAnError) {
  for (const char* text : {"", "\n\n", "# just a comment\n", "   \t\n#x\n"}) {
    absl::StatusOr<ParseResult> r = Parse(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_THAT(r.status().message(), HasSubstr("file with no instructions"));
  }
}

TEST(Parser, LineOverTheReferenceLimitIsAnError) {
  const std::string ok_line = "RUN " + std::string(65536 - 5, 'x') + "\n";  // 65536 bytes
  EXPECT_TRUE(Parse("FROM a\n" + ok_line).ok());
  const std::string long_line = "RUN " + std::string(65536 - 4, 'x') + "\n";  // 65537 bytes
  absl::StatusOr<ParseResult> r = Parse("FROM a\n" + long_line);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(),
              HasSubstr("Dockerfile:2: dockerfile line greater than max allowed size of 65535"));
}

// ---------------------------------------------------------------------------
// Hostile input: a clear error or a correct result, never a crash.

TEST(ParserHostileInput, BinaryGarbageNeverCrashes) {
  uint32_t state = 12345;
  for (int round = 0; round < 200; ++round) {
    std::string data(4096, '\0');
    for (char& c : data) {
      state = state * 1103515245 + 12345;
      c = static_cast<char>(state >> 16);
    }
    absl::StatusOr<ParseResult> r = Parse(data);
    if (r.ok()) Dump(*r);
  }
}

TEST(ParserHostileInput, FiftyMegabyteDockerfileParses) {
  std::string data = "FROM busybox\n";
  const std::string line = "RUN echo 'some moderately long line of shell text' && true\n";
  while (data.size() < 50u << 20) data += line;
  absl::StatusOr<ParseResult> r = Parse(data);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->children.size(), 800000u);
}

TEST(ParserHostileInput, HundredThousandContinuationLinesMakeOneInstruction) {
  std::string data = "FROM a\nRUN true";
  for (int i = 0; i < 100000; ++i) data += " \\\n  && true";
  data += "\n";
  ParseResult r = MustParse(data);
  ASSERT_THAT(r.children, SizeIs(2));
  EXPECT_EQ(r.children[1].end_line, 100002);
}

TEST(ParserHostileInput, DeeplyNestedJsonIsShellFormNotAStackOverflow) {
  const std::string text = "CMD " + std::string(200000, '[') + "\n";
  absl::StatusOr<ParseResult> r = Parse(text);
  // Over the line limit: an error, cleanly.
  EXPECT_FALSE(r.ok());
  const std::string nested = "CMD " + std::string(60000, '[') + "\n";
  ParseResult ok = MustParse(nested);
  ASSERT_THAT(ok.children, SizeIs(1));
  EXPECT_FALSE(ok.children[0].json_form);
}

TEST(ParserHostileInput, ChainedOnbuildParsesButDeepNestingIsRefused) {
  EXPECT_EQ(Dump(MustParse("ONBUILD ONBUILD RUN x\n")), "(onbuild (onbuild (run \"x\")))\n");
  std::string text = "FROM a\n";
  for (int i = 0; i < 8000; ++i) text += "ONBUILD ";
  text += "RUN x\n";
  absl::StatusOr<ParseResult> r = Parse(text);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(),
              HasSubstr("Dockerfile:2: ONBUILD triggers nested more than 64 deep"));
}

TEST(ParserHostileInput, OversizedInputIsRefusedUpFront) {
  std::string data(kMaxDockerfileBytes + 1, '\n');
  absl::StatusOr<ParseResult> r = Parse(data);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace stagefarm::dockerfile
