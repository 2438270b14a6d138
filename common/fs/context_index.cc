#include "common/fs/context_index.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <memory>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/dockerfile/dockerignore.h"
#include "common/dockerfile/go_text.h"

namespace stagefarm::fs {
namespace {

int64_t MtimeNs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

using dockerfile::go::Quote;

// Read size for hashing files: large enough that syscalls and hasher calls
// are noise next to SHA-256 itself, small enough to stay in L2.
constexpr size_t kReadBufferSize = 256 * 1024;

// BuildKit's limit (cache/contenthash maxSymlinkLimit).
constexpr int kMaxSymlinks = 255;

// Closes a descriptor when it goes out of scope.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

struct CloseDir {
  void operator()(DIR* dir) const { closedir(dir); }
};

std::string JoinPath(absl::string_view dir, absl::string_view name) {
  return dir.empty() ? std::string(name) : absl::StrCat(dir, "/", name);
}

// Everything before the last slash; "" when there is none.
absl::string_view ParentOf(absl::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == absl::string_view::npos ? absl::string_view() : path.substr(0, slash);
}

// Whether `path` is a clean relative path other than the root: no empty, "."
// or ".." element, no leading or trailing slash.
bool IsCleanRelative(absl::string_view path) {
  if (path.empty()) return false;
  for (size_t start = 0; start <= path.size();) {
    size_t end = path.find('/', start);
    if (end == absl::string_view::npos) end = path.size();
    const absl::string_view element = path.substr(start, end - start);
    if (element.empty() || element == "." || element == "..") return false;
    start = end + 1;
  }
  return true;
}

// Why a file type is not indexed; empty for the types that are.
absl::string_view UnsupportedTypeName(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
    case S_IFDIR:
    case S_IFLNK:
      return "";
    case S_IFIFO:
      return "FIFO";
    case S_IFSOCK:
      return "socket";
    case S_IFCHR:
      return "character device";
    case S_IFBLK:
      return "block device";
    default:
      return "unknown file type";
  }
}

// The lstat of each entry of a directory, on this thread and a helper.
//
// A re-scan through the hash cache reads no file: it is one fstatat per
// entry, about 2.6 us each on the machines stagefarm runs on, and the kernel
// runs two of them at once on two CPUs. The helper lives as long as the
// walk; each directory is one job whose entries both threads claim in chunks,
// so neither waits for a fixed half. The helper spins briefly between jobs
// (directories come every few hundred microseconds) and then sleeps; a job it
// has not picked up when this thread is done is withdrawn, not waited for.
// An entry's lstat, or why it failed.
struct EntryStat {
  int error = 0;  // errno of a failed fstatat
  struct stat st;
};

void StatEntry(int dir_fd, const std::string& name, EntryStat& out) {
  out.error = fstatat(dir_fd, name.c_str(), &out.st, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
}

class ParallelStat {
 public:
  ParallelStat() : helper_([this] { Serve(); }) {}
  ~ParallelStat() {
    state_.store(kStop, std::memory_order_release);
    state_.notify_one();
    helper_.join();
  }
  ParallelStat(const ParallelStat&) = delete;
  ParallelStat& operator=(const ParallelStat&) = delete;

  // Stats each of `names` in `dir_fd` (not following symlinks) into `results`.
  void Run(int dir_fd, const std::vector<std::string>& names, std::vector<EntryStat>& results) {
    results.resize(names.size());
    dir_fd_ = dir_fd;
    names_ = &names;
    results_ = &results;
    next_.store(0, std::memory_order_relaxed);
    state_.store(kPosted, std::memory_order_release);
    state_.notify_one();
    Work();
    int expected = kPosted;
    if (state_.compare_exchange_strong(expected, kIdle, std::memory_order_acq_rel)) return;
    // The helper took the job: wait until it has finished its chunks.
    for (int spins = 0; state_.load(std::memory_order_acquire) != kDone; ++spins) {
      if (spins > kSpins) {
        state_.wait(kTaken, std::memory_order_acquire);
      } else {
        Pause();
      }
    }
    state_.store(kIdle, std::memory_order_relaxed);
  }

 private:
  enum : int { kIdle, kPosted, kTaken, kDone, kStop };
  static constexpr size_t kChunk = 8;
  static constexpr int kSpins = 20000;  // about half a millisecond of polling

  // Tells the CPU this is a polling loop (fewer cycles spent, and the other
  // hyperthread, if any, runs faster).
  static void Pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

  // Claims chunks of the current job until none is left.
  void Work() {
    const size_t count = names_->size();
    for (size_t begin; (begin = next_.fetch_add(kChunk, std::memory_order_relaxed)) < count;) {
      const size_t end = std::min(begin + kChunk, count);
      for (size_t i = begin; i < end; ++i) StatEntry(dir_fd_, (*names_)[i], (*results_)[i]);
    }
  }

  void Serve() {
    for (;;) {
      int state = state_.load(std::memory_order_acquire);
      for (int spins = 0; state != kPosted && state != kStop; ++spins) {
        if (spins > kSpins) {
          state_.wait(state, std::memory_order_acquire);
        } else {
          Pause();
        }
        state = state_.load(std::memory_order_acquire);
      }
      if (state == kStop) return;
      if (!state_.compare_exchange_strong(state, kTaken, std::memory_order_acq_rel)) continue;
      Work();
      state_.store(kDone, std::memory_order_release);
      state_.notify_one();
    }
  }

  // The current job, written by Run before it posts it.
  int dir_fd_ = -1;
  const std::vector<std::string>* names_ = nullptr;
  std::vector<EntryStat>* results_ = nullptr;
  std::atomic<size_t> next_{0};
  std::atomic<int> state_{kIdle};
  std::thread helper_;  // last: starts once the state above exists
};

// One walk of a context directory (see ContextIndex::Build).
class Walker {
 public:
  Walker(std::filesystem::path root, const dockerfile::PatternMatcher& matcher, HashCache* hashes)
      : root_(std::move(root)),
        matcher_(matcher),
        hashes_(hashes),
        buffer_(new char[kReadBufferSize]) {
    // A tree scanned before has about as many entries as its cache has files.
    if (hashes_ != nullptr) entries_.reserve(hashes_->size() + hashes_->size() / 8);
    // A thread is worth starting only for a tree of some size, which the
    // cache of a tree scanned before tells.
    if (hashes_ != nullptr && hashes_->size() >= kParallelStatTree) parallel_stat_.emplace();
  }

  // Indexes the children of the directory open as `dir_fd` (owned by this
  // call), whose path is `dir` ("" for the root) and whose ignore-match state
  // is `dir_info`. Sets `*included_any` when anything below was indexed.
  absl::Status WalkDirectory(int dir_fd, const std::string& dir,
                             const dockerfile::MatchInfo& dir_info, bool* included_any) {
    std::unique_ptr<DIR, CloseDir> stream(fdopendir(dir_fd));
    if (stream == nullptr) {
      const int error = errno;
      close(dir_fd);
      return Error(error, dir, "opendir");
    }
    std::vector<std::string> names;
    errno = 0;
    while (const dirent* child = readdir(stream.get())) {
      const absl::string_view name = child->d_name;
      if (name != "." && name != "..") names.emplace_back(name);
      errno = 0;
    }
    if (errno != 0) return Error(errno, dir, "readdir");

    std::vector<EntryStat> stats;
    StatEntries(dirfd(stream.get()), names, stats);

    for (size_t i = 0; i < names.size(); ++i) {
      const std::string& name = names[i];
      std::string path = JoinPath(dir, name);
      dockerfile::MatchInfo info;
      absl::StatusOr<bool> excluded = matcher_.MatchesUsingParentResults(path, dir_info, &info);
      if (!excluded.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            Display(path), ": matching the ignore file: ", excluded.status().message()));
      }
      if (stats[i].error != 0) {
        if (*excluded) continue;  // BuildKit ignores errors on excluded paths
        return Error(stats[i].error, path, "lstat");
      }
      const struct stat& st = stats[i].st;
      if (*excluded) {
        // Below an excluded directory only a `!` pattern can bring anything
        // back; without one, nothing there can be included.
        if (S_ISDIR(st.st_mode) && matcher_.has_exclusions()) {
          bool below = false;
          absl::Status status =
              Descend(dirfd(stream.get()), name, path, st, info, /*excluded=*/true, &below);
          if (!status.ok()) return status;
          if (below) *included_any = true;
        }
        continue;
      }
      if (absl::string_view type = UnsupportedTypeName(st.st_mode); !type.empty()) {
        skipped_.push_back(
            {path, absl::StrCat(type, ": only files, directories and symlinks are indexed")});
        continue;
      }
      *included_any = true;
      absl::Status status = AddEntry(dirfd(stream.get()), name, std::move(path), st, info);
      if (!status.ok()) return status;
    }
    return absl::OkStatus();
  }

  std::vector<ContextEntry> TakeEntries() { return std::move(entries_); }
  std::vector<SkippedEntry> TakeSkipped() { return std::move(skipped_); }

 private:
  // Trees (by the files their cache remembers) and directories (by entries)
  // whose entries are stat'ed on two threads.
  static constexpr size_t kParallelStatTree = 2000;
  static constexpr size_t kParallelStatDirectory = 32;

  // The lstat of each of `names` in `dir_fd`, into `stats`.
  void StatEntries(int dir_fd, const std::vector<std::string>& names,
                   std::vector<EntryStat>& stats) {
    if (parallel_stat_ && names.size() >= kParallelStatDirectory) {
      parallel_stat_->Run(dir_fd, names, stats);
      return;
    }
    stats.resize(names.size());
    for (size_t i = 0; i < names.size(); ++i) StatEntry(dir_fd, names[i], stats[i]);
  }

  // Indexes the included entry `name` in `parent_fd`, stat'ed as `st`.
  absl::Status AddEntry(int parent_fd, const std::string& name, std::string path,
                        const struct stat& st, const dockerfile::MatchInfo& info) {
    ContextEntry entry;
    entry.path = std::move(path);
    entry.mode = st.st_mode & 07777;
    entry.uid = st.st_uid;
    entry.gid = st.st_gid;
    entry.mtime_ns = MtimeNs(st);
    if (S_ISDIR(st.st_mode)) {
      entry.type = EntryType::kDirectory;
      entries_.push_back(entry);
      bool below = false;
      return Descend(parent_fd, name, entry.path, st, info, /*excluded=*/false, &below);
    }
    if (S_ISLNK(st.st_mode)) {
      entry.type = EntryType::kSymlink;
      absl::StatusOr<std::string> target = ReadLink(parent_fd, name, entry.path, st);
      if (!target.ok()) return target.status();
      entry.link_target = *std::move(target);
      entry.size = entry.link_target.size();
      entries_.push_back(std::move(entry));
      return absl::OkStatus();
    }
    if (hashes_ != nullptr) {
      if (std::optional<digest::Digest> known = hashes_->Find(entry.path, FileStamp::Of(st))) {
        entry.size = static_cast<uint64_t>(st.st_size);
        entry.content = *known;
        entries_.push_back(std::move(entry));
        return absl::OkStatus();
      }
    }
    return AddFile(parent_fd, name, std::move(entry));
  }

  // Walks into directory `name` of `parent_fd`, refusing to follow a symlink
  // swapped in since it was stat'ed as `st`. An `excluded` directory is listed
  // only when something below it was included, as fsutil does, and skipped
  // when it may not be opened, as BuildKit skips permission errors on
  // excluded paths.
  absl::Status Descend(int parent_fd, const std::string& name, const std::string& path,
                       const struct stat& st, const dockerfile::MatchInfo& info, bool excluded,
                       bool* below) {
    const int fd = openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      if (excluded && (errno == EACCES || errno == EPERM)) return absl::OkStatus();
      return Error(errno, path, "open");
    }
    absl::Status status = WalkDirectory(fd, path, info, below);
    if (!status.ok()) return status;
    if (excluded && *below) {
      ContextEntry entry;
      entry.path = path;
      entry.type = EntryType::kDirectory;
      entry.mode = st.st_mode & 07777;
      entry.uid = st.st_uid;
      entry.gid = st.st_gid;
      entry.mtime_ns = MtimeNs(st);
      entries_.push_back(std::move(entry));
    }
    return absl::OkStatus();
  }

  absl::Status AddFile(int parent_fd, const std::string& name, ContextEntry entry) {
    // O_NONBLOCK: should a FIFO be swapped in after the stat, open must not hang.
    ScopedFd fd(openat(parent_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (fd.get() < 0) return Error(errno, entry.path, "open");
    struct stat st;
    if (fstat(fd.get(), &st) != 0) return Error(errno, entry.path, "fstat");
    if (!S_ISREG(st.st_mode)) {
      return absl::AbortedError(
          absl::StrCat(Display(entry.path), ": changed type while the context was read"));
    }
    // What was opened is what is described.
    entry.mtime_ns = MtimeNs(st);
    entry.mode = st.st_mode & 07777;
    entry.uid = st.st_uid;
    entry.gid = st.st_gid;
    posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
    digest::Sha256 hasher;
    uint64_t size = 0;
    while (true) {
      const ssize_t n = read(fd.get(), buffer_.get(), kReadBufferSize);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Error(errno, entry.path, "read");
      }
      if (n == 0) break;
      hasher.Update(absl::string_view(buffer_.get(), static_cast<size_t>(n)));
      size += static_cast<uint64_t>(n);
    }
    entry.size = size;
    entry.content = hasher.Finish();
    // Remembered only if the file did not change while it was read.
    struct stat after;
    if (hashes_ != nullptr && fstat(fd.get(), &after) == 0 &&
        FileStamp::Of(after) == FileStamp::Of(st) && size == static_cast<uint64_t>(st.st_size)) {
      hashes_->Record(entry.path, FileStamp::Of(st), *entry.content);
    }
    entries_.push_back(std::move(entry));
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> ReadLink(int parent_fd, const std::string& name,
                                       const std::string& path, const struct stat& st) {
    // st_size is the target's length on Linux filesystems, 0 on a few
    // pseudo-filesystems; grow until the target fits.
    std::string target(std::max<size_t>(static_cast<size_t>(st.st_size), 64) + 1, '\0');
    while (true) {
      const ssize_t n = readlinkat(parent_fd, name.c_str(), target.data(), target.size());
      if (n < 0) return Error(errno, path, "readlink");
      if (static_cast<size_t>(n) < target.size()) {
        target.resize(static_cast<size_t>(n));
        return target;
      }
      target.resize(target.size() * 2);
    }
  }

  std::string Display(absl::string_view path) const {
    return path.empty() ? root_.string() : (root_ / std::string(path)).string();
  }

  absl::Status Error(int error, absl::string_view path, absl::string_view operation) const {
    return absl::ErrnoToStatus(error, absl::StrCat(Display(path), ": ", operation));
  }

  const std::filesystem::path root_;
  const dockerfile::PatternMatcher& matcher_;
  HashCache* const hashes_;
  std::unique_ptr<char[]> buffer_;
  std::vector<ContextEntry> entries_;
  std::vector<SkippedEntry> skipped_;
  std::optional<ParallelStat> parallel_stat_;  // large trees only
};

bool ByPath(const ContextEntry& a, const ContextEntry& b) { return a.path < b.path; }

std::string Octal(uint32_t value) {
  char text[12];
  const std::to_chars_result end = std::to_chars(text, text + sizeof(text), value, 8);
  return std::string(text, end.ptr);
}

// BuildKit's containsWildcards: `*`, `?` or `[` not escaped by a backslash.
bool ContainsWildcards(absl::string_view name) {
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] == '\\') {
      ++i;
    } else if (name[i] == '*' || name[i] == '?' || name[i] == '[') {
      return true;
    }
  }
  return false;
}

}  // namespace

absl::string_view EntryTypeName(EntryType type) {
  switch (type) {
    case EntryType::kFile:
      return "file";
    case EntryType::kDirectory:
      return "dir";
    case EntryType::kSymlink:
      return "symlink";
  }
  return "unknown";
}

absl::StatusOr<ContextIndex> ContextIndex::Build(const std::filesystem::path& context_dir,
                                                 const std::filesystem::path& dockerfile,
                                                 HashCache* hashes) {
  absl::StatusOr<dockerfile::BuildIgnoreFile> ignore =
      dockerfile::LoadBuildIgnoreFile(context_dir, dockerfile);
  if (!ignore.ok()) return ignore.status();
  absl::StatusOr<dockerfile::PatternMatcher> matcher =
      dockerfile::PatternMatcher::Create(ignore->patterns);
  if (!matcher.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(ignore->path.string(), ": ", matcher.status().message()));
  }
  const int root_fd = open(context_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("context directory ", context_dir.string()));
  }
  Walker walker(context_dir, *matcher, hashes);
  bool included_any = false;
  absl::Status status = walker.WalkDirectory(root_fd, "", dockerfile::MatchInfo(), &included_any);
  if (!status.ok()) return status;
  ContextIndex index;
  index.entries_ = walker.TakeEntries();
  index.skipped_ = walker.TakeSkipped();
  std::sort(index.entries_.begin(), index.entries_.end(), ByPath);
  std::sort(index.skipped_.begin(), index.skipped_.end(),
            [](const SkippedEntry& a, const SkippedEntry& b) { return a.path < b.path; });
  return index;
}

ContextIndex ContextIndex::Restrict(absl::Span<const std::string> sources) const {
  std::vector<bool> keep(entries_.size(), false);
  auto keep_path = [&](absl::string_view path) {
    const ContextEntry* entry = Find(path);
    if (entry != nullptr) keep[static_cast<size_t>(entry - entries_.data())] = true;
  };
  for (const std::string& source : sources) {
    absl::StatusOr<std::vector<const ContextEntry*>> selected = Select({source});
    if (!selected.ok()) continue;
    for (const ContextEntry* entry : *selected) {
      keep[static_cast<size_t>(entry - entries_.data())] = true;
      for (absl::string_view parent = ParentOf(entry->path); !parent.empty();
           parent = ParentOf(parent)) {
        keep_path(parent);
      }
    }
  }
  ContextIndex part;
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (keep[i]) part.entries_.push_back(entries_[i]);
  }
  return part;
}

absl::StatusOr<ContextIndex> ContextIndex::FromEntries(std::vector<ContextEntry> entries) {
  std::sort(entries.begin(), entries.end(), ByPath);
  ContextIndex index;
  index.entries_ = std::move(entries);
  for (size_t i = 0; i < index.entries_.size(); ++i) {
    const ContextEntry& entry = index.entries_[i];
    auto invalid = [&entry](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("context entry ", Quote(entry.path), ": ", why));
    };
    if (!IsCleanRelative(entry.path)) {
      return invalid("not a clean path relative to the context root");
    }
    if (i > 0 && index.entries_[i - 1].path == entry.path) return invalid("listed twice");
    if (const absl::string_view parent = ParentOf(entry.path); !parent.empty()) {
      const ContextEntry* dir = index.Find(parent);
      if (dir == nullptr || dir->type != EntryType::kDirectory) {
        return invalid(absl::StrCat("parent ", Quote(parent), " is not a directory entry"));
      }
    }
    if (entry.mode > 07777) return invalid(absl::StrCat("mode ", entry.mode, " is above 07777"));
    if (entry.content.has_value() != (entry.type == EntryType::kFile)) {
      return invalid(entry.type == EntryType::kFile ? "a file without a content digest"
                                                    : "a content digest on a non-file");
    }
    if (entry.link_target.empty() == (entry.type == EntryType::kSymlink)) {
      return invalid(entry.type == EntryType::kSymlink ? "a symlink without a target"
                                                       : "a link target on a non-symlink");
    }
  }
  return index;
}

const ContextEntry* ContextIndex::Find(absl::string_view path) const {
  const auto it = std::lower_bound(
      entries_.begin(), entries_.end(), path,
      [](const ContextEntry& entry, absl::string_view p) { return entry.path < p; });
  return it != entries_.end() && it->path == path ? &*it : nullptr;
}

namespace {

// Select's work for one index: resolving paths inside it and collecting the
// entries read.
class Selector {
 public:
  explicit Selector(const ContextIndex& index) : entries_(index.entries()), index_(index) {}

  absl::Status AddSource(const std::string& source) {
    // path.Join("/", source): clean, and ".." stops at the root.
    const std::string cleaned = dockerfile::CleanPath(absl::StrCat("/", source));
    const std::string path = cleaned.substr(1);
    if (ContainsWildcards(path)) return AddPattern(source, path);
    absl::StatusOr<const ContextEntry*> entry = Resolve(source, path);
    if (!entry.ok()) return entry.status();
    AddTree(*entry);
    return absl::OkStatus();
  }

  std::vector<const ContextEntry*> Take() {
    // The entries live in one sorted vector, so address order is path order.
    std::sort(selected_.begin(), selected_.end());
    selected_.erase(std::unique(selected_.begin(), selected_.end()), selected_.end());
    return std::move(selected_);
  }

 private:
  // Resolves `path` (clean, relative; "" is the root) following every symlink
  // inside the context, selecting the links followed. Returns the entry
  // reached, null for the root; NotFound when there is none.
  absl::StatusOr<const ContextEntry*> Resolve(absl::string_view source, absl::string_view path) {
    std::string current;
    std::string remaining(path);
    int links = 0;
    while (!remaining.empty()) {
      const size_t slash = remaining.find('/');
      const std::string part = remaining.substr(0, slash);
      remaining = slash == std::string::npos ? "" : remaining.substr(slash + 1);
      if (part.empty() || part == ".") continue;
      if (part == "..") {
        current = std::string(ParentOf(current));
        continue;
      }
      std::string next = JoinPath(current, part);
      const ContextEntry* entry = index_.Find(next);
      if (entry == nullptr || entry->type != EntryType::kSymlink) {
        current = std::move(next);
        continue;
      }
      if (++links > kMaxSymlinks) {
        return absl::InvalidArgumentError(
            absl::StrCat("source ", Quote(source), ": too many levels of symbolic links"));
      }
      selected_.push_back(entry);
      remaining =
          remaining.empty() ? entry->link_target : absl::StrCat(entry->link_target, "/", remaining);
      if (absl::StartsWith(entry->link_target, "/")) current.clear();
    }
    if (current.empty()) return nullptr;
    if (const ContextEntry* entry = index_.Find(current)) return entry;
    return absl::NotFoundError(absl::StrCat("source ", Quote(source), ": ",
                                            Quote(absl::StrCat("/", path)), ": not found"));
  }

  // A pattern: resolve the elements before the first wildcard, then match
  // every path below them.
  absl::Status AddPattern(absl::string_view source, const std::string& pattern) {
    size_t wildcard_element = 0;
    while (true) {
      const size_t slash = pattern.find('/', wildcard_element);
      const absl::string_view element =
          absl::string_view(pattern).substr(wildcard_element, slash - wildcard_element);
      if (ContainsWildcards(element) || slash == std::string::npos) break;
      wildcard_element = slash + 1;
    }
    const std::string prefix = wildcard_element == 0 ? "" : pattern.substr(0, wildcard_element - 1);
    absl::StatusOr<const ContextEntry*> base = Resolve(source, prefix);
    if (!base.ok()) return base.status();
    if (*base != nullptr && (*base)->type != EntryType::kDirectory) {
      return absl::FailedPreconditionError(absl::StrCat(
          "source ", Quote(source), ": ", Quote(absl::StrCat("/", prefix)), ": not a directory"));
    }
    const std::string resolved = *base == nullptr ? "" : (*base)->path;
    const auto [begin, end] = Below(resolved);
    for (auto it = begin; it != end; ++it) {
      // Matched with the prefix as written, as BuildKit does when the prefix
      // runs through a symlink.
      const std::string name = JoinPath(
          prefix, absl::string_view(it->path).substr(resolved.empty() ? 0 : resolved.size() + 1));
      absl::StatusOr<bool> matched = dockerfile::MatchGlob(pattern, name);
      if (!matched.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("source ", Quote(source), ": ", matched.status().message()));
      }
      if (!*matched) continue;
      if (it->type == EntryType::kSymlink) {
        // A matched symlink is copied as what it points to.
        absl::StatusOr<const ContextEntry*> target = Resolve(source, name);
        if (!target.ok()) return target.status();
        AddTree(*target);
      }
      AddTree(&*it);
    }
    return absl::OkStatus();
  }

  // The entries strictly below directory `dir` ("" for the root).
  std::pair<std::vector<ContextEntry>::const_iterator, std::vector<ContextEntry>::const_iterator>
  Below(const std::string& dir) const {
    if (dir.empty()) return {entries_.begin(), entries_.end()};
    const std::string prefix = dir + "/";
    auto begin = std::lower_bound(
        entries_.begin(), entries_.end(), prefix,
        [](const ContextEntry& entry, const std::string& p) { return entry.path < p; });
    auto end = begin;
    while (end != entries_.end() && absl::StartsWith(end->path, prefix)) ++end;
    return {begin, end};
  }

  // Selects `entry` (null: the root) and, for a directory, everything below.
  void AddTree(const ContextEntry* entry) {
    if (entry != nullptr) {
      selected_.push_back(entry);
      if (entry->type != EntryType::kDirectory) return;
    }
    const auto [begin, end] = Below(entry == nullptr ? "" : entry->path);
    for (auto it = begin; it != end; ++it) selected_.push_back(&*it);
  }

  const std::vector<ContextEntry>& entries_;
  const ContextIndex& index_;
  std::vector<const ContextEntry*> selected_;
};

}  // namespace

absl::StatusOr<std::vector<const ContextEntry*>> ContextIndex::Select(
    absl::Span<const std::string> sources) const {
  if (sources.empty()) return absl::InvalidArgumentError("no source files were specified");
  Selector selector(*this);
  for (const std::string& source : sources) {
    absl::Status status = selector.AddSource(source);
    if (!status.ok()) return status;
  }
  return selector.Take();
}

digest::Digest SelectionDigest(absl::Span<const ContextEntry* const> selection) {
  digest::Sha256 hasher;
  hasher.UpdateLengthPrefixed("stagefarm-context-selection/v2");
  hasher.UpdateLengthPrefixed(absl::StrCat(selection.size()));
  for (const ContextEntry* entry : selection) {
    hasher.UpdateLengthPrefixed(entry->path);
    hasher.UpdateLengthPrefixed(EntryTypeName(entry->type));
    hasher.UpdateLengthPrefixed(Octal(entry->mode));
    switch (entry->type) {
      case EntryType::kFile:
        hasher.UpdateLengthPrefixed(entry->content->ToString());
        break;
      case EntryType::kSymlink:
        hasher.UpdateLengthPrefixed(entry->link_target);
        break;
      case EntryType::kDirectory:
        hasher.UpdateLengthPrefixed("");
        break;
    }
  }
  return hasher.Finish();
}

}  // namespace stagefarm::fs
