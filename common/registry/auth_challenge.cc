#include "common/registry/auth_challenge.h"

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace stagefarm::registry {
namespace {

// RFC 7230 tchar.
bool IsTokenChar(char c) {
  return absl::ascii_isalnum(c) ||
         absl::string_view("!#$%&'*+-.^_`|~").find(c) != absl::string_view::npos;
}

class Scanner {
 public:
  explicit Scanner(absl::string_view text) : text_(text) {}

  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t')) ++pos_;
  }
  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek() const { return AtEnd() ? '\0' : text_[pos_]; }
  void Advance() { ++pos_; }
  size_t pos() const { return pos_; }
  void Reset(size_t pos) { pos_ = pos; }

  // A token, or empty when none starts here. Token68 characters ('/', '=' at
  // the end) are not accepted: registries send auth-params.
  std::string Token() {
    const size_t start = pos_;
    while (pos_ < text_.size() && IsTokenChar(text_[pos_])) ++pos_;
    return std::string(text_.substr(start, pos_ - start));
  }

  // A quoted string (the opening quote is next). False when unterminated.
  bool Quoted(std::string& out) {
    ++pos_;
    while (pos_ < text_.size()) {
      const char c = text_[pos_++];
      if (c == '"') return true;
      if (c == '\\' && pos_ < text_.size()) {
        out.push_back(text_[pos_++]);
      } else {
        out.push_back(c);
      }
    }
    return false;
  }

 private:
  absl::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

std::string AuthChallenge::Param(absl::string_view name) const {
  auto it = params.find(std::string(name));
  return it == params.end() ? std::string() : it->second;
}

absl::StatusOr<std::vector<AuthChallenge>> ParseAuthChallenges(absl::string_view header) {
  const auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("WWW-Authenticate \"", header, "\": ", why));
  };
  Scanner scan(header);
  std::vector<AuthChallenge> out;
  while (true) {
    scan.SkipSpace();
    while (scan.Peek() == ',') {
      scan.Advance();
      scan.SkipSpace();
    }
    if (scan.AtEnd()) break;
    AuthChallenge challenge;
    challenge.scheme = absl::AsciiStrToLower(scan.Token());
    if (challenge.scheme.empty()) return invalid("expected an auth scheme");
    // auth-params: name=value pairs separated by commas, until a token that is
    // not followed by '=' (the next challenge's scheme).
    while (true) {
      scan.SkipSpace();
      const size_t start = scan.pos();
      std::string name = absl::AsciiStrToLower(scan.Token());
      scan.SkipSpace();
      if (name.empty() || scan.Peek() != '=') {
        scan.Reset(start);
        break;
      }
      scan.Advance();
      scan.SkipSpace();
      std::string value;
      if (scan.Peek() == '"') {
        if (!scan.Quoted(value)) return invalid("unterminated quoted string");
      } else {
        value = scan.Token();
      }
      challenge.params[name] = std::move(value);
      scan.SkipSpace();
      if (scan.Peek() != ',') break;
      scan.Advance();
    }
    out.push_back(std::move(challenge));
    scan.SkipSpace();
    if (!scan.AtEnd() && scan.Peek() != ',' && !IsTokenChar(scan.Peek())) {
      return invalid(absl::StrCat("unexpected '", std::string(1, scan.Peek()), "'"));
    }
  }
  if (out.empty()) return invalid("no challenge");
  return out;
}

}  // namespace stagefarm::registry
