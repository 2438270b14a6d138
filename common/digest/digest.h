// Content digests: the `<algorithm>:<hex>` strings that name blobs, layers,
// manifests, context files and cache keys everywhere in stagefarm, and the
// SHA-256 hasher that makes them (OpenSSL EVP underneath).
//
// A Digest always carries its algorithm; sha256 is the only one supported
// today, and its string form is exactly what OCI and Docker use
// ("sha256:" followed by 64 lowercase hex characters), so digests pass through
// to registries and image layouts unchanged.
#pragma once

#include <compare>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

// OpenSSL's hashing context, kept out of this header.
struct evp_md_ctx_st;

namespace stagefarm::digest {

enum class Algorithm : uint8_t {
  kSha256,
};

// The algorithm's name as it appears in digest strings ("sha256").
absl::string_view AlgorithmName(Algorithm algorithm);

// Whether every character of `text` is a lowercase hex digit, as a sha256
// digest's must be. Without a branch on each character: digest digits are
// random, so such a branch is mispredicted about half the time; `perf
// annotate` put about a third of the hash cache's load on it.
bool IsLowerHex(absl::string_view text);

// A digest value. There is no empty or invalid Digest: every one comes from
// Parse or from a hasher.
class Digest {
 public:
  // Parses "<algorithm>:<encoded>" as the OCI image spec writes it. Accepts only
  // supported algorithms, and for sha256 exactly 64 lowercase hex characters
  // (the spec forbids upper case). Returns InvalidArgument quoting the input
  // and saying what is wrong: a missing "<algorithm>:" prefix, an unsupported
  // algorithm, a wrong length, or the first character that is not lowercase
  // hex and its position.
  static absl::StatusOr<Digest> Parse(absl::string_view text);

  Algorithm algorithm() const { return algorithm_; }
  // The encoded part: lowercase hex.
  const std::string& hex() const { return hex_; }
  // "<algorithm>:<hex>", e.g. "sha256:e3b0c442...b855". Parse(ToString()) == *this.
  std::string ToString() const;

  friend bool operator==(const Digest&, const Digest&) = default;
  friend std::strong_ordering operator<=>(const Digest&, const Digest&) = default;

  template <typename H>
  friend H AbslHashValue(H state, const Digest& digest) {
    return H::combine(std::move(state), digest.algorithm_, digest.hex_);
  }

 private:
  friend class Sha256;
  Digest(Algorithm algorithm, std::string hex) : algorithm_(algorithm), hex_(std::move(hex)) {}

  Algorithm algorithm_;
  std::string hex_;
};

// A streaming SHA-256: Update any number of times, then Finish once.
// Moveable, not copyable; not safe for concurrent use. OpenSSL failing to
// allocate or run SHA-256 is treated like running out of memory: the process
// aborts with OpenSSL's message (there is no partial result to hand back).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  // Feeds `bytes`.
  void Update(absl::string_view bytes);

  // Feeds the length of `bytes` as 8 bytes big-endian, then `bytes`. A
  // sequence of such calls encodes its strings unambiguously: two different
  // sequences never produce the same byte stream, however the strings are cut.
  // Structured digests (cache keys, context selections) are built from these.
  void UpdateLengthPrefixed(absl::string_view bytes);

  // The digest of everything fed so far. Call once; the hasher is spent after
  // (further calls to Update or Finish are a programming error and abort).
  Digest Finish();

 private:
  struct FreeContext {
    void operator()(evp_md_ctx_st* context) const;
  };
  std::unique_ptr<evp_md_ctx_st, FreeContext> context_;
};

// SHA-256 of `bytes` in one call.
Digest Sha256Of(absl::string_view bytes);

}  // namespace stagefarm::digest
