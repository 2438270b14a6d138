// The images a node knows by name: each tag is a ref in the content store
// ("image/" + the normalised reference, e.g.
// "image/docker.io/library/busybox:latest") naming the image's manifest
// blob; the manifest names the config and layer blobs, all in the same
// store. This is what `FROM busybox`, `COPY --from=IMAGE`, `stagefarm image
// import` and `-t` read and write on one node.
//
// Layers are kept as they arrived (uncompressed, gzip or zstd) under their
// blob digest; the config's diff_ids give their uncompressed digests.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/cas/blob_store.h"
#include "common/oci/image.h"
#include "common/oci/image_layout.h"
#include "common/oci/image_ref.h"

namespace stagefarm::oci {

// The prefix of image refs in the store.
inline constexpr absl::string_view kImageRefPrefix = "image/";

// An image read back from the store.
struct LocalImage {
  Descriptor manifest;            // digest and size of the manifest blob
  Descriptor config_descriptor;   // the config blob
  ImageConfig config;             // parsed
  std::vector<Descriptor> layers; // bottom first; config.diff_ids has one per layer
};

// Reads the image whose manifest is `manifest` from `store`: NotFound naming
// the digest when a blob is missing; InvalidArgument naming the field when the
// manifest or config is malformed, has an unsupported media type, or its
// layer count differs from the config's diff_ids.
absl::StatusOr<LocalImage> ReadImage(const cas::BlobStore& store, const digest::Digest& manifest);

// Resolves `ref` (a tag, or a digest reference, which needs no tag) to the
// image: NotFound "image \"docker.io/library/x:latest\" not found locally".
// A digest reference recorded by TagImage (a pull by an index's digest)
// resolves to the manifest recorded; otherwise the digest is the manifest's.
absl::StatusOr<LocalImage> ResolveImage(const cas::BlobStore& store, const ImageRef& ref);

// Points the tag `ref` at `manifest` (which must be in the store). `ref` is
// name:tag, or name@digest to record which manifest a digest (an index's,
// say) stands for on this host. InvalidArgument for other forms.
absl::Status TagImage(cas::BlobStore& store, const ImageRef& ref, const digest::Digest& manifest);

// Every tagged image: (reference string, manifest digest), sorted by reference.
absl::StatusOr<std::vector<std::pair<std::string, digest::Digest>>> ListImages(
    const cas::BlobStore& store);

// Removes the tag (the blobs stay until garbage collection).
absl::Status UntagImage(cas::BlobStore& store, const ImageRef& ref);

struct ImportOptions {
  // The file is a plain root filesystem tar (any compression libarchive
  // reads), made into a one-layer image for this host's platform, as
  // `docker import` does.
  bool rootfs = false;
  // For rootfs imports: Dockerfile instructions applied to the config, as
  // `docker import --change` ("ENV PATH=/bin", "CMD [\"sh\"]"). Allowed:
  // CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME,
  // WORKDIR; anything else is InvalidArgument naming it.
  std::vector<std::string> changes;
};

// Imports `file` into `store` and tags it `ref`: a docker archive
// (`docker save`: manifest.json), an OCI image layout as a directory or a
// tar (index.json; the image whose ref-name annotation matches `ref`'s tag,
// else the only one), or with options.rootfs a plain root filesystem tar.
// Every blob is verified against its digest while it is stored, and the
// layers' diff ids against the config. Errors name the file and the
// offending entry; nothing is tagged unless the whole import succeeded.
// A layout's manifest and config are stored as they are; a docker archive's
// config too (its digest stays the image id), under a fresh OCI manifest. A
// rootfs tar is stored decompressed as one uncompressed layer, with the
// config `docker import` makes: this host's platform, no Env, one history
// entry "Imported from <file name>" without a time (the same tar gives the
// same image), then options.changes, which add no history.
absl::StatusOr<LocalImage> ImportImage(cas::BlobStore& store, const std::filesystem::path& file,
                                       const ImageRef& ref, const ImportOptions& options);

}  // namespace stagefarm::oci
