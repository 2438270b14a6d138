#include "worker/build/artifacts.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <deque>
#include <filesystem>
#include <set>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/dockerfile/dockerignore.h"
#include "common/fs/root.h"
#include "common/oci/layer_diff.h"
#include "worker/copy/copy.h"

namespace stagefarm::worker {
namespace {

namespace stdfs = std::filesystem;

// Linux's limit on symlinks followed in one lookup (ELOOP beyond it).
constexpr int kMaxSymlinkHops = 40;

absl::Status Errno(absl::string_view what, absl::string_view path) {
  return absl::ErrnoToStatus(errno, absl::StrCat(what, " \"", path, "\""));
}

bool HasMeta(absl::string_view element) {
  return element.find_first_of("*?[\\") != absl::string_view::npos;
}

// `path` as a COPY source that names exactly it: glob characters escaped.
std::string Literal(absl::string_view path) {
  std::string out;
  for (char c : path) {
    if (c == '*' || c == '?' || c == '[' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// What the mini root must hold for one stage and its paths: the entries
// each path's lookup ends on (copied whole by CopyInto), and every symlink a
// lookup follows on the way (recreated as a symlink). Both are physical paths
// of the source ("a/b", no symlink above them), so the mini root is a subset
// of the stage's tree with every entry at its own path: a lookup in it
// follows the same links to the same places, and a glob lists the same
// matching names.
class MiniRootPlan {
 public:
  explicit MiniRootPlan(const fs::RootDir& source) : source_(source) {}

  // Walks `pattern` (absolute, cleaned) as COPY expands and opens it: each
  // glob element against its directory's names (dockerfile::MatchGlob, as
  // copy.cc's expansion), every symlink followed inside the root.
  absl::Status Add(absl::string_view pattern) {
    std::deque<Element> rest;
    bool glob = false;
    for (absl::string_view element : absl::StrSplit(pattern, '/', absl::SkipEmpty())) {
      rest.push_back({std::string(element), true});
      glob = glob || HasMeta(element);
    }
    return Walk({}, std::move(rest), 0, glob);
  }

  // Targets without those below another target (whose copy holds them).
  std::vector<std::string> Targets() const {
    std::vector<std::string> out;
    for (const std::string& target : targets_) {
      bool below = false;
      for (size_t slash = target.find('/'); slash != std::string::npos && !below;
           slash = target.find('/', slash + 1)) {
        below = targets_.contains(target.substr(0, slash));
      }
      if (!below) out.push_back(target);
    }
    return out;
  }
  const std::set<std::string>& links() const { return links_; }

 private:
  struct Element {
    std::string name;
    bool from_pattern;  // glob characters count (not in a symlink's target)
  };

  // `glob`: the pattern has glob elements, so a lookup that meets a
  // non-directory is no match (Go's Glob) rather than an error.
  absl::Status Walk(std::vector<std::string> physical, std::deque<Element> rest, int hops,
                    bool glob) {
    while (!rest.empty()) {
      Element element = std::move(rest.front());
      rest.pop_front();
      if (element.name.empty() || element.name == ".") continue;
      if (element.name == "..") {
        if (!physical.empty()) physical.pop_back();  // ".." at the root stays there
        continue;
      }
      const std::string dir = absl::StrJoin(physical, "/");
      if (element.from_pattern && HasMeta(element.name)) {
        absl::StatusOr<fs::UniqueFd> listed =
            source_.OpenAt(dir.empty() ? "." : dir, O_RDONLY | O_DIRECTORY);
        if (!listed.ok()) return absl::OkStatus();  // not a directory: nothing matches
        absl::StatusOr<std::vector<std::string>> names = fs::ListDirectory(listed->get(), dir);
        if (!names.ok()) return names.status();
        for (const std::string& name : *names) {
          absl::StatusOr<bool> matched = dockerfile::MatchGlob(element.name, name);
          if (!matched.ok()) return matched.status();
          if (!*matched) continue;
          std::deque<Element> after = rest;
          after.push_front({name, false});
          if (absl::Status status = Walk(physical, std::move(after), hops, glob); !status.ok()) {
            return status;
          }
        }
        return absl::OkStatus();
      }
      const std::string path = dir.empty() ? element.name : absl::StrCat(dir, "/", element.name);
      absl::StatusOr<struct stat> info = source_.Lstat(path);
      if (!info.ok()) {
        // Missing: the consumer's COPY fails on it; the links followed so far
        // are kept so that it fails the same.
        if (absl::IsNotFound(info.status())) return absl::OkStatus();
        return info.status();
      }
      if (S_ISLNK(info->st_mode)) {
        if (++hops > kMaxSymlinkHops) return absl::OkStatus();  // ELOOP for the consumer too
        links_.insert(path);
        absl::StatusOr<fs::RootDir::Parent> parent = source_.OpenParent(path);
        if (!parent.ok()) return parent.status();
        std::string target(PATH_MAX, '\0');
        const ssize_t n =
            readlinkat(parent->dir.get(), parent->name.c_str(), target.data(), target.size());
        if (n < 0) return Errno("cannot read link", path);
        target.resize(static_cast<size_t>(n));
        if (absl::StartsWith(target, "/")) physical.clear();
        std::vector<std::string> elements = absl::StrSplit(target, '/', absl::SkipEmpty());
        for (auto it = elements.rbegin(); it != elements.rend(); ++it) {
          rest.push_front({*it, false});
        }
        continue;
      }
      physical.push_back(element.name);
      if (!S_ISDIR(info->st_mode) && !rest.empty()) {
        // Not a directory: no match for a glob; for a path, the lookup fails
        // here, so keep what it fails on for the consumer's to fail the same.
        if (glob) return absl::OkStatus();
        break;
      }
    }
    if (physical.empty()) {
      return absl::FailedPreconditionError(
          "a path resolves to the stage's root: export the whole stage instead");
    }
    targets_.insert(absl::StrJoin(physical, "/"));
    return absl::OkStatus();
  }

  const fs::RootDir& source_;
  std::set<std::string> targets_;
  std::set<std::string> links_;
};

// Recreates the symlink `path` of `source` in `dest` with its owner and
// times (its parents made if missing; they get their metadata later). A link
// a target's copy made already is the same link.
absl::Status CopyLink(const fs::RootDir& source, const fs::RootDir& dest, const std::string& path) {
  absl::StatusOr<struct stat> info = source.Lstat(path);
  if (!info.ok()) return info.status();
  absl::StatusOr<fs::RootDir::Parent> from = source.OpenParent(path);
  if (!from.ok()) return from.status();
  std::string target(PATH_MAX, '\0');
  const ssize_t n = readlinkat(from->dir.get(), from->name.c_str(), target.data(), target.size());
  if (n < 0) return Errno("cannot read link", path);
  target.resize(static_cast<size_t>(n));
  absl::StatusOr<fs::RootDir::Parent> to = dest.MkdirParents(path, 0755);
  if (!to.ok()) return to.status();
  if (symlinkat(target.c_str(), to->dir.get(), to->name.c_str()) != 0) {
    if (errno == EEXIST) return absl::OkStatus();
    return Errno("cannot make symlink", path);
  }
  const struct timespec times[2] = {info->st_atim, info->st_mtim};
  if (fchownat(to->dir.get(), to->name.c_str(), info->st_uid, info->st_gid, AT_SYMLINK_NOFOLLOW) !=
          0 ||
      utimensat(to->dir.get(), to->name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
    return Errno("cannot set the metadata of", path);
  }
  return absl::OkStatus();
}

// Gives every directory below `dir` (at `path` in both roots) the mode,
// owner and mtime of the source's directory at the same path: directories
// made on the way to a path, and those whose mtime a later copy disturbed.
absl::Status MirrorDirectoryMetadata(const fs::RootDir& source, int dir, const std::string& path) {
  absl::StatusOr<std::vector<std::string>> names = fs::ListDirectory(dir, path);
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) {
    const std::string child = path.empty() ? name : absl::StrCat(path, "/", name);
    struct stat mine;
    if (fstatat(dir, name.c_str(), &mine, AT_SYMLINK_NOFOLLOW) != 0) {
      return Errno("cannot stat", child);
    }
    if (!S_ISDIR(mine.st_mode)) continue;
    fs::UniqueFd sub(openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub.valid()) return Errno("cannot open", child);
    if (absl::Status status = MirrorDirectoryMetadata(source, sub.get(), child); !status.ok()) {
      return status;
    }
    absl::StatusOr<struct stat> theirs = source.Lstat(child);
    if (!theirs.ok()) return theirs.status();
    if (!S_ISDIR(theirs->st_mode)) {
      return absl::InternalError(
          absl::StrCat("\"", child, "\" is a directory in the artifact but not in the stage"));
    }
    const struct timespec times[2] = {theirs->st_atim, theirs->st_mtim};
    if (fchown(sub.get(), theirs->st_uid, theirs->st_gid) != 0 ||
        fchmod(sub.get(), theirs->st_mode & 07777) != 0 || futimens(sub.get(), times) != 0) {
      return Errno("cannot set the metadata of", child);
    }
  }
  return absl::OkStatus();
}

// Builds the mini root of `paths` from the mounted stage `source_dir` into
// the empty directory `mini_root`.
absl::Status MakeMiniRoot(const stdfs::path& source_dir, absl::Span<const std::string> paths,
                          const stdfs::path& mini_root) {
  absl::StatusOr<fs::RootDir> source = fs::RootDir::Open(source_dir);
  if (!source.ok()) return source.status();
  absl::StatusOr<fs::RootDir> dest = fs::RootDir::Open(mini_root);
  if (!dest.ok()) return dest.status();
  MiniRootPlan plan(*source);
  for (const std::string& path : paths) {
    if (absl::Status status = plan.Add(path); !status.ok()) {
      return absl::Status(status.code(), absl::StrCat(path, ": ", status.message()));
    }
  }
  std::vector<std::string> sources;
  for (const std::string& target : plan.Targets()) sources.push_back(Literal(target));
  if (!sources.empty()) {
    // One copy for all, so that files hard-linked across paths stay linked.
    CopyOptions options;
    options.parents = true;
    options.reset_owner = false;
    absl::StatusOr<CopyStats> copied = CopyInto(*source, sources, *dest, "/", options);
    if (!copied.ok()) return copied.status();
  }
  for (const std::string& link : plan.links()) {
    if (absl::Status status = CopyLink(*source, *dest, link); !status.ok()) return status;
  }
  fs::UniqueFd top(open(mini_root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!top.valid()) return Errno("cannot open", mini_root.native());
  return MirrorDirectoryMetadata(*source, top.get(), "");
}

}  // namespace

bool ArtifactCanServe(absl::Span<const std::string> paths) {
  if (paths.empty()) return false;
  return std::none_of(paths.begin(), paths.end(),
                      [](const std::string& path) { return path == "/" || path.empty(); });
}

BuiltImage ArtifactImage(const BuiltImage& stage, const oci::Descriptor& artifact) {
  BuiltImage image;
  image.config = stage.config;
  image.config.diff_ids = {artifact.digest};
  image.layers = {artifact};
  return image;
}

absl::StatusOr<oci::Descriptor> ExportArtifact(const StageExecutor& executor,
                                               const BuiltImage& stage,
                                               absl::Span<const std::string> paths,
                                               std::optional<int64_t> source_date_epoch) {
  if (!ArtifactCanServe(paths)) {
    return absl::InvalidArgumentError(
        absl::StrCat("no artifact for [", absl::StrJoin(paths, ", "),
                     "]: the whole stage is read; use the stage itself"));
  }
  absl::StatusOr<std::vector<snapshots::Snapshot>> chain = executor.EnsureSnapshots(stage);
  if (!chain.ok()) return chain.status();
  absl::StatusOr<ScratchDir> scratch = executor.NewScratchDir("artifact");
  if (!scratch.ok()) return scratch.status();
  const stdfs::path mini_root = scratch->path() / "root";
  absl::Status made;
  {
    snapshots::RootfsOptions options;
    options.force_copy = executor.options().force_copy_rootfs;
    absl::StatusOr<std::unique_ptr<snapshots::Rootfs>> rootfs =
        executor.snapshots().PrepareRootfs(*chain, scratch->path() / "stage", options);
    if (!rootfs.ok()) return rootfs.status();
    std::error_code error;
    stdfs::create_directory(mini_root, error);
    made = error ? absl::InternalError(absl::StrCat(mini_root.native(), ": ", error.message()))
                 : MakeMiniRoot((*rootfs)->root(), paths, mini_root);
    // Only read: unmount, nothing to keep.
    if (absl::Status finished = (*rootfs)->Finish(); made.ok()) made = finished;
  }
  if (!made.ok()) return made;
  std::unique_ptr<cas::BlobWriter> writer = executor.store().NewWriter();
  oci::DiffOptions diff;
  diff.compression = oci::LayerCompression::kNone;
  // Clamped as the stage's own layers were: the node that built the stage
  // may stack its steps' upper dirs, whose mtimes are not.
  diff.source_date_epoch = source_date_epoch;
  absl::StatusOr<oci::LayerDigests> layer = oci::WriteLayerFromUpper(
      mini_root, [](absl::string_view) -> absl::StatusOr<bool> { return false; },
      [](absl::string_view) { return absl::OkStatus(); },
      [&writer](absl::string_view bytes) { return writer->Write(bytes); }, diff);
  absl::Status removed = scratch->Remove();
  if (!layer.ok()) return layer.status();
  const std::string media_type = oci::LayerMediaType(oci::LayerCompression::kNone);
  if (absl::Status committed = writer->Commit(layer->blob_digest, media_type); !committed.ok()) {
    return committed;
  }
  if (!removed.ok()) return removed;
  return oci::Descriptor{media_type, layer->blob_digest, layer->blob_size, {}};
}

}  // namespace stagefarm::worker
