// .dockerignore files: reading them, finding the one a build uses, and matching
// context paths against their patterns, faithful to the reference
// (moby/patternmatcher and its ignorefile package, as vendored by BuildKit) on
// Linux. Paths and patterns are slash-separated byte strings; nothing here
// assumes UTF-8, and bytes that are not UTF-8 decode as U+FFFD, as in Go.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace stagefarm::dockerfile {

// Go's filepath.Clean on Linux: the shortest equivalent path, by purely lexical
// processing (repeated slashes, `.` and `..` elements, trailing slashes). The
// empty path cleans to ".".
std::string CleanPath(absl::string_view path);

// Go's filepath.Match on Linux: whether `name` matches the shell pattern as a
// whole (`*` and `?` never match `/`; `[...]`, `[^...]` classes; `\` escapes).
// Returns InvalidArgument ("syntax error in pattern", Go's ErrBadPattern) for a
// malformed pattern (unterminated `[`, an empty class, `-` or `]` where a class
// character belongs, a trailing `\`, a byte that is not UTF-8 inside a class),
// wherever in the pattern the fault lies.
absl::StatusOr<bool> MatchGlob(absl::string_view pattern, absl::string_view name);

// The patterns of a .dockerignore file, as the reference's ignorefile.ReadAll
// returns them: a UTF-8 BOM is stripped, lines starting with `#` are comments,
// lines are whitespace-trimmed and blank ones dropped; a leading `!` is kept
// with the whitespace after it removed; each pattern is CleanPath-ed and one
// leading `/` is dropped ("/a" and "a" are the same pattern). A lone `!` is
// returned as "!", as the reference does; PatternMatcher::Create rejects it.
// Returns InvalidArgument, naming the line, for a line of 64 KiB or more (the
// reference's line scanner refuses them).
absl::StatusOr<std::vector<std::string>> ReadDockerignore(absl::string_view content);

// The ignore file a build uses.
struct BuildIgnoreFile {
  // The file read; empty when the build has none.
  std::filesystem::path path;
  // Its patterns, as ReadDockerignore returns them; empty when there is no file.
  std::vector<std::string> patterns;
};

// Finds and reads the ignore file for a build, as BuildKit and buildx choose it:
// `<dockerfile>.dockerignore` (the Dockerfile's own file name plus the suffix,
// beside it) when that file exists, else `<context_dir>/.dockerignore`, else
// none. The first file that exists is the one used, even when empty. `dockerfile`
// is a path this process can open (not necessarily inside the context); an
// empty one means only `<context_dir>/.dockerignore` is looked for, as
// BuildKit reads the ignore file of a named context (--build-context).
// Every pattern is checked as PatternMatcher::Create checks it, so a bad one
// fails here rather than mid-walk. Errors name the file, and the line where the
// fault is on one: `ctx/.dockerignore:8: illegal exclusion pattern: "!"`.
absl::StatusOr<BuildIgnoreFile> LoadBuildIgnoreFile(const std::filesystem::path& context_dir,
                                                    const std::filesystem::path& dockerfile);

// How a pattern is matched. The reference chooses by the pattern's shape and
// the choice is observable (`**file` is a plain suffix test, so it matches
// "dir/xfile"); kept exactly.
enum class MatchType {
  kExact,   // the path equals the pattern
  kPrefix,  // `lit**`: the path starts with `lit`
  kSuffix,  // `**lit`: the path ends with `lit`, or `**/lit` and the path is `lit`
  kRegexp,  // anything else: the reference's regular expression (see expression())
};

namespace internal {
struct Program;
}  // namespace internal

// One cleaned, precompiled pattern of a PatternMatcher.
class IgnorePattern {
 public:
  // One pattern as PatternMatcher::Create takes it: whitespace-trimmed (nullopt
  // when blank), CleanPath-ed, split from its leading `!`, checked with
  // MatchGlob(pattern, ".") and compiled. Returns InvalidArgument for a lone
  // `!` ("illegal exclusion pattern") or a pattern MatchGlob rejects.
  static absl::StatusOr<std::optional<IgnorePattern>> Parse(absl::string_view raw);

  // The cleaned pattern, without its `!`.
  const std::string& pattern() const { return pattern_; }
  // Whether the pattern began with `!` (re-includes what earlier ones excluded).
  bool exclusion() const { return exclusion_; }
  MatchType match_type() const { return match_type_; }
  // For kRegexp, the Go regular expression the reference builds from the
  // pattern (`**/dir2/*` is `^(.*/)?dir2/[^/]*$`); empty otherwise.
  const std::string& expression() const { return expression_; }

 private:
  friend class PatternMatcher;

  // Whether `path` matches this pattern alone. InvalidArgument when the
  // pattern's expression is not a valid Go regular expression (possible even
  // though filepath.Match accepted the pattern, e.g. `[Local-Only]`).
  absl::StatusOr<bool> Match(absl::string_view path) const;
  // Whether some leading run of `dir`'s elements ("a", "a/b", ... `dir`)
  // matches. `dir` is a clean path other than ".". Call only after Match
  // succeeded, so the pattern is known to be well-formed.
  bool MatchesSomeAncestor(absl::string_view dir) const;

  std::string pattern_;
  bool exclusion_ = false;
  MatchType match_type_ = MatchType::kExact;
  std::string expression_;
  // The number of slash-separated elements in `pattern_`.
  size_t elements_ = 1;
  // For kRegexp: the compiled expression; null when it does not compile.
  std::shared_ptr<const internal::Program> program_;
};

// What MatchesUsingParentResults learned about a directory, for its children.
// A default-constructed MatchInfo carries no knowledge (each pattern is then
// also tried against every ancestor, as MatchesOrParentMatches does).
class MatchInfo {
 private:
  friend class PatternMatcher;
  // Per pattern: whether it matched the directory or one of its ancestors.
  std::vector<bool> parent_matched_;
};

// An ordered list of ignore patterns. A path is excluded when the last pattern
// that matches it (or, for the parent-aware calls, one of its ancestor
// directories) is not a `!` pattern. All methods are const and safe to call
// concurrently; matching does not allocate unless a path needs cleaning or a
// pattern's expression is very large.
class PatternMatcher {
 public:
  // Parses each pattern with IgnorePattern::Parse, skipping blank ones, and
  // fails as the first bad one does.
  static absl::StatusOr<PatternMatcher> Create(absl::Span<const std::string> patterns);

  // Whether `path` (slash-separated, relative to the context) is excluded,
  // considering every ancestor directory of `path` as well: `docs` excludes
  // "docs/a/b". Patterns that cannot change the outcome are not evaluated.
  // Returns InvalidArgument when an evaluated pattern's expression is invalid.
  absl::StatusOr<bool> MatchesOrParentMatches(absl::string_view path) const;

  // Like MatchesOrParentMatches, but only `path` itself is tried, no ancestor.
  absl::StatusOr<bool> MatchesExact(absl::string_view path) const;

  // For a walker: whether `path` is excluded, given whether its parent
  // directory was (`parent_matched`, false for children of the root). Wrong
  // when an exclusion re-includes a directory under an excluded one; the
  // reference keeps it deprecated for that reason. Prefer the MatchInfo form.
  absl::StatusOr<bool> MatchesUsingParentResult(absl::string_view path, bool parent_matched) const;

  // For a walker: whether `path` is excluded, reusing what was learned about
  // its parent directory (`parent`, default-constructed for children of the
  // root or when unknown). Stores in `*info` what children of `path` need; `info`
  // may be `&parent`. As in the reference, a pattern skipped for `parent` (an
  // exclusion while nothing was excluded yet) is not tried against the
  // ancestors later, so with `*/b` then `!a`, "a/b" is excluded here but not by
  // MatchesOrParentMatches. Returns InvalidArgument when `parent` came from a
  // matcher with a different number of patterns, or as MatchesOrParentMatches
  // does; `*info` is unspecified after an error.
  absl::StatusOr<bool> MatchesUsingParentResults(absl::string_view path, const MatchInfo& parent,
                                                 MatchInfo* info) const;

  // Whether any pattern is a `!` pattern (a walker may then not skip an
  // excluded directory, since something under it may be re-included).
  bool has_exclusions() const { return has_exclusions_; }

  const std::vector<IgnorePattern>& patterns() const { return patterns_; }

 private:
  friend absl::StatusOr<bool> Matches(absl::string_view, absl::Span<const std::string>);

  // The reference's deprecated single-ancestor rule: besides `path`, each
  // pattern of N elements is tried against the first N elements of `path`'s
  // directory only.
  absl::StatusOr<bool> MatchesWithOneAncestor(absl::string_view path) const;

  std::vector<IgnorePattern> patterns_;
  bool has_exclusions_ = false;
};

// The reference's deprecated package-level Matches(file, patterns): builds a
// matcher (failing as Create does), cleans `path`, returns false for "." (the
// whole context is never excluded), and applies the single-ancestor rule. Kept
// because the reference's conformance cases are written against it; new code
// uses PatternMatcher::MatchesOrParentMatches.
absl::StatusOr<bool> Matches(absl::string_view path, absl::Span<const std::string> patterns);

}  // namespace stagefarm::dockerfile
