#include "worker/build/stage_executor.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <system_error>
#include <utility>
#include <variant>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/cas/read_ahead.h"
#include "common/dockerfile/dockerignore.h"
#include "common/fs/root.h"
#include "common/oci/stage_image.h"
#include "worker/copy/add_url.h"
#include "worker/copy/copy.h"
#include "worker/step/run_step.h"

namespace stagefarm::worker {
namespace {

namespace stdfs = std::filesystem;

using graph::PlannedInstruction;
using graph::SourceRoot;

// "FILE:LINE" (FILE:START-END for an instruction on several lines).
std::string Location(absl::string_view file, const dockerfile::SourceRange& range) {
  if (range.end_line > range.start_line) {
    return absl::StrCat(file, ":", range.start_line, "-", range.end_line);
  }
  return absl::StrCat(file, ":", range.start_line);
}

absl::Status AtInstruction(absl::string_view file, const PlannedInstruction& planned,
                           const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(Location(file, planned.location), ": ",
                                                  planned.text, ": ", status.message()));
}

// COPY and ADD destinations as BuildKit's pathRelativeToWorkingDir makes them:
// joined to WORKDIR when relative, cleaned, and ending in "/" when the
// destination was written as a directory ("dir/", ".", "dir/.").
std::string DestinationPath(absl::string_view dest, absl::string_view workdir) {
  const bool as_directory =
      dest.empty() || absl::EndsWith(dest, "/") || dest == "." || absl::EndsWith(dest, "/.");
  std::string joined = absl::StartsWith(dest, "/")
                           ? dockerfile::CleanPath(dest)
                           : dockerfile::CleanPath(absl::StrCat("/", workdir, "/", dest));
  if (as_directory && joined != "/") joined += "/";
  return joined;
}

// --chmod: octal permission bits, as BuildKit reads them.
absl::StatusOr<std::optional<mode_t>> ParseChmod(absl::string_view chmod) {
  if (chmod.empty()) return std::optional<mode_t>();
  uint32_t mode = 0;
  if (!absl::numbers_internal::safe_strtou32_base(chmod, &mode, 8) || mode > 07777) {
    return absl::InvalidArgumentError(absl::StrCat("invalid chmod parameter: ", chmod));
  }
  return std::optional<mode_t>(static_cast<mode_t>(mode));
}

bool IsUrl(absl::string_view source) {
  return absl::StartsWith(source, "http://") || absl::StartsWith(source, "https://");
}

bool IsGitSource(absl::string_view source) {
  return absl::StartsWith(source, "git@") || absl::StartsWith(source, "git://") ||
         absl::EndsWith(source, ".git") || absl::StrContains(source, ".git#");
}

// Layers from this size on are read ahead while they are unpacked (the
// unpack's decompressing thread only decompresses); a smaller one is not
// worth a thread.
constexpr uint64_t kReadAheadFrom = uint64_t{8} << 20;

// The snapshot sources of `image`'s layers, each opened from the store.
std::vector<snapshots::LayerSource> LayerSources(cas::BlobStore& store, const BuiltImage& image) {
  std::vector<snapshots::LayerSource> sources;
  for (size_t i = 0; i < image.layers.size(); ++i) {
    const digest::Digest blob = image.layers[i].digest;
    sources.push_back(
        {image.config.diff_ids[i], [&store, blob]() -> absl::StatusOr<oci::LayerReader> {
           absl::StatusOr<std::unique_ptr<cas::BlobReader>> reader = store.Get(blob);
           if (!reader.ok()) return reader.status();
           if ((*reader)->length() >= kReadAheadFrom) {
             auto ahead = std::make_shared<cas::ReadAhead>(*std::move(reader));
             return oci::LayerReader([ahead] { return ahead->Next(); });
           }
           std::shared_ptr<cas::BlobReader> shared = *std::move(reader);
           return oci::LayerReader([shared] { return shared->Next(); });
         }});
  }
  return sources;
}

// The work of one stage: the image so far and the sources it has mounted.
class StageRun {
 public:
  StageRun(const StageExecutor& executor, const graph::PlannedStage& stage,
           const StageInputs& inputs, const StageEvents& events, ScratchDir scratch)
      : executor_(executor),
        stage_(stage),
        inputs_(inputs),
        events_(events),
        scratch_dir_(std::move(scratch)),
        scratch_(scratch_dir_.path()),
        created_(inputs.source_date_epoch
                     ? std::optional<absl::Time>(absl::FromUnixSeconds(*inputs.source_date_epoch))
                     : std::nullopt),
        image_(StartConfig(inputs.base.config), created_),
        layers_(inputs.base.layers) {}

  ~StageRun() {
    sources_.clear();  // unmounted before scratch_dir_ removes their mount points
  }

  absl::StatusOr<BuiltImage> Run() {
    const size_t steps = stage_.instructions.size();
    for (size_t i = 0; i < steps; ++i) {
      const PlannedInstruction& planned = stage_.instructions[i];
      if (inputs_.cancelled != nullptr && inputs_.cancelled->load()) {
        return absl::CancelledError("cancelled");
      }
      if (events_.on_step) events_.on_step(i + 1, steps, planned.text);
      absl::Status status = Dispatch(planned, i);
      if (!status.ok()) return AtInstruction(inputs_.dockerfile_name, planned, status);
    }
    BuiltImage result;
    result.config = Config();
    // SOURCE_DATE_EPOCH, else the last dated history entry (BuildKit's
    // exporter): a cached rebuild gives the first build's image.
    result.config.created = created_ ? created_ : image_.LastHistoryTime();
    result.layers = layers_;
    return result;
  }

 private:
  // The base's config as a stage starts from it (dockerfile2llb): its ONBUILD
  // triggers are run by this stage (the planner put them first) and not
  // inherited, and PATH is always set.
  static oci::ImageConfig StartConfig(oci::ImageConfig base) {
    base.config.on_build.clear();
    bool has_path = false;
    for (const std::string& entry : base.config.env) {
      if (absl::StartsWith(entry, "PATH=")) has_path = true;
    }
    if (!has_path) base.config.env.push_back(absl::StrCat("PATH=", oci::kDefaultPathEnv));
    return base;
  }

  absl::Status Dispatch(const PlannedInstruction& planned, size_t index) {
    const dockerfile::Instruction& instruction = planned.instruction;
    if (const auto* run = std::get_if<dockerfile::Run>(&instruction)) {
      absl::Status applied = image_.Apply(instruction, RunBuildArgs(planned));
      if (!applied.ok()) return applied;
      return Step(index, [&](const stdfs::path& root, const stdfs::path& scratch) {
        return RunCommand(*run, planned, root, scratch);
      });
    }
    if (const auto* copy = std::get_if<dockerfile::Copy>(&instruction)) {
      absl::Status applied = image_.Apply(instruction);
      if (!applied.ok()) return applied;
      return Step(index, [&](const stdfs::path& root, const stdfs::path& scratch) {
        return CopyFiles(*copy, planned, root, scratch);
      });
    }
    if (const auto* add = std::get_if<dockerfile::Add>(&instruction)) {
      absl::Status applied = image_.Apply(instruction);
      if (!applied.ok()) return applied;
      return Step(index, [&](const stdfs::path& root, const stdfs::path& scratch) {
        return AddFiles(*add, root, scratch);
      });
    }
    absl::Status applied = image_.Apply(instruction);
    if (!applied.ok()) return applied;
    if (std::holds_alternative<dockerfile::Workdir>(instruction)) {
      const std::string workdir = image_.config().config.working_dir;
      if (workdir.empty() || workdir == "/") return absl::OkStatus();
      // dispatchWorkdir: mkdir -p with mode 0755, the new directories owned by
      // USER; an existing directory is left as it is (no change, no layer).
      return Step(index, [&](const stdfs::path& root, const stdfs::path&) {
        return MakeWorkdir(root, workdir);
      });
    }
    return absl::OkStatus();
  }

  // The cache index entry of step `index`: its key, qualified by what the
  // key does not cover but the layer's bytes depend on (SOURCE_DATE_EPOCH
  // clamps mtimes; the layer format).
  std::optional<std::string> CacheEntryName(size_t index) const {
    if (index >= inputs_.cache_keys.size()) return std::nullopt;
    const std::optional<int64_t>& epoch = inputs_.source_date_epoch;
    return absl::StrCat("build/v1/", inputs_.cache_keys[index].ToString(),
                        "/epoch=", epoch ? absl::StrCat(*epoch) : "none", "/",
                        oci::LayerMediaType(executor_.options().compression));
  }

  // Takes step `index` from the cache when it knows it and its layer is
  // still stored: true when it did.
  absl::StatusOr<bool> FromCache(size_t index) {
    const std::optional<std::string> name = CacheEntryName(index);
    if (!name || !inputs_.use_cache) return false;
    absl::StatusOr<std::string> entry = executor_.store().GetCacheEntry(*name);
    if (absl::IsNotFound(entry.status())) return false;
    if (!entry.ok()) return entry.status();
    if (*entry == "empty") {
      image_.MarkLastLayerEmpty();
    } else {
      // "layer <media type> <blob digest> <size> <diff id> <made, Unix ns>"
      const std::vector<std::string> fields = absl::StrSplit(*entry, ' ');
      uint64_t size = 0;
      int64_t made = 0;
      if (fields.size() != 6 || fields[0] != "layer" || !absl::SimpleAtoi(fields[3], &size) ||
          !absl::SimpleAtoi(fields[5], &made)) {
        return false;  // an entry of another format: run the step
      }
      absl::StatusOr<digest::Digest> blob = digest::Digest::Parse(fields[2]);
      absl::StatusOr<digest::Digest> diff_id = digest::Digest::Parse(fields[4]);
      if (!blob.ok() || !diff_id.ok()) return false;
      absl::StatusOr<bool> stored = executor_.store().Has(*blob);
      if (!stored.ok()) return stored.status();
      if (!*stored) return false;  // collected since: run the step again
      layers_.push_back({fields[1], *blob, size, {}});
      diff_ids_.push_back(*diff_id);
      image_.DateLastLayer(absl::FromUnixNanos(made));
    }
    if (events_.on_note) events_.on_note("CACHED");
    return true;
  }

  absl::Status RecordInCache(size_t index, const std::optional<oci::Descriptor>& layer,
                             absl::Time made) {
    const std::optional<std::string> name = CacheEntryName(index);
    if (!name) return absl::OkStatus();
    return executor_.store().PutCacheEntry(
        *name, layer ? absl::StrCat("layer ", layer->media_type, " ", layer->digest.ToString(), " ",
                                    layer->size, " ", diff_ids_.back().ToString(), " ",
                                    absl::ToUnixNanos(made))
                     : "empty");
  }

  // Runs `change` in a fresh root filesystem over the layers so far and keeps
  // its difference as a layer; no difference, no layer. A step the cache
  // knows is not run.
  template <typename Change>
  absl::Status Step(size_t index, Change change) {
    absl::StatusOr<bool> cached = FromCache(index);
    if (!cached.ok()) return cached.status();
    if (*cached) return absl::OkStatus();
    absl::Status ran = RunStepForLayer(index, change);
    if (!ran.ok()) return ran;
    const absl::Time made = absl::Now();
    if (last_step_layer_) image_.DateLastLayer(made);
    return RecordInCache(index, last_step_layer_, made);
  }

  // Notes each layer unpacked, as BuildKit's "extracting sha256:..." lines
  // do: one as it starts (a large layer takes seconds), one with what was
  // written and how long it took.
  snapshots::UnpackListener NoteUnpacks() const {
    if (!events_.on_note) return nullptr;
    return [this](const snapshots::UnpackProgress& progress) {
      if (!progress.done) {
        events_.on_note(absl::StrCat("unpacking layer ", progress.diff_id.ToString()));
        return;
      }
      events_.on_note(absl::StrFormat("unpacked layer %s (%d entries, %d bytes) in %.2fs",
                                      progress.diff_id.ToString(), progress.stats.entries,
                                      progress.stats.bytes, absl::ToDoubleSeconds(progress.took)));
    };
  }

  template <typename Change>
  absl::Status RunStepForLayer(size_t index, Change change) {
    last_step_layer_.reset();
    const stdfs::path scratch = scratch_ / absl::StrCat("step-", index);
    absl::StatusOr<std::vector<snapshots::Snapshot>> chain =
        executor_.EnsureSnapshots(BuiltImage{Config(), layers_}, NoteUnpacks());
    if (!chain.ok()) return chain.status();
    snapshots::RootfsOptions rootfs_options;
    rootfs_options.force_copy = executor_.options().force_copy_rootfs;
    absl::StatusOr<std::unique_ptr<snapshots::Rootfs>> rootfs =
        executor_.snapshots().PrepareRootfs(*chain, scratch, rootfs_options);
    if (!rootfs.ok()) return rootfs.status();
    if (!rootfs_mode_noted_ && events_.on_note) {
      events_.on_note((*rootfs)->mode_reason());
      rootfs_mode_noted_ = true;
    }
    absl::Status changed = change((*rootfs)->root(), scratch);
    if (!changed.ok()) return changed;
    absl::Status finished = (*rootfs)->Finish();
    if (!finished.ok()) return finished;
    absl::StatusOr<bool> unchanged = (*rootfs)->Unchanged();
    if (!unchanged.ok()) return unchanged.status();
    if (*unchanged) {
      image_.MarkLastLayerEmpty();
      rootfs->reset();
      return RemoveTree(scratch);
    }
    std::unique_ptr<cas::BlobWriter> writer = executor_.store().NewWriter();
    oci::DiffOptions diff;
    diff.source_date_epoch = inputs_.source_date_epoch;
    diff.compression = executor_.options().compression;
    const std::string media_type = oci::LayerMediaType(diff.compression);
    // An uncompressed layer is named by the digest the store computes as it
    // takes the tar (one SHA-256 pass instead of two).
    diff.tar_digest = [&writer, &media_type] { return writer->CommitAsWritten(media_type); };
    absl::StatusOr<oci::LayerDigests> layer = (*rootfs)->WriteLayer(
        [](absl::string_view) { return absl::OkStatus(); },
        [&writer](absl::string_view bytes) { return writer->Write(bytes); }, diff);
    if (!layer.ok()) return layer.status();
    if (diff.compression != oci::LayerCompression::kNone) {
      absl::Status committed = writer->Commit(layer->blob_digest, media_type);
      if (!committed.ok()) return committed;
    }
    layers_.push_back({media_type, layer->blob_digest, layer->blob_size, {}});
    diff_ids_.push_back(layer->diff_id);
    last_step_layer_ = layers_.back();
    if (events_.on_note) {
      events_.on_note(absl::StrCat("layer ", layer->diff_id.ToString(), " (", layer->entries,
                                   " entries, ", layer->tar_size, " bytes)"));
    }
    if ((*rootfs)->mode() == snapshots::RootfsMode::kOverlay) {
      // The upper dir is this layer's snapshot: keep it rather than unpack
      // the layer again for the next step.
      std::vector<digest::Digest> ids = Config().diff_ids;
      absl::StatusOr<snapshots::Snapshot> kept =
          executor_.snapshots().CommitUpper(*std::move(rootfs), snapshots::ChainIds(ids).back());
      if (!kept.ok()) return kept.status();
    }
    return RemoveTree(scratch);
  }

  // The config with the layers so far (diff ids in step).
  oci::ImageConfig Config() const {
    oci::ImageConfig config = image_.config();
    config.diff_ids = inputs_.base.config.diff_ids;
    config.diff_ids.insert(config.diff_ids.end(), diff_ids_.begin(), diff_ids_.end());
    return config;
  }

  // "NAME=value" for each build argument with a value, in declaration order.
  static std::vector<std::string> RunBuildArgs(const PlannedInstruction& planned) {
    std::vector<std::string> out;
    if (planned.args == nullptr) return out;
    for (const graph::DeclaredArg& arg : *planned.args) {
      if (arg.value) out.push_back(absl::StrCat(arg.name, "=", *arg.value));
    }
    return out;
  }

  absl::Status RunCommand(const dockerfile::Run& run, const PlannedInstruction& planned,
                          const stdfs::path& root, const stdfs::path& scratch) {
    if (run.security != dockerfile::SecurityMode::kSandbox) {
      return absl::UnimplementedError("RUN --security=insecure is not supported");
    }
    if (!run.devices.empty()) return absl::UnimplementedError("RUN --device is not supported");
    const oci::ContainerConfig& config = image_.config().config;
    RunStepInput input;
    input.rootfs = root;
    input.command = run.command;
    input.mounts = planned.mounts;
    input.network =
        run.network == dockerfile::NetworkMode::kNone ? NetworkMode::kNone : NetworkMode::kHost;
    input.env = config.env;
    input.user = config.user;
    input.workdir = config.working_dir.empty() ? "/" : config.working_dir;
    input.shell = config.shell;
    if (planned.args != nullptr) {
      for (const graph::DeclaredArg& arg : *planned.args) {
        if (arg.value) input.build_args.emplace_back(arg.name, *arg.value);
      }
    }
    for (const auto& [name, value] : inputs_.proxy_env) input.build_args.emplace_back(name, value);
    input.secrets = inputs_.secrets;

    RunStepOptions options;
    options.mounts.cache_root = executor_.options().data_dir / "cache-mounts";
    options.mounts.scratch = scratch / "mounts";
    options.mounts.root_of = [&](absl::string_view from) -> absl::StatusOr<stdfs::path> {
      if (from.empty()) return ContextDir();
      for (size_t k = 0; k < planned.mounts.size() && k < planned.mount_from.size(); ++k) {
        if (planned.mounts[k].from == from) return SourceDir(planned.mount_from[k]);
      }
      return absl::NotFoundError(absl::StrCat("mount from=", from, " names no known source"));
    };
    options.sandbox.runc = executor_.options().runc;
    options.sandbox.bundle_dir = scratch / "bundle";
    options.sandbox.on_output = events_.on_output;
    options.sandbox.cancelled = inputs_.cancelled;
    absl::StatusOr<RunResult> result = RunStep(input, options);
    return result.status();
  }

  // The context directories, made on first need (StageInputs::prepare_contexts).
  absl::Status PrepareContexts() {
    if (contexts_prepared_ || !inputs_.prepare_contexts) return absl::OkStatus();
    absl::Status prepared = inputs_.prepare_contexts();
    contexts_prepared_ = prepared.ok();
    return prepared;
  }

  absl::StatusOr<stdfs::path> ContextDir() {
    if (absl::Status prepared = PrepareContexts(); !prepared.ok()) return prepared;
    return inputs_.context_dir;
  }

  // The directory a COPY --from or mount from= reads: a stage's or image's
  // root filesystem, mounted once per stage run; the context otherwise.
  absl::StatusOr<stdfs::path> SourceDir(const SourceRoot& source) {
    switch (source.kind) {
      case SourceRoot::Kind::kContext: {
        if (source.context.empty()) return ContextDir();
        if (absl::Status prepared = PrepareContexts(); !prepared.ok()) return prepared;
        auto it = inputs_.named_context_dirs.find(source.context);
        if (it == inputs_.named_context_dirs.end()) {
          return absl::InternalError(
              absl::StrCat("build context ", source.context, " was not materialised"));
        }
        return it->second;
      }
      case SourceRoot::Kind::kScratch: {
        const stdfs::path empty = scratch_ / "scratch-source";
        std::error_code error;
        stdfs::create_directories(empty, error);
        if (error) return absl::InternalError(absl::StrCat(empty.native(), ": ", error.message()));
        return empty;
      }
      case SourceRoot::Kind::kStage:
      case SourceRoot::Kind::kImage:
        break;
    }
    const std::string key = source.kind == SourceRoot::Kind::kStage
                                ? absl::StrCat("stage-", source.stage)
                                : absl::StrCat("image-", source.image.String());
    if (auto it = sources_.find(key); it != sources_.end()) return it->second->root();
    if (!inputs_.resolve) return absl::InternalError("no resolver for --from sources");
    absl::StatusOr<BuiltImage> image = inputs_.resolve(source);
    if (!image.ok()) return image.status();
    absl::StatusOr<std::vector<snapshots::Snapshot>> chain =
        executor_.EnsureSnapshots(*image, NoteUnpacks());
    if (!chain.ok()) return chain.status();
    snapshots::RootfsOptions options;
    options.force_copy = executor_.options().force_copy_rootfs;
    absl::StatusOr<std::unique_ptr<snapshots::Rootfs>> rootfs = executor_.snapshots().PrepareRootfs(
        *chain, scratch_ / absl::StrCat("source-", sources_.size()), options);
    if (!rootfs.ok()) return rootfs.status();
    const stdfs::path root = (*rootfs)->root();
    sources_.emplace(key, *std::move(rootfs));
    return root;
  }

  // What COPY and ADD share: the destination root, the options from
  // --chown, --chmod and --exclude, and the destination path (a directory
  // when several sources are copied).
  struct CopyTarget {
    fs::RootDir destination;
    CopyOptions options;
    std::string dest;
  };

  absl::StatusOr<CopyTarget> PrepareCopy(const stdfs::path& root,
                                         const dockerfile::SourcesAndDest& files,
                                         absl::string_view chown, absl::string_view chmod,
                                         const std::vector<std::string>& excludes) const {
    absl::StatusOr<fs::RootDir> destination = fs::RootDir::Open(root);
    if (!destination.ok()) return destination.status();
    CopyOptions options;
    if (!chown.empty()) {
      absl::StatusOr<Owner> owner = ResolveChown(*destination, chown);
      if (!owner.ok()) return owner.status();
      options.owner = *owner;
    }
    absl::StatusOr<std::optional<mode_t>> mode = ParseChmod(chmod);
    if (!mode.ok()) return mode.status();
    options.mode = *mode;
    options.excludes = excludes;
    std::string dest = DestinationPath(files.dest, Workdir());
    if (files.source_paths.size() + files.source_contents.size() > 1 &&
        !absl::EndsWith(dest, "/")) {
      dest += "/";
    }
    return CopyTarget{*std::move(destination), std::move(options), std::move(dest)};
  }

  std::string Workdir() const {
    const std::string& workdir = image_.config().config.working_dir;
    return workdir.empty() ? "/" : workdir;
  }

  // Copies heredoc sources (`COPY <<EOF /file`) to the target: each is
  // written as a file in `dir` first, as BuildKit makes them (mode 0664,
  // owned by root), then copied with the instruction's options.
  absl::Status CopyHeredocs(const std::vector<dockerfile::SourceContent>& contents,
                            const stdfs::path& dir, const CopyTarget& target) const {
    if (contents.empty()) return absl::OkStatus();
    std::vector<std::string> names;
    std::error_code error;
    stdfs::create_directories(dir, error);
    if (error) return absl::InternalError(absl::StrCat(dir.native(), ": ", error.message()));
    absl::StatusOr<fs::RootDir> root = fs::RootDir::Open(dir);
    if (!root.ok()) return root.status();
    for (const dockerfile::SourceContent& content : contents) {
      const std::string name = dockerfile::CleanPath(absl::StrCat("/", content.path));
      absl::StatusOr<fs::UniqueFd> fd =
          root->OpenAt(name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0664);
      if (!fd.ok()) return fd.status();
      size_t written = 0;
      while (written < content.data.size()) {
        const ssize_t n =
            write(fd->get(), content.data.data() + written, content.data.size() - written);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return absl::InternalError(absl::StrCat(name, ": write: ", strerror(errno)));
        written += static_cast<size_t>(n);
      }
      if (fchmod(fd->get(), 0664) != 0) {
        return absl::InternalError(absl::StrCat(name, ": fchmod: ", strerror(errno)));
      }
      names.push_back(name);
    }
    CopyOptions options = target.options;
    options.reset_owner = true;
    return CopyInto(*root, names, target.destination, target.dest, options).status();
  }

  absl::Status CopyFiles(const dockerfile::Copy& copy, const PlannedInstruction& planned,
                         const stdfs::path& root, const stdfs::path& scratch) {
    absl::StatusOr<CopyTarget> target =
        PrepareCopy(root, copy.files, copy.chown, copy.chmod, copy.exclude);
    if (!target.ok()) return target.status();
    absl::Status heredocs = CopyHeredocs(copy.files.source_contents, scratch / "heredocs", *target);
    if (!heredocs.ok() || copy.files.source_paths.empty()) return heredocs;
    absl::StatusOr<stdfs::path> source_dir = SourceDir(planned.copy_from);
    if (!source_dir.ok()) return source_dir.status();
    absl::StatusOr<fs::RootDir> source = fs::RootDir::Open(*source_dir);
    if (!source.ok()) return source.status();
    target->options.reset_owner = planned.copy_from.kind == SourceRoot::Kind::kContext;
    target->options.parents = copy.parents;
    return CopyInto(*source, copy.files.source_paths, target->destination, target->dest,
                    target->options)
        .status();
  }

  absl::Status AddFiles(const dockerfile::Add& add, const stdfs::path& root,
                        const stdfs::path& scratch) {
    absl::StatusOr<CopyTarget> target =
        PrepareCopy(root, add.files, add.chown, add.chmod, add.exclude);
    if (!target.ok()) return target.status();
    if (!add.checksum.empty()) {
      for (const std::string& source : add.files.source_paths) {
        if (!IsUrl(source)) {
          return absl::InvalidArgumentError(
              absl::StrCat("checksum can't be specified for non-HTTP(S) sources: ", source));
        }
      }
    }
    absl::Status heredocs = CopyHeredocs(add.files.source_contents, scratch / "heredocs", *target);
    if (!heredocs.ok()) return heredocs;
    std::vector<std::string> local;
    int downloads = 0;
    for (const std::string& source : add.files.source_paths) {
      if (IsUrl(source)) {
        DownloadOptions download;
        if (!add.checksum.empty()) {
          absl::StatusOr<digest::Digest> checksum = digest::Digest::Parse(add.checksum);
          if (!checksum.ok()) return checksum.status();
          download.checksum = *checksum;
        }
        CopyOptions url_options = target->options;
        url_options.reset_owner = true;
        absl::StatusOr<Download> fetched =
            AddUrl(source, scratch / absl::StrCat("download-", downloads++), target->destination,
                   target->dest, url_options, download);
        if (!fetched.ok()) return fetched.status();
      } else if (IsGitSource(source)) {
        return absl::UnimplementedError(
            absl::StrCat("ADD of a git repository is not supported: ", source));
      } else {
        local.push_back(source);
      }
    }
    if (local.empty()) return absl::OkStatus();
    absl::StatusOr<stdfs::path> context_dir = ContextDir();
    if (!context_dir.ok()) return context_dir.status();
    absl::StatusOr<fs::RootDir> context = fs::RootDir::Open(*context_dir);
    if (!context.ok()) return context.status();
    target->options.reset_owner = true;
    target->options.unpack_archives = add.unpack.value_or(true);
    return CopyInto(*context, local, target->destination, target->dest, target->options).status();
  }

  absl::Status MakeWorkdir(const stdfs::path& root, const std::string& workdir) {
    absl::StatusOr<fs::RootDir> destination = fs::RootDir::Open(root);
    if (!destination.ok()) return destination.status();
    if (destination->Lstat(workdir).ok()) {
      // Existing (or a symlink to something): mkdir -p leaves it; a
      // non-directory fails below as mkdir -p would.
      absl::StatusOr<fs::UniqueFd> dir = destination->MkdirAll(workdir, 0755);
      return dir.status();
    }
    Owner owner;
    const std::string& user = image_.config().config.user;
    if (!user.empty()) {
      absl::StatusOr<Owner> resolved = ResolveChown(*destination, user);
      if (!resolved.ok()) return resolved.status();
      owner = *resolved;
    }
    // Make each missing element, owned by USER (fsutil's MkdirAll chowns
    // exactly the directories it creates).
    std::string path;
    for (absl::string_view element : absl::StrSplit(absl::string_view(workdir).substr(1), '/')) {
      path = absl::StrCat(path, "/", element);
      if (destination->Lstat(path).ok()) continue;
      absl::StatusOr<fs::RootDir::Parent> parent = destination->OpenParent(path);
      if (!parent.ok()) return parent.status();
      if (mkdirat(parent->dir.get(), parent->name.c_str(), 0755) != 0) {
        return absl::InternalError(absl::StrCat("WORKDIR ", path, ": mkdir: ", strerror(errno)));
      }
      if (fchmodat(parent->dir.get(), parent->name.c_str(), 0755, 0) != 0 ||
          fchownat(parent->dir.get(), parent->name.c_str(), owner.uid, owner.gid,
                   AT_SYMLINK_NOFOLLOW) != 0) {
        return absl::InternalError(absl::StrCat("WORKDIR ", path, ": ", strerror(errno)));
      }
    }
    return absl::OkStatus();
  }

  const StageExecutor& executor_;
  const graph::PlannedStage& stage_;
  const StageInputs& inputs_;
  const StageEvents& events_;
  ScratchDir scratch_dir_;
  const stdfs::path scratch_;
  const std::optional<absl::Time> created_;  // SOURCE_DATE_EPOCH
  oci::StageImage image_;
  std::vector<oci::Descriptor> layers_;
  std::vector<digest::Digest> diff_ids_;  // of the layers this stage added
  std::map<std::string, std::unique_ptr<snapshots::Rootfs>> sources_;
  bool rootfs_mode_noted_ = false;
  bool contexts_prepared_ = false;
  std::optional<oci::Descriptor> last_step_layer_;  // what the last step run added
};

}  // namespace

absl::StatusOr<std::unique_ptr<StageExecutor>> StageExecutor::Open(cas::BlobStore* store,
                                                                   ExecutorOptions options) {
  absl::StatusOr<std::unique_ptr<snapshots::Snapshots>> snapshots =
      snapshots::Snapshots::Open(options.data_dir);
  if (!snapshots.ok()) return snapshots.status();
  std::error_code error;
  for (const char* sub : {"run", "cache-mounts"}) {
    stdfs::create_directories(options.data_dir / sub, error);
    if (error) {
      return absl::InternalError(
          absl::StrCat((options.data_dir / sub).native(), ": ", error.message()));
    }
  }
  return std::unique_ptr<StageExecutor>(
      new StageExecutor(store, std::move(options), *std::move(snapshots)));
}

absl::StatusOr<ScratchDir> StageExecutor::NewScratchDir(absl::string_view label) const {
  std::string dir = (options_.data_dir / "run" /
                     absl::StrCat(label, "-", getpid(), "-", scratch_counter_++, "-XXXXXX"))
                        .native();
  if (mkdtemp(dir.data()) == nullptr) {
    return absl::InternalError(absl::StrCat(dir, ": mkdtemp: ", strerror(errno)));
  }
  return ScratchDir(stdfs::path(dir));
}

absl::StatusOr<std::vector<snapshots::Snapshot>> StageExecutor::EnsureSnapshots(
    const BuiltImage& image, const snapshots::UnpackListener& listener) const {
  if (image.layers.size() != image.config.diff_ids.size()) {
    return absl::InvalidArgumentError(absl::StrCat("image has ", image.layers.size(),
                                                   " layers but ", image.config.diff_ids.size(),
                                                   " diff ids"));
  }
  const std::vector<snapshots::LayerSource> sources = LayerSources(*store_, image);
  return snapshots_->Ensure(sources, listener);
}

absl::StatusOr<BuiltImage> StageExecutor::Run(const graph::PlannedStage& stage,
                                              const StageInputs& inputs,
                                              const StageEvents& events) const {
  absl::StatusOr<ScratchDir> scratch =
      NewScratchDir(stage.name.empty() ? absl::StrCat("stage", stage.index) : stage.name);
  if (!scratch.ok()) return scratch.status();
  StageRun run(*this, stage, inputs, events, *std::move(scratch));
  return run.Run();
}

}  // namespace stagefarm::worker
