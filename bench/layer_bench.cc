// Layers against GNU tar on the same tree, in one run:
//   unpack: oci::ApplyLayer of an uncompressed layer tar into a fresh
//     directory, against `tar -xf` of the same tar;
//   write: oci::WriteLayerFromUpper of the tree (everything new, as an upper
//     dir after a step that made it) into a file, uncompressed, gzip and
//     zstd, against `tar -cf` and `tar -czf` of the same tree;
//   compressed unpack: oci::ApplyLayer of a gzip (`gzip -1`) and a zstd
//     (`zstd -3`) layer of the mixed tree, against `tar -xzf` and
//     `tar --zstd -xf` of the same blobs;
//   diff id: oci::DiffIdHasher over the gzip blob, against
//     `zcat | sha256sum`;
//   small: oci::ApplyLayer of a 10-file layer, uncompressed and gzip.
// The tree is 2,000 files of 32 KiB and 8 of 16 MiB (190 MiB), seeded
// random bytes (incompressible); the mixed tree is 10,000 files of 50,000
// bytes (500 MB, a 507 MB tar), every other one seeded random bytes, the
// rest hex text. All in $TMPDIR (else /tmp); the page cache is warm, and
// each unpack goes into a new directory with nothing dirty left to write back
// (see Fresh). Byte rates count the tree's file bytes. The counter cpu_s is
// the user + system CPU seconds of an iteration, this process's threads and
// the tools it ran together, as the machine is shared.
//
//   build/bench/layer_bench --benchmark_repetitions=3
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fs/root.h"
#include "common/oci/diff_id_hasher.h"
#include "common/oci/layer_diff.h"
#include "common/oci/layer_unpack.h"
#include "tests/testing/random_blobs.h"

extern char** environ;

namespace {

using stagefarm::testing::kMiB;

struct Tree {
  std::filesystem::path dir;
  std::filesystem::path source;  // the tree
  std::filesystem::path tar;     // GNU tar of it
  uint64_t bytes = 0;
};

void Run(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) std::abort();
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) std::abort();
}

// The temporary directories ($TMPDIR, else /tmp) the trees were made in,
// removed at the end.
std::vector<std::filesystem::path>& TempDirs() {
  static auto* dirs = new std::vector<std::filesystem::path>;
  return *dirs;
}

const Tree& TheTree() {
  static Tree* tree = [] {
    auto* t = new Tree;
    std::string pattern = (std::filesystem::temp_directory_path() / "layer_bench.XXXXXX").string();
    t->dir = mkdtemp(pattern.data());
    TempDirs().push_back(t->dir);
    t->source = t->dir / "tree";
    stagefarm::testing::RandomStream random(7);
    std::string buffer;
    for (int i = 0; i < 2000; ++i) {
      std::filesystem::path file = t->source / absl::StrCat("d", i / 100) / absl::StrCat("f", i);
      std::filesystem::create_directories(file.parent_path());
      random.Fill(&buffer, 32 * 1024);
      std::ofstream(file, std::ios::binary) << buffer;
      t->bytes += buffer.size();
    }
    for (int i = 0; i < 8; ++i) {
      random.Fill(&buffer, 16 * kMiB);
      std::ofstream(t->source / absl::StrCat("big", i), std::ios::binary) << buffer;
      t->bytes += buffer.size();
    }
    t->tar = t->dir / "tree.tar";
    Run({"tar", "-cf", t->tar.string(), "-C", t->source.string(), "."});
    return t;
  }();
  return *tree;
}

// The mixed tree and its layer blobs: a tar, `gzip -1` and `zstd -3` of it.
struct MixedTree {
  std::filesystem::path dir;
  std::filesystem::path gzip;
  std::filesystem::path zstd;
  uint64_t bytes = 0;
};

const MixedTree& TheMixedTree() {
  static MixedTree* tree = [] {
    auto* t = new MixedTree;
    std::string pattern =
        (std::filesystem::temp_directory_path() / "layer_bench_mixed.XXXXXX").string();
    t->dir = mkdtemp(pattern.data());
    TempDirs().push_back(t->dir);
    const std::filesystem::path source = t->dir / "tree";
    stagefarm::testing::RandomStream random(11);
    constexpr size_t kFileSize = 50000;
    std::string buffer;
    std::string text(kFileSize, '\0');
    for (int i = 0; i < 10000; ++i) {
      std::filesystem::path file = source / absl::StrCat("d", i / 100) / absl::StrCat("f", i);
      std::filesystem::create_directories(file.parent_path());
      if (i % 2 == 0) {
        random.Fill(&buffer, kFileSize);
        std::ofstream(file, std::ios::binary) << buffer;
      } else {
        random.Fill(&buffer, kFileSize / 2);
        for (size_t j = 0; j < buffer.size(); ++j) {
          const auto byte = static_cast<unsigned char>(buffer[j]);
          text[2 * j] = "0123456789abcdef"[byte >> 4];
          text[2 * j + 1] = "0123456789abcdef"[byte & 15];
        }
        std::ofstream(file, std::ios::binary) << text;
      }
      t->bytes += kFileSize;
    }
    const std::filesystem::path tar = t->dir / "tree.tar";
    Run({"tar", "-cf", tar.string(), "-C", source.string(), "."});
    t->gzip = t->dir / "tree.tar.gz";
    t->zstd = t->dir / "tree.tar.zst";
    Run({"sh", "-c", absl::StrCat("gzip -1 -c ", tar.string(), " > ", t->gzip.string())});
    Run({"zstd", "-q", "-3", tar.string(), "-o", t->zstd.string()});
    std::filesystem::remove(tar);
    return t;
  }();
  return *tree;
}

// A directory to unpack into that no earlier iteration used, with nothing
// left to write back. Never one just emptied: ext4 without a journal (as
// here) passes over inodes freed in the last minute when it allocates
// (recently_deleted), and removing a 10,000-file tree before each iteration
// doubled the kernel's share of an unpack. The directories go at the end,
// with the trees.
std::filesystem::path Fresh(const std::filesystem::path& parent) {
  static int runs = 0;
  const std::filesystem::path path = parent / absl::StrCat("run", runs++);
  std::filesystem::create_directories(path);
  sync();
  return path;
}

// User + system CPU seconds of this process's threads and of its waited-for
// children (and theirs).
double CpuSeconds() {
  double seconds = 0;
  for (int who : {RUSAGE_SELF, RUSAGE_CHILDREN}) {
    rusage usage{};
    getrusage(who, &usage);
    seconds += static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
               static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  }
  return seconds;
}

// CPU seconds of the timed part of each iteration, for the cpu_s counter.
class CpuClock {
 public:
  void Start() { start_ = CpuSeconds(); }
  void Stop() { total_ += CpuSeconds() - start_; }
  void Report(benchmark::State& state) const {
    state.counters["cpu_s"] = benchmark::Counter(total_, benchmark::Counter::kAvgIterations);
  }

 private:
  double start_ = 0;
  double total_ = 0;
};

// Times `unpack` into a fresh directory under `parent` per iteration, with
// its CPU seconds; `bytes` of files each time.
void TimeUnpacks(benchmark::State& state, const std::filesystem::path& parent, uint64_t bytes,
                 const std::function<void(const std::filesystem::path& into)>& unpack) {
  CpuClock cpu;
  for (auto _ : state) {
    state.PauseTiming();
    const std::filesystem::path into = Fresh(parent);
    cpu.Start();
    state.ResumeTiming();
    unpack(into);
    cpu.Stop();
  }
  cpu.Report(state);
  state.SetBytesProcessed(state.iterations() * bytes);
}

void ApplyLayerFile(benchmark::State& state, const std::filesystem::path& blob,
                    const std::filesystem::path& parent, uint64_t bytes) {
  TimeUnpacks(state, parent, bytes, [&](const std::filesystem::path& into) {
    stagefarm::fs::RootDir root = *stagefarm::fs::RootDir::Open(into);
    int fd = ::open(blob.c_str(), O_RDONLY);
    std::string buffer(1 << 20, '\0');
    stagefarm::oci::LayerReader read = [&]() -> absl::StatusOr<absl::string_view> {
      ssize_t n = ::read(fd, buffer.data(), buffer.size());
      return absl::string_view(buffer.data(), n > 0 ? n : 0);
    };
    auto applied = stagefarm::oci::ApplyLayer(root, read, {});
    ::close(fd);
    if (!applied.ok()) state.SkipWithError(std::string(applied.status().message()).c_str());
  });
}

void GnuTarExtract(benchmark::State& state, const std::vector<std::string>& flags,
                   const std::filesystem::path& blob, const std::filesystem::path& parent,
                   uint64_t bytes) {
  TimeUnpacks(state, parent, bytes, [&](const std::filesystem::path& into) {
    std::vector<std::string> args = {"tar"};
    args.insert(args.end(), flags.begin(), flags.end());
    args.insert(args.end(), {blob.string(), "-C", into.string()});
    Run(args);
  });
}

void BM_ApplyLayer(benchmark::State& state) {
  const Tree& tree = TheTree();
  ApplyLayerFile(state, tree.tar, tree.dir / "unpacked", tree.bytes);
}
BENCHMARK(BM_ApplyLayer)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

void BM_GnuTarExtract(benchmark::State& state) {
  const Tree& tree = TheTree();
  GnuTarExtract(state, {"-xf"}, tree.tar, tree.dir / "extracted", tree.bytes);
}
BENCHMARK(BM_GnuTarExtract)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

void BM_ApplyLayerGzip(benchmark::State& state) {
  const MixedTree& tree = TheMixedTree();
  ApplyLayerFile(state, tree.gzip, tree.dir / "unpacked", tree.bytes);
}
BENCHMARK(BM_ApplyLayerGzip)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

void BM_GnuTarExtractGzip(benchmark::State& state) {
  const MixedTree& tree = TheMixedTree();
  GnuTarExtract(state, {"-xzf"}, tree.gzip, tree.dir / "extracted", tree.bytes);
}
BENCHMARK(BM_GnuTarExtractGzip)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

void BM_ApplyLayerZstd(benchmark::State& state) {
  const MixedTree& tree = TheMixedTree();
  ApplyLayerFile(state, tree.zstd, tree.dir / "unpacked", tree.bytes);
}
BENCHMARK(BM_ApplyLayerZstd)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

void BM_GnuTarExtractZstd(benchmark::State& state) {
  const MixedTree& tree = TheMixedTree();
  GnuTarExtract(state, {"--zstd", "-xf"}, tree.zstd, tree.dir / "extracted", tree.bytes);
}
BENCHMARK(BM_GnuTarExtractZstd)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

// A small layer, as most of a build's are: 10 files of 1,000 bytes of hex
// text (a 15 KiB tar), uncompressed and `gzip -1`, held in memory.
struct SmallLayer {
  std::filesystem::path dir;
  std::string tar;
  std::string gzip;
};

const SmallLayer& TheSmallLayer() {
  static SmallLayer* layer = [] {
    auto* l = new SmallLayer;
    std::string pattern =
        (std::filesystem::temp_directory_path() / "layer_bench_small.XXXXXX").string();
    l->dir = mkdtemp(pattern.data());
    TempDirs().push_back(l->dir);
    const std::filesystem::path source = l->dir / "tree";
    std::filesystem::create_directories(source);
    for (int i = 0; i < 10; ++i) {
      std::string text;
      for (int j = 0; j < 1000; ++j) text.push_back("0123456789abcdef"[(i * 7 + j * 13) % 16]);
      std::ofstream(source / absl::StrCat("f", i), std::ios::binary) << text;
    }
    const std::filesystem::path tar = l->dir / "small.tar";
    const std::filesystem::path gzip = l->dir / "small.tar.gz";
    Run({"tar", "-cf", tar.string(), "-C", source.string(), "."});
    Run({"sh", "-c", absl::StrCat("gzip -1 -c ", tar.string(), " > ", gzip.string())});
    auto slurp = [](const std::filesystem::path& path) {
      std::ifstream in(path, std::ios::binary);
      return std::string(std::istreambuf_iterator<char>(in), {});
    };
    l->tar = slurp(tar);
    l->gzip = slurp(gzip);
    return l;
  }();
  return *layer;
}

void ApplySmallLayer(benchmark::State& state, const std::string& blob) {
  const SmallLayer& layer = TheSmallLayer();
  CpuClock cpu;
  int runs = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const std::filesystem::path into = layer.dir / "unpacked" / absl::StrCat(runs++);
    std::filesystem::create_directories(into);
    cpu.Start();
    state.ResumeTiming();
    stagefarm::fs::RootDir root = *stagefarm::fs::RootDir::Open(into);
    bool given = false;
    stagefarm::oci::LayerReader read = [&]() -> absl::StatusOr<absl::string_view> {
      if (given) return absl::string_view();
      given = true;
      return absl::string_view(blob);
    };
    auto applied = stagefarm::oci::ApplyLayer(root, read, {});
    cpu.Stop();
    if (!applied.ok()) state.SkipWithError(std::string(applied.status().message()).c_str());
  }
  cpu.Report(state);
}

void BM_ApplyLayerSmall(benchmark::State& state) { ApplySmallLayer(state, TheSmallLayer().tar); }
BENCHMARK(BM_ApplyLayerSmall)->Unit(benchmark::kMicrosecond)->UseRealTime()->Iterations(2000);

void BM_ApplyLayerSmallGzip(benchmark::State& state) {
  ApplySmallLayer(state, TheSmallLayer().gzip);
}
BENCHMARK(BM_ApplyLayerSmallGzip)->Unit(benchmark::kMicrosecond)->UseRealTime()->Iterations(2000);

void BM_DiffIdGzip(benchmark::State& state) {
  const MixedTree& tree = TheMixedTree();
  CpuClock cpu;
  for (auto _ : state) {
    cpu.Start();
    int fd = ::open(tree.gzip.c_str(), O_RDONLY);
    std::string buffer(1 << 20, '\0');
    stagefarm::oci::DiffIdHasher hasher;
    absl::Status status = absl::OkStatus();
    while (status.ok()) {
      ssize_t n = ::read(fd, buffer.data(), buffer.size());
      if (n <= 0) break;
      status = hasher.Update(absl::string_view(buffer.data(), n));
    }
    ::close(fd);
    absl::StatusOr<stagefarm::digest::Digest> diff_id = hasher.Finish();
    cpu.Stop();
    if (!status.ok() || !diff_id.ok()) state.SkipWithError("DiffIdHasher failed");
  }
  cpu.Report(state);
  state.SetBytesProcessed(state.iterations() * tree.bytes);
}
BENCHMARK(BM_DiffIdGzip)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

void BM_ZcatSha256sum(benchmark::State& state) {
  const MixedTree& tree = TheMixedTree();
  CpuClock cpu;
  for (auto _ : state) {
    cpu.Start();
    Run({"sh", "-c", absl::StrCat("zcat ", tree.gzip.string(), " | sha256sum > /dev/null")});
    cpu.Stop();
  }
  cpu.Report(state);
  state.SetBytesProcessed(state.iterations() * tree.bytes);
}
BENCHMARK(BM_ZcatSha256sum)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

void WriteLayer(benchmark::State& state, stagefarm::oci::LayerCompression compression) {
  const Tree& tree = TheTree();
  const std::filesystem::path out = tree.dir / "layer.out";
  for (auto _ : state) {
    std::ofstream file(out, std::ios::binary);
    stagefarm::oci::ByteSink ignore_tar = [](absl::string_view) { return absl::OkStatus(); };
    stagefarm::oci::ByteSink blob = [&](absl::string_view bytes) {
      file.write(bytes.data(), bytes.size());
      return absl::OkStatus();
    };
    stagefarm::oci::DiffOptions options;
    options.compression = compression;
    auto written = stagefarm::oci::WriteLayerFromUpper(
        tree.source, [](absl::string_view) -> absl::StatusOr<bool> { return false; }, ignore_tar,
        blob, options);
    if (!written.ok()) state.SkipWithError(std::string(written.status().message()).c_str());
  }
  state.SetBytesProcessed(state.iterations() * tree.bytes);
}

void BM_WriteLayerUncompressed(benchmark::State& state) {
  WriteLayer(state, stagefarm::oci::LayerCompression::kNone);
}
BENCHMARK(BM_WriteLayerUncompressed)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

void BM_WriteLayerGzip(benchmark::State& state) {
  WriteLayer(state, stagefarm::oci::LayerCompression::kGzip);
}
BENCHMARK(BM_WriteLayerGzip)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

void BM_WriteLayerZstd(benchmark::State& state) {
  WriteLayer(state, stagefarm::oci::LayerCompression::kZstd);
}
BENCHMARK(BM_WriteLayerZstd)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

void BM_GnuTarCreate(benchmark::State& state) {
  const Tree& tree = TheTree();
  for (auto _ : state) {
    Run({"tar", "-cf", (tree.dir / "gnu.tar").string(), "-C", tree.source.string(), "."});
  }
  state.SetBytesProcessed(state.iterations() * tree.bytes);
}
BENCHMARK(BM_GnuTarCreate)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

void BM_GnuTarCreateGzip(benchmark::State& state) {
  const Tree& tree = TheTree();
  for (auto _ : state) {
    Run({"tar", "-czf", (tree.dir / "gnu.tar.gz").string(), "-C", tree.source.string(), "."});
  }
  state.SetBytesProcessed(state.iterations() * tree.bytes);
}
BENCHMARK(BM_GnuTarCreateGzip)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  for (const std::filesystem::path& dir : TempDirs()) std::filesystem::remove_all(dir);
  return 0;
}
