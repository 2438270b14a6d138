// Typed Dockerfile instructions, built from the parser's nodes as BuildKit's
// frontend/dockerfile/instructions builds them: one struct per instruction,
// its flags parsed and checked, its arguments shaped, and the whole file
// grouped into stages. Values are kept as written (no variable expansion);
// the stage graph expands them.
#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/dockerfile/parser.h"
#include "common/dockerfile/run_flags.h"

namespace stagefarm::dockerfile {

// 1-based, inclusive physical lines.
struct SourceRange {
  int start_line = 0;
  int end_line = 0;

  bool operator==(const SourceRange&) const = default;
};

// What every instruction carries.
struct InstructionBase {
  std::string keyword;   // as written: "RUN", "run", "Run"
  std::string code;      // the logical source line, whitespace-trimmed
  SourceRange location;  // heredoc bodies included

  bool operator==(const InstructionBase&) const = default;
};

// An ENV variable or a LABEL.
struct KeyValue {
  std::string key;
  std::string value;          // quotes and escapes as written
  bool no_delimiter = false;  // the legacy `ENV key value` form

  bool operator==(const KeyValue&) const = default;
};

// A shell-dependent command line (RUN, CMD, ENTRYPOINT).
struct CommandLine {
  // Exec form: the JSON array's strings. Shell form: one string, the rest of
  // the line as written (heredoc openers like `<<EOF` included).
  std::vector<std::string> args;
  // Shell form: the heredocs the line opens, bodies as written (a `<<-` body
  // keeps its tabs; `chomp` says to strip them).
  std::vector<Heredoc> files;
  bool prepend_shell = false;  // shell form: run `args` through the SHELL

  bool operator==(const CommandLine&) const = default;
};

// An inline file of COPY/ADD, from a heredoc.
struct SourceContent {
  std::string path;  // the heredoc name
  std::string data;  // the body; leading tabs already removed for `<<-`
  bool expand = true;

  bool operator==(const SourceContent&) const = default;
};

struct SourcesAndDest {
  std::string dest;
  std::vector<std::string> source_paths;       // in order, heredocs excluded
  std::vector<SourceContent> source_contents;  // heredoc sources, in order

  bool operator==(const SourcesAndDest&) const = default;
};

// `FROM [--platform=p] base [AS name]`; begins a stage.
struct From : InstructionBase {
  std::string base_name;
  std::string stage_name;  // lower-cased; empty when there is no AS
  std::string platform;    // empty when not given

  bool operator==(const From&) const = default;
};

// `RUN [--mount=...] [--network=...] [--security=...] [--device=...] command`.
struct Run : InstructionBase {
  CommandLine command;
  // The `--mount` values as written. They passed CheckMountBeforeExpansion;
  // ParseMount turns each into a Mount once variables can be expanded.
  std::vector<std::string> mounts;
  NetworkMode network = NetworkMode::kDefault;
  SecurityMode security = SecurityMode::kSandbox;
  std::vector<Device> devices;
  std::vector<std::string> flags_used;  // flag names given, in order of first use

  bool operator==(const Run&) const = default;
};

struct Cmd : InstructionBase {
  CommandLine command;

  bool operator==(const Cmd&) const = default;
};

struct Entrypoint : InstructionBase {
  CommandLine command;

  bool operator==(const Entrypoint&) const = default;
};

// `SHELL ["executable", "param"...]`; JSON form only.
struct Shell : InstructionBase {
  std::vector<std::string> shell;

  bool operator==(const Shell&) const = default;
};

struct Label : InstructionBase {
  std::vector<KeyValue> labels;

  bool operator==(const Label&) const = default;
};

struct Maintainer : InstructionBase {
  std::string maintainer;

  bool operator==(const Maintainer&) const = default;
};

struct Expose : InstructionBase {
  std::vector<std::string> ports;  // as written, sorted

  bool operator==(const Expose&) const = default;
};

struct Env : InstructionBase {
  std::vector<KeyValue> vars;

  bool operator==(const Env&) const = default;
};

// `ADD [--chown --chmod --checksum --keep-git-dir --unpack --link --exclude...] src... dest`.
struct Add : InstructionBase {
  SourcesAndDest files;
  std::string chown;
  std::string chmod;
  std::string checksum;
  bool link = false;
  std::vector<std::string> exclude;  // --exclude, repeatable
  std::optional<bool> keep_git_dir;  // unset when not given
  std::optional<bool> unpack;        // unset when not given

  bool operator==(const Add&) const = default;
};

// `COPY [--from --chown --chmod --link --parents --exclude...] src... dest`.
struct Copy : InstructionBase {
  SourcesAndDest files;
  std::string from;
  std::string chown;
  std::string chmod;
  bool link = false;
  bool parents = false;
  std::vector<std::string> exclude;  // --exclude, repeatable

  bool operator==(const Copy&) const = default;
};

struct Volume : InstructionBase {
  std::vector<std::string> volumes;  // whitespace-trimmed, never empty

  bool operator==(const Volume&) const = default;
};

struct User : InstructionBase {
  std::string user;

  bool operator==(const User&) const = default;
};

struct Workdir : InstructionBase {
  std::string path;

  bool operator==(const Workdir&) const = default;
};

// One `name[=default]` of an ARG; quotes in the default are kept as written.
struct ArgDefinition {
  std::string key;
  std::optional<std::string> value;

  bool operator==(const ArgDefinition&) const = default;
};

struct Arg : InstructionBase {
  std::vector<ArgDefinition> args;

  bool operator==(const Arg&) const = default;
};

// `ONBUILD <instruction>`: the trigger's text, stored for images built FROM
// this one; heredoc bodies are appended as they were written.
struct Onbuild : InstructionBase {
  std::string expression;

  bool operator==(const Onbuild&) const = default;
};

struct Stopsignal : InstructionBase {
  std::string signal;

  bool operator==(const Stopsignal&) const = default;
};

// The image's health check. `test` is {"NONE"}, {"CMD", args...} (exec form)
// or {"CMD-SHELL", command} (shell form). Zero durations and retries mean
// "not set".
struct HealthConfig {
  std::vector<std::string> test;
  absl::Duration interval;
  absl::Duration timeout;
  absl::Duration start_period;
  absl::Duration start_interval;
  int retries = 0;

  bool operator==(const HealthConfig&) const = default;
};

struct Healthcheck : InstructionBase {
  HealthConfig health;

  bool operator==(const Healthcheck&) const = default;
};

using Instruction =
    std::variant<From, Run, Cmd, Entrypoint, Shell, Label, Maintainer, Expose, Env, Add, Copy,
                 Volume, User, Workdir, Arg, Onbuild, Stopsignal, Healthcheck>;

// The fields every instruction has.
const InstructionBase& BaseOf(const Instruction& instruction);

// Turns one parsed node into its typed instruction (the reference's
// ParseInstruction). On error returns InvalidArgument whose message is the
// reference's text exactly (e.g. "COPY requires at least two arguments, but
// only one was provided. Destination could not be determined", "unknown
// instruction: FOO (did you mean FROM?)", "unknown flag: --boo"), with the
// node's lines attached (see ErrorRange).
absl::StatusOr<Instruction> ParseInstruction(const Node& node);

// A FROM and the instructions up to the next FROM.
struct Stage {
  From from;
  std::vector<Instruction> commands;  // never a From

  const std::string& name() const { return from.stage_name; }
};

struct StagedDockerfile {
  std::vector<Arg> meta_args;  // ARGs before the first FROM
  std::vector<Stage> stages;   // in file order; at least one unless the file only has ARGs
};

// Parses every instruction and groups them into stages (the reference's
// instructions.Parse). Errors are InvalidArgument "FILE:LINE: <reference
// text>" (FILE:START-END: for an instruction spanning lines, as the parser
// locates its errors), e.g. "Dockerfile:3: unknown instruction: FOO (did you mean FROM?)",
// "Dockerfile:1: no build stage in current context" for an instruction other
// than ARG before the first FROM. ReferenceMessage() recovers the text after
// the prefix and ErrorRange() the lines.
absl::StatusOr<StagedDockerfile> ParseStages(const ParseResult& ast,
                                             absl::string_view filename = "Dockerfile");

// The instruction lines an error from ParseInstruction or ParseStages is
// about; nullopt for other statuses.
std::optional<SourceRange> ErrorRange(const absl::Status& status);

// The error text as the reference words it: the message of a ParseStages
// error without its location prefix; any other status's message as is.
std::string ReferenceMessage(const absl::Status& status);

}  // namespace stagefarm::dockerfile
