#include "common/oci/layer_unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "common/dockerfile/go_text.h"
#include "common/oci/layer_decompress.h"

namespace stagefarm::oci {
namespace {

using dockerfile::go::Quote;
using fs::RootDir;
using fs::UniqueFd;

constexpr absl::string_view kWhiteoutPrefix = ".wh.";
constexpr absl::string_view kWhiteoutMetaPrefix = ".wh..wh.";
constexpr absl::string_view kOpaqueMarker = ".wh..wh..opq";
// Mode of parent directories the tar does not list.
constexpr mode_t kImplicitDirMode = 0755;

struct ArchiveFree {
  void operator()(archive* a) const { archive_read_free(a); }
};

// The entry name cleaned as Go's path.Clean would on "/" + name, except that
// a ".." which would climb above the root is an error rather than dropped:
// an image that says "../../etc/passwd" is broken or an attack, and moby's
// pkg/archive refuses it too ("... is outside of ..."; containerd instead
// clamps it to the root, which would hide the problem). "" is the root.
absl::StatusOr<std::string> CleanEntryPath(absl::string_view raw) {
  std::vector<absl::string_view> elements;
  for (size_t start = 0; start <= raw.size();) {
    size_t end = raw.find('/', start);
    if (end == absl::string_view::npos) end = raw.size();
    const absl::string_view element = raw.substr(start, end - start);
    start = end + 1;
    if (element.empty() || element == ".") continue;
    if (element == "..") {
      if (elements.empty()) return absl::InvalidArgumentError("path escapes the root");
      elements.pop_back();
      continue;
    }
    elements.push_back(element);
  }
  std::string clean;
  for (const absl::string_view element : elements) {
    if (!clean.empty()) clean.push_back('/');
    absl::StrAppend(&clean, element);
  }
  return clean;
}

// Pulls pieces from the LayerReader for libarchive and keeps the reader's
// own error, which libarchive would otherwise flatten into a string.
struct ReadContext {
  const LayerReader* read;
  absl::Status status;
};

la_ssize_t ReadCallback(archive* a, void* data, const void** buffer) {
  auto* context = static_cast<ReadContext*>(data);
  absl::StatusOr<absl::string_view> piece = (*context->read)();
  if (!piece.ok()) {
    context->status = piece.status();
    archive_set_error(a, EIO, "layer reader failed");
    return -1;
  }
  *buffer = piece->data();
  return static_cast<la_ssize_t>(piece->size());
}

// The layer's first bytes, enough to recognise its compression: the reader's
// first piece (valid until the reader is called again) or, when that is
// shorter than four bytes, the first pieces copied together. Not movable:
// `bytes` may point into `copy`.
struct LayerHead {
  LayerHead() = default;
  LayerHead(const LayerHead&) = delete;
  LayerHead& operator=(const LayerHead&) = delete;

  absl::string_view bytes;
  std::string copy;
  bool ended = false;  // the reader has given its last piece
};

absl::Status ReadHead(const LayerReader& read, LayerHead* head) {
  absl::StatusOr<absl::string_view> piece = read();
  if (!piece.ok()) return piece.status();
  if (piece->size() >= 4) {
    head->bytes = *piece;
    return absl::OkStatus();
  }
  while (true) {
    if (piece->empty()) {
      head->ended = true;
      break;
    }
    head->copy.append(piece->data(), piece->size());
    if (head->copy.size() >= 4) break;
    piece = read();
    if (!piece.ok()) return piece.status();
  }
  head->bytes = head->copy;
  return absl::OkStatus();
}

// The tar inside a gzip or zstd layer. The first kBufferSize bytes are
// decompressed on the caller's thread: a layer whose tar fits (most of a
// build's) starts no thread. The rest is decompressed on a thread of its own
// (which also calls the LayerReader, and so verifies the store's chunks)
// while the caller's thread writes the entries, at most kBuffers - 1 buffers
// ahead: memory stays at kBuffers * kBufferSize whatever the layer's size.
class InflatingReader {
 public:
  // `head` holds the layer's first bytes, already taken from `read`.
  InflatingReader(const LayerReader& read, const LayerHead& head, LayerCompression compression)
      : read_(read), in_(head.bytes), ended_(head.ended), decompressor_(compression) {}

  // Stops the thread, wherever it is, and waits for it.
  ~InflatingReader() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }

  InflatingReader(const InflatingReader&) = delete;
  InflatingReader& operator=(const InflatingReader&) = delete;

  // The next piece of the tar, valid until the next call; empty at its end.
  // The LayerReader's error as it is, or the decompressor's DataLoss.
  absl::StatusOr<absl::string_view> Next() {
    if (!started_) return First();
    absl::MutexLock lock(&mu_);
    if (current_ != nullptr) {
      free_.push_back(current_);
      current_ = nullptr;
    }
    mu_.Await(absl::Condition(
        +[](InflatingReader* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
          return self->done_ || !self->filled_.empty();
        },
        this));
    if (filled_.empty()) {
      if (!result_.ok()) return result_;
      return absl::string_view();
    }
    const absl::string_view piece = filled_.front();
    filled_.pop_front();
    current_ = const_cast<char*>(piece.data());
    return piece;
  }

 private:
  static constexpr size_t kBufferSize = 1 << 20;
  static constexpr int kBuffers = 4;

  // The first buffer, filled here; the thread starts only if there is more.
  absl::StatusOr<absl::string_view> First() {
    started_ = true;
    char* buffer = TakeFreeBuffer();
    absl::StatusOr<size_t> size = Fill(buffer);
    {
      absl::MutexLock lock(&mu_);
      current_ = buffer;
      done_ = !size.ok() || finished_;
      result_ = size.status();
    }
    if (!size.ok()) return size.status();
    if (!finished_) thread_ = std::thread([this] { Run(); });
    return absl::string_view(buffer, *size);
  }

  void Run() {
    absl::Status status = absl::OkStatus();
    while (status.ok() && !finished_) {
      char* buffer = TakeFreeBuffer();
      if (buffer == nullptr) {
        status = absl::CancelledError("layer unpack stopped");
        break;
      }
      absl::StatusOr<size_t> size = Fill(buffer);
      absl::MutexLock lock(&mu_);
      if (!size.ok()) {
        status = size.status();
      } else if (*size > 0) {
        filled_.emplace_back(buffer, *size);
      } else {
        free_.push_back(buffer);
      }
    }
    absl::MutexLock lock(&mu_);
    done_ = true;
    result_ = std::move(status);
  }

  // Decompresses into `buffer` until it is full or the stream has ended
  // (finished_, the decompressor's Finish checked); returns the bytes filled.
  absl::StatusOr<size_t> Fill(char* buffer) {
    size_t size = 0;
    while (true) {
      if (in_.empty() && !ended_) {
        if (Stopping()) return absl::CancelledError("layer unpack stopped");
        absl::StatusOr<absl::string_view> piece = read_();
        if (!piece.ok()) return piece.status();
        in_ = *piece;
        ended_ = in_.empty();
      }
      absl::StatusOr<size_t> n =
          decompressor_.Decompress(&in_, absl::MakeSpan(buffer + size, kBufferSize - size));
      if (!n.ok()) return n.status();
      size += *n;
      // Full: more may be pending even when `in_` is used up.
      if (size == kBufferSize) return size;
      if (in_.empty() && ended_) {
        if (absl::Status status = decompressor_.Finish(); !status.ok()) return status;
        finished_ = true;
        return size;
      }
    }
  }

  bool Stopping() {
    absl::MutexLock lock(&mu_);
    return stopping_;
  }

  // A buffer to fill, allocated on first use; nullptr once stopping.
  char* TakeFreeBuffer() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](InflatingReader* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
          return self->stopping_ || !self->free_.empty() || self->allocated_ < kBuffers;
        },
        this));
    if (stopping_) return nullptr;
    if (!free_.empty()) {
      char* buffer = free_.back();
      free_.pop_back();
      return buffer;
    }
    // Not zeroed: only the pages written are ever touched.
    storage_[allocated_] = std::make_unique_for_overwrite<char[]>(kBufferSize);
    return storage_[allocated_++].get();
  }

  // The decompressing side's: the caller's thread's until the thread starts
  // (First), the thread's after.
  const LayerReader& read_;
  absl::string_view in_;  // compressed bytes taken from read_, not yet decompressed
  bool ended_;            // read_ has given its last piece
  bool finished_ = false;
  LayerDecompressor decompressor_;

  bool started_ = false;  // the caller's thread's

  absl::Mutex mu_;
  std::unique_ptr<char[]> storage_[kBuffers] ABSL_GUARDED_BY(mu_);
  int allocated_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<char*> free_ ABSL_GUARDED_BY(mu_);
  std::deque<absl::string_view> filled_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status result_ ABSL_GUARDED_BY(mu_);  // the decompressing side's, once done_
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  char* current_ ABSL_GUARDED_BY(mu_) = nullptr;  // the piece Next last returned
  std::thread thread_;
};

// One entry of a directory as this layer wrote it: the directory's device
// and inode, and the name in it. Identifying the directory by inode rather
// than by path keeps the record right whichever symlinks the tar reached it
// through.
using WrittenKey = std::tuple<dev_t, ino_t, std::string>;

class LayerApplier {
 public:
  LayerApplier(const RootDir& root, const ApplyOptions& options) : root_(root), options_(options) {}

  absl::StatusOr<ApplyStats> Run(const LayerReader& read);

 private:
  struct DirTimes {
    std::string path;  // cleaned
    std::string raw;   // as in the tar, for messages
    timespec times[2];
  };

  absl::Status ApplyEntry(archive* a, archive_entry* entry, absl::string_view raw);
  absl::Status ApplyWhiteout(absl::string_view raw, absl::string_view dir, absl::string_view base);
  // ApplyOptions::Whiteouts::kOverlay: the opaque xattr on `dir`; a char
  // device 0/0 at `dir`/`target`.
  absl::Status MarkOpaque(absl::string_view raw, absl::string_view dir);
  absl::Status MakeOverlayWhiteout(absl::string_view raw, absl::string_view dir,
                                   absl::string_view target);
  // Removes from the open directory `dir_fd` every entry this layer has not
  // written, descending into the directories it has.
  absl::Status ClearLowerEntries(int dir_fd, const std::string& display);
  absl::Status ApplyHardlink(absl::string_view raw, const RootDir::Parent& parent,
                             const struct stat* existing, const char* target_raw);
  absl::Status WriteFile(archive* a, absl::string_view raw, const RootDir::Parent& parent,
                         archive_entry* entry);
  // Owner, mode, xattrs and, except for a directory (see SetDirectoryTimes), times.
  absl::Status SetMetadata(absl::string_view raw, const RootDir::Parent& parent,
                           archive_entry* entry, bool is_symlink);
  absl::Status SetDirectoryTimes();
  absl::Status RecordWritten(const RootDir::Parent& parent, absl::string_view raw);

  const RootDir& root_;
  const ApplyOptions& options_;
  ApplyStats stats_;
  absl::flat_hash_set<WrittenKey> written_;
  std::vector<DirTimes> dir_times_;
};

absl::Status EntryError(absl::string_view raw, absl::string_view what, int error_number) {
  return absl::ErrnoToStatus(error_number, absl::StrCat("layer entry ", Quote(raw), ": ", what));
}

// `status` with the entry named in front of its message, same code.
absl::Status Annotate(absl::string_view raw, const absl::Status& status) {
  return absl::Status(status.code(),
                      absl::StrCat("layer entry ", Quote(raw), ": ", status.message()));
}

absl::StatusOr<ApplyStats> LayerApplier::Run(const LayerReader& read) {
  // Compressed as the OCI media types allow (+gzip, +zstd): decompressed
  // here, a large layer on a thread of its own. Anything else goes to
  // libarchive as it is.
  LayerHead head;
  if (absl::Status status = ReadHead(read, &head); !status.ok()) return status;
  const LayerCompression compression = DetectLayerCompression(head.bytes);
  std::optional<InflatingReader> inflating;
  LayerReader tar;
  if (compression != LayerCompression::kNone) {
    inflating.emplace(read, head, compression);
    tar = [&inflating] { return inflating->Next(); };
  } else {
    tar = [&read, &head, first = true]() mutable -> absl::StatusOr<absl::string_view> {
      if (first) {
        first = false;
        return head.bytes;
      }
      if (head.ended) return absl::string_view();
      return read();
    };
  }
  // Freed before `tar` and `inflating`, which its callbacks reach.
  std::unique_ptr<archive, ArchiveFree> a(archive_read_new());
  if (a == nullptr) return absl::ResourceExhaustedError("archive_read_new failed");
  // Tar in every dialect libarchive knows (ustar, pax, GNU); compressed as ADD
  // accepts local archives, bzip2 and xz are libarchive's to read. No external
  // filter programs.
  archive_read_support_format_tar(a.get());
  archive_read_support_filter_bzip2(a.get());
  archive_read_support_filter_xz(a.get());
  ReadContext context{&tar, absl::OkStatus()};
  std::string last = "(none)";
  auto stream_error = [&](absl::string_view when) {
    if (!context.status.ok()) return context.status;
    return absl::DataLossError(
        absl::StrCat("layer: ", when, " (last entry ", last, "): ", archive_error_string(a.get())));
  };
  if (archive_read_open(a.get(), &context, nullptr, ReadCallback, nullptr) != ARCHIVE_OK) {
    return stream_error("opening the stream");
  }
  while (true) {
    archive_entry* entry = nullptr;
    const int result = archive_read_next_header(a.get(), &entry);
    if (result == ARCHIVE_EOF) break;
    // ARCHIVE_WARN is something libarchive could not convert (an unknown pax
    // keyword, a name in another charset); the entry itself is usable.
    if (result < ARCHIVE_WARN) return stream_error("reading a tar header");
    const char* name = archive_entry_pathname(entry);
    if (name == nullptr) return stream_error("an entry without a name");
    ++stats_.entries;
    last = Quote(name);
    absl::Status applied = ApplyEntry(a.get(), entry, name);
    if (!applied.ok()) {
      return context.status.ok() ? applied : context.status;
    }
  }
  if (inflating) {
    // What follows the tar's end (padding, the last trailer) is read too, as
    // containerd does: a bad CRC or trailing garbage is an error there as
    // anywhere else in the blob.
    while (true) {
      absl::StatusOr<absl::string_view> rest = inflating->Next();
      if (!rest.ok()) return rest.status();
      if (rest->empty()) break;
    }
  }
  absl::Status times = SetDirectoryTimes();
  if (!times.ok()) return times;
  return stats_;
}

absl::Status LayerApplier::ApplyEntry(archive* a, archive_entry* entry, absl::string_view raw) {
  absl::StatusOr<std::string> clean = CleanEntryPath(raw);
  if (!clean.ok()) return Annotate(raw, clean.status());
  if (clean->empty()) return absl::OkStatus();
  const size_t slash = clean->rfind('/');
  const absl::string_view dir =
      slash == std::string::npos ? absl::string_view() : absl::string_view(*clean).substr(0, slash);
  const absl::string_view base = slash == std::string::npos
                                     ? absl::string_view(*clean)
                                     : absl::string_view(*clean).substr(slash + 1);
  if (absl::StartsWith(base, kWhiteoutPrefix)) return ApplyWhiteout(raw, dir, base);

  absl::StatusOr<RootDir::Parent> parent = root_.MkdirParents(*clean, kImplicitDirMode);
  if (!parent.ok()) return Annotate(raw, parent.status());
  struct stat existing_stat {};
  const struct stat* existing = nullptr;
  if (fstatat(parent->dir.get(), parent->name.c_str(), &existing_stat, AT_SYMLINK_NOFOLLOW) == 0) {
    existing = &existing_stat;
  } else if (errno != ENOENT) {
    return EntryError(raw, "lstat", errno);
  }

  if (const char* target = archive_entry_hardlink(entry); target != nullptr) {
    absl::Status linked = ApplyHardlink(raw, *parent, existing, target);
    if (!linked.ok()) return linked;
    return RecordWritten(*parent, raw);
  }

  const mode_t type = archive_entry_filetype(entry);
  const bool keep_directory = type == AE_IFDIR && existing != nullptr && S_ISDIR(existing->st_mode);
  if (existing != nullptr && !keep_directory) {
    absl::Status removed = fs::RemoveAllAt(parent->dir.get(), parent->name, *clean);
    if (!removed.ok()) return Annotate(raw, removed);
  }
  const int dir_fd = parent->dir.get();
  const char* name = parent->name.c_str();
  const mode_t perm = archive_entry_perm(entry) & 07777;
  switch (type) {
    case AE_IFREG: {
      absl::Status written = WriteFile(a, raw, *parent, entry);
      if (!written.ok()) return written;
      break;
    }
    case AE_IFDIR:
      // Made private; SetMetadata gives it its mode once it has its owner.
      if (!keep_directory && mkdirat(dir_fd, name, 0700) != 0) {
        return EntryError(raw, "mkdir", errno);
      }
      // In a snapshot, a directory over this layer's whiteout of its name
      // replaces the lower layers' directory: overlayfs needs it opaque.
      if (options_.whiteouts == ApplyOptions::Whiteouts::kOverlay && existing != nullptr &&
          S_ISCHR(existing->st_mode) && existing->st_rdev == makedev(0, 0)) {
        absl::Status marked = MarkOpaque(raw, *clean);
        if (!marked.ok()) return marked;
      }
      break;
    case AE_IFLNK: {
      const char* target = archive_entry_symlink(entry);
      if (target == nullptr || *target == '\0') {
        return absl::InvalidArgumentError(
            absl::StrCat("layer entry ", Quote(raw), ": symlink without a target"));
      }
      if (symlinkat(target, dir_fd, name) != 0) return EntryError(raw, "symlink", errno);
      break;
    }
    case AE_IFCHR:
    case AE_IFBLK:
    case AE_IFIFO: {
      const dev_t device = type == AE_IFIFO ? 0
                                            : makedev(archive_entry_rdevmajor(entry),
                                                      archive_entry_rdevminor(entry));
      if (mknodat(dir_fd, name, type | (perm & 0777), device) != 0) {
        return EntryError(raw, "mknod", errno);
      }
      break;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "layer entry ", Quote(raw), ": unsupported entry type 0", absl::Dec(type >> 12)));
  }
  absl::Status metadata = SetMetadata(raw, *parent, entry, type == AE_IFLNK);
  if (!metadata.ok()) return metadata;
  if (type == AE_IFDIR) {
    DirTimes times{*clean, std::string(raw), {}};
    times.times[1] = {archive_entry_mtime(entry), archive_entry_mtime_nsec(entry)};
    times.times[0] = archive_entry_atime_is_set(entry)
                         ? timespec{archive_entry_atime(entry), archive_entry_atime_nsec(entry)}
                         : times.times[1];
    if (archive_entry_mtime_is_set(entry)) dir_times_.push_back(std::move(times));
  }
  return RecordWritten(*parent, raw);
}

absl::Status LayerApplier::RecordWritten(const RootDir::Parent& parent, absl::string_view raw) {
  struct stat dir_stat {};
  if (fstat(parent.dir.get(), &dir_stat) != 0) return EntryError(raw, "stat parent", errno);
  written_.insert(WrittenKey(dir_stat.st_dev, dir_stat.st_ino, parent.name));
  return absl::OkStatus();
}

absl::Status LayerApplier::ApplyWhiteout(absl::string_view raw, absl::string_view dir,
                                         absl::string_view base) {
  const bool opaque = base == kOpaqueMarker;
  if (!opaque && absl::StartsWith(base, kWhiteoutMetaPrefix)) return absl::OkStatus();
  const absl::string_view target = base.substr(kWhiteoutPrefix.size());
  // ".wh.." and ".wh..." would name the directory itself or its parent; no
  // tool writes them, and removing what they name is not what a whiteout is.
  if (!opaque && (target.empty() || target == "." || target == "..")) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer entry ", Quote(raw), ": whiteout of ", Quote(target)));
  }
  ++stats_.whiteouts;
  if (options_.whiteouts == ApplyOptions::Whiteouts::kOverlay) {
    return opaque ? MarkOpaque(raw, dir) : MakeOverlayWhiteout(raw, dir, target);
  }
  absl::StatusOr<UniqueFd> dir_fd =
      root_.OpenAt(dir.empty() ? "." : dir, opaque ? O_RDONLY | O_DIRECTORY : O_PATH | O_DIRECTORY);
  // Nothing below a missing directory to remove.
  if (absl::IsNotFound(dir_fd.status())) return absl::OkStatus();
  if (!dir_fd.ok()) return Annotate(raw, dir_fd.status());
  absl::Status removed =
      opaque ? ClearLowerEntries(dir_fd->get(), std::string(dir))
             : fs::RemoveAllAt(dir_fd->get(), target,
                               dir.empty() ? std::string(target) : absl::StrCat(dir, "/", target));
  return removed.ok() ? removed : Annotate(raw, removed);
}

absl::Status LayerApplier::MarkOpaque(absl::string_view raw, absl::string_view dir) {
  absl::StatusOr<UniqueFd> dir_fd = root_.MkdirAll(dir.empty() ? "." : dir, kImplicitDirMode);
  if (!dir_fd.ok()) return Annotate(raw, dir_fd.status());
  // "<fd>/." names the directory itself (the descriptor is O_PATH).
  const std::string path = absl::StrCat("/proc/self/fd/", dir_fd->get(), "/.");
  if (lsetxattr(path.c_str(), "trusted.overlay.opaque", "y", 1, 0) != 0) {
    return EntryError(raw, "set xattr \"trusted.overlay.opaque\"", errno);
  }
  return absl::OkStatus();
}

absl::Status LayerApplier::MakeOverlayWhiteout(absl::string_view raw, absl::string_view dir,
                                               absl::string_view target) {
  const std::string path = dir.empty() ? std::string(target) : absl::StrCat(dir, "/", target);
  absl::StatusOr<RootDir::Parent> parent = root_.MkdirParents(path, kImplicitDirMode);
  if (!parent.ok()) return Annotate(raw, parent.status());
  absl::Status removed = fs::RemoveAllAt(parent->dir.get(), parent->name, path);
  if (!removed.ok()) return Annotate(raw, removed);
  if (mknodat(parent->dir.get(), parent->name.c_str(), S_IFCHR, makedev(0, 0)) != 0) {
    return EntryError(raw, "mknod overlay whiteout", errno);
  }
  return absl::OkStatus();
}

absl::Status LayerApplier::ClearLowerEntries(int dir_fd, const std::string& display) {
  struct stat dir_stat {};
  if (fstat(dir_fd, &dir_stat) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat(Quote(display), ": stat"));
  }
  absl::StatusOr<std::vector<std::string>> names = fs::ListDirectory(dir_fd, display);
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) {
    const std::string child = display.empty() ? name : absl::StrCat(display, "/", name);
    if (!written_.contains(WrittenKey(dir_stat.st_dev, dir_stat.st_ino, name))) {
      absl::Status removed = fs::RemoveAllAt(dir_fd, name, child);
      if (!removed.ok()) return removed;
      continue;
    }
    // Written by this layer: kept, but a directory may still hold older entries.
    UniqueFd sub(openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub.valid()) {
      if (errno == ENOTDIR || errno == ELOOP) continue;
      return absl::ErrnoToStatus(errno, absl::StrCat(Quote(child), ": open"));
    }
    absl::Status cleared = ClearLowerEntries(sub.get(), child);
    if (!cleared.ok()) return cleared;
  }
  return absl::OkStatus();
}

absl::Status LayerApplier::ApplyHardlink(absl::string_view raw, const RootDir::Parent& parent,
                                         const struct stat* existing, const char* target_raw) {
  absl::StatusOr<std::string> target = CleanEntryPath(target_raw);
  if (!target.ok() || target->empty()) {
    return absl::InvalidArgumentError(absl::StrCat("layer entry ", Quote(raw), ": hardlink target ",
                                                   Quote(target_raw), " escapes the root"));
  }
  auto missing = [&]() {
    return absl::NotFoundError(absl::StrCat("layer entry ", Quote(raw), ": hardlink target ",
                                            Quote(target_raw), " does not exist in the root"));
  };
  absl::StatusOr<RootDir::Parent> target_parent = root_.OpenParent(*target);
  if (absl::IsNotFound(target_parent.status())) return missing();
  if (!target_parent.ok()) return Annotate(raw, target_parent.status());
  struct stat target_stat {};
  if (fstatat(target_parent->dir.get(), target_parent->name.c_str(), &target_stat,
              AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return missing();
    return EntryError(raw, absl::StrCat("lstat hardlink target ", Quote(target_raw)), errno);
  }
  if (S_ISDIR(target_stat.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("layer entry ", Quote(raw), ": hardlink target ",
                                                   Quote(target_raw), " is a directory"));
  }
  if (existing != nullptr) {
    // Linking a name to itself (or to an existing link of the same file).
    if (existing->st_dev == target_stat.st_dev && existing->st_ino == target_stat.st_ino) {
      return absl::OkStatus();
    }
    absl::Status removed = fs::RemoveAllAt(parent.dir.get(), parent.name, raw);
    if (!removed.ok()) return Annotate(raw, removed);
  }
  // No AT_SYMLINK_FOLLOW: a link to a symlink is a link to the symlink, as tar means it.
  if (linkat(target_parent->dir.get(), target_parent->name.c_str(), parent.dir.get(),
             parent.name.c_str(), 0) != 0) {
    return EntryError(raw, absl::StrCat("link to ", Quote(target_raw)), errno);
  }
  return absl::OkStatus();
}

absl::Status LayerApplier::WriteFile(archive* a, absl::string_view raw,
                                     const RootDir::Parent& parent, archive_entry* entry) {
  UniqueFd fd(openat(parent.dir.get(), parent.name.c_str(),
                     O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) return EntryError(raw, "create", errno);
  while (true) {
    const void* block = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    const int result = archive_read_data_block(a, &block, &size, &offset);
    if (result == ARCHIVE_EOF) break;
    if (result < ARCHIVE_WARN) {
      return absl::DataLossError(
          absl::StrCat("layer entry ", Quote(raw), ": reading content: ", archive_error_string(a)));
    }
    const char* data = static_cast<const char*>(block);
    while (size > 0) {
      const ssize_t n = pwrite(fd.get(), data, size, offset);
      if (n < 0) {
        if (errno == EINTR) continue;
        return EntryError(raw, "write", errno);
      }
      data += n;
      size -= static_cast<size_t>(n);
      offset += n;
    }
  }
  // A sparse file's trailing hole has no block to write.
  const la_int64_t size = archive_entry_size(entry);
  if (ftruncate(fd.get(), size) != 0) return EntryError(raw, "truncate", errno);
  stats_.bytes += static_cast<uint64_t>(size);
  return absl::OkStatus();
}

absl::Status LayerApplier::SetMetadata(absl::string_view raw, const RootDir::Parent& parent,
                                       archive_entry* entry, bool is_symlink) {
  const int dir_fd = parent.dir.get();
  const char* name = parent.name.c_str();
  // Owner first: chown clears setuid/setgid and security.capability.
  if (options_.owner) {
    if (fchownat(dir_fd, name, options_.owner->first, options_.owner->second,
                 AT_SYMLINK_NOFOLLOW) != 0) {
      return EntryError(raw, "chown", errno);
    }
  } else if (options_.preserve_ownership &&
             fchownat(dir_fd, name, static_cast<uid_t>(archive_entry_uid(entry)),
                      static_cast<gid_t>(archive_entry_gid(entry)), AT_SYMLINK_NOFOLLOW) != 0) {
    return EntryError(raw, "chown", errno);
  }
  // Symlinks have no mode of their own on Linux.
  if (!is_symlink &&
      fchmodat(dir_fd, name, archive_entry_perm(entry) & 07777, AT_SYMLINK_NOFOLLOW) != 0) {
    return EntryError(raw, "chmod", errno);
  }
  if (archive_entry_xattr_reset(entry) > 0) {
    // There is no lsetxattrat(2) before Linux 6.13; the parent's descriptor
    // through /proc names the entry without resolving its path again, and
    // lsetxattr does not follow the entry if it is a symlink.
    const std::string path = absl::StrCat("/proc/self/fd/", dir_fd, "/", parent.name);
    const char* key = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    while (archive_entry_xattr_next(entry, &key, &value, &size) == ARCHIVE_OK) {
      if (lsetxattr(path.c_str(), key, value, size, 0) != 0) {
        return EntryError(raw, absl::StrCat("set xattr ", Quote(key)), errno);
      }
    }
  }
  if (archive_entry_filetype(entry) != AE_IFDIR && archive_entry_mtime_is_set(entry)) {
    timespec times[2];
    times[1] = {archive_entry_mtime(entry), archive_entry_mtime_nsec(entry)};
    times[0] = archive_entry_atime_is_set(entry)
                   ? timespec{archive_entry_atime(entry), archive_entry_atime_nsec(entry)}
                   : times[1];
    if (utimensat(dir_fd, name, times, AT_SYMLINK_NOFOLLOW) != 0) {
      return EntryError(raw, "set times", errno);
    }
  }
  return absl::OkStatus();
}

absl::Status LayerApplier::SetDirectoryTimes() {
  // Children were written after their parents, so the reverse order sets a
  // directory's times after every change below it.
  for (auto it = dir_times_.rbegin(); it != dir_times_.rend(); ++it) {
    absl::StatusOr<RootDir::Parent> parent = root_.OpenParent(it->path);
    if (absl::IsNotFound(parent.status())) continue;  // removed by a later whiteout
    if (!parent.ok()) return Annotate(it->raw, parent.status());
    if (utimensat(parent->dir.get(), parent->name.c_str(), it->times, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      return EntryError(it->raw, "set times", errno);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ApplyStats> ApplyLayer(const fs::RootDir& root, const LayerReader& read,
                                      const ApplyOptions& options) {
  LayerApplier applier(root, options);
  return applier.Run(read);
}

}  // namespace stagefarm::oci
