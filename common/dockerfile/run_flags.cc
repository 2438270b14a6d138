#include "common/dockerfile/run_flags.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/dockerfile/go_text.h"
#include "common/dockerfile/suggestion.h"

namespace stagefarm::dockerfile {
namespace {

absl::Status Invalid(std::string message) { return absl::InvalidArgumentError(std::move(message)); }

// tonistiigi/go-csvvalue Fields with default settings: one CSV record, `,`
// separated, `"`-quoted fields with `""` for a quote, no bare quotes. Errors
// read as Go's encoding/csv ParseError (or "EOF" for an empty value).
absl::StatusOr<std::vector<std::string>> CsvFields(absl::string_view line) {
  if (!line.empty() && line.back() == '\n') {
    line.remove_suffix(line.size() > 1 && line[line.size() - 2] == '\r' ? 2 : 1);
  }
  if (line.empty()) return Invalid("EOF");
  auto parse_error = [](size_t pos, absl::string_view what) {
    return Invalid(absl::StrCat("parse error on line 1, column ", pos + 1, ": ", what));
  };
  constexpr absl::string_view kBareQuote = "bare \" in non-quoted-field";
  constexpr absl::string_view kQuote = "extraneous or missing \" in quoted-field";

  std::vector<std::string> fields;
  size_t pos = 0;
  while (true) {
    if (pos >= line.size() || line[pos] != '"') {
      const size_t comma = line.find(',', pos);
      const absl::string_view field = line.substr(
          pos, comma == absl::string_view::npos ? absl::string_view::npos : comma - pos);
      if (const size_t quote = field.find('"'); quote != absl::string_view::npos) {
        return parse_error(pos + quote, kBareQuote);
      }
      fields.emplace_back(field);
      if (comma == absl::string_view::npos) return fields;
      pos = comma + 1;
      continue;
    }
    ++pos;  // opening quote
    std::string field;
    while (true) {
      const size_t quote = line.find('"', pos);
      if (quote == absl::string_view::npos) return parse_error(pos, kQuote);
      field.append(line.data() + pos, quote - pos);
      pos = quote + 1;
      if (pos < line.size() && line[pos] == '"') {
        field += '"';
        ++pos;
      } else if (pos < line.size() && line[pos] == ',') {
        ++pos;
        fields.push_back(std::move(field));
        break;
      } else if (pos == line.size()) {
        fields.push_back(std::move(field));
        return fields;
      } else {
        return parse_error(pos - 1, kQuote);
      }
    }
  }
}

// strconv.ParseBool.
std::optional<bool> GoParseBool(absl::string_view s) {
  if (s == "1" || s == "t" || s == "T" || s == "TRUE" || s == "true" || s == "True") return true;
  if (s == "0" || s == "f" || s == "F" || s == "FALSE" || s == "false" || s == "False") {
    return false;
  }
  return std::nullopt;
}

// strconv.ParseUint(s, base, 32) for base 8 or 10: digits only, no sign or prefix.
std::optional<uint32_t> GoParseUint32(absl::string_view s, int base) {
  if (s.empty()) return std::nullopt;
  uint64_t value = 0;
  for (char c : s) {
    if (c < '0' || c - '0' >= base) return std::nullopt;
    value = value * base + (c - '0');
    if (value > std::numeric_limits<uint32_t>::max()) return std::nullopt;
  }
  return static_cast<uint32_t>(value);
}

// strconv.ParseFloat(s, 64) for decimal numbers, "inf" and "nan".
std::optional<double> GoParseFloat(absl::string_view s) {
  const std::string lowered = absl::AsciiStrToLower(s);
  absl::string_view unsigned_part = lowered;
  if (!unsigned_part.empty() && (unsigned_part[0] == '+' || unsigned_part[0] == '-')) {
    unsigned_part.remove_prefix(1);
  }
  if (unsigned_part == "inf" || unsigned_part == "infinity" || unsigned_part == "nan") {
    return std::strtod(lowered.c_str(), nullptr);
  }
  size_t i = s.size() - unsigned_part.size();
  size_t digits = 0;
  while (i < s.size() && absl::ascii_isdigit(s[i])) ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && absl::ascii_isdigit(s[i])) ++i, ++digits;
  }
  if (digits == 0) return std::nullopt;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    size_t exponent_digits = 0;
    while (i < s.size() && absl::ascii_isdigit(s[i])) ++i, ++exponent_digits;
    if (exponent_digits == 0) return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  const std::string text(s);
  const double value = std::strtod(text.c_str(), nullptr);
  if (std::isinf(value)) return std::nullopt;  // ErrRange
  return value;
}

// Go's float64 to int64 conversion on amd64: out-of-range values and NaN give
// the minimum int64.
int64_t GoFloatToInt64(double value) {
  if (!(value > -9223372036854775808.0 && value < 9223372036854775808.0)) {
    return std::numeric_limits<int64_t>::min();
  }
  return static_cast<int64_t>(value);
}

// docker/go-units RAMInBytes (v0.5.0): a number, an optional space, and an
// optional binary suffix (k, m, g, t, p with optional "b" or "ib"; or "b").
std::optional<int64_t> RamInBytes(absl::string_view size) {
  const size_t sep = size.find_last_of("0123456789. ");
  if (sep == absl::string_view::npos) return std::nullopt;
  const absl::string_view number = size[sep] == ' ' ? size.substr(0, sep) : size.substr(0, sep + 1);
  const std::string suffix = absl::AsciiStrToLower(size.substr(sep + 1));
  std::optional<double> value = GoParseFloat(number);
  if (!value || *value < 0) return std::nullopt;
  if (suffix.empty()) return GoFloatToInt64(*value);
  if (suffix.size() > 3) return std::nullopt;
  if (suffix[0] == 'b') {
    if (suffix.size() > 1) return std::nullopt;
    return GoFloatToInt64(*value);
  }
  constexpr absl::string_view kPrefixes = "kmgtp";
  const size_t power = kPrefixes.find(suffix[0]);
  if (power == absl::string_view::npos) return std::nullopt;
  if (suffix.size() == 2 && suffix[1] != 'b') return std::nullopt;
  if (suffix.size() == 3 && suffix.substr(1) != "ib") return std::nullopt;
  return GoFloatToInt64(*value * std::pow(1024.0, static_cast<double>(power + 1)));
}

// Go's path.Clean.
std::string CleanPath(absl::string_view path) {
  if (path.empty()) return ".";
  const bool rooted = path[0] == '/';
  std::vector<absl::string_view> parts;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!parts.empty() && parts.back() != "..") {
        parts.pop_back();
      } else if (!rooted) {
        parts.push_back(part);
      }
      continue;
    }
    parts.push_back(part);
  }
  std::string joined = absl::StrJoin(parts, "/");
  if (rooted) return absl::StrCat("/", joined);
  return joined.empty() ? "." : joined;
}

// Go's path.Base.
std::string BasePath(absl::string_view path) {
  if (path.empty()) return ".";
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  if (path.empty()) return "/";
  const size_t slash = path.rfind('/');
  return std::string(slash == absl::string_view::npos ? path : path.substr(slash + 1));
}

constexpr absl::string_view kMountTypeNames[] = {"bind", "cache", "tmpfs", "secret", "ssh"};
constexpr absl::string_view kSharingNames[] = {"shared", "private", "locked"};
constexpr absl::string_view kMountKeys[] = {
    "type", "from", "source", "target", "readonly",    "id", "sharing", "required",  "size", "mode",
    "uid",  "gid",  "src",    "dst",    "destination", "ro", "rw",      "readwrite", "env"};

// One function for both passes, as the reference has: without `expand`, only
// the checks made before expansion.
absl::StatusOr<Mount> ParseMountFields(absl::string_view spec, const WordExpander* expand) {
  absl::StatusOr<std::vector<std::string>> fields = CsvFields(spec);
  if (!fields.ok()) {
    return Invalid(absl::StrCat("failed to parse csv mounts: ", fields.status().message()));
  }
  Mount mount;
  bool read_only_given = false;
  const auto type_name = [&mount] { return MountTypeName(mount.type); };
  auto secret_or_ssh = [&mount] {
    return mount.type == MountType::kSecret || mount.type == MountType::kSsh;
  };

  for (const std::string& field : *fields) {
    const size_t equals = field.find('=');
    const std::string key = absl::AsciiStrToLower(absl::string_view(field).substr(0, equals));
    if (equals == std::string::npos) {
      if (expand == nullptr) continue;
      if (key == "readonly" || key == "ro") {
        mount.read_only = true;
        read_only_given = true;
      } else if (key == "readwrite" || key == "rw") {
        mount.read_only = false;
        read_only_given = true;
      } else if (key == "required") {
        if (!secret_or_ssh()) {
          return Invalid(
              absl::StrCat("unexpected key '", key, "' for mount type '", type_name(), "'"));
        }
        mount.required = true;
      } else {
        return Invalid(absl::StrCat("invalid field '", field, "' must be a key=value pair"));
      }
      continue;
    }

    std::string value = field.substr(equals + 1);
    if (expand != nullptr) {
      absl::StatusOr<std::string> expanded = (*expand)(value);
      if (!expanded.ok()) return expanded.status();
      value = *std::move(expanded);
    } else if (key == "from") {
      const size_t dollar = value.find('$');
      if (dollar != std::string::npos && dollar != value.size() - 1) {
        return Invalid(absl::StrCat(
            "'", key, "' doesn't support variable expansion, define alias stage instead"));
      }
    } else {
      continue;
    }

    const auto invalid_value = [&] {
      return Invalid(absl::StrCat("invalid value for ", key, ": ", value));
    };
    if (key == "type") {
      const std::string lowered = absl::AsciiStrToLower(value);
      bool known = false;
      for (size_t i = 0; i < std::size(kMountTypeNames); ++i) {
        if (kMountTypeNames[i] == lowered) {
          mount.type = static_cast<MountType>(i);
          known = true;
        }
      }
      if (!known) {
        return Invalid(WithSuggestion(absl::StrCat("unsupported mount type ", go::Quote(value)),
                                      value, kMountTypeNames, /*case_sensitive=*/true));
      }
    } else if (key == "from") {
      mount.from = value;
    } else if (key == "source" || key == "src") {
      mount.source = value;
    } else if (key == "target" || key == "dst" || key == "destination") {
      mount.target = value;
    } else if (key == "readonly" || key == "ro" || key == "readwrite" || key == "rw") {
      const std::optional<bool> flag = GoParseBool(value);
      if (!flag) return invalid_value();
      mount.read_only = (key == "readonly" || key == "ro") ? *flag : !*flag;
      read_only_given = true;
    } else if (key == "required") {
      if (!secret_or_ssh()) {
        return Invalid(
            absl::StrCat("unexpected key '", key, "' for mount type '", type_name(), "'"));
      }
      const std::optional<bool> flag = GoParseBool(value);
      if (!flag) return invalid_value();
      mount.required = *flag;
    } else if (key == "size") {
      if (mount.type != MountType::kTmpfs) {
        return Invalid(
            absl::StrCat("unexpected key '", key, "' for mount type '", type_name(), "'"));
      }
      const std::optional<int64_t> bytes = RamInBytes(value);
      if (!bytes) return invalid_value();
      mount.size_limit = *bytes;
    } else if (key == "id") {
      mount.id = value;
    } else if (key == "sharing") {
      const std::string lowered = absl::AsciiStrToLower(value);
      bool known = false;
      for (size_t i = 0; i < std::size(kSharingNames); ++i) {
        if (kSharingNames[i] == lowered) {
          mount.sharing = static_cast<MountSharing>(i);
          known = true;
        }
      }
      if (!known) {
        return Invalid(WithSuggestion(absl::StrCat("unsupported sharing value ", go::Quote(value)),
                                      value, kSharingNames, /*case_sensitive=*/true));
      }
    } else if (key == "mode" || key == "uid" || key == "gid") {
      const std::optional<uint32_t> number = GoParseUint32(value, key == "mode" ? 8 : 10);
      if (!number) return Invalid(absl::StrCat("invalid value ", value, " for ", key));
      (key == "mode" ? mount.mode : key == "uid" ? mount.uid : mount.gid) = *number;
    } else if (key == "env") {
      mount.env = value;
    } else {
      return Invalid(WithSuggestion(absl::StrCat("unexpected key '", key, "' in '", field, "'"),
                                    key, kMountKeys, /*case_sensitive=*/true));
    }
  }

  const bool file_info_allowed = mount.type == MountType::kSecret ||
                                 mount.type == MountType::kSsh || mount.type == MountType::kCache;
  if (!file_info_allowed) {
    const std::string quoted_type = go::Quote(type_name());
    if (mount.mode)
      return Invalid(absl::StrCat("mode not allowed for ", quoted_type, " type mounts"));
    if (mount.uid)
      return Invalid(absl::StrCat("uid not allowed for ", quoted_type, " type mounts"));
    if (mount.gid)
      return Invalid(absl::StrCat("gid not allowed for ", quoted_type, " type mounts"));
  }
  if (!read_only_given) {
    mount.read_only = !(mount.type == MountType::kCache || mount.type == MountType::kTmpfs);
  }
  if (mount.type == MountType::kSecret) {
    if (!mount.from.empty()) return Invalid("secret mount should not have a from");
    if (mount.sharing) return Invalid("secret mount should not define sharing");
    if (mount.source.empty() && mount.target.empty() && mount.id.empty()) {
      return Invalid("invalid secret mount. one of source, target required");
    }
    if (!mount.source.empty() && !mount.id.empty()) {
      return Invalid("both source and id can't be set");
    }
  }
  if (mount.sharing && mount.type != MountType::kCache) {
    return Invalid(absl::StrCat("invalid cache sharing set for ", type_name(), " mount"));
  }
  return mount;
}

}  // namespace

absl::string_view MountTypeName(MountType type) {
  return kMountTypeNames[static_cast<size_t>(type)];
}

absl::string_view MountSharingName(MountSharing sharing) {
  return kSharingNames[static_cast<size_t>(sharing)];
}

absl::StatusOr<Mount> ParseMount(absl::string_view spec, WordExpander expand) {
  return ParseMountFields(spec, &expand);
}

absl::StatusOr<std::string> MountFromField(absl::string_view spec) {
  absl::StatusOr<std::vector<std::string>> fields = CsvFields(spec);
  if (!fields.ok()) {
    return Invalid(absl::StrCat("failed to parse csv mounts: ", fields.status().message()));
  }
  std::string from;
  for (const std::string& field : *fields) {
    const size_t equals = field.find('=');
    if (equals != std::string::npos &&
        absl::AsciiStrToLower(absl::string_view(field).substr(0, equals)) == "from") {
      from = field.substr(equals + 1);
    }
  }
  return from;
}

absl::Status CheckMountBeforeExpansion(absl::string_view spec) {
  return ParseMountFields(spec, nullptr).status();
}

MountSharing EffectiveSharing(const Mount& mount) {
  return mount.sharing.value_or(MountSharing::kShared);
}

std::string CacheId(const Mount& mount) {
  return mount.id.empty() ? CleanPath(mount.target) : mount.id;
}

std::string SshId(const Mount& mount) { return mount.id.empty() ? "default" : mount.id; }

absl::StatusOr<SecretPlacement> PlaceSecret(const Mount& mount) {
  SecretPlacement placement;
  placement.id = mount.source.empty() ? mount.id : mount.source;
  if (placement.id.empty()) {
    if (mount.target.empty()) return Invalid("one of source, target required");
    placement.id = BasePath(mount.target);
  }
  if (!mount.target.empty()) {
    placement.file = mount.target;
  } else if (!mount.env) {
    placement.file = absl::StrCat("/run/secrets/", BasePath(placement.id));
  }
  return placement;
}

absl::StatusOr<NetworkMode> ParseNetworkMode(absl::string_view value) {
  if (value == "default") return NetworkMode::kDefault;
  if (value == "none") return NetworkMode::kNone;
  if (value == "host") return NetworkMode::kHost;
  return Invalid(absl::StrCat("invalid network mode ", go::Quote(value)));
}

absl::StatusOr<SecurityMode> ParseSecurityMode(absl::string_view value) {
  if (value == "sandbox") return SecurityMode::kSandbox;
  if (value == "insecure") return SecurityMode::kInsecure;
  return Invalid(absl::StrCat("security ", go::Quote(value), " is not valid"));
}

absl::StatusOr<Device> ParseDevice(absl::string_view spec) {
  absl::StatusOr<std::vector<std::string>> fields = CsvFields(spec);
  if (!fields.ok()) {
    return Invalid(absl::StrCat("failed to parse csv devices: ", fields.status().message()));
  }
  Device device;
  for (const std::string& field : *fields) {
    const size_t equals = field.find('=');
    const std::string key = absl::AsciiStrToLower(absl::string_view(field).substr(0, equals));
    if (equals == std::string::npos) {
      if (key == "required") {
        device.required = true;
      } else if (device.name.empty()) {
        device.name = field;
      } else {
        return Invalid(absl::StrCat("invalid field '", field, "' must be a key=value pair"));
      }
      continue;
    }
    const absl::string_view value = absl::string_view(field).substr(equals + 1);
    if (key == "name") {
      if (!device.name.empty()) {
        return Invalid(absl::StrCat("device name already set to ", device.name));
      }
      device.name = std::string(value);
    } else if (key == "required") {
      const std::optional<bool> flag = GoParseBool(value);
      if (!flag) return Invalid(absl::StrCat("invalid value for ", key, ": ", value));
      device.required = *flag;
    } else if (device.name.empty()) {
      device.name = field;
    } else {
      constexpr absl::string_view kDeviceKeys[] = {"name", "required"};
      return Invalid(WithSuggestion(absl::StrCat("unexpected key '", key, "' in '", field, "'"),
                                    key, kDeviceKeys, /*case_sensitive=*/true));
    }
  }
  return device;
}

}  // namespace stagefarm::dockerfile
