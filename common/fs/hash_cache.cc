#include "common/fs/hash_cache.h"

#include <unistd.h>

#include <fstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace stagefarm::fs {
namespace {

// The file's first line; a cache in another format is read as empty.
constexpr absl::string_view kHeader = "stagefarm context hashes v1";

// A file changed less than this before the walk began is not remembered:
// more than a kernel tick, so two writes that share an mtime both fall inside.
constexpr absl::Duration kRacyWindow = absl::Milliseconds(100);

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

HashCache HashCache::Load(std::filesystem::path file) {
  HashCache cache;
  cache.file_ = std::move(file);
  cache.loaded_at_ = absl::Now();
  std::ifstream in(cache.file_, std::ios::binary);
  std::string line;
  if (!in || !std::getline(in, line) || line != kHeader) return cache;
  // One line per file: DIGEST DEVICE INODE SIZE MTIME_NS CTIME_NS PATH (C-escaped).
  while (std::getline(in, line)) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, absl::MaxSplits(' ', 6));
    if (fields.size() != 7) {
      cache.entries_.clear();
      return cache;
    }
    FileStamp stamp;
    std::string path;
    absl::StatusOr<digest::Digest> content = digest::Digest::Parse(fields[0]);
    if (!content.ok() || !absl::SimpleAtoi(fields[1], &stamp.device) ||
        !absl::SimpleAtoi(fields[2], &stamp.inode) || !absl::SimpleAtoi(fields[3], &stamp.size) ||
        !absl::SimpleAtoi(fields[4], &stamp.mtime_ns) ||
        !absl::SimpleAtoi(fields[5], &stamp.ctime_ns) || !absl::CUnescape(fields[6], &path)) {
      cache.entries_.clear();
      return cache;
    }
    cache.entries_.insert_or_assign(std::move(path), Entry{stamp, *content});
  }
  return cache;
}

std::optional<digest::Digest> HashCache::Find(absl::string_view path, const FileStamp& stamp) {
  auto it = entries_.find(path);
  if (it == entries_.end() || !(it->second.stamp == stamp)) {
    ++misses_;
    return std::nullopt;
  }
  ++hits_;
  it->second.used = true;
  return it->second.content;
}

void HashCache::Record(absl::string_view path, const FileStamp& stamp,
                       const digest::Digest& content) {
  const int64_t trusted_before = absl::ToUnixNanos(loaded_at_ - kRacyWindow);
  if (stamp.mtime_ns >= trusted_before || stamp.ctime_ns >= trusted_before) return;
  entries_.insert_or_assign(std::string(path), Entry{stamp, content, true});
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
    absl::StrAppend(&text, entry.content.ToString(), " ", entry.stamp.device, " ",
                    entry.stamp.inode, " ", entry.stamp.size, " ", entry.stamp.mtime_ns, " ",
                    entry.stamp.ctime_ns, " ", absl::CEscape(path), "\n");
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
