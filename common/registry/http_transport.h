// HTTP for the registry client: one request at a time over libcurl, and the
// retry loop around it. This is the seam where the network is; everything
// above it speaks in requests and responses.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace stagefarm::registry {

struct HttpRequest {
  std::string method = "GET";  // GET, HEAD, POST, PUT, PATCH, DELETE
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  // The body: `body`, unless `body_source` is set, which then yields
  // `body_size` bytes in pieces (an empty piece before that is an error).
  std::string body;
  std::function<absl::StatusOr<absl::string_view>()> body_source;
  uint64_t body_size = 0;
  // A 2xx response's body goes to `sink` when it is set; otherwise it is kept
  // in HttpResponse::body, up to `max_body` bytes (more is ResourceExhausted).
  // Other responses' bodies are kept (their first 64 KiB) for error messages.
  std::function<absl::Status(absl::string_view)> sink;
  uint64_t max_body = uint64_t{1} << 20;
  // Follow 3xx redirects (blob downloads are often redirected to storage);
  // the Authorization header is not sent to another host.
  bool follow_redirects = false;
};

struct HttpResponse {
  long status = 0;
  std::string reason;                                        // "Not Found"
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-case, in order
  std::string body;

  // The first value of the header `name` (lower-case), empty when absent.
  std::string Header(absl::string_view name) const;
  // "404 Not Found".
  std::string StatusLine() const;
};

// Sends one request. A response of any status is a response; errors are for
// no response at all: Unavailable naming the URL for a connection that failed
// (refused, reset, timed out, TLS failure, dropped mid-body),
// FailedPrecondition for a host name that does not resolve, the sink's own
// error when the sink refused bytes, ResourceExhausted when the body exceeds
// max_body, and InvalidArgument for a URL that is not http(s).
absl::StatusOr<HttpResponse> SendHttp(const HttpRequest& request);

struct RetryPolicy {
  int attempts = 5;  // in all, the first one included
  absl::Duration initial_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(10);
};

// Whether a response's status is worth asking again for: 429 and 5xx other
// than 501 (Not Implemented) and 505.
bool IsRetryableStatus(long status);

// Sends the request `make` returns, again (with a fresh request, so a sink or
// a body source starts over) after a connection failure (Unavailable), a 429
// or a retryable 5xx, waiting initial_backoff, doubling each time, or the
// server's Retry-After seconds (at most max_backoff). Returns the last
// response or error; `make`'s own error ends the loop.
absl::StatusOr<HttpResponse> SendWithRetries(
    const std::function<absl::StatusOr<HttpRequest>()>& make, const RetryPolicy& policy);

}  // namespace stagefarm::registry
