// Build-context hashing (fs::ContextIndex::Build: walk, stat, read, SHA-256)
// side by side with its two floors on the same bytes: reading every file
// without hashing, and hashing the bytes already in memory. The re-scan
// (a hash cache loaded from its file, the walk, the cache saved: what a
// second build of an unchanged tree does) beside its floor, a bare walk that
// lists and stats every entry. The contexts are
// generated in a temporary directory (page cache warm after the first pass):
//   large: 64 files of 4 MiB;  small: 16,384 files of 16 KiB (256 MiB each).
//
//   build/bench/context_hash_bench --benchmark_min_time=2
#include <benchmark/benchmark.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/digest/digest.h"
#include "common/fs/context_index.h"
#include "common/fs/hash_cache.h"

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

// A build's scan of an unchanged tree: the cache file, primed by one scan
// before timing, loaded; the walk stats every file and reads none; Save
// finds nothing to write.
void Rescan(benchmark::State& state, const Context& context) {
  const stdfs::path cache_file = context.dir.string() + ".hashes";
  stdfs::remove(cache_file);
  // Files changed within the cache's racy window are not remembered.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  {
    auto hashes = stagefarm::fs::HashCache::Load(cache_file);
    auto index =
        stagefarm::fs::ContextIndex::Build(context.dir, context.dir / "Dockerfile", &hashes);
    if (!index.ok() || !hashes.Save().ok()) {
      state.SkipWithError("priming the hash cache failed");
      return;
    }
  }
  double load_seconds = 0;
  double walk_seconds = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    auto hashes = stagefarm::fs::HashCache::Load(cache_file);
    const auto loaded = std::chrono::steady_clock::now();
    auto index =
        stagefarm::fs::ContextIndex::Build(context.dir, context.dir / "Dockerfile", &hashes);
    walk_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - loaded).count();
    load_seconds += std::chrono::duration<double>(loaded - start).count();
    if (!index.ok() || !hashes.Save().ok() || hashes.misses() != 0) {
      state.SkipWithError("re-scan read files or failed");
      return;
    }
    benchmark::DoNotOptimize(index);
  }
  const double runs = static_cast<double>(state.iterations());
  state.counters["load_ms"] = 1000 * load_seconds / runs;
  state.counters["walk_ms"] = 1000 * walk_seconds / runs;
  state.counters["files/s"] = benchmark::Counter(
      static_cast<double>(context.files.size()) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
}

// Loading the cache file alone (part of every re-scan).
void LoadHashes(benchmark::State& state, const Context& context) {
  const stdfs::path cache_file = context.dir.string() + ".hashes";
  for (auto _ : state) {
    auto hashes = stagefarm::fs::HashCache::Load(cache_file);
    if (hashes.size() < context.files.size()) {
      state.SkipWithError("run BM_ContextRescan_Small first: it writes the cache file");
      return;
    }
    benchmark::DoNotOptimize(hashes);
  }
}

// The floor under a re-scan: readdir and fstatat of every entry, nothing kept.
size_t StatTree(int dir_fd) {
  DIR* stream = dir_fd < 0 ? nullptr : fdopendir(dir_fd);
  if (stream == nullptr) return 0;
  size_t entries = 0;
  while (const dirent* child = readdir(stream)) {
    if (std::strcmp(child->d_name, ".") == 0 || std::strcmp(child->d_name, "..") == 0) continue;
    struct stat st;
    if (fstatat(dirfd(stream), child->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    ++entries;
    if (S_ISDIR(st.st_mode)) {
      entries += StatTree(openat(dirfd(stream), child->d_name, O_RDONLY | O_DIRECTORY));
    }
  }
  closedir(stream);
  return entries;
}

void StatWalk(benchmark::State& state, const Context& context) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(StatTree(open(context.dir.c_str(), O_RDONLY | O_DIRECTORY)));
  }
  state.counters["files/s"] = benchmark::Counter(
      static_cast<double>(context.files.size()) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
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
void BM_ContextRescan_Small(benchmark::State& state) { Rescan(state, Small()); }
void BM_StatWalk_Small(benchmark::State& state) { StatWalk(state, Small()); }
void BM_HashCacheLoad_Small(benchmark::State& state) { LoadHashes(state, Small()); }
void BM_Sha256InMemory(benchmark::State& state) { Sha256InMemory(state); }

BENCHMARK(BM_ContextIndexBuild_Large)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RawRead_Large)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ContextIndexBuild_Small)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RawRead_Small)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ContextRescan_Small)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_StatWalk_Small)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HashCacheLoad_Small)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Sha256InMemory)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
