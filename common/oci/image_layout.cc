#include "common/oci/image_layout.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"

namespace stagefarm::oci {
namespace {

namespace stdfs = std::filesystem;

constexpr absl::string_view kOciLayout = R"({"imageLayoutVersion":"1.0.0"})";

void AppendDescriptor(std::string& out, const Descriptor& d) {
  out += "{\"mediaType\":";
  AppendGoJsonString(out, d.media_type);
  absl::StrAppend(&out, ",\"digest\":\"", d.digest.ToString(), "\",\"size\":", d.size);
  if (!d.annotations.empty()) {
    out += ",\"annotations\":{";
    bool first = true;
    for (const auto& [key, value] : d.annotations) {
      if (!first) out += ',';
      first = false;
      AppendGoJsonString(out, key);
      out += ':';
      AppendGoJsonString(out, value);
    }
    out += '}';
  }
  out += '}';
}

void AppendDescriptors(std::string& out, absl::Span<const Descriptor> descriptors) {
  out += '[';
  for (size_t i = 0; i < descriptors.size(); ++i) {
    if (i > 0) out += ',';
    AppendDescriptor(out, descriptors[i]);
  }
  out += ']';
}

std::string BlobPath(const digest::Digest& d) {
  return absl::StrCat("blobs/", digest::AlgorithmName(d.algorithm()), "/", d.hex());
}

std::string DockerManifest(absl::Span<const LayoutImage> images) {
  std::string out = "[";
  for (size_t i = 0; i < images.size(); ++i) {
    if (i > 0) out += ',';
    absl::StrAppend(&out, "{\"Config\":\"", BlobPath(images[i].config.digest), "\",\"RepoTags\":[");
    for (size_t t = 0; t < images[i].repo_tags.size(); ++t) {
      if (t > 0) out += ',';
      AppendGoJsonString(out, images[i].repo_tags[t]);
    }
    out += "],\"Layers\":[";
    for (size_t l = 0; l < images[i].layers.size(); ++l) {
      absl::StrAppend(&out, l > 0 ? "," : "", "\"", BlobPath(images[i].layers[l].digest), "\"");
    }
    out += "]}";
  }
  return out + "]";
}

// What a layout holds besides its blobs, and the blobs by path (sorted, unique).
struct LayoutFiles {
  std::string index;
  std::map<std::string, Descriptor> blobs;
};

LayoutFiles CollectLayout(absl::Span<const LayoutImage> images) {
  LayoutFiles files;
  std::vector<Descriptor> manifests;
  for (const LayoutImage& image : images) {
    manifests.push_back(image.manifest);
    files.blobs.emplace(BlobPath(image.manifest.digest), image.manifest);
    files.blobs.emplace(BlobPath(image.config.digest), image.config);
    for (const Descriptor& layer : image.layers) files.blobs.emplace(BlobPath(layer.digest), layer);
  }
  files.index = SerializeIndex(manifests);
  return files;
}

// Streams a stored blob to `sink`, checking that it has the descriptor's size.
template <typename Sink>
absl::Status CopyBlob(cas::BlobStore& store, const Descriptor& blob, Sink&& sink) {
  absl::StatusOr<std::unique_ptr<cas::BlobReader>> reader = store.Get(blob.digest);
  if (!reader.ok()) return reader.status();
  if ((*reader)->length() != blob.size) {
    return absl::FailedPreconditionError(absl::StrCat("blob ", blob.digest.ToString(), " has ",
                                                      (*reader)->length(),
                                                      " bytes, its descriptor says ", blob.size));
  }
  while (true) {
    absl::StatusOr<absl::string_view> piece = (*reader)->Next();
    if (!piece.ok()) return piece.status();
    if (piece->empty()) return absl::OkStatus();
    if (absl::Status status = sink(*piece); !status.ok()) return status;
  }
}

// Streams the blob from `files` when it is one of them, else from the store.
template <typename Sink>
absl::Status CopyBlobFrom(cas::BlobStore& store, const BlobFiles& files, const Descriptor& blob,
                          Sink&& sink) {
  std::optional<stdfs::path> path = files.Find(blob.digest);
  if (!path) return CopyBlob(store, blob, sink);
  const int fd = ::open(path->c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("opening ", path->string()));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("stat of ", path->string()));
  }
  if (static_cast<uint64_t>(info.st_size) != blob.size) {
    return absl::FailedPreconditionError(absl::StrCat(path->string(), " has ", info.st_size,
                                                      " bytes, its descriptor says ", blob.size));
  }
  std::string buffer(size_t{1} << 20, '\0');
  uint64_t left = blob.size;
  while (left > 0) {
    const ssize_t got = ::read(fd, buffer.data(), std::min<uint64_t>(buffer.size(), left));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return absl::ErrnoToStatus(errno, absl::StrCat("reading ", path->string()));
    if (got == 0) return absl::DataLossError(absl::StrCat(path->string(), " ended early"));
    if (absl::Status status = sink(absl::string_view(buffer.data(), static_cast<size_t>(got)));
        !status.ok()) {
      return status;
    }
    left -= static_cast<uint64_t>(got);
  }
  return absl::OkStatus();
}

absl::Status WriteFile(const stdfs::path& path, absl::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

struct ArchiveDeleter {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct EntryDeleter {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};

class TarWriter {
 public:
  static constexpr int kWriteBlock = 1 << 20;

  static absl::StatusOr<TarWriter> Open(const stdfs::path& path) {
    std::unique_ptr<archive, ArchiveDeleter> a(archive_write_new());
    // Blobs go out in writes of 1 MiB, not of the default 10 KiB record; the
    // archive ends unpadded after its end marker, as libarchive ends a
    // regular file by default (the same bytes as before).
    if (archive_write_set_format_pax_restricted(a.get()) != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(a.get(), kWriteBlock) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(a.get(), 1) != ARCHIVE_OK ||
        archive_write_open_filename(a.get(), path.c_str()) != ARCHIVE_OK) {
      return absl::InternalError(
          absl::StrCat("cannot write ", path.string(), ": ", archive_error_string(a.get())));
    }
    return TarWriter(std::move(a), path);
  }

  absl::Status Directory(const std::string& name) { return Header(name, AE_IFDIR, 0755, 0); }

  absl::Status File(const std::string& name, absl::string_view bytes) {
    if (absl::Status status = Header(name, AE_IFREG, 0644, bytes.size()); !status.ok()) {
      return status;
    }
    return Data(bytes);
  }

  absl::Status Data(absl::string_view bytes) {
    if (archive_write_data(archive_.get(), bytes.data(), bytes.size()) !=
        static_cast<la_ssize_t>(bytes.size())) {
      return Error();
    }
    return absl::OkStatus();
  }

  absl::Status Header(const std::string& name, unsigned type, unsigned mode, uint64_t size) {
    std::unique_ptr<archive_entry, EntryDeleter> entry(archive_entry_new());
    archive_entry_set_pathname(entry.get(), name.c_str());
    archive_entry_set_filetype(entry.get(), type);
    archive_entry_set_perm(entry.get(), mode);
    archive_entry_set_size(entry.get(), static_cast<la_int64_t>(size));
    archive_entry_set_mtime(entry.get(), 0, 0);
    archive_entry_set_uid(entry.get(), 0);
    archive_entry_set_gid(entry.get(), 0);
    if (archive_write_header(archive_.get(), entry.get()) != ARCHIVE_OK) return Error();
    return absl::OkStatus();
  }

  absl::Status Close() {
    if (archive_write_close(archive_.get()) != ARCHIVE_OK) return Error();
    return absl::OkStatus();
  }

 private:
  TarWriter(std::unique_ptr<archive, ArchiveDeleter> a, stdfs::path path)
      : archive_(std::move(a)), path_(std::move(path)) {}
  absl::Status Error() {
    return absl::InternalError(
        absl::StrCat("cannot write ", path_.string(), ": ", archive_error_string(archive_.get())));
  }

  std::unique_ptr<archive, ArchiveDeleter> archive_;
  stdfs::path path_;
};

}  // namespace

std::string SerializeManifest(const Descriptor& config, absl::Span<const Descriptor> layers) {
  std::string out = "{\"schemaVersion\":2,\"mediaType\":";
  AppendGoJsonString(out, kManifestMediaType);
  out += ",\"config\":";
  AppendDescriptor(out, config);
  out += ",\"layers\":";
  AppendDescriptors(out, layers);
  return out + "}";
}

std::string SerializeIndex(absl::Span<const Descriptor> manifests) {
  std::string out = "{\"schemaVersion\":2,\"mediaType\":";
  AppendGoJsonString(out, kIndexMediaType);
  out += ",\"manifests\":";
  AppendDescriptors(out, manifests);
  return out + "}";
}

absl::StatusOr<LayoutImage> StoreImage(cas::BlobStore& store, const ImageConfig& config,
                                       std::vector<Descriptor> layers, absl::string_view ref_name,
                                       std::vector<std::string> repo_tags) {
  std::string config_json = SerializeImageConfig(config);
  Descriptor config_descriptor{
      std::string(kImageConfigMediaType), digest::Sha256Of(config_json), config_json.size(), {}};
  std::string manifest_json = SerializeManifest(config_descriptor, layers);
  Descriptor manifest{
      std::string(kManifestMediaType), digest::Sha256Of(manifest_json), manifest_json.size(), {}};
  if (!ref_name.empty())
    manifest.annotations[std::string(kRefNameAnnotation)] = std::string(ref_name);
  if (absl::Status status = store.Put(config_json, config_descriptor.digest, kImageConfigMediaType);
      !status.ok()) {
    return status;
  }
  if (absl::Status status = store.Put(manifest_json, manifest.digest, kManifestMediaType);
      !status.ok()) {
    return status;
  }
  return LayoutImage{std::move(manifest), std::move(config_descriptor), std::move(layers),
                     std::move(repo_tags)};
}

std::optional<stdfs::path> BlobFiles::Find(const digest::Digest& blob) const {
  if (std::find(digests.begin(), digests.end(), blob) == digests.end()) return std::nullopt;
  return dir / blob.hex();
}

absl::Status WriteOciLayoutDir(cas::BlobStore& store, absl::Span<const LayoutImage> images,
                               const stdfs::path& dir, const BlobFiles& blob_files) {
  LayoutFiles files = CollectLayout(images);
  std::error_code ec;
  stdfs::create_directories(dir / "blobs" / "sha256", ec);
  if (ec)
    return absl::InternalError(absl::StrCat("cannot create ", dir.string(), ": ", ec.message()));
  if (absl::Status status = WriteFile(dir / "oci-layout", kOciLayout); !status.ok()) return status;
  for (const auto& [name, blob] : files.blobs) {
    stdfs::path path = dir / name;
    // A blob staged in this very directory is in place already.
    if (std::optional<stdfs::path> staged = blob_files.Find(blob.digest);
        staged && stdfs::equivalent(*staged, path, ec)) {
      continue;
    }
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    absl::Status status = CopyBlobFrom(store, blob_files, blob, [&](absl::string_view bytes) {
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      return out ? absl::OkStatus()
                 : absl::InternalError(absl::StrCat("cannot write ", path.string()));
    });
    out.close();
    if (!status.ok()) return status;
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  }
  return WriteFile(dir / "index.json", files.index);
}

absl::Status WriteImageTar(cas::BlobStore& store, absl::Span<const LayoutImage> images,
                           const stdfs::path& path, bool docker_archive,
                           const BlobFiles& blob_files) {
  LayoutFiles files = CollectLayout(images);
  absl::StatusOr<TarWriter> tar = TarWriter::Open(path);
  if (!tar.ok()) return tar.status();
  // Sorted names: "blobs/" < "blobs/sha256/" < its blobs < "index.json" <
  // "manifest.json" < "oci-layout".
  if (absl::Status status = tar->Directory("blobs/"); !status.ok()) return status;
  if (absl::Status status = tar->Directory("blobs/sha256/"); !status.ok()) return status;
  for (const auto& [name, blob] : files.blobs) {
    if (absl::Status status = tar->Header(name, AE_IFREG, 0644, blob.size); !status.ok()) {
      return status;
    }
    absl::Status status = CopyBlobFrom(store, blob_files, blob,
                                       [&](absl::string_view bytes) { return tar->Data(bytes); });
    if (!status.ok()) return status;
  }
  if (absl::Status status = tar->File("index.json", files.index); !status.ok()) return status;
  if (docker_archive) {
    if (absl::Status status = tar->File("manifest.json", DockerManifest(images)); !status.ok()) {
      return status;
    }
  }
  if (absl::Status status = tar->File("oci-layout", kOciLayout); !status.ok()) return status;
  return tar->Close();
}

}  // namespace stagefarm::oci
