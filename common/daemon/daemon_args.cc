#include "common/daemon/daemon_args.h"

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <utility>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/process/version.h"

ABSL_FLAG(int, exit_with_parent, 0,
          "Stop (as on SIGTERM) when the process with this pid, the one that started this "
          "daemon, exits; `stagefarm build`'s embedded cluster passes its own pid.");

namespace stagefarm::daemon {
namespace {

// A flag argument cut into its parts: `--` `data-dir` `=/srv`.
struct FlagParts {
  absl::string_view dashes;  // "-" or "--"
  absl::string_view name;    // never empty, never starts with '-'
  absl::string_view value;   // "=VALUE", or empty when no '=' was given
};

// Cuts `arg` the way Abseil reads it (one or two leading dashes, then the
// name up to the first '='). False for anything Abseil does not read as a
// named flag: a positional argument, "-", "--", or a name starting with '-'.
bool SplitFlag(absl::string_view arg, FlagParts& parts) {
  if (arg.size() < 2 || arg[0] != '-') return false;
  const size_t dashes = arg[1] == '-' ? 2 : 1;
  const absl::string_view rest = arg.substr(dashes);
  if (rest.empty() || rest[0] == '-' || rest[0] == '=') return false;
  const size_t equals = rest.find('=');
  parts.dashes = arg.substr(0, dashes);
  parts.name = rest.substr(0, equals);
  parts.value = equals == absl::string_view::npos ? absl::string_view() : rest.substr(equals);
  return true;
}

// The ABSL_FLAG name for `name` as the operator spelt it. A dashed negation
// of a boolean, `no-insecure`, becomes Abseil's `noinsecure`.
std::string AbseilName(absl::string_view name) {
  std::string underscored = absl::StrReplaceAll(name, {{"-", "_"}});
  if (absl::StartsWith(underscored, "no_") && absl::FindCommandLineFlag(underscored) == nullptr) {
    const absl::CommandLineFlag* negated = absl::FindCommandLineFlag(underscored.substr(3));
    if (negated != nullptr && negated->IsOfType<bool>()) underscored.erase(2, 1);
  }
  return underscored;
}

// Whether Abseil will take the argument after `--NAME` (no '=') as the
// flag's value: it does for every registered flag except booleans. An
// unknown flag is Abseil's to report, so it takes nothing here.
bool TakesNextArgument(const std::string& abseil_name) {
  const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(abseil_name);
  return flag != nullptr && !flag->IsOfType<bool>();
}

// One flagfile being read, for cycle detection and messages.
struct OpenFlagfile {
  std::string name;                // as the operator or the including file gave it
  std::filesystem::path identity;  // canonical where possible, so links to one file match
};

std::string Chain(const std::vector<OpenFlagfile>& chain, absl::string_view last) {
  std::vector<absl::string_view> names;
  for (const OpenFlagfile& file : chain) names.push_back(file.name);
  names.push_back(last);
  return absl::StrJoin(names, " -> ");
}

absl::Status ExpandFlagfiles(absl::string_view files, std::vector<OpenFlagfile>& chain,
                             std::vector<std::string>& out);

// Appends the flags of flagfile `name` to `out`, normalised, with nested
// flagfiles expanded. `chain` holds the flagfiles that include this one.
absl::Status ExpandFlagfile(const std::string& name, std::vector<OpenFlagfile>& chain,
                            std::vector<std::string>& out) {
  std::error_code error;
  std::filesystem::path identity = std::filesystem::weakly_canonical(name, error);
  if (error) identity = std::filesystem::absolute(name, error).lexically_normal();
  for (const OpenFlagfile& open : chain) {
    if (open.identity == identity) {
      return absl::InvalidArgumentError(
          absl::StrCat("flagfile cycle: ", Chain(chain, name), " includes itself"));
    }
  }
  if (chain.size() >= static_cast<size_t>(kMaxFlagfileDepth)) {
    return absl::InvalidArgumentError(absl::StrCat("flagfiles nested more than ", kMaxFlagfileDepth,
                                                   " deep: ", Chain(chain, name)));
  }
  // An ifstream opens a directory without complaint and then reads nothing.
  if (std::filesystem::is_directory(identity, error)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read flagfile ", name, ": Is a directory"));
  }
  std::ifstream in(name);
  if (!in) {
    const int open_errno = errno;
    const std::string message =
        absl::StrCat("cannot read flagfile ", name, ": ", std::strerror(open_errno));
    if (open_errno == ENOENT) return absl::NotFoundError(message);
    if (open_errno == EACCES) return absl::PermissionDeniedError(message);
    return absl::InvalidArgumentError(message);
  }

  chain.push_back({name, identity});
  std::string line;
  int line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    const absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text[0] == '#') continue;
    const std::string where = absl::StrCat(name, ":", line_number, ": ");
    FlagParts parts;
    // A flag and its value separated by a space would reach Abseil as one
    // flag with a space in its name.
    if (!SplitFlag(text, parts) || absl::StrContains(parts.name, ' ') ||
        absl::StrContains(parts.name, '\t')) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "expected --flag or --flag=value, got \"", text, "\""));
    }
    const std::string abseil_name = AbseilName(parts.name);
    if (abseil_name == "flagfile") {
      if (parts.value.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, "--flagfile needs its file on the same line: --flagfile=FILE"));
      }
      absl::Status nested = ExpandFlagfiles(parts.value.substr(1), chain, out);
      if (!nested.ok()) return nested;
      continue;
    }
    // Abseil would take the flagfile's next line, or fail; a flag and its
    // value belong on one line.
    if (parts.value.empty() && TakesNextArgument(abseil_name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, parts.dashes, parts.name,
                       " needs a value on the same line: ", parts.dashes, parts.name, "=VALUE"));
    }
    out.push_back(absl::StrCat(parts.dashes, abseil_name, parts.value));
  }
  if (in.bad()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read flagfile ", name, ": ", std::strerror(errno)));
  }
  chain.pop_back();
  return absl::OkStatus();
}

// Expands `files`, the value of a --flagfile: comma-separated, as Abseil
// reads it.
absl::Status ExpandFlagfiles(absl::string_view files, std::vector<OpenFlagfile>& chain,
                             std::vector<std::string>& out) {
  const std::vector<std::string> names = absl::StrSplit(files, ',', absl::SkipEmpty());
  if (names.empty()) {
    const std::string where = chain.empty() ? "" : absl::StrCat(chain.back().name, ": ");
    return absl::InvalidArgumentError(absl::StrCat(where, "--flagfile needs a file name"));
  }
  for (const std::string& name : names) {
    absl::Status status = ExpandFlagfile(name, chain, out);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

}  // namespace

std::string NormalizeFlagName(absl::string_view arg) {
  FlagParts parts;
  if (!SplitFlag(arg, parts)) return std::string(arg);
  return absl::StrCat(parts.dashes, AbseilName(parts.name), parts.value);
}

absl::StatusOr<std::vector<std::string>> NormalizeDaemonArgs(std::vector<std::string> args) {
  std::vector<std::string> out;
  if (args.empty()) return out;
  out.push_back(std::move(args[0]));
  for (size_t i = 1; i < args.size(); ++i) {
    std::string& arg = args[i];
    if (arg == "--") {
      out.insert(out.end(), std::make_move_iterator(args.begin() + static_cast<ptrdiff_t>(i)),
                 std::make_move_iterator(args.end()));
      break;
    }
    FlagParts parts;
    if (!SplitFlag(arg, parts)) {
      out.push_back(std::move(arg));
      continue;
    }
    const std::string abseil_name = AbseilName(parts.name);
    if (abseil_name == "flagfile") {
      absl::string_view files;
      if (!parts.value.empty()) {
        files = parts.value.substr(1);
      } else if (i + 1 < args.size()) {
        files = args[++i];
      }
      std::vector<OpenFlagfile> chain;
      absl::Status status = ExpandFlagfiles(files, chain, out);
      if (!status.ok()) return status;
      continue;
    }
    const bool value_follows = parts.value.empty() && TakesNextArgument(abseil_name);
    out.push_back(absl::StrCat(parts.dashes, abseil_name, parts.value));
    if (value_follows && i + 1 < args.size()) out.push_back(std::move(args[++i]));
  }
  return out;
}

absl::Status ParseDaemonCommandLine(int argc, char** argv) {
  absl::StatusOr<std::vector<std::string>> args =
      NormalizeDaemonArgs(std::vector<std::string>(argv, argv + argc));
  if (!args.ok()) return args.status();
  // Abseil's --help lists only flags from files named after the program,
  // which main.cc is not; list the daemon's own flags, not Abseil's.
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return !absl::StrContains(file, "absl/");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  const std::string program = std::filesystem::path(argc > 0 ? argv[0] : "").filename();
  usage.version_string = [program] { return absl::StrCat(program, " ", process::kVersion, "\n"); };
  absl::SetFlagsUsageConfig(usage);
  std::vector<char*> pointers;
  for (std::string& arg : *args) pointers.push_back(arg.data());
  pointers.push_back(nullptr);
  // The positional arguments it returns are ignored: the daemons take none.
  absl::ParseCommandLine(static_cast<int>(args->size()), pointers.data());
  if (const int parent = absl::GetFlag(FLAGS_exit_with_parent); parent > 0) {
    // The signal comes when the parent exits from now on; a parent gone
    // already (this process adopted) is seen here.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) raise(SIGTERM);
  }
  return absl::OkStatus();
}

std::string AdvertisedEndpoint(const std::string& bound, const std::string& advertise) {
  if (!advertise.empty()) return advertise;
  std::string host = "localhost";
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) == 0 && name[0] != '\0') host = name;
  std::string endpoint = bound;
  for (const char* any : {"//0.0.0.0:", "//*:"}) {
    if (const size_t at = endpoint.find(any); at != std::string::npos) {
      endpoint = absl::StrCat(endpoint.substr(0, at), "//", host, ":",
                              endpoint.substr(at + std::string(any).size()));
    }
  }
  return endpoint;
}

}  // namespace stagefarm::daemon
