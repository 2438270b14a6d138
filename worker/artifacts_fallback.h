// TEMPORARY: the declarations of three functions being written on branch
// `artifacts` (worker/build/artifacts.h, worker/build/local_build.h), with
// stand-ins in artifacts_fallback.cc (ExportArtifact makes no artifact, so
// consumers fetch the producer's whole layers), so that the stage runner builds before
// that branch lands. Delete both files when it does, and include the real
// headers in stage_runner.cc.
#ifndef STAGEFARM_WORKER_ARTIFACTS_FALLBACK_H_
#define STAGEFARM_WORKER_ARTIFACTS_FALLBACK_H_

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/cas/blob_store.h"
#include "common/fs/context_index.h"
#include "common/oci/image_layout.h"
#include "worker/build/stage_executor.h"

namespace stagefarm::worker {

// MaterializeContext with file contents read from `store` by the digest the
// index gives each file.
absl::Status MaterializeContextFromStore(cas::BlobStore& store, const fs::ContextIndex& index,
                                         const std::vector<std::string>& sources,
                                         const std::filesystem::path& dest);

// The artifact of `stage` for `paths`: one layer holding just those paths.
// The stand-in is Unimplemented: no artifact, consumers read the whole stage.
absl::StatusOr<oci::Descriptor> ExportArtifact(const StageExecutor& executor,
                                               const BuiltImage& stage,
                                               absl::Span<const std::string> paths);

// The one-layer image a consumer reads an artifact of `stage` as: the
// stage's config with its diff ids replaced by the artifact's.
BuiltImage ArtifactImage(const BuiltImage& stage, const oci::Descriptor& artifact);

}  // namespace stagefarm::worker

#endif  // STAGEFARM_WORKER_ARTIFACTS_FALLBACK_H_
