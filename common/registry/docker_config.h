// Registry credentials from Docker's client config, `config.json` in
// $DOCKER_CONFIG or else ~/.docker: `{"auths": {"HOST": {"auth":
// base64("user:password")}}}` (also "username"/"password" fields, and the
// legacy "https://index.docker.io/v1/" key for Docker Hub). Credential
// helpers and credsStore are not consulted.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stagefarm::registry {

struct Credentials {
  std::string username;
  std::string password;
};

// The config file this process reads: $DOCKER_CONFIG/config.json, else
// $HOME/.docker/config.json.
std::filesystem::path DockerConfigPath();

// How error messages name the file: "~/.docker/config.json" when it is the
// default one, the full path otherwise.
std::string DockerConfigDisplayName();

// The credentials for `host` ("127.0.0.1:5000", "docker.io") in the config
// file at `path`: nullopt when the file does not exist or has no entry for the
// host. An entry's key may be the host, or a URL naming it
// ("https://HOST/v1/"). InvalidArgument naming the file and the key for a
// file that is not JSON, an "auth" that is not base64 of "user:password".
absl::StatusOr<std::optional<Credentials>> LoadCredentials(const std::filesystem::path& path,
                                                           absl::string_view host);

}  // namespace stagefarm::registry
