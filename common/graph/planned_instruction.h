// One instruction of a planned stage, expanded as the reference expands it,
// with everything its result depends on besides the stage it runs in: the
// normalised text, the variables it sees, its platform and what it reads.
// This is what cache keys and workers consume.
#pragma once

#include <compare>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/dockerfile/instructions.h"
#include "common/dockerfile/run_flags.h"
#include "common/dockerfile/shell_lexer.h"
#include "common/graph/build_args.h"
#include "common/oci/image_ref.h"
#include "common/oci/platform.h"

namespace stagefarm::graph {

// Where a read comes from.
enum class SourceKind {
  kContext,  // the build context or a named one (after its .dockerignore)
  kStage,    // another stage's result
  kImage,    // an external image named by --from / from=
  kUrl,      // a remote ADD source (http, https, git)
};
absl::string_view SourceKindName(SourceKind kind);  // "context", "stage", "image", "url"

// One path an instruction reads from outside its own stage.
struct Source {
  SourceKind kind = SourceKind::kContext;
  int stage = -1;       // kStage: the stage index
  oci::ImageRef image;  // kImage
  // kContext: the named build context (--build-context NAME=DIR) read, by
  // its normalised name; empty for the build's own context.
  std::string context;
  // The path inside that source, made absolute and cleaned as BuildKit does
  // (path.Join("/", src)): "/app/out", "/" for the whole source; wildcards
  // are kept ("/src/*.go"). kUrl: the URL as written after expansion.
  std::string path;

  auto operator<=>(const Source&) const = default;
};

// What a COPY --from or RUN --mount from= value names, resolved as the
// planner resolves it.
struct SourceRoot {
  enum class Kind { kContext, kStage, kImage, kScratch };
  Kind kind = Kind::kContext;  // kContext: no --from / from= given, or a named context
  int stage = -1;              // kStage: the stage index
  oci::ImageRef image;         // kImage
  // kContext: the named local context (--build-context NAME=DIR) the value
  // names, by its normalised name; empty for the build's own context.
  std::string context;
};

// A build argument declared in the stage (or inherited from the stage it is
// built FROM), with the value it resolved to; nullopt when it has none.
struct DeclaredArg {
  std::string name;
  std::optional<std::string> value;

  bool operator==(const DeclaredArg&) const = default;
};

struct PlannedInstruction {
  // The instruction with every field the reference expands replaced by its
  // expansion (quotes removed): ENV and LABEL keys and values; COPY/ADD
  // sources, destination, --chown, --chmod, ADD --checksum and heredoc
  // bodies with an unquoted delimiter; WORKDIR, USER, VOLUME, STOPSIGNAL;
  // EXPOSE's ports, re-split; ARG values as resolved (build arg, else
  // expanded default, else the global value). RUN's command, CMD,
  // ENTRYPOINT, SHELL, HEALTHCHECK, MAINTAINER, ONBUILD, --from and
  // --exclude are kept as written. The keyword is kept as written; `text`
  // is the normalised form.
  dockerfile::Instruction instruction;
  // Deterministic normalised text with every flag: the lower-case keyword,
  // flags in name order as `--name=value` (repeatable flags in the order
  // given; defaults such as --network=default omitted), then the arguments.
  // Values with blanks, quotes or control characters are JSON-quoted; lists
  // (exec form, COPY sources and destination, VOLUME, SHELL) are JSON arrays;
  // heredoc bodies follow on their own lines. E.g.
  //   copy --chown=app --from=1 ["/out/app","/usr/bin/"]
  //   run --mount=type=cache,target=/root/.cache,readonly=false go build ./...
  std::string text;
  // Where it is written; an ONBUILD trigger has the lines of the FROM of the
  // stage it runs in (as BuildKit reports it).
  dockerfile::SourceRange location;
  bool onbuild = false;    // an ONBUILD trigger of the stage's base
  oci::Platform platform;  // the stage's platform
  // The variables the instruction expanded against and, for RUN, the
  // process environment (besides the proxy variables): the base image's
  // environment, PATH when it had none, then ENV and valued ARGs in order.
  // Shared by the consecutive instructions that see the same values.
  std::shared_ptr<const Variables> env;
  // The ARGs declared before it in the stage (and in the stage it is built
  // FROM), in declaration order. Shared like `env`.
  std::shared_ptr<const std::vector<DeclaredArg>> args;
  // RUN: the --mount values, parsed after expansion.
  std::vector<dockerfile::Mount> mounts;
  // What it reads besides its own stage, in instruction order: COPY/ADD
  // sources (from the context, a stage or an image; ADD's remote URLs) and
  // the sources of bind and cache mounts. Heredoc sources read nothing.
  std::vector<Source> reads;
  // COPY: where its sources are read (--from resolved). RUN: one per mount,
  // in the order of `mounts`. Empty / kContext for other instructions.
  SourceRoot copy_from;
  std::vector<SourceRoot> mount_from;
};

// An instruction with the reference's expansion applied, and RUN's mounts.
struct ExpandedInstruction {
  dockerfile::Instruction instruction;
  std::vector<dockerfile::Mount> mounts;
};

// Expands `instruction` against `env` as BuildKit's dispatch does (see
// PlannedInstruction::instruction for which fields). ARG is returned as is:
// its defaults depend on build args and the global scope (StageScope). On
// error returns InvalidArgument with the lexer's or mount parser's message,
// or "VOLUME specified can not be an empty string", without a location.
absl::StatusOr<ExpandedInstruction> Expand(const dockerfile::Instruction& instruction,
                                           const dockerfile::ShellLexer& lexer,
                                           const dockerfile::ShellEnv& env);

// One word expanded as ShellLexer::ProcessWord expands it; words the lexer
// would return unchanged (printable ASCII without `$`, quotes or escape
// characters, which most words are) skip it.
absl::StatusOr<std::string> ExpandWord(const dockerfile::ShellLexer& lexer, absl::string_view word,
                                       dockerfile::EnvLookup env);

// The normalised text of an expanded instruction (see PlannedInstruction::text).
std::string NormalizedText(const dockerfile::Instruction& expanded,
                           absl::Span<const dockerfile::Mount> mounts);

}  // namespace stagefarm::graph
