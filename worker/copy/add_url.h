// ADD of an http(s) URL: the download, verified against --checksum when
// given, placed like BuildKit places it.
//
// The file is named after the Content-Disposition filename when the server
// sends one, else the last element of the URL's path ("index" when that is
// empty). As a COPY source it is copied to the destination (a directory when
// the destination ends with "/"), with mode 0600 unless --chmod says
// otherwise, owned by --chown or root, and with the server's Last-Modified
// time when it sends one.
#ifndef STAGEFARM_WORKER_COPY_ADD_URL_H_
#define STAGEFARM_WORKER_COPY_ADD_URL_H_

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/digest/digest.h"
#include "common/fs/root.h"
#include "worker/copy/copy.h"

namespace stagefarm::worker {

struct DownloadOptions {
  std::optional<digest::Digest> checksum;  // ADD --checksum
  absl::Duration timeout = absl::Minutes(30);
  uint64_t max_bytes = uint64_t{64} << 30;
  // Bytes so far and the total when the server said it (0 otherwise).
  std::function<void(uint64_t done, uint64_t total)> on_progress;
};

struct Download {
  std::filesystem::path path;  // the file, inside the directory given
  std::string filename;
  digest::Digest digest;
  uint64_t size = 0;
  std::optional<absl::Time> last_modified;
};

// Downloads `url` (http or https only, redirects followed within those) into
// `dir`. Errors name the URL: InvalidArgument for another scheme,
// Unavailable for a network failure or an HTTP error status (with the
// status), DataLoss for a checksum mismatch (expected and actual digests),
// ResourceExhausted past max_bytes. Nothing is left in `dir` on an error.
absl::StatusOr<Download> DownloadUrl(absl::string_view url, const std::filesystem::path& dir,
                                     const DownloadOptions& options = {});

// ADD URL DEST: downloads into `scratch` and copies the file into
// `destination` at `dest` (absolute, WORKDIR applied) with `copy` options
// (its mode defaults to 0600 here).
absl::StatusOr<Download> AddUrl(absl::string_view url, const std::filesystem::path& scratch,
                                const fs::RootDir& destination, absl::string_view dest,
                                CopyOptions copy, const DownloadOptions& options = {});

}  // namespace stagefarm::worker

#endif  // STAGEFARM_WORKER_COPY_ADD_URL_H_
