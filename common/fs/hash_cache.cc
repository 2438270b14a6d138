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

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace stagefarm::fs {
namespace {

// The file's first line; a cache in another format is read as empty.
constexpr absl::string_view kHeader = "stagefarm context hashes v2\n";

// After the header, one record per file, numbers little-endian:
//   device, inode, size, mtime ns, ctime ns   5 x 8 bytes
//   path length                               4 bytes
//   content digest, "sha256:<64 hex>"         71 bytes
//   path                                      (path length) bytes
// Binary rather than text: a re-scan loads every record, and parsing five
// decimal numbers a line was most of that load.
constexpr size_t kStampBytes = 5 * 8;
constexpr size_t kContentBytes = 7 + 64;
constexpr size_t kRecordFixedBytes = kStampBytes + 4 + kContentBytes;

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

uint64_t LoadLittleEndian(const char* bytes, int count) {
  uint64_t value = 0;
  for (int i = count - 1; i >= 0; --i) value = value << 8 | static_cast<unsigned char>(bytes[i]);
  return value;
}

void AppendLittleEndian(std::string* out, uint64_t value, int count) {
  for (int i = 0; i < count; ++i) out->push_back(static_cast<char>(value >> (8 * i)));
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
  if (!absl::StartsWith(rest, kHeader)) return cache;
  rest.remove_prefix(kHeader.size());
  cache.entries_.reserve(rest.size() / (kRecordFixedBytes + 1));  // at most this many
  // Any record cut short or not as written makes the whole file unusable.
  while (!rest.empty()) {
    if (rest.size() < kRecordFixedBytes) {
      cache.entries_.clear();
      return cache;
    }
    const char* record = rest.data();
    Entry entry;
    entry.stamp.device = LoadLittleEndian(record, 8);
    entry.stamp.inode = LoadLittleEndian(record + 8, 8);
    entry.stamp.size = LoadLittleEndian(record + 16, 8);
    entry.stamp.mtime_ns = static_cast<int64_t>(LoadLittleEndian(record + 24, 8));
    entry.stamp.ctime_ns = static_cast<int64_t>(LoadLittleEndian(record + 32, 8));
    const uint64_t path_size = LoadLittleEndian(record + kStampBytes, 4);
    entry.content = rest.substr(kStampBytes + 4, kContentBytes);
    rest.remove_prefix(kRecordFixedBytes);
    if (path_size == 0 || path_size > rest.size() || !IsSha256Text(entry.content)) {
      cache.entries_.clear();
      return cache;
    }
    entry.path = rest.substr(0, path_size);
    rest.remove_prefix(path_size);
    cache.entries_.push_back(entry);
  }
  return cache;
}

std::optional<uint32_t> HashCache::Lookup(absl::string_view path) {
  // The next entry in the file's order, or the last one found again (Record
  // after a Find that missed on a changed file).
  if (next_ < entries_.size() && entries_[next_].path == path) return next_++;
  if (next_ > 0 && entries_[next_ - 1].path == path) return next_ - 1;
  if (by_path_.empty()) {
    by_path_.reserve(entries_.size());
    for (uint32_t i = 0; i < entries_.size(); ++i) by_path_.insert_or_assign(entries_[i].path, i);
  }
  auto it = by_path_.find(path);
  if (it == by_path_.end()) return std::nullopt;
  next_ = it->second + 1;
  return it->second;
}

void HashCache::MarkUsed(uint32_t index) {
  if (entries_[index].used) return;
  entries_[index].used = true;
  in_file_order_ = in_file_order_ && index == used_.size();
  used_.push_back(index);
}

std::optional<digest::Digest> HashCache::Find(absl::string_view path, const FileStamp& stamp) {
  const std::optional<uint32_t> index = Lookup(path);
  if (!index || !(entries_[*index].stamp == stamp)) {
    ++misses_;
    return std::nullopt;
  }
  absl::StatusOr<digest::Digest> content = digest::Digest::Parse(entries_[*index].content);
  if (!content.ok()) {  // checked when loaded; never expected
    ++misses_;
    return std::nullopt;
  }
  ++hits_;
  MarkUsed(*index);
  return *std::move(content);
}

void HashCache::Record(absl::string_view path, const FileStamp& stamp,
                       const digest::Digest& content) {
  const int64_t trusted_before = absl::ToUnixNanos(loaded_at_ - kRacyWindow);
  if (stamp.mtime_ns >= trusted_before || stamp.ctime_ns >= trusted_before) return;
  const absl::string_view text = Own(content.ToString());
  std::optional<uint32_t> index = Lookup(path);
  if (index) {
    entries_[*index].stamp = stamp;
    entries_[*index].content = text;
  } else {
    index = static_cast<uint32_t>(entries_.size());
    entries_.push_back(Entry{Own(std::string(path)), stamp, text});
    if (!by_path_.empty()) by_path_.emplace(entries_.back().path, *index);
  }
  MarkUsed(*index);
  recorded_ = true;
}

absl::Status HashCache::Save() const {
  if (!recorded_ && in_file_order_ && used_.size() == entries_.size() &&
      std::filesystem::exists(file_)) {
    return absl::OkStatus();
  }
  std::error_code error;
  std::filesystem::create_directories(file_.parent_path(), error);
  if (error) {
    return absl::UnavailableError(
        absl::StrCat("context hash cache ", file_.parent_path().string(), ": ", error.message()));
  }
  std::string text(kHeader);
  for (const uint32_t index : used_) {
    const Entry& entry = entries_[index];
    AppendLittleEndian(&text, entry.stamp.device, 8);
    AppendLittleEndian(&text, entry.stamp.inode, 8);
    AppendLittleEndian(&text, entry.stamp.size, 8);
    AppendLittleEndian(&text, static_cast<uint64_t>(entry.stamp.mtime_ns), 8);
    AppendLittleEndian(&text, static_cast<uint64_t>(entry.stamp.ctime_ns), 8);
    AppendLittleEndian(&text, entry.path.size(), 4);
    text.append(entry.content.data(), entry.content.size());
    text.append(entry.path.data(), entry.path.size());
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
