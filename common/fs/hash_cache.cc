#include "common/fs/hash_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace stagefarm::fs {
namespace {

// The file's first line; a cache in another format is read as empty.
constexpr absl::string_view kHeader = "stagefarm context hashes v1";

// A file changed less than this before the walk began is not remembered:
// more than a kernel tick, so two writes that share an mtime both fall inside.
constexpr absl::Duration kRacyWindow = absl::Milliseconds(100);

// "sha256:" and 64 lowercase hex digits, as digest::Digest::Parse accepts,
// checked without building a Digest.
bool IsSha256Text(absl::string_view text) {
  constexpr absl::string_view kPrefix = "sha256:";
  if (text.size() != kPrefix.size() + 64 || !absl::StartsWith(text, kPrefix)) return false;
  return digest::IsLowerHex(text.substr(kPrefix.size()));
}

int64_t Nanos(const struct timespec& time) {
  return static_cast<int64_t>(time.tv_sec) * 1000000000 + time.tv_nsec;
}

}  // namespace

FileStamp FileStamp::Of(const struct stat& st) {
  FileStamp stamp;
  stamp.device = static_cast<uint64_t>(st.st_dev);
  stamp.inode = static_cast<uint64_t>(st.st_ino);
  stamp.size = static_cast<uint64_t>(st.st_size);
  stamp.mtime_ns = Nanos(st.st_mtim);
  stamp.ctime_ns = Nanos(st.st_ctim);
  return stamp;
}

absl::string_view HashCache::Own(std::string text) { return owned_.emplace_back(std::move(text)); }

HashCache HashCache::Load(std::filesystem::path file) {
  HashCache cache;
  cache.file_ = std::move(file);
  cache.loaded_at_ = absl::Now();
  const int fd = open(cache.file_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return cache;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
    close(fd);
    return cache;
  }
  const auto size = static_cast<size_t>(st.st_size);
  cache.text_ = std::make_unique_for_overwrite<char[]>(size);
  size_t done = 0;
  while (done < size) {
    const ssize_t n = read(fd, cache.text_.get() + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // an error, or a file cut short: what was read is parsed
    done += static_cast<size_t>(n);
  }
  close(fd);
  absl::string_view rest(cache.text_.get(), done);
  const size_t header_end = rest.find('\n');
  if (header_end == absl::string_view::npos || rest.substr(0, header_end) != kHeader) return cache;
  rest.remove_prefix(header_end + 1);
  // One reservation, not a rehash at every doubling.
  cache.entries_.reserve(static_cast<size_t>(std::count(rest.begin(), rest.end(), '\n')));
  // One line per file: DIGEST DEVICE INODE SIZE MTIME_NS CTIME_NS PATH (C-escaped).
  while (!rest.empty()) {
    const size_t line_end = rest.find('\n');
    if (line_end == absl::string_view::npos) {  // a torn last line: the cache is unusable
      cache.entries_.clear();
      return cache;
    }
    absl::string_view line = rest.substr(0, line_end);
    rest.remove_prefix(line_end + 1);
    absl::string_view fields[7];
    for (int i = 0; i < 6; ++i) {
      const size_t space = line.find(' ');
      if (space == absl::string_view::npos) {
        cache.entries_.clear();
        return cache;
      }
      fields[i] = line.substr(0, space);
      line.remove_prefix(space + 1);
    }
    fields[6] = line;
    FileStamp stamp;
    if (!IsSha256Text(fields[0]) || !absl::SimpleAtoi(fields[1], &stamp.device) ||
        !absl::SimpleAtoi(fields[2], &stamp.inode) || !absl::SimpleAtoi(fields[3], &stamp.size) ||
        !absl::SimpleAtoi(fields[4], &stamp.mtime_ns) ||
        !absl::SimpleAtoi(fields[5], &stamp.ctime_ns)) {
      cache.entries_.clear();
      return cache;
    }
    absl::string_view path = fields[6];
    if (absl::StrContains(path, '\\')) {
      std::string unescaped;
      if (!absl::CUnescape(path, &unescaped)) {
        cache.entries_.clear();
        return cache;
      }
      path = cache.Own(std::move(unescaped));
    }
    cache.entries_.insert_or_assign(path, Entry{stamp, fields[0]});
  }
  return cache;
}

std::optional<digest::Digest> HashCache::Find(absl::string_view path, const FileStamp& stamp) {
  auto it = entries_.find(path);
  if (it == entries_.end() || !(it->second.stamp == stamp)) {
    ++misses_;
    return std::nullopt;
  }
  absl::StatusOr<digest::Digest> content = digest::Digest::Parse(it->second.content);
  if (!content.ok()) {  // checked when loaded; never expected
    ++misses_;
    return std::nullopt;
  }
  ++hits_;
  it->second.used = true;
  return *std::move(content);
}

void HashCache::Record(absl::string_view path, const FileStamp& stamp,
                       const digest::Digest& content) {
  const int64_t trusted_before = absl::ToUnixNanos(loaded_at_ - kRacyWindow);
  if (stamp.mtime_ns >= trusted_before || stamp.ctime_ns >= trusted_before) return;
  const absl::string_view text = Own(content.ToString());
  auto it = entries_.find(path);
  if (it != entries_.end()) {
    it->second = Entry{stamp, text, true};
  } else {
    entries_.emplace(Own(std::string(path)), Entry{stamp, text, true});
  }
  recorded_ = true;
}

absl::Status HashCache::Save() const {
  size_t used = 0;
  for (const auto& [path, entry] : entries_) used += entry.used ? 1 : 0;
  if (!recorded_ && used == entries_.size() && std::filesystem::exists(file_)) {
    return absl::OkStatus();
  }
  std::error_code error;
  std::filesystem::create_directories(file_.parent_path(), error);
  if (error) {
    return absl::UnavailableError(
        absl::StrCat("context hash cache ", file_.parent_path().string(), ": ", error.message()));
  }
  std::string text = absl::StrCat(kHeader, "\n");
  for (const auto& [path, entry] : entries_) {
    if (!entry.used) continue;
    absl::StrAppend(&text, entry.content, " ", entry.stamp.device, " ", entry.stamp.inode, " ",
                    entry.stamp.size, " ", entry.stamp.mtime_ns, " ", entry.stamp.ctime_ns, " ",
                    absl::CEscape(path), "\n");
  }
  const std::filesystem::path temporary = absl::StrCat(file_.string(), ".", getpid(), ".tmp");
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) {
      std::filesystem::remove(temporary, error);
      return absl::UnavailableError(
          absl::StrCat("context hash cache ", temporary.string(), ": write failed"));
    }
  }
  std::filesystem::rename(temporary, file_, error);
  if (error) {
    std::filesystem::remove(temporary, error);
    return absl::UnavailableError(
        absl::StrCat("context hash cache ", file_.string(), ": ", error.message()));
  }
  return absl::OkStatus();
}

}  // namespace stagefarm::fs
