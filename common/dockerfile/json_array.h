// Decoding the exec (JSON array) form of RUN, CMD, ENTRYPOINT, SHELL, ADD, COPY
// and VOLUME exactly as the reference does with Go's json.Decoder: the first
// JSON value after leading whitespace is decoded and anything after it is
// ignored (`SHELL ["sh"] ]` is accepted).
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

// Decodes `text` (leading Unicode whitespace allowed). Nesting deeper than
// Go's limit (10000) is kNotJson, like the reference's decode error.
JsonArrayResult DecodeJsonStringArray(absl::string_view text);

inline constexpr absl::string_view kNonStringArrayError =
    "when using JSON array syntax, arrays must be comprised of strings only";

}  // namespace stagefarm::dockerfile
