// Cache keys: one digest per instruction that names its result. Two
// instructions with the same key produce the same result, so the coordinator's
// cache index may hand out a result built anywhere, by any worker, in any run.
//
// Contract:
//  - The key is a pure function of CacheKeyInputs: no clock, no host name, no
//    pointer values, no hash-table seeds. The same inputs give the same key in
//    every process, on every machine, in every run (the tests check a golden
//    value and a second process).
//  - Everything the result depends on must reach the inputs, and nothing else
//    should: the caller passes only the args and env the instruction can see,
//    and context files by content and metadata (fs::SelectionDigest, which
//    leaves out modification times), never by timestamp.
//  - Keys chain: `parent` is the previous instruction's key, so a change
//    anywhere earlier in a stage, or in its base, changes every key after it.
//    Config-only instructions (USER, HEALTHCHECK, LABEL, ONBUILD, SHELL,
//    STOPSIGNAL, ...) have keys like any other, so they take part in the chain.
//  - Inputs are order-independent where order means nothing: args, env and
//    labelled inputs are maps, hashed in name order, whatever order the caller
//    built them in. Order that matters (the instruction text) is kept as given.
//
// Layout, version "stagefarm-cache-key/v1": SHA-256 over a sequence of items,
// each written with digest::Sha256::UpdateLengthPrefixed (its length as 8
// bytes big-endian, then its bytes); counts are decimal text:
//
//   "stagefarm-cache-key/v1"
//   "parent"       parent.ToString()
//   "instruction"  instruction
//   "platform"     platform
//   "build-args"   <count>   then per arg, by name:   name, value
//   "env"          <count>   then per variable, by name: name, value
//   "inputs"       <count>   then per input, by label: label, digest.ToString()
//
// Every item is length-prefixed and every list counted, so the byte stream
// decodes back to exactly one set of inputs: no two different input sets can
// collide by concatenation (an arg "A" = "B=C" is not an arg "A=B" = "C").
// Changing this layout, or what any field means, requires a new version
// string, and with it the golden value in tests/graph/cache_key_test.cc.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "common/digest/digest.h"

namespace stagefarm::graph {

// The version tag every key's hash starts with.
inline constexpr absl::string_view kCacheKeyVersion = "stagefarm-cache-key/v1";

struct CacheKeyInputs {
  // The key of the previous instruction in the stage. For the first
  // instruction: BaseImageKey of the stage's base image, or the key of the
  // last instruction of the stage it is built FROM.
  digest::Digest parent;
  // The instruction after expansion and normalisation, with every flag,
  // rendered by the caller (e.g. "COPY --chown=app:app --link src/ /app/").
  std::string instruction = {};
  // The platform the stage is built for, "os/arch[/variant]".
  std::string platform = {};
  // The build args in scope at the instruction (declared with ARG in the stage,
  // with the value after --build-arg and defaults), name → value.
  std::map<std::string, std::string> build_args = {};
  // The environment in effect (ENV of the stage, after the base image's),
  // name → value.
  std::map<std::string, std::string> env = {};
  // The digests of what the instruction reads, by label. Labels are the
  // caller's, and unique per instruction by construction, e.g.
  //   "context"                         → fs::SelectionDigest of its sources
  //   "stage:2:/out/app"                → digest of that artifact of stage 2
  //   "image:docker.io/library/alpine"  → manifest digest of an external image
  //   "mount:cache:/root/.cache"        → digest of a mounted source
  std::map<std::string, digest::Digest> inputs = {};
};

// The cache key of one instruction (layout above).
digest::Digest ComputeCacheKey(const CacheKeyInputs& inputs);

// The parent key of the first instruction of a stage built FROM an image.
// `image_ref` is the normalised reference ("docker.io/library/alpine:3.19";
// "scratch" for FROM scratch); `manifest` the digest it resolved to, when
// known. With a manifest digest the key depends on that digest alone: the
// content is what counts, so "alpine:3" and "alpine:3.19" pinned to the same
// manifest share their cache. Without one it depends on the reference text,
// and a tag moved to new content goes unnoticed; callers resolve tags first
// wherever they can.
// Layout (same encoding and version as ComputeCacheKey):
//   "stagefarm-cache-key/v1", "base-image", then "manifest", manifest.ToString()
//                                               or "ref", image_ref.
digest::Digest BaseImageKey(absl::string_view image_ref,
                            const std::optional<digest::Digest>& manifest);

}  // namespace stagefarm::graph
