// A client of one registry (Docker Registry HTTP API v2 / OCI distribution):
// manifests and blobs of its repositories, with the registry's auth done on
// the way (bearer tokens from the challenge's realm, or basic auth, with
// credentials from Docker's config.json) and retries with backoff.
//
// Every answer is treated as hostile: JSON bodies have size limits, digests
// are checked by the callers that know them (pull.h, push.h), errors name the
// status and what the registry said.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/digest/digest.h"
#include "common/registry/docker_config.h"
#include "common/registry/http_transport.h"

namespace stagefarm::registry {

struct RegistryOptions {
  // HOST[:PORT]s spoken to over plain HTTP (`--insecure-registry`); every
  // other registry over HTTPS with certificate verification.
  std::vector<std::string> insecure_registries;
  // Where credentials come from (DockerConfigPath() by default).
  std::filesystem::path docker_config = DockerConfigPath();
  RetryPolicy retry;
  // Blobs larger than this go up in PATCH chunks of this size; smaller ones
  // in one PUT.
  uint64_t upload_chunk_size = uint64_t{64} << 20;
};

// Manifests and token replies are small: 4 MiB, as distribution limits manifests.
inline constexpr uint64_t kMaxManifestBytes = uint64_t{4} << 20;

// A manifest as the registry sent it.
struct FetchedManifest {
  std::string bytes;
  std::string content_type;           // without parameters; empty when not sent
  std::string docker_content_digest;  // the Docker-Content-Digest header, if sent
};

class RegistryClient {
 public:
  // A client of `host` ("127.0.0.1:5000", "docker.io", "ghcr.io").
  RegistryClient(std::string host, RegistryOptions options);

  const std::string& host() const { return host_; }
  // "https://HOST" or "http://HOST" (Docker Hub's API host for docker.io).
  const std::string& base_url() const { return base_url_; }

  // GET /v2/<repo>/manifests/<reference> (a tag or a digest), accepting OCI
  // and Docker schema 2 manifests and indexes. NotFound "manifest unknown"
  // style errors carry the status line and the registry's message.
  absl::StatusOr<FetchedManifest> GetManifest(absl::string_view repo, absl::string_view reference);

  // GET /v2/<repo>/blobs/<digest>, the body handed to `sink` as it streams
  // (redirects followed). `reset` is called before every attempt, the first
  // one included, so a retried download starts its sink over.
  absl::Status GetBlob(absl::string_view repo, const digest::Digest& blob,
                       const std::function<void()>& reset,
                       const std::function<absl::Status(absl::string_view)>& sink);

  // HEAD /v2/<repo>/blobs/<digest>: whether the repository has the blob.
  absl::StatusOr<bool> HasBlob(absl::string_view repo, const digest::Digest& blob);

  // POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<from>: true when the
  // registry mounted the blob (201). Otherwise false, and *upload_url is the
  // upload session it opened instead (202), or empty.
  absl::StatusOr<bool> MountBlob(absl::string_view repo, const digest::Digest& blob,
                                 absl::string_view from, std::string* upload_url);

  // Uploads `size` bytes from `source` as the blob `blob`: in one PUT, or in
  // PATCH chunks of options.upload_chunk_size (Content-Range) when larger,
  // then the closing PUT ?digest=. `upload_url` is a session MountBlob
  // opened, or empty to open one. `reopen` gives a fresh source at an offset
  // (a retried request resends its bytes).
  absl::Status UploadBlob(
      absl::string_view repo, const digest::Digest& blob, uint64_t size, std::string upload_url,
      const std::function<absl::StatusOr<std::function<absl::StatusOr<absl::string_view>()>>(
          uint64_t offset, uint64_t length)>& reopen);

  // PUT /v2/<repo>/manifests/<reference> with `media_type` as Content-Type.
  // Returns the Docker-Content-Digest the registry answered (empty if none).
  absl::StatusOr<std::string> PutManifest(absl::string_view repo, absl::string_view reference,
                                          absl::string_view media_type, const std::string& bytes);

 private:
  // Sends `make`'s request with the current Authorization; on a 401, answers
  // the challenge (fetching a token, or using basic credentials) and sends
  // once more. Retries as options_.retry says.
  absl::StatusOr<HttpResponse> Send(const std::function<absl::StatusOr<HttpRequest>()>& make);
  // Send of a `method` request to `url` with no body and no extra headers.
  absl::StatusOr<HttpResponse> SendWithoutBody(absl::string_view method, const std::string& url);
  // Gets the Authorization header value for a 401's challenges.
  absl::Status Authorize(const HttpResponse& unauthorized);
  absl::StatusOr<std::string> FetchToken(const std::string& realm, const std::string& service,
                                         const std::string& scope);
  // The credentials for this host from docker_config, loaded once.
  absl::StatusOr<std::optional<Credentials>> GetCredentials();
  // "401 Unauthorized (no credentials for HOST in ~/.docker/config.json)".
  std::string NoCredentialsNote() const;
  // A URL from a Location header (absolute, or a path on this registry).
  std::string ResolveLocation(absl::string_view location) const;

  std::string host_;
  std::string base_url_;
  RegistryOptions options_;
  std::string authorization_;  // the current Authorization header value
  bool credentials_loaded_ = false;
  std::optional<Credentials> credentials_;
  std::map<std::string, std::string> tokens_;  // "realm service scope" -> "Bearer ..."
};

// An error for a response that was not what the protocol says, naming the
// status and the registry's own message (its errors[0].message, or the
// start of the body): "404 Not Found: manifest unknown".
absl::Status ResponseError(const HttpResponse& response);

}  // namespace stagefarm::registry
