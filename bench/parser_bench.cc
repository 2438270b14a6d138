// Dockerfile parser throughput on the largest real Dockerfile of the shared
// corpus, side by side with a raw line scan of the same bytes (memchr for
// newlines: the floor any line-oriented parser pays). Reports bytes/s and
// instructions/s; the ratio to the raw scan goes into docs/BENCHMARKS.md.
//
//   build/bench/parser_bench [--benchmark_min_time=2]
//   STAGEFARM_SHARED_DIR=/path/to/shared build/bench/parser_bench
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "common/dockerfile/parser.h"

namespace {

namespace fs = std::filesystem;

struct Corpus {
  std::string name;
  std::string data;
};

// The largest file under <shared>/conformance/real-dockerfiles.
const Corpus& LargestRealDockerfile() {
  static const Corpus corpus = [] {
    const char* env = std::getenv("STAGEFARM_SHARED_DIR");
    const fs::path dir = fs::path(env != nullptr ? env : STAGEFARM_SHARED_DIR_DEFAULT) /
                         "conformance/real-dockerfiles";
    Corpus best;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      std::ifstream in(entry.path(), std::ios::binary);
      std::ostringstream text;
      text << in.rdbuf();
      if (text.str().size() > best.data.size())
        best = {entry.path().filename().string(), text.str()};
    }
    if (best.data.empty()) {
      std::fprintf(stderr, "parser_bench: no Dockerfiles under %s\n", dir.c_str());
      std::exit(2);
    }
    return best;
  }();
  return corpus;
}

// The same instructions repeated to about 4 MiB: throughput without the
// per-call overhead dominating (the FROM-less repeats parse the same way).
const std::string& LargeDockerfile() {
  static const std::string data = [] {
    std::string out;
    const std::string& one = LargestRealDockerfile().data;
    while (out.size() < (4u << 20)) {
      out += one;
      if (!one.empty() && one.back() != '\n') out += '\n';
    }
    return out;
  }();
  return data;
}

void ReportParse(benchmark::State& state, const std::string& data) {
  size_t instructions = 0;
  for (auto _ : state) {
    auto result = stagefarm::dockerfile::Parse(data);
    if (!result.ok()) {
      state.SkipWithError(std::string(result.status().message()).c_str());
      return;
    }
    instructions = result->children.size();
    benchmark::DoNotOptimize(result);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * data.size()));
  state.counters["instructions/s"] = benchmark::Counter(
      static_cast<double>(instructions) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
}

void ReportLineScan(benchmark::State& state, const std::string& data) {
  for (auto _ : state) {
    size_t lines = 0;
    const char* p = data.data();
    const char* end = p + data.size();
    while (p < end) {
      const void* nl = std::memchr(p, '\n', static_cast<size_t>(end - p));
      if (nl == nullptr) break;
      ++lines;
      p = static_cast<const char*>(nl) + 1;
    }
    benchmark::DoNotOptimize(lines);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * data.size()));
}

void BM_Parse_LargestRealDockerfile(benchmark::State& state) {
  state.SetLabel(LargestRealDockerfile().name);
  ReportParse(state, LargestRealDockerfile().data);
}
void BM_RawLineScan_LargestRealDockerfile(benchmark::State& state) {
  ReportLineScan(state, LargestRealDockerfile().data);
}
void BM_Parse_Repeated4MiB(benchmark::State& state) { ReportParse(state, LargeDockerfile()); }
void BM_RawLineScan_Repeated4MiB(benchmark::State& state) {
  ReportLineScan(state, LargeDockerfile());
}

BENCHMARK(BM_Parse_LargestRealDockerfile);
BENCHMARK(BM_RawLineScan_LargestRealDockerfile);
BENCHMARK(BM_Parse_Repeated4MiB)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RawLineScan_Repeated4MiB)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
