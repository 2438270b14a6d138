#include "common/graph/planned_instruction.h"

#include <algorithm>
#include <type_traits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"

namespace stagefarm::graph {
namespace {

using dockerfile::ShellEnv;
using dockerfile::ShellLexer;

// True when the lexer would return `word` unchanged whatever the escape
// token: printable ASCII without `$`, quotes or escape characters.
bool IsLiteral(absl::string_view word) {
  for (unsigned char c : word) {
    if (c < 0x20 || c > 0x7e || c == '$' || c == '\'' || c == '"' || c == '\\' || c == '`') {
      return false;
    }
  }
  return true;
}

// A JSON string literal.
std::string JsonString(absl::string_view s) {
  if (std::none_of(s.begin(), s.end(), [](unsigned char c) {
        return c < 0x20 || c == 0x7f || c == '"' || c == '\\';
      })) {
    return absl::StrCat("\"", s, "\"");
  }
  std::string out = "\"";
  for (unsigned char c : s) {
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
      default:
        if (c < 0x20 || c == 0x7f) {
          absl::StrAppendFormat(&out, "\\u%04x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

std::string JsonArray(absl::Span<const std::string> items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    out += JsonString(items[i]);
  }
  out += ']';
  return out;
}

// `s` as is when it is one plain word, else JSON-quoted, so that no two
// different values render alike.
std::string Word(absl::string_view s) {
  bool plain = !s.empty();
  for (unsigned char c : s) {
    if (c <= 0x20 || c == 0x7f || c == '"' || c == '\\') plain = false;
  }
  return plain ? std::string(s) : JsonString(s);
}

void AppendFlag(std::string& out, absl::string_view name, absl::string_view value) {
  absl::StrAppend(&out, " --", name, "=", Word(value));
}

void AppendBoolFlag(std::string& out, absl::string_view name, bool set) {
  if (set) absl::StrAppend(&out, " --", name);
}

// A CSV field as Go's encoding/csv writes it.
std::string CsvField(absl::string_view s) {
  if (s.find_first_of(",\"\r\n") == absl::string_view::npos && (s.empty() || s[0] != ' ')) {
    return std::string(s);
  }
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

// A mount in a canonical field order with every effective default spelt out.
std::string MountSpec(const dockerfile::Mount& m) {
  std::string out = absl::StrCat("type=", dockerfile::MountTypeName(m.type));
  const auto field = [&out](absl::string_view key, absl::string_view value) {
    absl::StrAppend(&out, ",", key, "=", CsvField(value));
  };
  if (!m.from.empty()) field("from", m.from);
  if (!m.source.empty()) field("source", m.source);
  if (!m.target.empty()) field("target", m.target);
  field("readonly", m.read_only ? "true" : "false");
  if (!m.id.empty()) field("id", m.id);
  if (m.sharing) field("sharing", dockerfile::MountSharingName(*m.sharing));
  if (m.size_limit != 0) field("size", absl::StrCat(m.size_limit));
  if (m.mode) field("mode", absl::StrFormat("%o", *m.mode));
  if (m.uid) field("uid", absl::StrCat(*m.uid));
  if (m.gid) field("gid", absl::StrCat(*m.gid));
  if (m.required) field("required", "true");
  if (m.env) field("env", *m.env);
  return out;
}

// Exec form as a JSON array, shell form as written, heredoc bodies after it.
void AppendCommandLine(std::string& out, const dockerfile::CommandLine& command) {
  if (!command.prepend_shell) {
    absl::StrAppend(&out, " ", JsonArray(command.args));
    return;
  }
  for (const std::string& arg : command.args) absl::StrAppend(&out, " ", arg);
  for (const dockerfile::Heredoc& file : command.files) {
    absl::StrAppend(&out, "\n", file.content, file.name);
  }
}

void AppendKeyValues(std::string& out, const std::vector<dockerfile::KeyValue>& pairs) {
  for (const dockerfile::KeyValue& kv : pairs) {
    absl::StrAppend(&out, " ", Word(kv.key), "=", Word(kv.value));
  }
}

// COPY/ADD: sources and destination as one JSON array, then heredoc sources.
void AppendFiles(std::string& out, const dockerfile::SourcesAndDest& files) {
  out += " [";
  for (const std::string& path : files.source_paths) absl::StrAppend(&out, JsonString(path), ",");
  for (const dockerfile::SourceContent& content : files.source_contents) {
    absl::StrAppend(&out, JsonString(absl::StrCat("<<", content.path)), ",");
  }
  absl::StrAppend(&out, JsonString(files.dest), "]");
  for (const dockerfile::SourceContent& content : files.source_contents) {
    absl::StrAppend(&out, "\n", content.data, content.path);
  }
}

class Expander {
 public:
  Expander(const ShellLexer& lexer, const ShellEnv& env) : lexer_(lexer), env_(env) {}

  absl::Status Word(std::string& word) const {
    if (IsLiteral(word)) return absl::OkStatus();
    absl::StatusOr<std::string> expanded = lexer_.ProcessWord(word, env_);
    if (!expanded.ok()) return expanded.status();
    word = *std::move(expanded);
    return absl::OkStatus();
  }

  absl::Status Words(std::vector<std::string>& words) const {
    for (std::string& word : words) {
      if (absl::Status s = Word(word); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status KeyValues(std::vector<dockerfile::KeyValue>& pairs) const {
    for (dockerfile::KeyValue& kv : pairs) {
      if (absl::Status s = Word(kv.key); !s.ok()) return s;
      if (absl::Status s = Word(kv.value); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // Sources, destination, and heredoc bodies whose delimiter was not quoted.
  // Bodies go through a lexer with `\` as escape that leaves quotes alone
  // (BuildKit's ExpandRaw), whatever the escape directive says.
  absl::Status Files(dockerfile::SourcesAndDest& files) const {
    if (absl::Status s = Words(files.source_paths); !s.ok()) return s;
    if (absl::Status s = Word(files.dest); !s.ok()) return s;
    const ShellLexer raw('\\', {.skip_process_quotes = true});
    for (dockerfile::SourceContent& content : files.source_contents) {
      if (!content.expand) continue;
      absl::StatusOr<std::string> data = raw.ProcessWord(content.data, env_);
      if (!data.ok()) return data.status();
      content.data = *std::move(data);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> Split(absl::string_view word) const {
    return lexer_.ProcessWords(word, env_);
  }

 private:
  const ShellLexer& lexer_;
  const ShellEnv& env_;
};

}  // namespace

absl::StatusOr<std::string> ExpandWord(const ShellLexer& lexer, absl::string_view word,
                                       dockerfile::EnvLookup env) {
  if (IsLiteral(word)) return std::string(word);
  return lexer.ProcessWord(word, env);
}

absl::string_view SourceKindName(SourceKind kind) {
  switch (kind) {
    case SourceKind::kContext:
      return "context";
    case SourceKind::kStage:
      return "stage";
    case SourceKind::kImage:
      return "image";
    case SourceKind::kUrl:
      return "url";
  }
  return "unknown";
}

absl::StatusOr<ExpandedInstruction> Expand(const dockerfile::Instruction& instruction,
                                           const ShellLexer& lexer, const ShellEnv& env) {
  const Expander expand(lexer, env);
  ExpandedInstruction out{instruction, {}};
  absl::Status status = std::visit(
      [&](auto& typed) -> absl::Status {
        using T = std::decay_t<decltype(typed)>;
        if constexpr (std::is_same_v<T, dockerfile::Env>) {
          return expand.KeyValues(typed.vars);
        } else if constexpr (std::is_same_v<T, dockerfile::Label>) {
          return expand.KeyValues(typed.labels);
        } else if constexpr (std::is_same_v<T, dockerfile::Copy>) {
          if (absl::Status s = expand.Files(typed.files); !s.ok()) return s;
          if (absl::Status s = expand.Word(typed.chown); !s.ok()) return s;
          return expand.Word(typed.chmod);
        } else if constexpr (std::is_same_v<T, dockerfile::Add>) {
          if (absl::Status s = expand.Files(typed.files); !s.ok()) return s;
          if (absl::Status s = expand.Word(typed.chown); !s.ok()) return s;
          if (absl::Status s = expand.Word(typed.chmod); !s.ok()) return s;
          return expand.Word(typed.checksum);
        } else if constexpr (std::is_same_v<T, dockerfile::Workdir>) {
          return expand.Word(typed.path);
        } else if constexpr (std::is_same_v<T, dockerfile::User>) {
          return expand.Word(typed.user);
        } else if constexpr (std::is_same_v<T, dockerfile::Volume>) {
          if (absl::Status s = expand.Words(typed.volumes); !s.ok()) return s;
          for (const std::string& volume : typed.volumes) {
            if (volume.empty()) {
              return absl::InvalidArgumentError("VOLUME specified can not be an empty string");
            }
          }
          return absl::OkStatus();
        } else if constexpr (std::is_same_v<T, dockerfile::Stopsignal>) {
          return expand.Word(typed.signal);
        } else if constexpr (std::is_same_v<T, dockerfile::Expose>) {
          std::vector<std::string> ports;
          for (const std::string& port : typed.ports) {
            absl::StatusOr<std::vector<std::string>> split = expand.Split(port);
            if (!split.ok()) return split.status();
            ports.insert(ports.end(), split->begin(), split->end());
          }
          typed.ports = std::move(ports);
          return absl::OkStatus();
        } else if constexpr (std::is_same_v<T, dockerfile::Run>) {
          for (const std::string& spec : typed.mounts) {
            absl::StatusOr<dockerfile::Mount> mount = dockerfile::ParseMount(
                spec, [&](absl::string_view word) { return ExpandWord(lexer, word, env); });
            if (!mount.ok()) return mount.status();
            out.mounts.push_back(*std::move(mount));
          }
          return absl::OkStatus();
        } else {
          return absl::OkStatus();
        }
      },
      out.instruction);
  if (!status.ok()) return status;
  return out;
}

std::string NormalizedText(const dockerfile::Instruction& expanded,
                           absl::Span<const dockerfile::Mount> mounts) {
  std::string out;
  out.reserve(128);
  std::visit(
      [&](const auto& typed) {
        using T = std::decay_t<decltype(typed)>;
        out.append(typed.keyword);
        absl::AsciiStrToLower(&out);
        if constexpr (std::is_same_v<T, dockerfile::From>) {
          if (!typed.platform.empty()) AppendFlag(out, "platform", typed.platform);
          absl::StrAppend(&out, " ", Word(typed.base_name));
          if (!typed.stage_name.empty()) absl::StrAppend(&out, " as ", typed.stage_name);
        } else if constexpr (std::is_same_v<T, dockerfile::Run>) {
          for (const dockerfile::Device& device : typed.devices) {
            AppendFlag(out, "device",
                       device.required ? absl::StrCat(device.name, ",required") : device.name);
          }
          for (const dockerfile::Mount& mount : mounts) AppendFlag(out, "mount", MountSpec(mount));
          if (typed.network == dockerfile::NetworkMode::kNone) AppendFlag(out, "network", "none");
          if (typed.network == dockerfile::NetworkMode::kHost) AppendFlag(out, "network", "host");
          if (typed.security == dockerfile::SecurityMode::kInsecure) {
            AppendFlag(out, "security", "insecure");
          }
          AppendCommandLine(out, typed.command);
        } else if constexpr (std::is_same_v<T, dockerfile::Cmd> ||
                             std::is_same_v<T, dockerfile::Entrypoint>) {
          AppendCommandLine(out, typed.command);
        } else if constexpr (std::is_same_v<T, dockerfile::Shell>) {
          absl::StrAppend(&out, " ", JsonArray(typed.shell));
        } else if constexpr (std::is_same_v<T, dockerfile::Label>) {
          AppendKeyValues(out, typed.labels);
        } else if constexpr (std::is_same_v<T, dockerfile::Env>) {
          AppendKeyValues(out, typed.vars);
        } else if constexpr (std::is_same_v<T, dockerfile::Maintainer>) {
          absl::StrAppend(&out, " ", Word(typed.maintainer));
        } else if constexpr (std::is_same_v<T, dockerfile::Expose>) {
          for (const std::string& port : typed.ports) absl::StrAppend(&out, " ", Word(port));
        } else if constexpr (std::is_same_v<T, dockerfile::Add>) {
          if (!typed.checksum.empty()) AppendFlag(out, "checksum", typed.checksum);
          if (!typed.chmod.empty()) AppendFlag(out, "chmod", typed.chmod);
          if (!typed.chown.empty()) AppendFlag(out, "chown", typed.chown);
          for (const std::string& pattern : typed.exclude) AppendFlag(out, "exclude", pattern);
          if (typed.keep_git_dir) {
            AppendFlag(out, "keep-git-dir", *typed.keep_git_dir ? "true" : "false");
          }
          AppendBoolFlag(out, "link", typed.link);
          if (typed.unpack) AppendFlag(out, "unpack", *typed.unpack ? "true" : "false");
          AppendFiles(out, typed.files);
        } else if constexpr (std::is_same_v<T, dockerfile::Copy>) {
          if (!typed.chmod.empty()) AppendFlag(out, "chmod", typed.chmod);
          if (!typed.chown.empty()) AppendFlag(out, "chown", typed.chown);
          for (const std::string& pattern : typed.exclude) AppendFlag(out, "exclude", pattern);
          if (!typed.from.empty()) AppendFlag(out, "from", typed.from);
          AppendBoolFlag(out, "link", typed.link);
          AppendBoolFlag(out, "parents", typed.parents);
          AppendFiles(out, typed.files);
        } else if constexpr (std::is_same_v<T, dockerfile::Volume>) {
          absl::StrAppend(&out, " ", JsonArray(typed.volumes));
        } else if constexpr (std::is_same_v<T, dockerfile::User>) {
          absl::StrAppend(&out, " ", Word(typed.user));
        } else if constexpr (std::is_same_v<T, dockerfile::Workdir>) {
          absl::StrAppend(&out, " ", Word(typed.path));
        } else if constexpr (std::is_same_v<T, dockerfile::Arg>) {
          for (const dockerfile::ArgDefinition& def : typed.args) {
            absl::StrAppend(&out, " ", Word(def.key));
            if (def.value) absl::StrAppend(&out, "=", Word(*def.value));
          }
        } else if constexpr (std::is_same_v<T, dockerfile::Onbuild>) {
          absl::StrAppend(&out, " ", typed.expression);
        } else if constexpr (std::is_same_v<T, dockerfile::Stopsignal>) {
          absl::StrAppend(&out, " ", Word(typed.signal));
        } else if constexpr (std::is_same_v<T, dockerfile::Healthcheck>) {
          const dockerfile::HealthConfig& h = typed.health;
          const auto duration = [&out](absl::string_view name, absl::Duration d) {
            if (d != absl::ZeroDuration()) AppendFlag(out, name, absl::FormatDuration(d));
          };
          duration("interval", h.interval);
          if (h.retries != 0) AppendFlag(out, "retries", absl::StrCat(h.retries));
          duration("start-interval", h.start_interval);
          duration("start-period", h.start_period);
          duration("timeout", h.timeout);
          absl::StrAppend(&out, " ", JsonArray(h.test));
        }
      },
      expanded);
  return out;
}

}  // namespace stagefarm::graph
