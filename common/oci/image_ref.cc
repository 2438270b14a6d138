#include "common/oci/image_ref.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace stagefarm::oci {
namespace {

// The reference package's limits and defaults (distribution/reference).
constexpr size_t kNameTotalLengthMax = 255;
constexpr absl::string_view kDefaultDomain = "docker.io";
constexpr absl::string_view kLegacyDefaultDomain = "index.docker.io";
constexpr absl::string_view kOfficialRepoPrefix = "library/";

absl::Status Invalid(absl::string_view message) { return absl::InvalidArgumentError(message); }

bool IsLowerAlnum(char c) { return absl::ascii_islower(c) || absl::ascii_isdigit(c); }
bool IsWordChar(char c) { return absl::ascii_isalnum(c) || c == '_'; }

// [a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*
bool IsPathComponent(absl::string_view s) {
  size_t i = 0;
  while (true) {
    const size_t start = i;
    while (i < s.size() && IsLowerAlnum(s[i])) ++i;
    if (i == start) return false;
    if (i == s.size()) return true;
    if (s[i] == '.') {
      ++i;
    } else if (s[i] == '_') {
      ++i;
      if (i < s.size() && s[i] == '_') ++i;
    } else if (s[i] == '-') {
      while (i < s.size() && s[i] == '-') ++i;
    } else {
      return false;
    }
  }
}

// [a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
bool IsDomainNameComponent(absl::string_view s) {
  if (s.empty() || !absl::ascii_isalnum(s.front()) || !absl::ascii_isalnum(s.back())) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(c) && c != '-') return false;
  }
  return true;
}

// host[:port], host being a dotted domain name or a bracketed IPv6 address.
bool IsDomainAndPort(absl::string_view s) {
  absl::string_view host = s;
  if (!s.empty() && s.front() == '[') {
    const size_t close = s.find(']');
    if (close == absl::string_view::npos || close == 1) return false;
    for (char c : s.substr(1, close - 1)) {
      if (!absl::ascii_isxdigit(c) && c != ':') return false;
    }
    host = s.substr(0, close + 1);
  } else {
    const size_t colon = s.find(':');
    host = s.substr(0, colon);
    for (absl::string_view part : absl::StrSplit(host, '.')) {
      if (!IsDomainNameComponent(part)) return false;
    }
  }
  absl::string_view rest = s.substr(host.size());
  if (rest.empty()) return true;
  if (rest.front() != ':' || rest.size() == 1) return false;
  for (char c : rest.substr(1)) {
    if (!absl::ascii_isdigit(c)) return false;
  }
  return true;
}

// [\w][\w.-]{0,127}
bool IsTag(absl::string_view s) {
  if (s.empty() || s.size() > 128 || !IsWordChar(s.front())) return false;
  for (char c : s) {
    if (!IsWordChar(c) && c != '.' && c != '-') return false;
  }
  return true;
}

// [A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}
bool IsDigestSyntax(absl::string_view s) {
  const size_t colon = s.find(':');
  if (colon == absl::string_view::npos) return false;
  absl::string_view algorithm = s.substr(0, colon);
  bool component_start = true;
  for (char c : algorithm) {
    if (component_start) {
      if (!absl::ascii_isalpha(c)) return false;
      component_start = false;
    } else if (c == '-' || c == '_' || c == '+' || c == '.') {
      component_start = true;
    } else if (!absl::ascii_isalnum(c)) {
      return false;
    }
  }
  if (component_start) return false;
  absl::string_view hex = s.substr(colon + 1);
  if (hex.size() < 32) return false;
  for (char c : hex) {
    if (!absl::ascii_isxdigit(c)) return false;
  }
  return true;
}

// go-digest's Digest.Validate for a string that passed IsDigestSyntax.
absl::Status ValidateDigest(absl::string_view digest) {
  const size_t colon = digest.find(':');
  absl::string_view algorithm = digest.substr(0, colon);
  absl::string_view encoded = digest.substr(colon + 1);
  size_t size = 0;
  if (algorithm == "sha256") {
    size = 32;
  } else if (algorithm == "sha384") {
    size = 48;
  } else if (algorithm == "sha512") {
    size = 64;
  } else {
    return Invalid("unsupported digest algorithm");
  }
  if (encoded.size() != size * 2) return Invalid("invalid checksum digest length");
  for (char c : encoded) {
    if (!absl::ascii_isdigit(c) && !(c >= 'a' && c <= 'f')) {
      return Invalid("invalid checksum digest format");
    }
  }
  return absl::OkStatus();
}

// The reference grammar, `name[:tag][@digest]`, on an already split "domain/remainder".
// Returns false when the text does not match.
bool MatchReference(absl::string_view domain, absl::string_view remainder, ImageRef& out) {
  absl::string_view name = remainder;
  const size_t at = remainder.find('@');
  if (at != absl::string_view::npos) {
    out.digest = std::string(remainder.substr(at + 1));
    if (!IsDigestSyntax(out.digest)) return false;
    name = remainder.substr(0, at);
  }
  const size_t colon = name.rfind(':');
  if (colon != absl::string_view::npos) {
    out.tag = std::string(name.substr(colon + 1));
    if (!IsTag(out.tag)) return false;
    name = name.substr(0, colon);
  }
  if (!IsDomainAndPort(domain)) return false;
  for (absl::string_view component : absl::StrSplit(name, '/')) {
    if (!IsPathComponent(component)) return false;
  }
  out.domain = std::string(domain);
  out.path = std::string(name);
  return true;
}

bool Is64Hex(absl::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(c) && !(c >= 'a' && c <= 'f')) return false;
  }
  return true;
}

}  // namespace

std::string ImageRef::Name() const { return absl::StrCat(domain, "/", path); }

std::string ImageRef::String() const {
  std::string out = Name();
  if (!tag.empty()) absl::StrAppend(&out, ":", tag);
  if (!digest.empty()) absl::StrAppend(&out, "@", digest);
  return out;
}

absl::StatusOr<ImageRef> ParseImageRef(absl::string_view ref) {
  if (Is64Hex(ref)) {
    return Invalid(absl::StrCat("invalid repository name (", ref,
                                "), cannot specify 64-byte hexadecimal strings"));
  }
  // splitDockerDomain.
  std::string domain(kDefaultDomain);
  std::string remainder(ref);
  if (const size_t slash = ref.find('/'); slash != absl::string_view::npos) {
    absl::string_view first = ref.substr(0, slash);
    if (first == "localhost" || first.find_first_of(".:") != absl::string_view::npos ||
        absl::AsciiStrToLower(first) != first) {
      domain = std::string(first);
      remainder = std::string(ref.substr(slash + 1));
    }
    if (domain == kLegacyDefaultDomain) domain = std::string(kDefaultDomain);
  }
  if (domain == kDefaultDomain && remainder.find('/') == std::string::npos) {
    remainder = absl::StrCat(kOfficialRepoPrefix, remainder);
  }
  // ParseNormalizedNamed: the repository part must be lower-case.
  const std::string remote = remainder.substr(0, remainder.find(':'));
  if (absl::AsciiStrToLower(remote) != remote) {
    return Invalid(
        absl::StrCat("invalid reference format: repository name (", remote, ") must be lowercase"));
  }
  // Parse.
  ImageRef out;
  if (!MatchReference(domain, remainder, out)) {
    ImageRef lowered;
    if (MatchReference(absl::AsciiStrToLower(domain), absl::AsciiStrToLower(remainder), lowered)) {
      return Invalid("repository name must be lowercase");
    }
    return Invalid("invalid reference format");
  }
  if (out.Name().size() > kNameTotalLengthMax) {
    return Invalid(
        absl::StrCat("repository name must not be more than ", kNameTotalLengthMax, " characters"));
  }
  if (!out.digest.empty()) {
    if (absl::Status status = ValidateDigest(out.digest); !status.ok()) return status;
  }
  // TagNameOnly.
  if (out.tag.empty() && out.digest.empty()) out.tag = "latest";
  return out;
}

}  // namespace stagefarm::oci
