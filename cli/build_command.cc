#include "cli/build_command.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
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
#include "cli/plan_input.h"
#include "nlohmann/json.hpp"
#include "cli/subcommand.h"
#include "common/cas/blob_store.h"
#include "common/fs/context_index.h"
#include "common/graph/plan_cache_keys.h"
#include "common/oci/image_layout.h"
#include "common/oci/layer_compress.h"
#include "common/oci/image_ref.h"
#include "common/oci/local_images.h"
#include "worker/build/local_build.h"
#include "worker/build/stage_executor.h"

namespace stagefarm::cli {
namespace {

namespace stdfs = std::filesystem;

// One --output value, as buildx reads it: "type=oci,dest=out.tar".
struct OutputSpec {
  std::string type;  // "oci" or "docker"
  stdfs::path dest;
  bool directory = false;  // dest ended in "/": an OCI layout directory
  std::optional<oci::LayerCompression> compression;
};

absl::StatusOr<OutputSpec> ParseOutput(absl::string_view value) {
  OutputSpec spec;
  std::string dest;
  for (absl::string_view field : absl::StrSplit(value, ',')) {
    const size_t eq = field.find('=');
    if (eq == absl::string_view::npos) {
      // buildx: `-o DIR` alone means type=local,dest=DIR.
      return absl::InvalidArgumentError(absl::StrCat(
          "--output \"", value, "\": expected KEY=VALUE fields such as type=oci,dest=PATH"));
    }
    const std::string key = absl::AsciiStrToLower(field.substr(0, eq));
    const std::string val(field.substr(eq + 1));
    if (key == "type") {
      spec.type = val;
    } else if (key == "dest") {
      dest = val;
    } else if (key == "compression") {
      if (val == "gzip") {
        spec.compression = oci::LayerCompression::kGzip;
      } else if (val == "zstd") {
        spec.compression = oci::LayerCompression::kZstd;
      } else if (val == "uncompressed") {
        spec.compression = oci::LayerCompression::kNone;
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "--output: compression must be gzip, zstd or uncompressed, not \"", val, "\""));
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--output: unknown field \"", key, "\" (known: type, dest, compression)"));
    }
  }
  if (spec.type != "oci" && spec.type != "docker") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--output: type must be oci or docker, not \"", spec.type, "\""));
  }
  if (dest.empty()) return absl::InvalidArgumentError("--output: dest=PATH is required");
  spec.directory = absl::EndsWith(dest, "/");
  if (spec.directory && spec.type == "docker") {
    return absl::InvalidArgumentError("--output type=docker writes a tar: dest must be a file");
  }
  spec.dest = dest;
  return spec;
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

// Plain progress: one line per stage event, RUN output prefixed by the stage.
worker::BuildEvents PlainProgress() {
  auto label = [](const graph::PlannedStage& stage) {
    return stage.name.empty() ? absl::StrCat("stage-", stage.index) : stage.name;
  };
  worker::BuildEvents events;
  events.on_stage_start = [label](const graph::PlannedStage& stage) {
    std::fprintf(stderr, "[%s] FROM %s\n", label(stage).c_str(),
                 stage.base_name.empty() ? "scratch" : stage.base_name.c_str());
  };
  events.on_step = [label](const graph::PlannedStage& stage, size_t step, size_t steps,
                           absl::string_view text) {
    const std::string first_line(text.substr(0, text.find('\n')));
    std::fprintf(stderr, "[%s %zu/%zu] %s\n", label(stage).c_str(), step, steps,
                 first_line.c_str());
  };
  events.on_output = [label](const graph::PlannedStage& stage, absl::string_view output) {
    for (absl::string_view line : absl::StrSplit(output, '\n', absl::SkipEmpty())) {
      std::fprintf(stderr, "[%s] | %.*s\n", label(stage).c_str(), static_cast<int>(line.size()),
                   line.data());
    }
  };
  events.on_note = [label](const graph::PlannedStage& stage, absl::string_view line) {
    std::fprintf(stderr, "[%s] %.*s\n", label(stage).c_str(), static_cast<int>(line.size()),
                 line.data());
  };
  events.on_stage_done = [label](const graph::PlannedStage& stage, double seconds) {
    std::fprintf(stderr, "[%s] done in %.2fs\n", label(stage).c_str(), seconds);
  };
  return events;
}

// JSON progress: one object a line on stderr, for scripts and CI logs:
// {"time", "build", "stage" (index), "stage_name", "worker", "event", ...}
// with event "start", "step" (step, steps, text), "log" (text), "note"
// (text), "cached", and "done" (seconds, bytes_fetched).
worker::BuildEvents JsonProgress(const std::string& build_id) {
  auto emit = [build_id](const graph::PlannedStage& stage, const char* event,
                         nlohmann::ordered_json extra) {
    nlohmann::ordered_json line = {{"time", absl::FormatTime("%Y-%m-%d%ET%H:%M:%E6SZ", absl::Now(),
                                                             absl::UTCTimeZone())},
                                   {"build", build_id},
                                   {"stage", stage.index},
                                   {"stage_name", stage.name},
                                   {"worker", "local"},
                                   {"event", event}};
    for (auto& [key, value] : extra.items()) line[key] = value;
    std::fprintf(stderr, "%s\n", line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  };
  worker::BuildEvents events;
  events.on_stage_start = [emit](const graph::PlannedStage& stage) {
    emit(stage, "start", {{"base", stage.base_name.empty() ? "scratch" : stage.base_name}});
  };
  events.on_step = [emit](const graph::PlannedStage& stage, size_t step, size_t steps,
                          absl::string_view text) {
    emit(stage, "step", {{"step", step}, {"steps", steps}, {"text", std::string(text)}});
  };
  events.on_output = [emit](const graph::PlannedStage& stage, absl::string_view output) {
    emit(stage, "log", {{"text", std::string(output)}});
  };
  events.on_note = [emit](const graph::PlannedStage& stage, absl::string_view line) {
    if (line == "CACHED") {
      emit(stage, "cached", nlohmann::ordered_json::object());
    } else {
      emit(stage, "note", {{"text", std::string(line)}});
    }
  };
  events.on_stage_done = [emit](const graph::PlannedStage& stage, double seconds) {
    emit(stage, "done", {{"seconds", seconds}, {"bytes_fetched", 0}});
  };
  return events;
}

}  // namespace

int Build(const std::vector<std::string>& args) {
  ParsedArgs parsed;
  if (auto stop = ParseCommand(
          args, "stagefarm build [flags] CONTEXT",
          {{"file", "f", true, false, "Dockerfile (default: CONTEXT/Dockerfile)"},
           {"tag", "t", true, true, "name the image in the local store (NAME[:TAG])"},
           {"target", "", true, false, "stage to build (default: the last one)"},
           {"build-arg", "", true, true, "set a build-time variable (K=V)"},
           {"platform", "", true, false, "target platform (default: this machine's)"},
           {"output", "o", true, true,
            "type=oci,dest=PATH (a tar; a directory when PATH ends in /) or type=docker,dest=PATH"},
           {"progress", "", true, false, "auto, plain or json (one object a line)"},
           {"no-cache", "", false, false, "do not use the build cache"},
           DataDirFlag()},
          "CONTEXT", parsed)) {
    return *stop;
  }
  const std::string context = parsed.positional[0];
  const std::string file = parsed.Get("file", absl::StrCat(context, "/Dockerfile"));
  const std::string progress = parsed.Get("progress", "auto");
  if (progress != "auto" && progress != "plain" && progress != "json") {
    return Fail(absl::StrCat("--progress must be auto, plain or json, not \"", progress, "\""),
                kExitUsage);
  }
  std::vector<OutputSpec> outputs;
  for (const std::string& value : parsed.All("output")) {
    absl::StatusOr<OutputSpec> spec = ParseOutput(value);
    if (!spec.ok()) return Fail(spec.status().message(), kExitUsage);
    outputs.push_back(*std::move(spec));
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

  absl::StatusOr<stdfs::path> data_dir = LocalDataDir(parsed);
  if (!data_dir.ok()) return Fail(data_dir.status().message(), kExitUsage);
  absl::StatusOr<std::unique_ptr<cas::BlobStore>> store = cas::BlobStore::Open(*data_dir / "cas");
  if (!store.ok()) return Fail(store.status().message());

  graph::PlanOptions options;
  options.build_args = build_args;
  options.target = parsed.Get("target");
  options.platform = parsed.Get("platform");
  options.image_config = [&store](const oci::ImageRef& ref,
                                  const oci::Platform&) -> std::optional<graph::ImageConfig> {
    absl::StatusOr<oci::LocalImage> image = oci::ResolveImage(**store, ref);
    if (!image.ok()) return std::nullopt;
    return graph::ImageConfig{image->config.config.env, image->config.config.on_build};
  };
  absl::StatusOr<LoadedPlan> plan = LoadPlan(file, std::move(options));
  if (!plan.ok()) return Fail(plan.status().message());
  absl::StatusOr<fs::ContextIndex> index = fs::ContextIndex::Build(context, file);
  if (!index.ok()) return Fail(index.status().message());

  worker::ExecutorOptions executor_options;
  executor_options.data_dir = *data_dir;
  // With outputs, the image's layers are compressed once, as they ask (gzip
  // unless one says otherwise), and the tags name that same image.
  oci::CompressOptions compress;
  compress.compression = oci::LayerCompression::kGzip;
  for (const OutputSpec& output : outputs) {
    if (output.compression) compress.compression = *output.compression;
  }
  absl::StatusOr<std::unique_ptr<worker::StageExecutor>> executor =
      worker::StageExecutor::Open(store->get(), executor_options);
  if (!executor.ok()) return Fail(executor.status().message());

  worker::LocalBuildInput input;
  input.graph = &plan->graph;
  input.context_dir = context;
  input.context = &*index;
  input.dockerfile_name = file;
  input.source_date_epoch = *epoch;
  // The local store keeps the image as built (layers uncompressed, as a
  // snapshotter keeps them): only an export compresses, and then the layers
  // of the stages the image is built FROM start compressing as each stage
  // ends.
  if (!outputs.empty()) input.precompress = compress;
  // Cache keys: images by the manifest their tag names here. A plan whose
  // keys cannot be computed (a COPY source missing) builds without the cache
  // and fails at that COPY, with its location.
  absl::StatusOr<std::vector<std::optional<graph::StageKeys>>> keys = graph::ComputePlanCacheKeys(
      plan->graph, *index, file,
      [&store](const oci::ImageRef& ref) -> std::optional<digest::Digest> {
        absl::StatusOr<oci::LocalImage> image = oci::ResolveImage(**store, ref);
        if (!image.ok()) return std::nullopt;
        return image->manifest.digest;
      });
  if (keys.ok()) input.cache_keys = *std::move(keys);
  input.use_cache = !parsed.Has("no-cache");
  input.resolve_image = [&store](const oci::ImageRef& ref) -> absl::StatusOr<worker::BuiltImage> {
    absl::StatusOr<oci::LocalImage> image = oci::ResolveImage(**store, ref);
    if (!image.ok()) return image.status();
    return ToBuilt(*image);
  };
  absl::StatusOr<worker::BuiltImage> built =
      worker::RunLocalBuild(**executor, input,
                            progress == "json"
                                ? JsonProgress(absl::StrCat(
                                      absl::Hex(absl::ToUnixNanos(absl::Now()) ^ getpid())))
                                : PlainProgress());
  if (!built.ok()) return Fail(built.status().message());

  uint64_t last_shown = 0;
  compress.on_progress = [&last_shown](uint64_t done, uint64_t total) {
    if (done != total && done - last_shown < (uint64_t{64} << 20)) return;
    last_shown = done;
    std::fprintf(stderr, "compressing layers: %.1f / %.1f MB\n", done / 1e6, total / 1e6);
  };
  if (outputs.empty()) compress.compression = oci::LayerCompression::kNone;
  absl::StatusOr<std::vector<oci::Descriptor>> layers =
      oci::CompressLayers(**store, built->layers, compress);
  if (!layers.ok()) return Fail(layers.status().message());
  std::vector<std::string> repo_tags;
  for (const oci::ImageRef& tag : tags) repo_tags.push_back(FamiliarName(tag));
  absl::StatusOr<oci::LayoutImage> image =
      oci::StoreImage(**store, built->config, *std::move(layers), tags.empty() ? "" : tags[0].tag,
                      repo_tags);
  if (!image.ok()) return Fail(image.status().message());
  for (const oci::ImageRef& tag : tags) {
    absl::Status tagged = oci::TagImage(**store, tag, image->manifest.digest);
    if (!tagged.ok()) return Fail(tagged.message());
    std::fprintf(stderr, "naming to %s\n", tag.String().c_str());
  }
  for (const OutputSpec& output : outputs) {
    std::error_code error;
    if (output.dest.has_parent_path()) stdfs::create_directories(output.dest.parent_path(), error);
    if (error) {
      return Fail(absl::StrCat("--output ", output.dest.native(), ": ", error.message()));
    }
    absl::Status written =
        output.directory
            ? oci::WriteOciLayoutDir(**store, {*image}, output.dest)
            : oci::WriteImageTar(**store, {*image}, output.dest, output.type == "docker");
    if (!written.ok()) return Fail(written.message());
    std::fprintf(stderr, "exported %s image to %s\n", output.type.c_str(),
                 output.dest.c_str());
  }
  std::printf("%s\n", image->manifest.digest.ToString().c_str());
  return 0;
}

}  // namespace stagefarm::cli
