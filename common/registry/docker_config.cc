#include "common/registry/docker_config.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"

namespace stagefarm::registry {
namespace {

// A config.json is a few kilobytes; a larger file is not read.
constexpr uintmax_t kMaxConfigBytes = uintmax_t{4} << 20;

// "https://HOST/v1/" -> "HOST"; a plain host stays as it is.
std::string KeyHost(absl::string_view key) {
  absl::ConsumePrefix(&key, "https://");
  absl::ConsumePrefix(&key, "http://");
  return std::string(key.substr(0, key.find('/')));
}

bool KeyNamesHost(absl::string_view key, absl::string_view host) {
  const std::string key_host = KeyHost(key);
  if (key_host == host) return true;
  // Docker Hub's entry is kept under its old index address.
  return host == "docker.io" &&
         (key_host == "index.docker.io" || key_host == "registry-1.docker.io");
}

}  // namespace

std::filesystem::path DockerConfigPath() {
  if (const char* dir = std::getenv("DOCKER_CONFIG"); dir != nullptr && *dir != '\0') {
    return std::filesystem::path(dir) / "config.json";
  }
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home != nullptr ? home : "/") / ".docker" / "config.json";
}

std::string DockerConfigDisplayName() {
  if (const char* dir = std::getenv("DOCKER_CONFIG"); dir != nullptr && *dir != '\0') {
    return DockerConfigPath().string();
  }
  return "~/.docker/config.json";
}

absl::StatusOr<std::optional<Credentials>> LoadCredentials(const std::filesystem::path& path,
                                                           absl::string_view host) {
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) return std::optional<Credentials>();  // no file: no credentials
  if (size > kMaxConfigBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path.string(), ": ", size, " bytes, over the limit of ", kMaxConfigBytes));
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) {
    return absl::PermissionDeniedError(absl::StrCat(path.string(), ": cannot read"));
  }
  const nlohmann::json document =
      nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded() || !document.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": not a JSON object"));
  }
  auto auths = document.find("auths");
  if (auths == document.end() || !auths->is_object()) return std::optional<Credentials>();
  for (const auto& [key, entry] : auths->items()) {
    if (!KeyNamesHost(key, host) || !entry.is_object()) continue;
    const std::string where = absl::StrCat(path.string(), ": auths.", key);
    Credentials out;
    if (auto auth = entry.find("auth");
        auth != entry.end() && auth->is_string() && !auth->get<std::string>().empty()) {
      std::string decoded;
      if (!absl::Base64Unescape(auth->get<std::string>(), &decoded)) {
        return absl::InvalidArgumentError(absl::StrCat(where, ".auth: not base64"));
      }
      const size_t colon = decoded.find(':');
      if (colon == std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ".auth: expected base64 of \"user:password\""));
      }
      out.username = decoded.substr(0, colon);
      out.password = decoded.substr(colon + 1);
    } else {
      if (auto user = entry.find("username"); user != entry.end() && user->is_string()) {
        out.username = user->get<std::string>();
      }
      if (auto pass = entry.find("password"); pass != entry.end() && pass->is_string()) {
        out.password = pass->get<std::string>();
      }
    }
    if (out.username.empty() && out.password.empty()) continue;
    return std::optional<Credentials>(std::move(out));
  }
  return std::optional<Credentials>();
}

}  // namespace stagefarm::registry
