// Command-line parsing for the stagefarm client, with docker buildx's habits:
// `--flag value` and `--flag=value`, short aliases (`-f`, `-t`), repeatable
// flags (`--build-arg` twice), booleans without a value, and a "did you mean"
// hint for a misspelt flag.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stagefarm::cli {

struct FlagSpec {
  std::string name;         // long name without dashes: "build-arg"
  std::string short_name;   // one letter without the dash, or empty
  bool takes_value = true;  // false: a boolean switch
  bool repeated = false;    // may be given several times
  std::string help;
};

struct ParsedArgs {
  std::map<std::string, std::vector<std::string>> values;  // by long name
  std::vector<std::string> positional;

  bool Has(const std::string& name) const { return values.count(name) > 0; }
  // The last value given for `name`, or `fallback`.
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  const std::vector<std::string>& All(const std::string& name) const;
};

// Parses `args` (without the program and command words) against `specs`.
// InvalidArgument for an unknown flag (with a suggestion), a missing value, or
// a non-repeatable flag given twice. A lone `--` ends the flags.
absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                                     const std::vector<FlagSpec>& specs);

// One line per flag, for --help.
std::string FlagHelp(const std::vector<FlagSpec>& specs);

}  // namespace stagefarm::cli
