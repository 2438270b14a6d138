// Build-context hashing (fs::ContextIndex::Build: walk, stat, read, SHA-256)
// side by side with its two floors on the same bytes: reading every file
// without hashing, and hashing the bytes already in memory. The contexts are
// generated in a temporary directory (page cache warm after the first pass):
//   large: 64 files of 4 MiB;  small: 16,384 files of 16 KiB (256 MiB each).
//
//   build/bench/context_hash_bench --benchmark_min_time=2
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "common/digest/digest.h"
#include "common/fs/context_index.h"

namespace {

namespace stdfs = std::filesystem;

struct Context {
  stdfs::path dir;
  std::vector<stdfs::path> files;
  size_t bytes = 0;
};

// A context of `count` random files of `size` bytes in 64 directories.
Context MakeContext(const std::string& name, size_t count, size_t size) {
  Context context;
  context.dir = stdfs::temp_directory_path() / ("stagefarm-context-bench-" + name);
  stdfs::remove_all(context.dir);
  stdfs::create_directories(context.dir);
  std::ofstream(context.dir / "Dockerfile") << "FROM scratch\nCOPY . /\n";
  std::mt19937_64 rng(42);
  std::string data(size, '\0');
  for (size_t i = 0; i < count; ++i) {
    for (size_t j = 0; j + 8 <= size; j += 8) {
      const uint64_t v = rng();
      std::memcpy(&data[j], &v, 8);
    }
    const stdfs::path sub = context.dir / ("d" + std::to_string(i % 64));
    stdfs::create_directories(sub);
    const stdfs::path file = sub / ("f" + std::to_string(i));
    std::ofstream(file, std::ios::binary).write(data.data(), static_cast<std::streamsize>(size));
    context.files.push_back(file);
    context.bytes += size;
  }
  return context;
}

const Context& Large() {
  static const Context context = MakeContext("large", 64, 4u << 20);
  return context;
}
const Context& Small() {
  static const Context context = MakeContext("small", 16384, 16u << 10);
  return context;
}

void IndexBuild(benchmark::State& state, const Context& context) {
  for (auto _ : state) {
    auto index = stagefarm::fs::ContextIndex::Build(context.dir, context.dir / "Dockerfile");
    if (!index.ok()) {
      state.SkipWithError(std::string(index.status().message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(index);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * context.bytes));
  state.counters["files/s"] = benchmark::Counter(
      static_cast<double>(context.files.size()) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
}

void RawRead(benchmark::State& state, const Context& context) {
  std::vector<char> buffer(256 << 10);
  for (auto _ : state) {
    for (const stdfs::path& file : context.files) {
      const int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
      while (read(fd, buffer.data(), buffer.size()) > 0) {
      }
      close(fd);
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * context.bytes));
}

void Sha256InMemory(benchmark::State& state) {
  std::string data(4u << 20, 'x');
  for (auto _ : state) benchmark::DoNotOptimize(stagefarm::digest::Sha256Of(data));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * data.size()));
}

void BM_ContextIndexBuild_Large(benchmark::State& state) { IndexBuild(state, Large()); }
void BM_RawRead_Large(benchmark::State& state) { RawRead(state, Large()); }
void BM_ContextIndexBuild_Small(benchmark::State& state) { IndexBuild(state, Small()); }
void BM_RawRead_Small(benchmark::State& state) { RawRead(state, Small()); }
void BM_Sha256InMemory(benchmark::State& state) { Sha256InMemory(state); }

BENCHMARK(BM_ContextIndexBuild_Large)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RawRead_Large)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ContextIndexBuild_Small)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RawRead_Small)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Sha256InMemory)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
