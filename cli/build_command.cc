#include "cli/build_command.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/build_contexts.h"
#include "cli/build_record.h"
#include "cli/coordinator_client.h"
#include "cli/embedded_cluster.h"
#include "cli/output_spec.h"
#include "cli/plan_input.h"
#include "cli/progress.h"
#include "cli/remote_images.h"
#include "cli/subcommand.h"
#include "common/build/build_definition.h"
#include "common/cas/blob_store.h"
#include "common/fs/context_index.h"
#include "common/fs/hash_cache.h"
#include "common/fs/root.h"
#include "common/graph/plan_cache_keys.h"
#include "common/oci/exported_image.h"
#include "common/oci/image_layout.h"
#include "common/oci/image_ref.h"
#include "common/oci/layer_compress.h"
#include "common/oci/layer_unpack.h"
#include "common/oci/local_images.h"
#include "worker/build/local_build.h"
#include "worker/build/stage_executor.h"

namespace stagefarm::cli {
namespace {

namespace stdfs = std::filesystem;

// type=local: the image's root filesystem, its layers applied in order into
// `dest` (made if missing; what is there already is overwritten where the
// image has the same path). Owners are the image's when running as root.
absl::Status WriteRootfs(cas::BlobStore& store, const std::vector<oci::Descriptor>& layers,
                         const stdfs::path& dest) {
  std::error_code error;
  stdfs::create_directories(dest, error);
  if (error) return absl::UnavailableError(absl::StrCat(dest.string(), ": ", error.message()));
  absl::StatusOr<fs::RootDir> root = fs::RootDir::Open(dest);
  if (!root.ok()) return root.status();
  oci::ApplyOptions options;
  options.preserve_ownership = geteuid() == 0;
  for (const oci::Descriptor& layer : layers) {
    absl::StatusOr<std::unique_ptr<cas::BlobReader>> reader = store.Get(layer.digest);
    if (!reader.ok()) return reader.status();
    cas::BlobReader* raw = reader->get();
    absl::StatusOr<oci::ApplyStats> applied = oci::ApplyLayer(
        *root, [raw] { return raw->Next(); }, options);
    if (!applied.ok()) {
      return absl::Status(applied.status().code(), absl::StrCat("layer ", layer.digest.ToString(),
                                                                ": ", applied.status().message()));
    }
  }
  return absl::OkStatus();
}

// --secret values, as buildx reads them: "id=ID,src=FILE" (also source=,
// type=file), "id=ID,env=VARIABLE" (type=env), or "id=ID" alone, which is
// the variable ID if it is set, else the file ID. Errors name the id and the
// file or variable, never the value.
absl::StatusOr<std::map<std::string, std::string>> ReadSecrets(
    const std::vector<std::string>& values) {
  std::map<std::string, std::string> secrets;
  for (const std::string& value : values) {
    std::string id, type, source, env;
    for (absl::string_view field : absl::StrSplit(value, ',')) {
      const size_t eq = field.find('=');
      const std::string key = absl::AsciiStrToLower(field.substr(0, eq));
      const std::string val(eq == absl::string_view::npos ? "" : field.substr(eq + 1));
      if (key == "id") {
        id = val;
      } else if (key == "type") {
        type = val;
      } else if (key == "src" || key == "source") {
        source = val;
      } else if (key == "env") {
        env = val;
      } else {
        return absl::InvalidArgumentError(absl::StrCat("--secret ", value, ": unknown field \"",
                                                       key, "\" (known: id, type, src, env)"));
      }
    }
    if (id.empty()) id = !source.empty() ? stdfs::path(source).filename().string() : env;
    if (type.empty()) {
      if (!env.empty()) {
        type = "env";
      } else if (!source.empty()) {
        type = "file";
      } else {
        type = std::getenv(id.c_str()) != nullptr ? "env" : "file";
      }
    }
    if (type == "env" && env.empty()) env = source.empty() ? id : source;
    if (type == "file" && source.empty()) source = id;
    std::string bytes;
    if (type == "env") {
      const char* set = std::getenv(env.c_str());
      if (set == nullptr) {
        return absl::NotFoundError(
            absl::StrCat("--secret id=", id, ": environment variable ", env, " is not set"));
      }
      bytes = set;
    } else if (type == "file") {
      std::ifstream in(source, std::ios::binary);
      if (!in) {
        return absl::NotFoundError(
            absl::StrCat("--secret id=", id, ": cannot read ", source, ": ", std::strerror(errno)));
      }
      std::ostringstream content;
      content << in.rdbuf();
      bytes = content.str();
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--secret id=", id, ": type must be file or env, not \"", type, "\""));
    }
    if (absl::Status ok = build::CheckSecret(id, bytes); !ok.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--secret: ", ok.message()));
    }
    secrets[id] = std::move(bytes);
  }
  return secrets;
}

// "docker.io/library/busybox:latest" as Docker shows it: "busybox:latest".
std::string FamiliarName(const oci::ImageRef& ref) {
  std::string name = ref.Name();
  if (absl::StartsWith(name, "docker.io/library/")) {
    name = name.substr(std::string("docker.io/library/").size());
  } else if (absl::StartsWith(name, "docker.io/")) {
    name = name.substr(std::string("docker.io/").size());
  }
  return ref.tag.empty() ? name : absl::StrCat(name, ":", ref.tag);
}

// SOURCE_DATE_EPOCH from --build-arg, else the environment (as buildx passes it).
absl::StatusOr<std::optional<int64_t>> SourceDateEpoch(const std::vector<std::string>& build_args) {
  std::optional<std::string> text;
  if (const char* env = std::getenv("SOURCE_DATE_EPOCH"); env != nullptr && *env != '\0') {
    text = env;
  }
  for (const std::string& arg : build_args) {
    if (absl::StartsWith(arg, "SOURCE_DATE_EPOCH=")) text = arg.substr(18);
  }
  if (!text) return std::optional<int64_t>();
  int64_t seconds = 0;
  if (!absl::SimpleAtoi(*text, &seconds) || seconds < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("SOURCE_DATE_EPOCH must be a number of seconds, not \"", *text, "\""));
  }
  return std::optional<int64_t>(seconds);
}

worker::BuiltImage ToBuilt(const oci::LocalImage& image) {
  return worker::BuiltImage{image.config, image.layers};
}

using EventSink = std::function<void(const ProgressEvent&)>;

// The in-process engine's events, as progress events.
worker::BuildEvents ProgressEvents(const EventSink& sink, const std::string& build_id) {
  auto event = [build_id](const graph::PlannedStage& stage, ProgressEvent::Kind kind) {
    ProgressEvent out;
    out.time = absl::Now();
    out.build = build_id;
    out.stage = stage.index;
    out.stage_name = stage.name;
    out.worker = "local";
    out.kind = kind;
    return out;
  };
  worker::BuildEvents events;
  events.on_stage_start = [sink, event](const graph::PlannedStage& stage) {
    ProgressEvent out = event(stage, ProgressEvent::Kind::kStarted);
    out.text = stage.base_name.empty() ? std::string("scratch") : stage.base_name;
    sink(out);
  };
  events.on_step = [sink, event](const graph::PlannedStage& stage, size_t step, size_t steps,
                                 absl::string_view text) {
    ProgressEvent out = event(stage, ProgressEvent::Kind::kStep);
    out.step = step;
    out.steps = steps;
    out.text = std::string(text);
    sink(out);
  };
  events.on_output = [sink, event](const graph::PlannedStage& stage, absl::string_view output) {
    ProgressEvent out = event(stage, ProgressEvent::Kind::kLog);
    out.text = std::string(output);
    sink(out);
  };
  events.on_note = [sink, event](const graph::PlannedStage& stage, absl::string_view line) {
    ProgressEvent out =
        event(stage, line == "CACHED" ? ProgressEvent::Kind::kCached : ProgressEvent::Kind::kNote);
    if (line != "CACHED") out.text = std::string(line);
    sink(out);
  };
  events.on_stage_done = [sink, event](const graph::PlannedStage& stage, double seconds) {
    ProgressEvent out = event(stage, ProgressEvent::Kind::kStageDone);
    out.seconds = seconds;
    sink(out);
  };
  return events;
}

// The external images a plan's needed stages read, from the local store.
absl::StatusOr<std::vector<build::NamedImage>> PlanImages(cas::BlobStore& store,
                                                          const graph::StageGraph& plan,
                                                          const std::string& file) {
  std::vector<build::NamedImage> images;
  std::set<std::string> seen;
  for (const graph::PlannedStage& stage : plan.stages) {
    if (!stage.needed) continue;
    std::vector<oci::ImageRef> refs = stage.images;
    if (stage.base.kind == graph::StageBase::Kind::kImage) refs.push_back(stage.base.image);
    for (const oci::ImageRef& ref : refs) {
      if (!seen.insert(ref.String()).second) continue;
      absl::StatusOr<oci::LocalImage> image = oci::ResolveImage(store, ref);
      if (!image.ok()) {
        return absl::Status(image.status().code(),
                            absl::StrCat(file, ":", stage.line, ": ", ref.String(), ": ",
                                         image.status().message()));
      }
      images.push_back({ref, ToBuilt(*image), image->manifest.digest});
    }
  }
  return images;
}

// Writes `text` to `path` (a flag's file: --iidfile, --metadata-file,
// --trace), replacing it. Errors name the flag and the file.
absl::Status WriteTextFile(absl::string_view flag, const stdfs::path& path,
                           absl::string_view text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.close();
  if (!out) {
    return absl::UnavailableError(
        absl::StrCat("--", flag, " ", path.string(), ": cannot write: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

// Where the hash cache of the context at `context` lives in the data dir.
stdfs::path ContextHashFile(const stdfs::path& data_dir, const stdfs::path& context) {
  std::error_code error;
  stdfs::path absolute = stdfs::weakly_canonical(stdfs::absolute(context), error);
  if (error) absolute = stdfs::absolute(context);
  return data_dir / "context-hashes" / digest::Sha256Of(absolute.native()).ToString().substr(7, 32);
}

// An --output type=registry (or --push): the built image to its name= or
// every -t name, its layers compressed as the other outputs' are.
int PushBuilt(cas::BlobStore& store, const digest::Digest& manifest, const OutputSpec& output,
              const std::vector<oci::ImageRef>& tags, const oci::CompressOptions& compress,
              const registry::RegistryOptions& options, oci::Descriptor* pushed_manifest) {
  std::vector<oci::ImageRef> targets = tags;
  if (!output.name.empty()) {
    absl::StatusOr<oci::ImageRef> name = oci::ParseImageRef(output.name);
    if (!name.ok()) {
      return Fail(absl::StrCat("--output name=", output.name, ": ", name.status().message()),
                  kExitUsage);
    }
    targets = {*name};
  }
  if (targets.empty()) {
    return Fail("--push and --output type=registry need -t NAME or name=NAME", kExitUsage);
  }
  absl::StatusOr<oci::LocalImage> image = oci::ReadImage(store, manifest);
  if (!image.ok()) return Fail(image.status().message());
  registry::PushOptions push;
  push.compress = compress;
  for (const oci::ImageRef& target : targets) {
    absl::StatusOr<registry::PushResult> pushed =
        PushToRegistry(store, *image, target, options, push, stderr);
    if (!pushed.ok()) return Fail(pushed.status().message());
    pushed_manifest->media_type = pushed->media_type;
    pushed_manifest->digest = pushed->manifest;
    pushed_manifest->size = pushed->manifest_size;
  }
  return 0;
}

std::vector<FlagSpec> Concat(std::vector<FlagSpec> first, std::vector<FlagSpec> second) {
  first.insert(first.begin(), second.begin(), second.end());
  return first;
}

std::string NewBuildId() {
  return absl::StrCat(absl::Hex(absl::ToUnixNanos(absl::Now()) ^ getpid()));
}

// The index of the context directory `dir` (ignore file as `dockerfile`
// selects it), through its hash cache in `data_dir`; adds the files it read
// and hashed to `*hashed`. A cache that cannot be saved is only a warning.
absl::StatusOr<fs::ContextIndex> ScanContext(const stdfs::path& data_dir, const stdfs::path& dir,
                                             const stdfs::path& dockerfile, uint64_t* hashed) {
  fs::HashCache hashes = fs::HashCache::Load(ContextHashFile(data_dir, dir));
  absl::StatusOr<fs::ContextIndex> index = fs::ContextIndex::Build(dir, dockerfile, &hashes);
  if (!index.ok()) return index.status();
  if (absl::Status saved = hashes.Save(); !saved.ok()) {
    std::fprintf(stderr, "warning: %s\n", std::string(saved.message()).c_str());
  }
  *hashed += hashes.misses();
  return index;
}

// While it lives, Ctrl-C sets flag(): the build is cancelled. A second Ctrl-C
// ends the client at once (exit 130). One at a time.
class CancelOnInterrupt {
 public:
  // `restart_calls`: whether a system call that SIGINT interrupts is
  // restarted (SA_RESTART) rather than failing with EINTR.
  explicit CancelOnInterrupt(bool restart_calls) {
    interrupted_.store(false);
    struct sigaction action = {};
    action.sa_handler = [](int) {
      if (interrupted_.exchange(true)) _exit(130);
    };
    action.sa_flags = restart_calls ? SA_RESTART : 0;
    sigaction(SIGINT, &action, nullptr);
  }
  ~CancelOnInterrupt() { signal(SIGINT, SIG_DFL); }
  CancelOnInterrupt(const CancelOnInterrupt&) = delete;
  CancelOnInterrupt& operator=(const CancelOnInterrupt&) = delete;

  const std::atomic<bool>* flag() const { return &interrupted_; }

 private:
  static inline std::atomic<bool> interrupted_{false};
};

// `--workers 0`: every stage in this process, on this node's own store.
absl::StatusOr<worker::BuiltImage> BuildInProcess(
    const ParsedArgs& parsed, const std::string& file, const std::string& context,
    const LoadedPlan& plan, const fs::ContextIndex& index,
    const std::vector<build::NamedContext>& named, std::optional<int64_t> epoch,
    const std::map<std::string, std::string>& secrets,
    std::optional<oci::CompressOptions> precompress, const stdfs::path& data_dir,
    cas::BlobStore& store, const EventSink& sink) {
  worker::ExecutorOptions executor_options;
  executor_options.data_dir = data_dir;
  absl::StatusOr<std::unique_ptr<worker::StageExecutor>> executor =
      worker::StageExecutor::Open(&store, executor_options);
  if (!executor.ok()) return executor.status();
  worker::LocalBuildInput input;
  input.graph = &plan.graph;
  input.context_dir = context;
  input.context = &index;
  for (const build::NamedContext& context : named) {
    if (!context.image) input.named_contexts[context.name] = {context.dir, &context.context};
  }
  input.dockerfile_name = file;
  input.source_date_epoch = epoch;
  input.secrets = &secrets;
  // The local store keeps the image as built (layers uncompressed, as a
  // snapshotter keeps them): only an export compresses, and then the layers
  // of the stages the image is built FROM start compressing as each stage
  // ends.
  input.precompress = precompress;
  // Ctrl-C stops the running stages (a RUN's container is killed); the
  // sandbox looks at the flag every 100 ms, so calls are restarted.
  CancelOnInterrupt interrupt(/*restart_calls=*/true);
  input.cancelled = interrupt.flag();
  // Cache keys: images by the manifest their tag names here. A plan whose
  // keys cannot be computed (a COPY source missing) builds without the cache
  // and fails at that COPY, with its location.
  absl::StatusOr<std::vector<std::optional<graph::StageKeys>>> keys = graph::ComputePlanCacheKeys(
      plan.graph, index, file,
      [&store](const oci::ImageRef& ref) -> std::optional<digest::Digest> {
        absl::StatusOr<oci::LocalImage> image = oci::ResolveImage(store, ref);
        if (!image.ok()) return std::nullopt;
        return image->manifest.digest;
      },
      build::NamedContextIndexes(named));
  if (keys.ok()) input.cache_keys = *std::move(keys);
  input.use_cache = !parsed.Has("no-cache");
  input.resolve_image = [&store](const oci::ImageRef& ref) -> absl::StatusOr<worker::BuiltImage> {
    absl::StatusOr<oci::LocalImage> image = oci::ResolveImage(store, ref);
    if (!image.ok()) return image.status();
    return ToBuilt(*image);
  };
  return worker::RunLocalBuild(**executor, input, ProgressEvents(sink, NewBuildId()));
}

// The parts of the contexts that the needed stages read.
struct ContextsRead {
  fs::ContextIndex own;
  std::vector<build::NamedContext> named;  // by name; an unused local one is empty
  uint64_t files = 0;                      // regular files in all of them
};

ContextsRead ReadByNeededStages(const LoadedPlan& plan, const fs::ContextIndex& index,
                                const std::vector<build::NamedContext>& named) {
  const graph::NeededContextPaths paths = graph::ContextPathsOfNeededStages(plan.graph);
  ContextsRead read;
  auto count_files = [&read](const fs::ContextIndex& part) {
    for (const fs::ContextEntry& entry : part.entries()) {
      if (entry.type == fs::EntryType::kFile) ++read.files;
    }
  };
  read.own = index.Restrict(paths.own);
  count_files(read.own);
  for (const build::NamedContext& context : named) {
    build::NamedContext out{context.name, context.image, {}, context.dir};
    if (!context.image) {
      auto read_there = paths.named.find(context.name);
      out.context = context.context.Restrict(
          read_there == paths.named.end() ? std::vector<std::string>() : read_there->second);
      count_files(out.context);
    }
    read.named.push_back(std::move(out));
  }
  std::sort(
      read.named.begin(), read.named.end(),
      [](const build::NamedContext& a, const build::NamedContext& b) { return a.name < b.name; });
  return read;
}

// On a cluster: the one at --coordinator, or an embedded one started here.
absl::StatusOr<worker::BuiltImage> BuildOnCluster(
    const ParsedArgs& parsed, const std::string& file, const std::string& context,
    const LoadedPlan& plan, const fs::ContextIndex& index,
    const std::vector<build::NamedContext>& named, std::optional<int64_t> epoch,
    std::map<std::string, std::string> secrets, int workers, int slots, const stdfs::path& data_dir,
    cas::BlobStore& store, const EventSink& sink, ClientRecord& client_record) {
  build::BuildDefinition definition;
  absl::StatusOr<std::string> dockerfile = ReadInput(file);
  if (!dockerfile.ok()) return dockerfile.status();
  definition.dockerfile = *std::move(dockerfile);
  definition.dockerfile_name = file;
  definition.build_args = ResolveBuildArgs(parsed.All("build-arg"));
  definition.target = parsed.Get("target");
  // Every node plans for the same platform: the one asked for, else this
  // client's.
  definition.platform =
      parsed.Has("platform") ? parsed.Get("platform") : plan.graph.target_platform.String();
  definition.source_date_epoch = epoch;
  definition.no_cache = parsed.Has("no-cache");
  definition.secrets = std::move(secrets);
  // Only what the needed stages read goes to the cluster: a build that
  // copies one directory of a monorepo sends that directory.
  ContextsRead read = ReadByNeededStages(plan, index, named);
  client_record.context_files = read.files;
  definition.context = std::move(read.own);
  definition.named_contexts = std::move(read.named);
  absl::StatusOr<std::vector<build::NamedImage>> images = PlanImages(store, plan.graph, file);
  if (!images.ok()) return images.status();
  definition.images = *std::move(images);

  std::unique_ptr<EmbeddedCluster> embedded;
  std::string endpoint = parsed.Get("coordinator");
  ClientKeys keys;
  if (endpoint.empty()) {
    absl::StatusOr<std::unique_ptr<EmbeddedCluster>> started =
        EmbeddedCluster::Start({.home = data_dir, .workers = workers, .slots = slots});
    if (!started.ok()) return started.status();
    embedded = *std::move(started);
    endpoint = embedded->control_endpoint();
    keys.insecure = true;
  } else {
    absl::StatusOr<ClientKeys> flags = ClientKeysFromFlags(parsed);
    if (!flags.ok()) return flags.status();
    keys = *std::move(flags);
  }
  absl::StatusOr<std::unique_ptr<CoordinatorClient>> client =
      CoordinatorClient::Connect(endpoint, keys);
  if (!client.ok()) return client.status();
  // Ctrl-C cancels the build on the cluster (a second one ends the client).
  // Not restarted: the client's poll returns, and it sends the cancel.
  CancelOnInterrupt interrupt(/*restart_calls=*/false);
  absl::StatusOr<CoordinatorClient::BuildResult> result =
      (*client)->RunBuild(definition, context, store, sink, interrupt.flag());
  if (!result.ok()) return result.status();
  client_record.bytes_uploaded = result->bytes_uploaded;
  return result->image;
}

}  // namespace

int Build(const std::vector<std::string>& args) {
  ParsedArgs parsed;
  std::vector<FlagSpec> specs = ConnectionFlags();
  if (auto stop = ParseCommand(
          args, "stagefarm build [flags] CONTEXT",
          specs = Concat(
              std::move(specs),
              {{"file", "f", true, false, "Dockerfile (default: CONTEXT/Dockerfile)"},
               {"tag", "t", true, true, "name the image in the local store (NAME[:TAG])"},
               {"target", "", true, false, "stage to build (default: the last one)"},
               {"build-arg", "", true, true, "set a build-time variable (K=V)"},
               BuildContextFlagSpec(),
               {"platform", "", true, false, "target platform (default: this machine's)"},
               {"output", "o", true, true,
                "type=oci,dest=PATH (a tar; a directory when PATH ends in /), "
                "type=docker,dest=PATH, type=local,dest=DIR (the root filesystem) or "
                "type=registry[,name=NAME] (a push); all but local take "
                "[,compression=gzip|zstd|uncompressed][,compression-level=N]"},
               {"push", "", false, false,
                "push every -t name to its registry (--output type=registry)"},
               InsecureRegistryFlag(),
               {"progress", "", true, false, "auto, plain, tty or json (one object a line)"},
               {"iidfile", "", true, false, "write the image ID (its config digest) to a file"},
               {"metadata-file", "", true, false,
                "write the image's digests and each stage's worker and timings as JSON to a file"},
               {"trace", "", true, false,
                "write the build's timeline (Chrome trace-event JSON, for Perfetto) to a file"},
               {"no-cache", "", false, false, "do not use the build cache"},
               {"secret", "", true, true,
                "a secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VARIABLE"},
               {"workers", "", true, false,
                "workers of the embedded local cluster when no --coordinator is given (default 2; "
                "0 runs the stages in this process)"},
               {"slots", "", true, false, "stages each embedded worker runs at once (default 1)"},
               DataDirFlag()}),
          "CONTEXT", parsed)) {
    return *stop;
  }
  const std::string context = parsed.positional[0];
  const std::string file = parsed.Get("file", absl::StrCat(context, "/Dockerfile"));
  absl::StatusOr<ProgressMode> progress = ParseProgressMode(parsed.Get("progress", "auto"), stderr);
  if (!progress.ok()) return Fail(progress.status().message(), kExitUsage);
  int workers = 2;
  int slots = 1;
  if (!absl::SimpleAtoi(parsed.Get("workers", "2"), &workers) || workers < 0 || workers > 64) {
    return Fail(absl::StrCat("--workers must be 0 to 64, not \"", parsed.Get("workers"), "\""),
                kExitUsage);
  }
  if (!absl::SimpleAtoi(parsed.Get("slots", "1"), &slots) || slots < 1 || slots > 64) {
    return Fail(absl::StrCat("--slots must be 1 to 64, not \"", parsed.Get("slots"), "\""),
                kExitUsage);
  }
  if (parsed.Has("coordinator") && (parsed.Has("workers") || parsed.Has("slots"))) {
    return Fail("--workers and --slots are for the embedded cluster; not with --coordinator",
                kExitUsage);
  }
  std::vector<OutputSpec> outputs;
  for (const std::string& value : parsed.All("output")) {
    absl::StatusOr<OutputSpec> spec = ParseOutput(value);
    if (!spec.ok()) return Fail(spec.status().message(), kExitUsage);
    outputs.push_back(*std::move(spec));
  }
  // With outputs, the image's layers are compressed once, as they ask (gzip
  // unless one says otherwise), and the tags name that same image.
  absl::StatusOr<oci::CompressOptions> compress = CompressionOf(outputs);
  if (!compress.ok()) return Fail(compress.status().message(), kExitUsage);
  if (parsed.Has("push")) {
    OutputSpec push;
    push.type = "registry";
    outputs.push_back(std::move(push));
  }
  std::vector<oci::ImageRef> tags;
  for (const std::string& value : parsed.All("tag")) {
    absl::StatusOr<oci::ImageRef> ref = oci::ParseImageRef(value);
    if (!ref.ok()) {
      return Fail(absl::StrCat("-t ", value, ": ", ref.status().message()), kExitUsage);
    }
    if (ref->tag.empty()) return Fail(absl::StrCat("-t ", value, ": a tag is needed"), kExitUsage);
    tags.push_back(*std::move(ref));
  }
  const std::vector<std::string> build_args = ResolveBuildArgs(parsed.All("build-arg"));
  absl::StatusOr<std::optional<int64_t>> epoch = SourceDateEpoch(build_args);
  if (!epoch.ok()) return Fail(epoch.status().message(), kExitUsage);

  absl::StatusOr<std::map<std::string, std::string>> secrets = ReadSecrets(parsed.All("secret"));
  if (!secrets.ok()) return Fail(secrets.status().message(), kExitUsage);
  absl::StatusOr<std::vector<BuildContextFlag>> context_flags =
      ParseBuildContexts(parsed.All("build-context"));
  if (!context_flags.ok()) return Fail(context_flags.status().message(), kExitUsage);

  absl::StatusOr<stdfs::path> data_dir = LocalDataDir(parsed);
  if (!data_dir.ok()) return Fail(data_dir.status().message(), kExitUsage);
  absl::StatusOr<std::unique_ptr<cas::BlobStore>> store = cas::BlobStore::Open(*data_dir / "cas");
  if (!store.ok()) return Fail(store.status().message());

  graph::PlanOptions options;
  options.build_args = build_args;
  options.target = parsed.Get("target");
  options.platform = parsed.Get("platform");
  std::vector<build::NamedContext> named = NamedContextsOf(*context_flags);
  options.named_contexts = build::NamedContextSources(named);
  const registry::RegistryOptions registry_options = RegistryOptionsFromFlags(parsed);
  options.image_config = [&store, &registry_options](
                             const oci::ImageRef& ref,
                             const oci::Platform& platform) -> std::optional<graph::ImageConfig> {
    // An image not in the local store is pulled here, before anything reads it.
    absl::StatusOr<oci::LocalImage> image =
        ResolveOrPull(**store, ref, platform, registry_options, stderr);
    if (!image.ok()) {
      Fail(image.status().message());
      return std::nullopt;
    }
    return graph::ImageConfig{image->config.config.env, image->config.config.on_build};
  };
  absl::StatusOr<LoadedPlan> plan = LoadPlan(file, std::move(options));
  if (!plan.ok()) return Fail(plan.status().message());
  BuildRecord record;
  ClientRecord client_record;
  const absl::Time read_start = absl::Now();
  absl::StatusOr<fs::ContextIndex> index =
      ScanContext(*data_dir, context, file, &client_record.context_files_hashed);
  if (!index.ok()) return Fail(index.status().message());
  // Each named local context is indexed as the main one is, with its own
  // hash cache and only its own .dockerignore (BuildKit's namedcontext reads
  // that one file at the context's root). `named` is in the flags' order.
  for (size_t i = 0; i < named.size(); ++i) {
    if (named[i].image) continue;
    absl::StatusOr<fs::ContextIndex> named_index =
        ScanContext(*data_dir, named[i].dir, "", &client_record.context_files_hashed);
    if (!named_index.ok()) {
      return Fail(absl::StrCat("--build-context ", (*context_flags)[i].value, ": ",
                               named_index.status().message()));
    }
    named[i].context = *std::move(named_index);
  }
  client_record.context_scan_seconds = absl::ToDoubleSeconds(absl::Now() - read_start);
  record.AddClientSpan({"read context", read_start, absl::Now()});

  bool exports_image = false;  // an image archive or layout, whose layers are compressed
  for (const OutputSpec& output : outputs) {
    exports_image = exports_image || output.type != "local";
  }
  ProgressPrinter printer(*progress, stderr);
  const bool recording = parsed.Has("metadata-file") || parsed.Has("trace");
  const EventSink sink = [&printer, &record, recording](const ProgressEvent& event) {
    printer.Handle(event);
    if (recording) record.Add(event);
  };
  const bool on_cluster = parsed.Has("coordinator") || workers > 0;
  // In process nothing is sent; the record still counts what the build reads.
  if (!on_cluster && recording) {
    client_record.context_files = ReadByNeededStages(*plan, *index, named).files;
  }
  const absl::Time build_start = absl::Now();
  absl::StatusOr<worker::BuiltImage> built =
      on_cluster ? BuildOnCluster(parsed, file, context, *plan, *index, named, *epoch, *secrets,
                                  workers, slots, *data_dir, **store, sink, client_record)
                 : BuildInProcess(parsed, file, context, *plan, *index, named, *epoch, *secrets,
                                  !exports_image ? std::nullopt : std::optional(*compress),
                                  *data_dir, **store, sink);
  printer.Finish();
  record.AddClientSpan({"build", build_start, absl::Now()});
  // The timeline is written whether or not the build succeeded: a failed
  // build's is the one a user wants to look at.
  if (parsed.Has("trace")) {
    absl::Status written = WriteTextFile("trace", parsed.Get("trace"), record.TraceJson());
    if (!written.ok()) return Fail(written.message());
  }
  if (!built.ok()) return Fail(built.status().message());

  uint64_t last_shown = 0;
  compress->on_progress = [&last_shown](uint64_t done, uint64_t total) {
    if (done != total && done - last_shown < (uint64_t{64} << 20)) return;
    last_shown = done;
    std::fprintf(stderr, "compressing layers: %.1f / %.1f MB\n", done / 1e6, total / 1e6);
  };
  // The image is stored as built, its layers uncompressed, and the tags name
  // it; exports compress its layers on the way out (WriteExport), pushes in
  // the store (PrepareExport). Both give the same manifest.
  std::vector<std::string> repo_tags;
  for (const oci::ImageRef& tag : tags) repo_tags.push_back(FamiliarName(tag));
  absl::StatusOr<oci::LayoutImage> image = oci::StoreImage(
      **store, built->config, built->layers, tags.empty() ? "" : tags[0].tag, repo_tags);
  if (!image.ok()) return Fail(image.status().message());
  for (const oci::ImageRef& tag : tags) {
    absl::Status tagged = oci::TagImage(**store, tag, image->manifest.digest);
    if (!tagged.ok()) return Fail(tagged.message());
    std::fprintf(stderr, "naming to %s\n", tag.String().c_str());
  }
  std::vector<oci::ExportDestination> destinations;
  for (const OutputSpec& output : outputs) {
    if (output.type == "registry") continue;
    std::error_code error;
    if (output.dest.has_parent_path()) stdfs::create_directories(output.dest.parent_path(), error);
    if (error) {
      return Fail(absl::StrCat("--output ", output.dest.native(), ": ", error.message()));
    }
    if (output.type != "local") {
      destinations.push_back({output.dest, output.directory, output.type == "docker"});
      continue;
    }
    absl::Status written = WriteRootfs(**store, built->layers, output.dest);
    if (!written.ok()) return Fail(written.message());
    std::fprintf(stderr, "exported the root filesystem to %s\n", output.dest.c_str());
  }
  // What the build made, as it leaves: the exported image, else the pushed
  // one (the same manifest: the same layers compressed the same way).
  oci::LayoutImage result = *image;
  if (!destinations.empty()) {
    absl::StatusOr<oci::LayoutImage> exported =
        oci::WriteExport(**store, *image, *compress, destinations);
    if (!exported.ok()) return Fail(exported.status().message());
    result = *std::move(exported);
    for (const OutputSpec& output : outputs) {
      if (output.type == "registry" || output.type == "local") continue;
      std::fprintf(stderr, "exported %s image to %s\n", output.type.c_str(), output.dest.c_str());
    }
  }
  oci::Descriptor pushed = result.manifest;
  for (const OutputSpec& output : outputs) {
    if (output.type != "registry") continue;
    if (int failed = PushBuilt(**store, image->manifest.digest, output, tags, *compress,
                               registry_options, &pushed)) {
      return failed;
    }
  }
  if (destinations.empty()) result.manifest = pushed;
  if (parsed.Has("iidfile")) {
    absl::Status written =
        WriteTextFile("iidfile", parsed.Get("iidfile"), result.config.digest.ToString());
    if (!written.ok()) return Fail(written.message());
  }
  if (parsed.Has("metadata-file")) {
    BuiltImageRecord image_record;
    image_record.manifest_digest = result.manifest.digest.ToString();
    image_record.media_type = result.manifest.media_type;
    image_record.manifest_size = result.manifest.size;
    image_record.config_digest = result.config.digest.ToString();
    for (const oci::ImageRef& tag : tags) image_record.names.push_back(tag.String());
    absl::Status written = WriteTextFile("metadata-file", parsed.Get("metadata-file"),
                                         record.MetadataJson(image_record, client_record));
    if (!written.ok()) return Fail(written.message());
  }
  std::printf("%s\n", result.manifest.digest.ToString().c_str());
  return 0;
}

}  // namespace stagefarm::cli
