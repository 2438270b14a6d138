// Artifacts: what one stage hands another that copies from it, without the
// whole filesystem. When stage B runs `COPY --from=A /some/path /dst` on
// another node, A's node exports an artifact: one uncompressed layer holding
// only the paths B reads, each at the same path (a "mini root"). B's node
// uses the one-layer image {A's config, the artifact} as the source root of
// its COPY --from, and the COPY gives the same layer as with A's full image.
//
// What makes the mini root equivalent for COPY (worker/copy/copy.h):
//  - each path is looked up in the stage as COPY looks it up (globs expanded,
//    every symlink followed inside the root); the artifact holds every
//    symlink the lookup followed, as a symlink, and the entry it ends on,
//    copied whole with CopyInto's --parents rule (owners, modes, xattrs,
//    mtimes and hardlinks kept), all in one copy so that files hard-linked
//    across two paths stay linked. So every entry is at its own path with its
//    own type: the artifact is a subset of the stage's tree, and a lookup in
//    it follows the same links to the same entries and a glob matches the
//    same names;
//  - every directory of the mini root, including those made on the way to a
//    path, gets the mode, owner and mtime the source shows at that path
//    (through symlinks, inside the root), so that --parents copies see the
//    stage's metadata and the artifact's bytes depend only on the stage;
//  - a path the stage lacks is left out (the links on the way to it kept,
//    and the non-directory a lookup stops at): the consumer's COPY fails on
//    it with the artifact as with the stage, with the same error.
//
// Where an artifact cannot stand in for the stage (ArtifactCanServe false),
// the consumer must be given the full stage:
//  - "/" (the whole stage): its root's own metadata is not in a layer;
//  - an empty path list.
// Known differences outside COPY: a RUN --mount from= of an artifact sees
// the same tree, but st_nlink of a file linked from outside the exported
// paths is lower and inode numbers differ.
#ifndef STAGEFARM_WORKER_BUILD_ARTIFACTS_H_
#define STAGEFARM_WORKER_BUILD_ARTIFACTS_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/oci/image_layout.h"
#include "worker/build/stage_executor.h"

namespace stagefarm::worker {

// Whether an artifact of `paths` (absolute, cleaned, as graph::StageRead
// gives them; globs allowed) gives every COPY --from of them the same result
// as the full stage. False for "/" and for an empty list.
bool ArtifactCanServe(absl::Span<const std::string> paths);

// Exports the artifact of `stage` (built or resolved on this node, its layers
// in executor.store()) for `paths` (see above): an uncompressed layer
// (oci::LayerMediaType(kNone)) committed to executor.store(), whose
// descriptor is returned. Its diff id is its digest. Mtimes are clamped to
// `source_date_epoch` (the build's) as the stage's layers were (the node that
// built the stage may hold its snapshots unclamped), so the same stage and
// paths give the same bytes on any node and run of one build; paths of which
// nothing exists give a layer without entries. InvalidArgument when
// !ArtifactCanServe(paths); FailedPrecondition naming the path when one
// resolves to the stage's root (a symlink to "/": use the full stage);
// otherwise the error of mounting the stage, of copying (naming the path) or
// of the store. Uses a scratch directory of the executor, removed before
// returning.
absl::StatusOr<oci::Descriptor> ExportArtifact(const StageExecutor& executor,
                                               const BuiltImage& stage,
                                               absl::Span<const std::string> paths,
                                               std::optional<int64_t> source_date_epoch);

// The one-layer image a consumer reads an artifact of `stage` as: the
// stage's config with its diff ids replaced by the artifact's.
BuiltImage ArtifactImage(const BuiltImage& stage, const oci::Descriptor& artifact);

}  // namespace stagefarm::worker

#endif  // STAGEFARM_WORKER_BUILD_ARTIFACTS_H_
