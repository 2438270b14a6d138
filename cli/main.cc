// stagefarm: the client. Subcommands today:
//   stagefarm dockerfile parse [--dump] FILE
//   stagefarm keys generate DIR [--name NAME]
//   stagefarm plan [-f Dockerfile] [--target STAGE] [--build-arg K=V]... [--platform P]
//                  [--format text|json|dot] CONTEXT
//   stagefarm build [-f Dockerfile] [-t NAME:TAG]... [--target STAGE] [--build-arg K=V]...
//                   [--output type=oci|docker,dest=PATH]... CONTEXT
//   stagefarm image import|ls|rm|inspect ...
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/build_command.h"
#include "cli/build_contexts.h"
#include "cli/cluster_command.h"
#include "cli/command_line.h"
#include "cli/image_command.h"
#include "cli/keys_command.h"
#include "cli/plan_input.h"
#include "cli/plan_output.h"
#include "cli/subcommand.h"
#include "common/dockerfile/instructions.h"
#include "common/dockerfile/parser.h"
#include "common/fs/context_index.h"
#include "common/graph/plan_cache_keys.h"
#include "common/graph/stage_graph.h"
#include "common/process/allocator.h"
#include "common/process/version.h"

namespace stagefarm::cli {
namespace {

constexpr char kUsage[] =
    "usage: stagefarm COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  dockerfile parse [--dump] FILE   parse a Dockerfile; --dump prints BuildKit's AST dump\n"
    "  keys generate DIR [--name NAME]  write a CURVE keypair DIR/NAME.key, DIR/NAME.pub\n"
    "  plan [flags] CONTEXT             show the stages a build needs and what they depend on\n"
    "  build [flags] CONTEXT            build an image from a Dockerfile on this machine\n"
    "  cluster status|drain             the coordinator's workers; take one out of scheduling\n"
    "  image import|ls|rm|inspect       the images of this node: import archives, list, untag\n"
    "\n"
    "  version                          print stagefarm's version (also --version)\n"
    "\n"
    "Run 'stagefarm COMMAND --help' for a command's flags.\n";

int DockerfileParse(const std::vector<std::string>& args) {
  ParsedArgs parsed;
  if (auto stop =
          ParseCommand(args, "stagefarm dockerfile parse [--dump] FILE",
                       {{"dump", "", false, false, "print the AST in BuildKit's dump format"}},
                       "FILE (\"-\" for standard input)", parsed)) {
    return *stop;
  }
  const std::string& path = parsed.positional[0];
  absl::StatusOr<std::string> data = ReadInput(path);
  if (!data.ok()) return Fail(data.status().message());
  const std::string filename = path == "-" ? "Dockerfile" : path;
  absl::StatusOr<dockerfile::ParseResult> result = dockerfile::Parse(*data, filename);
  if (!result.ok()) return Fail(result.status().message());
  PrintWarnings(filename, *result);
  if (parsed.Has("dump")) {
    const std::string dump = dockerfile::Dump(*result);
    std::fwrite(dump.data(), 1, dump.size(), stdout);
    return 0;
  }
  absl::StatusOr<dockerfile::StagedDockerfile> staged = dockerfile::ParseStages(*result, filename);
  if (!staged.ok()) return Fail(staged.status().message());
  const size_t stages = staged->stages.size();
  std::printf("%s: %zu instruction%s, %zu stage%s, escape %c\n", filename.c_str(),
              result->children.size(), result->children.size() == 1 ? "" : "s", stages,
              stages == 1 ? "" : "s", result->directives.escape_token);
  return 0;
}

int Plan(const std::vector<std::string>& args) {
  ParsedArgs parsed;
  if (auto stop =
          ParseCommand(args, "stagefarm plan [flags] CONTEXT",
                       {{"file", "f", true, false, "Dockerfile (default: CONTEXT/Dockerfile)"},
                        {"target", "", true, false, "stage to build (default: the last one)"},
                        {"build-arg", "", true, true, "set a build-time variable (K=V)"},
                        BuildContextFlagSpec(),
                        {"platform", "", true, false, "target platform (default: this machine's)"},
                        {"format", "", true, false, "text, json or dot"}},
                       "CONTEXT", parsed)) {
    return *stop;
  }
  const std::string format = parsed.Get("format", "text");
  if (format != "text" && format != "json" && format != "dot") {
    return Fail(absl::StrCat("--format must be text, json or dot, not \"", format, "\""),
                kExitUsage);
  }
  const std::string context = parsed.positional[0];
  const std::string file = parsed.Get("file", absl::StrCat(context, "/Dockerfile"));
  absl::StatusOr<std::vector<BuildContextFlag>> contexts =
      ParseBuildContexts(parsed.All("build-context"));
  if (!contexts.ok()) return Fail(contexts.status().message(), kExitUsage);
  graph::PlanOptions options;
  options.build_args = ResolveBuildArgs(parsed.All("build-arg"));
  options.target = parsed.Get("target");
  options.platform = parsed.Get("platform");
  std::vector<build::NamedContext> named = NamedContextsOf(*contexts);
  options.named_contexts = build::NamedContextSources(named);
  absl::StatusOr<LoadedPlan> plan = LoadPlan(file, std::move(options));
  if (!plan.ok()) return Fail(plan.status().message());
  const graph::StageGraph* stage_graph = &plan->graph;
  std::string out;
  if (format == "json") {
    // Cache keys read the context: only JSON shows them, so only JSON pays.
    // A context that cannot give them (a COPY source missing, as when planning
    // without the checkout) still gets its plan, without keys.
    absl::StatusOr<std::vector<std::optional<graph::StageKeys>>> keys =
        [&]() -> absl::StatusOr<std::vector<std::optional<graph::StageKeys>>> {
      absl::StatusOr<fs::ContextIndex> index = fs::ContextIndex::Build(context, file);
      if (!index.ok()) return index.status();
      for (build::NamedContext& context : named) {  // the named directories, indexed alike
        if (context.image) continue;
        absl::StatusOr<fs::ContextIndex> dir = fs::ContextIndex::Build(context.dir, "");
        if (!dir.ok()) return dir.status();
        context.context = *std::move(dir);
      }
      return graph::ComputePlanCacheKeys(*stage_graph, *index, file, nullptr,
                                         build::NamedContextIndexes(named));
    }();
    if (!keys.ok()) {
      std::fprintf(stderr, "stagefarm: warning: no cache keys in this plan: %s\n",
                   std::string(keys.status().message()).c_str());
      keys = std::vector<std::optional<graph::StageKeys>>(stage_graph->stages.size());
    }
    out = PlanJson(*stage_graph, *keys);
  } else {
    out = format == "dot" ? PlanDot(*stage_graph) : PlanText(*stage_graph);
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? kExitUsage : 0;
  }
  const std::string command = args[0];
  if (command == "version" || command == "--version") {
    std::printf("stagefarm %s\n", process::kVersion);
    return 0;
  }
  if (command == "dockerfile") {
    if (args.size() < 2 || args[1] != "parse") {
      return Fail("usage: stagefarm dockerfile parse [--dump] FILE", kExitUsage);
    }
    return DockerfileParse(std::vector<std::string>(args.begin() + 2, args.end()));
  }
  if (command == "keys") {
    if (args.size() < 2 || args[1] != "generate") {
      return Fail("usage: stagefarm keys generate DIR [--name NAME]", kExitUsage);
    }
    return KeysGenerate(std::vector<std::string>(args.begin() + 2, args.end()));
  }
  if (command == "cluster") {
    return ClusterCommand(std::vector<std::string>(args.begin() + 1, args.end()));
  }
  if (command == "build") return Build(std::vector<std::string>(args.begin() + 1, args.end()));
  if (command == "plan") return Plan(std::vector<std::string>(args.begin() + 1, args.end()));
  if (command == "image") {
    return ImageCommand(std::vector<std::string>(args.begin() + 1, args.end()));
  }
  return Fail(absl::StrCat("unknown command \"", command, "\"\n", kUsage), kExitUsage);
}

}  // namespace
}  // namespace stagefarm::cli

int main(int argc, char** argv) {
  stagefarm::process::KeepFreedMemoryForReuse();
  return stagefarm::cli::Main(argc, argv);
}
