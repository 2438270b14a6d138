// Layers against GNU tar on the same tree, in one run:
//   unpack: oci::ApplyLayer of an uncompressed layer tar into a fresh
//     directory, against `tar -xf` of the same tar;
//   write: oci::WriteLayerFromUpper of the tree (everything new, as an upper
//     dir after a step that made it) into a file, uncompressed, gzip and
//     zstd, against `tar -cf` and `tar -czf` of the same tree.
// The tree is 2,000 files of 32 KiB and 8 of 16 MiB (190 MiB), seeded
// random bytes (incompressible), in a temporary directory; the page cache is
// warm. Byte rates count the tree's file bytes.
//
//   build/bench/layer_bench --benchmark_repetitions=3
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fs/root.h"
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

const Tree& TheTree() {
  static Tree* tree = [] {
    auto* t = new Tree;
    char pattern[] = "/tmp/layer_bench.XXXXXX";
    t->dir = mkdtemp(pattern);
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

void Fresh(const std::filesystem::path& path) {
  std::filesystem::remove_all(path);
  std::filesystem::create_directories(path);
}

void BM_ApplyLayer(benchmark::State& state) {
  const Tree& tree = TheTree();
  const std::filesystem::path out = tree.dir / "unpacked";
  for (auto _ : state) {
    state.PauseTiming();
    Fresh(out);
    state.ResumeTiming();
    stagefarm::fs::RootDir root = *stagefarm::fs::RootDir::Open(out);
    int fd = ::open(tree.tar.c_str(), O_RDONLY);
    std::string buffer(1 << 20, '\0');
    stagefarm::oci::LayerReader read = [&]() -> absl::StatusOr<absl::string_view> {
      ssize_t n = ::read(fd, buffer.data(), buffer.size());
      return absl::string_view(buffer.data(), n > 0 ? n : 0);
    };
    auto applied = stagefarm::oci::ApplyLayer(root, read, {});
    ::close(fd);
    if (!applied.ok()) state.SkipWithError(std::string(applied.status().message()).c_str());
  }
  state.SetBytesProcessed(state.iterations() * tree.bytes);
}
BENCHMARK(BM_ApplyLayer)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

void BM_GnuTarExtract(benchmark::State& state) {
  const Tree& tree = TheTree();
  const std::filesystem::path out = tree.dir / "extracted";
  for (auto _ : state) {
    state.PauseTiming();
    Fresh(out);
    state.ResumeTiming();
    Run({"tar", "-xf", tree.tar.string(), "-C", out.string()});
  }
  state.SetBytesProcessed(state.iterations() * tree.bytes);
}
BENCHMARK(BM_GnuTarExtract)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

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
  std::filesystem::remove_all(TheTree().dir);
  return 0;
}
