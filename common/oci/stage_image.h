// The image config a stage makes, instruction by instruction, with
// BuildKit's rules (frontend/dockerfile/dockerfile2llb's dispatch functions):
// what each instruction changes in the config and the history entry it adds.
//
// History entries are BuildKit's: created_by as BuildKit formats it (Go's %q
// and %v of the values, e.g. `CMD ["/bin/sh" "-c" "echo"]`,
// `VOLUME [/data /logs]`, `EXPOSE map[8080/tcp:{}]`), the comment
// "buildkit.dockerfile.v0", and empty_layer for instructions that make no
// layer. RUN, COPY and ADD end in " # buildkit". ONBUILD adds no entry.
#pragma once

#include <optional>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/dockerfile/instructions.h"
#include "common/oci/image.h"

namespace stagefarm::oci {

// The comment BuildKit puts on the history entries of a Dockerfile build.
inline constexpr absl::string_view kBuildkitHistoryComment = "buildkit.dockerfile.v0";

class StageImage {
 public:
  // Starts from the config of the image or stage the stage is built FROM
  // (ScratchConfig for scratch), whose history is kept. `created` is the
  // time written on the history entries this stage adds: SOURCE_DATE_EPOCH
  // when set; without it nullopt, as BuildKit's Dockerfile frontend leaves
  // them, and a layer's entry gets its layer's time (DateLastLayer).
  explicit StageImage(ImageConfig base, std::optional<absl::Time> created = std::nullopt);

  // Applies one instruction, expanded as graph::Expand expands it (quotes
  // removed from ENV, LABEL, ...). `run_build_args` are, for RUN only, the
  // stage's build args as "NAME=value" in declaration order, which BuildKit
  // writes as the "|N NAME=value ..." prefix of the RUN history entry.
  //
  // ENV replaces a variable in place or appends it; LABEL sets; EXPOSE adds
  // ports normalised as Docker's nat.ParsePortSpecs ("8080" is "8080/tcp",
  // ranges expand, the protocol is lower-cased); VOLUME adds; USER,
  // STOPSIGNAL, SHELL set; WORKDIR joins a relative path to the current
  // one and cleans it; CMD and ENTRYPOINT in shell form run through the
  // current SHELL (/bin/sh -c by default); CMD sets ArgsEscaped; ENTRYPOINT
  // clears a CMD that this stage has not set itself (one inherited from the
  // base); HEALTHCHECK replaces the health check; ONBUILD appends the
  // trigger's text; MAINTAINER sets the author; ARG changes nothing in the
  // config (only the history). RUN, COPY and ADD change only the history.
  //
  // Errors are InvalidArgument and leave the config unchanged: a FROM; a bad
  // EXPOSE port ("invalid containerPort: abc", "invalid proto: foo"); an
  // unknown STOPSIGNAL ("Invalid signal: SIGFOO"); an empty VOLUME.
  absl::Status Apply(const dockerfile::Instruction& instruction,
                     absl::Span<const std::string> run_build_args = {});

  // Marks the history entry of the last RUN, COPY, ADD or WORKDIR as
  // empty_layer: it changed nothing, so it adds no layer (BuildKit's
  // exporter drops empty layers the same way).
  void MarkLastLayerEmpty();

  // Dates the history entry of the last RUN, COPY, ADD or WORKDIR with the
  // time its layer was made, unless it has a time already (SOURCE_DATE_EPOCH):
  // BuildKit's exporter dates a layer's entry by the layer's cache record, so
  // a cached rebuild keeps the times, and the image, of the first build.
  void DateLastLayer(absl::Time made);

  // The time of the last dated history entry (the base's included), which
  // BuildKit's exporter writes as the config's "created"; nullopt when none.
  std::optional<absl::Time> LastHistoryTime() const;

  const ImageConfig& config() const { return config_; }

 private:
  void AddHistory(std::string created_by, bool with_layer);

  ImageConfig config_;
  std::optional<absl::Time> created_;
  bool cmd_set_ = false;  // a CMD of this stage, which ENTRYPOINT keeps
};

// The ports one EXPOSE argument names, as nat.ParsePortSpec reads it
// ("[ip:[hostport]:]port[-end][/proto]"): "port/proto" strings.
// InvalidArgument with Docker's message for a bad port or protocol.
absl::StatusOr<std::set<std::string>> ParseExposedPort(absl::string_view spec);

}  // namespace stagefarm::oci
