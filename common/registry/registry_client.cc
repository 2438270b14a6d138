#include "common/registry/registry_client.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/registry/auth_challenge.h"
#include "nlohmann/json.hpp"

namespace stagefarm::registry {
namespace {

constexpr absl::string_view kManifestAccept =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json";

// RFC 3986 unreserved characters stay; everything else is %XX.
std::string PercentEncode(absl::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

std::string WithQuery(absl::string_view url, absl::string_view query) {
  return absl::StrCat(url, url.find('?') == absl::string_view::npos ? "?" : "&", query);
}

absl::StatusCode CodeForStatus(long status) {
  switch (status) {
    case 400:
      return absl::StatusCode::kInvalidArgument;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 429:
      return absl::StatusCode::kResourceExhausted;
    default:
      return status >= 500 ? absl::StatusCode::kUnavailable : absl::StatusCode::kFailedPrecondition;
  }
}

// What a body says, for a message: the registry's errors[].message (with the
// code), else its first line, printable characters only.
std::string BodyMessage(const std::string& body) {
  const nlohmann::json document = nlohmann::json::parse(body, nullptr, false);
  if (!document.is_discarded() && document.is_object()) {
    auto errors = document.find("errors");
    if (errors != document.end() && errors->is_array() && !errors->empty() &&
        (*errors)[0].is_object()) {
      const std::string message = (*errors)[0].value("message", "");
      if (!message.empty()) return message;
      return (*errors)[0].value("code", "");
    }
  }
  std::string out;
  for (char c : body.substr(0, 200)) {
    if (c == '\n' || c == '\r') break;
    out.push_back(absl::ascii_isprint(c) ? c : '?');
  }
  return std::string(absl::StripAsciiWhitespace(out));
}

}  // namespace

absl::Status ResponseError(const HttpResponse& response) {
  const std::string message = BodyMessage(response.body);
  return absl::Status(
      CodeForStatus(response.status),
      message.empty() ? response.StatusLine() : absl::StrCat(response.StatusLine(), ": ", message));
}

RegistryClient::RegistryClient(std::string host, RegistryOptions options)
    : host_(std::move(host)), options_(std::move(options)) {
  const bool insecure =
      std::find(options_.insecure_registries.begin(), options_.insecure_registries.end(), host_) !=
      options_.insecure_registries.end();
  // Docker Hub's API lives on its own host.
  const std::string api_host = host_ == "docker.io" ? "registry-1.docker.io" : host_;
  base_url_ = absl::StrCat(insecure ? "http://" : "https://", api_host);
}

std::string RegistryClient::ResolveLocation(absl::string_view location) const {
  if (absl::StartsWith(location, "http://") || absl::StartsWith(location, "https://")) {
    return std::string(location);
  }
  if (absl::StartsWith(location, "/")) return absl::StrCat(base_url_, location);
  return absl::StrCat(base_url_, "/", location);
}

std::string RegistryClient::NoCredentialsNote() const {
  return absl::StrCat("no credentials for ", host_, " in ", DockerConfigDisplayName());
}

absl::StatusOr<std::optional<Credentials>> RegistryClient::GetCredentials() {
  if (!credentials_loaded_) {
    absl::StatusOr<std::optional<Credentials>> loaded =
        LoadCredentials(options_.docker_config, host_);
    if (!loaded.ok()) return loaded.status();
    credentials_ = *std::move(loaded);
    credentials_loaded_ = true;
  }
  return credentials_;
}

absl::StatusOr<std::string> RegistryClient::FetchToken(const std::string& realm,
                                                       const std::string& service,
                                                       const std::string& scope) {
  if (!absl::StartsWith(realm, "https://") && !absl::StartsWith(realm, "http://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("the registry's token realm \"", realm, "\" is not an http(s) URL"));
  }
  std::vector<std::string> query;
  if (!service.empty()) query.push_back(absl::StrCat("service=", PercentEncode(service)));
  for (absl::string_view one : absl::StrSplit(scope, ' ', absl::SkipEmpty())) {
    query.push_back(absl::StrCat("scope=", PercentEncode(one)));
  }
  const std::string url = query.empty() ? realm : WithQuery(realm, absl::StrJoin(query, "&"));
  absl::StatusOr<std::optional<Credentials>> credentials = GetCredentials();
  if (!credentials.ok()) return credentials.status();
  absl::StatusOr<HttpResponse> response = SendWithRetries(
      [&]() -> absl::StatusOr<HttpRequest> {
        HttpRequest request;
        request.url = url;
        request.max_body = kMaxManifestBytes;
        if (*credentials) {
          request.headers.emplace_back(
              "Authorization",
              absl::StrCat("Basic ", absl::Base64Escape(absl::StrCat((*credentials)->username, ":",
                                                                     (*credentials)->password))));
        }
        return request;
      },
      options_.retry);
  const std::string what = absl::StrCat("token server ", realm);
  if (!response.ok()) {
    return absl::Status(response.status().code(),
                        absl::StrCat(what, ": ", response.status().message()));
  }
  if (response->status == 401 || response->status == 403) {
    return absl::Status(
        CodeForStatus(response->status),
        absl::StrCat(response->StatusLine(), " from ", what, " (",
                     *credentials ? absl::StrCat("it refused the credentials for ", host_, " in ",
                                                 DockerConfigDisplayName())
                                  : NoCredentialsNote(),
                     ")"));
  }
  if (response->status != 200) {
    absl::Status error = ResponseError(*response);
    return absl::Status(error.code(), absl::StrCat(what, ": ", error.message()));
  }
  const nlohmann::json document = nlohmann::json::parse(response->body, nullptr, false);
  if (document.is_discarded() || !document.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": the reply is not a JSON object"));
  }
  for (const char* key : {"token", "access_token"}) {
    auto it = document.find(key);
    if (it != document.end() && it->is_string() && !it->get<std::string>().empty()) {
      return it->get<std::string>();
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": the reply has neither \"token\" nor \"access_token\""));
}

absl::Status RegistryClient::Authorize(const HttpResponse& unauthorized) {
  const std::string header = unauthorized.Header("www-authenticate");
  if (header.empty()) {
    return absl::UnauthenticatedError(
        absl::StrCat(unauthorized.StatusLine(), " (and no WWW-Authenticate challenge)"));
  }
  absl::StatusOr<std::vector<AuthChallenge>> challenges = ParseAuthChallenges(header);
  if (!challenges.ok()) return challenges.status();
  const AuthChallenge* bearer = nullptr;
  const AuthChallenge* basic = nullptr;
  for (const AuthChallenge& challenge : *challenges) {
    if (challenge.scheme == "bearer" && bearer == nullptr) bearer = &challenge;
    if (challenge.scheme == "basic" && basic == nullptr) basic = &challenge;
  }
  absl::StatusOr<std::optional<Credentials>> credentials = GetCredentials();
  if (!credentials.ok()) return credentials.status();
  const auto refused = [&](absl::string_view why) {
    return absl::UnauthenticatedError(absl::StrCat(unauthorized.StatusLine(), " (", why, ")"));
  };
  if (bearer != nullptr) {
    const std::string key = absl::StrCat(bearer->Param("realm"), " ", bearer->Param("service"), " ",
                                         bearer->Param("scope"));
    auto cached = tokens_.find(key);
    if (cached != tokens_.end()) {
      if (cached->second == authorization_) {
        // The token for exactly this challenge was sent and refused.
        return refused(*credentials ? absl::StrCat("the token for ", host_, " was refused")
                                    : NoCredentialsNote());
      }
      authorization_ = cached->second;
      return absl::OkStatus();
    }
    absl::StatusOr<std::string> token =
        FetchToken(bearer->Param("realm"), bearer->Param("service"), bearer->Param("scope"));
    if (!token.ok()) return token.status();
    authorization_ = tokens_[key] = absl::StrCat("Bearer ", *token);
    return absl::OkStatus();
  }
  if (basic != nullptr) {
    if (!*credentials) return refused(NoCredentialsNote());
    const std::string value = absl::StrCat(
        "Basic ",
        absl::Base64Escape(absl::StrCat((*credentials)->username, ":", (*credentials)->password)));
    if (value == authorization_) {
      return refused(
          absl::StrCat(host_, " refused the credentials in ", DockerConfigDisplayName()));
    }
    authorization_ = value;
    return absl::OkStatus();
  }
  return absl::UnauthenticatedError(
      absl::StrCat(unauthorized.StatusLine(), " (unsupported challenge \"", header, "\")"));
}

absl::StatusOr<HttpResponse> RegistryClient::Send(
    const std::function<absl::StatusOr<HttpRequest>()>& make) {
  // At most a few challenges: a token per scope the request needs.
  for (int round = 0;; ++round) {
    absl::StatusOr<HttpResponse> response = SendWithRetries(
        [&]() -> absl::StatusOr<HttpRequest> {
          absl::StatusOr<HttpRequest> request = make();
          if (request.ok() && !authorization_.empty()) {
            request->headers.emplace_back("Authorization", authorization_);
          }
          return request;
        },
        options_.retry);
    if (!response.ok() || response->status != 401 || round == 3) return response;
    if (absl::Status status = Authorize(*response); !status.ok()) return status;
  }
}

absl::StatusOr<FetchedManifest> RegistryClient::GetManifest(absl::string_view repo,
                                                            absl::string_view reference) {
  const std::string url = absl::StrCat(base_url_, "/v2/", repo, "/manifests/", reference);
  absl::StatusOr<HttpResponse> response = Send([&]() -> absl::StatusOr<HttpRequest> {
    HttpRequest request;
    request.url = url;
    request.headers.emplace_back("Accept", std::string(kManifestAccept));
    request.max_body = kMaxManifestBytes;
    return request;
  });
  if (!response.ok()) return response.status();
  if (response->status != 200) return ResponseError(*response);
  FetchedManifest out;
  out.bytes = std::move(response->body);
  const std::string type = response->Header("content-type");
  out.content_type =
      std::string(absl::StripAsciiWhitespace(absl::string_view(type).substr(0, type.find(';'))));
  out.docker_content_digest = response->Header("docker-content-digest");
  return out;
}

absl::Status RegistryClient::GetBlob(absl::string_view repo, const digest::Digest& blob,
                                     const std::function<void()>& reset,
                                     const std::function<absl::Status(absl::string_view)>& sink) {
  const std::string url = absl::StrCat(base_url_, "/v2/", repo, "/blobs/", blob.ToString());
  absl::StatusOr<HttpResponse> response = Send([&]() -> absl::StatusOr<HttpRequest> {
    reset();
    HttpRequest request;
    request.url = url;
    request.sink = sink;
    request.follow_redirects = true;
    return request;
  });
  if (!response.ok()) return response.status();
  if (response->status != 200) return ResponseError(*response);
  return absl::OkStatus();
}

absl::StatusOr<HttpResponse> RegistryClient::SendWithoutBody(absl::string_view method,
                                                             const std::string& url) {
  return Send([&]() -> absl::StatusOr<HttpRequest> {
    HttpRequest request;
    request.method = std::string(method);
    request.url = url;
    return request;
  });
}

absl::StatusOr<bool> RegistryClient::HasBlob(absl::string_view repo, const digest::Digest& blob) {
  const std::string url = absl::StrCat(base_url_, "/v2/", repo, "/blobs/", blob.ToString());
  absl::StatusOr<HttpResponse> response = SendWithoutBody("HEAD", url);
  if (!response.ok()) return response.status();
  if (response->status == 200) return true;
  if (response->status == 404) return false;
  return ResponseError(*response);
}

absl::StatusOr<bool> RegistryClient::MountBlob(absl::string_view repo, const digest::Digest& blob,
                                               absl::string_view from, std::string* upload_url) {
  upload_url->clear();
  const std::string url = absl::StrCat(base_url_, "/v2/", repo,
                                       "/blobs/uploads/?mount=", PercentEncode(blob.ToString()),
                                       "&from=", PercentEncode(from));
  absl::StatusOr<HttpResponse> response = SendWithoutBody("POST", url);
  if (!response.ok()) return response.status();
  if (response->status == 201) return true;
  if (response->status == 202) {
    if (const std::string location = response->Header("location"); !location.empty()) {
      *upload_url = ResolveLocation(location);
    }
    return false;
  }
  return ResponseError(*response);
}

absl::Status RegistryClient::UploadBlob(
    absl::string_view repo, const digest::Digest& blob, uint64_t size, std::string upload_url,
    const std::function<absl::StatusOr<std::function<absl::StatusOr<absl::string_view>()>>(
        uint64_t offset, uint64_t length)>& reopen) {
  const auto location_of = [this](const HttpResponse& response) -> absl::StatusOr<std::string> {
    const std::string location = response.Header("location");
    if (location.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat(response.StatusLine(), " without a Location for the upload"));
    }
    return ResolveLocation(location);
  };
  if (upload_url.empty()) {
    const std::string url = absl::StrCat(base_url_, "/v2/", repo, "/blobs/uploads/");
    absl::StatusOr<HttpResponse> response = SendWithoutBody("POST", url);
    if (!response.ok()) return response.status();
    if (response->status != 202) return ResponseError(*response);
    absl::StatusOr<std::string> location = location_of(*response);
    if (!location.ok()) return location.status();
    upload_url = *std::move(location);
  }
  // A request whose body is bytes [offset, offset + length) of the blob.
  const auto with_body = [&](HttpRequest request, uint64_t offset,
                             uint64_t length) -> absl::StatusOr<HttpRequest> {
    request.headers.emplace_back("Content-Type", "application/octet-stream");
    if (length == 0) return request;
    absl::StatusOr<std::function<absl::StatusOr<absl::string_view>()>> source =
        reopen(offset, length);
    if (!source.ok()) return source.status();
    request.body_source = *std::move(source);
    request.body_size = length;
    return request;
  };
  uint64_t offset = 0;
  const bool chunked = size > options_.upload_chunk_size;
  while (chunked && offset < size) {
    const uint64_t length = std::min(options_.upload_chunk_size, size - offset);
    absl::StatusOr<HttpResponse> response = Send([&]() -> absl::StatusOr<HttpRequest> {
      HttpRequest request;
      request.method = "PATCH";
      request.url = upload_url;
      request.headers.emplace_back("Content-Range", absl::StrCat(offset, "-", offset + length - 1));
      return with_body(std::move(request), offset, length);
    });
    if (!response.ok()) return response.status();
    if (response->status != 202) {
      absl::Status error = ResponseError(*response);
      return absl::Status(error.code(), absl::StrCat("PATCH of bytes ", offset, "-",
                                                     offset + length - 1, ": ", error.message()));
    }
    absl::StatusOr<std::string> location = location_of(*response);
    if (!location.ok()) return location.status();
    upload_url = *std::move(location);
    offset += length;
  }
  const std::string put_url =
      WithQuery(upload_url, absl::StrCat("digest=", PercentEncode(blob.ToString())));
  absl::StatusOr<HttpResponse> response = Send([&]() -> absl::StatusOr<HttpRequest> {
    HttpRequest request;
    request.method = "PUT";
    request.url = put_url;
    return with_body(std::move(request), offset, size - offset);
  });
  if (!response.ok()) return response.status();
  if (response->status != 201) return ResponseError(*response);
  return absl::OkStatus();
}

absl::StatusOr<std::string> RegistryClient::PutManifest(absl::string_view repo,
                                                        absl::string_view reference,
                                                        absl::string_view media_type,
                                                        const std::string& bytes) {
  const std::string url = absl::StrCat(base_url_, "/v2/", repo, "/manifests/", reference);
  absl::StatusOr<HttpResponse> response = Send([&]() -> absl::StatusOr<HttpRequest> {
    HttpRequest request;
    request.method = "PUT";
    request.url = url;
    request.headers.emplace_back("Content-Type", std::string(media_type));
    request.body = bytes;
    return request;
  });
  if (!response.ok()) return response.status();
  if (response->status != 201 && response->status != 200) return ResponseError(*response);
  return response->Header("docker-content-digest");
}

}  // namespace stagefarm::registry
