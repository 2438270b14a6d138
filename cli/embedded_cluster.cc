#include "cli/embedded_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "capnp/message.h"
#include "cli/coordinator_client.h"
#include "schemas/cluster.capnp.h"
#include "schemas/envelope.capnp.h"

namespace stagefarm::cli {
namespace {

namespace stdfs = std::filesystem;

// A TCP port on 127.0.0.1 that nothing listens on now (the system's pick).
absl::StatusOr<int> FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  struct sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  const bool ok = bind(fd, reinterpret_cast<struct sockaddr*>(&address), sizeof address) == 0 &&
                  getsockname(fd, reinterpret_cast<struct sockaddr*>(&address), &length) == 0;
  const int error = errno;
  close(fd);
  if (!ok) return absl::InternalError(absl::StrCat("bind 127.0.0.1:0: ", std::strerror(error)));
  return static_cast<int>(ntohs(address.sin_port));
}

// The last lines of a log, for an error message.
std::string LogTail(const stdfs::path& log) {
  std::ifstream in(log);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
    if (lines.size() > 8) lines.erase(lines.begin());
  }
  return absl::StrJoin(lines, "\n  ");
}

}  // namespace

stdfs::path FindDaemonBinary(const std::string& name) {
  std::error_code error;
  const stdfs::path self = stdfs::read_symlink("/proc/self/exe", error);
  if (!error) {
    const stdfs::path dir = self.parent_path();
    for (const stdfs::path& candidate : {dir / name, dir.parent_path() / "coordinator" / name,
                                         dir.parent_path() / "worker" / name}) {
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
    }
  }
  if (const char* path = std::getenv("PATH")) {
    for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
      const stdfs::path candidate = stdfs::path(std::string(dir)) / name;
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
    }
  }
  return name;
}

absl::StatusOr<EmbeddedCluster::Process> EmbeddedCluster::Spawn(
    const std::string& name, const stdfs::path& binary, const std::vector<std::string>& args,
    const stdfs::path& log) {
  const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat(log.native(), ": open: ", std::strerror(errno)));
  }
  std::vector<std::string> argv_strings = {binary.native()};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  // It dies with this process (the daemons' common flag; PR_SET_PDEATHSIG
  // cannot be set across posix_spawn).
  argv_strings.push_back(absl::StrCat("--exit-with-parent=", getpid()));
  std::vector<char*> argv;
  for (std::string& arg : argv_strings) argv.push_back(arg.data());
  argv.push_back(nullptr);
  // posix_spawn, not fork: a fork copies this process's page tables and
  // then every page this process writes until the child's exec (the client
  // has its heap and the context index by now), about 1,800 page faults in a
  // build of a 10,000-file context. The child logs to its file, reads
  // /dev/null, gets its own process group (a Ctrl-C in the terminal reaches
  // the client, which cancels the build and then stops the cluster) and
  // none of this process's blocked signals.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, fd, STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
  posix_spawnattr_setpgroup(&attributes, 0);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attributes, &none);
  pid_t pid = -1;
  const int error = posix_spawn(&pid, argv[0], &actions, &attributes, argv.data(), environ);
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) {
    close(fd);
    return absl::InternalError(
        absl::StrCat("cannot start ", binary.native(), ": ", std::strerror(error)));
  }
  close(fd);
  Process process{name, pid, log};
  processes_.push_back(process);
  return process;
}

absl::StatusOr<std::unique_ptr<EmbeddedCluster>> EmbeddedCluster::Start(
    EmbeddedClusterOptions options) {
  const absl::Time deadline = absl::Now() + options.start_timeout;
  // The port is free when chosen, but another program may take it before the
  // coordinator binds it (seen once in 850 tests run two at a time): then the
  // cluster is started again on another port.
  absl::StatusOr<std::unique_ptr<EmbeddedCluster>> cluster;
  for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
    cluster = StartOnce(options, deadline);
    if (!absl::IsAborted(cluster.status())) break;
  }
  return cluster;
}

absl::StatusOr<std::unique_ptr<EmbeddedCluster>> EmbeddedCluster::StartOnce(
    const EmbeddedClusterOptions& options, absl::Time deadline) {
  std::unique_ptr<EmbeddedCluster> cluster(new EmbeddedCluster());
  const stdfs::path dir = options.home / "cluster";
  std::error_code error;
  stdfs::create_directories(dir, error);
  if (error) return absl::InternalError(absl::StrCat(dir.native(), ": ", error.message()));

  // The coordinator's port is chosen here, so that the workers start at the
  // same time as the coordinator (they join as soon as it listens).
  absl::StatusOr<int> port = FreeLoopbackPort();
  if (!port.ok()) return port.status();
  cluster->control_endpoint_ = absl::StrCat("tcp://127.0.0.1:", *port);
  absl::StatusOr<Process> coordinator = cluster->Spawn(
      "coordinator", FindDaemonBinary("stagefarm-coordinator"),
      {absl::StrCat("--listen=", cluster->control_endpoint_), "--blob-listen=tcp://127.0.0.1:0",
       absl::StrCat("--data-dir=", (dir / "coordinator").native()), "--insecure",
       "--lease-timeout=5s", "--heartbeat-interval=1s", "--no-worker-grace=10s"},
      dir / "coordinator.log");
  if (!coordinator.ok()) return coordinator.status();
  for (int i = 1; i <= options.workers; ++i) {
    const std::string name = absl::StrCat("worker-", i);
    absl::StatusOr<Process> worker = cluster->Spawn(
        name, FindDaemonBinary("stagefarm-worker"),
        {absl::StrCat("--coordinator=", cluster->control_endpoint_), "--listen=tcp://127.0.0.1:0",
         absl::StrCat("--data-dir=", (dir / name).native()), absl::StrCat("--worker-id=local-", i),
         absl::StrCat("--slots=", options.slots), "--insecure"},
        dir / absl::StrCat(name, ".log"));
    if (!worker.ok()) return worker.status();
  }
  // Every worker joined?
  ClientKeys keys;
  keys.insecure = true;
  absl::StatusOr<std::unique_ptr<CoordinatorClient>> client =
      CoordinatorClient::Connect(cluster->control_endpoint_, keys);
  if (!client.ok()) return client.status();
  for (;;) {
    absl::StatusOr<net::ReceivedMessage> status = (*client)->Ask(
        [](schema::Envelope::Builder out) { out.setClusterStatus(); }, absl::Seconds(5));
    if (status.ok() && status->envelope().isClusterStatusReply() &&
        status->envelope().getClusterStatusReply().getWorkers().size() >=
            static_cast<size_t>(options.workers)) {
      break;
    }
    for (const Process& process : cluster->processes_) {
      int wait_status = 0;
      if (waitpid(process.pid, &wait_status, WNOHANG) == process.pid) {
        const std::string tail = LogTail(process.log);
        const std::string message = absl::StrCat("embedded ", process.name, " exited (",
                                                 process.log.native(), "):\n  ", tail);
        // The coordinator's own words when its port was taken meanwhile.
        if (process.name == "coordinator" &&
            absl::StrContains(tail, "cannot serve the cluster on") &&
            absl::StrContains(tail, "Address already in use")) {
          return absl::AbortedError(message);
        }
        return absl::UnavailableError(message);
      }
    }
    if (absl::Now() > deadline) {
      return absl::UnavailableError(absl::StrCat(
          "the embedded cluster's workers did not join within ",
          absl::FormatDuration(options.start_timeout), " (logs in ", dir.native(), ")"));
    }
    absl::SleepFor(absl::Milliseconds(3));
  }
  return cluster;
}

EmbeddedCluster::~EmbeddedCluster() {
  // Workers first, so that none reports to a coordinator already gone.
  for (auto it = processes_.rbegin(); it != processes_.rend(); ++it) kill(it->pid, SIGTERM);
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  for (auto it = processes_.rbegin(); it != processes_.rend(); ++it) {
    int status = 0;
    while (waitpid(it->pid, &status, WNOHANG) == 0) {
      if (absl::Now() > deadline) {
        kill(it->pid, SIGKILL);
        waitpid(it->pid, &status, 0);
        break;
      }
      absl::SleepFor(absl::Milliseconds(2));
    }
  }
}

}  // namespace stagefarm::cli
