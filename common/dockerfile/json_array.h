// Decoding the exec (JSON array) form of RUN, CMD, ENTRYPOINT, SHELL, ADD, COPY
// and VOLUME exactly as the reference does with Go's json.Unmarshal: after
// leading Unicode whitespace the whole text must be one JSON value, so text
// after the array other than JSON whitespace makes it shell form
// (`SHELL ["sh"] ]` is the command `["sh"] ]`).
#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace stagefarm::dockerfile {

enum class JsonArrayStatus {
  kStrings,         // a JSON array of strings; `strings` holds them
  kNotJson,         // not a (valid) JSON array: the caller falls back to shell form
  kNonStringArray,  // valid JSON array with a non-string element: a parse error
};

struct JsonArrayResult {
  JsonArrayStatus status = JsonArrayStatus::kNotJson;
  std::vector<std::string> strings;
};

// Decodes `text` (leading Unicode whitespace allowed). Any syntax error,
// trailing text included, is kNotJson even when an element is not a string;
// so is nesting deeper than Go's limit (10000), like the reference's error.
JsonArrayResult DecodeJsonStringArray(absl::string_view text);

inline constexpr absl::string_view kNonStringArrayError =
    "when using JSON array syntax, arrays must be comprised of strings only";

}  // namespace stagefarm::dockerfile
