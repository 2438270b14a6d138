# Blob transfer between nodes (common/transfer/). Digests are text with the
# algorithm named ("sha256:<64 hex>"); blob bytes travel only in the raw data
# frame that follows a chunkData or putChunk envelope, never in these structs.
#
# Fetch (a node pulls blobs it lacks from holders):
#   statBlobs -> blobManifests      which blobs the holder has, as chunk lists
#   getChunk  -> chunkData + 1 data frame, or error (NotFound)
# The fetcher keeps a bounded number of getChunk requests in flight per
# holder (its credit); a holder sends nothing it was not asked for.
#
# Upload (a client pushes its build context to the coordinator):
#   findMissing -> missingBlobs     which of these the receiver lacks
#   putBlob + 1 data frame -> blobStored     a blob that fits in one chunk
#   offerBlob -> offerReply         a larger blob; the reply lists the chunk
#                                   indexes the receiver lacks
#   putChunk + 1 data frame -> chunkStored   one of those chunks
#   commitBlob -> blobStored        all chunks sent; verify and make visible
@0xb3c8f1e2a4d69701;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("stagefarm::schema");

struct DigestList {
  digests @0 :List(Text);
}

struct ChunkRef {
  digest @0 :Text;
  length @1 :UInt64;
}

struct BlobManifest {
  digest @0 :Text;
  size @1 :UInt64;
  mediaType @2 :Text;
  chunks @3 :List(ChunkRef);
}

struct BlobManifests {
  # The requested blobs the holder has, in request order.
  found @0 :List(BlobManifest);
  # The requested blobs it does not have.
  missing @1 :List(Text);
}

struct ChunkAddress {
  # The blob the chunk belongs to (for error messages and upload sessions).
  blob @0 :Text;
  # The chunk's position in the blob's chunk list.
  index @1 :UInt32;
  # The chunk's digest.
  chunk @2 :Text;
}

struct OfferReply {
  blob @0 :Text;
  # Indexes into the offered chunk list that the receiver lacks, ascending.
  wanted @1 :List(UInt32);
}

struct BlobPut {
  digest @0 :Text;
  mediaType @1 :Text;
}
