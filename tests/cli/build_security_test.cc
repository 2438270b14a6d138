// The security acceptance, through the real `stagefarm build`: a
// context symlink pointing outside, layer tars with "../", absolute and
// hardlink-out entries or a write through a symlink, COPY through a symlink
// to "/", WORKDIR /proc/self/fd/N and COPY --from through symlinks. Each case
// aims its escape at a sentinel directory of the test's own and checks both
// the outcome (the error naming the offending path or entry, or the safe
// result read back from the exported image) and that the sentinel is
// untouched.
#include <archive.h>
#include <archive_entry.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/digest/digest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/busybox_rootfs.h"
#include "tests/testing/shell.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm {
namespace {

namespace stdfs = std::filesystem;

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPath[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// Enough ".." to climb from any snapshot or scratch directory to "/".
constexpr char kClimb[] = "../../../../../../../../../../../../../../../..";

using testing::Invocation;

// Runs `stagefarm ARGS` through the shell with `env` prepended; ARGS must be
// quoted by the caller.
Invocation Stagefarm(const std::string& args, const std::string& env) {
  return testing::RunShell(absl::StrCat(env, " ", STAGEFARM_BINARY, " ", args, " 2>&1"));
}

std::string ReadFile(const stdfs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const stdfs::path& file, const std::string& content) {
  stdfs::create_directories(file.parent_path());
  std::ofstream(file, std::ios::binary) << content;
}

// Every entry below `dir` (not following symlinks) with its type and, for a
// file, its content, for a symlink, its target.
std::map<std::string, std::string> Listing(const stdfs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& entry : stdfs::recursive_directory_iterator(dir)) {
    const std::string name = stdfs::relative(entry.path(), dir).string();
    if (entry.is_symlink()) {
      out[name] = "symlink " + stdfs::read_symlink(entry.path()).string();
    } else if (entry.is_regular_file()) {
      out[name] = "file " + ReadFile(entry.path());
    } else {
      out[name] = "other";
    }
  }
  return out;
}

// One entry of a tar the test writes.
struct TarEntry {
  std::string name;
  std::string content;   // a regular file's bytes
  std::string symlink;   // set: a symlink to this
  std::string hardlink;  // set: a hard link to this
};

TarEntry File(std::string name, std::string content) {
  TarEntry entry;
  entry.name = std::move(name);
  entry.content = std::move(content);
  return entry;
}
TarEntry Symlink(std::string name, std::string target) {
  TarEntry entry;
  entry.name = std::move(name);
  entry.symlink = std::move(target);
  return entry;
}
TarEntry Hardlink(std::string name, std::string target) {
  TarEntry entry;
  entry.name = std::move(name);
  entry.hardlink = std::move(target);
  return entry;
}

// Writes `out`: every entry of the tar `base` (none when empty), then `entries`
// exactly as named, "../" and leading "/" kept.
void WriteTar(const stdfs::path& out, const stdfs::path& base,
              const std::vector<TarEntry>& entries) {
  std::unique_ptr<archive, decltype(&archive_write_free)> w(archive_write_new(),
                                                            &archive_write_free);
  ASSERT_EQ(archive_write_set_format_pax_restricted(w.get()), ARCHIVE_OK);
  ASSERT_EQ(archive_write_open_filename(w.get(), out.c_str()), ARCHIVE_OK);
  std::string buffer(1 << 16, '\0');
  if (!base.empty()) {
    std::unique_ptr<archive, decltype(&archive_read_free)> r(archive_read_new(),
                                                             &archive_read_free);
    archive_read_support_format_tar(r.get());
    ASSERT_EQ(archive_read_open_filename(r.get(), base.c_str(), 1 << 16), ARCHIVE_OK);
    archive_entry* entry = nullptr;
    while (archive_read_next_header(r.get(), &entry) == ARCHIVE_OK) {
      ASSERT_EQ(archive_write_header(w.get(), entry), ARCHIVE_OK);
      la_ssize_t n;
      while ((n = archive_read_data(r.get(), buffer.data(), buffer.size())) > 0) {
        ASSERT_EQ(archive_write_data(w.get(), buffer.data(), static_cast<size_t>(n)), n);
      }
    }
  }
  for (const TarEntry& spec : entries) {
    std::unique_ptr<archive_entry, decltype(&archive_entry_free)> entry(archive_entry_new(),
                                                                        &archive_entry_free);
    archive_entry_set_pathname(entry.get(), spec.name.c_str());
    archive_entry_set_mtime(entry.get(), 946684800, 0);
    if (!spec.symlink.empty()) {
      archive_entry_set_filetype(entry.get(), AE_IFLNK);
      archive_entry_set_perm(entry.get(), 0777);
      archive_entry_set_symlink(entry.get(), spec.symlink.c_str());
    } else {
      archive_entry_set_filetype(entry.get(), AE_IFREG);
      archive_entry_set_perm(entry.get(), 0644);
      if (!spec.hardlink.empty()) {
        archive_entry_set_hardlink(entry.get(), spec.hardlink.c_str());
      } else {
        archive_entry_set_size(entry.get(), static_cast<la_int64_t>(spec.content.size()));
      }
    }
    ASSERT_EQ(archive_write_header(w.get(), entry.get()), ARCHIVE_OK) << spec.name;
    if (spec.symlink.empty() && spec.hardlink.empty() && !spec.content.empty()) {
      ASSERT_EQ(archive_write_data(w.get(), spec.content.data(), spec.content.size()),
                static_cast<la_ssize_t>(spec.content.size()));
    }
  }
  ASSERT_EQ(archive_write_close(w.get()), ARCHIVE_OK);
}

// What an image's layers hold, merged bottom first: path ("./" and "/"
// prefixes dropped) -> "file CONTENT", "symlink TARGET", "hardlink TARGET",
// "dir".
using ImageFiles = std::map<std::string, std::string>;

std::string EntryName(const char* raw) {
  std::string name(raw);
  while (absl::StartsWith(name, "./") || absl::StartsWith(name, "/")) {
    name.erase(0, absl::StartsWith(name, "./") ? 2 : 1);
  }
  while (absl::EndsWith(name, "/")) name.pop_back();
  return name;
}

void ReadLayer(const stdfs::path& blob, ImageFiles* files) {
  std::unique_ptr<archive, decltype(&archive_read_free)> r(archive_read_new(), &archive_read_free);
  archive_read_support_format_tar(r.get());
  archive_read_support_filter_all(r.get());
  ASSERT_EQ(archive_read_open_filename(r.get(), blob.c_str(), 1 << 16), ARCHIVE_OK) << blob;
  archive_entry* entry = nullptr;
  while (archive_read_next_header(r.get(), &entry) == ARCHIVE_OK) {
    const std::string name = EntryName(archive_entry_pathname(entry));
    if (const char* target = archive_entry_hardlink(entry)) {
      (*files)[name] = absl::StrCat("hardlink ", target);
    } else if (archive_entry_filetype(entry) == AE_IFLNK) {
      (*files)[name] = absl::StrCat("symlink ", archive_entry_symlink(entry));
    } else if (archive_entry_filetype(entry) == AE_IFDIR) {
      (*files)[name] = "dir";
    } else {
      std::string content;
      std::array<char, 4096> buf;
      la_ssize_t n;
      while ((n = archive_read_data(r.get(), buf.data(), buf.size())) > 0)
        content.append(buf.data(), n);
      (*files)[name] = "file " + content;
    }
  }
}

// The files of the one image in the OCI layout directory `layout`.
ImageFiles ReadImage(const stdfs::path& layout) {
  ImageFiles files;
  auto blob = [&](const std::string& digest) {
    return layout / "blobs/sha256" / digest.substr(digest.find(':') + 1);
  };
  const nlohmann::json index = nlohmann::json::parse(ReadFile(layout / "index.json"), nullptr,
                                                     /*allow_exceptions=*/false);
  EXPECT_TRUE(index.is_object()) << layout;
  if (!index.is_object()) return files;
  const nlohmann::json manifest = nlohmann::json::parse(
      ReadFile(blob(index["manifests"][0]["digest"].get<std::string>())), nullptr, false);
  EXPECT_TRUE(manifest.is_object());
  if (!manifest.is_object()) return files;
  for (const nlohmann::json& layer : manifest["layers"]) {
    ReadLayer(blob(layer["digest"].get<std::string>()), &files);
  }
  return files;
}

// The first path named `name` below `dir`, down to `max_depth` levels of
// subdirectories; "" when there is none.
std::string FindNamed(const stdfs::path& dir, const std::string& name, int max_depth) {
  std::error_code error;
  for (auto it = stdfs::recursive_directory_iterator(
           dir, stdfs::directory_options::skip_permission_denied, error);
       !error && it != stdfs::recursive_directory_iterator(); it.increment(error)) {
    if (it->path().filename() == name) return it->path().string();
    if (it.depth() >= max_depth) it.disable_recursion_pending();
  }
  return "";
}

// This host's architecture as OCI names it.
std::string HostArchitecture() {
  utsname name{};
  uname(&name);
  const std::string machine = name.machine;
  if (machine == "x86_64") return "amd64";
  if (machine == "aarch64") return "arm64";
  return machine;
}

class BuildSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "stagefarm build runs runc and mounts overlays: needs root";
    dir_ = temp_.path();
    stdfs::create_directories(dir_ / "ctx");
    sentinel_ = dir_ / "sentinel";
    WriteFile(sentinel_ / "secret", "host secret\n");
    WriteFile(sentinel_ / "sub/kept", "kept\n");
    sentinel_before_ = Listing(sentinel_);
    env_ = absl::StrCat("STAGEFARM_HOME='", (dir_ / "home").string(), "'");
    ASSERT_TRUE(testing::MakeBusyboxRootfs(dir_ / "rootfs").ok());
    busybox_tar_ = dir_ / "busybox.tar";
    ASSERT_EQ(std::system(absl::StrCat("tar -C '", (dir_ / "rootfs").string(), "' -cf '",
                                       busybox_tar_.string(), "' .")
                              .c_str()),
              0);
  }

  void TearDown() override {
    if (dir_.empty()) return;
    EXPECT_EQ(Listing(sentinel_), sentinel_before_) << "the host sentinel directory changed";
    // Nothing named like the escapes' files outside the store, whose
    // snapshots may hold them inside an image's root.
    for (auto it = stdfs::recursive_directory_iterator(dir_);
         it != stdfs::recursive_directory_iterator(); ++it) {
      if (it->path() == dir_ / "home") {
        it.disable_recursion_pending();
        continue;
      }
      EXPECT_THAT(it->path().filename().string(), Not(HasSubstr("pwned"))) << it->path();
    }
  }

  // The sentinel's path as an image path ("/tmp/.../sentinel").
  std::string Sentinel() const { return sentinel_.string(); }

  // `stagefarm image import` of a busybox rootfs with `extra` entries after
  // its own, as NAME.
  void ImportRootfs(const std::string& name, const std::vector<TarEntry>& extra) {
    const stdfs::path tar = dir_ / absl::StrCat(name, "-rootfs.tar");
    WriteTar(tar, busybox_tar_, extra);
    const Invocation run = Stagefarm(absl::StrCat("image import --rootfs --change \"ENV ", kPath,
                                                  "\" '", tar.string(), "' ", name),
                                     env_);
    ASSERT_EQ(run.exit_code, 0) << run.output;
  }

  // `stagefarm image import` of a docker archive (`docker save` layout) whose
  // layers are the busybox rootfs and then one tar per element of `layers`.
  void ImportDockerArchive(const std::string& name,
                           const std::vector<std::vector<TarEntry>>& layers) {
    const stdfs::path work = dir_ / absl::StrCat(name, "-archive");
    stdfs::create_directories(work);
    std::vector<std::string> files = {"layer0.tar"};
    stdfs::copy_file(busybox_tar_, work / "layer0.tar");
    for (size_t i = 0; i < layers.size(); ++i) {
      files.push_back(absl::StrCat("layer", i + 1, ".tar"));
      WriteTar(work / files.back(), "", layers[i]);
    }
    nlohmann::json diff_ids = nlohmann::json::array();
    for (const std::string& file : files) {
      diff_ids.push_back(digest::Sha256Of(ReadFile(work / file)).ToString());
    }
    const std::string config =
        nlohmann::json{{"architecture", HostArchitecture()},
                       {"os", "linux"},
                       {"config", {{"Env", nlohmann::json::array({kPath})}}},
                       {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}}
            .dump();
    const std::string config_name = digest::Sha256Of(config).hex() + ".json";
    WriteFile(work / config_name, config);
    WriteFile(work / "manifest.json",
              nlohmann::json::array(
                  {{{"Config", config_name},
                    {"RepoTags", nlohmann::json::array({absl::StrCat(name, ":latest")})},
                    {"Layers", files}}})
                  .dump());
    std::string tar_command = absl::StrCat("tar -C '", work.string(), "' -cf '", work.string(),
                                           ".tar' manifest.json ", config_name);
    for (const std::string& file : files) absl::StrAppend(&tar_command, " ", file);
    ASSERT_EQ(std::system(tar_command.c_str()), 0);
    const Invocation run =
        Stagefarm(absl::StrCat("image import '", work.string(), ".tar' ", name), env_);
    ASSERT_EQ(run.exit_code, 0) << run.output;
  }

  // `stagefarm build` of `dockerfile` with the context dir_/ctx; with
  // `output`, the image is exported there as an OCI layout directory.
  Invocation Build(const std::string& dockerfile, const stdfs::path& output = {}) {
    WriteFile(dir_ / "Dockerfile", dockerfile);
    std::string args =
        absl::StrCat("build -f '", (dir_ / "Dockerfile").string(), "' -t security:test");
    if (!output.empty()) {
      stdfs::remove_all(output);
      absl::StrAppend(&args, " --output 'type=oci,dest=", output.string(), "/'");
    }
    absl::StrAppend(&args, " '", (dir_ / "ctx").string(), "'");
    return Stagefarm(args, env_);
  }

  void ImportBusybox() { ImportRootfs("busybox", {}); }

  testing::TempDir temp_{"build_security_test"};
  stdfs::path dir_;  // temp_'s path once SetUp has run, empty when the test is skipped
  stdfs::path sentinel_;
  stdfs::path busybox_tar_;
  std::map<std::string, std::string> sentinel_before_;
  std::string env_;
};

// Case 1. BuildKit follows a context symlink inside the context root, as a
// chroot would: an absolute target, or a ".." climbing above the context,
// names a path in the context, and when that is missing the source is not
// found. Nothing outside the context is read.
TEST_F(BuildSecurityTest, ContextSymlinkOutOfTheContext_IsNotFoundForCopyAddAndBindMount) {
  ImportBusybox();
  stdfs::create_symlink(sentinel_, dir_ / "ctx/abs");
  stdfs::create_symlink("../sentinel", dir_ / "ctx/rel");
  stdfs::create_symlink(absl::StrCat(kClimb, Sentinel()), dir_ / "ctx/deep");
  stdfs::create_symlink(sentinel_ / "secret", dir_ / "ctx/absfile");
  struct Case {
    std::string instruction;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"COPY abs /x", "source \"abs\": not found"},
      {"COPY abs/secret /x", "source \"abs/secret\": not found"},
      {"COPY absfile /x", "source \"absfile\": not found"},
      {"COPY rel/secret /x", "source \"rel/secret\": not found"},
      {"COPY deep/secret /x", "source \"deep/secret\": not found"},
      {"ADD abs /x", "source \"abs\": not found"},
      {"ADD rel/secret /x", "source \"rel/secret\": not found"},
      {"ADD absfile /x", "source \"absfile\": not found"},
      {"RUN --mount=type=bind,source=abs,target=/m cat /m/secret",
       "RUN --mount type=bind target=/m: source /abs: not found"},
      {"RUN --mount=type=bind,source=rel,target=/m,rw cat /m/secret",
       "RUN --mount type=bind target=/m: source /rel: not found"},
      {"RUN --mount=type=bind,source=absfile,target=/m cat /m",
       "RUN --mount type=bind target=/m: source /absfile: not found"},
      {"RUN --mount=type=bind,source=deep/secret,target=/m cat /m",
       "RUN --mount type=bind target=/m: source /deep/secret: not found"},
  };
  for (const Case& c : cases) {
    const Invocation run = Build(absl::StrCat("FROM busybox\n", c.instruction, "\n"));
    EXPECT_THAT(run.output, Not(HasSubstr("host secret"))) << c.instruction;
    EXPECT_EQ(run.exit_code, 1) << c.instruction << "\n" << run.output;
    EXPECT_THAT(run.output, HasSubstr("Dockerfile:2: "));
    EXPECT_THAT(run.output, HasSubstr(c.error)) << c.instruction;
  }
}

// Case 1, safe result: where the context has what the link names, relative to
// its own root, that is what is copied, bound and kept; a symlink inside a
// copied directory is copied as a symlink.
TEST_F(BuildSecurityTest, ContextSymlinkOutOfTheContext_ResolvesInsideTheContext) {
  ImportBusybox();
  WriteFile(dir_ / "ctx" / sentinel_.relative_path() / "secret", "context copy\n");
  WriteFile(dir_ / "ctx/sentinel/secret", "context rel\n");
  stdfs::create_symlink(sentinel_, dir_ / "ctx/abs");
  stdfs::create_symlink("../sentinel", dir_ / "ctx/rel");
  stdfs::create_symlink(absl::StrCat(kClimb, Sentinel()), dir_ / "ctx/deep");
  const Invocation run = Build(
      "FROM busybox\n"
      "COPY abs/secret /a\n"
      "COPY rel/secret /b\n"
      "ADD abs /c/\n"
      "COPY deep/secret /d\n"
      "COPY . /all/\n"
      "RUN --mount=type=bind,source=abs,target=/m cat /m/secret > /m-copy\n",
      dir_ / "out");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const ImageFiles files = ReadImage(dir_ / "out");
  EXPECT_EQ(files.at("a"), "file context copy\n");
  EXPECT_EQ(files.at("b"), "file context rel\n");
  EXPECT_EQ(files.at("c/secret"), "file context copy\n");
  EXPECT_EQ(files.at("d"), "file context copy\n");
  EXPECT_EQ(files.at("m-copy"), "file context copy\n");
  EXPECT_EQ(files.at("all/abs"), "symlink " + Sentinel());
  EXPECT_EQ(files.at("all/rel"), "symlink ../sentinel");
  for (const auto& [path, what] : files) {
    EXPECT_THAT(what, Not(HasSubstr("host secret"))) << path;
  }
}

// Case 2. `image import` stores layers as they are (it checks digests, not
// entries); the unpack into a snapshot, when a build first needs the layer,
// refuses an entry that would leave the root and names it.
TEST_F(BuildSecurityTest, BaseLayerEscapes_FailTheUnpackNamingTheEntry) {
  const std::string dotdot = absl::StrCat(kClimb, Sentinel(), "/pwned");
  struct Case {
    std::string what;
    std::vector<TarEntry> entries;
    std::vector<std::string> errors;  // each in the output
  };
  const std::vector<Case> cases = {
      {"a ../ entry",
       {File(dotdot, "pwned\n")},
       {absl::StrCat("layer entry \"", dotdot, "\": path escapes the root")}},
      {"a hardlink to an absolute host path",
       {Hardlink("evil-link", Sentinel() + "/secret")},
       {absl::StrCat("layer entry \"evil-link\": hardlink target \"", Sentinel(),
                     "/secret\" does not exist in the root")}},
      {"a hardlink climbing out",
       {Hardlink("evil-link", absl::StrCat(kClimb, Sentinel(), "/secret"))},
       {absl::StrCat("layer entry \"evil-link\": hardlink target \"", kClimb, Sentinel(),
                     "/secret\" escapes the root")}},
      // "a" resolves inside the root, where the sentinel's path is missing.
      {"an entry written through a symlink",
       {Symlink("a", Sentinel()), File("a/pwned", "pwned\n")},
       {"layer entry \"a/pwned\": ", "\"a\": mkdir: exists and is not a directory"}},
  };
  for (const Case& c : cases) {
    ImportRootfs("evil", c.entries);
    const Invocation run = Build("FROM evil\nRUN echo ran > /ran\n");
    EXPECT_EQ(run.exit_code, 1) << c.what << "\n" << run.output;
    EXPECT_THAT(run.output, HasSubstr("Dockerfile:2: run echo ran > /ran: unpacking layer sha256:"))
        << c.what;
    for (const std::string& error : c.errors) EXPECT_THAT(run.output, HasSubstr(error)) << c.what;
  }
}

// Case 2 with a docker archive: the same refusal for a layer above the
// base; and a symlink in one layer with an entry below its name in the next
// stays inside the root (each layer is unpacked into its own snapshot, and the
// directory of the upper layer replaces the symlink of the lower one).
TEST_F(BuildSecurityTest, DockerArchiveLayers_EscapeRefusedAtUnpackAndSymlinkAcrossLayersStaysIn) {
  const std::string dotdot = absl::StrCat(kClimb, Sentinel(), "/pwned");
  ImportDockerArchive("evil", {{File(dotdot, "pwned\n")}});
  const Invocation refused = Build("FROM evil\nRUN echo ran > /ran\n");
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_THAT(refused.output,
              HasSubstr(absl::StrCat("layer entry \"", dotdot, "\": path escapes the root")));

  ImportDockerArchive("split", {{Symlink("a", Sentinel())}, {File("a/pwned", "pwned\n")}});
  const Invocation run = Build("FROM split\nRUN cat /a/pwned > /seen\n", dir_ / "out");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(ReadImage(dir_ / "out").at("seen"), "file pwned\n");
}

// Case 2, safe result: an absolute entry name is taken relative to the root,
// as tar -x does by default.
TEST_F(BuildSecurityTest, AbsoluteLayerEntry_LandsInsideTheRoot) {
  ImportRootfs("evil", {File(Sentinel() + "/pwned", "inside\n")});
  const Invocation run =
      Build(absl::StrCat("FROM evil\nRUN cat '", Sentinel(), "/pwned' > /seen\n"), dir_ / "out");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(ReadImage(dir_ / "out").at("seen"), "file inside\n");
}

// Case 3. The destination is resolved inside the image's root: a symlink to
// "/" on the way leads to the image's root, for COPY and for a WORKDIR that
// goes through it.
TEST_F(BuildSecurityTest, CopyThroughSymlinkToRoot_LandsInTheImageRoot) {
  ASSERT_FALSE(stdfs::exists("/etc/pwned-file")) << "left over on the host by an earlier run?";
  ImportRootfs("escape", {Symlink("escape", "/")});
  WriteFile(dir_ / "ctx/file", "from context\n");
  const Invocation run = Build(absl::StrCat("FROM escape\n"
                                            "COPY file /escape/etc/pwned-file\n"
                                            "COPY file /escape",
                                            Sentinel(),
                                            "/pwned-file\n"
                                            "WORKDIR /escape/tmp/wd\n"
                                            "COPY file rel-file\n"
                                            "RUN touch run-file\n"),
                               dir_ / "out");
  const bool host_written = stdfs::exists("/etc/pwned-file");
  if (host_written) stdfs::remove("/etc/pwned-file");
  EXPECT_FALSE(host_written) << "COPY wrote the host's /etc";
  EXPECT_FALSE(stdfs::exists("/tmp/wd/rel-file"));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const ImageFiles files = ReadImage(dir_ / "out");
  EXPECT_EQ(files.at("etc/pwned-file"), "file from context\n");
  EXPECT_EQ(files.at((sentinel_.relative_path() / "pwned-file").string()), "file from context\n");
  EXPECT_EQ(files.at("tmp/wd/rel-file"), "file from context\n");
  EXPECT_EQ(files.at("tmp/wd/run-file"), "file ");
  EXPECT_EQ(files.at("escape"), "symlink /");
  for (const auto& [path, what] : files) {
    EXPECT_FALSE(absl::StartsWith(path, "escape/")) << path;
  }
}

// Case 4. CVE-2024-21626: runc up to 1.1.11 leaked a host directory into the
// process it starts, and a cwd of /proc/self/fd/N entered it. The step is
// refused before runc starts, naming the directory; a symlink to /proc on the
// way is seen through. Nothing is written anywhere.
TEST_F(BuildSecurityTest, WorkdirInProcSelfFd_RunIsRefusedNamingIt) {
  ImportBusybox();
  constexpr char kProbe[] = "stagefarm-cve-2024-21626-probe";
  for (int fd = 3; fd <= 9; ++fd) {
    const std::string workdir = absl::StrCat("/proc/self/fd/", fd);
    for (const std::string& command :
         std::vector<std::string>{"pwd", absl::StrCat("touch ", kProbe)}) {
      const Invocation run =
          Build(absl::StrCat("FROM busybox\nWORKDIR ", workdir, "\nRUN ", command, "\n"));
      EXPECT_EQ(run.exit_code, 1) << run.output;
      // The instruction as the plan prints it ("run pwd"), then the reason.
      EXPECT_THAT(run.output,
                  HasSubstr(absl::StrCat("Dockerfile:3: run ", command, ": working directory \"",
                                         workdir, "\" is inside /proc")));
    }
  }
  const Invocation linked = Build(absl::StrCat(
      "FROM busybox\nRUN ln -s /proc /p\nWORKDIR /p/self/fd/7\nRUN touch ", kProbe, "\n"));
  EXPECT_EQ(linked.exit_code, 1) << linked.output;
  EXPECT_THAT(linked.output, HasSubstr("working directory \"/p/self/fd/7\" is inside /proc"));
  // Where a leaked descriptor would have led: the host's root and cgroup
  // tree (what runc had open), and this test's directories.
  EXPECT_EQ(FindNamed("/", kProbe, 0), "");
  EXPECT_EQ(FindNamed("/sys/fs/cgroup", kProbe, 1), "");
  EXPECT_EQ(FindNamed(dir_, kProbe, 64), "");
}

// Case 5. COPY --from reads the stage's root with the stage's root as "/":
// links to "/", climbing "..", absolute ones, followed as sources, stay in it;
// a link inside a copied directory is copied as a link.
TEST_F(BuildSecurityTest, CopyFromStageThroughSymlinks_StaysInTheSourceStage) {
  ImportBusybox();
  const std::string links = absl::StrCat(
      "FROM busybox AS src\n"
      "RUN ln -s / /rootlink && ln -s ",
      kClimb, Sentinel(), " /dotdot && ln -s ", Sentinel(),
      " /abs && mkdir /d && ln -s ../../../../../.. /d/up\n");
  const Invocation missing =
      Build(absl::StrCat(links, "FROM busybox\nCOPY --from=src /abs/secret /z\n"));
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_THAT(missing.output, HasSubstr("source \"/abs/secret\": not found"));
  EXPECT_THAT(missing.output, Not(HasSubstr("host secret")));

  const Invocation run = Build(
      absl::StrCat(links, "RUN mkdir -p '", Sentinel(), "' && echo inside stage > '", Sentinel(),
                   "/secret'\n"
                   "FROM busybox\n"
                   "COPY --from=src /rootlink",
                   Sentinel(), "/secret /a\n", "COPY --from=src /dotdot/secret /b\n",
                   "COPY --from=src /abs/ /c/\n", "COPY --from=src /d/up", Sentinel(),
                   "/secret /e\n", "COPY --from=src /d /f\n"),
      dir_ / "out");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const ImageFiles files = ReadImage(dir_ / "out");
  for (const char* path : {"a", "b", "c/secret", "e"}) {
    EXPECT_EQ(files.at(path), "file inside stage\n") << path;
  }
  EXPECT_EQ(files.at("f/up"), "symlink ../../../../../..");
  EXPECT_EQ(files.count("c/sub/kept"), 0u);
}

}  // namespace
}  // namespace stagefarm
