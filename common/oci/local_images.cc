#include "common/oci/local_images.h"

#include <archive.h>
#include <archive_entry.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <system_error>
#include <variant>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/dockerfile/instructions.h"
#include "common/dockerfile/parser.h"
#include "common/dockerfile/shell_lexer.h"
#include "common/graph/planned_instruction.h"
#include "common/oci/diff_id_hasher.h"
#include "common/oci/image_archive.h"
#include "common/oci/layer_ingest.h"
#include "common/oci/manifest.h"
#include "common/oci/media_types.h"
#include "common/oci/platform.h"
#include "common/oci/stage_image.h"
#include "common/status/prefixed.h"
#include "nlohmann/json.hpp"

namespace stagefarm::oci {
namespace {

namespace stdfs = std::filesystem;
using Json = nlohmann::json;

// Indexes, manifests and configs are read whole; nothing real comes near this.
constexpr uint64_t kMaxJsonBytes = uint64_t{8} << 20;

absl::StatusOr<std::string> StringField(const Json& object, const std::string& key,
                                        absl::string_view where) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) {
    return absl::InvalidArgumentError(absl::StrCat(where, key, ": missing"));
  }
  if (!it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(where, key, ": expected a string"));
  }
  return it->get<std::string>();
}

std::string BlobPath(const digest::Digest& d) {
  return absl::StrCat("blobs/", digest::AlgorithmName(d.algorithm()), "/", d.hex());
}

// Whether `name` (an index's ref-name annotation or a docker archive's repo
// tag: "latest", "busybox:latest", "docker.io/library/busybox:latest") names `ref`.
bool NamesRef(absl::string_view name, const ImageRef& ref) {
  if (name == ref.tag) return true;
  absl::StatusOr<ImageRef> parsed = ParseImageRef(name);
  return parsed.ok() && parsed->Name() == ref.Name() && parsed->tag == ref.tag;
}

bool OnHostPlatform(const std::optional<Platform>& platform) {
  if (!platform) return false;
  const Platform host = HostPlatform();
  return platform->os == host.os && platform->architecture == host.architecture &&
         (platform->variant.empty() || platform->variant == host.variant);
}

// Reads a small stored blob through its chunk list (the store's const
// interface) and verifies its digest.
absl::StatusOr<std::string> ReadSmallBlob(const cas::BlobStore& store, const digest::Digest& blob,
                                          absl::string_view what) {
  absl::StatusOr<cas::BlobManifest> chunks = store.Manifest(blob);
  if (!chunks.ok()) {
    return absl::Status(chunks.status().code(),
                        absl::StrCat(what, " ", blob.ToString(), " is not in the store"));
  }
  if (chunks->size > kMaxJsonBytes) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", blob.ToString(), " is ", chunks->size,
                                                   " bytes, over the limit of ", kMaxJsonBytes));
  }
  std::string out;
  std::string chunk;
  for (const cas::ChunkRef& ref : chunks->chunks) {
    if (absl::Status status = store.ReadChunkBytes(ref.digest, &chunk); !status.ok()) {
      return status;
    }
    out += chunk;
  }
  if (digest::Sha256Of(out) != blob) {
    return absl::DataLossError(
        absl::StrCat(what, " ", blob.ToString(), ": stored bytes do not match the digest"));
  }
  return out;
}

// Stores one layer blob from `read`, verifying the blob digest (when the
// archive names it) and the diff id while it streams. Errors are prefixed
// with `what`. The descriptor's media type follows the compression found.
absl::StatusOr<Descriptor> IngestLayer(cas::BlobStore& store, PieceReader read,
                                       const std::optional<digest::Digest>& expected,
                                       const digest::Digest& diff_id, absl::string_view what) {
  LayerIngest ingest(store, {expected, std::nullopt, diff_id}, std::string(what),
                     absl::StatusCode::kInvalidArgument);
  while (true) {
    absl::StatusOr<absl::string_view> piece = read();
    if (!piece.ok()) return Prefixed(what, piece.status());
    if (piece->empty()) break;
    if (absl::Status status = ingest.Write(*piece); !status.ok()) return status;
  }
  return ingest.Commit();
}

// A JSON blob of a layout, read and checked against its descriptor.
absl::StatusOr<std::string> ReadLayoutBlob(const ImageArchive& files, const Descriptor& blob,
                                           absl::string_view what) {
  absl::StatusOr<std::string> name = files.Require(BlobPath(blob.digest), what);
  if (!name.ok()) return name.status();
  absl::StatusOr<std::string> bytes = files.ReadSmall(*name, kMaxJsonBytes);
  if (!bytes.ok()) return bytes.status();
  if (digest::Digest actual = digest::Sha256Of(*bytes); actual != blob.digest) {
    return absl::InvalidArgumentError(absl::StrCat(files.file().string(), ": ", *name,
                                                   ": content has digest ", actual.ToString(),
                                                   ", not ", blob.digest.ToString()));
  }
  if (bytes->size() != blob.size) {
    return absl::InvalidArgumentError(absl::StrCat(files.file().string(), ": ", *name, ": ",
                                                   bytes->size(), " bytes, its descriptor says ",
                                                   blob.size));
  }
  return bytes;
}

// Picks the entry of an index for `ref`: the one whose ref name names it,
// else the only one; among several, the one for this host's platform.
absl::StatusOr<PlatformDescriptor> ChooseEntry(const std::vector<PlatformDescriptor>& entries,
                                               const ImageRef* ref, absl::string_view what) {
  std::vector<const PlatformDescriptor*> candidates;
  if (ref != nullptr) {
    for (const PlatformDescriptor& entry : entries) {
      auto name = entry.descriptor.annotations.find(std::string(kRefNameAnnotation));
      if (name != entry.descriptor.annotations.end() && NamesRef(name->second, *ref)) {
        candidates.push_back(&entry);
      }
    }
  }
  if (candidates.empty()) {
    for (const PlatformDescriptor& entry : entries) candidates.push_back(&entry);
  }
  if (candidates.size() > 1) {
    std::vector<const PlatformDescriptor*> on_host;
    for (const PlatformDescriptor* entry : candidates) {
      if (OnHostPlatform(entry->platform)) on_host.push_back(entry);
    }
    if (!on_host.empty()) candidates = std::move(on_host);
  }
  if (candidates.size() == 1) return *candidates[0];
  if (candidates.empty()) return absl::InvalidArgumentError(absl::StrCat(what, ": no images"));
  std::vector<std::string> names;
  for (const PlatformDescriptor* entry : candidates) {
    auto name = entry->descriptor.annotations.find(std::string(kRefNameAnnotation));
    names.push_back(name != entry->descriptor.annotations.end()
                        ? absl::StrCat("\"", name->second, "\"")
                        : entry->descriptor.digest.ToString());
  }
  return absl::InvalidArgumentError(absl::StrCat(
      what, ": ", candidates.size(), " images and none named \"", ref != nullptr ? ref->tag : "",
      "\" for ", HostPlatform().String(), ": ", absl::StrJoin(names, ", ")));
}

// Streams the layers `names` (archive names, each with the blob digest the
// archive gives it, if any, and its diff id) into the store.
struct LayerFile {
  std::optional<digest::Digest> digest;
  digest::Digest diff_id;
  std::string what;  // "manifest.json: Layers[0]"
};

absl::StatusOr<std::map<std::string, Descriptor>> IngestLayers(
    cas::BlobStore& store, const ImageArchive& files,
    const std::map<std::string, LayerFile>& layers) {
  std::set<std::string> names;
  for (const auto& [name, layer] : layers) names.insert(name);
  std::map<std::string, Descriptor> out;
  absl::Status status = files.Visit(names, [&](const std::string& name, PieceReader read) {
    const LayerFile& layer = layers.at(name);
    absl::StatusOr<Descriptor> stored =
        IngestLayer(store, read, layer.digest, layer.diff_id,
                    absl::StrCat(files.file().string(), ": ", name, " (", layer.what, ")"));
    if (!stored.ok()) return stored.status();
    out.insert_or_assign(name, *std::move(stored));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

// The config's diff ids, one per layer.
absl::StatusOr<ImageConfig> ParseConfigFor(absl::string_view bytes, size_t layers,
                                           absl::string_view what) {
  absl::StatusOr<ImageConfig> config = ParseImageConfig(bytes);
  if (!config.ok()) return Prefixed(what, config.status());
  if (config->diff_ids.size() != layers) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": rootfs.diff_ids has ",
                                                   config->diff_ids.size(), " entries for ", layers,
                                                   " layers"));
  }
  return config;
}

// An OCI image layout (directory or tar): the manifest and its config are
// stored as they are, so the image keeps its manifest digest.
absl::StatusOr<digest::Digest> ImportOciLayout(cas::BlobStore& store, const ImageArchive& files,
                                               const ImageRef& ref) {
  const std::string file = files.file().string();
  absl::StatusOr<std::string> index_json = files.ReadSmall("index.json", kMaxJsonBytes);
  if (!index_json.ok()) return index_json.status();
  const std::string index_what = absl::StrCat(file, ": index.json");
  absl::StatusOr<std::vector<PlatformDescriptor>> index = ParseIndex(*index_json, index_what);
  if (!index.ok()) return index.status();
  absl::StatusOr<PlatformDescriptor> chosen = ChooseEntry(*index, &ref, index_what);
  if (!chosen.ok()) return chosen.status();
  Descriptor manifest_descriptor = chosen->descriptor;
  // Nested indexes (a multi-platform image): this host's platform.
  for (int depth = 0; IsIndexMediaType(manifest_descriptor.media_type); ++depth) {
    if (depth == 4) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": indexes nested too deep"));
    }
    const std::string what = absl::StrCat("index ", manifest_descriptor.digest.ToString());
    absl::StatusOr<std::string> nested = ReadLayoutBlob(files, manifest_descriptor, what);
    if (!nested.ok()) return nested.status();
    absl::StatusOr<std::vector<PlatformDescriptor>> entries =
        ParseIndex(*nested, absl::StrCat(file, ": ", what));
    if (!entries.ok()) return entries.status();
    std::vector<PlatformDescriptor> on_host;
    for (const PlatformDescriptor& entry : *entries) {
      if (OnHostPlatform(entry.platform)) on_host.push_back(entry);
    }
    if (on_host.empty()) {
      return absl::NotFoundError(
          absl::StrCat(file, ": ", what, ": no image for ", HostPlatform().String()));
    }
    manifest_descriptor = on_host[0].descriptor;
  }
  const std::string manifest_what =
      absl::StrCat("manifest ", manifest_descriptor.digest.ToString());
  absl::StatusOr<std::string> manifest_json =
      ReadLayoutBlob(files, manifest_descriptor, manifest_what);
  if (!manifest_json.ok()) return manifest_json.status();
  absl::StatusOr<Manifest> manifest =
      ParseManifest(*manifest_json, absl::StrCat(file, ": ", manifest_what));
  if (!manifest.ok()) return manifest.status();
  absl::StatusOr<std::string> config_json =
      ReadLayoutBlob(files, manifest->config, absl::StrCat(manifest_what, " config"));
  if (!config_json.ok()) return config_json.status();
  absl::StatusOr<ImageConfig> config =
      ParseConfigFor(*config_json, manifest->layers.size(),
                     absl::StrCat(file, ": config ", manifest->config.digest.ToString()));
  if (!config.ok()) return config.status();

  std::map<std::string, LayerFile> layers;
  for (size_t i = 0; i < manifest->layers.size(); ++i) {
    const Descriptor& layer = manifest->layers[i];
    const std::string what = absl::StrCat(manifest_what, " layers[", i, "]");
    absl::StatusOr<std::string> name = files.Require(BlobPath(layer.digest), what);
    if (!name.ok()) return name.status();
    auto [it, inserted] = layers.emplace(*name, LayerFile{layer.digest, config->diff_ids[i], what});
    if (!inserted && it->second.diff_id != config->diff_ids[i]) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": ", what, ": the same blob as ",
                                                     it->second.what, " with another diff id"));
    }
  }
  absl::StatusOr<std::map<std::string, Descriptor>> stored = IngestLayers(store, files, layers);
  if (!stored.ok()) return stored.status();
  for (size_t i = 0; i < manifest->layers.size(); ++i) {
    const Descriptor& layer = manifest->layers[i];
    if (stored->at(BlobPath(layer.digest)).size != layer.size) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": ", manifest_what, " layers[", i,
                                                     "]: size ", layer.size, ", the blob has ",
                                                     stored->at(BlobPath(layer.digest)).size));
    }
  }
  if (absl::Status status =
          store.Put(*config_json, manifest->config.digest, manifest->config.media_type);
      !status.ok()) {
    return status;
  }
  if (absl::Status status =
          store.Put(*manifest_json, manifest_descriptor.digest, manifest->media_type);
      !status.ok()) {
    return status;
  }
  return manifest_descriptor.digest;
}

// The digest a docker archive's file name gives its content, if any:
// "blobs/sha256/<hex>" or "<hex>.json" (a config named by the image id).
std::optional<digest::Digest> DigestFromName(absl::string_view name) {
  absl::string_view hex;
  if (absl::ConsumePrefix(&name, "blobs/sha256/")) {
    hex = name;
  } else if (absl::ConsumeSuffix(&name, ".json") && name.find('/') == absl::string_view::npos) {
    hex = name;
  } else {
    return std::nullopt;
  }
  absl::StatusOr<digest::Digest> d = digest::Digest::Parse(absl::StrCat("sha256:", hex));
  if (!d.ok()) return std::nullopt;
  return *std::move(d);
}

// A docker archive (`docker save`): its config is kept as it is (its digest is
// the image id), its layers as they are, and a fresh OCI manifest names them.
absl::StatusOr<digest::Digest> ImportDockerArchive(cas::BlobStore& store, const ImageArchive& files,
                                                   const ImageRef& ref) {
  const std::string file = files.file().string();
  absl::StatusOr<std::string> text = files.ReadSmall("manifest.json", kMaxJsonBytes);
  if (!text.ok()) return text.status();
  const std::string what = absl::StrCat(file, ": manifest.json");
  Json document = Json::parse(text->begin(), text->end(), nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded() || !document.is_array() || document.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": expected a JSON array of {Config, RepoTags, Layers}"));
  }
  std::vector<size_t> matching;
  std::vector<std::string> all_tags;
  for (size_t i = 0; i < document.size(); ++i) {
    if (!document[i].is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": [", i, "]: expected an object"));
    }
    auto tags = document[i].find("RepoTags");
    if (tags == document[i].end() || !tags->is_array()) continue;
    for (const Json& tag : *tags) {
      if (!tag.is_string()) continue;
      all_tags.push_back(tag.get<std::string>());
      if (NamesRef(tag.get<std::string>(), ref)) {
        matching.push_back(i);
        break;
      }
    }
  }
  if (matching.empty() && document.size() == 1) matching.push_back(0);
  if (matching.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", document.size(),
                                                   " images and none tagged \"", ref.String(),
                                                   "\": ", absl::StrJoin(all_tags, ", ")));
  }
  const Json& entry = document[matching[0]];
  const std::string entry_what = absl::StrCat("manifest.json[", matching[0], "]");

  absl::StatusOr<std::string> config_path =
      StringField(entry, "Config", absl::StrCat(what, "[", matching[0], "]."));
  if (!config_path.ok()) return config_path.status();
  absl::StatusOr<std::string> config_name =
      files.Require(*config_path, absl::StrCat(entry_what, ".Config"));
  if (!config_name.ok()) return config_name.status();
  auto layer_paths = entry.find("Layers");
  if (layer_paths == entry.end() || !layer_paths->is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, "[", matching[0], "].Layers: expected an array"));
  }
  std::vector<std::string> layer_names;
  for (size_t i = 0; i < layer_paths->size(); ++i) {
    const std::string field = absl::StrCat(entry_what, ".Layers[", i, "]");
    if (!(*layer_paths)[i].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": ", field, ": expected a string"));
    }
    absl::StatusOr<std::string> name = files.Require((*layer_paths)[i].get<std::string>(), field);
    if (!name.ok()) return name.status();
    layer_names.push_back(*std::move(name));
  }

  absl::StatusOr<std::string> config_json = files.ReadSmall(*config_name, kMaxJsonBytes);
  if (!config_json.ok()) return config_json.status();
  const digest::Digest config_digest = digest::Sha256Of(*config_json);
  if (std::optional<digest::Digest> named = DigestFromName(*config_name);
      named && *named != config_digest) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": ", *config_name, " (", entry_what, ".Config): content has digest ",
                     config_digest.ToString(), ", not ", named->ToString()));
  }
  absl::StatusOr<ImageConfig> config =
      ParseConfigFor(*config_json, layer_names.size(), absl::StrCat(file, ": ", *config_name));
  if (!config.ok()) return config.status();

  std::map<std::string, LayerFile> layers;
  for (size_t i = 0; i < layer_names.size(); ++i) {
    const std::string field = absl::StrCat(entry_what, ".Layers[", i, "]");
    auto [it, inserted] = layers.emplace(
        layer_names[i], LayerFile{DigestFromName(layer_names[i]), config->diff_ids[i], field});
    if (!inserted && it->second.diff_id != config->diff_ids[i]) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": ", field, ": the same file as ",
                                                     it->second.what, " with another diff id"));
    }
  }
  absl::StatusOr<std::map<std::string, Descriptor>> stored = IngestLayers(store, files, layers);
  if (!stored.ok()) return stored.status();
  std::vector<Descriptor> layer_descriptors;
  for (const std::string& name : layer_names) layer_descriptors.push_back(stored->at(name));

  const Descriptor config_descriptor{
      std::string(kImageConfigMediaType), config_digest, config_json->size(), {}};
  if (absl::Status status = store.Put(*config_json, config_digest, kImageConfigMediaType);
      !status.ok()) {
    return status;
  }
  const std::string manifest = SerializeManifest(config_descriptor, layer_descriptors);
  const digest::Digest manifest_digest = digest::Sha256Of(manifest);
  if (absl::Status status = store.Put(manifest, manifest_digest, kManifestMediaType);
      !status.ok()) {
    return status;
  }
  return manifest_digest;
}

// ---------------------------------------------------------------------------
// Root filesystem tars.

// The config `docker import` makes: this host's platform and nothing else,
// then the --change instructions (expanded against the config's environment
// as they come; they add no history, as with docker import).
absl::StatusOr<ImageConfig> RootfsConfig(absl::Span<const std::string> changes) {
  const Platform host = HostPlatform();
  ImageConfig base;
  base.architecture = host.architecture;
  base.os = host.os;
  base.variant = host.variant;
  StageImage image(std::move(base));
  const dockerfile::ShellLexer lexer('\\');
  for (const std::string& change : changes) {
    const std::string what = absl::StrCat("--change \"", change, "\"");
    absl::StatusOr<dockerfile::ParseResult> parsed = dockerfile::Parse(change, "--change");
    if (!parsed.ok()) return Prefixed(what, parsed.status());
    if (parsed->children.size() != 1) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": expected one instruction"));
    }
    absl::StatusOr<dockerfile::Instruction> instruction =
        dockerfile::ParseInstruction(parsed->children[0]);
    if (!instruction.ok()) return Prefixed(what, instruction.status());
    const bool allowed = std::holds_alternative<dockerfile::Cmd>(*instruction) ||
                         std::holds_alternative<dockerfile::Entrypoint>(*instruction) ||
                         std::holds_alternative<dockerfile::Env>(*instruction) ||
                         std::holds_alternative<dockerfile::Expose>(*instruction) ||
                         std::holds_alternative<dockerfile::Label>(*instruction) ||
                         std::holds_alternative<dockerfile::Onbuild>(*instruction) ||
                         std::holds_alternative<dockerfile::Stopsignal>(*instruction) ||
                         std::holds_alternative<dockerfile::User>(*instruction) ||
                         std::holds_alternative<dockerfile::Volume>(*instruction) ||
                         std::holds_alternative<dockerfile::Workdir>(*instruction);
    if (!allowed) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": ", dockerfile::BaseOf(*instruction).keyword,
          " is not allowed; only CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, "
          "VOLUME and WORKDIR"));
    }
    const dockerfile::ShellEnv env(image.config().config.env);
    absl::StatusOr<graph::ExpandedInstruction> expanded = graph::Expand(*instruction, lexer, env);
    if (!expanded.ok()) return Prefixed(what, expanded.status());
    if (absl::Status status = image.Apply(expanded->instruction); !status.ok()) {
      return Prefixed(what, status);
    }
  }
  ImageConfig config = image.config();
  config.history.clear();
  return config;
}

// Stores the root filesystem tar `file`, decompressed, as one uncompressed
// layer (its blob digest is its diff id).
absl::StatusOr<Descriptor> StoreRootfsLayer(cas::BlobStore& store, const stdfs::path& file) {
  {
    // It must be a tar: read every header once.
    absl::StatusOr<TarReader> tar = OpenTarReader(file);
    if (!tar.ok()) return tar.status();
    archive_entry* entry;
    int result;
    while ((result = archive_read_next_header(tar->get(), &entry)) == ARCHIVE_OK ||
           result == ARCHIVE_WARN) {
    }
    if (result != ARCHIVE_EOF) {
      return absl::InvalidArgumentError(
          absl::StrCat(file.string(), ": not a readable tar: ", archive_error_string(tar->get())));
    }
  }
  TarReader a(archive_read_new());
  archive_read_support_filter_all(a.get());
  archive_read_support_format_raw(a.get());
  archive_entry* entry;
  if (archive_read_open_filename(a.get(), file.c_str(), 64 * 1024) != ARCHIVE_OK ||
      archive_read_next_header(a.get(), &entry) != ARCHIVE_OK) {
    return absl::InvalidArgumentError(
        absl::StrCat(file.string(), ": cannot read: ", archive_error_string(a.get())));
  }
  std::unique_ptr<cas::BlobWriter> writer = store.NewWriter();
  digest::Sha256 hash;
  std::string buffer(256 * 1024, '\0');
  while (true) {
    const la_ssize_t n = archive_read_data(a.get(), buffer.data(), buffer.size());
    if (n < 0) {
      return absl::DataLossError(absl::StrCat(file.string(), ": ", archive_error_string(a.get())));
    }
    if (n == 0) break;
    const absl::string_view piece(buffer.data(), static_cast<size_t>(n));
    if (absl::Status status = writer->Write(piece); !status.ok()) return status;
    hash.Update(piece);
  }
  const digest::Digest blob = hash.Finish();
  const std::string media_type = LayerMediaType(LayerCompression::kNone);
  const uint64_t size = writer->size();
  if (absl::Status status = writer->Commit(blob, media_type); !status.ok()) return status;
  return Descriptor{media_type, blob, size, {}};
}

absl::StatusOr<digest::Digest> ImportRootfs(cas::BlobStore& store, const stdfs::path& file,
                                            absl::Span<const std::string> changes) {
  absl::StatusOr<ImageConfig> config = RootfsConfig(changes);
  if (!config.ok()) return config.status();
  std::error_code ec;
  if (!stdfs::is_regular_file(file, ec)) {
    return absl::NotFoundError(absl::StrCat(file.string(), ": not a file"));
  }
  absl::StatusOr<Descriptor> layer = StoreRootfsLayer(store, file);
  if (!layer.ok()) return layer.status();
  config->diff_ids = {layer->digest};
  config->history = {
      {std::nullopt, "", "", absl::StrCat("Imported from ", file.filename().string()), false}};
  absl::StatusOr<LayoutImage> image = StoreImage(store, *config, {*layer});
  if (!image.ok()) return image.status();
  return image->manifest.digest;
}

std::string RefName(const ImageRef& ref) { return absl::StrCat(kImageRefPrefix, ref.String()); }

absl::Status NotFoundLocally(const ImageRef& ref) {
  return absl::NotFoundError(absl::StrCat("image \"", ref.String(), "\" not found locally"));
}

}  // namespace

absl::StatusOr<LocalImage> ReadImage(const cas::BlobStore& store, const digest::Digest& manifest) {
  absl::StatusOr<std::string> manifest_json = ReadSmallBlob(store, manifest, "manifest");
  if (!manifest_json.ok()) return manifest_json.status();
  const std::string what = absl::StrCat("manifest ", manifest.ToString());
  absl::StatusOr<Manifest> parsed = ParseManifest(*manifest_json, what);
  if (!parsed.ok()) return parsed.status();
  absl::StatusOr<std::string> config_json = ReadSmallBlob(store, parsed->config.digest, "config");
  if (!config_json.ok()) return config_json.status();
  absl::StatusOr<ImageConfig> config =
      ParseConfigFor(*config_json, parsed->layers.size(),
                     absl::StrCat("config ", parsed->config.digest.ToString()));
  if (!config.ok()) return config.status();
  std::vector<digest::Digest> layer_digests;
  for (const Descriptor& layer : parsed->layers) layer_digests.push_back(layer.digest);
  absl::StatusOr<std::vector<digest::Digest>> missing = store.FindMissing(layer_digests);
  if (!missing.ok()) return missing.status();
  if (!missing->empty()) {
    return absl::NotFoundError(
        absl::StrCat(what, ": layer ", (*missing)[0].ToString(), " is not in the store"));
  }
  return LocalImage{Descriptor{parsed->media_type, manifest, manifest_json->size(), {}},
                    std::move(parsed->config), *std::move(config), std::move(parsed->layers)};
}

absl::StatusOr<LocalImage> ResolveImage(const cas::BlobStore& store, const ImageRef& ref) {
  if (!ref.digest.empty()) {
    absl::StatusOr<digest::Digest> d = digest::Digest::Parse(ref.digest);
    if (!d.ok()) return d.status();
    // A pull by the digest of an index recorded the manifest it chose.
    if (absl::StatusOr<digest::Digest> recorded = store.GetRef(RefName(ref)); recorded.ok()) {
      return ReadImage(store, *recorded);
    }
    absl::StatusOr<bool> has = store.Has(*d);
    if (!has.ok()) return has.status();
    if (!*has) return NotFoundLocally(ref);
    return ReadImage(store, *d);
  }
  absl::StatusOr<digest::Digest> manifest = store.GetRef(RefName(ref));
  if (absl::IsNotFound(manifest.status())) return NotFoundLocally(ref);
  if (!manifest.ok()) return manifest.status();
  return ReadImage(store, *manifest);
}

absl::Status TagImage(cas::BlobStore& store, const ImageRef& ref, const digest::Digest& manifest) {
  if (ref.digest.empty() == ref.tag.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot tag an image \"", ref.String(),
                     "\": a tag needs a name:tag or a name@digest reference"));
  }
  return store.SetRef(RefName(ref), manifest);
}

absl::StatusOr<std::vector<std::pair<std::string, digest::Digest>>> ListImages(
    const cas::BlobStore& store) {
  absl::StatusOr<std::vector<std::pair<std::string, digest::Digest>>> refs =
      store.ListRefs(kImageRefPrefix);
  if (!refs.ok()) return refs.status();
  for (auto& [name, manifest] : *refs) name.erase(0, kImageRefPrefix.size());
  return refs;
}

absl::Status UntagImage(cas::BlobStore& store, const ImageRef& ref) {
  absl::Status status = store.DeleteRef(RefName(ref));
  if (absl::IsNotFound(status)) return NotFoundLocally(ref);
  return status;
}

absl::StatusOr<LocalImage> ImportImage(cas::BlobStore& store, const std::filesystem::path& file,
                                       const ImageRef& ref, const ImportOptions& options) {
  if (!ref.digest.empty() || ref.tag.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot import as \"", ref.String(), "\": give a name and tag, not a digest"));
  }
  if (!options.rootfs && !options.changes.empty()) {
    return absl::InvalidArgumentError("--change applies only to a root filesystem import");
  }
  absl::StatusOr<digest::Digest> manifest = [&]() -> absl::StatusOr<digest::Digest> {
    if (options.rootfs) return ImportRootfs(store, file, options.changes);
    absl::StatusOr<ImageArchive> files = ImageArchive::Open(file);
    if (!files.ok()) return files.status();
    absl::StatusOr<bool> oci = files->Has("index.json");
    if (!oci.ok()) return oci.status();
    if (*oci) return ImportOciLayout(store, *files, ref);
    absl::StatusOr<bool> docker = files->Has("manifest.json");
    if (!docker.ok()) return docker.status();
    if (*docker) return ImportDockerArchive(store, *files, ref);
    return absl::InvalidArgumentError(absl::StrCat(
        file.string(),
        ": neither an OCI image layout (index.json) nor a docker archive (manifest.json); "
        "a root filesystem tar needs --rootfs"));
  }();
  if (!manifest.ok()) return manifest.status();
  absl::StatusOr<LocalImage> image = ReadImage(store, *manifest);
  if (!image.ok()) return image.status();
  if (absl::Status status = TagImage(store, ref, *manifest); !status.ok()) return status;
  return image;
}

}  // namespace stagefarm::oci
