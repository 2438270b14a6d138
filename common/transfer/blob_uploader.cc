#include "common/transfer/blob_uploader.h"

#include <capnp/message.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/cas/chunker.h"
#include "common/net/envelope_frame.h"

namespace stagefarm::transfer {
namespace {

using digest::Digest;

// Where the bytes of one blob come from: a file or a local store.
class BlobBytes {
 public:
  virtual ~BlobBytes() = default;
  virtual uint64_t size() const = 0;
  // Reads exactly `length` bytes at `offset` into `out`.
  virtual absl::Status Read(uint64_t offset, uint64_t length, std::string* out) const = 0;
  // The blob's chunk list, as the receiver's store cuts blobs; an error when
  // the bytes do not hash to the digest they were listed with.
  virtual absl::StatusOr<cas::BlobManifest> Manifest() const = 0;
};

// One blob to upload: what it is, how errors name it, where its bytes are.
struct Source {
  Digest digest;
  std::string media_type;
  std::string name;
  std::function<absl::StatusOr<std::unique_ptr<BlobBytes>>()> open;
};

absl::Status Changed(absl::string_view name, const Digest& listed, const Digest& actual) {
  return absl::FailedPreconditionError(
      absl::StrCat(name, " changed since it was hashed: it was listed as ", listed.ToString(),
                   " and now hashes to ", actual.ToString()));
}

// A file opened for reading, closed when it goes.
class File : public BlobBytes {
 public:
  // `digest` and `media_type` as the file was listed with.
  static absl::StatusOr<std::unique_ptr<BlobBytes>> Open(const std::filesystem::path& path,
                                                         const Digest& digest,
                                                         const std::string& media_type) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return absl::NotFoundError(absl::StrCat("cannot open ", path.string(), ": ",
                                              std::strerror(errno)));
    }
    struct stat info;
    if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
      ::close(fd);
      return absl::InvalidArgumentError(absl::StrCat(path.string(), " is not a regular file"));
    }
    return std::unique_ptr<BlobBytes>(
        new File(fd, static_cast<uint64_t>(info.st_size), path, digest, media_type));
  }
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File() override { ::close(fd_); }
  uint64_t size() const override { return size_; }

  // Reads exactly `length` bytes at `offset`; a short read means the file
  // shrank since it was hashed.
  absl::Status Read(uint64_t offset, uint64_t length, std::string* out) const override {
    out->resize(length);
    uint64_t done = 0;
    while (done < length) {
      ssize_t n = ::pread(fd_, out->data() + done, length - done, offset + done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        return absl::UnavailableError(absl::StrCat("cannot read ", path_.string(), ": ",
                                                   std::strerror(errno)));
      }
      if (n == 0) {
        return absl::FailedPreconditionError(
            absl::StrCat(path_.string(), " changed since it was hashed (shorter than ",
                         offset + length, " bytes)"));
      }
      done += static_cast<uint64_t>(n);
    }
    return absl::OkStatus();
  }

  // The chunk list, cut exactly as the store cuts blobs.
  absl::StatusOr<cas::BlobManifest> Manifest() const override {
    cas::BlobManifest manifest{
        .digest = digest_, .size = size_, .chunks = {}, .media_type = media_type_};
    cas::Chunker chunker;
    digest::Sha256 whole;
    digest::Sha256 chunk;
    uint64_t chunk_length = 0;
    std::string buffer;
    constexpr uint64_t kPiece = 4 << 20;
    for (uint64_t offset = 0; offset < size_; offset += kPiece) {
      if (absl::Status status = Read(offset, std::min(kPiece, size_ - offset), &buffer);
          !status.ok()) {
        return status;
      }
      whole.Update(buffer);
      absl::string_view piece = buffer;
      while (!piece.empty()) {
        std::optional<size_t> cut = chunker.Next(piece);
        const size_t take = cut.value_or(piece.size());
        chunk.Update(piece.substr(0, take));
        chunk_length += take;
        piece.remove_prefix(take);
        if (cut) {
          manifest.chunks.push_back({chunk.Finish(), chunk_length});
          chunk = digest::Sha256();
          chunk_length = 0;
        }
      }
    }
    if (chunk_length > 0) manifest.chunks.push_back({chunk.Finish(), chunk_length});
    if (Digest actual = whole.Finish(); actual != digest_) {
      return Changed(path_.string(), digest_, actual);
    }
    return manifest;
  }

 private:
  File(int fd, uint64_t size, std::filesystem::path path, Digest digest, std::string media_type)
      : fd_(fd),
        size_(size),
        path_(std::move(path)),
        digest_(std::move(digest)),
        media_type_(std::move(media_type)) {}
  int fd_;
  uint64_t size_;
  std::filesystem::path path_;
  Digest digest_;
  std::string media_type_;
};

// A blob of a local store. The store checks every chunk it reads.
class StoredBlob : public BlobBytes {
 public:
  StoredBlob(cas::BlobStore& store, const Digest& blob, uint64_t size)
      : store_(store), blob_(blob), size_(size) {}
  uint64_t size() const override { return size_; }

  absl::Status Read(uint64_t offset, uint64_t length, std::string* out) const override {
    out->clear();
    absl::StatusOr<std::unique_ptr<cas::BlobReader>> reader = store_.Get(blob_, offset, length);
    if (!reader.ok()) return reader.status();
    for (;;) {
      absl::StatusOr<absl::string_view> piece = (*reader)->Next();
      if (!piece.ok()) return piece.status();
      if (piece->empty()) break;
      out->append(piece->data(), piece->size());
    }
    if (out->size() != length) {
      return absl::DataLossError(absl::StrCat("blob ", blob_.ToString(), " gave ", out->size(),
                                              " bytes at ", offset, " where ", length,
                                              " were expected"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<cas::BlobManifest> Manifest() const override { return store_.Manifest(blob_); }

 private:
  cas::BlobStore& store_;
  Digest blob_;
  uint64_t size_;
};

class Upload {
 public:
  Upload(zmq::socket_t socket, const Peer& to, const UploadOptions& options)
      : socket_(std::move(socket)), to_(to), options_(options) {}

  absl::StatusOr<UploadReport> Run(absl::Span<const Source> items) {
    // Which blobs the receiver lacks, in batches.
    for (size_t start = 0; start < items.size(); start += kMaxDigestsPerRequest) {
      const size_t end = std::min(items.size(), start + kMaxDigestsPerRequest);
      std::vector<Digest> batch;
      for (size_t i = start; i < end; ++i) batch.push_back(items[i].digest);
      capnp::MallocMessageBuilder message;
      FillDigestList(batch, net::InitEnvelope(message, next_id_).initFindMissing());
      if (absl::Status status = Send(message, {}, nullptr); !status.ok()) return status;
    }
    if (absl::Status status = Drain(0); !status.ok()) return status;

    std::vector<const Source*> large;
    absl::flat_hash_set<Digest> queued;
    for (const Source& item : items) {
      if (!missing_.contains(item.digest) || !queued.insert(item.digest).second) continue;
      ++report_.blobs_missing;
      absl::StatusOr<std::unique_ptr<BlobBytes>> file = item.open();
      if (!file.ok()) return file.status();
      if ((*file)->size() > options_.single_message_bytes) {
        large.push_back(&item);
        continue;
      }
      std::string bytes;
      if (absl::Status status = (*file)->Read(0, (*file)->size(), &bytes); !status.ok()) {
        return status;
      }
      if (Digest actual = digest::Sha256Of(bytes); actual != item.digest) {
        return Changed(item.name, item.digest, actual);
      }
      capnp::MallocMessageBuilder message;
      schema::BlobPut::Builder put = net::InitEnvelope(message, next_id_).initPutBlob();
      put.setDigest(item.digest.ToString());
      put.setMediaType(item.media_type);
      report_.bytes_sent += bytes.size();
      std::vector<zmq::message_t> frames;
      frames.push_back(FrameFromString(std::move(bytes)));
      if (absl::Status status = Send(message, std::move(frames), &item); !status.ok()) {
        return status;
      }
    }
    if (absl::Status status = Drain(0); !status.ok()) return status;
    for (const Source* item : large) {
      if (absl::Status status = UploadLarge(*item); !status.ok()) return status;
    }
    return report_;
  }

 private:
  absl::Status UploadLarge(const Source& item) {
    absl::StatusOr<std::unique_ptr<BlobBytes>> file = item.open();
    if (!file.ok()) return file.status();
    absl::StatusOr<cas::BlobManifest> manifest = (*file)->Manifest();
    if (!manifest.ok()) return manifest.status();
    {
      capnp::MallocMessageBuilder message;
      FillManifest(*manifest, net::InitEnvelope(message, next_id_).initOfferBlob());
      wanted_.clear();
      if (absl::Status status = Send(message, {}, &item); !status.ok()) return status;
      if (absl::Status status = Drain(0); !status.ok()) return status;
    }
    std::vector<uint64_t> offsets;
    uint64_t offset = 0;
    for (const cas::ChunkRef& chunk : manifest->chunks) {
      offsets.push_back(offset);
      offset += chunk.length;
    }
    uint64_t sent = 0;
    for (uint32_t index : wanted_) {
      if (index >= manifest->chunks.size()) {
        return absl::InvalidArgumentError(absl::StrCat(
            to_.endpoint, " asked for chunk ", index, " of blob ", item.digest.ToString(),
            ", which has ", manifest->chunks.size(), " chunks"));
      }
      const cas::ChunkRef& chunk = manifest->chunks[index];
      std::string bytes;
      if (absl::Status status = (*file)->Read(offsets[index], chunk.length, &bytes); !status.ok()) {
        return status;
      }
      capnp::MallocMessageBuilder message;
      schema::ChunkAddress::Builder address = net::InitEnvelope(message, next_id_).initPutChunk();
      address.setBlob(item.digest.ToString());
      address.setIndex(index);
      address.setChunk(chunk.digest.ToString());
      sent += bytes.size();
      std::vector<zmq::message_t> frames;
      frames.push_back(FrameFromString(std::move(bytes)));
      if (absl::Status status = Send(message, std::move(frames), &item); !status.ok()) {
        return status;
      }
    }
    if (absl::Status status = Drain(0); !status.ok()) return status;
    report_.bytes_sent += sent;
    report_.bytes_skipped += manifest->size - sent;
    capnp::MallocMessageBuilder message;
    schema::BlobPut::Builder commit = net::InitEnvelope(message, next_id_).initCommitBlob();
    commit.setDigest(item.digest.ToString());
    commit.setMediaType(item.media_type);
    if (absl::Status status = Send(message, {}, &item); !status.ok()) return status;
    return Drain(0);
  }

  // Sends once fewer than messages_in_flight are outstanding.
  absl::Status Send(capnp::MessageBuilder& message, std::vector<zmq::message_t> frames,
                    const Source* item) {
    if (absl::Status status = Drain(options_.messages_in_flight - 1); !status.ok()) {
      return status;
    }
    if (absl::Status status = net::SendMessage(socket_, "", message, std::move(frames));
        !status.ok()) {
      return status;
    }
    outstanding_.emplace(next_id_++, item);
    return absl::OkStatus();
  }

  // Handles replies until at most `left` messages are outstanding.
  absl::Status Drain(size_t left) {
    while (outstanding_.size() > left) {
      absl::StatusOr<net::ReceivedMessage> reply =
          net::ReceiveMessage(socket_, options_.request_timeout);
      if (absl::IsDeadlineExceeded(reply.status())) {
        return absl::UnavailableError(
            absl::StrCat(to_.endpoint, " did not answer within ",
                         absl::FormatDuration(options_.request_timeout), " (", outstanding_.size(),
                         " messages outstanding)"));
      }
      if (!reply.ok()) return reply.status();
      if (absl::Status status = Handle(*reply); !status.ok()) return status;
    }
    return absl::OkStatus();
  }

  absl::Status Handle(net::ReceivedMessage& reply) {
    const schema::Envelope::Reader envelope = reply.envelope();
    auto it = outstanding_.find(envelope.getRequestId());
    if (it == outstanding_.end()) {
      return absl::InvalidArgumentError(absl::StrCat(to_.endpoint, " answered request ",
                                                     envelope.getRequestId(),
                                                     ", which was not sent"));
    }
    const Source* item = it->second;
    outstanding_.erase(it);
    auto about = [&](absl::string_view what) {
      return item == nullptr ? std::string(what)
                             : absl::StrCat("uploading ", item->name, " (", item->digest.ToString(),
                                            "): ", what);
    };
    switch (envelope.which()) {
      case schema::Envelope::ERROR: {
        absl::Status error = net::StatusFromError(envelope.getError(), to_.endpoint);
        return absl::Status(error.code(), about(error.message()));
      }
      case schema::Envelope::MISSING_BLOBS: {
        absl::StatusOr<std::vector<Digest>> missing =
            ParseDigestList(envelope.getMissingBlobs(), to_.endpoint);
        if (!missing.ok()) return missing.status();
        for (Digest& blob : *missing) missing_.insert(std::move(blob));
        return absl::OkStatus();
      }
      case schema::Envelope::BLOB_STORED:
        ++report_.blobs_uploaded;
        return absl::OkStatus();
      case schema::Envelope::OFFER_REPLY:
        for (uint32_t index : envelope.getOfferReply().getWanted()) wanted_.push_back(index);
        return absl::OkStatus();
      case schema::Envelope::CHUNK_STORED:
        return absl::OkStatus();
      default:
        return absl::InvalidArgumentError(about(absl::StrCat(
            to_.endpoint, " answered with unexpected message kind ",
            static_cast<int>(envelope.which()))));
    }
  }

  zmq::socket_t socket_;
  const Peer& to_;
  const UploadOptions& options_;
  absl::flat_hash_map<uint64_t, const Source*> outstanding_;
  uint64_t next_id_ = 1;
  absl::flat_hash_set<Digest> missing_;
  std::vector<uint32_t> wanted_;
  UploadReport report_;
};

absl::StatusOr<UploadReport> UploadSources(zmq::context_t& context, const Peer& to,
                                           absl::Span<const Source> sources,
                                           const UploadOptions& options) {
  absl::StatusOr<zmq::socket_t> socket = ConnectToPeer(context, to);
  if (!socket.ok()) return socket.status();
  Upload upload(*std::move(socket), to, options);
  return upload.Run(sources);
}

}  // namespace

absl::StatusOr<UploadReport> UploadFiles(zmq::context_t& context, const Peer& to,
                                         absl::Span<const UploadItem> items,
                                         const UploadOptions& options) {
  std::vector<Source> sources;
  for (const UploadItem& item : items) {
    sources.push_back({item.digest, item.media_type, item.path.string(),
                       [item] { return File::Open(item.path, item.digest, item.media_type); }});
  }
  return UploadSources(context, to, sources, options);
}

absl::StatusOr<UploadReport> UploadBlobs(zmq::context_t& context, const Peer& to,
                                         cas::BlobStore& from,
                                         absl::Span<const digest::Digest> blobs,
                                         const UploadOptions& options) {
  std::vector<Source> sources;
  for (const Digest& blob : blobs) {
    absl::StatusOr<cas::BlobInfo> info = from.Stat(blob);
    if (!info.ok()) return info.status();
    sources.push_back({blob, info->media_type, absl::StrCat("blob ", blob.ToString()),
                       [&from, blob, size = info->size] {
                         return absl::StatusOr<std::unique_ptr<BlobBytes>>(
                             std::make_unique<StoredBlob>(from, blob, size));
                       }});
  }
  return UploadSources(context, to, sources, options);
}

}  // namespace stagefarm::transfer
