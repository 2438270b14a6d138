#include "common/digest/digest.h"

#include <openssl/err.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace stagefarm::digest {
namespace {

constexpr size_t kSha256HexLength = 64;

// OpenSSL failing here means no memory or a broken installation; see Sha256.
[[noreturn]] void OpenSslFailure(const char* call) {
  char reason[256] = "no OpenSSL error queued";
  if (const unsigned long code = ERR_get_error(); code != 0) {
    ERR_error_string_n(code, reason, sizeof(reason));
  }
  std::fprintf(stderr, "stagefarm: %s failed: %s\n", call, reason);
  std::abort();
}

// Fetched once: a per-call implicit fetch of EVP_sha256() costs a lookup in
// OpenSSL 3's provider tables, which shows when hashing many small files.
const EVP_MD* Sha256Method() {
  static const EVP_MD* const method = [] {
    EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (fetched == nullptr) OpenSslFailure("EVP_MD_fetch(SHA256)");
    return fetched;
  }();
  return method;
}

bool IsLowerHexDigit(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

}  // namespace

absl::string_view AlgorithmName(Algorithm algorithm) {
  switch (algorithm) {
    case Algorithm::kSha256:
      return "sha256";
  }
  return "unknown";
}

bool IsLowerHex(absl::string_view text) {
  bool hex = true;
  for (const char c : text) {
    const unsigned digit = static_cast<unsigned char>(c);
    hex &= (digit - '0' < 10u) | (digit - 'a' < 6u);
  }
  return hex;
}

absl::StatusOr<Digest> Digest::Parse(absl::string_view text) {
  auto invalid = [text](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid digest \"", absl::CEscape(text), "\": ", why));
  };
  const size_t colon = text.find(':');
  if (colon == absl::string_view::npos) {
    return invalid("expected \"<algorithm>:<hex>\", e.g. \"sha256:<64 hex characters>\"");
  }
  const absl::string_view algorithm = text.substr(0, colon);
  const absl::string_view hex = text.substr(colon + 1);
  if (algorithm != AlgorithmName(Algorithm::kSha256)) {
    return invalid(absl::StrCat("unsupported algorithm \"", absl::CEscape(algorithm),
                                "\" (supported: sha256)"));
  }
  if (hex.size() != kSha256HexLength) {
    return invalid(
        absl::StrCat("sha256 needs ", kSha256HexLength, " hex characters, got ", hex.size()));
  }
  if (!IsLowerHex(hex)) {
    const size_t i = std::find_if_not(hex.begin(), hex.end(), IsLowerHexDigit) - hex.begin();
    return invalid(absl::StrCat("character '", absl::CEscape(hex.substr(i, 1)), "' at position ",
                                colon + 1 + i, " is not lowercase hex"));
  }
  return Digest(Algorithm::kSha256, std::string(hex));
}

std::string Digest::ToString() const { return absl::StrCat(AlgorithmName(algorithm_), ":", hex_); }

void Sha256::FreeContext::operator()(evp_md_ctx_st* context) const { EVP_MD_CTX_free(context); }

Sha256::Sha256() : context_(EVP_MD_CTX_new()) {
  if (context_ == nullptr) OpenSslFailure("EVP_MD_CTX_new");
  if (EVP_DigestInit_ex(context_.get(), Sha256Method(), nullptr) != 1) {
    OpenSslFailure("EVP_DigestInit_ex(SHA256)");
  }
}

Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::Update(absl::string_view bytes) {
  if (context_ == nullptr) OpenSslFailure("Sha256::Update after Finish or move");
  if (EVP_DigestUpdate(context_.get(), bytes.data(), bytes.size()) != 1) {
    OpenSslFailure("EVP_DigestUpdate");
  }
}

void Sha256::UpdateLengthPrefixed(absl::string_view bytes) {
  const uint64_t size = bytes.size();
  char prefix[8];
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<char>(size >> (56 - 8 * i));
  Update(absl::string_view(prefix, sizeof(prefix)));
  Update(bytes);
}

Digest Sha256::Finish() {
  if (context_ == nullptr) OpenSslFailure("Sha256::Finish called twice or after move");
  unsigned char raw[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_DigestFinal_ex(context_.get(), raw, &size) != 1) OpenSslFailure("EVP_DigestFinal_ex");
  context_.reset();
  static constexpr char kHexDigits[] = "0123456789abcdef";
  std::string hex(2 * size, '\0');
  for (unsigned int i = 0; i < size; ++i) {
    hex[2 * i] = kHexDigits[raw[i] >> 4];
    hex[2 * i + 1] = kHexDigits[raw[i] & 0xf];
  }
  return Digest(Algorithm::kSha256, std::move(hex));
}

Digest Sha256Of(absl::string_view bytes) {
  Sha256 hasher;
  hasher.Update(bytes);
  return hasher.Finish();
}

}  // namespace stagefarm::digest
