// A build as the cluster passes it around (schemas/build.capnp
// BuildDefinition): the Dockerfile and everything its plan depends on — build
// args, target, platform, the context's index and the external images it
// names. The client makes it, the coordinator plans it to schedule stages, and
// every worker plans it again to run one of them; planning is deterministic,
// so all of them see the same stages, instructions and cache keys.
#ifndef STAGEFARM_COMMON_BUILD_BUILD_DEFINITION_H_
#define STAGEFARM_COMMON_BUILD_BUILD_DEFINITION_H_

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/digest/digest.h"
#include "common/dockerfile/instructions.h"
#include "common/dockerfile/parser.h"
#include "common/fs/context_index.h"
#include "common/graph/plan_cache_keys.h"
#include "common/graph/stage_graph.h"
#include "common/oci/image_layout.h"
#include "common/oci/image_ref.h"
#include "schemas/build.capnp.h"

namespace stagefarm::build {

// An external image the build names, as the client resolved it.
struct NamedImage {
  oci::ImageRef ref;
  oci::BuiltImage image;
  std::optional<digest::Digest> manifest;  // keys the image in cache keys
};

// A --build-context NAME=VALUE: an image or an indexed local directory.
struct NamedContext {
  std::string name;                    // graph::NamedContextName form
  std::optional<oci::ImageRef> image;  // docker-image://REF; nullopt: a directory
  fs::ContextIndex context;            // a directory's index
  // The client's directory, where its files are read to upload them. Not
  // sent: nodes read the files from their stores by content digest.
  std::filesystem::path dir;
};

struct BuildDefinition {
  std::string dockerfile;
  std::string dockerfile_name = "Dockerfile";
  std::vector<std::string> build_args;  // "NAME=value"
  std::string target;
  std::string platform;  // "os/arch[/variant]"; empty: the planning host's
  std::optional<int64_t> source_date_epoch;
  bool no_cache = false;
  fs::ContextIndex context;
  std::vector<NamedImage> images;
  // --secret values by id, for RUN --mount=type=secret. Kept in memory only:
  // never stored, logged or part of a cache key.
  std::map<std::string, std::string> secrets;
  std::vector<NamedContext> named_contexts;  // sorted by name, names unique

  // The image `ref` names, or null.
  const NamedImage* FindImage(const oci::ImageRef& ref) const;
  // The named context `name` (a NamedContextName), or null.
  const NamedContext* FindNamedContext(absl::string_view name) const;
};

// What the planner needs to know of named contexts (PlanOptions::named_contexts).
std::map<std::string, graph::NamedContextSource> NamedContextSources(
    const std::vector<NamedContext>& contexts);
// The indexes of the named local contexts, for graph::ComputePlanCacheKeys;
// they point into `contexts`.
graph::NamedContextIndexes NamedContextIndexes(const std::vector<NamedContext>& contexts);

struct PlannedBuild {
  dockerfile::ParseResult ast;
  dockerfile::StagedDockerfile staged;
  graph::StageGraph graph;
  // Cache keys of the needed stages; empty when they cannot be computed (a
  // COPY source missing from the context), and then `keys_error` says why:
  // the build runs without cache and fails at that COPY, with its location.
  std::vector<std::optional<graph::StageKeys>> keys;
  absl::Status keys_error;
};

// Parses and plans `definition`: base image configs come from its images.
// Errors are the parser's and planner's, with FILE:LINE.
absl::StatusOr<PlannedBuild> PlanBuild(const BuildDefinition& definition);

// Limits on --secret, as BuildKit's: an id is 1 to 256 bytes of letters,
// digits and "._-"; a value is at most 500 KiB.
inline constexpr size_t kMaxSecretBytes = 500 * 1024;
absl::Status CheckSecret(absl::string_view id, absl::string_view value);

// To and from the wire. The readers check everything: InvalidArgument naming
// the field and value for a digest, reference, config or context entry that
// does not parse or check out (fs::ContextIndex::FromEntries), and for a
// named context whose name is not in NamedContextName form or given twice.
void ToSchema(const BuildDefinition& definition, schema::BuildDefinition::Builder out);
absl::StatusOr<BuildDefinition> FromSchema(schema::BuildDefinition::Reader in);

// A definition as one self-contained byte string (a zstd frame of a flat Cap'n
// Proto message whose root is a BuildDefinition), for the coordinator to send
// to a worker once per build as a data frame beside its first assignment.
// ParseDefinition reads it back under the same checks as FromSchema, with the
// size bounded (kMaxDefinitionBytes uncompressed) and the traversal bounded
// by it: InvalidArgument naming `from` when the bytes are not such a frame.
inline constexpr size_t kMaxDefinitionBytes = size_t{64} << 20;
std::string SerializeDefinition(schema::BuildDefinition::Reader definition);
absl::StatusOr<BuildDefinition> ParseDefinition(absl::string_view bytes, absl::string_view from);

void ToSchema(const oci::BuiltImage& image, schema::ImageData::Builder out);
absl::StatusOr<oci::BuiltImage> FromSchema(schema::ImageData::Reader in);

void ToSchema(const oci::Descriptor& layer, schema::Layer::Builder out);
absl::StatusOr<oci::Descriptor> FromSchema(schema::Layer::Reader in);

}  // namespace stagefarm::build

#endif  // STAGEFARM_COMMON_BUILD_BUILD_DEFINITION_H_
