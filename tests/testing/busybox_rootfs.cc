#include "tests/testing/busybox_rootfs.h"

#include <fstream>

#include "absl/strings/str_cat.h"

namespace stagefarm::testing {

absl::Status MakeBusyboxRootfs(const std::filesystem::path& rootfs) {
  if (!std::filesystem::exists("/bin/busybox")) {
    return absl::FailedPreconditionError(
        "/bin/busybox is missing: busybox-static is installed by scripts/lib/setup.sh");
  }
  std::error_code error;
  for (const char* dir : {"bin", "etc", "tmp", "proc", "sys", "dev", "work", "var"}) {
    std::filesystem::create_directories(rootfs / dir, error);
  }
  std::filesystem::copy_file("/bin/busybox", rootfs / "bin/busybox", error);
  if (error) return absl::InternalError(absl::StrCat("copying busybox: ", error.message()));
  for (const char* applet : {"sh", "echo", "cat", "id", "touch", "ls", "grep", "hostname", "pwd",
                             "env", "mkdir", "sleep", "cp", "test", "stat"}) {
    std::filesystem::create_symlink("busybox", rootfs / "bin" / applet, error);
  }
  std::ofstream(rootfs / "etc/passwd") << "root:x:0:0:root:/root:/bin/sh\n";
  return absl::OkStatus();
}

}  // namespace stagefarm::testing
