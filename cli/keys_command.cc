#include "cli/keys_command.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "cli/subcommand.h"
#include "common/net/curve_keys.h"

namespace stagefarm::cli {
namespace {

constexpr char kKeysGenerateUsage[] = "stagefarm keys generate DIR [--name NAME]";

// Makes `dir` with mode 0700 (its missing parents as mkdir -p would) unless
// it exists; an existing directory keeps its mode.
absl::Status EnsureKeyDirectory(std::filesystem::path dir) {
  if (!dir.has_filename()) dir = dir.parent_path();  // "keys/" names "keys"
  std::error_code ec;
  if (std::filesystem::exists(dir, ec)) return absl::OkStatus();
  if (dir.has_parent_path()) {
    std::filesystem::create_directories(dir.parent_path(), ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat(dir.parent_path().string(), ": cannot create directory: ", ec.message()));
    }
  }
  if (::mkdir(dir.c_str(), 0700) != 0) {
    return absl::InternalError(
        absl::StrCat(dir.string(), ": cannot create directory: ", std::strerror(errno)));
  }
  // mkdir's mode is cut by the umask; the key directory is exactly 0700.
  if (::chmod(dir.c_str(), 0700) != 0) {
    return absl::InternalError(
        absl::StrCat(dir.string(), ": cannot set mode 0700: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

int KeysGenerate(const std::vector<std::string>& args) {
  ParsedArgs parsed;
  if (auto stop = ParseCommand(args, kKeysGenerateUsage,
                               {{"name", "", true, false,
                                 "file name of the keypair: NAME.key, NAME.pub (default: node)"}},
                               "DIR", parsed)) {
    return *stop;
  }
  const std::filesystem::path dir = parsed.positional[0];
  const std::string name = parsed.Get("name", "node");
  if (absl::Status s = net::ValidateKeyName(name); !s.ok()) {
    return Fail(absl::StrCat("--name: ", s.message(), "\nusage: ", kKeysGenerateUsage), kExitUsage);
  }
  absl::StatusOr<net::CurveKeyPair> keys = net::CurveKeyPair::Generate();
  if (!keys.ok()) return Fail(keys.status().message());
  if (absl::Status s = EnsureKeyDirectory(dir); !s.ok()) return Fail(s.message());
  if (absl::Status s = net::WriteCurveKeyPair(*keys, dir, name); !s.ok()) {
    return Fail(s.message());
  }
  std::printf("secret key: %s\npublic key: %s\n%s\n", (dir / absl::StrCat(name, ".key")).c_str(),
              (dir / absl::StrCat(name, ".pub")).c_str(), keys->public_key.c_str());
  return 0;
}

}  // namespace stagefarm::cli
