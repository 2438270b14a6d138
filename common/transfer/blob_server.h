// Serves a node's content store to its peers on one ROUTER socket: blob
// manifests and chunks for nodes that fetch, and find-missing plus verified
// uploads for clients that push (their build context). See
// schemas/transfer.capnp for the exchanges.
//
// Every request is validated (envelope_frame.h, then each digest and
// manifest); a bad one gets an Error reply naming the problem and the server
// keeps serving. Upload sessions are bounded in number and expire when idle,
// so a peer cannot pin unbounded state.
#ifndef STAGEFARM_COMMON_TRANSFER_BLOB_SERVER_H_
#define STAGEFARM_COMMON_TRANSFER_BLOB_SERVER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <zmq.hpp>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/cas/blob_store.h"
#include "common/digest/digest.h"
#include "common/net/envelope_frame.h"
#include "common/net/socket_security.h"

namespace stagefarm::transfer {

struct BlobServerOptions {
  // Where to bind; port 0 picks a free port (see BlobServer::endpoint).
  std::string endpoint = "tcp://127.0.0.1:0";
  net::FrameLimits limits;
  // Uploads in progress at once (over all peers), and how long one may sit
  // without a message before it is dropped.
  size_t max_upload_sessions = 256;
  absl::Duration upload_idle_timeout = absl::Minutes(5);
  // Fault injection for tests: sees (and may change) each chunk's bytes just
  // before they are sent. Called on the server's thread.
  std::function<void(const digest::Digest& chunk, std::string& bytes)> tamper_chunk;
};

struct BlobServerStats {
  uint64_t manifest_requests = 0;  // statBlobs requests answered
  uint64_t chunks_sent = 0;
  uint64_t bytes_sent = 0;
  uint64_t errors_sent = 0;
  uint64_t blobs_received = 0;
  uint64_t bytes_received = 0;
};

class BlobServer {
 public:
  // Binds the ROUTER socket in `context` with `security` and starts serving
  // `store` on a new thread. `context` and `store` must outlive the server.
  static absl::StatusOr<std::unique_ptr<BlobServer>> Start(zmq::context_t& context,
                                                           cas::BlobStore& store,
                                                           net::SocketSecurity security,
                                                           BlobServerOptions options = {});
  // Stops serving and joins the thread; uploads in progress are abandoned.
  ~BlobServer();
  BlobServer(const BlobServer&) = delete;
  BlobServer& operator=(const BlobServer&) = delete;

  // The bound endpoint, with the port the system chose for port 0.
  const std::string& endpoint() const { return endpoint_; }

  BlobServerStats stats() const;

 private:
  class Loop;
  BlobServer() = default;

  std::string endpoint_;
  std::unique_ptr<Loop> loop_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace stagefarm::transfer

#endif  // STAGEFARM_COMMON_TRANSFER_BLOB_SERVER_H_
