#include "worker/build/local_build.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/cas/blob_store.h"
#include "common/digest/digest.h"
#include "common/fs/root.h"
#include "common/oci/image.h"
#include "common/status/prefixed.h"

namespace stagefarm::worker {
namespace {

namespace stdfs = std::filesystem;

// `op` on `path` failed with `error` (by default, errno as the call left it).
absl::Status Errno(absl::string_view path, absl::string_view op, int error = errno) {
  return absl::InternalError(absl::StrCat(path, ": ", op, ": ", strerror(error)));
}

// Where MaterializeContext and MaterializeContextFromStore take what the
// index does not hold: file contents and times.
struct ContentSource {
  // Streams the content of the file `entry` (`shown` in errors): each call
  // of the function returned gives the next piece, empty at the end.
  std::function<absl::StatusOr<std::function<absl::StatusOr<absl::string_view>()>>(
      const fs::ContextEntry& entry, absl::string_view shown)>
      open;
  // Atime and mtime for `entry` (utimensat's order).
  std::function<std::array<struct timespec, 2>(const fs::ContextEntry& entry)> times;
  // Whether the source itself guarantees that content hashes to the index's
  // digest, so the bytes need not be hashed again: the store's reader
  // verifies every chunk it reads, and a blob's chunk list was verified whole
  // when it was committed. Otherwise `mismatch` says why they may not, for
  // the error.
  bool verified = false;
  absl::string_view mismatch;
};

// Copies the pieces `next` gives to a new file `name` under `dir`, checking,
// unless `content` is verified, that they hash to `expected`, the digest the
// context index recorded: a file that changed since it was indexed (and so
// since the cache keys were computed) fails, naming it.
absl::Status CopyFileContent(const std::function<absl::StatusOr<absl::string_view>()>& next,
                             int dir, const std::string& name, const digest::Digest& expected,
                             absl::string_view shown, const ContentSource& content) {
  fs::UniqueFd to(
      openat(dir, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!to.valid()) return Errno(shown, "create");
  const bool check = !content.verified;
  digest::Sha256 hash;
  for (;;) {
    absl::StatusOr<absl::string_view> piece = next();
    if (!piece.ok()) return piece.status();
    if (piece->empty()) break;
    if (check) hash.Update(*piece);
    if (const int error = fs::WriteFully(to.get(), *piece); error != 0) {
      return Errno(shown, "write", error);
    }
  }
  if (!check) return absl::OkStatus();
  if (const digest::Digest actual = hash.Finish(); actual != expected) {
    return absl::FailedPreconditionError(absl::StrCat(shown, ": ", content.mismatch,
                                                      " (indexed as ", expected.ToString(),
                                                      ", now ", actual.ToString(), ")"));
  }
  return absl::OkStatus();
}

// What both MaterializeContext functions do, with contents and times from
// `content`; errors name paths below `shown_root`.
absl::Status Materialize(const fs::ContextIndex& index, const std::vector<std::string>& sources,
                         const stdfs::path& dest, const stdfs::path& shown_root,
                         const ContentSource& content) {
  std::vector<const fs::ContextEntry*> entries;
  bool everything = sources.empty();
  if (!everything) {
    absl::StatusOr<std::vector<const fs::ContextEntry*>> selected = index.Select(sources);
    // A source that does not resolve fails its COPY later, with the
    // instruction's location; until then the whole context is there.
    if (selected.ok()) {
      entries = *std::move(selected);
    } else {
      everything = true;
    }
  }
  if (everything) {
    for (const fs::ContextEntry& entry : index.entries()) entries.push_back(&entry);
  }
  std::error_code error;
  stdfs::create_directories(dest, error);
  if (error) return absl::InternalError(absl::StrCat(dest.native(), ": ", error.message()));
  if (chmod(dest.c_str(), 0755) != 0) return Errno(dest.native(), "chmod");
  absl::StatusOr<fs::RootDir> dest_root = fs::RootDir::Open(dest);
  if (!dest_root.ok()) return dest_root.status();

  // Directories get their mode and mtime after their contents are written.
  std::vector<const fs::ContextEntry*> directories;
  for (const fs::ContextEntry* entry : entries) {
    const std::string shown = (shown_root / entry->path).native();
    absl::StatusOr<fs::RootDir::Parent> parent = dest_root->MkdirParents(entry->path, 0755);
    if (!parent.ok()) return parent.status();
    const int dir = parent->dir.get();
    const char* name = parent->name.c_str();
    switch (entry->type) {
      case fs::EntryType::kDirectory:
        if (mkdirat(dir, name, 0700) != 0 && errno != EEXIST) return Errno(shown, "mkdir");
        directories.push_back(entry);
        continue;
      case fs::EntryType::kSymlink:
        if (symlinkat(entry->link_target.c_str(), dir, name) != 0) return Errno(shown, "symlink");
        break;
      case fs::EntryType::kFile: {
        absl::StatusOr<std::function<absl::StatusOr<absl::string_view>()>> next =
            content.open(*entry, shown);
        if (!next.ok()) return next.status();
        absl::Status copied =
            CopyFileContent(*next, dir, parent->name, *entry->content, shown, content);
        if (!copied.ok()) return copied;
        break;
      }
    }
    const std::array<struct timespec, 2> times = content.times(*entry);
    if (fchownat(dir, name, 0, 0, AT_SYMLINK_NOFOLLOW) != 0) return Errno(shown, "chown");
    // The mode after the owner: chown clears setuid and setgid.
    if (entry->type == fs::EntryType::kFile && fchmodat(dir, name, entry->mode, 0) != 0) {
      return Errno(shown, "chmod");
    }
    if (utimensat(dir, name, times.data(), AT_SYMLINK_NOFOLLOW) != 0) {
      return Errno(shown, "utimensat");
    }
  }
  for (auto it = directories.rbegin(); it != directories.rend(); ++it) {
    const fs::ContextEntry& entry = **it;
    const std::string shown = (shown_root / entry.path).native();
    absl::StatusOr<fs::RootDir::Parent> parent = dest_root->OpenParent(entry.path);
    if (!parent.ok()) return parent.status();
    const int dir = parent->dir.get();
    const char* name = parent->name.c_str();
    const std::array<struct timespec, 2> times = content.times(entry);
    if (fchownat(dir, name, 0, 0, AT_SYMLINK_NOFOLLOW) != 0) return Errno(shown, "chown");
    if (fchmodat(dir, name, entry.mode, 0) != 0) return Errno(shown, "chmod");
    if (utimensat(dir, name, times.data(), AT_SYMLINK_NOFOLLOW) != 0) {
      return Errno(shown, "utimensat");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status MaterializeContext(const stdfs::path& context_dir, const fs::ContextIndex& index,
                                const std::vector<std::string>& sources, const stdfs::path& dest) {
  absl::StatusOr<fs::RootDir> source_root = fs::RootDir::Open(context_dir);
  if (!source_root.ok()) return source_root.status();
  ContentSource content;
  content.open = [&source_root](const fs::ContextEntry& entry, absl::string_view shown)
      -> absl::StatusOr<std::function<absl::StatusOr<absl::string_view>()>> {
    absl::StatusOr<fs::UniqueFd> from = source_root->OpenAt(entry.path, O_RDONLY | O_NOFOLLOW);
    if (!from.ok()) return from.status();
    auto fd = std::make_shared<fs::UniqueFd>(*std::move(from));
    auto buffer = std::make_shared<std::vector<char>>(1 << 20);
    return [fd, buffer, shown = std::string(shown)]() -> absl::StatusOr<absl::string_view> {
      for (;;) {
        const ssize_t n = read(fd->get(), buffer->data(), buffer->size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Errno(shown, "read");
        return absl::string_view(buffer->data(), static_cast<size_t>(n));
      }
    };
  };
  content.times = [&source_root](const fs::ContextEntry& entry) {
    struct stat st {};
    absl::StatusOr<struct stat> original = source_root->Lstat(entry.path);
    if (original.ok()) st = *original;
    return std::array<struct timespec, 2>{st.st_atim, st.st_mtim};
  };
  content.mismatch = "changed while the build was starting";
  return Materialize(index, sources, dest, context_dir, content);
}

absl::Status MaterializeContextFromStore(cas::BlobStore& store, const fs::ContextIndex& index,
                                         const std::vector<std::string>& sources,
                                         const stdfs::path& dest) {
  ContentSource content;
  content.open = [&store](const fs::ContextEntry& entry, absl::string_view shown)
      -> absl::StatusOr<std::function<absl::StatusOr<absl::string_view>()>> {
    absl::StatusOr<std::unique_ptr<cas::BlobReader>> reader = store.Get(*entry.content);
    if (absl::IsNotFound(reader.status())) {
      return absl::NotFoundError(
          absl::StrCat(shown, ": its content ", entry.content->ToString(), " is not in the store"));
    }
    if (!reader.ok()) return reader.status();
    std::shared_ptr<cas::BlobReader> shared = *std::move(reader);
    return [shared]() { return shared->Next(); };
  };
  // The times the client's walk saw (atime as mtime: no COPY keeps atimes).
  content.times = [](const fs::ContextEntry& entry) {
    struct timespec mtime;
    mtime.tv_sec = entry.mtime_ns / 1000000000;
    mtime.tv_nsec = entry.mtime_ns % 1000000000;
    return std::array<struct timespec, 2>{mtime, mtime};
  };
  content.verified = true;
  return Materialize(index, sources, dest, "", content);
}

absl::StatusOr<BuiltImage> RunLocalBuild(const StageExecutor& executor,
                                         const LocalBuildInput& input, const BuildEvents& events) {
  const graph::StageGraph& plan = *input.graph;
  absl::StatusOr<ScratchDir> scratch = executor.NewScratchDir("build");
  if (!scratch.ok()) return scratch.status();

  // The context, with what the needed stages read from it, and so each named
  // local context: made once, when the first step that reads one runs (a
  // build whose steps are all cached copies nothing). The named contexts are
  // checked now.
  const graph::NeededContextPaths read = graph::ContextPathsOfNeededStages(plan);
  const stdfs::path context = scratch->path() / "context";
  std::map<std::string, stdfs::path> named_dirs;
  for (const auto& [name, paths] : read.named) {
    auto it = input.named_contexts.find(name);
    if (it == input.named_contexts.end() || it->second.index == nullptr) {
      return absl::NotFoundError(absl::StrCat("build context ", name, " is not defined"));
    }
    named_dirs.emplace(name, scratch->path() / absl::StrCat("named-context-", named_dirs.size()));
  }
  absl::Mutex contexts_mu;
  std::optional<absl::Status> contexts_made;  // under contexts_mu
  auto make_contexts = [&]() -> absl::Status {
    const std::vector<std::string> sources = graph::SelectSources(read.own);
    if (sources.empty()) {
      std::error_code error;
      stdfs::create_directories(context, error);
      if (error) return absl::InternalError(absl::StrCat(context.native(), ": ", error.message()));
    } else {
      absl::Status made = MaterializeContext(input.context_dir, *input.context, sources, context);
      if (!made.ok()) return made;
    }
    for (const auto& [name, paths] : read.named) {
      const LocalBuildInput::NamedContextDir& named = input.named_contexts.at(name);
      absl::Status made = MaterializeContext(named.dir, *named.index, graph::SelectSources(paths),
                                             named_dirs.at(name));
      if (!made.ok()) return Prefixed(absl::StrCat("build context ", name), made);
    }
    return absl::OkStatus();
  };
  auto prepare_contexts = [&]() -> absl::Status {
    absl::MutexLock lock(&contexts_mu);
    if (!contexts_made) contexts_made = make_contexts();
    return *contexts_made;
  };

  absl::Mutex mu;
  std::vector<std::optional<BuiltImage>> results(plan.stages.size());
  std::map<std::string, BuiltImage> images;  // external images by reference, resolved once
  auto resolve_image = [&](const oci::ImageRef& ref) -> absl::StatusOr<BuiltImage> {
    const std::string key = ref.String();
    {
      absl::MutexLock lock(&mu);
      if (auto it = images.find(key); it != images.end()) return it->second;
    }
    absl::StatusOr<BuiltImage> image = input.resolve_image(ref);
    if (!image.ok()) return image.status();
    absl::MutexLock lock(&mu);
    images.emplace(key, *image);
    return *image;
  };
  auto resolve = [&](const graph::SourceRoot& source) -> absl::StatusOr<BuiltImage> {
    if (source.kind == graph::SourceRoot::Kind::kImage) return resolve_image(source.image);
    if (source.kind != graph::SourceRoot::Kind::kStage) {
      return absl::InternalError("only a stage or an image is resolved");
    }
    absl::MutexLock lock(&mu);
    if (source.stage < 0 || source.stage >= static_cast<int>(results.size()) ||
        !results[source.stage]) {
      return absl::InternalError(absl::StrCat("stage ", source.stage, " has not been built"));
    }
    return *results[source.stage];
  };
  absl::Mutex events_mu;  // the callbacks never run at the same time

  auto run_stage = [&](int index) -> absl::Status {
    const graph::PlannedStage& stage = plan.stages[index];
    const absl::Time start = absl::Now();
    if (events.on_stage_start) {
      absl::MutexLock lock(&events_mu);
      events.on_stage_start(stage);
    }
    StageInputs inputs;
    switch (stage.base.kind) {
      case graph::StageBase::Kind::kScratch:
        inputs.base.config = oci::ScratchConfig(stage.platform);
        break;
      case graph::StageBase::Kind::kImage: {
        absl::StatusOr<BuiltImage> base = resolve_image(stage.base.image);
        if (!base.ok()) {
          return absl::Status(base.status().code(),
                              absl::StrCat(input.dockerfile_name, ":", stage.line, ": FROM ",
                                           stage.base_name, ": ", base.status().message()));
        }
        inputs.base = *std::move(base);
        break;
      }
      case graph::StageBase::Kind::kStage: {
        graph::SourceRoot base;
        base.kind = graph::SourceRoot::Kind::kStage;
        base.stage = stage.base.stage;
        absl::StatusOr<BuiltImage> built = resolve(base);
        if (!built.ok()) return built.status();
        inputs.base = *std::move(built);
        break;
      }
    }
    inputs.context_dir = context;
    inputs.named_context_dirs = named_dirs;
    inputs.resolve = resolve;
    inputs.proxy_env.assign(plan.proxy_env.begin(), plan.proxy_env.end());
    inputs.dockerfile_name = input.dockerfile_name;
    if (static_cast<size_t>(index) < input.cache_keys.size() && input.cache_keys[index]) {
      inputs.cache_keys = input.cache_keys[index]->instructions;
    }
    inputs.use_cache = input.use_cache;
    inputs.source_date_epoch = input.source_date_epoch;
    inputs.secrets = input.secrets;
    inputs.cancelled = input.cancelled;
    inputs.prepare_contexts = prepare_contexts;
    StageEvents stage_events;
    if (events.on_step) {
      stage_events.on_step = [&](size_t step, size_t steps, absl::string_view text) {
        absl::MutexLock lock(&events_mu);
        events.on_step(stage, step, steps, text);
      };
    }
    if (events.on_output) {
      stage_events.on_output = [&](absl::string_view output) {
        absl::MutexLock lock(&events_mu);
        events.on_output(stage, output);
      };
    }
    if (events.on_note) {
      stage_events.on_note = [&](absl::string_view line) {
        absl::MutexLock lock(&events_mu);
        events.on_note(stage, line);
      };
    }
    absl::StatusOr<BuiltImage> built = executor.Run(stage, inputs, stage_events);
    if (!built.ok()) return built.status();
    {
      absl::MutexLock lock(&mu);
      results[index] = *std::move(built);
    }
    if (events.on_stage_done) {
      absl::MutexLock lock(&events_mu);
      events.on_stage_done(stage, absl::ToDoubleSeconds(absl::Now() - start));
    }
    return absl::OkStatus();
  };

  // The stages whose layers are the image's: the target and what it is built FROM.
  std::vector<bool> in_image(plan.stages.size(), false);
  for (int stage = plan.target; stage >= 0;) {
    in_image[stage] = true;
    stage = plan.stages[stage].base.kind == graph::StageBase::Kind::kStage
                ? plan.stages[stage].base.stage
                : -1;
  }
  std::vector<std::thread> compressors;
  struct JoinAll {
    std::vector<std::thread>& threads;
    ~JoinAll() {
      for (std::thread& thread : threads) thread.join();
    }
  } join_compressors{compressors};
  auto precompress = [&](int index) {
    if (!input.precompress || !in_image[index]) return;
    std::vector<oci::Descriptor> layers;
    {
      absl::MutexLock lock(&mu);
      layers = results[index]->layers;
    }
    // Errors are left for the export, which compresses again what is missing.
    compressors.emplace_back([&executor, &input, layers = std::move(layers)] {
      oci::CompressOptions options = *input.precompress;
      options.on_progress = nullptr;
      oci::CompressLayers(executor.store(), layers, options).IgnoreError();
    });
  };

  for (const std::vector<int>& wave : plan.waves) {
    std::vector<absl::Status> statuses(wave.size());
    std::vector<std::thread> threads;
    for (size_t i = 1; i < wave.size(); ++i) {
      threads.emplace_back([&, i] { statuses[i] = run_stage(wave[i]); });
    }
    if (!wave.empty()) statuses[0] = run_stage(wave[0]);
    for (std::thread& thread : threads) thread.join();
    for (const absl::Status& status : statuses) {
      if (!status.ok()) return status;
    }
    for (int index : wave) precompress(index);
  }
  absl::MutexLock lock(&mu);
  if (!results[plan.target]) return absl::InternalError("the target stage was not built");
  return *results[plan.target];
}

}  // namespace stagefarm::worker
