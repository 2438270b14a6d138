// Cache keys for a whole plan: every instruction of every needed stage, chained
// from the stage's base.
//
// At plan time some inputs are not content yet, and stand-ins take their place.
// Each stand-in is itself a key, so it changes whenever the content could:
//  - a base or external image is keyed by its normalised reference
//    (BaseImageKey without a manifest digest) until a registry resolves it;
//  - a file another stage produces is keyed by that stage's result key (the
//    key of its last instruction), which covers everything the file can
//    depend on;
//  - a remote ADD source is keyed by its URL (a --checksum is in the text).
// Context files count by content and mode (fs::SelectionDigest), never mtime.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/digest/digest.h"
#include "common/fs/context_index.h"
#include "common/graph/stage_graph.h"

namespace stagefarm::graph {

struct StageKeys {
  digest::Digest base;                       // the first instruction's parent
  std::vector<digest::Digest> instructions;  // one per PlannedStage::instructions entry
  digest::Digest result;                     // the last instruction's key, or `base`
};

// The manifest digest an image reference resolves to, when known (a local
// tag, a registry answer); nullopt keys the image by its reference alone.
using ImageManifestLookup =
    std::function<std::optional<digest::Digest>(const oci::ImageRef& image)>;

// The indexes of the named local contexts (--build-context NAME=DIR) by
// name; the pointers outlive the call.
using NamedContextIndexes = std::map<std::string, const fs::ContextIndex*>;

// Keys for every needed stage of `graph` (nullopt for stages not needed),
// reading context files from `context`, and files of a named context from
// its index in `named_contexts` (keyed like the main context's, under the
// input "context:NAME", so editing a file there changes the keys of the
// instructions that read it and of nothing else). InvalidArgument "FILE:LINE: ..." when
// an instruction's context source does not exist. With `image_manifest`, an
// image it resolves is keyed by its manifest digest, so that the same tag
// naming another image gives other keys. A read of a named context missing
// from `named_contexts` is InvalidArgument "FILE:LINE: build context NAME
// is not defined".
absl::StatusOr<std::vector<std::optional<StageKeys>>> ComputePlanCacheKeys(
    const StageGraph& graph, const fs::ContextIndex& context, absl::string_view filename,
    const ImageManifestLookup& image_manifest = nullptr,
    const NamedContextIndexes& named_contexts = {});

}  // namespace stagefarm::graph
