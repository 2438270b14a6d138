#include "common/oci/image.h"

#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/dockerfile/go_text.h"
#include "nlohmann/json.hpp"

namespace stagefarm::oci {
namespace {

using Json = nlohmann::json;

// ---------------------------------------------------------------------------
// Parsing. Each reader takes the field's path for its error messages.

std::string TypeName(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return "boolean";
    case Json::value_t::string:
      return "string";
    case Json::value_t::array:
      return "array";
    case Json::value_t::object:
      return "object";
    default:
      return "number";
  }
}

absl::Status WrongType(absl::string_view path, absl::string_view expected, const Json& value) {
  return absl::InvalidArgumentError(
      absl::StrCat("image config: ", path, ": expected ", expected, ", got ", TypeName(value)));
}

// The member `key` of `object`, or nullptr when absent or null (Go leaves the
// field at its zero value in both cases).
const Json* Member(const Json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::Status ReadString(const Json& object, const char* key, absl::string_view path,
                        std::string* out) {
  const Json* value = Member(object, key);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_string()) return WrongType(path, "a string", *value);
  *out = value->get<std::string>();
  return absl::OkStatus();
}

absl::Status ReadBool(const Json& object, const char* key, absl::string_view path, bool* out) {
  const Json* value = Member(object, key);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_boolean()) return WrongType(path, "a boolean", *value);
  *out = value->get<bool>();
  return absl::OkStatus();
}

absl::Status ReadInt64(const Json& object, const char* key, absl::string_view path, int64_t* out) {
  const Json* value = Member(object, key);
  if (value == nullptr) return absl::OkStatus();
  if (value->is_number_unsigned()) {
    if (value->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return absl::InvalidArgumentError(
          absl::StrCat("image config: ", path, ": number out of range"));
    }
    *out = static_cast<int64_t>(value->get<uint64_t>());
    return absl::OkStatus();
  }
  if (!value->is_number_integer()) return WrongType(path, "an integer", *value);
  *out = value->get<int64_t>();
  return absl::OkStatus();
}

absl::Status ReadDuration(const Json& object, const char* key, absl::string_view path,
                          absl::Duration* out) {
  int64_t nanos = 0;
  if (absl::Status status = ReadInt64(object, key, path, &nanos); !status.ok()) return status;
  *out = absl::Nanoseconds(nanos);
  return absl::OkStatus();
}

absl::Status ReadStrings(const Json& object, const char* key, absl::string_view path,
                         std::vector<std::string>* out) {
  const Json* value = Member(object, key);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_array()) return WrongType(path, "an array of strings", *value);
  out->clear();
  for (size_t i = 0; i < value->size(); ++i) {
    const Json& item = (*value)[i];
    if (!item.is_string()) return WrongType(absl::StrCat(path, "[", i, "]"), "a string", item);
    out->push_back(item.get<std::string>());
  }
  return absl::OkStatus();
}

// A Go map[string]struct{}: the keys of an object whose values are objects.
absl::Status ReadKeySet(const Json& object, const char* key, absl::string_view path,
                        std::set<std::string>* out) {
  const Json* value = Member(object, key);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_object()) return WrongType(path, "an object", *value);
  out->clear();
  for (const auto& [name, item] : value->items()) {
    if (!item.is_object() && !item.is_null()) {
      return WrongType(absl::StrCat(path, ".", name), "an object", item);
    }
    out->insert(name);
  }
  return absl::OkStatus();
}

absl::Status ReadStringMap(const Json& object, const char* key, absl::string_view path,
                           std::map<std::string, std::string>* out) {
  const Json* value = Member(object, key);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_object()) return WrongType(path, "an object", *value);
  out->clear();
  for (const auto& [name, item] : value->items()) {
    if (item.is_null()) {
      (*out)[name] = "";
      continue;
    }
    if (!item.is_string()) return WrongType(absl::StrCat(path, ".", name), "a string", item);
    (*out)[name] = item.get<std::string>();
  }
  return absl::OkStatus();
}

absl::Status ReadTime(const Json& object, const char* key, absl::string_view path,
                      std::optional<absl::Time>* out) {
  std::string text;
  if (absl::Status status = ReadString(object, key, path, &text); !status.ok()) return status;
  if (Member(object, key) == nullptr) return absl::OkStatus();
  absl::Time time;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, text, &time, &error)) {
    return absl::InvalidArgumentError(
        absl::StrCat("image config: ", path, ": \"", text, "\" is not an RFC 3339 time: ", error));
  }
  *out = time;
  return absl::OkStatus();
}

// Local to this file: the readers below are chains of fallible steps.
#define RETURN_IF_ERROR(expr)                                         \
  do {                                                                \
    if (absl::Status status_ = (expr); !status_.ok()) return status_; \
  } while (false)

absl::Status ReadHealthcheck(const Json& value, HealthcheckConfig* out) {
  if (!value.is_object()) return WrongType("config.Healthcheck", "an object", value);
  RETURN_IF_ERROR(ReadStrings(value, "Test", "config.Healthcheck.Test", &out->test));
  RETURN_IF_ERROR(ReadDuration(value, "Interval", "config.Healthcheck.Interval", &out->interval));
  RETURN_IF_ERROR(ReadDuration(value, "Timeout", "config.Healthcheck.Timeout", &out->timeout));
  RETURN_IF_ERROR(
      ReadDuration(value, "StartPeriod", "config.Healthcheck.StartPeriod", &out->start_period));
  RETURN_IF_ERROR(ReadDuration(value, "StartInterval", "config.Healthcheck.StartInterval",
                               &out->start_interval));
  return ReadInt64(value, "Retries", "config.Healthcheck.Retries", &out->retries);
}

absl::Status ReadContainerConfig(const Json& value, ContainerConfig* out) {
  if (!value.is_object()) return WrongType("config", "an object", value);
  RETURN_IF_ERROR(ReadString(value, "User", "config.User", &out->user));
  RETURN_IF_ERROR(ReadKeySet(value, "ExposedPorts", "config.ExposedPorts", &out->exposed_ports));
  RETURN_IF_ERROR(ReadStrings(value, "Env", "config.Env", &out->env));
  RETURN_IF_ERROR(ReadStrings(value, "Entrypoint", "config.Entrypoint", &out->entrypoint));
  RETURN_IF_ERROR(ReadStrings(value, "Cmd", "config.Cmd", &out->cmd));
  RETURN_IF_ERROR(ReadKeySet(value, "Volumes", "config.Volumes", &out->volumes));
  RETURN_IF_ERROR(ReadString(value, "WorkingDir", "config.WorkingDir", &out->working_dir));
  RETURN_IF_ERROR(ReadStringMap(value, "Labels", "config.Labels", &out->labels));
  RETURN_IF_ERROR(ReadString(value, "StopSignal", "config.StopSignal", &out->stop_signal));
  RETURN_IF_ERROR(ReadBool(value, "ArgsEscaped", "config.ArgsEscaped", &out->args_escaped));
  if (const Json* health = Member(value, "Healthcheck"); health != nullptr) {
    HealthcheckConfig healthcheck;
    RETURN_IF_ERROR(ReadHealthcheck(*health, &healthcheck));
    out->healthcheck = std::move(healthcheck);
  }
  RETURN_IF_ERROR(ReadStrings(value, "OnBuild", "config.OnBuild", &out->on_build));
  return ReadStrings(value, "Shell", "config.Shell", &out->shell);
}

absl::Status ReadHistory(const Json& value, std::vector<HistoryEntry>* out) {
  if (!value.is_array()) return WrongType("history", "an array", value);
  for (size_t i = 0; i < value.size(); ++i) {
    const Json& item = value[i];
    std::string path = absl::StrCat("history[", i, "]");
    if (item.is_null()) {
      out->emplace_back();
      continue;
    }
    if (!item.is_object()) return WrongType(path, "an object", item);
    HistoryEntry entry;
    RETURN_IF_ERROR(ReadTime(item, "created", path + ".created", &entry.created));
    RETURN_IF_ERROR(ReadString(item, "created_by", path + ".created_by", &entry.created_by));
    RETURN_IF_ERROR(ReadString(item, "author", path + ".author", &entry.author));
    RETURN_IF_ERROR(ReadString(item, "comment", path + ".comment", &entry.comment));
    RETURN_IF_ERROR(ReadBool(item, "empty_layer", path + ".empty_layer", &entry.empty_layer));
    out->push_back(std::move(entry));
  }
  return absl::OkStatus();
}

absl::Status ReadRootFs(const Json& value, ImageConfig* out) {
  if (!value.is_object()) return WrongType("rootfs", "an object", value);
  out->rootfs_type.clear();
  RETURN_IF_ERROR(ReadString(value, "type", "rootfs.type", &out->rootfs_type));
  std::vector<std::string> diff_ids;
  RETURN_IF_ERROR(ReadStrings(value, "diff_ids", "rootfs.diff_ids", &diff_ids));
  for (size_t i = 0; i < diff_ids.size(); ++i) {
    absl::StatusOr<digest::Digest> parsed = digest::Digest::Parse(diff_ids[i]);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("image config: rootfs.diff_ids[", i, "]: ", parsed.status().message()));
    }
    out->diff_ids.push_back(*std::move(parsed));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Serialising: a compact JSON writer over a string with Go's escaping.

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}

  // Starts `"key":` inside the current object.
  void Key(absl::string_view key) {
    Separate();
    AppendGoJsonString(out_, key);
    out_ += ':';
    after_key_ = true;
  }
  void String(absl::string_view value) {
    Separate();
    AppendGoJsonString(out_, value);
  }
  void Int(int64_t value) {
    Separate();
    absl::StrAppend(&out_, value);
  }
  void Bool(bool value) {
    Separate();
    out_ += value ? "true" : "false";
  }
  void Begin(char bracket) {
    Separate();
    out_ += bracket;
    first_ = true;
  }
  void End(char bracket) {
    out_ += bracket;
    first_ = false;
  }
  void Strings(const std::vector<std::string>& values) {
    Begin('[');
    for (const std::string& value : values) String(value);
    End(']');
  }
  // A Go map[string]struct{}: {"key":{},...}, keys sorted.
  void KeySet(const std::set<std::string>& keys) {
    Begin('{');
    for (const std::string& key : keys) {
      Key(key);
      Begin('{');
      End('}');
    }
    End('}');
  }

 private:
  void Separate() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!first_) out_ += ',';
    first_ = false;
  }

  std::string& out_;
  bool first_ = true;
  bool after_key_ = false;
};

std::string FormatGoTime(absl::Time time) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E*SZ", time, absl::UTCTimeZone());
}

void WriteContainerConfig(Writer& w, const ContainerConfig& c) {
  w.Begin('{');
  if (!c.user.empty()) w.Key("User"), w.String(c.user);
  if (!c.exposed_ports.empty()) w.Key("ExposedPorts"), w.KeySet(c.exposed_ports);
  if (!c.env.empty()) w.Key("Env"), w.Strings(c.env);
  if (!c.entrypoint.empty()) w.Key("Entrypoint"), w.Strings(c.entrypoint);
  if (!c.cmd.empty()) w.Key("Cmd"), w.Strings(c.cmd);
  if (!c.volumes.empty()) w.Key("Volumes"), w.KeySet(c.volumes);
  if (!c.working_dir.empty()) w.Key("WorkingDir"), w.String(c.working_dir);
  if (!c.labels.empty()) {
    w.Key("Labels");
    w.Begin('{');
    for (const auto& [key, value] : c.labels) w.Key(key), w.String(value);
    w.End('}');
  }
  if (!c.stop_signal.empty()) w.Key("StopSignal"), w.String(c.stop_signal);
  if (c.args_escaped) w.Key("ArgsEscaped"), w.Bool(true);
  if (c.healthcheck) {
    const HealthcheckConfig& h = *c.healthcheck;
    w.Key("Healthcheck");
    w.Begin('{');
    if (!h.test.empty()) w.Key("Test"), w.Strings(h.test);
    auto duration = [&](const char* key, absl::Duration d) {
      if (d != absl::ZeroDuration()) w.Key(key), w.Int(absl::ToInt64Nanoseconds(d));
    };
    duration("Interval", h.interval);
    duration("Timeout", h.timeout);
    duration("StartPeriod", h.start_period);
    duration("StartInterval", h.start_interval);
    if (h.retries != 0) w.Key("Retries"), w.Int(h.retries);
    w.End('}');
  }
  if (!c.on_build.empty()) w.Key("OnBuild"), w.Strings(c.on_build);
  if (!c.shell.empty()) w.Key("Shell"), w.Strings(c.shell);
  w.End('}');
}

}  // namespace

absl::StatusOr<ImageConfig> ParseImageConfig(absl::string_view json) {
  Json document = Json::parse(json.begin(), json.end(), nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded()) {
    return absl::InvalidArgumentError("image config: not valid JSON");
  }
  if (!document.is_object()) return WrongType("(document)", "an object", document);
  ImageConfig config;
  config.rootfs_type.clear();
  RETURN_IF_ERROR(ReadTime(document, "created", "created", &config.created));
  RETURN_IF_ERROR(ReadString(document, "author", "author", &config.author));
  RETURN_IF_ERROR(ReadString(document, "architecture", "architecture", &config.architecture));
  RETURN_IF_ERROR(ReadString(document, "os", "os", &config.os));
  RETURN_IF_ERROR(ReadString(document, "os.version", "os.version", &config.os_version));
  RETURN_IF_ERROR(ReadStrings(document, "os.features", "os.features", &config.os_features));
  RETURN_IF_ERROR(ReadString(document, "variant", "variant", &config.variant));
  if (const Json* value = Member(document, "config"); value != nullptr) {
    RETURN_IF_ERROR(ReadContainerConfig(*value, &config.config));
  }
  if (const Json* value = Member(document, "rootfs"); value != nullptr) {
    RETURN_IF_ERROR(ReadRootFs(*value, &config));
  }
  if (const Json* value = Member(document, "history"); value != nullptr) {
    RETURN_IF_ERROR(ReadHistory(*value, &config.history));
  }
  return config;
}

std::string SerializeImageConfig(const ImageConfig& config) {
  std::string out;
  Writer w(out);
  // Sorted top-level keys: architecture, author, config, created, history,
  // os, os.features, os.version, rootfs, variant.
  w.Begin('{');
  w.Key("architecture"), w.String(config.architecture);
  if (!config.author.empty()) w.Key("author"), w.String(config.author);
  w.Key("config");
  WriteContainerConfig(w, config.config);
  if (config.created) w.Key("created"), w.String(FormatGoTime(*config.created));
  if (!config.history.empty()) {
    w.Key("history");
    w.Begin('[');
    for (const HistoryEntry& h : config.history) {
      w.Begin('{');
      if (h.created) w.Key("created"), w.String(FormatGoTime(*h.created));
      if (!h.created_by.empty()) w.Key("created_by"), w.String(h.created_by);
      if (!h.author.empty()) w.Key("author"), w.String(h.author);
      if (!h.comment.empty()) w.Key("comment"), w.String(h.comment);
      if (h.empty_layer) w.Key("empty_layer"), w.Bool(true);
      w.End('}');
    }
    w.End(']');
  }
  w.Key("os"), w.String(config.os);
  if (!config.os_features.empty()) w.Key("os.features"), w.Strings(config.os_features);
  if (!config.os_version.empty()) w.Key("os.version"), w.String(config.os_version);
  w.Key("rootfs");
  w.Begin('{');
  w.Key("type"), w.String(config.rootfs_type);
  // Go writes a nil diff_ids as null; an empty list is what validators accept.
  w.Key("diff_ids");
  w.Begin('[');
  for (const digest::Digest& d : config.diff_ids) w.String(d.ToString());
  w.End(']');
  w.End('}');
  if (!config.variant.empty()) w.Key("variant"), w.String(config.variant);
  w.End('}');
  return out;
}

ImageConfig ScratchConfig(const Platform& platform) {
  ImageConfig config;
  config.architecture = platform.architecture;
  config.os = platform.os;
  config.os_version = platform.os_version;
  config.variant = platform.variant;
  config.config.working_dir = "/";
  config.config.env.push_back(absl::StrCat("PATH=", kDefaultPathEnv));
  return config;
}

void AppendGoJsonString(std::string& out, absl::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  size_t i = 0;
  while (i < text.size()) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        default:
          if (c < 0x20 || c == '<' || c == '>' || c == '&') {
            out += "\\u00";
            out += kHex[c >> 4];
            out += kHex[c & 0xF];
          } else {
            out += static_cast<char>(c);
          }
      }
      ++i;
      continue;
    }
    dockerfile::go::DecodedRune rune = dockerfile::go::DecodeRune(text.substr(i));
    if (rune.rune == dockerfile::go::kRuneError && rune.width == 1) {
      out += "\\ufffd";
    } else if (rune.rune == 0x2028 || rune.rune == 0x2029) {
      out += rune.rune == 0x2028 ? "\\u2028" : "\\u2029";
    } else {
      out.append(text.data() + i, rune.width);
    }
    i += rune.width;
  }
  out += '"';
}

std::string GoDurationString(absl::Duration duration) {
  int64_t nanos = absl::ToInt64Nanoseconds(duration);
  if (nanos == 0) return "0s";
  bool negative = nanos < 0;
  // The magnitude as unsigned, so INT64_MIN works.
  uint64_t u = negative ? uint64_t{0} - static_cast<uint64_t>(nanos) : static_cast<uint64_t>(nanos);
  // Appends `value / 10^digits` with the fraction's trailing zeros removed.
  auto fraction = [](uint64_t value, int digits) {
    std::string frac;
    bool printed = false;
    for (int i = 0; i < digits; ++i) {
      int digit = static_cast<int>(value % 10);
      printed = printed || digit != 0;
      if (printed) frac.insert(frac.begin(), static_cast<char>('0' + digit));
      value /= 10;
    }
    std::string whole = absl::StrCat(value);
    return frac.empty() ? whole : absl::StrCat(whole, ".", frac);
  };
  std::string out;
  if (u < 1000000000) {
    if (u < 1000) {
      out = absl::StrCat(u, "ns");
    } else if (u < 1000000) {
      out = fraction(u, 3) + "\xC2\xB5s";  // µs
    } else {
      out = fraction(u, 6) + "ms";
    }
  } else {
    out = fraction(u % 60000000000, 9) + "s";
    uint64_t minutes = u / 60000000000;
    if (minutes > 0) {
      out = absl::StrCat(minutes % 60, "m", out);
      uint64_t hours = minutes / 60;
      if (hours > 0) out = absl::StrCat(hours, "h", out);
    }
  }
  return negative ? "-" + out : out;
}

#undef RETURN_IF_ERROR

}  // namespace stagefarm::oci
