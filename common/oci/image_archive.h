// The files of an image archive (a docker archive or an OCI image layout),
// as a tar (any compression libarchive reads) or a directory, for an import
// to read without unpacking it. Every name is hostile until checked: an entry
// that is absolute or climbs out with "..", a name twice, a device, a hard
// link, a symlink that does not lead to a file of the archive are refused
// when a tar is opened; in a directory, a symlink on the way to a file is
// refused when the file is looked up.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

struct archive;  // libarchive's reader, kept out of this header

namespace stagefarm::oci {

struct TarReaderDeleter {
  void operator()(archive* a) const;
};
using TarReader = std::unique_ptr<archive, TarReaderDeleter>;

// libarchive's reader of `file` as a tar, any compression. InvalidArgument
// "FILE: not a readable tar: <libarchive's reason>" when it is not one.
absl::StatusOr<TarReader> OpenTarReader(const std::filesystem::path& file);

// A name inside an archive, cleaned ("./a//b" is "a/b"). InvalidArgument
// quoting it for an absolute name or one that climbs out with "..".
absl::StatusOr<std::string> CleanEntryName(absl::string_view raw);

// The next piece of a file, valid until the next call; empty at the end.
using PieceReader = absl::FunctionRef<absl::StatusOr<absl::string_view>()>;

class ImageArchive {
 public:
  // Opens `file`, a directory or a tar. A tar is read through once: every
  // entry must be a regular file, a directory, or a symlink leading (through
  // at most 8 links, each relative to its directory) to a regular file of
  // the archive, as Docker's legacy format links a layer saved twice. Errors
  // name the file and the entry: "x.tar: entry \"../a\": ...".
  static absl::StatusOr<ImageArchive> Open(const std::filesystem::path& file);

  const std::filesystem::path& file() const { return file_; }

  // Whether the archive holds a regular file `name` (cleaned). InvalidArgument
  // for a symlink on the way to it in a directory.
  absl::StatusOr<bool> Has(const std::string& name) const;

  // `raw` cleaned and present, a symlink resolved to its file; otherwise
  // InvalidArgument naming the file, `what` (the field that named it) and
  // the name.
  absl::StatusOr<std::string> Require(absl::string_view raw, absl::string_view what) const;

  // Calls `visit` with each file of `names` (as Require returns them) and a
  // reader of its bytes: in archive order, one pass, for a tar. Stops at the
  // first error, `visit`'s or the archive's.
  absl::Status Visit(const std::set<std::string>& names,
                     absl::FunctionRef<absl::Status(const std::string&, PieceReader)> visit) const;

  // Reads the file `name` (cleaned, present; a symlink is followed) whole:
  // InvalidArgument if it is longer than `max_bytes`.
  absl::StatusOr<std::string> ReadSmall(const std::string& name, uint64_t max_bytes) const;

 private:
  // The regular file the symlink `name` leads to.
  absl::StatusOr<std::string> ResolveLink(const std::string& name) const;

  std::filesystem::path file_;
  bool directory_ = false;
  std::map<std::string, uint64_t> sizes_;       // a tar's regular files
  std::map<std::string, std::string> links_;    // a tar's symlinks: name -> target
  std::map<std::string, std::string> aliases_;  // symlink -> the regular file it leads to
};

}  // namespace stagefarm::oci
