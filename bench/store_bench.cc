// The content store (cas::BlobStore) against its floors, in one run:
//   put of a 1 GiB seeded-random blob, streamed in 4 MiB writes into a fresh
//     store (timing includes Commit: whole-digest check, flush, synced index);
//   get of it through the streaming reader (every chunk verified);
//   FindMissing of 10,000 digests, half of them stored;
// and, as baselines on the same bytes: write(2) to a plain file + fsync, read
// of that file back, and SHA-256 of 1 GiB in memory. Everything lives in one
// temporary directory on the same file system; the page cache is warm for the
// reads (dropping it needs root).
//
//   build/bench/store_bench --benchmark_repetitions=3
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/cas/blob_store.h"
#include "common/digest/digest.h"
#include "tests/testing/random_blobs.h"

namespace {

using stagefarm::cas::BlobReader;
using stagefarm::cas::BlobStore;
using stagefarm::cas::BlobWriter;
using stagefarm::digest::Digest;
using stagefarm::testing::kMiB;

constexpr uint64_t kBlobSize = 1024 * kMiB;
constexpr size_t kPiece = 4 * kMiB;
constexpr int kFindMissingDigests = 10'000;

// The 1 GiB blob, generated once in memory so that generating it is not timed.
struct Blob {
  std::string bytes;
  Digest digest;
};

const Blob& TheBlob() {
  static const Blob* const blob = [] {
    std::string bytes;
    stagefarm::testing::RandomStream(1).Fill(&bytes, kBlobSize);
    Digest digest = stagefarm::digest::Sha256Of(bytes);
    return new Blob{std::move(bytes), std::move(digest)};
  }();
  return *blob;
}

// The directory everything is written under; removed by main at the end.
std::unique_ptr<stagefarm::testing::TempDir>& Dir() {
  static auto* dir = new std::unique_ptr<stagefarm::testing::TempDir>();
  if (*dir == nullptr) *dir = std::make_unique<stagefarm::testing::TempDir>("store_bench");
  return *dir;
}

// Streams the blob into `store` in kPiece writes and commits it. Adds the
// seconds Commit took (flush and synced index write) to *commit_seconds.
bool PutBlob(BlobStore& store, benchmark::State& state, double* commit_seconds = nullptr) {
  const Blob& blob = TheBlob();
  std::unique_ptr<BlobWriter> writer = store.NewWriter();
  for (size_t offset = 0; offset < blob.bytes.size(); offset += kPiece) {
    absl::Status status = writer->Write(absl::string_view(blob.bytes).substr(offset, kPiece));
    if (!status.ok()) {
      state.SkipWithError(std::string(status.message()).c_str());
      return false;
    }
  }
  const auto start = std::chrono::steady_clock::now();
  absl::Status status = writer->Commit(blob.digest);
  if (commit_seconds != nullptr) {
    *commit_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  if (!status.ok()) state.SkipWithError(std::string(status.message()).c_str());
  return status.ok();
}

std::unique_ptr<BlobStore> OpenStore(const std::filesystem::path& path) {
  absl::StatusOr<std::unique_ptr<BlobStore>> store = BlobStore::Open(path);
  if (!store.ok()) {
    std::fprintf(stderr, "store_bench: %s\n", std::string(store.status().message()).c_str());
    std::abort();
  }
  return *std::move(store);
}

// A store holding the blob and kFindMissingDigests / 2 small blobs, for get
// and FindMissing; built once.
struct Populated {
  std::unique_ptr<BlobStore> store;
  std::vector<Digest> queries;  // even indexes stored, odd ones not
};

// Built on first use; main destroys it before removing the directory.
std::unique_ptr<Populated> populated_store;

Populated& ThePopulated(benchmark::State& state) {
  if (populated_store == nullptr) {
    auto p = std::make_unique<Populated>(Populated{OpenStore(Dir()->path() / "populated"), {}});
    if (!PutBlob(*p->store, state)) std::abort();
    for (int i = 0; i < kFindMissingDigests; ++i) {
      std::string bytes = absl::StrCat("findmissing blob ", i);
      Digest digest = stagefarm::digest::Sha256Of(bytes);
      if (i % 2 == 0 && !p->store->Put(bytes, digest).ok()) std::abort();
      p->queries.push_back(std::move(digest));
    }
    populated_store = std::move(p);
  }
  return *populated_store;
}

void BM_StorePut(benchmark::State& state) {
  TheBlob();
  int round = 0;
  double commit_seconds = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const std::filesystem::path path = Dir()->path() / absl::StrCat("put", round++);
    std::unique_ptr<BlobStore> store = OpenStore(path);
    state.ResumeTiming();
    if (!PutBlob(*store, state, &commit_seconds)) return;
    state.PauseTiming();
    store.reset();
    std::filesystem::remove_all(path);
    state.ResumeTiming();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kBlobSize));
  // The part of put spent in Commit (mostly flushing the last memtables).
  state.counters["commit_s"] = commit_seconds / static_cast<double>(state.iterations());
}

void BM_StoreGet(benchmark::State& state) {
  Populated& populated = ThePopulated(state);
  for (auto _ : state) {
    absl::StatusOr<std::unique_ptr<BlobReader>> reader = populated.store->Get(TheBlob().digest);
    if (!reader.ok()) {
      state.SkipWithError(std::string(reader.status().message()).c_str());
      return;
    }
    uint64_t size = 0;
    while (true) {
      absl::StatusOr<absl::string_view> piece = (*reader)->Next();
      if (!piece.ok()) {
        state.SkipWithError(std::string(piece.status().message()).c_str());
        return;
      }
      if (piece->empty()) break;
      size += piece->size();
    }
    if (size != kBlobSize) state.SkipWithError("short read");
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kBlobSize));
}

void BM_StoreFindMissing(benchmark::State& state) {
  Populated& populated = ThePopulated(state);
  for (auto _ : state) {
    absl::StatusOr<std::vector<Digest>> missing = populated.store->FindMissing(populated.queries);
    if (!missing.ok() || missing->size() != kFindMissingDigests / 2) {
      state.SkipWithError("FindMissing failed or miscounted");
      return;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kFindMissingDigests));
}

// Baseline: the same bytes to a plain file, kPiece write(2)s, then fsync.
void BM_FileWriteFsync(benchmark::State& state) {
  const Blob& blob = TheBlob();
  const std::filesystem::path path = Dir()->path() / "plain";
  for (auto _ : state) {
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    for (size_t offset = 0; offset < blob.bytes.size(); offset += kPiece) {
      if (write(fd, blob.bytes.data() + offset, kPiece) != static_cast<ssize_t>(kPiece)) {
        state.SkipWithError("write failed");
      }
    }
    if (fsync(fd) != 0) state.SkipWithError("fsync failed");
    close(fd);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kBlobSize));
}

// Baseline: reading that file back in kPiece read(2)s (page cache warm).
void BM_FileRead(benchmark::State& state) {
  const std::filesystem::path path = Dir()->path() / "plain";
  std::string buffer(kPiece, '\0');
  for (auto _ : state) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    uint64_t size = 0;
    for (ssize_t n; (n = read(fd, buffer.data(), buffer.size())) > 0;) size += n;
    close(fd);
    if (size != kBlobSize) state.SkipWithError("plain file missing or short (run write first)");
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kBlobSize));
}

// Baseline: SHA-256 of the 1 GiB in memory, one thread.
void BM_Sha256(benchmark::State& state) {
  const Blob& blob = TheBlob();
  for (auto _ : state) benchmark::DoNotOptimize(stagefarm::digest::Sha256Of(blob.bytes));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kBlobSize));
}

BENCHMARK(BM_StorePut)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1)
    ->UseRealTime()
    ->MeasureProcessCPUTime();
BENCHMARK(BM_StoreGet)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1)
    ->UseRealTime()
    ->MeasureProcessCPUTime();
BENCHMARK(BM_StoreFindMissing)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_FileWriteFsync)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();
BENCHMARK(BM_FileRead)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();
BENCHMARK(BM_Sha256)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  populated_store.reset();
  Dir().reset();
  return 0;
}
