// What every stagefarm subcommand shares: its exit codes, how it reports an
// error, and how it parses its arguments (with --help and usage errors).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cli/command_line.h"

namespace stagefarm::cli {

// The command ran and failed (bad input, I/O error).
inline constexpr int kExitError = 1;
// The command line was wrong; nothing was done.
inline constexpr int kExitUsage = 2;

// Prints "stagefarm: MESSAGE" to stderr and returns `code`.
int Fail(absl::string_view message, int code = kExitError);

// Parses a command's arguments against `specs` plus --help, and handles help
// (prints `usage` and the flags, returns 0) and usage errors (an unknown
// flag, or not exactly one positional argument, named `positional_name`:
// returns kExitUsage). Returns nullopt, with `out` filled, to go on.
std::optional<int> ParseCommand(const std::vector<std::string>& args, absl::string_view usage,
                                std::vector<FlagSpec> specs, absl::string_view positional_name,
                                ParsedArgs& out);

// The same for a command taking from `min_positional` to `max_positional`
// positional arguments; a count outside is a usage error "expected
// `expected`" (e.g. "at least one NAME").
std::optional<int> ParseCommand(const std::vector<std::string>& args, absl::string_view usage,
                                std::vector<FlagSpec> specs, size_t min_positional,
                                size_t max_positional, absl::string_view expected, ParsedArgs& out);

// The local node's data dir (content store, snapshots, cache mounts, run
// scratch): --data-dir when given, else $STAGEFARM_HOME, else
// $HOME/.stagefarm. InvalidArgument when none can be found (no HOME).
absl::StatusOr<std::filesystem::path> LocalDataDir(const ParsedArgs& args);

// The --data-dir flag every command that reads the local store takes.
FlagSpec DataDirFlag();

}  // namespace stagefarm::cli
