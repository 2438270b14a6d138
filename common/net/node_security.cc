#include "common/net/node_security.h"

#include <filesystem>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace stagefarm::net {
namespace {

constexpr absl::string_view kSecretKeyFlag = "--curve-secret-key";
constexpr absl::string_view kAuthorizedKeysFlag = "--authorized-keys";
constexpr absl::string_view kCoordinatorKeyFlag = "--coordinator-public-key";

// `status` with the flag that led to it in front, keeping its code.
absl::Status ForFlag(absl::string_view flag, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(flag, ": ", status.message()));
}

absl::StatusOr<CurveKeyPair> LoadOwnKeys(const std::filesystem::path& secret_file) {
  if (secret_file.extension() != ".key" || secret_file.stem().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kSecretKeyFlag, " ", secret_file.string(),
                     ": must name a NAME.key file (as `stagefarm keys generate` writes), with its "
                     "public key in NAME.pub beside it"));
  }
  absl::StatusOr<CurveKeyPair> keys =
      ReadCurveKeyPair(secret_file.parent_path(), secret_file.stem().string());
  if (!keys.ok()) return ForFlag(kSecretKeyFlag, keys.status());
  return keys;
}

}  // namespace

std::string NodeSecurity::Summary() const {
  if (insecure) return "INSECURE (plain TCP, --insecure)";
  return absl::StrCat("CURVE (", authorized_keys.size(), " authorised key",
                      authorized_keys.size() == 1 ? "" : "s", ")");
}

absl::StatusOr<SocketSecurity> NodeSecurity::ForServer() const {
  if (insecure) return SocketSecurity::Insecure();
  return SocketSecurity::CurveServer(own);
}

absl::StatusOr<SocketSecurity> NodeSecurity::ForClient(std::string server_public_key) const {
  if (insecure) return SocketSecurity::Insecure();
  return SocketSecurity::CurveClient(own, std::move(server_public_key));
}

absl::StatusOr<NodeSecurity> LoadNodeSecurity(const NodeSecurityFlags& flags, NodeRole role) {
  struct KeyFlag {
    absl::string_view name;
    const std::string* value;
    bool needed;  // by CURVE in this role
  };
  // In the order errors name them.
  const KeyFlag key_flags[] = {
      {kSecretKeyFlag, &flags.curve_secret_key, true},
      {kAuthorizedKeysFlag, &flags.authorized_keys, role.serves},
      {kCoordinatorKeyFlag, &flags.coordinator_public_key, role.connects_to_coordinator},
  };
  const KeyFlag* first_given = nullptr;
  std::vector<absl::string_view> needed;
  for (const KeyFlag& flag : key_flags) {
    if (first_given == nullptr && !flag.value->empty()) first_given = &flag;
    if (flag.needed) needed.push_back(flag.name);
  }
  if (flags.insecure) {
    if (first_given != nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("--insecure conflicts with ",
                                                     first_given->name,
                                                     ": give CURVE keys or --insecure, not both"));
    }
    NodeSecurity security;
    security.insecure = true;
    return security;
  }
  if (first_given == nullptr) {
    const std::string last = std::string(needed.back());
    needed.pop_back();
    return absl::InvalidArgumentError(
        absl::StrCat("no transport security configured: pass ", absl::StrJoin(needed, ", "),
                     needed.empty() ? "" : " and ", last,
                     " to use CURVE, or --insecure to run over plain TCP explicitly"));
  }
  // A flag the role does not use is refused rather than ignored, so that the
  // operator never believes a key is in force when it is not.
  for (const KeyFlag& flag : key_flags) {
    if (flag.needed && flag.value->empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(first_given->name, " is given but ", flag.name,
                       " is missing; CURVE needs both (or pass --insecure instead)"));
    }
    if (!flag.needed && !flag.value->empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag.name, " ", *flag.value, ": this node does not use it"));
    }
  }

  NodeSecurity security;
  absl::StatusOr<CurveKeyPair> own = LoadOwnKeys(flags.curve_secret_key);
  if (!own.ok()) return own.status();
  security.own = *std::move(own);
  if (role.serves) {
    absl::StatusOr<absl::flat_hash_set<std::string>> allowed =
        LoadAuthorizedKeys(flags.authorized_keys);
    if (!allowed.ok()) return ForFlag(kAuthorizedKeysFlag, allowed.status());
    if (allowed->empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          kAuthorizedKeysFlag, " ", flags.authorized_keys,
          ": no *.pub files, so no client could connect; copy the clients' public keys there"));
    }
    security.authorized_keys = *std::move(allowed);
  }
  if (role.connects_to_coordinator) {
    absl::StatusOr<std::string> key = ReadCurvePublicKey(flags.coordinator_public_key);
    if (!key.ok()) return ForFlag(kCoordinatorKeyFlag, key.status());
    security.coordinator_public_key = *std::move(key);
  }
  return security;
}

}  // namespace stagefarm::net
