#include "common/dockerfile/instructions.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/dockerfile/builder_flags.h"
#include "common/dockerfile/go_text.h"
#include "common/dockerfile/suggestion.h"

namespace stagefarm::dockerfile {
namespace {

constexpr absl::string_view kRangePayload = "type.stagefarm.dev/dockerfile.SourceRange";
constexpr absl::string_view kMessagePayload = "type.stagefarm.dev/dockerfile.ReferenceMessage";

absl::Status Invalid(std::string message) { return absl::InvalidArgumentError(std::move(message)); }

absl::Status ExactlyOneArgument(absl::string_view command) {
  return Invalid(absl::StrCat(command, " requires exactly one argument"));
}

absl::Status AtLeastOneArgument(absl::string_view command) {
  return Invalid(absl::StrCat(command, " requires at least one argument"));
}

absl::Status NoDestinationArgument(absl::string_view command) {
  return Invalid(absl::StrCat(command,
                              " requires at least two arguments, but only one was provided. "
                              "Destination could not be determined"));
}

absl::Status BlankNames(absl::string_view command) {
  return Invalid(absl::StrCat(command, " names can not be blank"));
}

// Everything one instruction's parse needs, as the reference's parseRequest.
struct Request {
  explicit Request(const Node& node) : node(node), flags(node.flags) {
    if (node.onbuild_trigger != nullptr) {
      args.push_back(node.onbuild_trigger->keyword);
      args.insert(args.end(), node.onbuild_trigger->args.begin(), node.onbuild_trigger->args.end());
    } else {
      args = node.args;
    }
  }

  // A T with the fields every instruction has filled in from the node.
  template <typename T>
  T Make() const {
    T instruction;
    instruction.keyword = node.keyword;
    instruction.code = std::string(go::TrimSpace(node.original));
    instruction.location = {node.start_line, node.end_line};
    return instruction;
  }

  const Node& node;
  std::vector<std::string> args;
  BuilderFlags flags;
};

// The reference's handleJSONArgs: exec form keeps the strings, shell form is
// one string.
std::vector<std::string> JsonArgs(absl::Span<const std::string> args, bool json_form) {
  if (args.empty()) return {};
  if (json_form) return {args.begin(), args.end()};
  return {absl::StrJoin(args, " ")};
}

CommandLine ShellDependentCommand(const Request& request) {
  return CommandLine{.args = JsonArgs(request.args, request.node.json_form),
                     .files = request.node.heredocs,
                     .prepend_shell = !request.node.json_form};
}

absl::StatusOr<std::vector<KeyValue>> KeyValues(const Request& request, absl::string_view command) {
  const std::vector<std::string>& args = request.args;
  if (args.empty()) return AtLeastOneArgument(command);
  if (args.size() % 3 != 0) {
    return Invalid(absl::StrCat("Bad input to ", command, ", too many arguments"));
  }
  std::vector<KeyValue> pairs;
  for (size_t i = 0; i < args.size(); i += 3) {
    if (args[i].empty()) return BlankNames(command);
    pairs.push_back({.key = args[i], .value = args[i + 1], .no_delimiter = args[i + 2].empty()});
  }
  return pairs;
}

absl::StatusOr<Instruction> ParseEnv(Request& request) {
  if (absl::Status status = request.flags.Parse(); !status.ok()) return status;
  absl::StatusOr<std::vector<KeyValue>> vars = KeyValues(request, "ENV");
  if (!vars.ok()) return vars.status();
  auto env = request.Make<Env>();
  env.vars = *std::move(vars);
  return env;
}

absl::StatusOr<Instruction> ParseLabel(Request& request) {
  if (absl::Status status = request.flags.Parse(); !status.ok()) return status;
  absl::StatusOr<std::vector<KeyValue>> labels = KeyValues(request, "LABEL");
  if (!labels.ok()) return labels.status();
  auto label = request.Make<Label>();
  label.labels = *std::move(labels);
  return label;
}

// The parser's MustParseHeredoc: the heredoc a word opens, if any.
std::optional<Heredoc> HeredocWord(absl::string_view word) {
  absl::StatusOr<HeredocSpec> spec = ParseHeredoc(word);
  if (!spec.ok() || !spec->is_heredoc) return std::nullopt;
  return spec->heredoc;
}

// The parser's ChompHeredocContent: leading tabs removed from every line.
std::string ChompHeredocContent(absl::string_view content) {
  std::string out;
  bool line_start = true;
  for (char c : content) {
    if (line_start && c == '\t') continue;
    line_start = c == '\n';
    out += c;
  }
  return out;
}

absl::StatusOr<SourcesAndDest> ParseSourcesAndDest(const Request& request,
                                                   absl::string_view command) {
  SourcesAndDest result;
  result.dest = request.args.back();
  if (HeredocWord(result.dest)) {
    return Invalid(absl::StrCat(command, " cannot accept a heredoc as a destination"));
  }
  for (size_t i = 0; i + 1 < request.args.size(); ++i) {
    const std::string& source = request.args[i];
    const std::optional<Heredoc> heredoc = HeredocWord(source);
    if (!heredoc) {
      result.source_paths.push_back(source);
      continue;
    }
    // Like the reference's lookup map, the last body of a repeated name wins.
    std::string content;
    for (const Heredoc& body : request.node.heredocs) {
      if (body.name == heredoc->name) content = body.content;
    }
    result.source_contents.push_back(
        {.path = heredoc->name,
         .data = heredoc->chomp ? ChompHeredocContent(content) : std::move(content),
         .expand = heredoc->expand});
  }
  return result;
}

absl::StatusOr<Instruction> ParseAdd(Request& request) {
  if (request.args.size() < 2) return NoDestinationArgument("ADD");
  const BuilderFlag& chown = request.flags.AddString("chown", "");
  const BuilderFlag& chmod = request.flags.AddString("chmod", "");
  const BuilderFlag& link = request.flags.AddBool("link", false);
  const BuilderFlag& keep_git_dir = request.flags.AddBool("keep-git-dir", false);
  const BuilderFlag& checksum = request.flags.AddString("checksum", "");
  const BuilderFlag& unpack = request.flags.AddBool("unpack", false);
  const BuilderFlag& exclude = request.flags.AddStrings("exclude");
  if (absl::Status status = request.flags.Parse(); !status.ok()) return status;
  absl::StatusOr<SourcesAndDest> files = ParseSourcesAndDest(request, "ADD");
  if (!files.ok()) return files.status();

  auto add = request.Make<Add>();
  add.files = *std::move(files);
  add.chown = chown.value;
  add.chmod = chmod.value;
  add.checksum = checksum.value;
  add.link = link.bool_value;
  add.exclude = exclude.values;
  if (keep_git_dir.used) add.keep_git_dir = keep_git_dir.bool_value;
  if (unpack.used) add.unpack = unpack.bool_value;
  return add;
}

absl::StatusOr<Instruction> ParseCopy(Request& request) {
  if (request.args.size() < 2) return NoDestinationArgument("COPY");
  const BuilderFlag& chown = request.flags.AddString("chown", "");
  const BuilderFlag& from = request.flags.AddString("from", "");
  const BuilderFlag& chmod = request.flags.AddString("chmod", "");
  const BuilderFlag& link = request.flags.AddBool("link", false);
  const BuilderFlag& exclude = request.flags.AddStrings("exclude");
  const BuilderFlag& parents = request.flags.AddBool("parents", false);
  if (absl::Status status = request.flags.Parse(); !status.ok()) return status;
  absl::StatusOr<SourcesAndDest> files = ParseSourcesAndDest(request, "COPY");
  if (!files.ok()) return files.status();

  auto copy = request.Make<Copy>();
  copy.files = *std::move(files);
  copy.from = from.value;
  copy.chown = chown.value;
  copy.chmod = chmod.value;
  copy.link = link.bool_value;
  copy.parents = parents.bool_value;
  copy.exclude = exclude.values;
  return copy;
}

// ^[a-z][a-z0-9-_.]*$
bool IsValidStageName(absl::string_view name) {
  if (name.empty() || !absl::ascii_islower(name[0])) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-' || c == '_' || c == '.';
  });
}

absl::StatusOr<Instruction> ParseFrom(Request& request) {
  const std::vector<std::string>& args = request.args;
  std::string stage_name;
  if (args.size() == 3 && absl::EqualsIgnoreCase(args[1], "as")) {
    stage_name = absl::AsciiStrToLower(args[2]);
    if (!IsValidStageName(stage_name)) {
      return Invalid(absl::StrCat("invalid name for build stage: ", go::Quote(args[2]),
                                  ", name can't start with a number or contain symbols"));
    }
  } else if (args.size() != 1) {
    return Invalid("FROM requires either one or three arguments");
  }
  const BuilderFlag& platform = request.flags.AddString("platform", "");
  if (absl::Status status = request.flags.Parse(); !status.ok()) return status;

  auto from = request.Make<From>();
  from.base_name = args[0];
  from.stage_name = std::move(stage_name);
  from.platform = platform.value;
  return from;
}

// Go regexp \s: [\t\n\f\r ].
bool IsRegexpSpace(char c) { return c == '\t' || c == '\n' || c == '\f' || c == '\r' || c == ' '; }

absl::StatusOr<Instruction> ParseOnbuild(Request& request) {
  if (request.args.empty()) return AtLeastOneArgument("ONBUILD");
  if (absl::Status status = request.flags.Parse(); !status.ok()) return status;
  const std::string trigger = absl::AsciiStrToUpper(go::TrimSpace(request.args[0]));
  if (trigger == "ONBUILD") return Invalid("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
  if (trigger == "MAINTAINER" || trigger == "FROM") {
    return Invalid(absl::StrCat(trigger, " isn't allowed as an ONBUILD trigger"));
  }

  // (?i)^\s*ONBUILD\s* removed from the original line.
  absl::string_view original = request.node.original;
  size_t i = 0;
  while (i < original.size() && IsRegexpSpace(original[i])) ++i;
  constexpr absl::string_view kKeyword = "onbuild";
  if (absl::EqualsIgnoreCase(original.substr(i, kKeyword.size()), kKeyword)) {
    i += kKeyword.size();
    while (i < original.size() && IsRegexpSpace(original[i])) ++i;
    original.remove_prefix(i);
  }
  auto onbuild = request.Make<Onbuild>();
  onbuild.expression = std::string(original);
  for (const Heredoc& heredoc : request.node.heredocs) {
    absl::StrAppend(&onbuild.expression, "\n", heredoc.content, heredoc.name);
  }
  return onbuild;
}

absl::StatusOr<Instruction> ParseWorkdir(Request& request) {
  if (request.args.size() != 1) return ExactlyOneArgument("WORKDIR");
  if (absl::Status status = request.flags.Parse(); !status.ok()) return status;
  auto workdir = request.Make<Workdir>();
  workdir.path = request.args[0];
  return workdir;
}

absl::StatusOr<Instruction> ParseRun(Request& request) {
  // Declared in the order the reference's pre-hooks run.
  const BuilderFlag& device = request.flags.AddStrings("device");
  const BuilderFlag& mount = request.flags.AddStrings("mount");
  const BuilderFlag& network = request.flags.AddString("network", "default");
  const BuilderFlag& security = request.flags.AddString("security", "sandbox");
  if (absl::Status status = request.flags.Parse(); !status.ok()) return status;

  auto run = request.Make<Run>();
  run.flags_used = request.flags.used();
  run.command = ShellDependentCommand(request);
  for (const std::string& spec : device.values) {
    absl::StatusOr<Device> parsed = ParseDevice(spec);
    if (!parsed.ok()) return parsed.status();
    run.devices.push_back(*std::move(parsed));
  }
  for (const std::string& spec : mount.values) {
    if (absl::Status status = CheckMountBeforeExpansion(spec); !status.ok()) return status;
  }
  run.mounts = mount.values;
  absl::StatusOr<NetworkMode> network_mode = ParseNetworkMode(network.value);
  if (!network_mode.ok()) return network_mode.status();
  run.network = *network_mode;
  absl::StatusOr<SecurityMode> security_mode = ParseSecurityMode(security.value);
  if (!security_mode.ok()) return security_mode.status();
  run.security = *security_mode;
  return run;
}

absl::StatusOr<Instruction> ParseCmd(Request& request) {
  if (absl::Status status = request.flags.Parse(); !status.ok()) return status;
  auto cmd = request.Make<Cmd>();
  cmd.command = ShellDependentCommand(request);
  return cmd;
}

absl::StatusOr<Instruction> ParseEntrypoint(Request& request) {
  if (absl::Status status = request.flags.Parse(); !status.ok()) return status;
  auto entrypoint = request.Make<Entrypoint>();
  entrypoint.command = ShellDependentCommand(request);
  return entrypoint;
}

// Go's time.ParseDuration, including its error texts.
absl::StatusOr<absl::Duration> GoParseDuration(absl::string_view text) {
  // time's own quoting: non-ASCII and control bytes as \xNN.
  auto quote = [](absl::string_view s) {
    constexpr char kHex[] = "0123456789abcdef";
    std::string out = "\"";
    for (unsigned char c : s) {
      if (c >= 0x80 || c < ' ') {
        out += "\\x";
        out += kHex[c >> 4];
        out += kHex[c & 0xF];
      } else {
        if (c == '"' || c == '\\') out += '\\';
        out += static_cast<char>(c);
      }
    }
    return out + "\"";
  };
  const absl::Status invalid = Invalid(absl::StrCat("time: invalid duration ", quote(text)));
  constexpr uint64_t kLimit = uint64_t{1} << 63;

  absl::string_view s = text;
  bool negative = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return absl::ZeroDuration();
  if (s.empty()) return invalid;
  uint64_t total = 0;
  while (!s.empty()) {
    if (!(s[0] == '.' || absl::ascii_isdigit(s[0]))) return invalid;
    uint64_t whole = 0;
    size_t i = 0;
    for (; i < s.size() && absl::ascii_isdigit(s[i]); ++i) {
      if (whole > kLimit / 10) return invalid;
      whole = whole * 10 + static_cast<uint64_t>(s[i] - '0');
      if (whole > kLimit) return invalid;
    }
    const bool digits_before = i > 0;
    s.remove_prefix(i);
    uint64_t fraction = 0;
    double scale = 1;
    bool digits_after = false;
    if (!s.empty() && s[0] == '.') {
      s.remove_prefix(1);
      bool overflow = false;
      size_t j = 0;
      for (; j < s.size() && absl::ascii_isdigit(s[j]); ++j) {
        if (overflow) continue;
        if (fraction > (kLimit - 1) / 10) {
          overflow = true;
          continue;
        }
        const uint64_t next = fraction * 10 + static_cast<uint64_t>(s[j] - '0');
        if (next > kLimit) {
          overflow = true;
          continue;
        }
        fraction = next;
        scale *= 10;
      }
      digits_after = j > 0;
      s.remove_prefix(j);
    }
    if (!digits_before && !digits_after) return invalid;
    size_t unit_length = 0;
    while (unit_length < s.size() && s[unit_length] != '.' &&
           !absl::ascii_isdigit(s[unit_length])) {
      ++unit_length;
    }
    if (unit_length == 0) {
      return Invalid(absl::StrCat("time: missing unit in duration ", quote(text)));
    }
    const absl::string_view unit_name = s.substr(0, unit_length);
    s.remove_prefix(unit_length);
    uint64_t unit = 0;
    if (unit_name == "ns") {
      unit = 1;
    } else if (unit_name == "us" || unit_name == "\u00b5s" || unit_name == "\u03bcs") {
      unit = 1'000;
    } else if (unit_name == "ms") {
      unit = 1'000'000;
    } else if (unit_name == "s") {
      unit = 1'000'000'000;
    } else if (unit_name == "m") {
      unit = 60'000'000'000;
    } else if (unit_name == "h") {
      unit = 3'600'000'000'000;
    } else {
      return Invalid(
          absl::StrCat("time: unknown unit ", quote(unit_name), " in duration ", quote(text)));
    }
    if (whole > kLimit / unit) return invalid;
    whole *= unit;
    if (fraction > 0) {
      whole += static_cast<uint64_t>(static_cast<double>(fraction) *
                                     (static_cast<double>(unit) / scale));
      if (whole > kLimit) return invalid;
    }
    total += whole;
    if (total > kLimit) return invalid;
  }
  if (negative) {
    return absl::Nanoseconds(total == kLimit ? std::numeric_limits<int64_t>::min()
                                             : -static_cast<int64_t>(total));
  }
  if (total > kLimit - 1) return invalid;
  return absl::Nanoseconds(static_cast<int64_t>(total));
}

// The reference's parseOptInterval: empty and zero mean unset; otherwise at
// least 1ms.
absl::StatusOr<absl::Duration> OptionalInterval(const BuilderFlag& flag) {
  if (flag.value.empty()) return absl::ZeroDuration();
  absl::StatusOr<absl::Duration> duration = GoParseDuration(flag.value);
  if (!duration.ok() || *duration == absl::ZeroDuration()) return duration;
  if (*duration < absl::Milliseconds(1)) {
    return Invalid(absl::StrCat("Interval ", go::Quote(flag.name), " cannot be less than 1ms"));
  }
  return duration;
}

// strconv.ParseInt(text, 10, 32), with its error texts.
absl::StatusOr<int> GoParseInt32(absl::string_view text) {
  const auto error = [text](absl::string_view what) {
    return Invalid(absl::StrCat("strconv.ParseInt: parsing ", go::Quote(text), ": ", what));
  };
  absl::string_view digits = text;
  bool negative = false;
  if (!digits.empty() && (digits[0] == '+' || digits[0] == '-')) {
    negative = digits[0] == '-';
    digits.remove_prefix(1);
  }
  if (digits.empty()) return error("invalid syntax");
  // Like Go, an overflow of the unsigned 32-bit range is reported as soon as
  // it happens, before any later syntax error.
  int64_t magnitude = 0;
  for (char c : digits) {
    if (!absl::ascii_isdigit(c)) return error("invalid syntax");
    magnitude = magnitude * 10 + (c - '0');
    if (magnitude > std::numeric_limits<uint32_t>::max()) return error("value out of range");
  }
  const int64_t value = negative ? -magnitude : magnitude;
  if (value > std::numeric_limits<int32_t>::max() || value < std::numeric_limits<int32_t>::min()) {
    return error("value out of range");
  }
  return static_cast<int>(value);
}

absl::StatusOr<Instruction> ParseHealthcheck(Request& request) {
  if (request.args.empty()) return AtLeastOneArgument("HEALTHCHECK");
  auto healthcheck = request.Make<Healthcheck>();
  std::string type = absl::AsciiStrToUpper(request.args[0]);
  const absl::Span<const std::string> args = absl::MakeConstSpan(request.args).subspan(1);
  if (type == "NONE") {
    if (!args.empty()) return Invalid("HEALTHCHECK NONE takes no arguments");
    healthcheck.health.test = {type};
    return healthcheck;
  }

  const BuilderFlag& interval = request.flags.AddString("interval", "");
  const BuilderFlag& timeout = request.flags.AddString("timeout", "");
  const BuilderFlag& start_period = request.flags.AddString("start-period", "");
  const BuilderFlag& start_interval = request.flags.AddString("start-interval", "");
  const BuilderFlag& retries = request.flags.AddString("retries", "");
  if (absl::Status status = request.flags.Parse(); !status.ok()) return status;

  if (type != "CMD") {
    return Invalid(absl::StrCat("Unknown type ", go::Quote(type), " in HEALTHCHECK (try CMD)"));
  }
  std::vector<std::string> command = JsonArgs(args, request.node.json_form);
  if (command.empty()) return Invalid("Missing command after HEALTHCHECK CMD");
  if (!request.node.json_form) type = "CMD-SHELL";
  HealthConfig& health = healthcheck.health;
  health.test.push_back(std::move(type));
  health.test.insert(health.test.end(), command.begin(), command.end());

  const std::pair<const BuilderFlag*, absl::Duration*> durations[] = {
      {&interval, &health.interval},
      {&timeout, &health.timeout},
      {&start_period, &health.start_period},
      {&start_interval, &health.start_interval}};
  for (const auto& [flag, field] : durations) {
    absl::StatusOr<absl::Duration> duration = OptionalInterval(*flag);
    if (!duration.ok()) return duration.status();
    *field = *duration;
  }
  if (!retries.value.empty()) {
    absl::StatusOr<int> count = GoParseInt32(retries.value);
    if (!count.ok()) return count.status();
    if (*count < 0) return Invalid(absl::StrCat("--retries cannot be negative (", *count, ")"));
    health.retries = *count;
  }
  return healthcheck;
}

absl::StatusOr<Instruction> ParseExpose(Request& request) {
  if (request.args.empty()) return AtLeastOneArgument("EXPOSE");
  if (absl::Status status = request.flags.Parse(); !status.ok()) return status;
  auto expose = request.Make<Expose>();
  expose.ports = request.args;
  std::sort(expose.ports.begin(), expose.ports.end());
  return expose;
}

absl::StatusOr<Instruction> ParseUser(Request& request) {
  if (request.args.size() != 1) return ExactlyOneArgument("USER");
  if (absl::Status status = request.flags.Parse(); !status.ok()) return status;
  auto user = request.Make<User>();
  user.user = request.args[0];
  return user;
}

absl::StatusOr<Instruction> ParseVolume(Request& request) {
  if (request.args.empty()) return AtLeastOneArgument("VOLUME");
  if (absl::Status status = request.flags.Parse(); !status.ok()) return status;
  auto volume = request.Make<Volume>();
  for (const std::string& arg : request.args) {
    const absl::string_view trimmed = go::TrimSpace(arg);
    if (trimmed.empty()) return Invalid("VOLUME specified can not be an empty string");
    volume.volumes.emplace_back(trimmed);
  }
  return volume;
}

// Like the reference, STOPSIGNAL and ARG do not look at their flags.
absl::StatusOr<Instruction> ParseStopsignal(Request& request) {
  if (request.args.size() != 1) return ExactlyOneArgument("STOPSIGNAL");
  auto stopsignal = request.Make<Stopsignal>();
  stopsignal.signal = request.args[0];
  return stopsignal;
}

absl::StatusOr<Instruction> ParseArg(Request& request) {
  if (request.args.empty()) return AtLeastOneArgument("ARG");
  auto arg = request.Make<Arg>();
  for (const std::string& word : request.args) {
    const size_t equals = word.find('=');
    if (equals == std::string::npos) {
      arg.args.push_back({.key = word, .value = std::nullopt});
      continue;
    }
    if (equals == 0) return BlankNames("ARG");
    arg.args.push_back({.key = word.substr(0, equals), .value = word.substr(equals + 1)});
  }
  return arg;
}

absl::StatusOr<Instruction> ParseShell(Request& request) {
  if (absl::Status status = request.flags.Parse(); !status.ok()) return status;
  std::vector<std::string> shell = JsonArgs(request.args, request.node.json_form);
  if (shell.empty()) return AtLeastOneArgument("SHELL");
  if (!request.node.json_form) return Invalid("SHELL requires the arguments to be in JSON form");
  auto instruction = request.Make<Shell>();
  instruction.shell = std::move(shell);
  return instruction;
}

absl::StatusOr<Instruction> ParseMaintainer(Request& request) {
  if (request.args.size() != 1) return ExactlyOneArgument("MAINTAINER");
  if (absl::Status status = request.flags.Parse(); !status.ok()) return status;
  auto maintainer = request.Make<Maintainer>();
  maintainer.maintainer = request.args[0];
  return maintainer;
}

struct Parser {
  absl::string_view name;  // lower case
  absl::StatusOr<Instruction> (*parse)(Request&);
};

// Sorted by name: also the order "did you mean" candidates are tried in.
constexpr Parser kParsers[] = {
    {"add", ParseAdd},
    {"arg", ParseArg},
    {"cmd", ParseCmd},
    {"copy", ParseCopy},
    {"entrypoint", ParseEntrypoint},
    {"env", ParseEnv},
    {"expose", ParseExpose},
    {"from", ParseFrom},
    {"healthcheck", ParseHealthcheck},
    {"label", ParseLabel},
    {"maintainer", ParseMaintainer},
    {"onbuild", ParseOnbuild},
    {"run", ParseRun},
    {"shell", ParseShell},
    {"stopsignal", ParseStopsignal},
    {"user", ParseUser},
    {"volume", ParseVolume},
    {"workdir", ParseWorkdir},
};

absl::Status WithRange(absl::Status status, const Node& node) {
  status.SetPayload(kRangePayload, absl::Cord(absl::StrCat(node.start_line, "-", node.end_line)));
  return status;
}

}  // namespace

const InstructionBase& BaseOf(const Instruction& instruction) {
  return std::visit([](const auto& typed) -> const InstructionBase& { return typed; }, instruction);
}

absl::StatusOr<Instruction> ParseInstruction(const Node& node) {
  const std::string name = absl::AsciiStrToLower(node.keyword);
  for (const Parser& parser : kParsers) {
    if (parser.name != name) continue;
    Request request(node);
    absl::StatusOr<Instruction> instruction = parser.parse(request);
    if (!instruction.ok()) return WithRange(instruction.status(), node);
    return instruction;
  }
  std::vector<std::string> upper_names;
  for (const Parser& parser : kParsers) upper_names.push_back(absl::AsciiStrToUpper(parser.name));
  const std::vector<absl::string_view> options(upper_names.begin(), upper_names.end());
  return WithRange(Invalid(WithSuggestion(absl::StrCat("unknown instruction: ", node.keyword),
                                          node.keyword, options, /*case_sensitive=*/false)),
                   node);
}

absl::StatusOr<StagedDockerfile> ParseStages(const ParseResult& ast, absl::string_view filename) {
  // Located like the parser's own errors: FILE:LINE, or FILE:START-END for an
  // instruction spanning several lines.
  const auto located = [filename](const absl::Status& status, const Node& node) {
    const std::string lines = node.end_line > node.start_line
                                  ? absl::StrCat(node.start_line, "-", node.end_line)
                                  : absl::StrCat(node.start_line);
    absl::Status result(status.code(), absl::StrCat(filename, ":", lines, ": ", status.message()));
    result.SetPayload(kMessagePayload, absl::Cord(status.message()));
    return WithRange(std::move(result), node);
  };
  StagedDockerfile result;
  for (const Node& node : ast.children) {
    absl::StatusOr<Instruction> instruction = ParseInstruction(node);
    if (!instruction.ok()) return located(instruction.status(), node);
    if (result.stages.empty()) {
      if (Arg* arg = std::get_if<Arg>(&*instruction)) {
        result.meta_args.push_back(std::move(*arg));
        continue;
      }
    }
    if (From* from = std::get_if<From>(&*instruction)) {
      result.stages.push_back(Stage{.from = std::move(*from), .commands = {}});
      continue;
    }
    if (result.stages.empty()) {
      return located(Invalid("no build stage in current context"), node);
    }
    result.stages.back().commands.push_back(*std::move(instruction));
  }
  return result;
}

std::optional<SourceRange> ErrorRange(const absl::Status& status) {
  const absl::optional<absl::Cord> payload = status.GetPayload(kRangePayload);
  if (!payload) return std::nullopt;
  const std::pair<std::string, std::string> parts =
      absl::StrSplit(std::string(*payload), absl::MaxSplits('-', 1));
  SourceRange range;
  if (!absl::SimpleAtoi(parts.first, &range.start_line) ||
      !absl::SimpleAtoi(parts.second, &range.end_line)) {
    return std::nullopt;
  }
  return range;
}

std::string ReferenceMessage(const absl::Status& status) {
  if (absl::optional<absl::Cord> message = status.GetPayload(kMessagePayload)) {
    return std::string(*message);
  }
  return std::string(status.message());
}

}  // namespace stagefarm::dockerfile
