// Artifacts against the full stage, on real snapshots (overlayfs or the copy
// fallback), a real content store and real files: for every way a COPY
// --from reads a stage, the consumer's layers are byte-identical whether its
// source is the stage or the artifact of what it reads.
#include "worker/build/artifacts.h"

#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/dockerfile/parser.h"
#include "common/graph/stage_graph.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/random_blobs.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm::worker {
namespace {

namespace stdfs = std::filesystem;
using ::testing::HasSubstr;

// The stage every consumer copies from: files, directories with their own
// modes, symlinks (relative, absolute, to a directory), hard links, files
// owned by someone else and a 20 MB file no consumer reads.
constexpr char kSourceStage[] =
    "FROM scratch AS src\n"
    "COPY tree/ /\n"
    "COPY --chown=1234:2345 owned/ /owned/\n"
    "COPY big.bin /data/big.bin\n";

void WriteFile(const stdfs::path& path, const std::string& content, mode_t mode, time_t mtime) {
  stdfs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << content;
  ASSERT_EQ(chmod(path.c_str(), mode), 0);
  const struct utimbuf times = {mtime, mtime};
  ASSERT_EQ(utime(path.c_str(), &times), 0);
}

void SetDir(const stdfs::path& path, mode_t mode, time_t mtime) {
  ASSERT_EQ(chmod(path.c_str(), mode), 0);
  const struct utimbuf times = {mtime, mtime};
  ASSERT_EQ(utime(path.c_str(), &times), 0);
}

// An error message without the `root "..."` naming a mount's scratch path.
std::string WithoutRoots(absl::string_view message) {
  std::string out(message);
  for (size_t at; (at = out.find("root \"")) != std::string::npos;) {
    const size_t end = out.find('"', at + 6);
    if (end == std::string::npos) break;
    out.erase(at, end + 1 - at);
  }
  return out;
}

// SOURCE_DATE_EPOCH of the stages and artifacts.
constexpr int64_t kEpoch = 1700000000;

class ArtifactsTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u) << "owners and mounts need root";
    absl::StatusOr<std::unique_ptr<cas::BlobStore>> store =
        cas::BlobStore::Open(dir_.path() / "cas");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    executor_ = OpenExecutor("node", GetParam());
    ASSERT_NE(executor_, nullptr);

    context_ = dir_.path() / "context";
    const stdfs::path tree = context_ / "tree";
    WriteFile(tree / "out/a.txt", "alpha\n", 0644, 1600000001);
    WriteFile(tree / "out/b.txt", "bravo\n", 0600, 1600000002);
    WriteFile(tree / "out/c.log", "log\n", 0640, 1600000003);
    WriteFile(tree / "out/sub/d.txt", "delta\n", 0444, 1600000004);
    WriteFile(tree / "out/sub/deeper/e.sh", "#!/bin/sh\n", 04755, 1600000005);
    WriteFile(tree / "out/h1", "hard\n", 0644, 1600000006);
    ASSERT_EQ(link((tree / "out/h1").c_str(), (tree / "out/sub/h2").c_str()), 0);
    WriteFile(tree / "data/small.txt", "small\n", 0644, 1600000007);
    WriteFile(tree / "out-of-band.txt", "sorts between out and out/\n", 0644, 1600000009);
    stdfs::create_directories(tree / "misc");
    stdfs::create_symlink("a.txt", tree / "out/link-to-a");
    stdfs::create_symlink("/data/small.txt", tree / "out/abs-link");
    stdfs::create_symlink("out/sub", tree / "linkdir");
    stdfs::create_symlink("/nowhere", tree / "misc/dangling");
    SetDir(tree / "out/sub/deeper", 0711, 1500000001);
    SetDir(tree / "out/sub", 0700, 1500000002);
    SetDir(tree / "out", 0750, 1500000003);
    SetDir(tree / "data", 0755, 1500000004);
    WriteFile(context_ / "owned/x.txt", "owned\n", 0600, 1600000008);
    SetDir(context_ / "owned", 0770, 1500000005);
    std::ofstream(context_ / "big.bin", std::ios::binary)
        << stagefarm::testing::RandomBytes(7, 20 << 20);

    absl::StatusOr<graph::StageGraph> plan = Plan(kSourceStage);
    ASSERT_TRUE(plan.ok()) << plan.status();
    StageInputs inputs = Inputs();
    absl::StatusOr<BuiltImage> source = executor_->Run(plan->stages[0], inputs, {});
    ASSERT_TRUE(source.ok()) << source.status();
    ASSERT_EQ(source->layers.size(), 3u);
    source_ = *std::move(source);
  }

  std::unique_ptr<StageExecutor> OpenExecutor(const std::string& name, bool force_copy) {
    ExecutorOptions options;
    options.data_dir = dir_.path() / name;
    options.force_copy_rootfs = force_copy;
    absl::StatusOr<std::unique_ptr<StageExecutor>> executor =
        StageExecutor::Open(store_.get(), options);
    EXPECT_TRUE(executor.ok()) << executor.status();
    return executor.ok() ? *std::move(executor) : nullptr;
  }

  static absl::StatusOr<graph::StageGraph> Plan(const std::string& dockerfile) {
    absl::StatusOr<dockerfile::ParseResult> ast = dockerfile::Parse(dockerfile, "Dockerfile");
    if (!ast.ok()) return ast.status();
    absl::StatusOr<dockerfile::StagedDockerfile> staged =
        dockerfile::ParseStages(*ast, "Dockerfile");
    if (!staged.ok()) return staged.status();
    graph::PlanOptions options;
    options.platform = "linux/amd64";
    return graph::BuildStageGraph(*staged, ast->directives.escape_token, options);
  }

  StageInputs Inputs() const {
    StageInputs inputs;
    inputs.base.config = oci::ScratchConfig(oci::Platform{"linux", "amd64", "", ""});
    inputs.context_dir = context_;
    inputs.source_date_epoch = kEpoch;
    return inputs;
  }

  // Runs the consumer stage (the last) of kSourceStage + `consumer` with its
  // COPY --from=src reading `from`.
  absl::StatusOr<BuiltImage> Consume(const graph::PlannedStage& stage, const BuiltImage& from) {
    StageInputs inputs = Inputs();
    inputs.resolve = [&from](const graph::SourceRoot&) -> absl::StatusOr<BuiltImage> {
      return from;
    };
    return executor_->Run(stage, inputs, {});
  }

  // The paths the consumer reads from the source stage (stage 0).
  static std::vector<std::string> ReadPaths(const graph::PlannedStage& stage) {
    std::vector<std::string> paths;
    for (const graph::StageRead& read : stage.stage_reads) {
      if (read.stage == 0) paths.push_back(read.path);
    }
    return paths;
  }

  static uint64_t Size(const BuiltImage& image) {
    uint64_t size = 0;
    for (const oci::Descriptor& layer : image.layers) size += layer.size;
    return size;
  }

  stagefarm::testing::TempDir dir_{"artifacts_test"};
  std::unique_ptr<cas::BlobStore> store_;
  std::unique_ptr<StageExecutor> executor_;
  stdfs::path context_;
  BuiltImage source_;
};

TEST_P(ArtifactsTest, EveryCopyFromGivesTheSameLayersFromTheArtifactAsFromTheStage) {
  const std::vector<std::string> consumers = {
      // A plain file, into a directory and as a new name.
      "COPY --from=src /out/a.txt /dst/\n",
      "COPY --from=src /out/b.txt /renamed.txt\n",
      // A directory: its contents.
      "COPY --from=src /out /dst/\n",
      "COPY --from=src /out/sub /\n",
      // Globs, matching files only, and files, directories and symlinks.
      "COPY --from=src /out/*.txt /dst/\n",
      "COPY --from=src /out/* /all/\n",
      "COPY --from=src /*/sub/d.txt /g/\n",
      // A symlink named as the source is followed: to a file, a directory,
      // an absolute target, and through a symlinked directory.
      "COPY --from=src /out/link-to-a /followed.txt\n",
      "COPY --from=src /linkdir /fromlink/\n",
      "COPY --from=src /out/abs-link /abs.txt\n",
      "COPY --from=src /linkdir/deeper/e.sh /via/\n",
      // --parents, without and with a pivot, with a glob, through a symlink.
      "COPY --parents --from=src /out/sub/d.txt /p/\n",
      "COPY --parents --from=src /out/sub /p/\n",
      "COPY --parents --from=src /out/./sub/deeper /pv/\n",
      "COPY --parents --from=src /out/*/*.txt /pg/\n",
      "COPY --parents --from=src /linkdir/deeper /pl/\n",
      "COPY --parents --from=src /out/link-to-a /pf/\n",
      // --exclude, --chown, --chmod.
      "COPY --exclude=*.log --exclude=sub/deeper --from=src /out /ex/\n",
      "COPY --chown=7:8 --from=src /out /ch/\n",
      "COPY --chmod=0640 --from=src /out/sub /cm/\n",
      // Several sources, hard-linked to each other; the files of another owner.
      "COPY --from=src /out/h1 /out/sub/h2 /hl/\n",
      "COPY --from=src /owned /o/\n",
      // Several instructions reading overlapping paths (out-of-band.txt sorts
      // between "out" and "out/...").
      "COPY --from=src /out /x/\n"
      "COPY --from=src /out-of-band.txt /out/h1 /w/\n"
      "COPY --from=src /out/a.txt /linkdir/d.txt /y/\n"
      "COPY --parents --from=src /out/sub/deeper/e.sh /out/sub /z/\n",
  };
  for (const std::string& consumer : consumers) {
    SCOPED_TRACE(consumer);
    absl::StatusOr<graph::StageGraph> plan =
        Plan(absl::StrCat(kSourceStage, "FROM scratch\n", consumer));
    ASSERT_TRUE(plan.ok()) << plan.status();
    const graph::PlannedStage& stage = plan->stages[1];
    const std::vector<std::string> paths = ReadPaths(stage);
    ASSERT_TRUE(ArtifactCanServe(paths)) << absl::StrJoin(paths, ", ");

    absl::StatusOr<BuiltImage> full = Consume(stage, source_);
    ASSERT_TRUE(full.ok()) << full.status();
    absl::StatusOr<oci::Descriptor> artifact = ExportArtifact(*executor_, source_, paths, kEpoch);
    ASSERT_TRUE(artifact.ok()) << artifact.status();
    EXPECT_EQ(artifact->media_type, oci::LayerMediaType(oci::LayerCompression::kNone));
    absl::StatusOr<BuiltImage> partial = Consume(stage, ArtifactImage(source_, *artifact));
    ASSERT_TRUE(partial.ok()) << partial.status();

    ASSERT_FALSE(full->layers.empty());
    EXPECT_EQ(partial->layers, full->layers);
    EXPECT_EQ(partial->config.diff_ids, full->config.diff_ids);
  }
}

TEST_P(ArtifactsTest, ACopyThatFailsOnTheStageFailsTheSameOnTheArtifact) {
  for (const std::string consumer :
       {"COPY --from=src /missing.txt /\n", "COPY --from=src /misc/dangling /d\n",
        "COPY --from=src /misc/* /d/\n", "COPY --from=src /out/a.txt/below /\n",
        "COPY --from=src /out/* /linkdir/x /all/\n"}) {
    SCOPED_TRACE(consumer);
    absl::StatusOr<graph::StageGraph> plan =
        Plan(absl::StrCat(kSourceStage, "FROM scratch\n", consumer));
    ASSERT_TRUE(plan.ok()) << plan.status();
    const graph::PlannedStage& stage = plan->stages[1];
    absl::StatusOr<BuiltImage> full = Consume(stage, source_);
    ASSERT_FALSE(full.ok());
    absl::StatusOr<oci::Descriptor> artifact =
        ExportArtifact(*executor_, source_, ReadPaths(stage), kEpoch);
    ASSERT_TRUE(artifact.ok()) << artifact.status();
    absl::StatusOr<BuiltImage> partial = Consume(stage, ArtifactImage(source_, *artifact));
    ASSERT_FALSE(partial.ok());
    EXPECT_EQ(partial.status().code(), full.status().code());
    EXPECT_EQ(WithoutRoots(partial.status().message()), WithoutRoots(full.status().message()));
  }
}

TEST_P(ArtifactsTest, ArtifactOfOneFileIsSmallAndTheSameOnEveryNode) {
  const std::vector<std::string> paths = {"/out/a.txt"};
  absl::StatusOr<oci::Descriptor> artifact = ExportArtifact(*executor_, source_, paths, kEpoch);
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  EXPECT_GT(Size(source_), uint64_t{20} << 20);
  EXPECT_LT(artifact->size, uint64_t{1} << 20);
  absl::StatusOr<std::string> bytes = store_->ReadAll(artifact->digest);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_THAT(*bytes, HasSubstr("alpha\n"));
  EXPECT_EQ(bytes->find("bravo"), std::string::npos);

  // A glob whose lookup meets a file (/data/big.bin/x) does not carry it.
  absl::StatusOr<oci::Descriptor> globbed =
      ExportArtifact(*executor_, source_, {"/data/*/x"}, kEpoch);
  ASSERT_TRUE(globbed.ok()) << globbed.status();
  EXPECT_LT(globbed->size, uint64_t{1} << 20);

  // Again; on another node (its own snapshots) in either rootfs mode.
  absl::StatusOr<oci::Descriptor> again = ExportArtifact(*executor_, source_, paths, kEpoch);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->digest, artifact->digest);
  for (bool force_copy : {false, true}) {
    std::unique_ptr<StageExecutor> other =
        OpenExecutor(absl::StrCat("other-", force_copy), force_copy);
    ASSERT_NE(other, nullptr);
    absl::StatusOr<oci::Descriptor> elsewhere = ExportArtifact(
        *other, source_, {"/out/a.txt", "/out/*", "/linkdir/deeper", "/owned"}, kEpoch);
    absl::StatusOr<oci::Descriptor> here = ExportArtifact(
        *executor_, source_, {"/out/a.txt", "/out/*", "/linkdir/deeper", "/owned"}, kEpoch);
    ASSERT_TRUE(elsewhere.ok()) << elsewhere.status();
    ASSERT_TRUE(here.ok()) << here.status();
    EXPECT_EQ(elsewhere->digest, here->digest);
  }

  // Without SOURCE_DATE_EPOCH nothing is clamped: the directories made on
  // the way to a path still carry the stage's times, not the export's.
  std::vector<digest::Digest> unclamped;
  for (int run = 0; run < 2; ++run) {
    std::unique_ptr<StageExecutor> node = OpenExecutor(absl::StrCat("no-epoch-", run), GetParam());
    ASSERT_NE(node, nullptr);
    absl::StatusOr<oci::Descriptor> exported =
        ExportArtifact(*node, source_, {"/out/sub/deeper/e.sh", "/linkdir/d.txt"}, std::nullopt);
    ASSERT_TRUE(exported.ok()) << exported.status();
    unclamped.push_back(exported->digest);
    absl::SleepFor(absl::Milliseconds(1100));
  }
  EXPECT_EQ(unclamped[0], unclamped[1]);
}

TEST_P(ArtifactsTest, TheWholeStageIsNotServedByAnArtifact) {
  EXPECT_FALSE(ArtifactCanServe({"/"}));
  EXPECT_FALSE(ArtifactCanServe({"/out/a.txt", "/"}));
  EXPECT_FALSE(ArtifactCanServe({}));
  EXPECT_TRUE(ArtifactCanServe({"/out", "/data/*.txt"}));
  absl::StatusOr<oci::Descriptor> artifact = ExportArtifact(*executor_, source_, {"/"}, kEpoch);
  EXPECT_EQ(artifact.status().code(), absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Rootfs, ArtifactsTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Copy" : "Overlay";
                         });

}  // namespace
}  // namespace stagefarm::worker
