// CURVE keypairs on disk and the allow-list of authorised public keys.
//
// Keys are stored as Z85 text (40 characters, RFC 32) so that an operator can
// read, copy and diff them: `<name>.key` holds the secret key (mode 0600) and
// `<name>.pub` the public key (mode 0644). An allow-list is a directory of
// `*.pub` files, one public key per file.
#ifndef STAGEFARM_COMMON_NET_CURVE_KEYS_H_
#define STAGEFARM_COMMON_NET_CURVE_KEYS_H_

#include <filesystem>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace stagefarm::net {

// Length of a Z85-encoded 32-byte CURVE key.
inline constexpr size_t kCurveKeyZ85Length = 40;

// A CURVE keypair, both halves Z85-encoded.
struct CurveKeyPair {
  std::string public_key;
  std::string secret_key;

  // Returns a fresh keypair from libzmq (zmq_curve_keypair); fails only when
  // libzmq was built without CURVE support.
  static absl::StatusOr<CurveKeyPair> Generate();
};

// Returns OK when `key` is 40 characters of the Z85 alphabet; otherwise
// InvalidArgument naming `what` (a file name or flag) and the offending value.
absl::Status ValidateCurveKey(absl::string_view key, absl::string_view what);

// Returns OK when `name` can name a keypair's files: a plain file name (not
// empty, no '/', not "." or ".."); otherwise InvalidArgument.
absl::Status ValidateKeyName(absl::string_view name);

// Writes `dir/<name>.key` (0600) and `dir/<name>.pub` (0644). Refuses to
// overwrite (AlreadyExists naming the file) and writes nothing then; `dir`
// must exist; `name` must pass ValidateKeyName. On a failure after the secret
// file was created, removes it.
absl::Status WriteCurveKeyPair(const CurveKeyPair& keys, const std::filesystem::path& dir,
                               absl::string_view name);

// Reads the keypair written by WriteCurveKeyPair. Fails (naming the file) when
// a file is missing or malformed, when the secret file is readable or writable
// by group or others (PermissionDenied), or when the public key does not
// belong to the secret key.
absl::StatusOr<CurveKeyPair> ReadCurveKeyPair(const std::filesystem::path& dir,
                                              absl::string_view name);

// Reads one Z85 public key from a file (trailing newline allowed).
absl::StatusOr<std::string> ReadCurvePublicKey(const std::filesystem::path& file);

// Returns the public keys of every `*.pub` regular file in `dir` (other files
// are ignored). A malformed `.pub` file fails the whole load, naming the file,
// so that a typo never silently shrinks the allow-list.
absl::StatusOr<absl::flat_hash_set<std::string>> LoadAuthorizedKeys(
    const std::filesystem::path& dir);

}  // namespace stagefarm::net

#endif  // STAGEFARM_COMMON_NET_CURVE_KEYS_H_
