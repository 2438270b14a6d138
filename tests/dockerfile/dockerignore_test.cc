#include "common/dockerfile/dockerignore.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "tests/testing/corpus.h"

namespace stagefarm::dockerfile {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string Describe(const absl::StatusOr<bool>& result) {
  if (!result.ok()) return absl::StrCat("error (", result.status().message(), ")");
  return *result ? "true" : "false";
}

// Whether `result` is what a conformance row expects: "true", "false" or "error".
bool Meets(const absl::StatusOr<bool>& result, const std::string& expected) {
  if (expected == "error") return !result.ok();
  return result.ok() && expected == (*result ? "true" : "false");
}

// ---------------------------------------------------------------------------
// dockerignore-cases.tsv

// A JSON array of strings (the `pattern` column of `multi` rows); nullopt when
// malformed.
std::optional<std::vector<std::string>> ParseJsonStrings(absl::string_view json) {
  std::vector<std::string> out;
  size_t i = 0;
  const auto skip_space = [&] {
    while (i < json.size() && (json[i] == ' ' || json[i] == '\t')) ++i;
  };
  const auto append_utf8 = [](uint32_t r, std::string* s) {
    if (r < 0x80) {
      s->push_back(static_cast<char>(r));
    } else if (r < 0x800) {
      s->push_back(static_cast<char>(0xC0 | r >> 6));
      s->push_back(static_cast<char>(0x80 | (r & 0x3F)));
    } else if (r < 0x10000) {
      s->push_back(static_cast<char>(0xE0 | r >> 12));
      s->push_back(static_cast<char>(0x80 | (r >> 6 & 0x3F)));
      s->push_back(static_cast<char>(0x80 | (r & 0x3F)));
    } else {
      s->push_back(static_cast<char>(0xF0 | r >> 18));
      s->push_back(static_cast<char>(0x80 | (r >> 12 & 0x3F)));
      s->push_back(static_cast<char>(0x80 | (r >> 6 & 0x3F)));
      s->push_back(static_cast<char>(0x80 | (r & 0x3F)));
    }
  };
  const auto hex4 = [&](uint32_t* out_value) {
    if (i + 4 > json.size()) return false;
    *out_value = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = json[i++];
      const int v = (c >= '0' && c <= '9')   ? c - '0'
                    : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                    : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                             : -1;
      if (v < 0) return false;
      *out_value = *out_value * 16 + static_cast<uint32_t>(v);
    }
    return true;
  };
  skip_space();
  if (i >= json.size() || json[i++] != '[') return std::nullopt;
  skip_space();
  if (i < json.size() && json[i] == ']') return out;
  for (;;) {
    skip_space();
    if (i >= json.size() || json[i++] != '"') return std::nullopt;
    std::string value;
    for (;;) {
      if (i >= json.size()) return std::nullopt;
      const char c = json[i++];
      if (c == '"') break;
      if (c != '\\') {
        value.push_back(c);
        continue;
      }
      if (i >= json.size()) return std::nullopt;
      const char e = json[i++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          value.push_back(e);
          break;
        case 'b':
          value.push_back('\b');
          break;
        case 'f':
          value.push_back('\f');
          break;
        case 'n':
          value.push_back('\n');
          break;
        case 'r':
          value.push_back('\r');
          break;
        case 't':
          value.push_back('\t');
          break;
        case 'u': {
          uint32_t r;
          if (!hex4(&r)) return std::nullopt;
          if (r >= 0xD800 && r < 0xDC00 && i + 1 < json.size() && json[i] == '\\' &&
              json[i + 1] == 'u') {
            i += 2;
            uint32_t low;
            if (!hex4(&low)) return std::nullopt;
            r = 0x10000 + ((r - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(r, &value);
          break;
        }
        default:
          return std::nullopt;
      }
    }
    out.push_back(std::move(value));
    skip_space();
    if (i >= json.size()) return std::nullopt;
    const char next = json[i++];
    if (next == ']') break;
    if (next != ',') return std::nullopt;
  }
  return out;
}

// The directories above `path` in walk order ("a", "a/b" for "a/b/c"), derived
// as the reference's tests derive them: filepath.Dir, split at '/', prefixes.
std::vector<std::string> AncestorsInWalkOrder(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string dir = CleanPath(slash == std::string::npos ? "" : path.substr(0, slash + 1));
  std::vector<std::string> out;
  if (dir == ".") return out;
  std::string joined;
  bool first = true;
  for (absl::string_view part : absl::StrSplit(dir, '/')) {
    joined = first ? std::string(part) : absl::StrCat(joined, "/", part);
    first = false;
    out.push_back(joined);
  }
  return out;
}

// The results of the calls the reference's tests make for `api` (the last call
// of a walk; both calls for the repeated-call regression). nullopt when the API
// needs a matcher and building it failed: the reference's tests treat that as
// fatal whatever the row expects.
std::optional<std::vector<absl::StatusOr<bool>>> RunApi(const std::string& api,
                                                        const std::vector<std::string>& patterns,
                                                        const std::string& path) {
  if (api == "Matches(deprecated package func)") {
    return std::vector<absl::StatusOr<bool>>{Matches(path, patterns)};
  }
  absl::StatusOr<PatternMatcher> matcher = PatternMatcher::Create(patterns);
  if (!matcher.ok()) return std::nullopt;
  if (api == "MatchesOrParentMatches") {
    return std::vector<absl::StatusOr<bool>>{matcher->MatchesOrParentMatches(path)};
  }
  if (api == "MatchesExact") return std::vector<absl::StatusOr<bool>>{matcher->MatchesExact(path)};
  if (api == "MatchesUsingParentResult") {
    bool parent_matched = false;
    for (const std::string& dir : AncestorsInWalkOrder(path)) {
      absl::StatusOr<bool> result = matcher->MatchesUsingParentResult(dir, parent_matched);
      parent_matched = result.ok() && *result;
    }
    return std::vector<absl::StatusOr<bool>>{
        matcher->MatchesUsingParentResult(path, parent_matched)};
  }
  if (api == "MatchesUsingParentResults(ctx)") {
    MatchInfo info;
    for (const std::string& dir : AncestorsInWalkOrder(path)) {
      (void)matcher->MatchesUsingParentResults(dir, info, &info);
    }
    MatchInfo unused;
    return std::vector<absl::StatusOr<bool>>{
        matcher->MatchesUsingParentResults(path, info, &unused)};
  }
  if (api == "MatchesUsingParentResults(noctx)") {
    MatchInfo unused;
    return std::vector<absl::StatusOr<bool>>{
        matcher->MatchesUsingParentResults(path, MatchInfo(), &unused)};
  }
  if (api == "New()+MatchesOrParentMatches (twice)") {
    return std::vector<absl::StatusOr<bool>>{matcher->MatchesOrParentMatches(path),
                                             matcher->MatchesOrParentMatches(path)};
  }
  ADD_FAILURE() << "unknown api column value: " << api;
  return std::vector<absl::StatusOr<bool>>{};
}

TEST(DockerignoreConformance, EveryCaseRowHoldsForEveryApiItNames) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  const std::string table = ::stagefarm::testing::ReadFileOrFail(dir / "dockerignore-cases.tsv");
  std::vector<std::string> header;
  int checked = 0;
  for (absl::string_view line : absl::StrSplit(table, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> fields = absl::StrSplit(line, '\t');
    if (header.empty()) {
      header = fields;
      continue;
    }
    const auto field = [&](absl::string_view name) -> std::string {
      for (size_t i = 0; i < header.size() && i < fields.size(); ++i) {
        if (header[i] == name) return fields[i];
      }
      ADD_FAILURE() << "no column " << name << " in row: " << line;
      return "";
    };
    const std::string source = field("source");
    const std::string platform = field("platform");
    if (platform != "all" && platform != "non-windows") continue;
    std::vector<std::string> patterns;
    if (field("kind") == "multi") {
      std::optional<std::vector<std::string>> parsed = ParseJsonStrings(field("pattern"));
      if (!parsed) {
        ADD_FAILURE() << source << ": malformed pattern list " << field("pattern");
        continue;
      }
      patterns = *std::move(parsed);
    } else {
      patterns = {field("pattern")};
    }
    const std::string path = field("path");
    const std::string expected = field("expected");
    for (absl::string_view api_view : absl::StrSplit(field("api"), ';')) {
      const std::string api(api_view);
      std::optional<std::vector<absl::StatusOr<bool>>> results = RunApi(api, patterns, path);
      const std::string what = absl::StrCat(source, " [", api, "] patterns=[",
                                            absl::StrJoin(patterns, ", "), "] path=\"", path, "\"");
      if (!results) {
        ADD_FAILURE() << what << ": PatternMatcher::Create failed";
        continue;
      }
      for (const absl::StatusOr<bool>& result : *results) {
        if (!Meets(result, expected)) {
          ADD_FAILURE() << what << ": expected " << expected << ", got " << Describe(result);
        }
      }
    }
    ++checked;
  }
  EXPECT_EQ(checked, 138) << "rows checked (all + non-windows)";
}

TEST(DockerignoreConformance, ReadDockerignoreReturnsTheReferencePatternList) {
  STAGEFARM_REQUIRE_CONFORMANCE(dir);
  const std::string input =
      ::stagefarm::testing::ReadFileOrFail(dir / "dockerignore-readall/input.dockerignore");
  const std::string expected_text =
      ::stagefarm::testing::ReadFileOrFail(dir / "dockerignore-readall/expected-patterns.txt");
  std::vector<std::string> expected = absl::StrSplit(expected_text, '\n');
  if (!expected.empty() && expected.back().empty()) expected.pop_back();
  ASSERT_FALSE(expected.empty());

  absl::StatusOr<std::vector<std::string>> patterns = ReadDockerignore(input);
  ASSERT_TRUE(patterns.ok()) << patterns.status();
  EXPECT_THAT(*patterns, ElementsAreArray(expected));
}

// ---------------------------------------------------------------------------
// Go's filepath.Clean and filepath.Match

TEST(CleanPath, AgreesWithGoCleanOnItsOwnTable) {
  const std::pair<const char*, const char*> cases[] = {
      {"abc", "abc"},
      {"abc/def", "abc/def"},
      {"a/b/c", "a/b/c"},
      {".", "."},
      {"..", ".."},
      {"../..", "../.."},
      {"../../abc", "../../abc"},
      {"/abc", "/abc"},
      {"/", "/"},
      {"", "."},
      {"abc/", "abc"},
      {"abc/def/", "abc/def"},
      {"./", "."},
      {"../", ".."},
      {"/abc/", "/abc"},
      {"abc//def//ghi", "abc/def/ghi"},
      {"//abc", "/abc"},
      {"///abc", "/abc"},
      {"//abc//", "/abc"},
      {"abc//", "abc"},
      {"abc/./def", "abc/def"},
      {"/./abc/def", "/abc/def"},
      {"abc/.", "abc"},
      {"abc/def/ghi/../jkl", "abc/def/jkl"},
      {"abc/def/../ghi/../jkl", "abc/jkl"},
      {"abc/def/..", "abc"},
      {"abc/def/../..", "."},
      {"/abc/def/../..", "/"},
      {"abc/def/../../..", ".."},
      {"/abc/def/../../..", "/"},
      {"abc/def/../../../ghi/jkl/../../../mno", "../../mno"},
      {"/../abc", "/abc"},
      {"abc/./../def", "def"},
      {"abc//./../def", "def"},
      {"abc/../../././../def", "../../def"},
      {"!a/../b", "b"},
      {".../..", "."},
  };
  for (const auto& [in, want] : cases)
    EXPECT_EQ(CleanPath(in), want) << "CleanPath(\"" << in << "\")";
}

TEST(MatchGlob, ReportsMalformedPatternsWhereverTheFaultLies) {
  const std::string patterns[] = {"[",    "[^",      "[^bc", "a[",     "[]a]",     "[-]",  "[x-]",
                                  "[-x]", "[a-b-c]", "\\",   "a\\",    "[\\",      "[a\\", "*[",
                                  "a*[",  "x[",      "*x\\", "[\xff]", "[a-\xff]", "ab/[", "[]"};
  for (const std::string& pattern : patterns) {
    for (const char* name : {"", "a", "x", "xyz", "a/b", "."}) {
      EXPECT_FALSE(MatchGlob(pattern, name).ok())
          << "MatchGlob(\"" << pattern << "\", \"" << name << "\")";
    }
  }
}

TEST(MatchGlob, StarAndQuestionMarkNeverMatchASlash) {
  EXPECT_EQ(MatchGlob("*", "a/b").value(), false);
  EXPECT_EQ(MatchGlob("a?b", "a/b").value(), false);
  EXPECT_EQ(MatchGlob("a*", "ab/c").value(), false);
  EXPECT_EQ(MatchGlob("*/b", "a/b").value(), true);
  EXPECT_EQ(MatchGlob("a*b*c*d*e*/f", "axbxcxdxexxx/f").value(), true);
  EXPECT_EQ(MatchGlob("a*b?c*x", "abxbbxdbxebxczzx").value(), true);
  EXPECT_EQ(MatchGlob("a?b",
                      "a\xe2\x98\xba"
                      "b")
                .value(),
            true);  // one rune, three bytes
}

TEST(MatchGlob, AcceptsAReversedRangeThatMatchesNothing) {
  EXPECT_EQ(MatchGlob("[z-a]", "m").value(), false);
  EXPECT_EQ(MatchGlob("[\\]a]", "]").value(), true);
  EXPECT_EQ(MatchGlob("[x\\-]", "-").value(), true);
}

// ---------------------------------------------------------------------------
// Reading ignore files

TEST(ReadDockerignore, EmptyContentHasNoPatterns) {
  EXPECT_THAT(ReadDockerignore("").value(), IsEmpty());
  EXPECT_THAT(ReadDockerignore("\n\n# only a comment\n   \n").value(), IsEmpty());
}

TEST(ReadDockerignore, StripsAByteOrderMarkOnlyFromTheFirstLine) {
  EXPECT_THAT(ReadDockerignore("\xEF\xBB\xBF"
                               "a\n\xEF\xBB\xBF"
                               "b")
                  .value(),
              ElementsAre("a",
                          "\xEF\xBB\xBF"
                          "b"));
  EXPECT_THAT(ReadDockerignore("\xEF\xBB\xBF# comment\nc").value(), ElementsAre("c"));
}

TEST(ReadDockerignore, TreatsOnlyAHashInColumnOneAsAComment) {
  EXPECT_THAT(ReadDockerignore("# comment\n  # not a comment\n").value(),
              ElementsAre("# not a comment"));
}

TEST(ReadDockerignore, TrimsCarriageReturnsAndUnicodeSpace) {
  EXPECT_THAT(ReadDockerignore("a\r\n\xC2\xA0"
                               "b\xE3\x80\x80\r\n\tc \n")
                  .value(),
              ElementsAre("a", "b", "c"));
}

TEST(ReadDockerignore, CleansPatternsAndDropsOneLeadingSlash) {
  EXPECT_THAT(ReadDockerignore("/\n//a//b/../c/\n!  /x/./y\n./\n../a\n! \n").value(),
              ElementsAre("/", "a/c", "!x/y", ".", "../a", "!"));
}

TEST(ReadDockerignore, RejectsALineOf64KiBNamingTheLine) {
  const std::string longest(65535, 'x');
  EXPECT_THAT(ReadDockerignore("a\n" + longest + "\n").value(), ElementsAre("a", longest));
  absl::StatusOr<std::vector<std::string>> too_long =
      ReadDockerignore("a\n" + std::string(65536, 'x'));
  ASSERT_FALSE(too_long.ok());
  EXPECT_THAT(too_long.status().message(), HasSubstr("line 2"));
}

class LoadBuildIgnoreFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ =
        (std::filesystem::temp_directory_path() / "dockerignore_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    root_ = templ;
    context_ = root_ / "context";
    std::filesystem::create_directories(context_ / "build");
    dockerfile_ = context_ / "build" / "app.Dockerfile";
    Write(dockerfile_, "FROM scratch\n");
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }

  static void Write(const std::filesystem::path& path, const std::string& content) {
    std::ofstream(path, std::ios::binary) << content;
  }

  std::filesystem::path root_;
  std::filesystem::path context_;
  std::filesystem::path dockerfile_;
};

TEST_F(LoadBuildIgnoreFileTest, PrefersTheDockerfilesOwnIgnoreFile) {
  const std::filesystem::path own = context_ / "build" / "app.Dockerfile.dockerignore";
  Write(own, "own\n");
  Write(context_ / ".dockerignore", "shared\n");
  absl::StatusOr<BuildIgnoreFile> file = LoadBuildIgnoreFile(context_, dockerfile_);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->path, own);
  EXPECT_THAT(file->patterns, ElementsAre("own"));
}

TEST_F(LoadBuildIgnoreFileTest, UsesTheDockerfilesOwnIgnoreFileEvenWhenEmpty) {
  Write(context_ / "build" / "app.Dockerfile.dockerignore", "");
  Write(context_ / ".dockerignore", "shared\n");
  absl::StatusOr<BuildIgnoreFile> file = LoadBuildIgnoreFile(context_, dockerfile_);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->path, context_ / "build" / "app.Dockerfile.dockerignore");
  EXPECT_THAT(file->patterns, IsEmpty());
}

TEST_F(LoadBuildIgnoreFileTest, FallsBackToTheContextsIgnoreFile) {
  Write(context_ / ".dockerignore", "/shared/\n!keep\n");
  Write(context_ / "build" / "other.Dockerfile.dockerignore", "not this one\n");
  absl::StatusOr<BuildIgnoreFile> file = LoadBuildIgnoreFile(context_, dockerfile_);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->path, context_ / ".dockerignore");
  EXPECT_THAT(file->patterns, ElementsAre("shared", "!keep"));
}

TEST_F(LoadBuildIgnoreFileTest, WithoutAnyIgnoreFileReturnsNoPatterns) {
  absl::StatusOr<BuildIgnoreFile> file = LoadBuildIgnoreFile(context_, dockerfile_);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE(file->path.empty());
  EXPECT_THAT(file->patterns, IsEmpty());
}

TEST_F(LoadBuildIgnoreFileTest, ReportsFileAndLineOfALoneExclamationMark) {
  Write(context_ / ".dockerignore", "a\n\n!\n");
  absl::StatusOr<BuildIgnoreFile> file = LoadBuildIgnoreFile(context_, dockerfile_);
  ASSERT_FALSE(file.ok());
  EXPECT_THAT(file.status().message(),
              HasSubstr((context_ / ".dockerignore").string() + ":3: illegal exclusion pattern"));
}

TEST_F(LoadBuildIgnoreFileTest, ReportsFileAndLineOfAMalformedPattern) {
  const std::filesystem::path own = context_ / "build" / "app.Dockerfile.dockerignore";
  Write(own, "# header\nok\n  [abc\n");
  absl::StatusOr<BuildIgnoreFile> file = LoadBuildIgnoreFile(context_, dockerfile_);
  ASSERT_FALSE(file.ok());
  EXPECT_THAT(file.status().message(), HasSubstr(own.string() + ":3: syntax error in pattern"));
}

TEST_F(LoadBuildIgnoreFileTest, ReportsAnUnreadableIgnoreFileByPath) {
  std::filesystem::create_directory(context_ / ".dockerignore");
  absl::StatusOr<BuildIgnoreFile> file = LoadBuildIgnoreFile(context_, dockerfile_);
  ASSERT_FALSE(file.ok());
  EXPECT_THAT(file.status().message(), HasSubstr((context_ / ".dockerignore").string()));
}

// ---------------------------------------------------------------------------
// PatternMatcher

TEST(PatternMatcher, CreateRejectsALoneExclamationMark) {
  for (const char* bad : {"!", "  !  ", "!/"}) {
    absl::StatusOr<PatternMatcher> matcher = PatternMatcher::Create({"docs", bad});
    ASSERT_FALSE(matcher.ok()) << bad;
    EXPECT_THAT(matcher.status().message(), HasSubstr("illegal exclusion pattern"));
  }
}

TEST(PatternMatcher, CreateRejectsAMalformedPatternNamingIt) {
  absl::StatusOr<PatternMatcher> matcher = PatternMatcher::Create({"a", "!b/[z"});
  ASSERT_FALSE(matcher.ok());
  EXPECT_THAT(matcher.status().message(), HasSubstr("syntax error in pattern \"b/[z\""));
}

TEST(PatternMatcher, CreateSkipsBlankPatternsAndCleansTheRest) {
  absl::StatusOr<PatternMatcher> matcher =
      PatternMatcher::Create({"docs", "", "  ", " ./a//b/ ", "!c/", "!  d"});
  ASSERT_TRUE(matcher.ok()) << matcher.status();
  std::vector<std::string> cleaned;
  std::vector<bool> exclusions;
  for (const IgnorePattern& pattern : matcher->patterns()) {
    cleaned.push_back(pattern.pattern());
    exclusions.push_back(pattern.exclusion());
  }
  // As in the reference, the text after `!` is not trimmed again here.
  EXPECT_THAT(cleaned, ElementsAre("docs", "a/b", "c", "  d"));
  EXPECT_THAT(exclusions, ElementsAre(false, false, true, true));
  EXPECT_TRUE(matcher->has_exclusions());
  EXPECT_FALSE(PatternMatcher::Create({"a", "b"})->has_exclusions());
}

// The reference's compileTests (the '/' variant).
TEST(PatternMatcher, CompilesEachPatternAsTheReferenceDoes) {
  struct Case {
    const char* pattern;
    MatchType type;
    const char* expression;
  };
  const Case cases[] = {
      {"*", MatchType::kRegexp, "^[^/]*$"},
      {"file*", MatchType::kRegexp, "^file[^/]*$"},
      {"*file", MatchType::kRegexp, "^[^/]*file$"},
      {"a*/b", MatchType::kRegexp, "^a[^/]*/b$"},
      {"**", MatchType::kSuffix, ""},
      {"**/**", MatchType::kRegexp, "^(.*/)?.*$"},
      {"dir/**", MatchType::kPrefix, ""},
      {"**/dir", MatchType::kSuffix, ""},
      {"**/dir2/*", MatchType::kRegexp, "^(.*/)?dir2/[^/]*$"},
      {"**/dir2/**", MatchType::kRegexp, "^(.*/)?dir2/.*$"},
      {"**file", MatchType::kSuffix, ""},
      {"**/file*txt", MatchType::kRegexp, "^(.*/)?file[^/]*txt$"},
      {"**/**/*.txt", MatchType::kRegexp, "^(.*/)?(.*/)?[^/]*\\.txt$"},
      {"a[b-d]e", MatchType::kRegexp, "^a[b-d]e$"},
      {".*", MatchType::kRegexp, "^\\.[^/]*$"},
      {"abc.def", MatchType::kExact, ""},
      {"abc?def", MatchType::kRegexp, "^abc[^/]def$"},
      {"**/foo/bar", MatchType::kSuffix, ""},
      {"a(b)c/def", MatchType::kExact, ""},
      {"a.|)$(}+{bc", MatchType::kExact, ""},
      {"dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", MatchType::kExact, ""},
  };
  for (const Case& c : cases) {
    absl::StatusOr<PatternMatcher> matcher = PatternMatcher::Create({c.pattern});
    ASSERT_TRUE(matcher.ok()) << c.pattern << ": " << matcher.status();
    ASSERT_EQ(matcher->patterns().size(), 1u);
    const IgnorePattern& pattern = matcher->patterns()[0];
    EXPECT_EQ(pattern.match_type(), c.type) << c.pattern;
    EXPECT_EQ(pattern.expression(), c.expression) << c.pattern;
  }
}

TEST(PatternMatcher, InvalidExpressionFailsOnlyWhenEvaluated) {
  // `[Local-Only]`: filepath.Match accepts the range l-O, Go's regexp does not.
  absl::StatusOr<PatternMatcher> bad = PatternMatcher::Create({"[Local-Only]/"});
  ASSERT_TRUE(bad.ok()) << bad.status();
  EXPECT_FALSE(bad->MatchesOrParentMatches("x").ok());
  EXPECT_FALSE(bad->MatchesOrParentMatches("x").ok());
  // Once the path is excluded, a later inclusion is never evaluated.
  absl::StatusOr<PatternMatcher> skipped = PatternMatcher::Create({"**", "[Local-Only]"});
  ASSERT_TRUE(skipped.ok());
  EXPECT_EQ(skipped->MatchesOrParentMatches("x").value(), true);
}

TEST(PatternMatcher, DoubleStarPrefixIsAPlainSuffixTest) {
  absl::StatusOr<PatternMatcher> matcher = PatternMatcher::Create({"**file"});
  ASSERT_TRUE(matcher.ok());
  EXPECT_EQ(matcher->MatchesOrParentMatches("dir/xfile").value(), true);
  EXPECT_EQ(matcher->MatchesOrParentMatches("dir/file.txt").value(), false);
}

TEST(PatternMatcher, TrailingDoubleStarIsAPlainPrefixTest) {
  absl::StatusOr<PatternMatcher> matcher = PatternMatcher::Create({"abc**"});
  ASSERT_TRUE(matcher.ok());
  EXPECT_EQ(matcher->MatchesExact("abcdef/x").value(), true);
  EXPECT_EQ(matcher->MatchesExact("ab").value(), false);
}

TEST(PatternMatcher, BackslashBeforeALetterIsAGoRegexpEscape) {
  // The reference hands `\x` to Go's regexp verbatim.
  absl::StatusOr<PatternMatcher> digit = PatternMatcher::Create({"a\\d"});
  ASSERT_TRUE(digit.ok());
  EXPECT_EQ(digit->MatchesExact("a5").value(), true);
  EXPECT_EQ(digit->MatchesExact("ad").value(), false);
  EXPECT_EQ(PatternMatcher::Create({"a\\_"})->MatchesExact("a_").value(), true);
  EXPECT_EQ(PatternMatcher::Create({"a\\x41"})->MatchesExact("aA").value(), true);
  EXPECT_EQ(PatternMatcher::Create({"\\bfoo\\b*"})->MatchesExact("foo.c").value(), true);
  // `\Q` quotes the rest of the expression, its final `$` included.
  EXPECT_EQ(PatternMatcher::Create({"\\Qa*"})->MatchesExact("a[^/]*$/more").value(), true);
  // Escapes Go's regexp rejects fail on use, like `[Local-Only]`.
  for (const char* bad : {"a\\q", "a\\1", "a\\C", "a\\\xC3\xA9"}) {
    absl::StatusOr<PatternMatcher> matcher = PatternMatcher::Create({bad});
    ASSERT_TRUE(matcher.ok()) << bad << ": " << matcher.status();
    EXPECT_FALSE(matcher->MatchesExact("a").ok()) << bad;
  }
}

TEST(PatternMatcher, BracketClassesFollowGoRegexpRules) {
  EXPECT_EQ(PatternMatcher::Create({"[[:digit:]]x"})->MatchesExact("5x").value(), true);
  EXPECT_EQ(PatternMatcher::Create({"[[:^digit:]]x"})->MatchesExact("5x").value(), false);
  EXPECT_EQ(PatternMatcher::Create({"[\\d]"})->MatchesExact("7").value(), true);
  EXPECT_EQ(PatternMatcher::Create({"[\\d]"})->MatchesExact("d").value(), false);
  EXPECT_EQ(PatternMatcher::Create({"[^a]"})->MatchesExact("\n").value(), true);
  EXPECT_FALSE(PatternMatcher::Create({"[[:nope:]]"})->MatchesExact("a").ok());
  // `*` inside a class is still rewritten to `[^/]*`: `[*]` is `[[^/]*]`.
  EXPECT_EQ(PatternMatcher::Create({"[*]"})->MatchesExact("^^]").value(), true);
  EXPECT_EQ(PatternMatcher::Create({"[*]"})->MatchesExact("*").value(), false);
}

TEST(PatternMatcher, BarAndBracesReachGoRegexpUnescapedAsInTheReference) {
  // `|` splits the whole expression: `^a|b[^/]*$` is `^a` or `b[^/]*$`.
  absl::StatusOr<PatternMatcher> bar = PatternMatcher::Create({"a|b*"});
  ASSERT_TRUE(bar.ok());
  EXPECT_EQ(bar->patterns()[0].expression(), "^a|b[^/]*$");
  EXPECT_EQ(bar->MatchesExact("ax/y").value(), true);
  EXPECT_EQ(bar->MatchesExact("x/bz").value(), true);
  EXPECT_EQ(bar->MatchesExact("x/zb/z").value(), false);
  // `{n}` repeats; without another wildcard the pattern is an exact test.
  absl::StatusOr<PatternMatcher> braces = PatternMatcher::Create({"a{2}*"});
  ASSERT_TRUE(braces.ok());
  EXPECT_EQ(braces->MatchesExact("aax").value(), true);
  EXPECT_EQ(braces->MatchesExact("ax").value(), false);
  EXPECT_EQ(PatternMatcher::Create({"a{2}"})->MatchesExact("a{2}").value(), true);
  EXPECT_EQ(PatternMatcher::Create({"a{x}?"})->MatchesExact("a{x}1").value(), true);
  // Repeating a repetition, or more than 1000 times, is a Go syntax error.
  for (const char* bad : {"*{2}", "a{1001}?", "a{3,2}?"}) {
    absl::StatusOr<PatternMatcher> matcher = PatternMatcher::Create({bad});
    ASSERT_TRUE(matcher.ok()) << bad;
    EXPECT_FALSE(matcher->MatchesExact("a").ok()) << bad;
  }
}

TEST(PatternMatcher, DotInTheExpressionDoesNotMatchANewline) {
  absl::StatusOr<PatternMatcher> matcher = PatternMatcher::Create({"a/**/*.c"});
  ASSERT_TRUE(matcher.ok());
  EXPECT_EQ(matcher->MatchesExact("a/x/y.c").value(), true);
  EXPECT_EQ(matcher->MatchesExact("a/x\ny/z.c").value(), false);
}

TEST(PatternMatcher, InvalidUtf8DecodesAsReplacementCharacterAsInGo) {
  EXPECT_EQ(PatternMatcher::Create({"a?b"})
                ->MatchesExact("a\xff"
                               "b")
                .value(),
            true);
  // In an expression, both stray bytes are U+FFFD; compared as text they differ.
  EXPECT_EQ(PatternMatcher::Create({"\xff*"})->MatchesExact("\xfe").value(), true);
  EXPECT_EQ(PatternMatcher::Create({"\xff"})->MatchesExact("\xfe").value(), false);
  EXPECT_EQ(PatternMatcher::Create({std::string("a\0b*", 4)})
                ->MatchesExact(std::string("a\0bc", 4))
                .value(),
            true);
}

TEST(PatternMatcher, AncestorsAreMatchedAtEveryLevel) {
  absl::StatusOr<PatternMatcher> matcher = PatternMatcher::Create({"a/b"});
  ASSERT_TRUE(matcher.ok());
  EXPECT_EQ(matcher->MatchesOrParentMatches("a/b/c/d").value(), true);
  EXPECT_EQ(matcher->MatchesOrParentMatches("a/bc/d").value(), false);
  EXPECT_EQ(matcher->MatchesExact("a/b/c/d").value(), false);
  absl::StatusOr<PatternMatcher> rooted = PatternMatcher::Create({"**/x"});
  ASSERT_TRUE(rooted.ok());
  EXPECT_EQ(rooted->MatchesOrParentMatches("/x/y").value(), true);
}

// For a single inclusion pattern, MatchesOrParentMatches is by definition
// "the path or one of its ancestors matches"; checks the one-pass ancestor scan
// against matching each ancestor on its own.
TEST(PatternMatcher, AncestorScanAgreesWithMatchingEachAncestor) {
  const char* patterns[] = {"a",    "a/b",    "*",   "*/b",           "a*",     "**/b",
                            "b/**", "**/a/*", "?/?", "a/**/b",        "**b",    "[ab]/*",
                            "\\ba", "a\\b",   "^a",  "\\Qa/",         "**/",    "a/*/c*",
                            "[^/]", "*/*/*",  "..",  "a/[[:alpha:]]", "**/**/c"};
  const char* paths[] = {"a",    "a/b",   "a/b/c",  "b/a/b",    "x/a/b/c", "a/x/b/y", "ab/b/c",
                         "/a/b", "//a",   "a//b",   "./a/b",    "../a/b",  "a/./b",   "b/b/b/b",
                         "a/b/", "c/a/c", "a\\b/c", "a/z/cc/d", "",        "/",       "a/b/c/d/e"};
  for (const char* pattern : patterns) {
    absl::StatusOr<PatternMatcher> matcher = PatternMatcher::Create({pattern});
    ASSERT_TRUE(matcher.ok()) << pattern << ": " << matcher.status();
    for (const char* path : paths) {
      bool expected = matcher->MatchesExact(path).value();
      for (const std::string& ancestor : AncestorsInWalkOrder(path)) {
        expected = expected || matcher->MatchesExact(ancestor).value();
      }
      EXPECT_EQ(matcher->MatchesOrParentMatches(path).value(), expected)
          << "pattern \"" << pattern << "\" path \"" << path << "\"";
      MatchInfo unused;
      EXPECT_EQ(matcher->MatchesUsingParentResults(path, MatchInfo(), &unused).value(), expected)
          << "pattern \"" << pattern << "\" path \"" << path << "\"";
    }
  }
}

TEST(PatternMatcher, DeprecatedMatchesTriesOnlyOneAncestor) {
  EXPECT_EQ(Matches("a/b/c/d", {"a/b"}).value(), true);
  // `**/dir` has two elements, "dir" one: the ancestor is never tried.
  EXPECT_EQ(Matches("dir/file", {"**/dir"}).value(), false);
  EXPECT_EQ(PatternMatcher::Create({"**/dir"})->MatchesOrParentMatches("dir/file").value(), true);
}

TEST(PatternMatcher, DeprecatedMatchesNeverExcludesTheContextRoot) {
  EXPECT_EQ(Matches(".", {"**"}).value(), false);
  EXPECT_EQ(Matches("a/..", {"*"}).value(), false);
  EXPECT_EQ(Matches("./a//", {"a"}).value(), true);
}

TEST(PatternMatcher, ExclusionReincludesAPathUnderAnExcludedDirectory) {
  absl::StatusOr<PatternMatcher> matcher = PatternMatcher::Create({"**", "!util/docker/web"});
  ASSERT_TRUE(matcher.ok());
  EXPECT_EQ(matcher->MatchesOrParentMatches("util/docker/web/foo").value(), false);
  EXPECT_EQ(matcher->MatchesOrParentMatches("util/docker/other").value(), true);

  MatchInfo info;
  bool parent_matched = false;
  for (const char* dir : {"util", "util/docker", "util/docker/web"}) {
    ASSERT_TRUE(matcher->MatchesUsingParentResults(dir, info, &info).ok());
    parent_matched = matcher->MatchesUsingParentResult(dir, parent_matched).value();
  }
  MatchInfo unused;
  EXPECT_EQ(matcher->MatchesUsingParentResults("util/docker/web/foo", info, &unused).value(),
            false);
  // The deprecated single-flag walk gets this wrong, as in the reference
  // (docker/buildx#850).
  EXPECT_EQ(matcher->MatchesUsingParentResult("util/docker/web/foo", parent_matched).value(), true);
}

TEST(PatternMatcher, MatchInfoWalkSkipsExclusionsTheParentDidNotEvaluate) {
  // At "a" the exclusion is skipped (nothing is excluded yet), so "a/b" never
  // learns that `!a` matched its parent; the reference behaves the same.
  absl::StatusOr<PatternMatcher> matcher = PatternMatcher::Create({"*/b", "!a"});
  ASSERT_TRUE(matcher.ok());
  MatchInfo info;
  ASSERT_EQ(matcher->MatchesUsingParentResults("a", info, &info).value(), false);
  MatchInfo unused;
  EXPECT_EQ(matcher->MatchesUsingParentResults("a/b", info, &unused).value(), true);
  EXPECT_EQ(matcher->MatchesOrParentMatches("a/b").value(), false);
}

TEST(PatternMatcher, MatchesUsingParentResultsRejectsInfoFromAnotherMatcher) {
  absl::StatusOr<PatternMatcher> one = PatternMatcher::Create({"a"});
  absl::StatusOr<PatternMatcher> two = PatternMatcher::Create({"a", "b"});
  ASSERT_TRUE(one.ok() && two.ok());
  MatchInfo info;
  ASSERT_TRUE(one->MatchesUsingParentResults("a", MatchInfo(), &info).ok());
  MatchInfo unused;
  absl::StatusOr<bool> result = two->MatchesUsingParentResults("a/x", info, &unused);
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("wrong number of values"));
}

TEST(PatternMatcher, MatchesUsingParentResultsMayWriteIntoTheParentsInfo) {
  absl::StatusOr<PatternMatcher> matcher = PatternMatcher::Create({"a", "!a/b", "a/b/c"});
  ASSERT_TRUE(matcher.ok());
  MatchInfo info;
  EXPECT_EQ(matcher->MatchesUsingParentResults("a", info, &info).value(), true);
  EXPECT_EQ(matcher->MatchesUsingParentResults("a/b", info, &info).value(), false);
  EXPECT_EQ(matcher->MatchesUsingParentResults("a/b/c", info, &info).value(), true);
  EXPECT_EQ(matcher->MatchesUsingParentResults("a/b/c/d", info, &info).value(), true);
}

TEST(PatternMatcher, NoPatternsExcludeNothing) {
  absl::StatusOr<PatternMatcher> matcher = PatternMatcher::Create({});
  ASSERT_TRUE(matcher.ok());
  EXPECT_EQ(matcher->MatchesOrParentMatches("any/path").value(), false);
  MatchInfo info;
  EXPECT_EQ(matcher->MatchesUsingParentResults("any", info, &info).value(), false);
  EXPECT_EQ(matcher->MatchesUsingParentResults("any/path", info, &info).value(), false);
}

// ---------------------------------------------------------------------------
// Hostile input

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TEST(PatternMatcherHostileInput, ManyDoubleStarsAgainstADeepPathStayFast) {
  absl::StatusOr<PatternMatcher> matcher = PatternMatcher::Create({"**/**/**/**/**/**/**/**/x"});
  ASSERT_TRUE(matcher.ok());
  std::vector<std::string> components(200, "dir");
  const std::string miss = absl::StrJoin(components, "/") + "/y";
  const std::string hit = absl::StrJoin(components, "/") + "/x";
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(matcher->MatchesOrParentMatches(miss).value(), false);
  EXPECT_EQ(matcher->MatchesOrParentMatches(hit).value(), true);
  EXPECT_EQ(Matches(miss, {"**/**/**/**/**/**/**/**/x"}).value(), false);
  MatchInfo info;
  std::string dir;
  for (const std::string& component : components) {
    dir = dir.empty() ? component : absl::StrCat(dir, "/", component);
    ASSERT_EQ(matcher->MatchesUsingParentResults(dir, info, &info).value(), false);
  }
  MatchInfo unused;
  EXPECT_EQ(matcher->MatchesUsingParentResults(hit, info, &unused).value(), true);
  EXPECT_LT(SecondsSince(start), 2.0);
}

TEST(PatternMatcherHostileInput, LongPatternsAgainstLongPathsStayFast) {
  std::string stars;
  for (int i = 0; i < 1000; ++i) stars += "*a";
  std::string double_stars;
  for (int i = 0; i < 300; ++i) double_stars += "**/a";
  std::string classes;
  for (int i = 0; i < 500; ++i) classes += "[a-z]?";
  const std::string path = std::string(2000, 'a');
  std::vector<std::string> deep(1000, "a");
  const std::string deep_path = absl::StrJoin(deep, "/");
  const auto start = std::chrono::steady_clock::now();
  for (const std::string& pattern : {stars + "b", double_stars + "b", classes + "!"}) {
    absl::StatusOr<PatternMatcher> matcher = PatternMatcher::Create({pattern});
    ASSERT_TRUE(matcher.ok()) << matcher.status();
    EXPECT_EQ(matcher->MatchesOrParentMatches(path).value(), false);
    EXPECT_EQ(matcher->MatchesOrParentMatches(deep_path).value(), false);
  }
  EXPECT_LT(SecondsSince(start), 5.0);
}

TEST(PatternMatcherHostileInput, ArbitraryBytesNeverCrash) {
  const std::string patterns[] = {std::string("\0", 1),
                                  "\xff\xfe",
                                  "\xc3",
                                  "\xe2\x82",
                                  "[\xc3]",
                                  "\x80*?",
                                  "**\xff/**",
                                  "\xEF\xBB\xBF**/x",
                                  "[[:",
                                  "[[:a",
                                  "\\",
                                  "\\Q",
                                  "a\\x{110000}",
                                  "a\\x{",
                                  "(",
                                  ")",
                                  "[^]",
                                  "[]]",
                                  "\\",
                                  "a**\\",
                                  "[\\\xff]"};
  const std::string paths[] = {"",   std::string("\0\0", 2), "\xff",         "a/\xc3/b",
                               "//", "\xe2\x82/x",           "\xEF\xBB\xBFx"};
  for (const std::string& pattern : patterns) {
    absl::StatusOr<PatternMatcher> matcher = PatternMatcher::Create({pattern});
    if (!matcher.ok()) continue;
    for (const std::string& path : paths) {
      (void)matcher->MatchesOrParentMatches(path);
      (void)matcher->MatchesExact(path);
      MatchInfo info;
      (void)matcher->MatchesUsingParentResults(path, MatchInfo(), &info);
      (void)Matches(path, {pattern});
    }
  }
  EXPECT_THAT(ReadDockerignore(std::string("\xff\n\0\n!\xc3", 6)).value(),
              ElementsAre("\xff", std::string("\0", 1), "!\xc3"));
}

TEST(PatternMatcherHostileInput, A50000FileWalkIsQuick) {
  absl::StatusOr<PatternMatcher> matcher = PatternMatcher::Create(
      {".git", "node_modules", "**/*.o", "build/**", "*.log", "!important.log", "docs/*/draft-*",
       "**/__pycache__", "tmp?", "[Tt]humbs.db", "**/.DS_Store", "!build/keep/**"});
  ASSERT_TRUE(matcher.ok());
  const auto start = std::chrono::steady_clock::now();
  int excluded = 0;
  for (int d = 0; d < 500; ++d) {
    const std::string dir = absl::StrCat(d % 3 == 0 ? "build/" : "src/", "module", d);
    MatchInfo dir_info;
    if (matcher->MatchesUsingParentResults(dir, MatchInfo(), &dir_info).value()) ++excluded;
    MatchInfo file_info;
    for (int f = 0; f < 100; ++f) {
      const std::string file = absl::StrCat(dir, "/file", f, f % 4 == 0 ? ".o" : ".cc");
      if (matcher->MatchesUsingParentResults(file, dir_info, &file_info).value()) ++excluded;
    }
  }
  EXPECT_GT(excluded, 0);
  EXPECT_LT(SecondsSince(start), 5.0);
}

}  // namespace
}  // namespace stagefarm::dockerfile
