// `stagefarm build` run as a user runs it: a base image imported from a
// busybox root filesystem, a multi-stage Dockerfile, and the outputs checked
// by the tools other people use to read images (oci-image-tool, umoci) and by
// importing them back.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/digest/digest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/busybox_rootfs.h"
#include "tests/testing/shell.h"

namespace stagefarm {
namespace {

namespace stdfs = std::filesystem;
using ::testing::HasSubstr;

using testing::Invocation;

// `command` with stdout and stderr together.
Invocation Shell(const std::string& command) { return testing::RunShell(command + " 2>&1"); }

class BuildCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u) << "builds run runc and mount overlays: root only";
    dir_ = stdfs::path(::testing::TempDir()) /
           absl::StrCat("build_command_test_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    stdfs::remove_all(dir_);
    stdfs::create_directories(dir_ / "context");
    ASSERT_TRUE(testing::MakeBusyboxRootfs(dir_ / "rootfs").ok());
    const Invocation tar = Shell(absl::StrCat("tar -C '", (dir_ / "rootfs").string(), "' -cf '",
                                              (dir_ / "rootfs.tar").string(), "' ."));
    ASSERT_EQ(tar.exit_code, 0) << tar.output;
    const Invocation imported = Stagefarm(
        absl::StrCat("image import --rootfs --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' '",
                     (dir_ / "rootfs.tar").string(), "' busybox"));
    ASSERT_EQ(imported.exit_code, 0) << imported.output;
  }
  void TearDown() override { stdfs::remove_all(dir_); }

  Invocation Stagefarm(const std::string& args, const std::string& home = "") {
    return Shell(absl::StrCat("STAGEFARM_HOME='", home.empty() ? (dir_ / "home").string() : home,
                              "' SOURCE_DATE_EPOCH=1700000000 '", STAGEFARM_BINARY, "' ", args));
  }
  void WriteDockerfile(const std::string& text) { std::ofstream(dir_ / "Dockerfile") << text; }
  std::string Build(const std::string& flags) {
    return absl::StrCat("build -f '", (dir_ / "Dockerfile").string(), "' ", flags, " '",
                        (dir_ / "context").string(), "'");
  }
  // The last line of a successful build: the image's manifest digest.
  static std::string Digest(const std::string& output) {
    std::smatch match;
    static const std::regex kDigest("(sha256:[0-9a-f]{64})\n$");
    return std::regex_search(output, match, kDigest) ? match[1].str() : "";
  }

  stdfs::path dir_;
};

constexpr char kMultiStage[] =
    "FROM busybox AS build\n"
    "ARG GREETING=hello\n"
    "RUN mkdir /out && echo \"$GREETING from build\" > /out/message\n"
    "FROM busybox\n"
    "COPY --from=build /out/message /srv/\n"
    "COPY app.conf /etc/app.conf\n"
    "WORKDIR /srv\n"
    "CMD [\"cat\", \"/srv/message\"]\n";

TEST_F(BuildCommandTest, OutputsValidateUnpackAndImportAgain) {
  WriteDockerfile(kMultiStage);
  std::ofstream(dir_ / "context/app.conf") << "key=value\n";
  const stdfs::path out = dir_ / "out";
  const Invocation built = Stagefarm(
      Build(absl::StrCat("-t app:1 --output type=oci,dest='", (out / "oci.tar").string(),
                         "' --output type=oci,dest='", (out / "layout").string(),
                         "/' --output type=docker,dest='", (out / "docker.tar").string(), "'")));
  ASSERT_EQ(built.exit_code, 0) << built.output;
  const std::string digest = Digest(built.output);
  ASSERT_FALSE(digest.empty()) << built.output;
  EXPECT_THAT(built.output, HasSubstr("[build 2/2] run mkdir /out"));
  EXPECT_THAT(built.output, HasSubstr("naming to docker.io/library/app:1"));

  // oci-image-tool cannot read any tar (opencontainers/image-tools#205,
  // "find failed: unable to walk: end of walk"): the tar is validated as the
  // layout it unpacks to.
  ASSERT_EQ(
      Shell(absl::StrCat("mkdir '", (out / "from-tar").string(), "' && tar -C '",
                         (out / "from-tar").string(), "' -xf '", (out / "oci.tar").string(), "'"))
          .exit_code,
      0);
  for (const stdfs::path& layout : {out / "layout", out / "from-tar"}) {
    const Invocation valid = Shell(
        absl::StrCat("oci-image-tool validate --type image --ref name=1 '", layout.string(), "'"));
    EXPECT_EQ(valid.exit_code, 0) << valid.output;
    EXPECT_THAT(valid.output, HasSubstr("Validation succeeded"));
  }
  const Invocation unpacked =
      Shell(absl::StrCat("umoci unpack --image '", (out / "layout").string(), ":1' '",
                         (out / "bundle").string(), "'"));
  ASSERT_EQ(unpacked.exit_code, 0) << unpacked.output;
  std::ifstream message(out / "bundle/rootfs/srv/message");
  std::string line;
  std::getline(message, line);
  EXPECT_EQ(line, "hello from build");
  EXPECT_TRUE(stdfs::exists(out / "bundle/rootfs/etc/app.conf"));
  EXPECT_TRUE(stdfs::exists(out / "bundle/rootfs/bin/busybox"));

  // Each output imports back as the same image: the OCI ones keep the
  // manifest digest; the docker archive keeps the config.
  for (const auto& [file, name] :
       {std::pair{out / "oci.tar", "again:oci"}, std::pair{out / "layout", "again:layout"}}) {
    const Invocation imported =
        Stagefarm(absl::StrCat("image import '", file.string(), "' ", name));
    ASSERT_EQ(imported.exit_code, 0) << imported.output;
    EXPECT_THAT(imported.output, HasSubstr(digest));
  }
  // The docker archive converts with skopeo and unpacks with umoci (issue 7).
  const Invocation converted = Shell(
      absl::StrCat("skopeo copy --quiet docker-archive:'", (out / "docker.tar").string(), "' oci:'",
                   (out / "from-docker").string(), ":1' && umoci unpack --image '",
                   (out / "from-docker").string(), ":1' '", (out / "docker-bundle").string(), "'"));
  ASSERT_EQ(converted.exit_code, 0) << converted.output;
  std::ifstream converted_message(out / "docker-bundle/rootfs/srv/message");
  std::getline(converted_message, line);
  EXPECT_EQ(line, "hello from build");
  const Invocation docker =
      Stagefarm(absl::StrCat("image import '", (out / "docker.tar").string(), "' again:docker"));
  ASSERT_EQ(docker.exit_code, 0) << docker.output;
  const Invocation inspected = Stagefarm("image inspect again:docker");
  EXPECT_THAT(inspected.output, HasSubstr("\"Cmd\":[\"cat\",\"/srv/message\"]"));
  EXPECT_THAT(inspected.output, HasSubstr("\"WorkingDir\":\"/srv\""));
  EXPECT_THAT(Stagefarm("image ls").output, HasSubstr("docker.io/library/app:1"));
}

TEST_F(BuildCommandTest, SameInputsGiveTheSameDigestInAnotherStore) {
  WriteDockerfile(kMultiStage);
  std::ofstream(dir_ / "context/app.conf") << "key=value\n";
  const Invocation first = Stagefarm(Build(""));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  // A second node: its own store, the same base imported.
  const std::string other = (dir_ / "other-home").string();
  ASSERT_EQ(Stagefarm(absl::StrCat("image import --rootfs --change "
                                   "'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' '",
                                   (dir_ / "rootfs.tar").string(), "' busybox"),
                      other)
                .exit_code,
            0);
  const Invocation second = Stagefarm(Build(""), other);
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_EQ(Digest(first.output), Digest(second.output));
  EXPECT_FALSE(Digest(first.output).empty());
  // A different build argument is a different image.
  const Invocation changed = Stagefarm(Build("--build-arg GREETING=hi"));
  ASSERT_EQ(changed.exit_code, 0) << changed.output;
  EXPECT_NE(Digest(changed.output), Digest(first.output));
}

TEST_F(BuildCommandTest, FailingStepExitsOneWithLocationExitCodeAndOutput) {
  WriteDockerfile("FROM busybox\nRUN echo starting\nRUN echo 'went wrong' >&2; exit 7\n");
  const Invocation run = Stagefarm(Build("-t never:1"));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.output, HasSubstr("Dockerfile:3"));
  EXPECT_THAT(run.output, HasSubstr("7"));
  EXPECT_THAT(run.output, HasSubstr("went wrong"));
  EXPECT_THAT(Stagefarm("image ls").output, ::testing::Not(HasSubstr("never")));
}

TEST_F(BuildCommandTest, JsonProgressIsOneObjectALinePerStageEvent) {
  WriteDockerfile(kMultiStage);
  std::ofstream(dir_ / "context/app.conf") << "key=value\n";
  const Invocation run = Stagefarm(Build("--progress json --no-cache"));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output,
              ::testing::ContainsRegex(
                  "\\{\"time\":\"[0-9-]+T[0-9:.]+Z\",\"build\":\"[0-9a-z-]+\",\"stage\":0,"
                  "\"stage_name\":\"build\",\"worker\":\"[a-z0-9-]+\",\"event\":\"start\""));
  EXPECT_THAT(run.output,
              HasSubstr("\"event\":\"step\",\"step\":2,\"steps\":2,\"text\":\"run mkdir"));
  EXPECT_THAT(run.output,
              ::testing::ContainsRegex(
                  "\"stage\":1,\"stage_name\":\"\",\"worker\":\"[a-z0-9-]+\",\"event\":\"done\","
                  "\"seconds\":[0-9.e-]+,\"bytes_fetched\":[0-9]+\\}"));
  const Invocation again = Stagefarm(Build("--progress json"));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_THAT(again.output, HasSubstr("\"event\":\"cached\""));
  EXPECT_EQ(Stagefarm(Build("--progress fancy")).exit_code, 2);
}

// type=local writes the image's root filesystem: the same tree, owners, modes,
// links and contents as umoci unpacks from the image (deletions in later
// layers applied).
TEST_F(BuildCommandTest, LocalOutputIsTheFlattenedImage) {
  WriteDockerfile(
      "FROM busybox\n"
      "RUN mkdir -p /app/old /app/keep && echo old > /app/old/file && echo keep > /app/keep/file\n"
      "RUN rm -rf /app/old && ln -s keep/file /app/link && chown 1000:1000 /app/keep/file &&"
      " chmod 0640 /app/keep/file\n");
  const stdfs::path out = dir_ / "out";
  const Invocation built = Stagefarm(
      Build(absl::StrCat("-t flat:1 --output type=oci,dest='", (out / "layout").string(),
                         "/' --output type=local,dest='", (out / "rootfs").string(), "'")));
  ASSERT_EQ(built.exit_code, 0) << built.output;
  const Invocation unpacked =
      Shell(absl::StrCat("umoci unpack --image '", (out / "layout").string(), ":1' '",
                         (out / "bundle").string(), "'"));
  ASSERT_EQ(unpacked.exit_code, 0) << unpacked.output;
  // Everything but times: a path, its type, mode, owner, size, link target,
  // and a file's content digest.
  auto listing = [](const stdfs::path& root) {
    return Shell(absl::StrCat("cd '", root.string(),
                              "' && find . -printf '%p %y %m %U:%G %s %l\\n' | sort && "
                              "find . -type f -exec sha256sum {} + | sort"));
  };
  const Invocation ours = listing(out / "rootfs");
  const Invocation umoci = listing(out / "bundle/rootfs");
  ASSERT_EQ(ours.exit_code, 0) << ours.output;
  EXPECT_EQ(ours.output, umoci.output);
  EXPECT_THAT(ours.output, HasSubstr("./app/keep/file f 640 1000:1000 5"));
  EXPECT_THAT(ours.output, HasSubstr("./app/link l 777 0:0 9 keep/file"));
  EXPECT_THAT(ours.output, ::testing::Not(HasSubstr("./app/old")));
}

// Issue 7: --secret values reach the RUN that mounts them (as a file and as a
// variable) and nothing else: no layer, log, cache key, store or output.
TEST_F(BuildCommandTest, SecretsReachTheRunAndAreFoundNowhereAfterwards) {
  std::mt19937_64 random(std::random_device{}());
  const std::string token = absl::StrCat("tok-", absl::Hex(random()), absl::Hex(random()));
  const std::string api_key = absl::StrCat("key-", absl::Hex(random()), absl::Hex(random()));
  std::ofstream(dir_ / "token.txt") << token;
  WriteDockerfile(
      "FROM busybox\n"
      "RUN --mount=type=secret,id=token sha256sum /run/secrets/token | cut -c1-64 > /token.sha\n"
      "RUN --mount=type=secret,id=api,env=API_KEY printf %s \"$API_KEY\" | sha256sum |"
      " cut -c1-64 > /api.sha\n");
  const stdfs::path out = dir_ / "out";
  const std::string flags = absl::StrCat(
      "--workers 1 --progress plain --secret id=token,src='", (dir_ / "token.txt").string(),
      "' --secret id=api,env=STAGEFARM_TEST_API_KEY --output type=oci,dest='",
      (out / "image.tar").string(), "' --output type=local,dest='", (out / "rootfs").string(),
      "' --metadata-file '", (out / "meta.json").string(), "'");
  const Invocation built =
      Shell(absl::StrCat("STAGEFARM_TEST_API_KEY='", api_key, "' STAGEFARM_HOME='",
                         (dir_ / "home").string(), "' '", STAGEFARM_BINARY, "' ", Build(flags)));
  ASSERT_EQ(built.exit_code, 0) << built.output;
  auto first_line = [](const stdfs::path& file) {
    std::ifstream in(file);
    std::string line;
    std::getline(in, line);
    return line;
  };
  EXPECT_EQ(first_line(out / "rootfs/token.sha"), digest::Sha256Of(token).hex());
  EXPECT_EQ(first_line(out / "rootfs/api.sha"), digest::Sha256Of(api_key).hex());
  EXPECT_FALSE(stdfs::exists(out / "rootfs/run/secrets")) << "the mount point stayed in the image";

  // Nowhere: the build's output, the client's and the embedded cluster's
  // data dirs (stores, logs, hash cache), the exported image.
  EXPECT_THAT(built.output, ::testing::Not(HasSubstr(token)));
  EXPECT_THAT(built.output, ::testing::Not(HasSubstr(api_key)));
  for (const std::string& secret : {token, api_key}) {
    const Invocation found =
        Shell(absl::StrCat("grep -r -a -l -F -e '", secret, "' '", (dir_ / "home").string(), "' '",
                           out.string(), "'; echo searched"));
    EXPECT_EQ(found.output, "searched\n") << "found in: " << found.output;
  }
  // (The search does find what is there: the instruction, in the history.)
  EXPECT_EQ(Shell(absl::StrCat("grep -r -a -q -F token.sha '", out.string(), "'")).exit_code, 0);

  // A required secret that was not given fails the step, naming it.
  WriteDockerfile("FROM busybox\nRUN --mount=type=secret,id=missing,required=true true\n");
  const Invocation missing = Stagefarm(Build("--workers 1"));
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.output, HasSubstr("secret missing: not provided"));
  // And a secret that is not needed is skipped, as BuildKit does.
  WriteDockerfile(
      "FROM busybox\nRUN --mount=type=secret,id=optional test ! -e /run/secrets/optional\n");
  EXPECT_EQ(Stagefarm(Build("--workers 1")).exit_code, 0);
}

nlohmann::json ReadJson(const stdfs::path& file) {
  std::ifstream in(file);
  return nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
}

// Issue 7: the client sends the cluster only what the plan reads, and of that
// only what changed; --metadata-file, --iidfile and --trace say what happened.
TEST_F(BuildCommandTest, OnlyFilesTheBuildReadsAreSentAndThenOnlyTheChangedOne) {
  WriteDockerfile(
      "FROM busybox AS compile\n"
      "COPY services/a /src\n"
      "RUN cat /src/* > /all\n"
      "FROM busybox\n"
      "COPY --from=compile /all /all\n");
  stdfs::create_directories(dir_ / "context/services/a");
  stdfs::create_directories(dir_ / "context/services/b");
  for (const char* name : {"one", "two", "three"}) {
    std::ofstream(dir_ / "context/services/a" / name) << "source " << name << "\n";
  }
  // Eight MiB that do not deduplicate: more than everything the build sends.
  auto noise = [](uint32_t seed) {
    std::mt19937 random(seed);
    std::string bytes(8 << 20, '\0');
    for (char& byte : bytes) byte = static_cast<char>(random());
    return bytes;
  };
  std::ofstream(dir_ / "context/services/b/big") << noise(1);
  const stdfs::path meta = dir_ / "meta.json", trace = dir_ / "trace.json", iid = dir_ / "iid";
  const std::string flags =
      absl::StrCat("--workers 1 -t svc:1 --metadata-file '", meta.string(), "' --trace '",
                   trace.string(), "' --iidfile '", iid.string(), "'");
  // A file changed within 100 ms of a scan is hashed again by the next one
  // (common/fs/hash_cache.h): let the files age past that first.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const Invocation first = Stagefarm(Build(flags));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  nlohmann::json metadata = ReadJson(meta);
  ASSERT_TRUE(metadata.is_object()) << first.output;
  EXPECT_EQ(metadata["containerimage.digest"], Digest(first.output));
  EXPECT_EQ(metadata["image.name"], "docker.io/library/svc:1");
  EXPECT_EQ(metadata["stagefarm.client"]["context_files"], 3);  // services/b is not read
  const uint64_t first_bytes = metadata["stagefarm.client"]["bytes_uploaded"];
  EXPECT_LT(first_bytes, uint64_t{8} << 20) << "services/b/big was sent";
  std::ifstream iid_in(iid);
  std::string image_id;
  std::getline(iid_in, image_id);
  EXPECT_EQ(image_id, metadata["containerimage.config.digest"]);

  // The timeline: a client track, a worker track, a slice per stage.
  const nlohmann::json timeline = ReadJson(trace);
  ASSERT_TRUE(timeline.contains("traceEvents")) << first.output;
  std::set<std::string> tracks, slices;
  for (const nlohmann::json& event : timeline["traceEvents"]) {
    if (event["name"] == "thread_name") tracks.insert(event["args"]["name"]);
    if (event["ph"] == "X") slices.insert(event["name"]);
  }
  EXPECT_THAT(tracks, ::testing::ElementsAre("client", "local-1"));
  EXPECT_TRUE(slices.count("compile") == 1 && slices.count("stage-1") == 1 &&
              slices.count("read context") == 1);

  // One file read by the build changes, and one it does not read: only the
  // first is sent, and only the two are read again.
  std::ofstream(dir_ / "context/services/a/two") << "changed source: 25 bytes\n";
  std::ofstream(dir_ / "context/services/b/big") << noise(2);
  const Invocation second = Stagefarm(Build(flags));
  ASSERT_EQ(second.exit_code, 0) << second.output;
  metadata = ReadJson(meta);
  EXPECT_EQ(metadata["stagefarm.client"]["bytes_uploaded"], 25);
  EXPECT_EQ(metadata["stagefarm.client"]["context_files_hashed"], 2);
  EXPECT_NE(Digest(second.output), Digest(first.output));

  // In process nothing is uploaded, and the files the build reads are
  // counted all the same.
  const Invocation in_process =
      Stagefarm(Build(absl::StrCat("--workers 0 -t svc:1 --metadata-file '", meta.string(), "'")));
  ASSERT_EQ(in_process.exit_code, 0) << in_process.output;
  metadata = ReadJson(meta);
  EXPECT_EQ(metadata["stagefarm.client"]["context_files"], 3);
  EXPECT_EQ(metadata["stagefarm.client"]["bytes_uploaded"], 0);
  EXPECT_EQ(Digest(in_process.output), Digest(second.output));
}

// The layers of an image an OCI layout holds: each blob's path, its digest
// and media type, and the diff id its config gives it.
struct LayoutLayer {
  stdfs::path blob;
  std::string digest, media_type, diff_id;
};
std::vector<LayoutLayer> LayoutLayers(const stdfs::path& layout) {
  auto blob = [&layout](const std::string& digest) {
    return layout / "blobs/sha256" / digest.substr(std::string("sha256:").size());
  };
  const nlohmann::json manifest =
      ReadJson(blob(ReadJson(layout / "index.json")["manifests"][0]["digest"]));
  const nlohmann::json config = ReadJson(blob(manifest["config"]["digest"]));
  std::vector<LayoutLayer> layers;
  for (size_t i = 0; i < manifest["layers"].size(); ++i) {
    const nlohmann::json& layer = manifest["layers"][i];
    layers.push_back({blob(layer["digest"]), layer["digest"], layer["mediaType"],
                      config["rootfs"]["diff_ids"][i]});
  }
  return layers;
}

// compression-level reaches the compressor, in build and in image export: zstd
// at level 1 and at the default level are other blobs of the same layers, and
// zstd's level 0 is its default.
TEST_F(BuildCommandTest, ZstdCompressionLevelGivesOtherBlobsOfTheSameDiffIds) {
  WriteDockerfile("FROM busybox\nRUN seq 1 50000 > /numbers && cp /bin/busybox /busybox-copy\n");
  const stdfs::path out = dir_ / "out";
  const Invocation built =
      Stagefarm(Build(absl::StrCat("-t app:1 --output type=oci,dest='", (out / "level1").string(),
                                   "/,compression=zstd,compression-level=1'")));
  ASSERT_EQ(built.exit_code, 0) << built.output;
  const Invocation exported =
      Stagefarm(absl::StrCat("image export --output 'type=oci,dest=", (out / "default").string(),
                             "/,compression=zstd' app:1"));
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  EXPECT_NE(Digest(built.output), Digest(exported.output));
  const Invocation zero =
      Stagefarm(absl::StrCat("image export --output 'type=oci,dest=", (out / "zero").string(),
                             "/,compression=zstd,compression-level=0' app:1"));
  ASSERT_EQ(zero.exit_code, 0) << zero.output;
  EXPECT_EQ(Digest(zero.output), Digest(exported.output));

  const std::vector<LayoutLayer> level1 = LayoutLayers(out / "level1");
  const std::vector<LayoutLayer> by_default = LayoutLayers(out / "default");
  ASSERT_EQ(level1.size(), 2u);
  ASSERT_EQ(by_default.size(), level1.size());
  for (size_t i = 0; i < level1.size(); ++i) {
    EXPECT_NE(level1[i].digest, by_default[i].digest) << "layer " << i;
    EXPECT_EQ(level1[i].diff_id, by_default[i].diff_id) << "layer " << i;
    for (const LayoutLayer& layer : {level1[i], by_default[i]}) {
      EXPECT_EQ(layer.media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
      // The zstd CLI reads each blob back to the bytes the diff id names.
      const Invocation content =
          testing::RunShell(absl::StrCat("zstd -dc '", layer.blob.string(), "' | sha256sum"));
      ASSERT_EQ(content.exit_code, 0) << content.output;
      EXPECT_EQ(absl::StrCat("sha256:", content.output.substr(0, 64)), layer.diff_id) << layer.blob;
    }
  }
}

// The data dir on a file system too small for the build's context: the
// build fails, saying so, and no process aborts. (The embedded coordinator
// aborted on a RocksDB assertion, and the client after it, once the disk
// was full.)
TEST_F(BuildCommandTest, DataDirOutOfSpace_FailsTheBuildSayingSoWithoutAborting) {
  const stdfs::path small = dir_ / "small";
  stdfs::create_directories(small);
  ASSERT_EQ(mount("tmpfs", small.c_str(), "tmpfs", 0, "size=64m"), 0) << strerror(errno);
  struct Unmount {
    ~Unmount() { umount2(path.c_str(), MNT_DETACH); }
    stdfs::path path;
  } unmount{small};
  const std::string home = (small / "home").string();
  const Invocation imported = Stagefarm(
      absl::StrCat("image import --rootfs '", (dir_ / "rootfs.tar").string(), "' busybox"), home);
  ASSERT_EQ(imported.exit_code, 0) << imported.output;
  // 96 MiB that do not compress, in files of 2 MiB.
  const Invocation context =
      Shell(absl::StrCat("for i in $(seq 48); do head -c 2097152 /dev/urandom > '",
                         (dir_ / "context").string(), "'/f$i || exit 1; done"));
  ASSERT_EQ(context.exit_code, 0) << context.output;
  WriteDockerfile("FROM busybox\nCOPY . /data\n");

  const Invocation built = Stagefarm(Build(""), home);
  EXPECT_EQ(built.exit_code, 1) << built.output;
  EXPECT_THAT(built.output, HasSubstr("no space left on device"));
  EXPECT_THAT(built.output, HasSubstr(home));
  EXPECT_THAT(built.output, ::testing::Not(HasSubstr("Assertion")));
  const Invocation logs = Shell(absl::StrCat("cat '", home, "'/cluster/*.log"));
  EXPECT_THAT(logs.output, ::testing::Not(HasSubstr("Assertion"))) << logs.output;
}

TEST_F(BuildCommandTest, BadFlagsAreUsageErrors) {
  WriteDockerfile("FROM busybox\n");
  const Invocation type = Stagefarm(Build("--output type=tarball,dest=x"));
  EXPECT_EQ(type.exit_code, 2);
  EXPECT_THAT(type.output, HasSubstr("type must be oci, docker, local or registry"));
  const Invocation dest = Stagefarm(Build("--output type=oci"));
  EXPECT_EQ(dest.exit_code, 2);
  EXPECT_THAT(dest.output, HasSubstr("dest=PATH is required"));
  const Invocation tag = Stagefarm(Build("-t Bad:Name"));
  EXPECT_EQ(tag.exit_code, 2);
  const Invocation level = Stagefarm(Build("--output type=oci,dest=x,compression-level=x"));
  EXPECT_EQ(level.exit_code, 2);
  EXPECT_THAT(level.output, HasSubstr("--output: compression-level must be an integer, not \"x\""));
  const Invocation two_levels =
      Stagefarm(Build("--output type=oci,dest=x,compression=zstd,compression-level=19 "
                      "--output type=docker,dest=y,compression=zstd,compression-level=1"));
  EXPECT_EQ(two_levels.exit_code, 2);
  EXPECT_THAT(two_levels.output, HasSubstr("one output asks for compression-level=19, another "
                                           "for compression-level=1"));
  const Invocation missing = Stagefarm(Build("--target nosuchstage"));
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.output, HasSubstr("target stage \"nosuchstage\" could not be found"));
}

}  // namespace
}  // namespace stagefarm
