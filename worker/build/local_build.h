// A whole build on this node: every needed stage of a plan run by one
// StageExecutor, stages of the same wave at the same time, external images
// resolved from the node's named images (oci/local_images.h), and the build
// context materialised once from its index (.dockerignore applied).
//
// This is the single-machine path; the coordinator (coordinator/) hands the
// same stages to remote workers instead.
#ifndef STAGEFARM_WORKER_BUILD_LOCAL_BUILD_H_
#define STAGEFARM_WORKER_BUILD_LOCAL_BUILD_H_

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/cas/blob_store.h"
#include "common/fs/context_index.h"
#include "common/graph/plan_cache_keys.h"
#include "common/graph/stage_graph.h"
#include "common/oci/layer_compress.h"
#include "worker/build/stage_executor.h"

namespace stagefarm::worker {

// What a build reports, stage by stage. Called from several threads (one per
// running stage), never at the same time.
struct BuildEvents {
  std::function<void(const graph::PlannedStage& stage)> on_stage_start;
  std::function<void(const graph::PlannedStage& stage, size_t step, size_t steps,
                     absl::string_view text)>
      on_step;
  std::function<void(const graph::PlannedStage& stage, absl::string_view output)> on_output;
  std::function<void(const graph::PlannedStage& stage, absl::string_view line)> on_note;
  std::function<void(const graph::PlannedStage& stage, double seconds)> on_stage_done;
};

struct LocalBuildInput {
  const graph::StageGraph* graph = nullptr;
  std::filesystem::path context_dir;          // as the user gave it
  const fs::ContextIndex* context = nullptr;  // its index (ignore file applied)
  // The named local contexts (--build-context NAME=DIR) by name: each
  // directory as the user gave it, and its index (its .dockerignore
  // applied). Both outlive the build.
  struct NamedContextDir {
    std::filesystem::path dir;
    const fs::ContextIndex* index = nullptr;
  };
  std::map<std::string, NamedContextDir> named_contexts;
  std::string dockerfile_name = "Dockerfile";
  // An external image (FROM, COPY --from, mount from=) by reference; NotFound
  // naming it when the node does not have it.
  std::function<absl::StatusOr<BuiltImage>(const oci::ImageRef&)> resolve_image;
  // When set, the layers of the stages the target is built FROM (the ones
  // that end up in the image) are compressed in the background as each such
  // stage finishes, while later stages run; the export then finds them
  // compressed (oci::CompressLayers remembers each result).
  std::optional<oci::CompressOptions> precompress;
  // Cache keys of every needed stage (graph::ComputePlanCacheKeys); empty:
  // no cache. `use_cache` false runs every step but records the results.
  std::vector<std::optional<graph::StageKeys>> cache_keys;
  bool use_cache = true;
  // SOURCE_DATE_EPOCH for every stage (StageInputs::source_date_epoch).
  std::optional<int64_t> source_date_epoch;
  // --secret values by id (StageInputs::secrets); null: none.
  const std::map<std::string, std::string>* secrets = nullptr;
  // When set and it becomes true, the running stages stop (a RUN in progress
  // has its container killed) and the build fails as Cancelled.
  const std::atomic<bool>* cancelled = nullptr;
};

// Builds the target stage and what it needs; returns the target's image.
// The first stage to fail fails the build (stages already running finish).
// Each external image is resolved once per build.
absl::StatusOr<BuiltImage> RunLocalBuild(const StageExecutor& executor,
                                         const LocalBuildInput& input, const BuildEvents& events);

// Copies what `index` lists from `context_dir` into `dest` (made; must be
// empty): directories, files and symlinks with their modes and mtimes, owned
// by root as the reference's context transfer makes them. File contents are
// checked against the digests the index gives them while they stream: a file
// changed since it was indexed (its cache keys with it) is FailedPrecondition
// naming it. (On one machine the files come from the context directory; in
// the cluster the client uploads them to the coordinator's store, issue 7.) Only the entries
// selected by `sources` (BuildKit's COPY source semantics, see
// ContextIndex::Select), or everything when a source selects nothing
// resolvable. Every name is opened inside the context (never following a
// symlink out of it).
absl::Status MaterializeContext(const std::filesystem::path& context_dir,
                                const fs::ContextIndex& index,
                                const std::vector<std::string>& sources,
                                const std::filesystem::path& dest);

// MaterializeContext with file contents read from `store` by the digest the
// index gives each file (in the cluster the client uploads them to the
// coordinator's store), and times from the index (the mtimes the client's
// walk saw). NotFound naming the path and the digest when the
// store lacks a file's content; FailedPrecondition when a blob does not hash
// to its digest; otherwise as MaterializeContext. Paths in errors are
// context-relative.
absl::Status MaterializeContextFromStore(cas::BlobStore& store, const fs::ContextIndex& index,
                                         const std::vector<std::string>& sources,
                                         const std::filesystem::path& dest);

}  // namespace stagefarm::worker

#endif  // STAGEFARM_WORKER_BUILD_LOCAL_BUILD_H_
