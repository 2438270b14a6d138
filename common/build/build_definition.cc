#include "common/build/build_definition.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "capnp/message.h"
#include "capnp/serialize.h"
#include "common/oci/image.h"
#include "kj/array.h"
#include "kj/exception.h"
#include "zstd.h"

namespace stagefarm::build {
namespace {

absl::StatusOr<digest::Digest> ParseDigestField(absl::string_view field, absl::string_view text) {
  absl::StatusOr<digest::Digest> parsed = digest::Digest::Parse(text);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " \"", absl::CHexEscape(text.substr(0, 100)), "\": ", parsed.status().message()));
  }
  return parsed;
}

std::string Text(capnp::Text::Reader text) { return std::string(text.cStr(), text.size()); }

// A context index to and from the wire (BuildDefinition.context and
// NamedContext.context).
void ToSchema(const fs::ContextIndex& index, capnp::List<schema::ContextEntry>::Builder context);
absl::StatusOr<fs::ContextIndex> FromSchema(capnp::List<schema::ContextEntry>::Reader context);

}  // namespace

const NamedImage* BuildDefinition::FindImage(const oci::ImageRef& ref) const {
  const std::string wanted = ref.String();
  for (const NamedImage& image : images) {
    if (image.ref.String() == wanted) return &image;
  }
  return nullptr;
}

const NamedContext* BuildDefinition::FindNamedContext(absl::string_view name) const {
  for (const NamedContext& context : named_contexts) {
    if (context.name == name) return &context;
  }
  return nullptr;
}

std::map<std::string, graph::NamedContextSource> NamedContextSources(
    const std::vector<NamedContext>& contexts) {
  std::map<std::string, graph::NamedContextSource> sources;
  for (const NamedContext& context : contexts) {
    graph::NamedContextSource& source = sources[context.name];
    if (context.image) {
      source.kind = graph::NamedContextSource::Kind::kImage;
      source.image = *context.image;
    }
  }
  return sources;
}

graph::NamedContextIndexes NamedContextIndexes(const std::vector<NamedContext>& contexts) {
  graph::NamedContextIndexes indexes;
  for (const NamedContext& context : contexts) {
    if (!context.image) indexes[context.name] = &context.context;
  }
  return indexes;
}

absl::StatusOr<PlannedBuild> PlanBuild(const BuildDefinition& definition) {
  PlannedBuild plan;
  const std::string& file = definition.dockerfile_name;
  absl::StatusOr<dockerfile::ParseResult> ast = dockerfile::Parse(definition.dockerfile, file);
  if (!ast.ok()) return ast.status();
  plan.ast = *std::move(ast);
  absl::StatusOr<dockerfile::StagedDockerfile> staged = dockerfile::ParseStages(plan.ast, file);
  if (!staged.ok()) return staged.status();
  plan.staged = *std::move(staged);
  graph::PlanOptions options;
  options.filename = file;
  options.build_args = definition.build_args;
  options.target = definition.target;
  options.platform = definition.platform;
  options.named_contexts = NamedContextSources(definition.named_contexts);
  options.image_config = [&definition](const oci::ImageRef& ref,
                                       const oci::Platform&) -> std::optional<graph::ImageConfig> {
    const NamedImage* image = definition.FindImage(ref);
    if (image == nullptr) return std::nullopt;
    return graph::ImageConfig{image->image.config.config.env, image->image.config.config.on_build};
  };
  absl::StatusOr<graph::StageGraph> stage_graph =
      graph::BuildStageGraph(plan.staged, plan.ast.directives.escape_token, options);
  if (!stage_graph.ok()) return stage_graph.status();
  plan.graph = *std::move(stage_graph);
  absl::StatusOr<std::vector<std::optional<graph::StageKeys>>> keys = graph::ComputePlanCacheKeys(
      plan.graph, definition.context, file,
      [&definition](const oci::ImageRef& ref) -> std::optional<digest::Digest> {
        const NamedImage* image = definition.FindImage(ref);
        if (image == nullptr) return std::nullopt;
        return image->manifest;
      },
      NamedContextIndexes(definition.named_contexts));
  if (keys.ok()) {
    plan.keys = *std::move(keys);
  } else {
    plan.keys_error = keys.status();
  }
  return plan;
}

void ToSchema(const oci::Descriptor& layer, schema::Layer::Builder out) {
  out.setDigest(layer.digest.ToString());
  out.setSize(layer.size);
  out.setMediaType(layer.media_type);
}

absl::StatusOr<oci::Descriptor> FromSchema(schema::Layer::Reader in) {
  absl::StatusOr<digest::Digest> parsed = ParseDigestField("layer digest", Text(in.getDigest()));
  if (!parsed.ok()) return parsed.status();
  oci::Descriptor layer{Text(in.getMediaType()), *parsed, in.getSize(), {}};
  if (layer.media_type.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer ", layer.digest.ToString(), ": no media type"));
  }
  return layer;
}

void ToSchema(const oci::BuiltImage& image, schema::ImageData::Builder out) {
  const std::string config = oci::SerializeImageConfig(image.config);
  out.setConfig(
      capnp::Data::Reader(reinterpret_cast<const kj::byte*>(config.data()), config.size()));
  auto layers = out.initLayers(image.layers.size());
  for (size_t i = 0; i < image.layers.size(); ++i) ToSchema(image.layers[i], layers[i]);
}

absl::StatusOr<oci::BuiltImage> FromSchema(schema::ImageData::Reader in) {
  oci::BuiltImage image;
  const capnp::Data::Reader config = in.getConfig();
  absl::StatusOr<oci::ImageConfig> parsed = oci::ParseImageConfig(
      absl::string_view(reinterpret_cast<const char*>(config.begin()), config.size()));
  if (!parsed.ok()) return parsed.status();
  image.config = *std::move(parsed);
  for (schema::Layer::Reader layer : in.getLayers()) {
    absl::StatusOr<oci::Descriptor> descriptor = FromSchema(layer);
    if (!descriptor.ok()) return descriptor.status();
    image.layers.push_back(*std::move(descriptor));
  }
  if (image.layers.size() != image.config.diff_ids.size()) {
    return absl::InvalidArgumentError(absl::StrCat("image: ", image.layers.size(), " layers for ",
                                                   image.config.diff_ids.size(), " diff ids"));
  }
  return image;
}

void ToSchema(const BuildDefinition& definition, schema::BuildDefinition::Builder out) {
  out.setDockerfile(
      capnp::Data::Reader(reinterpret_cast<const kj::byte*>(definition.dockerfile.data()),
                          definition.dockerfile.size()));
  out.setDockerfileName(definition.dockerfile_name);
  auto args = out.initBuildArgs(definition.build_args.size());
  for (size_t i = 0; i < definition.build_args.size(); ++i) args.set(i, definition.build_args[i]);
  out.setTarget(definition.target);
  out.setPlatform(definition.platform);
  out.setHasSourceDateEpoch(definition.source_date_epoch.has_value());
  out.setSourceDateEpoch(definition.source_date_epoch.value_or(0));
  out.setNoCache(definition.no_cache);
  ToSchema(definition.context, out.initContext(definition.context.entries().size()));
  auto named = out.initNamedContexts(definition.named_contexts.size());
  for (size_t i = 0; i < definition.named_contexts.size(); ++i) {
    const NamedContext& context = definition.named_contexts[i];
    named[i].setName(context.name);
    if (context.image) named[i].setImage(context.image->String());
    ToSchema(context.context, named[i].initContext(context.context.entries().size()));
  }
  auto secrets = out.initSecrets(definition.secrets.size());
  size_t secret = 0;
  for (const auto& [id, value] : definition.secrets) {
    secrets[secret].setId(id);
    secrets[secret++].setValue(
        capnp::Data::Reader(reinterpret_cast<const kj::byte*>(value.data()), value.size()));
  }
  auto images = out.initImages(definition.images.size());
  for (size_t i = 0; i < definition.images.size(); ++i) {
    const NamedImage& image = definition.images[i];
    images[i].setRef(image.ref.String());
    ToSchema(image.image, images[i].initImage());
    if (image.manifest) images[i].setManifestDigest(image.manifest->ToString());
  }
}

namespace {

void ToSchema(const fs::ContextIndex& index, capnp::List<schema::ContextEntry>::Builder context) {
  const std::vector<fs::ContextEntry>& entries = index.entries();
  for (size_t i = 0; i < entries.size(); ++i) {
    const fs::ContextEntry& entry = entries[i];
    auto item = context[i];
    item.setPath(entry.path);
    switch (entry.type) {
      case fs::EntryType::kFile:
        item.setType(schema::ContextEntry::Type::FILE);
        break;
      case fs::EntryType::kDirectory:
        item.setType(schema::ContextEntry::Type::DIRECTORY);
        break;
      case fs::EntryType::kSymlink:
        item.setType(schema::ContextEntry::Type::SYMLINK);
        break;
    }
    item.setMode(entry.mode);
    item.setUid(entry.uid);
    item.setGid(entry.gid);
    item.setSize(entry.size);
    if (entry.content) item.setContent(entry.content->ToString());
    item.setLinkTarget(entry.link_target);
    item.setMtimeNs(entry.mtime_ns);
  }
}

absl::StatusOr<fs::ContextIndex> FromSchema(capnp::List<schema::ContextEntry>::Reader context) {
  std::vector<fs::ContextEntry> entries;
  entries.reserve(context.size());
  for (schema::ContextEntry::Reader item : context) {
    fs::ContextEntry entry;
    entry.path = Text(item.getPath());
    switch (item.getType()) {
      case schema::ContextEntry::Type::FILE:
        entry.type = fs::EntryType::kFile;
        break;
      case schema::ContextEntry::Type::DIRECTORY:
        entry.type = fs::EntryType::kDirectory;
        break;
      case schema::ContextEntry::Type::SYMLINK:
        entry.type = fs::EntryType::kSymlink;
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("context entry \"", absl::CHexEscape(entry.path), "\": unknown type ",
                         static_cast<int>(item.getType())));
    }
    entry.mode = item.getMode();
    entry.uid = item.getUid();
    entry.gid = item.getGid();
    entry.size = item.getSize();
    if (item.hasContent() && item.getContent().size() > 0) {
      absl::StatusOr<digest::Digest> content = ParseDigestField(
          absl::StrCat("context entry \"", absl::CHexEscape(entry.path), "\" content"),
          Text(item.getContent()));
      if (!content.ok()) return content.status();
      entry.content = *content;
    }
    entry.link_target = Text(item.getLinkTarget());
    entry.mtime_ns = item.getMtimeNs();
    entries.push_back(std::move(entry));
  }
  return fs::ContextIndex::FromEntries(std::move(entries));
}

}  // namespace

absl::StatusOr<BuildDefinition> FromSchema(schema::BuildDefinition::Reader in) {
  BuildDefinition definition;
  const capnp::Data::Reader dockerfile = in.getDockerfile();
  definition.dockerfile.assign(reinterpret_cast<const char*>(dockerfile.begin()),
                               dockerfile.size());
  definition.dockerfile_name = Text(in.getDockerfileName());
  if (definition.dockerfile_name.empty()) definition.dockerfile_name = "Dockerfile";
  for (capnp::Text::Reader arg : in.getBuildArgs()) {
    std::string text = Text(arg);
    if (text.find('=') == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("build arg \"", absl::CHexEscape(text), "\": expected NAME=value"));
    }
    definition.build_args.push_back(std::move(text));
  }
  definition.target = Text(in.getTarget());
  definition.platform = Text(in.getPlatform());
  if (in.getHasSourceDateEpoch()) {
    if (in.getSourceDateEpoch() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("SOURCE_DATE_EPOCH ", in.getSourceDateEpoch(), " is negative"));
    }
    definition.source_date_epoch = in.getSourceDateEpoch();
  }
  definition.no_cache = in.getNoCache();
  absl::StatusOr<fs::ContextIndex> context = FromSchema(in.getContext());
  if (!context.ok()) return context.status();
  definition.context = *std::move(context);
  for (schema::NamedContext::Reader item : in.getNamedContexts()) {
    NamedContext named;
    named.name = Text(item.getName());
    absl::StatusOr<std::string> normal = graph::NamedContextName(named.name);
    if (!normal.ok() || *normal != named.name) {
      return absl::InvalidArgumentError(
          absl::StrCat("named context \"", absl::CHexEscape(named.name), "\": not a context name"));
    }
    if (definition.FindNamedContext(named.name) != nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("named context \"", named.name, "\" given twice"));
    }
    if (item.getImage().size() > 0) {
      absl::StatusOr<oci::ImageRef> ref = oci::ParseImageRef(Text(item.getImage()));
      if (!ref.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("named context ", named.name, ": image \"",
                                                       absl::CHexEscape(Text(item.getImage())),
                                                       "\": ", ref.status().message()));
      }
      named.image = *std::move(ref);
    }
    absl::StatusOr<fs::ContextIndex> index = FromSchema(item.getContext());
    if (!index.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("named context ", named.name, ": ", index.status().message()));
    }
    named.context = *std::move(index);
    definition.named_contexts.push_back(std::move(named));
  }
  std::sort(definition.named_contexts.begin(), definition.named_contexts.end(),
            [](const NamedContext& a, const NamedContext& b) { return a.name < b.name; });
  for (schema::NamedImage::Reader item : in.getImages()) {
    NamedImage image;
    absl::StatusOr<oci::ImageRef> ref = oci::ParseImageRef(Text(item.getRef()));
    if (!ref.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image \"", absl::CHexEscape(Text(item.getRef())), "\": ", ref.status().message()));
    }
    image.ref = *std::move(ref);
    absl::StatusOr<oci::BuiltImage> built = FromSchema(item.getImage());
    if (!built.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("image ", image.ref.String(), ": ", built.status().message()));
    }
    image.image = *std::move(built);
    if (item.getManifestDigest().size() > 0) {
      absl::StatusOr<digest::Digest> manifest = ParseDigestField(
          absl::StrCat("image ", image.ref.String(), " manifest"), Text(item.getManifestDigest()));
      if (!manifest.ok()) return manifest.status();
      image.manifest = *manifest;
    }
    definition.images.push_back(std::move(image));
  }
  for (schema::Secret::Reader item : in.getSecrets()) {
    const capnp::Data::Reader value = item.getValue();
    std::string id = Text(item.getId());
    std::string bytes(reinterpret_cast<const char*>(value.begin()), value.size());
    if (absl::Status ok = CheckSecret(id, bytes); !ok.ok()) return ok;
    if (!definition.secrets.emplace(std::move(id), std::move(bytes)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("secret \"", absl::CHexEscape(Text(item.getId())), "\" given twice"));
    }
  }
  return definition;
}

absl::Status CheckSecret(absl::string_view id, absl::string_view value) {
  const bool id_ok =
      !id.empty() && id.size() <= 256 && std::all_of(id.begin(), id.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
               c == '-';
      });
  if (!id_ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("secret id \"", absl::CHexEscape(id.substr(0, 300)),
                     "\": 1 to 256 letters, digits, '.', '_' or '-'"));
  }
  if (value.size() > kMaxSecretBytes) {
    // The value itself is never shown.
    return absl::InvalidArgumentError(absl::StrCat("secret \"", id, "\" is ", value.size(),
                                                   " bytes; the limit is ", kMaxSecretBytes));
  }
  return absl::OkStatus();
}

std::string SerializeDefinition(schema::BuildDefinition::Reader definition) {
  capnp::MallocMessageBuilder message;
  message.setRoot(definition);
  const kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  const kj::ArrayPtr<const kj::byte> bytes = words.asBytes();
  // Dockerfiles and context listings are text: zstd makes a large build's
  // definition about a tenth of the size, and it goes to every worker.
  std::string frame(ZSTD_compressBound(bytes.size()), '\0');
  const size_t size = ZSTD_compress(frame.data(), frame.size(), bytes.begin(), bytes.size(), 3);
  frame.resize(ZSTD_isError(size) ? 0 : size);
  return frame;
}

absl::StatusOr<BuildDefinition> ParseDefinition(absl::string_view frame, absl::string_view from) {
  const unsigned long long size = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN) {
    return absl::InvalidArgumentError(absl::StrCat(from, ": a build definition frame of ",
                                                   frame.size(), " bytes that is not zstd"));
  }
  if (size == 0 || size > kMaxDefinitionBytes || size % sizeof(capnp::word) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(from, ": a build definition of ", size,
                                                   " bytes (whole words up to ",
                                                   kMaxDefinitionBytes, ")"));
  }
  // Cap'n Proto needs word alignment: decompressed straight into words.
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(size / sizeof(capnp::word));
  const size_t got = ZSTD_decompress(words.begin(), size, frame.data(), frame.size());
  if (ZSTD_isError(got) || got != size) {
    return absl::InvalidArgumentError(
        absl::StrCat(from, ": a corrupt build definition frame: ",
                     ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short"));
  }
  capnp::ReaderOptions options;
  // Every word may be traversed a few times (text read twice, lists of
  // structs); a message that asks for more is not a definition.
  options.traversalLimitInWords = words.size() * 4;
  options.nestingLimit = 16;
  try {
    capnp::FlatArrayMessageReader reader(words, options);
    if (reader.getEnd() != words.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(from, ": a build definition frame with ",
                       (words.end() - reader.getEnd()) * sizeof(capnp::word), " trailing bytes"));
    }
    const schema::BuildDefinition::Reader root = reader.getRoot<schema::BuildDefinition>();
    root.totalSize();  // bounds-checks every pointer before any field is read
    absl::StatusOr<BuildDefinition> definition = FromSchema(root);
    if (!definition.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(from, ": build definition: ", definition.status().message()));
    }
    return definition;
  } catch (const kj::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(from, ": malformed build definition frame: ", e.getDescription().cStr()));
  }
}

}  // namespace stagefarm::build
