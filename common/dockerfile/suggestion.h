// "Did you mean ...?" hints on errors about a misspelt name, as the reference
// adds them (BuildKit's util/suggest): the closest option within edit distance
// 2 is appended to the message.
#pragma once

#include <string>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace stagefarm::dockerfile {

// Returns `message`, followed by " (did you mean X?)" when some option is within
// Levenshtein distance 2 of `value` (the first closest option wins). Returns
// `message` unchanged when `value` equals an option (the error was not about
// the spelling) or nothing is close. Without `case_sensitive` the comparison
// ignores ASCII case and X takes the case of `value` when that is all-lower or
// all-upper.
std::string WithSuggestion(std::string message, absl::string_view value,
                           absl::Span<const absl::string_view> options, bool case_sensitive);

}  // namespace stagefarm::dockerfile
