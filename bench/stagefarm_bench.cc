// stagefarm-bench: end-to-end measurements that need several processes, each
// run side by side with its baseline in the same invocation.
//
//   stagefarm-bench transfer [--bytes N] [--blobs B] [--curve] [--window N]
//   stagefarm-bench compress [--bytes N] [--threads N] [--gzip-level L] [--zstd-level L]
//
// `transfer` stores N seeded random bytes as one blob (or B blobs of about
// equal size: a build context of many files) in a sender's store,
// then runs the sender (a BlobServer) and a receiver (FetchBlobs into its own
// store) as separate processes over TCP loopback, and prints one JSON line:
// bytes, seconds, mb_per_s, each process's peak RSS, and the same run's
// baselines: raw ZeroMQ (PUSH/PULL between two processes, messages of the
// store's average chunk size, same transport and security) and reading the
// same bytes from the file with O_DIRECT. MB is 10^6 bytes.
// Progress goes to stderr.
//
// `compress` takes N bytes of layer-like data (default 512 MiB): the first
// half from `tar -c /usr/lib`, the second from `tar -c /usr/share` of this
// machine (ELF objects and archives; text, docs, locales and already
// compressed files), each repeated if shorter. It compresses them from memory
// with LayerCompressor (gzip and zstd, default levels, 2 threads), then as a
// stored layer with CompressLayers (store to store: reading and verifying the
// chunks, hashing and storing the output), and in the same run the references
// on the same bytes from a file: `pigz -1 -p2`, `gzip -6` and `zstd -3 -T2`
// (each skipped, null, when not installed). Prints one JSON line: MB/s and
// ratio (compressed / uncompressed bytes) and CPU seconds (user + system, all
// threads: what the machine's load does not change much) of each, and the
// load average at the start.
//
// The other subcommands are the child processes and not meant to be typed.
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
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
#include "bench/bench_flags.h"
#include "common/cas/blob_store.h"
#include "common/cas/chunker.h"
#include "common/digest/digest.h"
#include "common/net/curve_keys.h"
#include "common/net/socket_security.h"
#include "common/net/zap_authenticator.h"
#include "common/oci/layer_compress.h"
#include "common/transfer/blob_fetcher.h"
#include "common/transfer/blob_server.h"
#include "tests/testing/random_blobs.h"

extern char** environ;

namespace stagefarm::bench {
namespace {

constexpr uint64_t kMiB = 1024 * 1024;

[[noreturn]] void Die(absl::string_view message) {
  std::fprintf(stderr, "stagefarm-bench: %.*s\n", static_cast<int>(message.size()), message.data());
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
uint64_t ParseSize(const std::string& text) {
  uint64_t multiplier = 1;
  std::string number = text;
  if (!number.empty()) {
    switch (number.back()) {
      case 'K':
        multiplier = 1024;
        break;
      case 'M':
        multiplier = kMiB;
        break;
      case 'G':
        multiplier = 1024 * kMiB;
        break;
      default:
        break;
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
std::unique_ptr<net::ZapAuthenticator> MaybeZap(zmq::context_t& context, const Security& security) {
  if (!security.server) return nullptr;
  return Check(net::ZapAuthenticator::Start(context, {security.client->public_key}), "ZAP");
}

// ------------------------------------------------------------ child processes

// transfer-prepare --store DIR --file PATH --bytes N --blobs B --digests PATH:
// the sender's blobs (N bytes cut into B blobs of about equal size), their
// digests one a line in the digests file, and the same bytes in one file for
// the disk baseline.
int Prepare(std::map<std::string, std::string> flags) {
  const uint64_t bytes = ParseSize(flags["bytes"]);
  const uint64_t blobs = std::max<uint64_t>(1, ParseSize(flags["blobs"]));
  std::unique_ptr<cas::BlobStore> store = Check(cas::BlobStore::Open(flags["store"]), "store");
  int fd = ::open(flags["file"].c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
  if (fd < 0) Die(absl::StrCat("cannot create ", flags["file"]));
  FILE* digests = std::fopen(flags["digests"].c_str(), "w");
  if (digests == nullptr) Die(absl::StrCat("cannot create ", flags["digests"]));
  stagefarm::testing::RandomStream stream(2026);
  std::string buffer;
  for (uint64_t b = 0; b < blobs; ++b) {
    const uint64_t size = bytes / blobs + (b + 1 == blobs ? bytes % blobs : 0);
    std::unique_ptr<cas::BlobWriter> writer = store->NewWriter();
    for (uint64_t done = 0; done < size; done += buffer.size()) {
      stream.Fill(&buffer, std::min<uint64_t>(size - done, 4 * kMiB));
      Check(writer->Write(buffer), "put");
      if (::write(fd, buffer.data(), buffer.size()) != static_cast<ssize_t>(buffer.size())) {
        Die("write failed");
      }
    }
    const digest::Digest blob = Check(writer->CommitAsWritten(), "commit");
    std::fprintf(digests, "%s\n", blob.ToString().c_str());
  }
  std::fclose(digests);
  ::fsync(fd);
  ::close(fd);
  std::printf("%llu\n", static_cast<unsigned long long>(blobs));
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

// transfer-fetch --store DIR --endpoint E --digests PATH [--keys DIR] [--window N]:
// fetches every blob the digests file names; prints seconds and peak RSS.
int Fetch(std::map<std::string, std::string> flags) {
  Security security = LoadSecurity(flags["keys"]);
  zmq::context_t context;
  std::unique_ptr<cas::BlobStore> store = Check(cas::BlobStore::Open(flags["store"]), "store");
  std::vector<digest::Digest> blobs;
  {
    std::ifstream list(flags["digests"]);
    for (std::string line; std::getline(list, line);) {
      blobs.push_back(Check(digest::Digest::Parse(line), "digest"));
    }
  }
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
      transfer::FetchBlobs(context, *store, blobs,
                           {transfer::Peer{flags["endpoint"], ClientSecurity(security)}}, options),
      "fetch");
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (report.blobs_fetched != blobs.size()) Die("not every blob was fetched");
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
  const std::string window = flags.count("window") ? flags["window"] : "";
  const std::string blobs = flags.count("blobs") ? flags["blobs"] : "1";
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
  const std::string digests = (dir / "digests").string();
  Child prepare({"transfer-prepare", "--store", (dir / "sender").string(), "--file", file,
                 "--bytes", std::to_string(bytes), "--blobs", blobs, "--digests", digests});
  prepare.ReadLine();
  prepare.Wait();

  Child sender({"transfer-serve", "--store", (dir / "sender").string(), "--keys", keys});
  const std::string endpoint = sender.ReadLine();
  Child receiver({"transfer-fetch", "--store", (dir / "receiver").string(), "--endpoint", endpoint,
                  "--digests", digests, "--keys", keys, "--window", window});
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
      "{\"bench\":\"transfer\",\"bytes\":%llu,\"blobs\":%s,\"curve\":%s,\"window\":\"%s\","
      "\"seconds\":%.3f,"
      "\"mb_per_s\":%.1f,\"sender_peak_rss_mb\":%.1f,\"receiver_peak_rss_mb\":%.1f,"
      "\"zmq_baseline_mb_per_s\":%.1f,\"disk_baseline_mb_per_s\":%.1f,"
      "\"ratio_to_zmq\":%.3f,\"ratio_to_disk\":%.3f}\n",
      static_cast<unsigned long long>(bytes), blobs.c_str(), curve ? "true" : "false",
      window.empty() ? "default" : window.c_str(), seconds, mb_per_s, sender_rss, receiver_rss, zmq,
      disk, mb_per_s / zmq, mb_per_s / disk);
  return 0;
}

// ------------------------------------------------------------------ compress

// `bytes` of `tar -c` of `dir` (relative to /), repeated if the tar is shorter.
void AppendTarOf(const std::string& dir, uint64_t bytes, std::string* out) {
  const uint64_t start = out->size();
  while (out->size() - start < bytes) {
    const uint64_t before = out->size();
    FILE* pipe = popen(absl::StrCat("tar -cf - -C / ", dir, " 2>/dev/null").c_str(), "r");
    if (pipe == nullptr) Die("cannot run tar");
    char buffer[1 << 16];
    size_t n;
    while (out->size() - start < bytes && (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) {
      out->append(buffer, std::min<uint64_t>(n, bytes - (out->size() - start)));
    }
    pclose(pipe);  // tar dies of SIGPIPE when cut short; that is expected
    if (out->size() == before) Die(absl::StrCat("tar of /", dir, " gave nothing"));
  }
}

struct Figure {
  double mb_per_s = 0;
  double ratio = 0;  // compressed / uncompressed
  double cpu_s = 0;  // CPU seconds (user + system) spent, all threads
};

double Since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// User + system CPU seconds of this process (RUSAGE_SELF) or of its waited-for
// children (RUSAGE_CHILDREN). Unlike wall time, it hardly depends on what else
// the machine runs.
double CpuSeconds(int who) {
  struct rusage usage;
  getrusage(who, &usage);
  return usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + usage.ru_stime.tv_sec +
         usage.ru_stime.tv_usec / 1e6;
}

Figure CompressInMemory(oci::LayerCompression compression, int level, int threads,
                        const std::string& data) {
  uint64_t out = 0;
  std::unique_ptr<oci::LayerCompressor> compressor =
      Check(oci::LayerCompressor::Create(compression, level, threads,
                                         [&](absl::string_view bytes) {
                                           out += bytes.size();
                                           return absl::OkStatus();
                                         }),
            "compressor");
  const double cpu = CpuSeconds(RUSAGE_SELF);
  const auto start = std::chrono::steady_clock::now();
  for (size_t at = 0; at < data.size(); at += kMiB) {
    Check(compressor->Write(absl::string_view(data).substr(at, kMiB)), "compress");
  }
  Check(compressor->Finish(), "compress");
  const double seconds = Since(start);
  return {MbPerSecond(data.size(), seconds), static_cast<double>(out) / data.size(),
          CpuSeconds(RUSAGE_SELF) - cpu};
}

Figure CompressStoredLayer(cas::BlobStore& store, const oci::Descriptor& layer,
                           oci::LayerCompression compression, int level, int threads) {
  oci::CompressOptions options;
  options.compression = compression;
  options.level = level;
  options.threads = threads;
  const double cpu = CpuSeconds(RUSAGE_SELF);
  const auto start = std::chrono::steady_clock::now();
  std::vector<oci::Descriptor> out =
      Check(oci::CompressLayers(store, {layer}, options), "CompressLayers");
  const double seconds = Since(start);
  return {MbPerSecond(layer.size, seconds), static_cast<double>(out[0].size) / layer.size,
          CpuSeconds(RUSAGE_SELF) - cpu};
}

// `command FILE` writing the compressed bytes to stdout; nullopt when the
// tool is not installed.
std::optional<Figure> Reference(const std::string& tool, const std::string& arguments,
                                const std::string& file, uint64_t bytes) {
  if (std::system(absl::StrCat("command -v ", tool, " >/dev/null 2>&1").c_str()) != 0) {
    std::fprintf(stderr, "compress: %s is not installed, skipped\n", tool.c_str());
    return std::nullopt;
  }
  std::fprintf(stderr, "compress: %s %s\n", tool.c_str(), arguments.c_str());
  const double cpu = CpuSeconds(RUSAGE_CHILDREN);
  const auto start = std::chrono::steady_clock::now();
  FILE* pipe = popen(absl::StrCat(tool, " ", arguments, " ", file).c_str(), "r");
  if (pipe == nullptr) Die(absl::StrCat("cannot run ", tool));
  uint64_t out = 0;
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) out += n;
  if (pclose(pipe) != 0) Die(absl::StrCat(tool, " failed"));
  const double seconds = Since(start);
  return Figure{MbPerSecond(bytes, seconds), static_cast<double>(out) / bytes,
                CpuSeconds(RUSAGE_CHILDREN) - cpu};
}

std::string Json(const std::string& name, const std::optional<Figure>& figure) {
  if (!figure) {
    return absl::StrCat("\"", name, "_mb_per_s\":null,\"", name, "_ratio\":null,\"", name,
                        "_cpu_s\":null");
  }
  char text[192];
  std::snprintf(text, sizeof text, "\"%s_mb_per_s\":%.1f,\"%s_ratio\":%.4f,\"%s_cpu_s\":%.2f",
                name.c_str(), figure->mb_per_s, name.c_str(), figure->ratio, name.c_str(),
                figure->cpu_s);
  return text;
}

int Compress(std::map<std::string, std::string> flags) {
  const uint64_t bytes = flags.count("bytes") ? ParseSize(flags["bytes"]) : 512 * kMiB;
  const int threads = flags.count("threads") ? static_cast<int>(ParseSize(flags["threads"])) : 2;
  const int gzip_level = flags.count("gzip-level")
                             ? static_cast<int>(ParseSize(flags["gzip-level"]))
                             : oci::kDefaultGzipLevel;
  const int zstd_level = flags.count("zstd-level")
                             ? static_cast<int>(ParseSize(flags["zstd-level"]))
                             : oci::kDefaultZstdLevel;
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) != 3) Die("getloadavg failed");

  std::fprintf(stderr, "compress: reading %llu MiB of /usr/lib and /usr/share as tar\n",
               static_cast<unsigned long long>(bytes / kMiB));
  std::string data;
  data.reserve(bytes);
  AppendTarOf("usr/lib", bytes / 2, &data);
  AppendTarOf("usr/share", bytes - bytes / 2, &data);

  std::fprintf(stderr, "compress: ours, from memory\n");
  const Figure gzip = CompressInMemory(oci::LayerCompression::kGzip, gzip_level, threads, data);
  const Figure zstd = CompressInMemory(oci::LayerCompression::kZstd, zstd_level, threads, data);

  char pattern[] = "/tmp/stagefarm-bench.XXXXXX";
  if (mkdtemp(pattern) == nullptr) Die("mkdtemp failed");
  const std::filesystem::path dir = pattern;
  std::fprintf(stderr, "compress: ours, a stored layer with CompressLayers\n");
  Figure gzip_layer, zstd_layer;
  {
    std::unique_ptr<cas::BlobStore> store = Check(cas::BlobStore::Open(dir / "store"), "store");
    const oci::Descriptor layer{
        oci::LayerMediaType(oci::LayerCompression::kNone), digest::Sha256Of(data), data.size(), {}};
    Check(store->Put(data, layer.digest, layer.media_type), "put");
    gzip_layer =
        CompressStoredLayer(*store, layer, oci::LayerCompression::kGzip, gzip_level, threads);
    zstd_layer =
        CompressStoredLayer(*store, layer, oci::LayerCompression::kZstd, zstd_level, threads);
  }

  const std::string file = (dir / "layer.tar").string();
  {
    std::FILE* out = std::fopen(file.c_str(), "wb");
    if (out == nullptr || std::fwrite(data.data(), 1, data.size(), out) != data.size() ||
        std::fclose(out) != 0) {
      Die(absl::StrCat("cannot write ", file));
    }
  }
  const std::optional<Figure> pigz = Reference("pigz", "-1 -p2 -c", file, bytes);
  const std::optional<Figure> gzip6 = Reference("gzip", "-6 -c", file, bytes);
  const std::optional<Figure> zstd3 = Reference("zstd", "-3 -T2 -q -c", file, bytes);
  std::filesystem::remove_all(dir);

  std::printf(
      "{\"bench\":\"compress\",\"bytes\":%llu,\"threads\":%d,\"load_average\":[%.2f,%.2f,%.2f],"
      "\"gzip_level\":%d,%s,%s,\"zstd_level\":%d,%s,%s,%s,%s,%s}\n",
      static_cast<unsigned long long>(bytes), threads, load[0], load[1], load[2], gzip_level,
      Json("gzip", gzip).c_str(), Json("gzip_layer", gzip_layer).c_str(), zstd_level,
      Json("zstd", zstd).c_str(), Json("zstd_layer", zstd_layer).c_str(),
      Json("pigz_1_p2", pigz).c_str(), Json("gzip_6", gzip6).c_str(),
      Json("zstd_3_t2", zstd3).c_str());
  return 0;
}

constexpr char kUsage[] =
    "usage: stagefarm-bench transfer [--bytes N[K|M|G]] [--blobs B] [--curve] [--window CHUNKS]\n"
    "       stagefarm-bench compress [--bytes N[K|M|G]] [--threads N] [--gzip-level L]"
    " [--zstd-level L]\n";

int Main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string command = argv[1];
  transfer::KeepLargeBuffersMapped();
  absl::StatusOr<std::map<std::string, std::string>> parsed = ParseBenchFlags(argc, argv, 2);
  if (!parsed.ok()) Die(parsed.status().message());
  const std::map<std::string, std::string>& flags = *parsed;
  if (command == "transfer") return Transfer(flags);
  if (command == "compress") return Compress(flags);
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
