// The content digests of a context's files, remembered between builds so that
// a walk of an unchanged tree stats its files instead of reading them again.
//
// A remembered digest is used only while everything that identifies the file
// and its last change is unchanged: device, inode, size, modification time
// and status-change time (the ctime also catches a write that set the old
// mtime back). These stamps decide only whether to re-read a file; digests,
// never stamps, go into an index and its cache keys.
//
// A file changed within a moment of the walk that hashed it may change again
// without its stamps moving (timestamps are as coarse as the kernel's tick),
// so such a file is not remembered: it is hashed again next time.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/digest/digest.h"

namespace stagefarm::fs {

struct FileStamp {
  uint64_t device = 0;
  uint64_t inode = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;

  static FileStamp Of(const struct stat& st);
  friend bool operator==(const FileStamp&, const FileStamp&) = default;
};

class HashCache {
 public:
  // The cache kept in `file` (normally one per context directory). A missing
  // file is an empty cache; so is one that does not parse (it is only a
  // cache: the walk then reads every file, and Save replaces it).
  static HashCache Load(std::filesystem::path file);

  // The digest remembered for `path` (relative to the context root) when its
  // stamp is still `stamp`.
  std::optional<digest::Digest> Find(absl::string_view path, const FileStamp& stamp);
  // Remembers that `path`, as stamped, has `content`, unless it changed too
  // recently to be trusted (see above).
  void Record(absl::string_view path, const FileStamp& stamp, const digest::Digest& content);

  // Writes the entries found or recorded since Load (files no longer seen
  // are forgotten), in the order they were asked for, to the file,
  // atomically (a temporary file renamed over it), creating its directory;
  // does nothing when that is what the file holds already (a walk of an
  // unchanged tree). Errors name the file.
  absl::Status Save() const;

  // Files remembered (loaded or recorded).
  size_t size() const { return entries_.size(); }

  // Files whose digest came from the cache, and files hashed, since Load.
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }

 private:
  struct Entry {
    absl::string_view path;
    FileStamp stamp;
    absl::string_view content;  // "sha256:<64 hex>", checked when loaded
    bool used = false;          // found or recorded since Load: kept by Save
  };

  // The entry for `path`, if any. The file lists entries in the order the
  // last walk asked for them, and a walk of the same tree asks in the same
  // order, so the entry after the last one found is tried first; a lookup by
  // path (the map, built on first need) is for a tree that changed.
  std::optional<uint32_t> Lookup(absl::string_view path);
  void MarkUsed(uint32_t index);

  // Text owned by the cache apart from the loaded file (what Record adds); a
  // deque, so what entries point at never moves.
  absl::string_view Own(std::string text);

  std::filesystem::path file_;
  absl::Time loaded_at_;
  // The loaded file, read whole into one buffer: entries point into it rather
  // than each owning copies (a re-scan of a large tree loads every entry, and
  // on this class of machine every freshly touched page costs a fault; the
  // buffer is heap, which allocator.h asks to be backed by huge pages).
  std::unique_ptr<char[]> text_;
  std::deque<std::string> owned_;
  std::vector<Entry> entries_;                                // the file's, then those Record added
  absl::flat_hash_map<absl::string_view, uint32_t> by_path_;  // empty until first needed
  size_t next_ = 0;             // the entry the next lookup tries first
  std::vector<uint32_t> used_;  // indices into entries_, in the order first used
  bool in_file_order_ = true;   // used_ is 0, 1, 2, ... so far
  bool recorded_ = false;       // Record added or replaced an entry
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
};

}  // namespace stagefarm::fs
