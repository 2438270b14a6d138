# The cluster: workers joining a coordinator, keeping their lease, and what
# the coordinator reports about them. Every message travels in an Envelope
# (envelope.capnp) on the coordinator's control socket (a ROUTER; workers and
# clients connect DEALERs), and is validated on receipt.
#
# Joining and staying (worker -> coordinator):
#   workerHello -> welcome          the worker is registered; the lease and
#                                   heartbeat interval are the coordinator's
#   heartbeat   -> heartbeatAck     renews the lease; known = false tells a
#                                   worker the coordinator does not know it
#                                   (it restarted, or dropped the worker after
#                                   a missed lease): the worker says hello again
# A worker that sends nothing for a lease is dropped.
#
# Operators and clients:
#   clusterStatus        -> clusterStatusReply
#   drainWorker (its id) -> drained   no new work for it; running work finishes
@0xb1f3c2a9e4d56780;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("stagefarm::schema");

struct WorkerHello {
  # Chosen by the worker, stable across its restarts (from its data dir), so
  # a restarted worker is recognised: [A-Za-z0-9._-], 1 to 64 characters.
  workerId @0 :Text;
  # "os/arch[/variant]" it can run, e.g. "linux/amd64"; at least one.
  platforms @1 :List(Text);
  # Stages it runs at once; at least 1.
  slots @2 :UInt32;
  # Where its blob server listens, for peers to fetch from.
  blobEndpoint @3 :Text;
  # Bytes its content store holds, and its size cap (0: none).
  storeBytes @4 :UInt64;
  storeCapBytes @5 :UInt64;
  # The stagefarm version it runs (for the status view; the protocol version
  # is the envelope's).
  version @6 :Text;
  # Operator labels, "key=value".
  labels @7 :List(Text);
  # Stage results ("sha256:..." layers and artifacts) its store still holds,
  # so that a restarted coordinator can trust its cache entries again.
  holds @8 :List(Text);
}

struct Welcome {
  # The lease: a worker not heard from for this long is dropped.
  leaseMillis @0 :UInt32;
  # How often the worker should send a heartbeat (well inside the lease).
  heartbeatMillis @1 :UInt32;
}

struct Heartbeat {
  workerId @0 :Text;
  slotsInUse @1 :UInt32;
  storeBytes @2 :UInt64;
}

struct HeartbeatAck {
  # False when the coordinator does not know this worker: say hello again.
  known @0 :Bool;
}

struct WorkerStatus {
  workerId @0 :Text;
  platforms @1 :List(Text);
  slots @2 :UInt32;
  slotsInUse @3 :UInt32;
  blobEndpoint @4 :Text;
  storeBytes @5 :UInt64;
  storeCapBytes @6 :UInt64;
  version @7 :Text;
  labels @8 :List(Text);
  # Milliseconds since the coordinator last heard from it.
  sinceHeartbeatMillis @9 :UInt64;
  draining @10 :Bool;
  # The CURVE public key it connected with (Z85), empty without CURVE.
  publicKey @11 :Text;
  # The stages it runs: "BUILD STAGE-NAME step N/M".
  running @12 :List(Text);
}

struct ClusterStatus {
  workers @0 :List(WorkerStatus);
  # The coordinator's own blob server (clients upload context files and
  # images there), and its CURVE public key (Z85; empty without CURVE).
  blobEndpoint @1 :Text;
  publicKey @2 :Text;
  # Builds submitted and not yet finished.
  activeBuilds @3 :UInt32;
}
