// `stagefarm image ...`: the images this node knows by name (common/oci/local_images.h),
// in the content store under the local data dir.
#pragma once

#include <string>
#include <vector>

namespace stagefarm::cli {

// `stagefarm image SUBCOMMAND ...`, given the arguments after "image":
//   import [--rootfs] [--change INSTRUCTION]... FILE NAME[:TAG]
//       imports a docker archive or OCI layout (a directory or a tar), or with
//       --rootfs a root filesystem tar, and tags it; prints the manifest
//       digest, then the reference.
//   ls [--format table|json]   the tagged images, sorted by reference.
//   rm NAME...                 removes the tags (each one that fails is reported
//                              and the others are still removed).
//   inspect NAME               prints the image's config JSON as stored.
// Each opens the store at LocalDataDir()/cas. Returns the process exit code
// (0, kExitError, kExitUsage).
int ImageCommand(const std::vector<std::string>& args);

}  // namespace stagefarm::cli
