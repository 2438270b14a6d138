#include "cli/subcommand.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace stagefarm::cli {

int Fail(absl::string_view message, int code) {
  std::fprintf(stderr, "stagefarm: %.*s\n", static_cast<int>(message.size()), message.data());
  return code;
}

std::optional<int> ParseCommand(const std::vector<std::string>& args, absl::string_view usage,
                                std::vector<FlagSpec> specs, absl::string_view positional_name,
                                ParsedArgs& out) {
  return ParseCommand(args, usage, std::move(specs), 1, 1,
                      absl::StrCat("exactly one ", positional_name), out);
}

std::optional<int> ParseCommand(const std::vector<std::string>& args, absl::string_view usage,
                                std::vector<FlagSpec> specs, size_t min_positional,
                                size_t max_positional, absl::string_view expected,
                                ParsedArgs& out) {
  specs.push_back({"help", "h", false, false, "show this help"});
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, specs);
  if (!parsed.ok()) return Fail(parsed.status().message(), kExitUsage);
  if (parsed->Has("help")) {
    std::printf("usage: %.*s\n\n%s", static_cast<int>(usage.size()), usage.data(),
                FlagHelp(specs).c_str());
    return 0;
  }
  if (parsed->positional.size() < min_positional || parsed->positional.size() > max_positional) {
    return Fail(absl::StrCat("expected ", expected, "\nusage: ", usage), kExitUsage);
  }
  out = *std::move(parsed);
  return std::nullopt;
}

absl::StatusOr<std::filesystem::path> LocalDataDir(const ParsedArgs& args) {
  if (args.Has("data-dir")) return std::filesystem::path(args.Get("data-dir"));
  if (const char* home = std::getenv("STAGEFARM_HOME"); home != nullptr && *home != '\0') {
    return std::filesystem::path(home);
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return std::filesystem::path(home) / ".stagefarm";
  }
  return absl::InvalidArgumentError(
      "no data dir: give --data-dir or set STAGEFARM_HOME (HOME is not set either)");
}

FlagSpec DataDirFlag() {
  return {"data-dir", "", true, false,
          "local data dir (default: $STAGEFARM_HOME, else $HOME/.stagefarm)"};
}

}  // namespace stagefarm::cli
