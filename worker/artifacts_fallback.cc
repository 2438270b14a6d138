// TEMPORARY stand-ins: see artifacts_fallback.h.
#include "worker/artifacts_fallback.h"

#include <fstream>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "worker/build/local_build.h"

namespace stagefarm::worker {

namespace stdfs = std::filesystem;

// Writes the selected files from the store into a directory beside `dest`
// laid out as the context, then materialises from there.
absl::Status MaterializeContextFromStore(cas::BlobStore& store, const fs::ContextIndex& index,
                                         const std::vector<std::string>& sources,
                                         const stdfs::path& dest) {
  std::vector<const fs::ContextEntry*> entries;
  absl::StatusOr<std::vector<const fs::ContextEntry*>> selected =
      sources.empty() ? absl::NotFoundError("") : index.Select(sources);
  if (selected.ok()) {
    entries = *std::move(selected);
  } else {
    for (const fs::ContextEntry& entry : index.entries()) entries.push_back(&entry);
  }
  const stdfs::path files = dest.native() + ".files";
  std::error_code error;
  stdfs::create_directories(files, error);
  if (error) return absl::InternalError(absl::StrCat(files.native(), ": ", error.message()));
  for (const fs::ContextEntry* entry : entries) {
    const stdfs::path path = files / entry->path;
    if (entry->type == fs::EntryType::kDirectory) {
      stdfs::create_directories(path, error);
      continue;
    }
    if (entry->type != fs::EntryType::kFile) continue;
    stdfs::create_directories(path.parent_path(), error);
    absl::StatusOr<std::string> content = store.ReadAll(*entry->content);
    if (!content.ok()) {
      return absl::Status(content.status().code(),
                          absl::StrCat(entry->path, ": ", content.status().message()));
    }
    std::ofstream out(path, std::ios::binary);
    out << *content;
    if (!out) return absl::InternalError(absl::StrCat(path.native(), ": cannot write"));
  }
  absl::Status made = MaterializeContext(files, index, sources, dest);
  stdfs::remove_all(files, error);
  return made;
}

absl::StatusOr<oci::Descriptor> ExportArtifact(const StageExecutor&, const BuiltImage&,
                                               absl::Span<const std::string>) {
  return absl::UnimplementedError("artifacts are not exported yet (branch artifacts)");
}

BuiltImage ArtifactImage(const BuiltImage& stage, const oci::Descriptor& artifact) {
  BuiltImage image;
  image.config = stage.config;
  image.config.diff_ids = {artifact.digest};
  image.layers = {artifact};
  return image;
}

}  // namespace stagefarm::worker
