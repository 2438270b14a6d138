#include "common/oci/layer_diff.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/dockerfile/go_text.h"
#include "common/fs/root.h"

namespace stagefarm::oci {
namespace {

using dockerfile::go::Quote;
using fs::UniqueFd;

constexpr absl::string_view kWhiteoutPrefix = ".wh.";
constexpr absl::string_view kOpaqueMarker = ".wh..wh..opq";
constexpr absl::string_view kOpaqueXattr = "trusted.overlay.opaque";
constexpr size_t kBufferSize = 64 * 1024;
// The pieces the tar reaches its sinks in: 1 MiB, not libarchive's default
// 10 KiB record (fewer calls down to the store's chunker); the stream is the
// same, its end unpadded.
constexpr int kSinkBlock = 1 << 20;

struct ArchiveWriteFree {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct EntryFree {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};

absl::Status PathError(absl::string_view path, absl::string_view op, int error_number) {
  return absl::ErrnoToStatus(error_number,
                             absl::StrCat(Quote(path.empty() ? "/" : path), ": ", op));
}

std::string Join(absl::string_view dir, absl::string_view name) {
  return dir.empty() ? std::string(name) : absl::StrCat(dir, "/", name);
}

absl::StatusOr<UniqueFd> OpenDir(int dir_fd, const std::string& name, absl::string_view display) {
  UniqueFd fd(openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return PathError(display, "open", errno);
  return fd;
}

// Path of `name` in `dir_fd` for the l*xattr calls, which have no *at form
// (see SetMetadata in layer_unpack.cc).
std::string ProcPath(int dir_fd, absl::string_view name) {
  return absl::StrCat("/proc/self/fd/", dir_fd, "/", name);
}

// The xattrs a layer carries, sorted by name: not overlayfs' own, not the
// SELinux label (the host's policy, not the image's).
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> LayerXattrs(
    int dir_fd, absl::string_view name, absl::string_view display) {
  const std::string path = ProcPath(dir_fd, name);
  std::vector<std::pair<std::string, std::string>> xattrs;
  ssize_t size = llistxattr(path.c_str(), nullptr, 0);
  if (size < 0) {
    if (errno == ENOTSUP) return xattrs;
    return PathError(display, "listxattr", errno);
  }
  std::string names(static_cast<size_t>(size), '\0');
  size = llistxattr(path.c_str(), names.data(), names.size());
  if (size < 0) return PathError(display, "listxattr", errno);
  names.resize(static_cast<size_t>(size));
  for (size_t start = 0; start < names.size();) {
    const std::string key(names.c_str() + start);
    start += key.size() + 1;
    if (absl::StartsWith(key, "trusted.overlay.") || key == "security.selinux") continue;
    ssize_t value_size = lgetxattr(path.c_str(), key.c_str(), nullptr, 0);
    if (value_size < 0) return PathError(display, absl::StrCat("getxattr ", key), errno);
    std::string value(static_cast<size_t>(value_size), '\0');
    value_size = lgetxattr(path.c_str(), key.c_str(), value.data(), value.size());
    if (value_size < 0) return PathError(display, absl::StrCat("getxattr ", key), errno);
    value.resize(static_cast<size_t>(value_size));
    xattrs.emplace_back(key, std::move(value));
  }
  std::sort(xattrs.begin(), xattrs.end());
  return xattrs;
}

absl::StatusOr<bool> IsOpaque(int dir_fd, absl::string_view name, absl::string_view display) {
  char value[2];
  const ssize_t size =
      lgetxattr(ProcPath(dir_fd, name).c_str(), std::string(kOpaqueXattr).c_str(), value, 2);
  if (size < 0) {
    if (errno == ENODATA || errno == ENOTSUP) return false;
    return PathError(display, "getxattr trusted.overlay.opaque", errno);
  }
  return size == 1 && value[0] == 'y';
}

absl::StatusOr<std::string> ReadLink(int dir_fd, const std::string& name,
                                     absl::string_view display) {
  std::string target(PATH_MAX, '\0');
  const ssize_t size = readlinkat(dir_fd, name.c_str(), target.data(), target.size());
  if (size < 0) return PathError(display, "readlink", errno);
  target.resize(static_cast<size_t>(size));
  return target;
}

// One change found by a walk, written to the tar later (a directory's entry
// must precede its children, and the copy walk only knows whether to write a
// directory once it has walked it).
struct Change {
  enum Kind { kEntry, kWhiteout, kOpaque };
  Kind kind;
  std::string path;  // the entry; the name deleted; the opaque directory
};

// Compresses a stream into a sink, hashing what it produces.
class Compressor {
 public:
  Compressor(LayerCompression compression, const ByteSink& sink)
      : compression_(compression), sink_(sink), buffer_(kBufferSize, '\0') {}
  ~Compressor() {
    if (started_) deflateEnd(&zlib_);
    ZSTD_freeCCtx(zstd_);  // accepts nullptr
  }
  Compressor(const Compressor&) = delete;
  Compressor& operator=(const Compressor&) = delete;

  absl::Status Init() {
    if (compression_ == LayerCompression::kNone) return absl::OkStatus();
    if (compression_ == LayerCompression::kGzip) {
      // windowBits 15 + 16: a gzip wrapper with mtime 0 and no file name.
      if (deflateInit2(&zlib_, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
          Z_OK) {
        return absl::ResourceExhaustedError("gzip: deflateInit2 failed");
      }
      started_ = true;
      return absl::OkStatus();
    }
    zstd_ = ZSTD_createCCtx();
    if (zstd_ == nullptr) return absl::ResourceExhaustedError("zstd: ZSTD_createCCtx failed");
    return absl::OkStatus();
  }

  absl::Status Write(absl::string_view bytes) { return Run(bytes, false); }
  absl::Status Finish() { return Run({}, true); }

  uint64_t size() const { return size_; }
  digest::Digest TakeDigest() { return hash_.Finish(); }

 private:
  absl::Status Emit(size_t size) {
    const absl::string_view out(buffer_.data(), size);
    if (out.empty()) return absl::OkStatus();
    hash_.Update(out);
    size_ += size;
    return sink_(out);
  }

  absl::Status Run(absl::string_view in, bool finish) {
    if (compression_ == LayerCompression::kNone) {
      // The blob is the tar itself; its digest is the diff id, computed once
      // by the caller (TakeDigest is not used).
      if (in.empty()) return absl::OkStatus();
      size_ += in.size();
      return sink_(in);
    }
    if (compression_ == LayerCompression::kGzip) {
      zlib_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
      zlib_.avail_in = static_cast<uInt>(in.size());
      while (true) {
        zlib_.next_out = reinterpret_cast<Bytef*>(buffer_.data());
        zlib_.avail_out = static_cast<uInt>(buffer_.size());
        const int result = deflate(&zlib_, finish ? Z_FINISH : Z_NO_FLUSH);
        if (result == Z_STREAM_ERROR) return absl::InternalError("gzip: deflate failed");
        absl::Status emitted = Emit(buffer_.size() - zlib_.avail_out);
        if (!emitted.ok()) return emitted;
        if (finish ? result == Z_STREAM_END : (zlib_.avail_in == 0 && zlib_.avail_out != 0)) {
          return absl::OkStatus();
        }
      }
    }
    ZSTD_inBuffer input{in.data(), in.size(), 0};
    while (true) {
      ZSTD_outBuffer output{buffer_.data(), buffer_.size(), 0};
      const size_t remaining =
          ZSTD_compressStream2(zstd_, &output, &input, finish ? ZSTD_e_end : ZSTD_e_continue);
      if (ZSTD_isError(remaining)) {
        return absl::InternalError(absl::StrCat("zstd: ", ZSTD_getErrorName(remaining)));
      }
      absl::Status emitted = Emit(output.pos);
      if (!emitted.ok()) return emitted;
      if (finish ? remaining == 0 : input.pos == input.size) return absl::OkStatus();
    }
  }

  LayerCompression compression_;
  const ByteSink& sink_;
  std::string buffer_;
  z_stream zlib_{};
  bool started_ = false;
  ZSTD_CCtx* zstd_ = nullptr;
  digest::Sha256 hash_;
  uint64_t size_ = 0;
};

// Writes changes found under `root` as tar entries into both sinks.
class TarWriter {
 public:
  TarWriter(const ByteSink& tar_sink, const ByteSink& blob_sink, const DiffOptions& options)
      : tar_sink_(tar_sink), options_(options), compressor_(options.compression, blob_sink) {}
  // Freeing an archive left open by an error writes out what it buffers
  // through WriteCallback, which uses the members declared after archive_:
  // the archive goes first. (Last, it overwrote the destroyed status_ and
  // freed the error Write had returned: a worker crashed when a layer did
  // not fit in its store.)
  ~TarWriter() { archive_.reset(); }

  absl::StatusOr<LayerDigests> Write(const fs::RootDir& root, const std::vector<Change>& changes);

 private:
  static la_ssize_t WriteCallback(archive*, void* data, const void* buffer, size_t size) {
    auto* self = static_cast<TarWriter*>(data);
    if (!self->status_.ok()) return -1;  // a sink that failed is not written again
    const absl::string_view bytes(static_cast<const char*>(buffer), size);
    if (!self->sink_digests_tar()) self->tar_hash_.Update(bytes);
    self->tar_size_ += size;
    absl::Status status = self->tar_sink_(bytes);
    if (status.ok()) status = self->compressor_.Write(bytes);
    if (!status.ok()) {
      self->status_ = std::move(status);
      return -1;
    }
    return static_cast<la_ssize_t>(size);
  }

  // Whether the tar's digest comes from DiffOptions::tar_digest.
  bool sink_digests_tar() const {
    return options_.tar_digest && options_.compression == LayerCompression::kNone;
  }

  int64_t Clamp(time_t mtime) const {
    if (options_.source_date_epoch.has_value() && mtime > *options_.source_date_epoch) {
      return *options_.source_date_epoch;
    }
    return mtime;
  }

  absl::Status ArchiveError(absl::string_view what) {
    if (!status_.ok()) return status_;
    return absl::InternalError(
        absl::StrCat("layer tar: ", what, ": ", archive_error_string(archive_.get())));
  }

  absl::Status WriteEntry(const fs::RootDir& root, const std::string& path);
  // An empty marker file `name` in the directory `dir` (root-relative).
  absl::Status WriteMarker(const fs::RootDir& root, const std::string& dir, absl::string_view name);
  absl::Status WriteHeader(archive_entry* entry, absl::string_view path);

  const ByteSink& tar_sink_;
  const DiffOptions& options_;
  Compressor compressor_;
  std::unique_ptr<archive, ArchiveWriteFree> archive_;
  absl::Status status_;  // a sink's error, which libarchive would flatten
  digest::Sha256 tar_hash_;
  uint64_t tar_size_ = 0;
  uint64_t entries_ = 0;
  // First name written of each multiply-linked file, by device and inode.
  absl::flat_hash_map<std::pair<dev_t, ino_t>, std::string> first_names_;
  std::string buffer_;
};

absl::StatusOr<LayerDigests> TarWriter::Write(const fs::RootDir& root,
                                              const std::vector<Change>& changes) {
  absl::Status init = compressor_.Init();
  if (!init.ok()) return init;
  archive_.reset(archive_write_new());
  if (archive_ == nullptr) return absl::ResourceExhaustedError("archive_write_new failed");
  // Xattrs only as SCHILY.xattr records, the form Go's archive/tar (containerd,
  // BuildKit, Docker) reads and writes; libarchive would add LIBARCHIVE.xattr
  // copies of each, which those readers ignore and libarchive's reads twice.
  if (archive_write_set_format_pax_restricted(archive_.get()) != ARCHIVE_OK ||
      archive_write_set_format_option(archive_.get(), "pax", "xattrheader", "SCHILY") !=
          ARCHIVE_OK ||
      archive_write_set_bytes_per_block(archive_.get(), kSinkBlock) != ARCHIVE_OK ||
      archive_write_set_bytes_in_last_block(archive_.get(), 1) != ARCHIVE_OK ||
      archive_write_open(archive_.get(), this, nullptr, WriteCallback, nullptr) != ARCHIVE_OK) {
    return ArchiveError("open");
  }
  buffer_.resize(kBufferSize);
  for (const Change& change : changes) {
    absl::Status written;
    switch (change.kind) {
      case Change::kEntry:
        written = WriteEntry(root, change.path);
        break;
      case Change::kWhiteout: {
        const size_t slash = change.path.rfind('/');
        const std::string dir = slash == std::string::npos ? "" : change.path.substr(0, slash);
        const std::string name =
            slash == std::string::npos ? change.path : change.path.substr(slash + 1);
        written = WriteMarker(root, dir, absl::StrCat(kWhiteoutPrefix, name));
        break;
      }
      case Change::kOpaque:
        written = WriteMarker(root, change.path, kOpaqueMarker);
        break;
    }
    if (!written.ok()) return written;
  }
  if (archive_write_close(archive_.get()) != ARCHIVE_OK) return ArchiveError("close");
  absl::Status finished = compressor_.Finish();
  if (!finished.ok()) return finished;
  absl::StatusOr<digest::Digest> diff_id =
      sink_digests_tar() ? options_.tar_digest() : tar_hash_.Finish();
  if (!diff_id.ok()) return diff_id.status();
  const digest::Digest blob =
      options_.compression == LayerCompression::kNone ? *diff_id : compressor_.TakeDigest();
  return LayerDigests{entries_, *std::move(diff_id), tar_size_,
                      blob,     compressor_.size(),  options_.compression};
}

absl::Status TarWriter::WriteHeader(archive_entry* entry, absl::string_view path) {
  if (archive_write_header(archive_.get(), entry) < ARCHIVE_WARN) {
    return ArchiveError(absl::StrCat("header of ", Quote(path)));
  }
  ++entries_;
  return absl::OkStatus();
}

absl::Status TarWriter::WriteMarker(const fs::RootDir& root, const std::string& dir,
                                    absl::string_view name) {
  absl::StatusOr<struct stat> dir_stat = root.Lstat(dir);
  if (!dir_stat.ok()) return dir_stat.status();
  const std::string path = Join(dir, name);
  std::unique_ptr<archive_entry, EntryFree> entry(archive_entry_new());
  archive_entry_set_pathname(entry.get(), path.c_str());
  archive_entry_set_filetype(entry.get(), AE_IFREG);
  archive_entry_set_perm(entry.get(), 0);
  archive_entry_set_size(entry.get(), 0);
  archive_entry_set_mtime(entry.get(), Clamp(dir_stat->st_mtim.tv_sec), 0);
  return WriteHeader(entry.get(), path);
}

absl::Status TarWriter::WriteEntry(const fs::RootDir& root, const std::string& path) {
  absl::StatusOr<fs::RootDir::Parent> parent = root.OpenParent(path);
  if (!parent.ok()) return parent.status();
  const int dir_fd = parent->dir.get();
  const std::string& name = parent->name;
  struct stat st {};
  if (fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return PathError(path, "lstat", errno);
  }
  if (S_ISSOCK(st.st_mode)) return absl::OkStatus();
  std::unique_ptr<archive_entry, EntryFree> entry(archive_entry_new());
  const std::string entry_path = S_ISDIR(st.st_mode) ? absl::StrCat(path, "/") : path;
  archive_entry_set_pathname(entry.get(), entry_path.c_str());
  archive_entry_set_mode(entry.get(), st.st_mode);
  archive_entry_set_uid(entry.get(), st.st_uid);
  archive_entry_set_gid(entry.get(), st.st_gid);
  archive_entry_set_mtime(entry.get(), Clamp(st.st_mtim.tv_sec), 0);
  archive_entry_set_size(entry.get(), 0);
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    archive_entry_set_rdevmajor(entry.get(), major(st.st_rdev));
    archive_entry_set_rdevminor(entry.get(), minor(st.st_rdev));
  }
  if (S_ISLNK(st.st_mode)) {
    absl::StatusOr<std::string> target = ReadLink(dir_fd, name, path);
    if (!target.ok()) return target.status();
    archive_entry_set_symlink(entry.get(), target->c_str());
  }
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> xattrs =
      LayerXattrs(dir_fd, name, path);
  if (!xattrs.ok()) return xattrs.status();
  for (const auto& [key, value] : *xattrs) {
    archive_entry_xattr_add_entry(entry.get(), key.c_str(), value.data(), value.size());
  }
  bool content = S_ISREG(st.st_mode);
  if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
    auto [it, first] = first_names_.try_emplace(std::make_pair(st.st_dev, st.st_ino), path);
    if (!first) {
      archive_entry_set_hardlink(entry.get(), it->second.c_str());
      content = false;
    }
  }
  UniqueFd file;
  if (content) {
    file = UniqueFd(openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!file.valid()) return PathError(path, "open", errno);
    archive_entry_set_size(entry.get(), st.st_size);
  }
  absl::Status header = WriteHeader(entry.get(), path);
  if (!header.ok() || !content) return header;
  off_t left = st.st_size;
  while (left > 0) {
    const ssize_t n = read(file.get(), buffer_.data(),
                           std::min<size_t>(buffer_.size(), static_cast<size_t>(left)));
    if (n < 0) {
      if (errno == EINTR) continue;
      return PathError(path, "read", errno);
    }
    if (n == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(Quote(path), ": file shrank while the layer was written"));
    }
    if (archive_write_data(archive_.get(), buffer_.data(), static_cast<size_t>(n)) < 0) {
      return ArchiveError(absl::StrCat("content of ", Quote(path)));
    }
    left -= n;
  }
  return absl::OkStatus();
}

absl::Status CollectUpper(int dir_fd, const std::string& dir, const LowerExists& lower_exists,
                          std::vector<Change>* changes) {
  absl::StatusOr<std::vector<std::string>> names = fs::ListDirectory(dir_fd, dir);
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) {
    const std::string path = Join(dir, name);
    struct stat st {};
    if (fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return PathError(path, "lstat", errno);
    }
    if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
      absl::StatusOr<bool> below = lower_exists(path);
      if (!below.ok()) return below.status();
      if (*below) changes->push_back({Change::kWhiteout, path});
      continue;
    }
    // A redirected directory or a metadata-only copy-up holds less than the
    // change: the layer would silently lose the rest.
    const char* partial = S_ISDIR(st.st_mode)   ? "trusted.overlay.redirect"
                          : S_ISREG(st.st_mode) ? "trusted.overlay.metacopy"
                                                : nullptr;
    if (partial != nullptr && lgetxattr(ProcPath(dir_fd, name).c_str(), partial, nullptr, 0) >= 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(Quote(path), ": has ", partial,
                       "; mount the overlay with redirect_dir=off,metacopy=off"));
    }
    changes->push_back({Change::kEntry, path});
    if (!S_ISDIR(st.st_mode)) continue;
    absl::StatusOr<bool> opaque = IsOpaque(dir_fd, name, path);
    if (!opaque.ok()) return opaque.status();
    if (*opaque) changes->push_back({Change::kOpaque, path});
    absl::StatusOr<UniqueFd> sub = OpenDir(dir_fd, name, path);
    if (!sub.ok()) return sub.status();
    absl::Status walked = CollectUpper(sub->get(), path, lower_exists, changes);
    if (!walked.ok()) return walked;
  }
  return absl::OkStatus();
}

// Whether two regular files of the same size hold the same bytes.
absl::StatusOr<bool> SameContent(int lower_dir, int copy_dir, const std::string& name,
                                 absl::string_view path) {
  UniqueFd a(openat(lower_dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!a.valid()) return PathError(path, "open in the lower tree", errno);
  UniqueFd b(openat(copy_dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!b.valid()) return PathError(path, "open", errno);
  std::string buffer_a(kBufferSize, '\0');
  std::string buffer_b(kBufferSize, '\0');
  while (true) {
    const ssize_t n = read(a.get(), buffer_a.data(), buffer_a.size());
    if (n < 0) return PathError(path, "read in the lower tree", errno);
    size_t got = 0;
    while (got < static_cast<size_t>(n)) {
      const ssize_t m = read(b.get(), buffer_b.data() + got, static_cast<size_t>(n) - got);
      if (m < 0) return PathError(path, "read", errno);
      if (m == 0) return false;
      got += static_cast<size_t>(m);
    }
    if (std::memcmp(buffer_a.data(), buffer_b.data(), got) != 0) return false;
    if (n == 0) {
      const ssize_t m = read(b.get(), buffer_b.data(), 1);
      if (m < 0) return PathError(path, "read", errno);
      return m == 0;
    }
  }
}

// Whether `name` is the same in both directories: metadata, then xattrs,
// symlink target or content. The directory's children are not looked at.
absl::StatusOr<bool> SameEntry(int lower_dir, const struct stat& a, int copy_dir,
                               const struct stat& b, const std::string& name,
                               absl::string_view path) {
  if (a.st_mode != b.st_mode || a.st_uid != b.st_uid || a.st_gid != b.st_gid ||
      a.st_mtim.tv_sec != b.st_mtim.tv_sec || a.st_mtim.tv_nsec != b.st_mtim.tv_nsec ||
      (!S_ISDIR(a.st_mode) && (a.st_size != b.st_size || a.st_nlink != b.st_nlink)) ||
      ((S_ISCHR(a.st_mode) || S_ISBLK(a.st_mode)) && a.st_rdev != b.st_rdev)) {
    return false;
  }
  auto xattrs_a = LayerXattrs(lower_dir, name, path);
  if (!xattrs_a.ok()) return xattrs_a.status();
  auto xattrs_b = LayerXattrs(copy_dir, name, path);
  if (!xattrs_b.ok()) return xattrs_b.status();
  if (*xattrs_a != *xattrs_b) return false;
  if (S_ISLNK(a.st_mode)) {
    absl::StatusOr<std::string> target_a = ReadLink(lower_dir, name, path);
    if (!target_a.ok()) return target_a.status();
    absl::StatusOr<std::string> target_b = ReadLink(copy_dir, name, path);
    if (!target_b.ok()) return target_b.status();
    return *target_a == *target_b;
  }
  if (S_ISREG(a.st_mode)) return SameContent(lower_dir, copy_dir, name, path);
  return true;
}

// Appends the changes from `lower_dir` (-1: nothing below) to `copy_dir`.
absl::Status CollectCopy(int lower_dir, int copy_dir, const std::string& dir,
                         std::vector<Change>* changes) {
  absl::StatusOr<std::vector<std::string>> listed = fs::ListDirectory(copy_dir, dir);
  if (!listed.ok()) return listed.status();
  const std::vector<std::string>& copy_names = *listed;
  std::vector<std::string> lower_names;
  if (lower_dir >= 0) {
    absl::StatusOr<std::vector<std::string>> names = fs::ListDirectory(lower_dir, dir);
    if (!names.ok()) return names.status();
    lower_names = *std::move(names);
  }
  size_t i = 0;
  size_t j = 0;
  while (i < lower_names.size() || j < copy_names.size()) {
    if (j == copy_names.size() || (i < lower_names.size() && lower_names[i] < copy_names[j])) {
      changes->push_back({Change::kWhiteout, Join(dir, lower_names[i++])});
      continue;
    }
    const std::string& name = copy_names[j++];
    const bool in_lower = i < lower_names.size() && lower_names[i] == name;
    if (in_lower) ++i;
    const std::string path = Join(dir, name);
    struct stat b {};
    if (fstatat(copy_dir, name.c_str(), &b, AT_SYMLINK_NOFOLLOW) != 0) {
      return PathError(path, "lstat", errno);
    }
    struct stat a {};
    if (in_lower && fstatat(lower_dir, name.c_str(), &a, AT_SYMLINK_NOFOLLOW) != 0) {
      return PathError(path, "lstat in the lower tree", errno);
    }
    bool same = false;
    if (in_lower) {
      absl::StatusOr<bool> compared = SameEntry(lower_dir, a, copy_dir, b, name, path);
      if (!compared.ok()) return compared.status();
      same = *compared;
    }
    if (!S_ISDIR(b.st_mode)) {
      if (!same) changes->push_back({Change::kEntry, path});
      continue;
    }
    // The directory's entry goes before its children, if either changed.
    const size_t at = changes->size();
    changes->push_back({Change::kEntry, path});
    UniqueFd lower_sub;
    if (in_lower && S_ISDIR(a.st_mode)) {
      absl::StatusOr<UniqueFd> opened = OpenDir(lower_dir, name, path);
      if (!opened.ok()) return opened.status();
      lower_sub = *std::move(opened);
    }
    absl::StatusOr<UniqueFd> copy_sub = OpenDir(copy_dir, name, path);
    if (!copy_sub.ok()) return copy_sub.status();
    absl::Status walked =
        CollectCopy(lower_sub.valid() ? lower_sub.get() : -1, copy_sub->get(), path, changes);
    if (!walked.ok()) return walked;
    if (same && changes->size() == at + 1) changes->pop_back();
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<bool> UpperIsEmpty(const std::filesystem::path& upper_dir) {
  UniqueFd fd(open(upper_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return PathError(upper_dir.native(), "open", errno);
  absl::StatusOr<std::vector<std::string>> names = fs::ListDirectory(fd.get(), upper_dir.native());
  if (!names.ok()) return names.status();
  return names->empty();
}

absl::StatusOr<LayerDigests> WriteLayerFromUpper(const std::filesystem::path& upper_dir,
                                                 const LowerExists& lower_exists,
                                                 const ByteSink& tar_sink,
                                                 const ByteSink& blob_sink,
                                                 const DiffOptions& options) {
  absl::StatusOr<fs::RootDir> root = fs::RootDir::Open(upper_dir);
  if (!root.ok()) return root.status();
  absl::StatusOr<UniqueFd> top = OpenDir(AT_FDCWD, upper_dir.native(), upper_dir.native());
  if (!top.ok()) return top.status();
  std::vector<Change> changes;
  absl::Status walked = CollectUpper(top->get(), "", lower_exists, &changes);
  if (!walked.ok()) return walked;
  TarWriter writer(tar_sink, blob_sink, options);
  return writer.Write(*root, changes);
}

namespace {

// The changes from `lower_dir` to `copy_dir`, as CollectCopy finds them.
absl::StatusOr<std::vector<Change>> CopyChanges(const std::filesystem::path& lower_dir,
                                                const std::filesystem::path& copy_dir) {
  absl::StatusOr<UniqueFd> lower = OpenDir(AT_FDCWD, lower_dir.native(), lower_dir.native());
  if (!lower.ok()) return lower.status();
  absl::StatusOr<UniqueFd> copy = OpenDir(AT_FDCWD, copy_dir.native(), copy_dir.native());
  if (!copy.ok()) return copy.status();
  std::vector<Change> changes;
  absl::Status walked = CollectCopy(lower->get(), copy->get(), "", &changes);
  if (!walked.ok()) return walked;
  return changes;
}

}  // namespace

absl::StatusOr<bool> CopyUnchanged(const std::filesystem::path& lower_dir,
                                   const std::filesystem::path& copy_dir) {
  absl::StatusOr<std::vector<Change>> changes = CopyChanges(lower_dir, copy_dir);
  if (!changes.ok()) return changes.status();
  return changes->empty();
}

absl::StatusOr<LayerDigests> WriteLayerFromCopy(const std::filesystem::path& lower_dir,
                                                const std::filesystem::path& copy_dir,
                                                const ByteSink& tar_sink, const ByteSink& blob_sink,
                                                const DiffOptions& options) {
  absl::StatusOr<fs::RootDir> root = fs::RootDir::Open(copy_dir);
  if (!root.ok()) return root.status();
  absl::StatusOr<std::vector<Change>> changes = CopyChanges(lower_dir, copy_dir);
  if (!changes.ok()) return changes.status();
  TarWriter writer(tar_sink, blob_sink, options);
  return writer.Write(*root, *changes);
}

}  // namespace stagefarm::oci
