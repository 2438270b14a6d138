// Planning a generated 1,000-stage Dockerfile: a random DAG (fixed seed) with
// ten instructions per stage (ARG, ENV, WORKDIR, RUN, RUN --mount from=,
// COPY --from=, COPY from the context). Every stage copies from the one
// before it, so the last stage needs all of them and every instruction is
// expanded. Measures parse, parse + stages, and the whole plan (parse,
// stages, graph, scoping, expansion, reads). Target: the whole plan under
// 50 ms.
//
//   build/bench/plan_bench [--benchmark_min_time=2]
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/dockerfile/instructions.h"
#include "common/dockerfile/parser.h"
#include "common/graph/stage_graph.h"

namespace {

constexpr int kStages = 1000;

std::string GeneratedDockerfile() {
  std::mt19937 random(20240601);
  auto earlier = [&random](int i) { return std::uniform_int_distribution<int>(0, i - 1)(random); };
  std::string out = "ARG BASE=busybox:1.36\nARG VERSION=1.0\n";
  for (int i = 0; i < kStages; ++i) {
    // A third of the stages are built on an earlier stage, the rest on the image.
    const bool on_stage = i > 0 && random() % 3 == 0;
    absl::StrAppend(&out, "FROM ", on_stage ? absl::StrCat("s", earlier(i)) : "${BASE}", " AS s", i,
                    "\n");
    absl::StrAppend(&out, "ARG VERSION\nARG V", i, "=value-", i, "-${VERSION}\n");
    absl::StrAppend(&out, "ENV PATH_", i, "=/opt/s", i, "/bin:$PATH\n");
    absl::StrAppend(&out, "WORKDIR /work/s", i, "\n");
    absl::StrAppend(&out, "RUN echo ${V", i, "} > out.txt\n");
    if (i > 0) {
      absl::StrAppend(&out, "COPY --from=s", i - 1, " /work/s", i - 1, "/out.txt ./prev.txt\n");
      const int other = earlier(i);
      absl::StrAppend(&out, "COPY --from=", other, " /work/s", other, "/out.txt ./r.txt\n");
      absl::StrAppend(&out, "RUN --mount=type=bind,from=s", earlier(i),
                      ",source=/work,target=/mnt make -C /mnt\n");
    } else {
      absl::StrAppend(&out, "COPY prev.txt ./prev.txt\nCOPY r.txt ./r.txt\nRUN make\n");
    }
    absl::StrAppend(&out, "ENV STAGE=s", i, "\n");
    absl::StrAppend(&out, "COPY src/s", i, "/ ./src/\n");
    absl::StrAppend(&out, "RUN ./build.sh $STAGE\n");
  }
  return out;
}

const std::string& Dockerfile() {
  static const std::string text = GeneratedDockerfile();
  return text;
}

void BM_Parse(benchmark::State& state) {
  for (auto _ : state) {
    auto ast = stagefarm::dockerfile::Parse(Dockerfile());
    benchmark::DoNotOptimize(ast);
  }
}
BENCHMARK(BM_Parse)->Unit(benchmark::kMillisecond);

void BM_ParseAndStages(benchmark::State& state) {
  for (auto _ : state) {
    auto ast = stagefarm::dockerfile::Parse(Dockerfile());
    auto staged = stagefarm::dockerfile::ParseStages(*ast);
    benchmark::DoNotOptimize(staged);
  }
}
BENCHMARK(BM_ParseAndStages)->Unit(benchmark::kMillisecond);

void BM_Plan(benchmark::State& state) {
  stagefarm::graph::PlanOptions options;
  options.platform = "linux/amd64";
  size_t instructions = 0;
  for (auto _ : state) {
    auto ast = stagefarm::dockerfile::Parse(Dockerfile());
    auto staged = stagefarm::dockerfile::ParseStages(*ast);
    auto graph = stagefarm::graph::BuildStageGraph(*staged, ast->directives.escape_token, options);
    if (!graph.ok()) {
      state.SkipWithError(std::string(graph.status().message()).c_str());
      return;
    }
    instructions = 0;
    for (const auto& stage : graph->stages) instructions += stage.instructions.size();
    benchmark::DoNotOptimize(graph);
  }
  state.counters["stages"] = kStages;
  state.counters["planned_instructions"] = static_cast<double>(instructions);
  state.counters["bytes"] = static_cast<double>(Dockerfile().size());
}
BENCHMARK(BM_Plan)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
