#include "common/net/curve_keys.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace stagefarm::net {
namespace {

constexpr absl::string_view kZ85Alphabet =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

// Key files are tiny; anything bigger is not a key file.
constexpr size_t kMaxKeyFileBytes = 256;

absl::Status ErrnoStatus(int err, absl::string_view what, const std::filesystem::path& file) {
  std::string message = absl::StrCat(file.string(), ": ", what, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(message);
    case EEXIST:
      return absl::AlreadyExistsError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InternalError(message);
  }
}

// Creates `file` exclusively with exactly `mode` (independent of the umask)
// and writes `key` plus a newline.
absl::Status WriteKeyFile(const std::filesystem::path& file, absl::string_view key, mode_t mode) {
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return ErrnoStatus(errno, "cannot create key file", file);
  std::string text = absl::StrCat(key, "\n");
  absl::Status status;
  if (::fchmod(fd, mode) != 0) {
    status = ErrnoStatus(errno, "cannot set mode", file);
  } else if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    status = ErrnoStatus(errno, "cannot write key", file);
  } else if (::fsync(fd) != 0) {
    status = ErrnoStatus(errno, "cannot sync key", file);
  }
  ::close(fd);
  return status;
}

// Reads a key file and returns its single Z85 key. When `secret` is set,
// rejects files that group or others may read or write.
absl::StatusOr<std::string> ReadKeyFile(const std::filesystem::path& file, bool secret) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "cannot open key file", file);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    absl::Status status = ErrnoStatus(errno, "cannot stat key file", file);
    ::close(fd);
    return status;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(file.string(), ": not a regular file"));
  }
  if (secret && (st.st_mode & 077) != 0) {
    ::close(fd);
    return absl::PermissionDeniedError(absl::StrCat(
        file.string(), ": secret key file has mode 0", (st.st_mode >> 6) & 7, (st.st_mode >> 3) & 7,
        st.st_mode & 7, "; it must not be accessible by group or others (chmod 600)"));
  }
  if (static_cast<size_t>(st.st_size) > kMaxKeyFileBytes) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(file.string(), ": ", st.st_size,
                                                   " bytes is too large for a key file (at most ",
                                                   kMaxKeyFileBytes, ")"));
  }
  char buffer[kMaxKeyFileBytes + 1];
  ssize_t n = ::read(fd, buffer, sizeof(buffer));
  int read_errno = errno;
  ::close(fd);
  if (n < 0) return ErrnoStatus(read_errno, "cannot read key file", file);
  absl::string_view key = absl::StripAsciiWhitespace(absl::string_view(buffer, n));
  if (absl::Status status = ValidateCurveKey(key, file.string()); !status.ok()) return status;
  return std::string(key);
}

}  // namespace

absl::StatusOr<CurveKeyPair> CurveKeyPair::Generate() {
  char public_key[kCurveKeyZ85Length + 1];
  char secret_key[kCurveKeyZ85Length + 1];
  if (zmq_curve_keypair(public_key, secret_key) != 0) {
    return absl::UnimplementedError(
        absl::StrCat("cannot generate a CURVE keypair: libzmq has no CURVE support: ",
                     zmq_strerror(zmq_errno())));
  }
  return CurveKeyPair{public_key, secret_key};
}

absl::Status ValidateCurveKey(absl::string_view key, absl::string_view what) {
  if (key.size() != kCurveKeyZ85Length) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": a CURVE key is ", kCurveKeyZ85Length,
                                                   " Z85 characters, got ", key.size()));
  }
  for (size_t i = 0; i < key.size(); ++i) {
    if (kZ85Alphabet.find(key[i]) == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": character ", i + 1, " of the CURVE key is not Z85: 0x",
                       absl::Hex(static_cast<unsigned char>(key[i]))));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateKeyName(absl::string_view name) {
  if (name.empty() || name.find('/') != absl::string_view::npos || name == "." || name == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat("key name \"", name, "\" must be a plain file name"));
  }
  return absl::OkStatus();
}

absl::Status WriteCurveKeyPair(const CurveKeyPair& keys, const std::filesystem::path& dir,
                               absl::string_view name) {
  if (absl::Status s = ValidateCurveKey(keys.public_key, "public key"); !s.ok()) return s;
  if (absl::Status s = ValidateCurveKey(keys.secret_key, "secret key"); !s.ok()) return s;
  if (absl::Status s = ValidateKeyName(name); !s.ok()) return s;
  const std::filesystem::path secret_file = dir / absl::StrCat(name, ".key");
  const std::filesystem::path public_file = dir / absl::StrCat(name, ".pub");
  std::error_code ec;
  for (const auto& file : {secret_file, public_file}) {
    if (std::filesystem::exists(std::filesystem::symlink_status(file, ec))) {
      return absl::AlreadyExistsError(
          absl::StrCat(file.string(), ": already exists; refusing to overwrite a key"));
    }
  }
  if (absl::Status s = WriteKeyFile(secret_file, keys.secret_key, 0600); !s.ok()) return s;
  if (absl::Status s = WriteKeyFile(public_file, keys.public_key, 0644); !s.ok()) {
    std::filesystem::remove(secret_file, ec);
    return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<CurveKeyPair> ReadCurveKeyPair(const std::filesystem::path& dir,
                                              absl::string_view name) {
  const std::filesystem::path secret_file = dir / absl::StrCat(name, ".key");
  const std::filesystem::path public_file = dir / absl::StrCat(name, ".pub");
  absl::StatusOr<std::string> secret_key = ReadKeyFile(secret_file, /*secret=*/true);
  if (!secret_key.ok()) return secret_key.status();
  absl::StatusOr<std::string> public_key = ReadKeyFile(public_file, /*secret=*/false);
  if (!public_key.ok()) return public_key.status();
  char derived[kCurveKeyZ85Length + 1];
  if (zmq_curve_public(derived, secret_key->c_str()) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(secret_file.string(), ": not a valid CURVE secret key"));
  }
  if (*public_key != derived) {
    return absl::InvalidArgumentError(
        absl::StrCat(public_file.string(), ": public key ", *public_key,
                     " does not belong to the secret key in ", secret_file.string()));
  }
  return CurveKeyPair{*std::move(public_key), *std::move(secret_key)};
}

absl::StatusOr<std::string> ReadCurvePublicKey(const std::filesystem::path& file) {
  return ReadKeyFile(file, /*secret=*/false);
}

absl::StatusOr<absl::flat_hash_set<std::string>> LoadAuthorizedKeys(
    const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) {
    return absl::NotFoundError(
        absl::StrCat(dir.string(), ": cannot read authorized keys directory: ", ec.message()));
  }
  absl::flat_hash_set<std::string> keys;
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const std::filesystem::path& file = it->path();
    if (file.extension() != ".pub" || !it->is_regular_file(ec)) continue;
    absl::StatusOr<std::string> key = ReadCurvePublicKey(file);
    if (!key.ok()) return key.status();
    keys.insert(*std::move(key));
  }
  if (ec) {
    return absl::InternalError(
        absl::StrCat(dir.string(), ": cannot list authorized keys directory: ", ec.message()));
  }
  return keys;
}

}  // namespace stagefarm::net
