// Runs one planned stage on this node: instruction by instruction, each
// filesystem change (RUN, COPY, ADD, a new WORKDIR) in a root filesystem
// stacked from the snapshots of the layers so far, its difference written as
// one layer into the content store, and the image config updated with
// BuildKit's rules (oci::StageImage). The result is the stage's image: the
// config and the layer blobs, which the next stage starts from or reads.
//
// What the executor guarantees:
//  - an instruction that changes nothing adds no layer (its history entry is
//    marked empty_layer, as BuildKit's exporter does);
//  - every path a COPY, ADD or WORKDIR writes is resolved inside the stage's
//    root (fs::RootDir), and every source path inside its source's root;
//  - a failing RUN fails the stage with FILE:LINE, the instruction, its exit
//    code and the tail of its output;
//  - build arguments reach RUN's environment and its history entry, never the
//    image's Env.
#ifndef STAGEFARM_WORKER_BUILD_STAGE_EXECUTOR_H_
#define STAGEFARM_WORKER_BUILD_STAGE_EXECUTOR_H_

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/cas/blob_store.h"
#include "common/graph/stage_graph.h"
#include "common/oci/image.h"
#include "common/oci/image_layout.h"
#include "common/oci/media_types.h"
#include "worker/build/scratch_dir.h"
#include "worker/snapshots/snapshots.h"

namespace stagefarm::worker {

using BuiltImage = oci::BuiltImage;

struct ExecutorOptions {
  std::filesystem::path data_dir;  // snapshots/, cache-mounts/, run/ below it
  // How layers are stored. Uncompressed by default, as BuildKit's snapshotter
  // keeps them: compressing is the exporter's work (oci/layer_compress.h),
  // off the steps' critical path.
  oci::LayerCompression compression = oci::LayerCompression::kNone;
  bool force_copy_rootfs = false;  // never mount overlayfs (tests, odd hosts)
  std::string runc = "runc";
};

// What one stage reads besides its base.
struct StageInputs {
  BuiltImage base;  // the image or stage it is built FROM; ScratchConfig for scratch
  // The build context as a directory, already filtered by .dockerignore.
  std::filesystem::path context_dir;
  // Each named local context (--build-context NAME=DIR) the stage reads, by
  // name, as a directory (its .dockerignore applied): where COPY --from=NAME
  // and mounts from=NAME read.
  std::map<std::string, std::filesystem::path> named_context_dirs;
  // The image a COPY --from or RUN --mount from= names (a stage or an
  // external image); scratch never reaches it.
  std::function<absl::StatusOr<BuiltImage>(const graph::SourceRoot&)> resolve;
  // Given to every RUN's environment, never stored (HTTP_PROXY and friends).
  std::vector<std::pair<std::string, std::string>> proxy_env;
  // The build's --secret values by id, for RUN --mount=type=secret; never
  // stored. Null: none.
  const std::map<std::string, std::string>* secrets = nullptr;
  std::string dockerfile_name = "Dockerfile";  // for error locations
  // The cache keys of the stage's instructions (graph::ComputePlanCacheKeys),
  // one per instruction; empty: no cache. A filesystem step whose key the
  // node's cache index knows, with its layer still stored, is not run: its
  // layer (or its having changed nothing) is taken from the cache.
  std::vector<digest::Digest> cache_keys;
  // Look keys up (false: run every step, but still record the results).
  bool use_cache = true;
  // Seconds since the epoch: clamps layer mtimes and is the time written on
  // the config and history (reproducible images). Without it, now. Per
  // build, so one executor serves builds with different epochs.
  std::optional<int64_t> source_date_epoch;
  // When set, checked before each instruction: once true, Run stops with
  // Cancelled (a RUN already running has its container killed).
  const std::atomic<bool>* cancelled = nullptr;
  // When set, called before the first read of context_dir or
  // named_context_dirs to make those directories (it may be called by each
  // stage; making them once is its business). A stage whose steps are all
  // cached never calls it. An error fails the step that needed them.
  std::function<absl::Status()> prepare_contexts;
};

// What the executor reports while it works, for the progress view.
struct StageEvents {
  // An instruction starts: its 1-based position, the count, its text.
  std::function<void(size_t step, size_t steps, absl::string_view text)> on_step;
  // Output of a RUN, as it comes.
  std::function<void(absl::string_view output)> on_output;
  // A line for the log (rootfs mode, a layer written, a step cached).
  std::function<void(absl::string_view line)> on_note;
};

class StageExecutor {
 public:
  // Opens the node's snapshots under options.data_dir; `store` holds every
  // layer it reads and receives every layer it writes. Both outlive it.
  static absl::StatusOr<std::unique_ptr<StageExecutor>> Open(cas::BlobStore* store,
                                                             ExecutorOptions options);

  // Runs `stage` (planned: its instructions expanded, ONBUILD triggers first)
  // and returns its image. Safe to call for different stages at once.
  absl::StatusOr<BuiltImage> Run(const graph::PlannedStage& stage, const StageInputs& inputs,
                                 const StageEvents& events) const;

  // The snapshots of `image`'s layers, unpacked when missing; `listener`
  // hears of each layer unpacked (snapshots::Snapshots::Ensure).
  absl::StatusOr<std::vector<snapshots::Snapshot>> EnsureSnapshots(
      const BuiltImage& image, const snapshots::UnpackListener& listener = nullptr) const;

  snapshots::Snapshots& snapshots() const { return *snapshots_; }
  cas::BlobStore& store() const { return *store_; }
  const ExecutorOptions& options() const { return options_; }

  // A fresh, unique scratch directory under <data-dir>/run/.
  absl::StatusOr<ScratchDir> NewScratchDir(absl::string_view label) const;

 private:
  StageExecutor(cas::BlobStore* store, ExecutorOptions options,
                std::unique_ptr<snapshots::Snapshots> snapshots)
      : store_(store), options_(std::move(options)), snapshots_(std::move(snapshots)) {}

  cas::BlobStore* store_;
  ExecutorOptions options_;
  std::unique_ptr<snapshots::Snapshots> snapshots_;
  mutable std::atomic<uint64_t> scratch_counter_{0};
};

}  // namespace stagefarm::worker

#endif  // STAGEFARM_WORKER_BUILD_STAGE_EXECUTOR_H_
