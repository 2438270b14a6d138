#include "cli/image_command.h"

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cli/output_spec.h"
#include "cli/progress.h"
#include "cli/remote_images.h"
#include "cli/subcommand.h"
#include "common/cas/blob_store.h"
#include "common/oci/exported_image.h"
#include "common/oci/image_layout.h"
#include "common/oci/image_ref.h"
#include "common/oci/layer_compress.h"
#include "common/oci/local_images.h"
#include "common/oci/platform.h"
#include "nlohmann/json.hpp"

namespace stagefarm::cli {
namespace {

constexpr char kImageUsage[] =
    "stagefarm image import|pull|push|export|ls|rm|inspect ...\n"
    "  import [--rootfs] [--change INSTRUCTION]... FILE NAME[:TAG]\n"
    "  pull [--platform P] [--insecure-registry HOST]... [--format text|json] REF\n"
    "  push [--insecure-registry HOST]... [--format text|json] LOCAL [REMOTE]\n"
    "  export --output type=oci|docker,dest=PATH[,compression=gzip|zstd|uncompressed]"
    "[,compression-level=N] NAME\n"
    "  ls [--format table|json]\n"
    "  rm NAME...\n"
    "  inspect NAME";
constexpr char kImportUsage[] =
    "stagefarm image import [--rootfs] [--change INSTRUCTION]... FILE NAME[:TAG]";
constexpr char kPullUsage[] =
    "stagefarm image pull [--platform P] [--insecure-registry HOST]... [--format text|json] REF";
constexpr char kPushUsage[] =
    "stagefarm image push [--insecure-registry HOST]... [--compression gzip|zstd] "
    "[--compression-level N] [--upload-chunk-size BYTES] [--format text|json] LOCAL [REMOTE]";
constexpr char kExportUsage[] =
    "stagefarm image export --output type=oci|docker,dest=PATH[,compression=gzip|zstd|"
    "uncompressed][,compression-level=N] NAME";
constexpr char kLsUsage[] = "stagefarm image ls [--format table|json]";
constexpr char kRmUsage[] = "stagefarm image rm NAME...";
constexpr char kInspectUsage[] = "stagefarm image inspect NAME";

// The local node's content store, made if missing.
absl::StatusOr<std::unique_ptr<cas::BlobStore>> OpenLocalStore(const ParsedArgs& args) {
  absl::StatusOr<std::filesystem::path> data_dir = LocalDataDir(args);
  if (!data_dir.ok()) return data_dir.status();
  std::error_code ec;
  std::filesystem::create_directories(*data_dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat(data_dir->string(), ": cannot create directory: ", ec.message()));
  }
  return cas::BlobStore::Open(*data_dir / "cas");
}

int Import(const std::vector<std::string>& args) {
  ParsedArgs parsed;
  if (auto stop = ParseCommand(
          args, kImportUsage,
          {{"rootfs", "", false, false, "FILE is a root filesystem tar, made a one-layer image"},
           {"change", "c", true, true,
            "with --rootfs: apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, "
            "ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)"},
           DataDirFlag()},
          2, 2, "FILE and NAME[:TAG]", parsed)) {
    return *stop;
  }
  absl::StatusOr<oci::ImageRef> ref = oci::ParseImageRef(parsed.positional[1]);
  if (!ref.ok()) {
    return Fail(absl::StrCat("\"", parsed.positional[1], "\": ", ref.status().message()),
                kExitUsage);
  }
  oci::ImportOptions options;
  options.rootfs = parsed.Has("rootfs");
  options.changes = parsed.All("change");
  absl::StatusOr<std::unique_ptr<cas::BlobStore>> store = OpenLocalStore(parsed);
  if (!store.ok()) return Fail(store.status().message());
  absl::StatusOr<oci::LocalImage> image =
      oci::ImportImage(**store, parsed.positional[0], *ref, options);
  if (!image.ok()) return Fail(image.status().message());
  std::printf("%s\n%s\n", image->manifest.digest.ToString().c_str(), ref->String().c_str());
  return 0;
}

absl::StatusOr<std::string> TextOrJson(const ParsedArgs& parsed) {
  const std::string format = parsed.Get("format", "text");
  if (format != "text" && format != "json") {
    return absl::InvalidArgumentError(
        absl::StrCat("--format must be text or json, not \"", format, "\""));
  }
  return format;
}

absl::StatusOr<oci::ImageRef> ParseRefArg(const std::string& text) {
  absl::StatusOr<oci::ImageRef> ref = oci::ParseImageRef(text);
  if (!ref.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\": ", ref.status().message()));
  }
  return ref;
}

int Pull(const std::vector<std::string>& args) {
  ParsedArgs parsed;
  if (auto stop = ParseCommand(
          args, kPullUsage,
          {{"platform", "", true, false,
            "the platform to pick from a multi-platform image (default: this machine's)"},
           InsecureRegistryFlag(),
           {"format", "", true, false, "text (default: digest and reference) or json"},
           DataDirFlag()},
          "REF", parsed)) {
    return *stop;
  }
  absl::StatusOr<std::string> format = TextOrJson(parsed);
  if (!format.ok()) return Fail(format.status().message(), kExitUsage);
  absl::StatusOr<oci::ImageRef> ref = ParseRefArg(parsed.positional[0]);
  if (!ref.ok()) return Fail(ref.status().message(), kExitUsage);
  registry::PullOptions options;
  if (parsed.Has("platform")) {
    absl::StatusOr<oci::Platform> platform = oci::ParsePlatform(parsed.Get("platform"));
    if (!platform.ok()) {
      return Fail(absl::StrCat("--platform: ", platform.status().message()), kExitUsage);
    }
    options.platform = *platform;
  }
  absl::StatusOr<std::unique_ptr<cas::BlobStore>> store = OpenLocalStore(parsed);
  if (!store.ok()) return Fail(store.status().message());
  registry::RegistryClient client(ref->domain, RegistryOptionsFromFlags(parsed));
  absl::StatusOr<registry::PullResult> pulled = registry::PullImage(client, **store, *ref, options);
  if (!pulled.ok()) return Fail(pulled.status().message());
  const oci::LocalImage& image = pulled->image;
  const std::string platform =
      absl::StrCat(image.config.os, "/", image.config.architecture,
                   image.config.variant.empty() ? "" : "/", image.config.variant);
  if (*format == "json") {
    const nlohmann::json out = {{"ref", ref->String()},
                                {"digest", image.manifest.digest.ToString()},
                                {"mediaType", image.manifest.media_type},
                                {"platform", platform},
                                {"layers_fetched", pulled->layers_fetched},
                                {"layers_present", pulled->layers_present},
                                {"bytes_fetched", pulled->bytes_fetched}};
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("%s\n%s\n", image.manifest.digest.ToString().c_str(), ref->String().c_str());
  }
  return 0;
}

int Push(const std::vector<std::string>& args) {
  ParsedArgs parsed;
  if (auto stop = ParseCommand(
          args, kPushUsage,
          {InsecureRegistryFlag(),
           {"compression", "", true, false,
            "how uncompressed layers are compressed: gzip (default) or zstd"},
           {"compression-level", "", true, false,
            "gzip 0..9 (default 1) or zstd -131072..22 (default 3, as is 0)"},
           {"upload-chunk-size", "", true, false,
            "blobs larger than this go up in chunks of this many bytes (default 64 MiB)"},
           {"format", "", true, false, "text (default: the pushed digest) or json"},
           DataDirFlag()},
          1, 2, "LOCAL [REMOTE]", parsed)) {
    return *stop;
  }
  absl::StatusOr<std::string> format = TextOrJson(parsed);
  if (!format.ok()) return Fail(format.status().message(), kExitUsage);
  absl::StatusOr<oci::ImageRef> local = ParseRefArg(parsed.positional[0]);
  if (!local.ok()) return Fail(local.status().message(), kExitUsage);
  absl::StatusOr<oci::ImageRef> target =
      ParseRefArg(parsed.positional.size() > 1 ? parsed.positional[1] : parsed.positional[0]);
  if (!target.ok()) return Fail(target.status().message(), kExitUsage);
  if (!target->digest.empty()) {
    return Fail(absl::StrCat("\"", target->String(), "\": push to a name:tag, not a digest"),
                kExitUsage);
  }
  registry::RegistryOptions options = RegistryOptionsFromFlags(parsed);
  if (parsed.Has("upload-chunk-size") &&
      (!absl::SimpleAtoi(parsed.Get("upload-chunk-size"), &options.upload_chunk_size) ||
       options.upload_chunk_size == 0)) {
    return Fail(absl::StrCat("--upload-chunk-size must be a positive number of bytes, not \"",
                             parsed.Get("upload-chunk-size"), "\""),
                kExitUsage);
  }
  registry::PushOptions push;
  push.source = *local;
  const std::string compression = parsed.Get("compression", "gzip");
  if (compression == "zstd") {
    push.compress.compression = oci::LayerCompression::kZstd;
  } else if (compression != "gzip") {
    return Fail(absl::StrCat("--compression must be gzip or zstd, not \"", compression, "\""),
                kExitUsage);
  }
  if (parsed.Has("compression-level")) {
    absl::StatusOr<int> level = ParseCompressionLevel(
        "--compression-level", parsed.Get("compression-level"), push.compress.compression);
    if (!level.ok()) return Fail(level.status().message(), kExitUsage);
    push.compress.level = *level;
  }
  absl::StatusOr<std::unique_ptr<cas::BlobStore>> store = OpenLocalStore(parsed);
  if (!store.ok()) return Fail(store.status().message());
  absl::StatusOr<oci::LocalImage> image = oci::ResolveImage(**store, *local);
  if (!image.ok()) return Fail(image.status().message());
  absl::StatusOr<registry::PushResult> pushed =
      PushToRegistry(**store, *image, *target, options, push, stderr);
  if (!pushed.ok()) return Fail(pushed.status().message());
  if (*format == "json") {
    const nlohmann::json out = {{"ref", target->String()},
                                {"digest", pushed->manifest.ToString()},
                                {"mediaType", pushed->media_type},
                                {"size", pushed->manifest_size},
                                {"blobs_uploaded", pushed->blobs_uploaded},
                                {"blobs_mounted", pushed->blobs_mounted},
                                {"blobs_present", pushed->blobs_present},
                                {"bytes_uploaded", pushed->bytes_uploaded}};
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("%s\n", pushed->manifest.ToString().c_str());
  }
  return 0;
}

int Export(const std::vector<std::string>& args) {
  ParsedArgs parsed;
  if (auto stop = ParseCommand(args, kExportUsage,
                               {{"output", "o", true, false,
                                 "type=oci,dest=PATH (a tar; a directory when PATH ends in /) or "
                                 "type=docker,dest=PATH; compression=gzip (default), zstd or "
                                 "uncompressed; compression-level=N (gzip 0..9, zstd -131072..22)"},
                                DataDirFlag()},
                               "NAME", parsed)) {
    return *stop;
  }
  // `build -o`'s parser; an export writes only the two image types.
  absl::StatusOr<OutputSpec> spec = ParseOutput(parsed.Get("output"));
  if (!spec.ok()) return Fail(spec.status().message(), kExitUsage);
  if (spec->type != "oci" && spec->type != "docker") {
    return Fail("--output: type=oci or type=docker is required", kExitUsage);
  }
  absl::StatusOr<oci::ImageRef> ref = ParseRefArg(parsed.positional[0]);
  if (!ref.ok()) return Fail(ref.status().message(), kExitUsage);
  absl::StatusOr<std::unique_ptr<cas::BlobStore>> store = OpenLocalStore(parsed);
  if (!store.ok()) return Fail(store.status().message());
  absl::StatusOr<oci::LocalImage> image = oci::ResolveImage(**store, *ref);
  if (!image.ok()) return Fail(image.status().message());
  oci::CompressOptions compress;
  compress.compression = spec->compression.value_or(oci::LayerCompression::kGzip);
  compress.level = spec->compression_level;
  oci::LayoutImage layout{image->manifest, image->config_descriptor, image->layers, {}};
  if (!ref->tag.empty()) {
    layout.manifest.annotations[std::string(oci::kRefNameAnnotation)] = ref->tag;
    layout.repo_tags = {absl::StrCat(ref->Name(), ":", ref->tag)};
  }
  std::error_code error;
  if (spec->dest.has_parent_path()) {
    std::filesystem::create_directories(spec->dest.parent_path(), error);
  }
  if (error) return Fail(absl::StrCat("--output ", spec->dest.native(), ": ", error.message()));
  absl::StatusOr<oci::LayoutImage> exported = oci::WriteExport(
      **store, layout, compress, {{spec->dest, spec->directory, spec->type == "docker"}});
  if (!exported.ok()) return Fail(exported.status().message());
  std::printf("%s\n", exported->manifest.digest.ToString().c_str());
  return 0;
}

// "1.5MB" as docker prints sizes (decimal units).
int Ls(const std::vector<std::string>& args) {
  ParsedArgs parsed;
  if (auto stop = ParseCommand(
          args, kLsUsage, {{"format", "", true, false, "table (default) or json"}, DataDirFlag()},
          0, 0, "no arguments", parsed)) {
    return *stop;
  }
  const std::string format = parsed.Get("format", "table");
  if (format != "table" && format != "json") {
    return Fail(absl::StrCat("--format must be table or json, not \"", format, "\""), kExitUsage);
  }
  absl::StatusOr<std::unique_ptr<cas::BlobStore>> store = OpenLocalStore(parsed);
  if (!store.ok()) return Fail(store.status().message());
  auto images = oci::ListImages(**store);
  if (!images.ok()) return Fail(images.status().message());

  struct Row {
    std::string ref, digest, platform, size;
    uint64_t bytes = 0;
  };
  std::vector<Row> rows;
  for (const auto& [name, manifest] : *images) {
    Row row{name, manifest.ToString(), "?", "?"};
    // An image whose blobs are damaged is still listed, so that it can be removed.
    if (absl::StatusOr<oci::LocalImage> image = oci::ReadImage(**store, manifest); image.ok()) {
      row.platform = absl::StrCat(image->config.os, "/", image->config.architecture,
                                  image->config.variant.empty() ? "" : "/", image->config.variant);
      row.bytes = image->manifest.size + image->config_descriptor.size;
      for (const oci::Descriptor& layer : image->layers) row.bytes += layer.size;
      row.size = FormatBytes(row.bytes, "");  // as docker image ls
    }
    rows.push_back(std::move(row));
  }
  if (format == "json") {
    nlohmann::json out = nlohmann::json::array();
    for (const Row& row : rows) {
      out.push_back({{"ref", row.ref},
                     {"digest", row.digest},
                     {"platform", row.platform},
                     {"size", row.bytes}});
    }
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  size_t ref_width = 9, platform_width = 8;  // the headings
  for (const Row& row : rows) {
    ref_width = std::max(ref_width, row.ref.size());
    platform_width = std::max(platform_width, row.platform.size());
  }
  const auto print = [&](absl::string_view ref, absl::string_view digest,
                         absl::string_view platform, absl::string_view size) {
    std::printf("%s\n", absl::StrFormat("%-*s  %-19s  %-*s  %s", ref_width, ref, digest,
                                        platform_width, platform, size)
                            .c_str());
  };
  print("REFERENCE", "DIGEST", "PLATFORM", "SIZE");
  for (const Row& row : rows) {
    // "sha256:" and the first 12 hex digits, as docker shortens image ids.
    print(row.ref, absl::string_view(row.digest).substr(0, 19), row.platform, row.size);
  }
  return 0;
}

int Rm(const std::vector<std::string>& args) {
  ParsedArgs parsed;
  if (auto stop =
          ParseCommand(args, kRmUsage, {DataDirFlag()}, 1, SIZE_MAX, "at least one NAME", parsed)) {
    return *stop;
  }
  absl::StatusOr<std::unique_ptr<cas::BlobStore>> store = OpenLocalStore(parsed);
  if (!store.ok()) return Fail(store.status().message());
  int exit_code = 0;
  for (const std::string& name : parsed.positional) {
    absl::StatusOr<oci::ImageRef> ref = oci::ParseImageRef(name);
    absl::Status status = ref.ok() ? oci::UntagImage(**store, *ref) : ref.status();
    if (!status.ok()) {
      exit_code =
          Fail(ref.ok() ? status.message() : absl::StrCat("\"", name, "\": ", status.message()));
      continue;
    }
    std::printf("untagged %s\n", ref->String().c_str());
  }
  return exit_code;
}

int Inspect(const std::vector<std::string>& args) {
  ParsedArgs parsed;
  if (auto stop = ParseCommand(args, kInspectUsage, {DataDirFlag()}, "NAME", parsed)) {
    return *stop;
  }
  absl::StatusOr<oci::ImageRef> ref = oci::ParseImageRef(parsed.positional[0]);
  if (!ref.ok()) {
    return Fail(absl::StrCat("\"", parsed.positional[0], "\": ", ref.status().message()),
                kExitUsage);
  }
  absl::StatusOr<std::unique_ptr<cas::BlobStore>> store = OpenLocalStore(parsed);
  if (!store.ok()) return Fail(store.status().message());
  absl::StatusOr<oci::LocalImage> image = oci::ResolveImage(**store, *ref);
  if (!image.ok()) return Fail(image.status().message());
  absl::StatusOr<std::string> config = (*store)->ReadAll(image->config_descriptor.digest);
  if (!config.ok()) return Fail(config.status().message());
  std::printf("%s\n", config->c_str());
  return 0;
}

}  // namespace

int ImageCommand(const std::vector<std::string>& args) {
  const std::string subcommand = args.empty() ? "" : args[0];
  const std::vector<std::string> rest(args.begin() + (args.empty() ? 0 : 1), args.end());
  if (subcommand == "import") return Import(rest);
  if (subcommand == "pull") return Pull(rest);
  if (subcommand == "push") return Push(rest);
  if (subcommand == "export") return Export(rest);
  if (subcommand == "ls") return Ls(rest);
  if (subcommand == "rm") return Rm(rest);
  if (subcommand == "inspect") return Inspect(rest);
  return Fail(absl::StrCat("usage: ", kImageUsage), kExitUsage);
}

}  // namespace stagefarm::cli
