# Builds on the cluster: a client submits a Dockerfile build to the
# coordinator, the coordinator hands its stages to workers, the workers report
# back. Every message travels in an Envelope (envelope.capnp) on the
# coordinator's control socket and is validated on receipt.
#
# Client -> coordinator:
#   submitBuild   -> buildAccepted        then unsolicited buildEvent messages
#                                         (requestId = the submit's) until one
#                                         of kind done or failed
#   cancelBuild   -> cancelled            the build fails as "cancelled"
# Before submitting, the client uploads the context files the coordinator's
# store lacks (transfer.capnp, on the coordinator's blob endpoint), and the
# layers of the external images the build names.
#
# Coordinator -> worker, worker -> coordinator:
#   assignStage   (coordinator -> worker, requestId = the assignment id)
#   stageEvent    (worker -> coordinator, unsolicited, same requestId) until
#                 one of kind finished or failed
#   cancelStage   (coordinator -> worker: the assignment id) the worker stops
#                 the stage and reports failed
#   locateBlobs   -> blobLocations        who holds which blobs (any peer)
@0xc7d1e2f3a4b50617;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("stagefarm::schema");

# A node that holds blobs: its blob server, and the CURVE public key (Z85)
# to connect to it with (empty without CURVE).
struct Holder {
  endpoint @0 :Text;
  publicKey @1 :Text;
}

struct Layer {
  digest @0 :Text;      # "sha256:..." of the blob as stored (uncompressed tar)
  size @1 :UInt64;
  mediaType @2 :Text;
}

# An image as a build uses it: its config document and its layers, bottom
# first, one per config diff id.
struct ImageData {
  config @0 :Data;
  layers @1 :List(Layer);
}

# An external image a build names (FROM, COPY --from, mount from=), by the
# reference as the plan normalises it.
struct NamedImage {
  ref @0 :Text;
  image @1 :ImageData;
  # The manifest digest the reference resolved to ("" when unknown): it
  # keys the image in cache keys.
  manifestDigest @2 :Text;
}

# One entry of a build context's index (fs::ContextEntry).
struct ContextEntry {
  path @0 :Text;
  type @1 :Type;
  mode @2 :UInt32;
  uid @3 :UInt32;
  gid @4 :UInt32;
  size @5 :UInt64;
  content @6 :Text;      # files only: "sha256:..."
  linkTarget @7 :Text;   # symlinks only
  mtimeNs @8 :Int64;     # nanoseconds since the epoch

  enum Type {
    file @0;
    directory @1;
    symlink @2;
  }
}

# What planning needs, the same on the coordinator and on every worker (a
# worker plans the Dockerfile again and runs one of its stages).
struct BuildDefinition {
  dockerfile @0 :Data;
  dockerfileName @1 :Text;      # for error locations, e.g. "Dockerfile"
  buildArgs @2 :List(Text);     # "NAME=value"
  target @3 :Text;              # a stage name; empty: the last stage
  platform @4 :Text;            # "os/arch[/variant]"; empty: the cluster's
  # Seconds since the epoch; hasSourceDateEpoch false: none.
  sourceDateEpoch @5 :Int64;
  hasSourceDateEpoch @6 :Bool;
  noCache @7 :Bool;
  context @8 :List(ContextEntry);   # .dockerignore already applied
  images @9 :List(NamedImage);
  # --secret values for RUN --mount=type=secret: held in memory by the nodes
  # that run the build, never stored, logged or part of a cache key.
  secrets @10 :List(Secret);
  # --build-context NAME=VALUE, by the name the planner matches
  # (graph::NamedContextName).
  namedContexts @11 :List(NamedContext);
}

# A named build context: an image (docker-image://REF, whose image is among
# the definition's images) or a local directory, indexed as the main context
# is (its own .dockerignore applied) and restricted to what the build reads.
# Its files travel as the main context's do, by content digest.
struct NamedContext {
  name @0 :Text;
  image @1 :Text;                    # the reference; "" for a directory
  context @2 :List(ContextEntry);    # a directory's index
}

struct Secret {
  id @0 :Text;
  value @1 :Data;
}

struct BuildRequest {
  definition @0 :BuildDefinition;
  # A label for logs and events (e.g. the client's host and directory).
  client @1 :Text;
}

struct BuildAccepted {
  buildId @0 :Text;
  # Stages the build needs, and how many are already cached.
  stages @1 :UInt32;
}

# A stage's result as another stage (or the export) reads it.
struct StageResult {
  image @0 :ImageData;
  # Artifacts made for the stages that copy from it: each the paths read
  # (as the plan lists them) packed into one layer-format blob.
  artifacts @1 :List(Artifact);
  # The stage's result cache key ("sha256:...").
  cacheKey @2 :Text;
}

struct Artifact {
  paths @0 :List(Text);
  layer @1 :Layer;
}

# An input of an assigned stage that another stage produced.
struct StageInput {
  stage @0 :UInt32;
  result @1 :StageResult;
  holders @2 :List(Holder);
}

struct StageAssign {
  buildId @0 :Text;
  stage @1 :UInt32;                # index in the plan
  # True when the build's definition travels with this assignment, as data
  # frame 0 (build::SerializeDefinition): the first assignment of a build to
  # a worker. Later ones omit it and the worker uses the one it kept.
  # Serialised once by the coordinator and shared by every send.
  definitionFrame @2 :Bool;
  inputs @3 :List(StageInput);     # every stage it reads
  # Who holds the context files and the external images' layers.
  contextHolders @4 :List(Holder);
  imageHolders @5 :List(Holder);
  # Artifacts to export at the end: one per path list.
  exports @6 :List(ArtifactRequest);
}

struct ArtifactRequest {
  paths @0 :List(Text);
}

struct StageEvent {
  buildId @0 :Text;
  stage @1 :UInt32;
  workerId @2 :Text;
  kind @3 :Kind;
  step @4 :UInt32;        # 1-based, for step
  steps @5 :UInt32;
  text @6 :Text;          # step: the instruction; log: output; note; failed: the reason
  seconds @7 :Float64;    # finished: time spent on the worker
  bytesFetched @8 :UInt64;  # finished: input bytes received from peers
  result @9 :StageResult; # finished
  # failed: the inputs could not be fetched (their holders are gone); the
  # coordinator re-runs what produced them rather than failing the build.
  inputsLost @10 :Bool;

  enum Kind {
    started @0;
    step @1;
    log @2;
    note @3;
    finished @4;
    failed @5;
  }
}

struct BuildEvent {
  buildId @0 :Text;
  time @1 :Int64;          # microseconds since the epoch
  stage @2 :Int32;         # -1 for the build as a whole
  stageName @3 :Text;
  workerId @4 :Text;
  kind @5 :Kind;
  step @6 :UInt32;
  steps @7 :UInt32;
  text @8 :Text;
  seconds @9 :Float64;
  bytesFetched @10 :UInt64;
  # done: the target's image and who holds its layers.
  result @11 :ImageData;
  holders @12 :List(Holder);
  # queued (stage -1): the stages waiting to run, by index and name, in one
  # event rather than one each.
  queuedStages @13 :List(UInt32);
  queuedNames @14 :List(Text);

  enum Kind {
    queued @0;
    started @1;
    step @2;
    log @3;
    note @4;
    cached @5;
    stageDone @6;
    stageFailed @7;
    retried @8;
    done @9;
    failed @10;
  }
}

struct BlobLocation {
  digest @0 :Text;
  holders @1 :List(Holder);
}
