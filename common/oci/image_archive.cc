#include "common/oci/image_archive.h"

#include <archive.h>
#include <archive_entry.h>

#include <fstream>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/dockerfile/dockerignore.h"
#include "common/status/prefixed.h"

namespace stagefarm::oci {
namespace {

namespace stdfs = std::filesystem;

}  // namespace

void TarReaderDeleter::operator()(archive* a) const { archive_read_free(a); }

absl::StatusOr<TarReader> OpenTarReader(const stdfs::path& file) {
  TarReader a(archive_read_new());
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  if (archive_read_open_filename(a.get(), file.c_str(), 64 * 1024) != ARCHIVE_OK) {
    return absl::InvalidArgumentError(
        absl::StrCat(file.string(), ": not a readable tar: ", archive_error_string(a.get())));
  }
  return a;
}

absl::StatusOr<std::string> CleanEntryName(absl::string_view raw) {
  if (absl::StartsWith(raw, "/")) {
    return absl::InvalidArgumentError(absl::StrCat("\"", raw, "\" is an absolute path"));
  }
  std::string name = dockerfile::CleanPath(raw);
  if (name == ".." || absl::StartsWith(name, "../")) {
    return absl::InvalidArgumentError(absl::StrCat("\"", raw, "\" is outside the archive"));
  }
  return name;
}

absl::StatusOr<ImageArchive> ImageArchive::Open(const stdfs::path& file) {
  ImageArchive files;
  files.file_ = file;
  std::error_code ec;
  files.directory_ = stdfs::is_directory(file, ec);
  if (files.directory_) return files;
  if (!stdfs::exists(file, ec)) {
    return absl::NotFoundError(absl::StrCat(file.string(), ": no such file"));
  }
  absl::StatusOr<TarReader> a = OpenTarReader(file);
  if (!a.ok()) return a.status();
  archive_entry* entry;
  while (true) {
    const int result = archive_read_next_header(a->get(), &entry);
    if (result == ARCHIVE_EOF) break;
    if (result != ARCHIVE_OK && result != ARCHIVE_WARN) {
      return absl::InvalidArgumentError(
          absl::StrCat(file.string(), ": not a readable tar: ", archive_error_string(a->get())));
    }
    const char* raw = archive_entry_pathname(entry);
    const std::string raw_name = raw != nullptr ? raw : "";
    const std::string where = absl::StrCat(file.string(), ": entry \"", raw_name, "\"");
    absl::StatusOr<std::string> name = CleanEntryName(raw_name);
    if (!name.ok()) return Prefixed(where, name.status());
    if (archive_entry_hardlink(entry) != nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": is a hard link; an image archive holds only files"));
    }
    const auto type = archive_entry_filetype(entry);
    if (type == AE_IFDIR) continue;
    if (type != AE_IFREG && type != AE_IFLNK) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": is not a regular file; an image archive holds only files"));
    }
    if (files.sizes_.contains(*name) || files.links_.contains(*name)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": duplicate entry"));
    }
    if (type == AE_IFLNK) {
      const char* target = archive_entry_symlink(entry);
      files.links_.emplace(*name, target != nullptr ? target : "");
    } else {
      files.sizes_.emplace(*name, archive_entry_size(entry));
    }
  }
  // Docker's legacy format links a layer saved twice to the first copy
  // ("<id>/layer.tar" -> "../<id0>/layer.tar"): a symlink is followed when it
  // leads to a file of the archive, and refused otherwise.
  for (const auto& [name, target] : files.links_) {
    absl::StatusOr<std::string> resolved = files.ResolveLink(name);
    if (!resolved.ok()) return resolved.status();
    files.aliases_.emplace(name, *std::move(resolved));
  }
  return files;
}

absl::StatusOr<bool> ImageArchive::Has(const std::string& name) const {
  if (!directory_) return sizes_.contains(name) || aliases_.contains(name);
  stdfs::path path = file_;
  std::error_code ec;
  for (const stdfs::path& part : stdfs::path(name)) {
    path /= part;
    const stdfs::file_status status = stdfs::symlink_status(path, ec);
    if (stdfs::is_symlink(status)) {
      return absl::InvalidArgumentError(
          absl::StrCat(file_.string(), ": entry \"", name,
                       "\": is a symlink; an image layout holds only files"));
    }
    if (!stdfs::exists(status)) return false;
  }
  return stdfs::is_regular_file(path, ec);
}

absl::StatusOr<std::string> ImageArchive::Require(absl::string_view raw,
                                                  absl::string_view what) const {
  absl::StatusOr<std::string> name = CleanEntryName(raw);
  if (!name.ok()) return Prefixed(absl::StrCat(file_.string(), ": ", what), name.status());
  absl::StatusOr<bool> has = Has(*name);
  if (!has.ok()) return has.status();
  if (!*has) {
    return absl::InvalidArgumentError(
        absl::StrCat(file_.string(), ": ", what, ": no file \"", *name, "\" in the archive"));
  }
  if (auto alias = aliases_.find(*name); alias != aliases_.end()) return alias->second;
  return name;
}

absl::Status ImageArchive::Visit(
    const std::set<std::string>& names,
    absl::FunctionRef<absl::Status(const std::string&, PieceReader)> visit) const {
  if (directory_) {
    std::string buffer(256 * 1024, '\0');
    for (const std::string& name : names) {
      std::ifstream in(file_ / name, std::ios::binary);
      if (!in) return absl::NotFoundError(absl::StrCat(file_.string(), ": cannot read ", name));
      auto read = [&]() -> absl::StatusOr<absl::string_view> {
        in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
        if (in.bad()) {
          return absl::DataLossError(absl::StrCat(file_.string(), ": error reading ", name));
        }
        return absl::string_view(buffer.data(), static_cast<size_t>(in.gcount()));
      };
      if (absl::Status status = visit(name, read); !status.ok()) return status;
    }
    return absl::OkStatus();
  }
  absl::StatusOr<TarReader> a = OpenTarReader(file_);
  if (!a.ok()) return a.status();
  archive_entry* entry;
  size_t seen = 0;
  while (seen < names.size()) {
    const int result = archive_read_next_header(a->get(), &entry);
    if (result == ARCHIVE_EOF) break;
    if (result != ARCHIVE_OK && result != ARCHIVE_WARN) {
      return absl::DataLossError(
          absl::StrCat(file_.string(), ": ", archive_error_string(a->get())));
    }
    if (archive_entry_filetype(entry) != AE_IFREG) continue;
    absl::StatusOr<std::string> name = CleanEntryName(archive_entry_pathname(entry));
    if (!name.ok() || !names.contains(*name)) continue;
    ++seen;
    auto read = [&]() -> absl::StatusOr<absl::string_view> {
      const void* block;
      size_t size;
      la_int64_t offset;
      const int r = archive_read_data_block(a->get(), &block, &size, &offset);
      if (r == ARCHIVE_EOF) return absl::string_view();
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
        return absl::DataLossError(
            absl::StrCat(file_.string(), ": ", *name, ": ", archive_error_string(a->get())));
      }
      return absl::string_view(static_cast<const char*>(block), size);
    };
    if (absl::Status status = visit(*name, read); !status.ok()) return status;
  }
  if (seen < names.size()) {
    return absl::DataLossError(absl::StrCat(file_.string(), ": changed while it was read"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ImageArchive::ReadSmall(const std::string& name,
                                                    uint64_t max_bytes) const {
  auto alias = aliases_.find(name);
  const std::string& real = alias != aliases_.end() ? alias->second : name;
  std::string bytes;
  absl::Status status = Visit({real}, [&](const std::string&, PieceReader read) {
    while (true) {
      absl::StatusOr<absl::string_view> piece = read();
      if (!piece.ok()) return piece.status();
      if (piece->empty()) return absl::OkStatus();
      bytes.append(piece->data(), piece->size());
      if (bytes.size() > max_bytes) {
        return absl::InvalidArgumentError(
            absl::StrCat(file_.string(), ": ", real, ": over the limit of ", max_bytes, " bytes"));
      }
    }
  });
  if (!status.ok()) return status;
  return bytes;
}

absl::StatusOr<std::string> ImageArchive::ResolveLink(const std::string& name) const {
  const std::string where = absl::StrCat(file_.string(), ": entry \"", name,
                                         "\": is a symlink to \"", links_.at(name), "\"");
  std::string current = name;
  for (int hops = 0; hops < 8; ++hops) {
    auto link = links_.find(current);
    if (link == links_.end()) break;
    const std::string dir = stdfs::path(current).parent_path().string();
    const std::string joined =
        dockerfile::CleanPath(dir.empty() ? link->second : absl::StrCat(dir, "/", link->second));
    if (absl::StartsWith(link->second, "/") || joined == ".." || absl::StartsWith(joined, "../")) {
      return absl::InvalidArgumentError(absl::StrCat(where, ", outside the archive"));
    }
    current = joined;
  }
  if (!sizes_.contains(current)) {
    return absl::InvalidArgumentError(absl::StrCat(where, ", not to a file of the archive"));
  }
  return current;
}

}  // namespace stagefarm::oci
