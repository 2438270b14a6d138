#include "common/daemon/blob_service.h"

#include <signal.h>

#include <cstdio>
#include <memory>
#include <zmq.hpp>

#include "absl/strings/str_cat.h"
#include "common/cas/blob_store.h"
#include "common/net/zap_authenticator.h"
#include "common/transfer/blob_server.h"
#include "common/transfer/wire.h"

namespace stagefarm::daemon {
namespace {

sigset_t StopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  return signals;
}

}  // namespace

void BlockStopSignals() {
  sigset_t signals = StopSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

absl::Status ServeBlobsUntilSignal(absl::string_view program, absl::string_view listen,
                                   const std::filesystem::path& data_dir,
                                   const net::NodeSecurity& security,
                                   const StartServices& services) {
  transfer::KeepLargeBuffersMapped();
  zmq::context_t context;
  std::unique_ptr<net::ZapAuthenticator> zap;
  if (!security.insecure) {
    const std::string name(program);
    absl::StatusOr<std::unique_ptr<net::ZapAuthenticator>> started = net::ZapAuthenticator::Start(
        context, security.authorized_keys,
        [name](absl::string_view public_key, absl::string_view address) {
          std::fprintf(stderr, "%s: refused a peer at %.*s with key %.*s (not authorised)\n",
                       name.c_str(), static_cast<int>(address.size()), address.data(),
                       static_cast<int>(public_key.size()), public_key.data());
        });
    if (!started.ok()) return started.status();
    zap = *std::move(started);
  }
  absl::StatusOr<net::SocketSecurity> server_security = security.ForServer();
  if (!server_security.ok()) return server_security.status();
  absl::StatusOr<std::unique_ptr<cas::BlobStore>> store = cas::BlobStore::Open(data_dir / "cas");
  if (!store.ok()) return store.status();
  transfer::BlobServerOptions options;
  options.endpoint = std::string(listen);
  absl::StatusOr<std::unique_ptr<transfer::BlobServer>> server =
      transfer::BlobServer::Start(context, **store, *server_security, options);
  if (!server.ok()) return server.status();
  std::printf("%.*s: serving blobs on %s\n", static_cast<int>(program.size()), program.data(),
              (*server)->endpoint().c_str());
  std::fflush(stdout);
  std::shared_ptr<void> extra;
  if (services) {
    absl::StatusOr<std::shared_ptr<void>> started =
        services(context, security, **store, (*server)->endpoint());
    if (!started.ok()) return started.status();
    extra = *std::move(started);
  }

  sigset_t signals = StopSignals();
  int received = 0;
  sigwait(&signals, &received);
  std::printf("%.*s: stopping (%s)\n", static_cast<int>(program.size()), program.data(),
              received == SIGINT ? "SIGINT" : "SIGTERM");
  std::fflush(stdout);
  extra.reset();
  server->reset();
  store->reset();
  return absl::OkStatus();
}

int RunBlobNode(absl::string_view program, const net::NodeSecurityFlags& flags,
                const net::NodeRole& role, bool check_only, absl::string_view listen,
                const std::filesystem::path& data_dir, const StartServices& services) {
  const std::string name(program);
  absl::StatusOr<net::NodeSecurity> security = net::LoadNodeSecurity(flags, role);
  if (!security.ok()) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s: %s\n", name.c_str(),
                 std::string(security.status().message()).c_str());
    return 2;
  }
  std::printf("%s: security: %s\n", name.c_str(), security->Summary().c_str());
  std::fflush(stdout);
  if (check_only) return 0;
  absl::Status served = ServeBlobsUntilSignal(program, listen, data_dir, *security, services);
  if (!served.ok()) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), std::string(served.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace stagefarm::daemon
