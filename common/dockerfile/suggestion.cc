#include "common/dockerfile/suggestion.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/dockerfile/go_text.h"

namespace stagefarm::dockerfile {
namespace {

std::vector<char32_t> Runes(absl::string_view s) {
  std::vector<char32_t> runes;
  while (!s.empty()) {
    const go::DecodedRune r = go::DecodeRune(s);
    runes.push_back(r.rune);
    s.remove_prefix(r.width);
  }
  return runes;
}

// Levenshtein distance over runes, unit costs (agext/levenshtein defaults).
int EditDistance(absl::string_view a, absl::string_view b) {
  const std::vector<char32_t> x = Runes(a);
  const std::vector<char32_t> y = Runes(b);
  std::vector<int> row(y.size() + 1);
  std::iota(row.begin(), row.end(), 0);
  for (size_t i = 1; i <= x.size(); ++i) {
    int diagonal = row[0];
    row[0] = static_cast<int>(i);
    for (size_t j = 1; j <= y.size(); ++j) {
      const int above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (x[i - 1] == y[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[y.size()];
}

std::string MatchCase(std::string option, absl::string_view original) {
  if (original == absl::AsciiStrToLower(original)) return absl::AsciiStrToLower(option);
  if (original == absl::AsciiStrToUpper(original)) return absl::AsciiStrToUpper(option);
  return option;
}

}  // namespace

std::string WithSuggestion(std::string message, absl::string_view value,
                           absl::Span<const absl::string_view> options, bool case_sensitive) {
  const std::string needle = case_sensitive ? std::string(value) : absl::AsciiStrToLower(value);
  std::string match;
  int best = 3;
  for (absl::string_view option : options) {
    const std::string candidate =
        case_sensitive ? std::string(option) : absl::AsciiStrToLower(option);
    if (candidate == needle) return message;
    const int distance = EditDistance(needle, candidate);
    if (distance < best) {
      best = distance;
      match = case_sensitive ? candidate : MatchCase(candidate, value);
    }
  }
  if (match.empty()) return message;
  return absl::StrCat(message, " (did you mean ", match, "?)");
}

}  // namespace stagefarm::dockerfile
