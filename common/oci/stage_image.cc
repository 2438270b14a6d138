#include "common/oci/stage_image.h"

#include <charconv>
#include <cstdint>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/dockerfile/dockerignore.h"
#include "common/dockerfile/go_text.h"

namespace stagefarm::oci {
namespace {

namespace go = dockerfile::go;

// fmt's %q of a []string: ["a" "b"].
std::string GoQuotedList(absl::Span<const std::string> values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ' ';
    go::AppendQuoted(out, values[i]);
  }
  return out + "]";
}

// fmt's %v of a []string: [a b].
std::string GoList(absl::Span<const std::string> values) {
  return absl::StrCat("[", absl::StrJoin(values, " "), "]");
}

// strconv.ParseUint(s, 10, 16).
std::optional<uint64_t> ParseUint16(absl::string_view s) {
  if (s.empty()) return std::nullopt;
  if (s[0] == '+') s.remove_prefix(1);
  uint64_t value = 0;
  auto [end, error] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (error != std::errc() || end != s.data() + s.size() || value > 0xFFFF) return std::nullopt;
  return value;
}

// nat.ParsePortRange.
std::optional<std::pair<uint64_t, uint64_t>> ParsePortRange(absl::string_view ports) {
  if (!absl::StrContains(ports, '-')) {
    std::optional<uint64_t> port = ParseUint16(ports);
    if (!port) return std::nullopt;
    return std::make_pair(*port, *port);
  }
  std::vector<absl::string_view> parts = absl::StrSplit(ports, '-');
  std::optional<uint64_t> start = ParseUint16(parts[0]);
  std::optional<uint64_t> end = ParseUint16(parts[1]);
  if (!start || !end || *end < *start) return std::nullopt;
  return std::make_pair(*start, *end);
}

// Linux signal names as moby's signal.SignalMap has them (without "SIG").
bool IsSignalName(absl::string_view name) {
  static constexpr absl::string_view kNames[] = {
      "ABRT", "ALRM",   "BUS",  "CHLD",   "CLD",   "CONT", "FPE",  "HUP",   "ILL",
      "INT",  "IO",     "IOT",  "KILL",   "PIPE",  "POLL", "PROF", "PWR",   "QUIT",
      "SEGV", "STKFLT", "STOP", "SYS",    "TERM",  "TRAP", "TSTP", "TTIN",  "TTOU",
      "URG",  "USR1",   "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN", "RTMAX"};
  for (absl::string_view known : kNames) {
    if (name == known) return true;
  }
  // RTMIN+1..RTMIN+15 and RTMAX-14..RTMAX-1.
  for (int i = 1; i <= 15; ++i) {
    if (name == absl::StrCat("RTMIN+", i)) return true;
    if (i <= 14 && name == absl::StrCat("RTMAX-", i)) return true;
  }
  return false;
}

// moby's signal.ParseSignal, as BuildKit checks STOPSIGNAL.
absl::Status CheckSignal(absl::string_view raw) {
  int64_t number = 0;
  auto [end, error] = std::from_chars(raw.data(), raw.data() + raw.size(), number);
  if (error == std::errc() && end == raw.data() + raw.size() && !raw.empty()) {
    if (number != 0) return absl::OkStatus();
  } else {
    std::string name = absl::AsciiStrToUpper(raw);
    absl::string_view bare = name;
    absl::ConsumePrefix(&bare, "SIG");
    if (IsSignalName(bare)) return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("Invalid signal: ", raw));
}

// withShell: the shell form's words joined and appended to the SHELL.
std::vector<std::string> WithShell(const ContainerConfig& config,
                                   const dockerfile::CommandLine& command) {
  std::vector<std::string> args = config.shell;
  if (args.empty()) args = {"/bin/sh", "-c"};
  args.push_back(absl::StrJoin(command.args, " "));
  return args;
}

std::vector<std::string> CommandArgs(const ContainerConfig& config,
                                     const dockerfile::CommandLine& command) {
  return command.prepend_shell ? WithShell(config, command) : command.args;
}

// "KEY=value" pairs of LABEL and ENV as KeyValuePair.String() writes them.
std::string KeyValues(absl::string_view keyword, absl::Span<const dockerfile::KeyValue> pairs) {
  std::string out(keyword);
  for (const dockerfile::KeyValue& kv : pairs) absl::StrAppend(&out, " ", kv.key, "=", kv.value);
  return out;
}

std::string CopyHistory(absl::string_view keyword, const dockerfile::SourcesAndDest& files) {
  std::string out(keyword);
  for (const std::string& source : files.source_paths) absl::StrAppend(&out, " ", source);
  for (const dockerfile::SourceContent& content : files.source_contents) {
    absl::StrAppend(&out, " <<", content.path);
  }
  absl::StrAppend(&out, " ", files.dest);
  return out;
}

}  // namespace

absl::StatusOr<std::set<std::string>> ParseExposedPort(absl::string_view spec) {
  // splitParts: [ip:[hostport]:]containerport.
  std::vector<absl::string_view> parts = absl::StrSplit(spec, ':');
  absl::string_view container = parts.back();
  absl::string_view host = parts.size() >= 2 ? parts[parts.size() - 2] : "";
  // SplitProtoPort: "port/proto"; no or empty proto is tcp.
  absl::string_view proto = "tcp";
  std::vector<absl::string_view> proto_parts = absl::StrSplit(container, '/');
  if (container.empty() || proto_parts[0].empty()) {
    return absl::InvalidArgumentError(absl::StrCat("no port specified: ", spec, "<empty>"));
  }
  container = proto_parts[0];
  if (proto_parts.size() > 1 && !proto_parts[1].empty()) proto = proto_parts[1];
  std::optional<std::pair<uint64_t, uint64_t>> range = ParsePortRange(container);
  if (!range) return absl::InvalidArgumentError(absl::StrCat("invalid containerPort: ", container));
  if (!host.empty() && !ParsePortRange(host)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid hostPort: ", host));
  }
  std::string lower_proto = absl::AsciiStrToLower(proto);
  if (lower_proto != "tcp" && lower_proto != "udp" && lower_proto != "sctp") {
    return absl::InvalidArgumentError(absl::StrCat("invalid proto: ", proto));
  }
  std::set<std::string> ports;
  for (uint64_t port = range->first; port <= range->second; ++port) {
    ports.insert(absl::StrCat(port, "/", lower_proto));
  }
  return ports;
}

StageImage::StageImage(ImageConfig base, std::optional<absl::Time> created)
    : config_(std::move(base)), created_(created) {}

void StageImage::AddHistory(std::string created_by, bool with_layer) {
  HistoryEntry entry;
  entry.created = created_;
  entry.created_by = std::move(created_by);
  entry.comment = std::string(kBuildkitHistoryComment);
  entry.empty_layer = !with_layer;
  config_.history.push_back(std::move(entry));
}

void StageImage::MarkLastLayerEmpty() {
  if (!config_.history.empty()) config_.history.back().empty_layer = true;
}

void StageImage::DateLastLayer(absl::Time made) {
  if (!config_.history.empty() && !config_.history.back().created) {
    config_.history.back().created = made;
  }
}

std::optional<absl::Time> StageImage::LastHistoryTime() const {
  for (auto it = config_.history.rbegin(); it != config_.history.rend(); ++it) {
    if (it->created) return it->created;
  }
  return std::nullopt;
}

absl::Status StageImage::Apply(const dockerfile::Instruction& instruction,
                               absl::Span<const std::string> run_build_args) {
  ContainerConfig& c = config_.config;
  if (const auto* env = std::get_if<dockerfile::Env>(&instruction)) {
    for (const dockerfile::KeyValue& kv : env->vars) {
      std::string entry = absl::StrCat(kv.key, "=", kv.value);
      bool replaced = false;
      for (std::string& existing : c.env) {
        if (absl::string_view(existing).substr(0, existing.find('=')) == kv.key) {
          existing = entry;
          replaced = true;
          break;
        }
      }
      if (!replaced) c.env.push_back(std::move(entry));
    }
    AddHistory(KeyValues("ENV", env->vars), false);
  } else if (const auto* label = std::get_if<dockerfile::Label>(&instruction)) {
    for (const dockerfile::KeyValue& kv : label->labels) c.labels[kv.key] = kv.value;
    AddHistory(KeyValues("LABEL", label->labels), false);
  } else if (const auto* expose = std::get_if<dockerfile::Expose>(&instruction)) {
    std::set<std::string> ports;
    for (const std::string& spec : expose->ports) {
      absl::StatusOr<std::set<std::string>> parsed = ParseExposedPort(spec);
      if (!parsed.ok()) return parsed.status();
      ports.insert(parsed->begin(), parsed->end());
    }
    c.exposed_ports.insert(ports.begin(), ports.end());
    // %v of Go's map[nat.Port]struct{}: keys sorted, "map[53/udp:{} 8080/tcp:{}]".
    std::string text = "EXPOSE map[";
    bool first = true;
    for (const std::string& port : ports) {
      absl::StrAppend(&text, first ? "" : " ", port, ":{}");
      first = false;
    }
    AddHistory(text + "]", false);
  } else if (const auto* volume = std::get_if<dockerfile::Volume>(&instruction)) {
    for (const std::string& path : volume->volumes) {
      if (path.empty()) {
        return absl::InvalidArgumentError("VOLUME specified can not be an empty string");
      }
    }
    c.volumes.insert(volume->volumes.begin(), volume->volumes.end());
    AddHistory(absl::StrCat("VOLUME ", GoList(volume->volumes)), false);
  } else if (const auto* user = std::get_if<dockerfile::User>(&instruction)) {
    c.user = user->user;
    AddHistory(absl::StrCat("USER ", user->user), false);
  } else if (const auto* workdir = std::get_if<dockerfile::Workdir>(&instruction)) {
    // system.NormalizeWorkdir: a relative path is joined to the current one
    // ("/" when unset); the result is cleaned.
    std::string path = workdir->path;
    if (path.empty() || path[0] != '/') {
      path = absl::StrCat("/", c.working_dir, "/", path);
    }
    c.working_dir = dockerfile::CleanPath(path);  // Go's path.Clean
    // BuildKit creates the directory (a FileOp mkdir: a layer) unless it is "/".
    AddHistory(absl::StrCat("WORKDIR ", c.working_dir), c.working_dir != "/");
  } else if (const auto* cmd = std::get_if<dockerfile::Cmd>(&instruction)) {
    c.cmd = CommandArgs(c, cmd->command);
    c.args_escaped = true;
    cmd_set_ = true;
    AddHistory(absl::StrCat("CMD ", GoQuotedList(c.cmd)), false);
  } else if (const auto* entrypoint = std::get_if<dockerfile::Entrypoint>(&instruction)) {
    c.entrypoint = CommandArgs(c, entrypoint->command);
    if (!cmd_set_) c.cmd.clear();
    AddHistory(absl::StrCat("ENTRYPOINT ", GoQuotedList(c.entrypoint)), false);
  } else if (const auto* shell = std::get_if<dockerfile::Shell>(&instruction)) {
    c.shell = shell->shell;
    AddHistory(absl::StrCat("SHELL ", GoList(shell->shell)), false);
  } else if (const auto* stop = std::get_if<dockerfile::Stopsignal>(&instruction)) {
    if (absl::Status status = CheckSignal(stop->signal); !status.ok()) return status;
    c.stop_signal = stop->signal;
    AddHistory(absl::StrCat("STOPSIGNAL ", stop->signal), false);
  } else if (const auto* health = std::get_if<dockerfile::Healthcheck>(&instruction)) {
    const dockerfile::HealthConfig& h = health->health;
    HealthcheckConfig config;
    config.test = h.test;
    config.interval = h.interval;
    config.timeout = h.timeout;
    config.start_period = h.start_period;
    config.start_interval = h.start_interval;
    config.retries = h.retries;
    c.healthcheck = config;
    // %q of *HealthConfig: &{Test Interval Timeout StartPeriod StartInterval
    // Retries}, durations through their String method, Retries as a rune.
    AddHistory(absl::StrCat("HEALTHCHECK &{", GoQuotedList(h.test), " ",
                            go::Quote(GoDurationString(h.interval)), " ",
                            go::Quote(GoDurationString(h.timeout)), " ",
                            go::Quote(GoDurationString(h.start_period)), " ",
                            go::Quote(GoDurationString(h.start_interval)), " ",
                            go::QuoteRune(h.retries), "}"),
               false);
  } else if (const auto* onbuild = std::get_if<dockerfile::Onbuild>(&instruction)) {
    c.on_build.push_back(onbuild->expression);
  } else if (const auto* maintainer = std::get_if<dockerfile::Maintainer>(&instruction)) {
    config_.author = maintainer->maintainer;
    AddHistory(absl::StrCat("MAINTAINER ", maintainer->maintainer), false);
  } else if (const auto* arg = std::get_if<dockerfile::Arg>(&instruction)) {
    std::vector<std::string> parts;
    for (const dockerfile::ArgDefinition& def : arg->args) {
      parts.push_back(def.value ? absl::StrCat(def.key, "=", *def.value) : def.key);
    }
    AddHistory(absl::StrCat("ARG ", absl::StrJoin(parts, " ")), false);
  } else if (const auto* run = std::get_if<dockerfile::Run>(&instruction)) {
    // runCommandString: "|N K=V ... " before the arguments when the stage has build args.
    std::string text = "RUN ";
    if (!run_build_args.empty()) {
      absl::StrAppend(&text, "|", run_build_args.size(), " ", absl::StrJoin(run_build_args, " "),
                      " ");
    }
    absl::StrAppend(&text, absl::StrJoin(CommandArgs(c, run->command), " "), " # buildkit");
    AddHistory(std::move(text), true);
  } else if (const auto* copy = std::get_if<dockerfile::Copy>(&instruction)) {
    AddHistory(CopyHistory("COPY", copy->files) + " # buildkit", true);
  } else if (const auto* add = std::get_if<dockerfile::Add>(&instruction)) {
    AddHistory(CopyHistory("ADD", add->files) + " # buildkit", true);
  } else {
    return absl::InvalidArgumentError("FROM cannot be applied to an image config");
  }
  return absl::OkStatus();
}

}  // namespace stagefarm::oci
