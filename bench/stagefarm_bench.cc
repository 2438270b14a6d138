// stagefarm-bench: end-to-end measurements that need several processes, each
// run side by side with its baseline in the same invocation.
//
//   stagefarm-bench transfer [--bytes N] [--curve] [--window N]
//
// `transfer` stores N seeded random bytes as one blob in a sender's store,
// then runs the sender (a BlobServer) and a receiver (FetchBlobs into its own
// store) as separate processes over TCP loopback, and prints one JSON line:
// bytes, seconds, mb_per_s, each process's peak RSS, and the same run's
// baselines: raw ZeroMQ (PUSH/PULL between two processes, messages of the
// store's average chunk size, same transport and security) and reading the
// same bytes from the file with O_DIRECT. MB is 10^6 bytes.
// Progress goes to stderr.
//
// The other subcommands are the child processes and not meant to be typed.
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/cas/blob_store.h"
#include "common/cas/chunker.h"
#include "common/digest/digest.h"
#include "common/net/curve_keys.h"
#include "common/net/socket_security.h"
#include "common/net/zap_authenticator.h"
#include "common/transfer/blob_fetcher.h"
#include "common/transfer/blob_server.h"
#include "tests/testing/random_blobs.h"

extern char** environ;

namespace stagefarm::bench {
namespace {

constexpr uint64_t kMiB = 1024 * 1024;

[[noreturn]] void Die(absl::string_view message) {
  std::fprintf(stderr, "stagefarm-bench: %.*s\n", static_cast<int>(message.size()),
               message.data());
  std::exit(1);
}

template <typename T>
T Check(absl::StatusOr<T> value, absl::string_view what) {
  if (!value.ok()) Die(absl::StrCat(what, ": ", value.status().message()));
  return *std::move(value);
}
void Check(const absl::Status& status, absl::string_view what) {
  if (!status.ok()) Die(absl::StrCat(what, ": ", status.message()));
}

double PeakRssMb() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;  // ru_maxrss is in KiB on Linux
}

// --name value / --name=value / --flag arguments after the subcommand.
std::map<std::string, std::string> ParseFlags(int argc, char** argv, int first) {
  std::map<std::string, std::string> flags;
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) Die(absl::StrCat("unexpected argument ", arg));
    arg = arg.substr(2);
    if (size_t eq = arg.find('='); eq != std::string::npos) {
      flags[arg.substr(0, eq)] = arg.substr(eq + 1);
    } else if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
      flags[arg] = argv[++i];
    } else {
      flags[arg] = "true";
    }
  }
  return flags;
}

uint64_t ParseSize(const std::string& text) {
  uint64_t multiplier = 1;
  std::string number = text;
  if (!number.empty()) {
    switch (number.back()) {
      case 'K': multiplier = 1024; break;
      case 'M': multiplier = kMiB; break;
      case 'G': multiplier = 1024 * kMiB; break;
      default: break;
    }
    if (multiplier != 1) number.pop_back();
  }
  uint64_t value = 0;
  if (!absl::SimpleAtoi(number, &value)) Die(absl::StrCat("bad size ", text));
  return value * multiplier;
}

// Security for both ends from a key directory made by the parent (CURVE), or
// plain when `keys` is empty.
struct Security {
  std::optional<net::CurveKeyPair> server;
  std::optional<net::CurveKeyPair> client;
};
Security LoadSecurity(const std::string& keys) {
  if (keys.empty()) return {};
  return Security{Check(net::ReadCurveKeyPair(keys, "server"), "server keys"),
                  Check(net::ReadCurveKeyPair(keys, "client"), "client keys")};
}
net::SocketSecurity ServerSecurity(const Security& security) {
  if (!security.server) return net::SocketSecurity::Insecure();
  return Check(net::SocketSecurity::CurveServer(*security.server), "server security");
}
net::SocketSecurity ClientSecurity(const Security& security) {
  if (!security.client) return net::SocketSecurity::Insecure();
  return Check(net::SocketSecurity::CurveClient(*security.client, security.server->public_key),
               "client security");
}
std::unique_ptr<net::ZapAuthenticator> MaybeZap(zmq::context_t& context,
                                                const Security& security) {
  if (!security.server) return nullptr;
  return Check(net::ZapAuthenticator::Start(context, {security.client->public_key}), "ZAP");
}

// ------------------------------------------------------------ child processes

// transfer-prepare --store DIR --file PATH --bytes N: the sender's blob, and
// the same bytes in a file for the disk baseline. Prints the digest.
int Prepare(std::map<std::string, std::string> flags) {
  const uint64_t bytes = ParseSize(flags["bytes"]);
  std::unique_ptr<cas::BlobStore> store = Check(cas::BlobStore::Open(flags["store"]), "store");
  std::unique_ptr<cas::BlobWriter> writer = store->NewWriter();
  int fd = ::open(flags["file"].c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
  if (fd < 0) Die(absl::StrCat("cannot create ", flags["file"]));
  stagefarm::testing::RandomStream stream(2026);
  digest::Sha256 hasher;
  std::string buffer;
  for (uint64_t done = 0; done < bytes; done += buffer.size()) {
    stream.Fill(&buffer, std::min<uint64_t>(bytes - done, 4 * kMiB));
    hasher.Update(buffer);
    Check(writer->Write(buffer), "put");
    if (::write(fd, buffer.data(), buffer.size()) != static_cast<ssize_t>(buffer.size())) {
      Die("write failed");
    }
  }
  ::fsync(fd);
  ::close(fd);
  const digest::Digest blob = hasher.Finish();
  Check(writer->Commit(blob), "commit");
  std::printf("%s\n", blob.ToString().c_str());
  return 0;
}

// transfer-serve --store DIR [--keys DIR]: serves until stdin closes, then
// prints its peak RSS.
int Serve(std::map<std::string, std::string> flags) {
  Security security = LoadSecurity(flags["keys"]);
  zmq::context_t context;
  std::unique_ptr<net::ZapAuthenticator> zap = MaybeZap(context, security);
  std::unique_ptr<cas::BlobStore> store = Check(cas::BlobStore::Open(flags["store"]), "store");
  std::unique_ptr<transfer::BlobServer> server =
      Check(transfer::BlobServer::Start(context, *store, ServerSecurity(security)), "server");
  std::printf("%s\n", server->endpoint().c_str());
  std::fflush(stdout);
  std::string line;
  std::getline(std::cin, line);
  const transfer::BlobServerStats stats = server->stats();
  server.reset();
  std::printf("%f %llu\n", PeakRssMb(), static_cast<unsigned long long>(stats.bytes_sent));
  return 0;
}

// transfer-fetch --store DIR --endpoint E --digest D [--keys DIR] [--window N]:
// prints seconds and peak RSS.
int Fetch(std::map<std::string, std::string> flags) {
  Security security = LoadSecurity(flags["keys"]);
  zmq::context_t context;
  std::unique_ptr<cas::BlobStore> store = Check(cas::BlobStore::Open(flags["store"]), "store");
  const digest::Digest blob = Check(digest::Digest::Parse(flags["digest"]), "digest");
  transfer::FetchOptions options;
  if (!flags["window"].empty()) options.chunks_in_flight = ParseSize(flags["window"]);
  uint64_t next_report = 0;
  options.on_progress = [&](const transfer::FetchProgress& progress) {
    if (progress.bytes_received < next_report) return;
    std::fprintf(stderr, "transfer: %llu / %llu MiB\n",
                 static_cast<unsigned long long>(progress.bytes_received / kMiB),
                 static_cast<unsigned long long>(progress.bytes_needed / kMiB));
    next_report = progress.bytes_received + std::max<uint64_t>(progress.bytes_needed / 8, 1);
  };
  const absl::Time start = absl::Now();
  transfer::FetchReport report = Check(
      transfer::FetchBlobs(context, *store, {blob},
                           {transfer::Peer{flags["endpoint"], ClientSecurity(security)}}, options),
      "fetch");
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (report.blobs_fetched != 1) Die("the blob was not fetched");
  std::printf("%f %f\n", seconds, PeakRssMb());
  return 0;
}

// zmq-source --bytes N --chunk N [--keys DIR]: binds PUSH, prints the
// endpoint, and sends N bytes in chunk-sized messages to the first peer.
int ZmqSource(std::map<std::string, std::string> flags) {
  Security security = LoadSecurity(flags["keys"]);
  const uint64_t bytes = ParseSize(flags["bytes"]);
  const uint64_t chunk = ParseSize(flags["chunk"]);
  zmq::context_t context;
  std::unique_ptr<net::ZapAuthenticator> zap = MaybeZap(context, security);
  zmq::socket_t socket(context, zmq::socket_type::push);
  Check(ServerSecurity(security).Apply(context, socket), "security");
  socket.bind("tcp://127.0.0.1:0");
  std::printf("%s\n", socket.get(zmq::sockopt::last_endpoint).c_str());
  std::fflush(stdout);
  std::string payload = stagefarm::testing::RandomBytes(1, chunk);
  for (uint64_t sent = 0; sent < bytes; sent += chunk) {
    // Each message is a fresh copy, as a real sender's chunk reads would be.
    socket.send(zmq::buffer(payload.data(), std::min(chunk, bytes - sent)));
  }
  std::string line;
  std::getline(std::cin, line);  // keep the socket until the sink has it all
  std::printf("%f\n", PeakRssMb());
  return 0;
}

// ------------------------------------------------------------------ parent

// A child process of this binary with pipes to its stdin and stdout.
class Child {
 public:
  Child(const std::vector<std::string>& args) {
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) Die("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_addclose(&actions, in[1]);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    std::vector<std::string> full = {"/proc/self/exe"};
    full.insert(full.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& arg : full) argv.push_back(arg.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, "/proc/self/exe", &actions, nullptr, argv.data(), environ) != 0) {
      Die("cannot start a child process");
    }
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    to_ = fdopen(in[1], "w");
    from_ = fdopen(out[0], "r");
  }
  std::string ReadLine() {
    char buffer[4096];
    if (std::fgets(buffer, sizeof buffer, from_) == nullptr) Die("a child process failed");
    std::string line = buffer;
    if (!line.empty() && line.back() == '\n') line.pop_back();
    return line;
  }
  void CloseInput() {
    if (to_ != nullptr) std::fclose(to_);
    to_ = nullptr;
  }
  void Wait() {
    CloseInput();
    int status = 0;
    waitpid(pid_, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) Die("a child process failed");
    std::fclose(from_);
  }

 private:
  pid_t pid_ = 0;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
};

double MbPerSecond(uint64_t bytes, double seconds) { return bytes / seconds / 1e6; }

// Raw ZeroMQ between two processes: this one pulls.
double ZmqBaseline(uint64_t bytes, uint64_t chunk, const std::string& keys) {
  Child source({"zmq-source", "--bytes", std::to_string(bytes), "--chunk", std::to_string(chunk),
                "--keys", keys});
  const std::string endpoint = source.ReadLine();
  Security security = LoadSecurity(keys);
  zmq::context_t context;
  zmq::socket_t socket(context, zmq::socket_type::pull);
  Check(ClientSecurity(security).Apply(context, socket), "security");
  socket.connect(endpoint);
  zmq::message_t message;
  (void)socket.recv(message);
  const auto start = std::chrono::steady_clock::now();
  uint64_t received = message.size();
  while (received < bytes) {
    (void)socket.recv(message);
    received += message.size();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  source.Wait();
  // The clock started at the first message: count the bytes after it.
  return MbPerSecond(received - chunk, seconds);
}

// Reading the file from disk with O_DIRECT, so that the page cache (which
// holds the file just written) does not stand in for the disk.
double DiskBaseline(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT);
  if (fd < 0) Die(absl::StrCat("cannot open ", path, " with O_DIRECT"));
  constexpr size_t kBuffer = 4 * kMiB;
  void* buffer = nullptr;
  if (posix_memalign(&buffer, 4096, kBuffer) != 0) Die("posix_memalign failed");
  uint64_t total = 0;
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    ssize_t n = ::read(fd, buffer, kBuffer);
    if (n <= 0) break;
    total += static_cast<uint64_t>(n);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::free(buffer);
  ::close(fd);
  return MbPerSecond(total, seconds);
}

int Transfer(std::map<std::string, std::string> flags) {
  const uint64_t bytes = flags.count("bytes") ? ParseSize(flags["bytes"]) : 1024 * kMiB;
  const bool curve = flags.count("curve") > 0;
  const std::string window = flags.count("window") ? flags["window"] : "8";
  char pattern[] = "/tmp/stagefarm-bench.XXXXXX";
  if (mkdtemp(pattern) == nullptr) Die("mkdtemp failed");
  const std::filesystem::path dir = pattern;
  std::string keys;
  if (curve) {
    keys = (dir / "keys").string();
    std::filesystem::create_directories(keys);
    Check(net::WriteCurveKeyPair(Check(net::CurveKeyPair::Generate(), "keys"), keys, "server"),
          "keys");
    Check(net::WriteCurveKeyPair(Check(net::CurveKeyPair::Generate(), "keys"), keys, "client"),
          "keys");
  }
  std::fprintf(stderr, "transfer: preparing %llu MiB in the sender's store\n",
               static_cast<unsigned long long>(bytes / kMiB));
  const std::string file = (dir / "blob.bin").string();
  Child prepare({"transfer-prepare", "--store", (dir / "sender").string(), "--file", file,
                 "--bytes", std::to_string(bytes)});
  const std::string digest = prepare.ReadLine();
  prepare.Wait();

  Child sender({"transfer-serve", "--store", (dir / "sender").string(), "--keys", keys});
  const std::string endpoint = sender.ReadLine();
  Child receiver({"transfer-fetch", "--store", (dir / "receiver").string(), "--endpoint",
                  endpoint, "--digest", digest, "--keys", keys, "--window", window});
  const std::vector<std::string> fetched = absl::StrSplit(receiver.ReadLine(), ' ');
  receiver.Wait();
  sender.CloseInput();
  const std::vector<std::string> served = absl::StrSplit(sender.ReadLine(), ' ');
  sender.Wait();
  double seconds = 0, receiver_rss = 0, sender_rss = 0;
  if (fetched.size() != 2 || served.size() != 2 || !absl::SimpleAtod(fetched[0], &seconds) ||
      !absl::SimpleAtod(fetched[1], &receiver_rss) || !absl::SimpleAtod(served[0], &sender_rss)) {
    Die("a child process printed something unexpected");
  }

  std::fprintf(stderr, "transfer: baselines\n");
  const double zmq = ZmqBaseline(bytes, cas::ChunkerOptions().avg_size, keys);
  const double disk = DiskBaseline(file);
  std::filesystem::remove_all(dir);

  const double mb_per_s = MbPerSecond(bytes, seconds);
  std::printf(
      "{\"bench\":\"transfer\",\"bytes\":%llu,\"curve\":%s,\"window\":%s,\"seconds\":%.3f,"
      "\"mb_per_s\":%.1f,\"sender_peak_rss_mb\":%.1f,\"receiver_peak_rss_mb\":%.1f,"
      "\"zmq_baseline_mb_per_s\":%.1f,\"disk_baseline_mb_per_s\":%.1f,"
      "\"ratio_to_zmq\":%.3f,\"ratio_to_disk\":%.3f}\n",
      static_cast<unsigned long long>(bytes), curve ? "true" : "false", window.c_str(), seconds,
      mb_per_s, sender_rss, receiver_rss, zmq, disk, mb_per_s / zmq, mb_per_s / disk);
  return 0;
}

constexpr char kUsage[] =
    "usage: stagefarm-bench transfer [--bytes N[K|M|G]] [--curve] [--window CHUNKS]\n";

int Main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string command = argv[1];
  transfer::KeepLargeBuffersMapped();
  std::map<std::string, std::string> flags = ParseFlags(argc, argv, 2);
  if (command == "transfer") return Transfer(flags);
  if (command == "transfer-prepare") return Prepare(flags);
  if (command == "transfer-serve") return Serve(flags);
  if (command == "transfer-fetch") return Fetch(flags);
  if (command == "zmq-source") return ZmqSource(flags);
  std::fputs(kUsage, stderr);
  return 2;
}

}  // namespace
}  // namespace stagefarm::bench

int main(int argc, char** argv) { return stagefarm::bench::Main(argc, argv); }
