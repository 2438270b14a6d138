#include "common/oci/image_layout.h"

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
#include "absl/strings/str_format.h"
#include "common/fs/root.h"

namespace stagefarm::oci {
namespace {

namespace stdfs = std::filesystem;

constexpr size_t kTarBlock = 512;
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

namespace {

// A ustar header block (POSIX.1-1988) for `name` (under 100 bytes), uid and
// gid 0 without names, mtime 0. A size of 8 GiB or more, which ustar's 11
// octal digits cannot hold, is written in base-256 (a leading 0x80 byte),
// as GNU tar, libarchive and Go's archive/tar read it.
absl::StatusOr<std::string> UstarHeader(absl::string_view name, char type, unsigned mode,
                                        uint64_t size) {
  if (name.size() >= 100) {
    return absl::InvalidArgumentError(
        absl::StrCat("tar entry name \"", name, "\" does not fit a ustar header"));
  }
  std::string header(kTarBlock, '\0');
  name.copy(header.data(), name.size());
  auto octal = [&](size_t offset, size_t width, uint64_t value) {
    const std::string digits = absl::StrFormat("%0*o", static_cast<int>(width - 1), value);
    digits.copy(header.data() + offset, width - 1);
  };
  octal(100, 8, mode);
  octal(108, 8, 0);  // uid
  octal(116, 8, 0);  // gid
  if (size < (uint64_t{1} << 33)) {
    octal(124, 12, size);
  } else {
    header[124] = static_cast<char>(0x80);
    for (int i = 0; i < 8; ++i) header[135 - i] = static_cast<char>((size >> (8 * i)) & 0xff);
  }
  octal(136, 12, 0);  // mtime
  header[156] = type;
  absl::string_view(
      "ustar\0"
      "00",
      8)
      .copy(header.data() + 257, 8);
  std::fill(header.begin() + 148, header.begin() + 156, ' ');
  unsigned sum = 0;
  for (char c : header) sum += static_cast<unsigned char>(c);
  const std::string checksum = absl::StrFormat("%06o", sum);
  checksum.copy(header.data() + 148, 6);
  header[154] = '\0';  // then the space left by the fill: "dddddd\0 "
  return header;
}

}  // namespace

struct ImageTarWriter::Pending {
  uint64_t header_offset = 0;
  uint64_t size = 0;
  std::optional<Descriptor> known;
};

ImageTarWriter::ImageTarWriter(int fd, stdfs::path path) : fd_(fd), path_(std::move(path)) {
  buffer_.reserve(kWriteBlock);
}

ImageTarWriter::~ImageTarWriter() {
  if (fd_ >= 0) ::close(fd_);
}

absl::StatusOr<std::unique_ptr<ImageTarWriter>> ImageTarWriter::Open(const stdfs::path& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot write ", path.string()));
  std::unique_ptr<ImageTarWriter> tar(new ImageTarWriter(fd, path));
  if (absl::Status status = tar->Entry("blobs/", '5', 0755, ""); !status.ok()) return status;
  if (absl::Status status = tar->Entry("blobs/sha256/", '5', 0755, ""); !status.ok()) return status;
  return tar;
}

absl::Status ImageTarWriter::Append(absl::string_view bytes) {
  offset_ += bytes.size();
  while (!bytes.empty()) {
    const size_t take = std::min(bytes.size(), kWriteBlock - buffer_.size());
    buffer_.append(bytes.data(), take);
    bytes.remove_prefix(take);
    if (buffer_.size() == kWriteBlock) {
      if (absl::Status status = Flush(); !status.ok()) return status;
    }
  }
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, absl::string_view bytes, const stdfs::path& path) {
  if (const int error = fs::WriteFully(fd, bytes); error != 0) {
    return absl::ErrnoToStatus(error, absl::StrCat("writing ", path.string()));
  }
  return absl::OkStatus();
}

absl::Status ImageTarWriter::Flush() {
  if (absl::Status status = WriteAll(fd_, buffer_, path_); !status.ok()) return status;
  flushed_ += buffer_.size();
  buffer_.clear();
  return absl::OkStatus();
}

absl::Status ImageTarWriter::Pad() {
  const uint64_t rest = offset_ % kTarBlock;
  if (rest == 0) return absl::OkStatus();
  return Append(std::string(kTarBlock - rest, '\0'));
}

absl::Status ImageTarWriter::Entry(absl::string_view name, char type, unsigned mode,
                                   absl::string_view bytes) {
  absl::StatusOr<std::string> header = UstarHeader(name, type, mode, bytes.size());
  if (!header.ok()) return header.status();
  if (absl::Status status = Append(*header); !status.ok()) return status;
  if (absl::Status status = Append(bytes); !status.ok()) return status;
  return Pad();
}

bool ImageTarWriter::Has(const digest::Digest& blob) const {
  return written_.count(BlobPath(blob)) > 0;
}

absl::Status ImageTarWriter::BeginBlob(const std::optional<Descriptor>& known) {
  if (pending_) return absl::FailedPreconditionError("a tar blob begun inside another");
  pending_ = std::make_unique<Pending>();
  pending_->header_offset = offset_;
  pending_->known = known;
  // The header of a blob known beforehand goes out now; otherwise a block is
  // kept for it and filled in by EndBlob.
  if (!known) return Append(std::string(kTarBlock, '\0'));
  absl::StatusOr<std::string> header = UstarHeader(BlobPath(known->digest), '0', 0644, known->size);
  if (!header.ok()) return header.status();
  return Append(*header);
}

absl::Status ImageTarWriter::WriteBlob(absl::string_view bytes) {
  if (!pending_) return absl::FailedPreconditionError("tar blob data outside a blob");
  pending_->size += bytes.size();
  return Append(bytes);
}

absl::Status ImageTarWriter::EndBlob(const Descriptor& blob) {
  if (!pending_) return absl::FailedPreconditionError("a tar blob ended that was not begun");
  const std::unique_ptr<Pending> pending = std::move(pending_);
  if (pending->size != blob.size || (pending->known && pending->known->digest != blob.digest)) {
    return absl::InternalError(absl::StrCat("tar blob ", blob.digest.ToString(), ": ",
                                            pending->size, " bytes written, ", blob.size,
                                            " described"));
  }
  if (absl::Status status = Pad(); !status.ok()) return status;
  written_.insert(BlobPath(blob.digest));
  if (pending->known) return absl::OkStatus();
  absl::StatusOr<std::string> header = UstarHeader(BlobPath(blob.digest), '0', 0644, blob.size);
  if (!header.ok()) return header.status();
  // The kept block: what of it was written already is rewritten in the file,
  // the rest is still in the buffer.
  const uint64_t in_file = std::min<uint64_t>(
      flushed_ > pending->header_offset ? flushed_ - pending->header_offset : 0, kTarBlock);
  if (in_file > 0 &&
      ::pwrite(fd_, header->data(), in_file, static_cast<off_t>(pending->header_offset)) !=
          static_cast<ssize_t>(in_file)) {
    return absl::ErrnoToStatus(errno, absl::StrCat("writing ", path_.string()));
  }
  if (in_file < kTarBlock) {
    header->copy(buffer_.data() + (pending->header_offset + in_file - flushed_),
                 kTarBlock - in_file, in_file);
  }
  return absl::OkStatus();
}

absl::Status ImageTarWriter::CopyBlob(cas::BlobStore& store, const Descriptor& blob,
                                      const BlobFiles& blob_files) {
  if (absl::Status status = BeginBlob(blob); !status.ok()) return status;
  absl::Status status = CopyBlobFrom(store, blob_files, blob,
                                     [&](absl::string_view bytes) { return WriteBlob(bytes); });
  if (!status.ok()) return status;
  return EndBlob(blob);
}

absl::Status ImageTarWriter::Finish(cas::BlobStore& store, absl::Span<const LayoutImage> images,
                                    bool docker_archive, const BlobFiles& blob_files) {
  if (pending_) return absl::FailedPreconditionError("a tar blob was not ended");
  LayoutFiles files = CollectLayout(images);
  // The blobs not written yet (configs, manifests), by name.
  for (const auto& [name, blob] : files.blobs) {
    if (written_.count(name) > 0) continue;
    if (absl::Status status = CopyBlob(store, blob, blob_files); !status.ok()) return status;
  }
  if (absl::Status status = Entry("index.json", '0', 0644, files.index); !status.ok()) {
    return status;
  }
  if (docker_archive) {
    if (absl::Status status = Entry("manifest.json", '0', 0644, DockerManifest(images));
        !status.ok()) {
      return status;
    }
  }
  if (absl::Status status = Entry("oci-layout", '0', 0644, kOciLayout); !status.ok()) {
    return status;
  }
  // The end of the archive: two zero blocks, no padding after them.
  if (absl::Status status = Append(std::string(2 * kTarBlock, '\0')); !status.ok()) return status;
  if (absl::Status status = Flush(); !status.ok()) return status;
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("closing ", path_.string()));
  return absl::OkStatus();
}

absl::Status WriteImageTar(cas::BlobStore& store, absl::Span<const LayoutImage> images,
                           const stdfs::path& path, bool docker_archive,
                           const BlobFiles& blob_files) {
  absl::StatusOr<std::unique_ptr<ImageTarWriter>> tar = ImageTarWriter::Open(path);
  if (!tar.ok()) return tar.status();
  for (const LayoutImage& image : images) {
    for (const Descriptor& layer : image.layers) {
      if ((*tar)->Has(layer.digest)) continue;
      if (absl::Status status = (*tar)->CopyBlob(store, layer, blob_files); !status.ok()) {
        return status;
      }
    }
  }
  return (*tar)->Finish(store, images, docker_archive, blob_files);
}

}  // namespace stagefarm::oci
