// A minimal root filesystem for sandbox tests: Debian's static busybox
// (busybox-static, installed by scripts/lib/setup.sh) and a few applets.
#ifndef STAGEFARM_TESTS_TESTING_BUSYBOX_ROOTFS_H_
#define STAGEFARM_TESTS_TESTING_BUSYBOX_ROOTFS_H_

#include <filesystem>

#include "absl/status/status.h"

namespace stagefarm::testing {

// Makes `rootfs` with /bin/busybox, applet symlinks (sh, echo, cat, ls, cp,
// ...), /etc/passwd and the usual empty directories.
absl::Status MakeBusyboxRootfs(const std::filesystem::path& rootfs);

}  // namespace stagefarm::testing

#endif  // STAGEFARM_TESTS_TESTING_BUSYBOX_ROOTFS_H_
