// A daemon's command line as the operator writes it, made ready for Abseil.
//
// The daemons declare their flags with ABSL_FLAG, whose names cannot contain
// dashes, yet the documented spelling is `--data-dir`, and the daemons' own
// messages name flags that way. Abseil does not map one to the other, and it
// reads --flagfile files itself, where dashed names would fail the same way.
// So the daemons hand their arguments to this module first: it spells every
// flag name with underscores and splices the lines of each flagfile in place,
// so that both spellings work on the command line and in flagfiles alike.
#ifndef STAGEFARM_COMMON_DAEMON_DAEMON_ARGS_H_
#define STAGEFARM_COMMON_DAEMON_DAEMON_ARGS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stagefarm::daemon {

// How deeply flagfiles may include one another (the command line's own
// --flagfile is depth 1). Deeper nesting is refused rather than followed.
inline constexpr int kMaxFlagfileDepth = 8;

// For a daemon's usage message, after its synopsis: Abseil's --help lists
// the flags by their ABSL_FLAG names, with underscores.
inline constexpr absl::string_view kFlagSpellingHelp =
    "Flags are spelt with dashes (--data-dir) or underscores (--data_dir), on the command line and "
    "in a --flagfile FILE, which holds one --flag=value per line ('#' starts a comment). The "
    "list below shows the underscores.";

// Returns `arg` with the dashes of its flag name turned into underscores:
// `--data-dir=/a-b` becomes `--data_dir=/a-b`. Only the NAME of `-NAME`,
// `--NAME`, `-NAME=VALUE` and `--NAME=VALUE` changes; anything else (a
// positional argument, `-`, `--`, a name that itself starts with a dash) is
// returned unchanged. The negation of a registered boolean flag spelt with a
// dash, `--no-insecure`, becomes Abseil's `--noinsecure`.
std::string NormalizeFlagName(absl::string_view arg);

// Returns `args` (argv[0] first, kept as is) ready for absl::ParseCommandLine:
//  - each flag is normalised with NormalizeFlagName, except a flag's value
//    given as the next argument (`--listen tcp://a-b:1`; Abseil's flag
//    registry says which flags take one) and everything after a bare `--`,
//    which Abseil treats as positional;
//  - each `--flagfile=FILES` / `--flagfile FILES` (FILES: a comma-separated
//    list, as Abseil takes it) is replaced by the flags in those files, in
//    order. A flagfile holds one `--flag` or `--flag=value` per line; blank
//    lines and lines starting with `#` are skipped and whitespace around a
//    line is dropped. Its lines are normalised the same way, and a
//    `--flagfile=...` line is expanded in turn.
// Errors (InvalidArgument, or NotFound/PermissionDenied for a file that
// cannot be read) name the file and, for a bad line, its line number: a
// missing or unreadable flagfile; a line that is not a flag, is `--`, or is a
// flag that needs a value written without `=VALUE`; a --flagfile with no file;
// a flagfile that includes itself, directly or not (the message shows the
// chain); nesting deeper than kMaxFlagfileDepth.
absl::StatusOr<std::vector<std::string>> NormalizeDaemonArgs(std::vector<std::string> args);

// Parses a daemon's command line: NormalizeDaemonArgs, then
// absl::ParseCommandLine on the result, which sets the ABSL_FLAGs. Returns the
// error of NormalizeDaemonArgs, which main reports as "PROGRAM: MESSAGE" and
// exits 2 for, before any flag is set. Errors Abseil finds (an unknown flag, a
// bad value) and --help are handled by Abseil itself, which exits; --help
// lists the flags the program defines (not Abseil's own), after its usage
// message.
// --exit-with-parent=PID, which every daemon takes, is applied here: the
// daemon gets SIGTERM when its parent exits (and at once if the parent is no
// longer PID, gone already).
absl::Status ParseDaemonCommandLine(int argc, char** argv);

// The endpoint peers are told to use for a socket bound on `bound`:
// `advertise` when given, else `bound` with a wildcard address (0.0.0.0, *)
// replaced by this host's name.
std::string AdvertisedEndpoint(const std::string& bound, const std::string& advertise);

}  // namespace stagefarm::daemon

#endif  // STAGEFARM_COMMON_DAEMON_DAEMON_ARGS_H_
