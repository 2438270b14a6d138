#include "worker/copy/add_url.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/http/curl_on_demand.h"

namespace stagefarm::worker {
namespace {

struct CurlDeleter {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};
struct CurlUrlDeleter {
  void operator()(CURLU* url) const { curl_url_cleanup(url); }
};

// State of one transfer, shared with libcurl's callbacks.
struct Transfer {
  int fd = -1;
  digest::Sha256 hasher;
  uint64_t size = 0;
  uint64_t max_bytes = 0;
  bool too_large = false;
  int write_errno = 0;
  std::string content_disposition;
  std::string last_modified;
  const DownloadOptions* options = nullptr;
};

size_t OnData(char* data, size_t one, size_t count, void* user) {
  Transfer& transfer = *static_cast<Transfer*>(user);
  const size_t bytes = one * count;
  if (transfer.size + bytes > transfer.max_bytes) {
    transfer.too_large = true;
    return 0;  // aborts the transfer
  }
  size_t done = 0;
  while (done < bytes) {
    ssize_t n = ::write(transfer.fd, data + done, bytes - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      transfer.write_errno = errno;
      return 0;
    }
    done += n;
  }
  transfer.hasher.Update(absl::string_view(data, bytes));
  transfer.size += bytes;
  return bytes;
}

// Keeps the headers of the last response (redirects start new ones).
size_t OnHeader(char* data, size_t one, size_t count, void* user) {
  Transfer& transfer = *static_cast<Transfer*>(user);
  absl::string_view line(data, one * count);
  if (absl::StartsWith(line, "HTTP/")) {
    transfer.content_disposition.clear();
    transfer.last_modified.clear();
  }
  const size_t colon = line.find(':');
  if (colon != absl::string_view::npos) {
    const std::string name = absl::AsciiStrToLower(line.substr(0, colon));
    absl::string_view value = absl::StripAsciiWhitespace(line.substr(colon + 1));
    if (name == "content-disposition") transfer.content_disposition = std::string(value);
    if (name == "last-modified") transfer.last_modified = std::string(value);
  }
  return one * count;
}

int OnProgress(void* user, curl_off_t total, curl_off_t done, curl_off_t, curl_off_t) {
  const Transfer& transfer = *static_cast<Transfer*>(user);
  if (transfer.options->on_progress) {
    transfer.options->on_progress(static_cast<uint64_t>(done), static_cast<uint64_t>(total));
  }
  return 0;
}

// The filename parameter of a Content-Disposition value, reduced to its last
// path element so that a server cannot name a path; "" when there is none.
std::string DispositionFilename(absl::string_view header) {
  size_t at = absl::AsciiStrToLower(header).find("filename=");
  if (at == absl::string_view::npos) return "";
  absl::string_view value = header.substr(at + 9);
  std::string name;
  if (absl::ConsumePrefix(&value, "\"")) {
    name = std::string(value.substr(0, value.find('"')));
  } else {
    name = std::string(value.substr(0, value.find(';')));
  }
  name = std::string(absl::StripAsciiWhitespace(name));
  if (size_t slash = name.find_last_of("/\\"); slash != std::string::npos) {
    name = name.substr(slash + 1);
  }
  return name == "." || name == ".." ? "" : name;
}

// The last element of the URL's (decoded) path; "index" when there is none.
std::string UrlFilename(absl::string_view url) {
  std::unique_ptr<CURLU, CurlUrlDeleter> parsed(curl_url());
  std::string name;
  char* path = nullptr;
  if (curl_url_set(parsed.get(), CURLUPART_URL, std::string(url).c_str(), 0) == CURLUE_OK &&
      curl_url_get(parsed.get(), CURLUPART_PATH, &path, CURLU_URLDECODE) == CURLUE_OK) {
    absl::string_view decoded(path);
    while (absl::ConsumeSuffix(&decoded, "/")) {
    }
    name = std::string(decoded.substr(decoded.rfind('/') + 1));
    curl_free(path);
  }
  return name.empty() || name == "." || name == ".." ? "index" : name;
}

}  // namespace

absl::StatusOr<Download> DownloadUrl(absl::string_view url, const std::filesystem::path& dir,
                                     const DownloadOptions& options) {
  if (!absl::StartsWithIgnoreCase(url, "http://") && !absl::StartsWithIgnoreCase(url, "https://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("ADD source ", url, ": only http and https URLs can be downloaded"));
  }
  if (absl::Status loaded = http::LoadCurl(); !loaded.ok()) return loaded;
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (curl == nullptr) return absl::InternalError("libcurl could not make a handle");

  std::string partial = (dir / ".download-XXXXXX").string();
  Transfer transfer;
  transfer.fd = ::mkstemp(partial.data());
  if (transfer.fd < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot create a file in ", dir.string()));
  }
  transfer.max_bytes = options.max_bytes;
  transfer.options = &options;
  const std::string url_text(url);
  char error_buffer[CURL_ERROR_SIZE] = "";
  CURL* handle = curl.get();
  curl_easy_setopt(handle, CURLOPT_URL, url_text.c_str());
  curl_easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(handle, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(handle, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(handle, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(handle, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(options.timeout)));
  curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, OnData);
  curl_easy_setopt(handle, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(handle, CURLOPT_HEADERDATA, &transfer);
  curl_easy_setopt(handle, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(handle, CURLOPT_XFERINFOFUNCTION, OnProgress);
  curl_easy_setopt(handle, CURLOPT_XFERINFODATA, &transfer);
  curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(handle, CURLOPT_USERAGENT, "stagefarm");
  const CURLcode result = curl_easy_perform(handle);
  long status = 0;
  curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
  ::close(transfer.fd);

  auto fail = [&](absl::Status error) {
    ::unlink(partial.c_str());
    return error;
  };
  if (transfer.too_large) {
    return fail(absl::ResourceExhaustedError(absl::StrCat(
        "ADD source ", url, ": larger than the limit of ", options.max_bytes, " bytes")));
  }
  if (transfer.write_errno != 0) {
    return fail(absl::ErrnoToStatus(transfer.write_errno,
                                    absl::StrCat("ADD source ", url, ": writing the download")));
  }
  if (result != CURLE_OK) {
    return fail(absl::UnavailableError(absl::StrCat(
        "ADD source ", url, ": ", error_buffer[0] != '\0' ? error_buffer
                                                         : curl_easy_strerror(result))));
  }
  if (status >= 400) {
    return fail(absl::UnavailableError(
        absl::StrCat("ADD source ", url, ": the server answered with HTTP status ", status)));
  }
  Download download{.path = {},
                    .filename = DispositionFilename(transfer.content_disposition),
                    .digest = transfer.hasher.Finish(),
                    .size = transfer.size,
                    .last_modified = std::nullopt};
  if (options.checksum && *options.checksum != download.digest) {
    return fail(absl::DataLossError(absl::StrCat("ADD source ", url, ": digest mismatch ",
                                                 options.checksum->ToString(), ": ",
                                                 download.digest.ToString())));
  }
  if (download.filename.empty()) download.filename = UrlFilename(url);
  if (!transfer.last_modified.empty()) {
    const time_t seconds = curl_getdate(transfer.last_modified.c_str(), nullptr);
    if (seconds >= 0) download.last_modified = absl::FromTimeT(seconds);
  }
  download.path = dir / download.filename;
  if (::rename(partial.c_str(), download.path.c_str()) != 0) {
    return fail(absl::ErrnoToStatus(errno, absl::StrCat("ADD source ", url, ": naming ",
                                                        download.path.string())));
  }
  return download;
}

absl::StatusOr<Download> AddUrl(absl::string_view url, const std::filesystem::path& scratch,
                                const fs::RootDir& destination, absl::string_view dest,
                                CopyOptions copy, const DownloadOptions& options) {
  std::error_code error;
  std::filesystem::create_directories(scratch, error);
  absl::StatusOr<Download> download = DownloadUrl(url, scratch, options);
  if (!download.ok()) return download.status();
  if (download->last_modified) {
    const struct timespec times[2] = {absl::ToTimespec(*download->last_modified),
                                      absl::ToTimespec(*download->last_modified)};
    ::utimensat(AT_FDCWD, download->path.c_str(), times, 0);
  }
  if (!copy.mode) copy.mode = 0600;
  copy.reset_owner = true;
  absl::StatusOr<fs::RootDir> source = fs::RootDir::Open(scratch);
  if (!source.ok()) return source.status();
  absl::StatusOr<CopyStats> copied =
      CopyInto(*source, {download->filename}, destination, dest, copy);
  std::filesystem::remove(download->path, error);
  if (!copied.ok()) return copied.status();
  return download;
}

}  // namespace stagefarm::worker
