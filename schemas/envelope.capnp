# The envelope every stagefarm message travels in: one Cap'n Proto frame,
# followed by zero or more raw ZeroMQ data frames for blob bytes (which never go
# inside Cap'n Proto structs). Message kinds are added to the union as the
# protocol grows; a receiver answers an unknown kind with an Error.
@0xd5a0b58076bec058;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("stagefarm::schema");

using Transfer = import "transfer.capnp";
using Cluster = import "cluster.capnp";
using Build = import "build.capnp";

# Raised when a message changes incompatibly (2: the build definition moved
# out of StageAssign into a data frame).
const protocolVersion :UInt32 = 2;

struct Envelope {
  # The sender's protocol version; receivers reject versions they do not speak.
  version @0 :UInt32;
  # Correlates a reply with its request; 0 for unsolicited messages.
  requestId @1 :UInt64;

  union {
    error @2 :Error;
    ping @3 :Void;
    pong @4 :Void;

    # Blob transfer: see transfer.capnp for the exchanges.
    statBlobs @5 :Transfer.DigestList;
    blobManifests @6 :Transfer.BlobManifests;
    getChunk @7 :Transfer.ChunkAddress;
    chunkData @8 :Transfer.ChunkAddress;
    findMissing @9 :Transfer.DigestList;
    missingBlobs @10 :Transfer.DigestList;
    putBlob @11 :Transfer.BlobPut;
    offerBlob @12 :Transfer.BlobManifest;
    offerReply @13 :Transfer.OfferReply;
    putChunk @14 :Transfer.ChunkAddress;
    chunkStored @15 :Transfer.ChunkAddress;
    commitBlob @16 :Transfer.BlobPut;
    blobStored @17 :Transfer.BlobPut;

    # The cluster: see cluster.capnp for the exchanges.
    workerHello @18 :Cluster.WorkerHello;
    welcome @19 :Cluster.Welcome;
    heartbeat @20 :Cluster.Heartbeat;
    heartbeatAck @21 :Cluster.HeartbeatAck;
    clusterStatus @22 :Void;
    clusterStatusReply @23 :Cluster.ClusterStatus;
    drainWorker @24 :Text;
    drained @25 :Void;

    # Builds: see build.capnp for the exchanges.
    submitBuild @26 :Build.BuildRequest;
    buildAccepted @27 :Build.BuildAccepted;
    buildEvent @28 :Build.BuildEvent;
    cancelBuild @29 :Text;
    cancelled @30 :Void;
    assignStage @31 :Build.StageAssign;
    stageEvent @32 :Build.StageEvent;
    cancelStage @33 :UInt64;
    locateBlobs @34 :Transfer.DigestList;
    blobLocations @35 :List(Build.BlobLocation);
  }
}

struct Error {
  # An absl::StatusCode value.
  code @0 :UInt32;
  # A message a user can act on, naming the peer or value at fault.
  message @1 :Text;
}
