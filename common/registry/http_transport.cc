#include "common/registry/http_transport.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/http/curl_on_demand.h"

namespace stagefarm::registry {
namespace {

// Error bodies are kept this far, for messages.
constexpr uint64_t kMaxErrorBody = 64 * 1024;

struct CurlDeleter {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};
struct SlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

// The state the callbacks share.
struct Transfer {
  CURL* curl = nullptr;
  const HttpRequest* request = nullptr;
  HttpResponse response;
  absl::Status error;  // a sink or body-source error, or ResourceExhausted
  // Request body progress.
  uint64_t sent = 0;
  absl::string_view pending;  // bytes of body_source not yet handed to curl
};

long ResponseCode(CURL* curl) {
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  return code;
}

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  absl::string_view line(data, size * count);
  line = absl::StripTrailingAsciiWhitespace(line);
  if (absl::StartsWith(line, "HTTP/")) {
    // A new status line (after a redirect or a 100 Continue): start afresh.
    transfer->response.headers.clear();
    transfer->response.reason.clear();
    const size_t first = line.find(' ');
    if (first != absl::string_view::npos) {
      const size_t second = line.find(' ', first + 1);
      if (second != absl::string_view::npos) {
        transfer->response.reason = std::string(line.substr(second + 1));
      }
    }
    return size * count;
  }
  const size_t colon = line.find(':');
  if (colon != absl::string_view::npos) {
    transfer->response.headers.emplace_back(
        absl::AsciiStrToLower(line.substr(0, colon)),
        std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
  }
  return size * count;
}

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  const absl::string_view bytes(data, size * count);
  const long code = ResponseCode(transfer->curl);
  const bool success = code >= 200 && code < 300;
  if (success && transfer->request->sink) {
    transfer->error = transfer->request->sink(bytes);
    return transfer->error.ok() ? bytes.size() : 0;
  }
  const uint64_t limit = success ? transfer->request->max_body : kMaxErrorBody;
  std::string& body = transfer->response.body;
  if (body.size() + bytes.size() > limit) {
    if (!success) {
      // Enough of an error body for a message; the rest is dropped.
      const absl::string_view head = bytes.substr(0, limit - body.size());
      body.append(head.data(), head.size());
      return bytes.size();
    }
    transfer->error = absl::ResourceExhaustedError(
        absl::StrCat("response body over the limit of ", limit, " bytes"));
    return 0;
  }
  body.append(bytes.data(), bytes.size());
  return bytes.size();
}

size_t OnRead(char* buffer, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  const HttpRequest& request = *transfer->request;
  const size_t room = size * count;
  if (!request.body_source) {
    const size_t n = std::min<size_t>(room, request.body.size() - transfer->sent);
    std::memcpy(buffer, request.body.data() + transfer->sent, n);
    transfer->sent += n;
    return n;
  }
  if (transfer->sent >= request.body_size) return 0;
  if (transfer->pending.empty()) {
    absl::StatusOr<absl::string_view> piece = request.body_source();
    if (!piece.ok()) {
      transfer->error = piece.status();
      return CURL_READFUNC_ABORT;
    }
    if (piece->empty()) {
      transfer->error = absl::InternalError(absl::StrCat(
          "request body ended after ", transfer->sent, " of ", request.body_size, " bytes"));
      return CURL_READFUNC_ABORT;
    }
    transfer->pending = *piece;
  }
  const size_t n = std::min<size_t>(
      {room, transfer->pending.size(), static_cast<size_t>(request.body_size - transfer->sent)});
  std::memcpy(buffer, transfer->pending.data(), n);
  transfer->pending.remove_prefix(n);
  transfer->sent += n;
  return n;
}

// Seconds from a Retry-After header (the HTTP-date form is not honoured).
std::optional<absl::Duration> RetryAfter(const HttpResponse& response) {
  int seconds = 0;
  if (absl::SimpleAtoi(response.Header("retry-after"), &seconds) && seconds >= 0) {
    return absl::Seconds(seconds);
  }
  return std::nullopt;
}

}  // namespace

std::string HttpResponse::Header(absl::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key == name) return value;
  }
  return "";
}

std::string HttpResponse::StatusLine() const {
  return reason.empty() ? absl::StrCat(status) : absl::StrCat(status, " ", reason);
}

absl::StatusOr<HttpResponse> SendHttp(const HttpRequest& request) {
  if (!absl::StartsWith(request.url, "http://") && !absl::StartsWith(request.url, "https://")) {
    return absl::InvalidArgumentError(absl::StrCat("\"", request.url, "\": not an http(s) URL"));
  }
  if (absl::Status loaded = http::LoadCurl(); !loaded.ok()) return loaded;
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) return absl::ResourceExhaustedError("cannot create a libcurl handle");
  Transfer transfer;
  transfer.curl = curl.get();
  transfer.request = &request;
  char error_buffer[CURL_ERROR_SIZE] = {};

  std::unique_ptr<curl_slist, SlistDeleter> headers;
  const auto add_header = [&headers](const std::string& line) {
    headers.reset(curl_slist_append(headers.release(), line.c_str()));
  };
  for (const auto& [name, value] : request.headers) add_header(absl::StrCat(name, ": ", value));
  add_header("Expect:");  // no 100-continue round trip before a body

  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
  // A transfer that moves nothing for a minute is dead.
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "stagefarm/0.1");
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &transfer);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &transfer);
  if (request.follow_redirects) {
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
  }
  const bool has_body = request.body_source ? true : !request.body.empty();
  if (request.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (request.method != "GET" || has_body) {
    // Every method with a body (even an empty one: POST and PUT send
    // Content-Length: 0) goes through the upload path.
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, OnRead);
    curl_easy_setopt(c, CURLOPT_READDATA, &transfer);
    const uint64_t size = request.body_source ? request.body_size : request.body.size();
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(size));
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());

  const CURLcode result = curl_easy_perform(c);
  if (!transfer.error.ok()) return transfer.error;
  if (result != CURLE_OK) {
    // A name that does not resolve will not resolve on a retry either.
    const bool lasting = result == CURLE_COULDNT_RESOLVE_HOST ||
                         result == CURLE_UNSUPPORTED_PROTOCOL || result == CURLE_URL_MALFORMAT;
    return absl::Status(
        lasting ? absl::StatusCode::kFailedPrecondition : absl::StatusCode::kUnavailable,
        absl::StrCat(request.method, " ", request.url, ": ",
                     error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(result)));
  }
  transfer.response.status = ResponseCode(c);
  return std::move(transfer.response);
}

bool IsRetryableStatus(long status) {
  return status == 429 || (status >= 500 && status <= 599 && status != 501 && status != 505);
}

absl::StatusOr<HttpResponse> SendWithRetries(
    const std::function<absl::StatusOr<HttpRequest>()>& make, const RetryPolicy& policy) {
  absl::Duration backoff = policy.initial_backoff;
  for (int attempt = 1;; ++attempt) {
    absl::StatusOr<HttpRequest> request = make();
    if (!request.ok()) return request.status();
    absl::StatusOr<HttpResponse> response = SendHttp(*request);
    const bool retry = response.ok() ? IsRetryableStatus(response->status)
                                     : absl::IsUnavailable(response.status());
    if (!retry || attempt >= policy.attempts) return response;
    absl::Duration wait = backoff;
    if (response.ok()) {
      if (std::optional<absl::Duration> after = RetryAfter(*response)) wait = *after;
    }
    absl::SleepFor(std::min(wait, policy.max_backoff));
    backoff = std::min(backoff * 2, policy.max_backoff);
  }
}

}  // namespace stagefarm::registry
