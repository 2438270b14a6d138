// Whole stages through the executor on real runc, overlayfs (or the copy
// fallback), files and a real content store: what each instruction leaves in
// the image's layers and config.
#include "worker/build/stage_executor.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/dockerfile/parser.h"
#include "common/graph/plan_cache_keys.h"
#include "common/oci/layer_diff.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/busybox_rootfs.h"
#include "tests/testing/temp_dir.h"
#include "worker/build/local_build.h"

namespace stagefarm::worker {
namespace {

namespace stdfs = std::filesystem;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

std::string ReadFile(const stdfs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

class StageExecutorTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u) << "runc needs root";
    absl::StatusOr<std::unique_ptr<cas::BlobStore>> store =
        cas::BlobStore::Open(dir_.path() / "cas");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    ASSERT_NO_FATAL_FAILURE(OpenExecutor(dir_.path() / "node"));

    // The base image: a busybox root filesystem as one layer.
    const stdfs::path rootfs = dir_.path() / "busybox";
    const stdfs::path empty = dir_.path() / "empty";
    ASSERT_TRUE(stagefarm::testing::MakeBusyboxRootfs(rootfs).ok());
    std::ofstream(rootfs / "etc/passwd", std::ios::app) << "app:x:1234:2345::/home/app:/bin/sh\n";
    std::ofstream(rootfs / "etc/group", std::ios::app) << "appgrp:x:2345:\n";
    stdfs::create_directories(empty);
    std::unique_ptr<cas::BlobWriter> writer = store_->NewWriter();
    oci::DiffOptions diff;
    absl::StatusOr<oci::LayerDigests> layer = oci::WriteLayerFromCopy(
        empty, rootfs, [](absl::string_view) { return absl::OkStatus(); },
        [&](absl::string_view bytes) { return writer->Write(bytes); }, diff);
    ASSERT_TRUE(layer.ok()) << layer.status();
    ASSERT_TRUE(writer->Commit(layer->blob_digest).ok());
    base_.config = oci::ScratchConfig(oci::Platform{"linux", "amd64", "", ""});
    base_.config.config.working_dir.clear();
    base_.config.diff_ids = {layer->diff_id};
    base_entries_ = layer->entries;
    base_.layers = {
        {oci::LayerMediaType(layer->compression), layer->blob_digest, layer->blob_size, {}}};
    context_ = dir_.path() / "context";
    stdfs::create_directories(context_);
  }

  // Opens executor_ over store_ with its data dir at `data_dir`, in this
  // test's rootfs mode.
  void OpenExecutor(const stdfs::path& data_dir) {
    ExecutorOptions options;
    options.data_dir = data_dir;
    options.force_copy_rootfs = GetParam();
    absl::StatusOr<std::unique_ptr<StageExecutor>> executor =
        StageExecutor::Open(store_.get(), options);
    ASSERT_TRUE(executor.ok()) << executor.status();
    executor_ = *std::move(executor);
  }

  // `after_index`, when set, runs once the context is indexed, before the
  // build: what it changes in the context is what the build finds there.
  absl::StatusOr<BuiltImage> Build(const std::string& dockerfile,
                                   std::vector<std::string> build_args = {}, bool cache = false,
                                   bool use_cache = true,
                                   const std::function<void()>& after_index = nullptr) {
    absl::StatusOr<dockerfile::ParseResult> ast = dockerfile::Parse(dockerfile, "Dockerfile");
    if (!ast.ok()) return ast.status();
    absl::StatusOr<dockerfile::StagedDockerfile> staged =
        dockerfile::ParseStages(*ast, "Dockerfile");
    if (!staged.ok()) return staged.status();
    graph::PlanOptions options;
    options.build_args = std::move(build_args);
    options.platform = "linux/amd64";
    absl::StatusOr<graph::StageGraph> plan =
        graph::BuildStageGraph(*staged, ast->directives.escape_token, options);
    if (!plan.ok()) return plan.status();
    std::ofstream(dir_.path() / "Dockerfile") << dockerfile;
    absl::StatusOr<fs::ContextIndex> index =
        fs::ContextIndex::Build(context_, dir_.path() / "Dockerfile");
    if (!index.ok()) return index.status();
    LocalBuildInput input;
    input.graph = &*plan;
    input.context_dir = context_;
    input.context = &*index;
    if (cache) {
      absl::StatusOr<std::vector<std::optional<graph::StageKeys>>> keys =
          graph::ComputePlanCacheKeys(*plan, *index, "Dockerfile");
      if (!keys.ok()) return keys.status();
      input.cache_keys = *std::move(keys);
      input.use_cache = use_cache;
    }
    if (after_index) after_index();
    log_.clear();
    input.source_date_epoch = epoch_;
    input.resolve_image = [this](const oci::ImageRef& ref) -> absl::StatusOr<BuiltImage> {
      if (ref.String() == "docker.io/library/busybox:latest") return base_;
      return absl::NotFoundError(absl::StrCat("image \"", ref.String(), "\" not found locally"));
    };
    BuildEvents events;
    events.on_output = [this](const graph::PlannedStage&, absl::string_view out) {
      output_ += std::string(out);
    };
    events.on_step = [this](const graph::PlannedStage&, size_t, size_t, absl::string_view text) {
      log_ += absl::StrCat(text, "\n");
    };
    events.on_note = [this](const graph::PlannedStage&, absl::string_view line) {
      log_ += absl::StrCat("  ", line, "\n");
    };
    return RunLocalBuild(*executor_, input, events);
  }

  // The image's filesystem, mounted (or copied) for inspection.
  stdfs::path Mount(const BuiltImage& image) {
    absl::StatusOr<std::vector<snapshots::Snapshot>> chain = executor_->EnsureSnapshots(image);
    EXPECT_TRUE(chain.ok()) << chain.status();
    snapshots::RootfsOptions options;
    options.force_copy = GetParam();
    absl::StatusOr<std::unique_ptr<snapshots::Rootfs>> rootfs =
        executor_->snapshots().PrepareRootfs(
            *chain, dir_.path() / absl::StrCat("inspect", mounts_.size()), options);
    EXPECT_TRUE(rootfs.ok()) << rootfs.status();
    mounts_.push_back(*std::move(rootfs));
    return mounts_.back()->root();
  }

  stagefarm::testing::TempDir dir_{"stage_executor_test"};
  std::unique_ptr<cas::BlobStore> store_;
  std::unique_ptr<StageExecutor> executor_;
  BuiltImage base_;
  uint64_t base_entries_ = 0;  // tar entries of the base's one layer
  stdfs::path context_;
  std::string output_;
  std::string log_;                            // steps and notes, for failure messages
  std::optional<int64_t> epoch_ = 1700000000;  // the builds' SOURCE_DATE_EPOCH
  std::vector<std::unique_ptr<snapshots::Rootfs>> mounts_;
};

TEST_P(StageExecutorTest, EachChangeIsOneLayerAndNoChangeIsNone) {
  std::ofstream(context_ / "hello.txt") << "hello\n";
  absl::StatusOr<BuiltImage> image = Build(
      "FROM busybox\n"
      "RUN echo one > /one.txt\n"
      "RUN true\n"
      "COPY hello.txt /greetings/\n"
      "WORKDIR /srv/app\n"
      "WORKDIR /srv\n"
      "ENV A=1\n");
  ASSERT_TRUE(image.ok()) << image.status();
  // base + RUN + COPY + WORKDIR /srv/app; RUN true and WORKDIR /srv change nothing.
  EXPECT_EQ(image->layers.size(), 4u) << log_;
  EXPECT_EQ(image->config.diff_ids.size(), 4u);
  int with_layer = 0;
  for (const oci::HistoryEntry& entry : image->config.history) with_layer += !entry.empty_layer;
  EXPECT_EQ(with_layer, 3);  // the base has no history entries here
  ASSERT_TRUE(image->config.created.has_value());
  EXPECT_EQ(absl::ToUnixSeconds(*image->config.created), 1700000000);
  EXPECT_EQ(image->config.config.working_dir, "/srv");

  const stdfs::path root = Mount(*image);
  EXPECT_EQ(ReadFile(root / "one.txt"), "one\n");
  EXPECT_EQ(ReadFile(root / "greetings/hello.txt"), "hello\n");
  EXPECT_TRUE(stdfs::is_directory(root / "srv/app"));
}

TEST_P(StageExecutorTest, UnpackingTheBaseLayerIsNotedOnceWithWhatItWrote) {
  // The base's layer is in the store, not unpacked: the first step unpacks it.
  absl::StatusOr<BuiltImage> first = Build("FROM busybox\nRUN true\n");
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string layer = base_.config.diff_ids[0].ToString();
  const size_t started = log_.find(absl::StrCat("  unpacking layer ", layer, "\n"));
  ASSERT_NE(started, std::string::npos) << log_;
  EXPECT_THAT(log_.substr(started),
              ContainsRegex(absl::StrCat("\n  unpacked layer ", layer, " \\(", base_entries_,
                                         " entries, [1-9][0-9]* bytes\\) in [0-9]+\\.[0-9]{2}s\n")))
      << log_;
  // The next build finds the snapshot in place: nothing unpacked, nothing noted.
  ASSERT_TRUE(Build("FROM busybox\nRUN true\n").ok());
  EXPECT_THAT(log_, Not(HasSubstr("unpack"))) << log_;
}

TEST_P(StageExecutorTest, RunsWithTheDataDirReachedThroughASymlink) {
  // runc refuses a root filesystem path that goes through a symlink; a data
  // dir such as a linked STAGEFARM_HOME must still work.
  const stdfs::path real = dir_.path() / "real-node";
  stdfs::create_directories(real);
  stdfs::create_directory_symlink(real, dir_.path() / "linked-node");
  ASSERT_NO_FATAL_FAILURE(OpenExecutor(dir_.path() / "linked-node"));
  absl::StatusOr<BuiltImage> image = Build("FROM busybox\nRUN echo ran > /ran.txt\n");
  ASSERT_TRUE(image.ok()) << image.status() << "\n" << log_;
  EXPECT_EQ(ReadFile(Mount(*image) / "ran.txt"), "ran\n");
  EXPECT_TRUE(stdfs::is_directory(real / "snapshots"));
}

TEST_P(StageExecutorTest, FailingRunNamesLineCommandAndExitCode) {
  absl::StatusOr<BuiltImage> image = Build(
      "FROM busybox\n"
      "RUN echo about to fail; exit 3\n");
  ASSERT_FALSE(image.ok());
  EXPECT_THAT(image.status().message(), HasSubstr("Dockerfile:2"));
  EXPECT_THAT(image.status().message(), HasSubstr("exit"));
  EXPECT_THAT(image.status().message(), HasSubstr("3"));
  EXPECT_THAT(image.status().message(), HasSubstr("about to fail"));
}

TEST_P(StageExecutorTest, BuildArgsReachRunButNotTheImage) {
  absl::StatusOr<BuiltImage> image = Build(
      "FROM busybox\n"
      "ARG VERSION=0.1\n"
      "RUN echo \"v=$VERSION\" > /version\n",
      {"VERSION=2.0"});
  ASSERT_TRUE(image.ok()) << image.status();
  for (const std::string& env : image->config.config.env) {
    EXPECT_THAT(env, Not(HasSubstr("VERSION")));
  }
  EXPECT_EQ(ReadFile(Mount(*image) / "version"), "v=2.0\n");
  EXPECT_THAT(image->config.history.back().created_by, HasSubstr("VERSION=2.0"));
}

TEST_P(StageExecutorTest, CopyFromAnotherStageAndWorkdirOwnedByUser) {
  absl::StatusOr<BuiltImage> image = Build(
      "FROM busybox AS build\n"
      "RUN mkdir -p /out && echo built > /out/app && chmod 0750 /out/app\n"
      "FROM busybox\n"
      "USER app\n"
      "WORKDIR /home/app/work\n"
      "COPY --from=build /out/app ./\n"
      "COPY --from=0 --chown=app:appgrp /out/app /opt/app\n");
  ASSERT_TRUE(image.ok()) << image.status();
  const stdfs::path root = Mount(*image);
  EXPECT_EQ(ReadFile(root / "home/app/work/app"), "built\n");
  struct stat st {};
  ASSERT_EQ(stat((root / "home/app/work").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 2345u);
  ASSERT_EQ(stat((root / "home/app/work/app").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);  // from a stage: owners kept
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  ASSERT_EQ(stat((root / "opt/app").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 2345u);
}

TEST_P(StageExecutorTest, HeredocCopyIsMode0664AndExpanded) {
  absl::StatusOr<BuiltImage> image = Build(
      "FROM busybox\n"
      "ARG NAME=world\n"
      "COPY <<EOF /etc/greeting\n"
      "hello ${NAME}\n"
      "EOF\n");
  ASSERT_TRUE(image.ok()) << image.status();
  const stdfs::path root = Mount(*image);
  EXPECT_EQ(ReadFile(root / "etc/greeting"), "hello world\n");
  struct stat st {};
  ASSERT_EQ(stat((root / "etc/greeting").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0664u);
}

TEST_P(StageExecutorTest, MissingImageAndMissingSourceAreClearErrors) {
  absl::StatusOr<BuiltImage> image = Build("FROM nosuchimage\nRUN true\n");
  ASSERT_FALSE(image.ok());
  EXPECT_THAT(image.status().message(), HasSubstr("nosuchimage"));
  EXPECT_THAT(image.status().message(), HasSubstr("Dockerfile:1"));

  image = Build("FROM busybox\nCOPY missing.txt /\n");
  ASSERT_FALSE(image.ok());
  EXPECT_THAT(image.status().message(), HasSubstr("Dockerfile:2"));
  EXPECT_THAT(image.status().message(), HasSubstr("missing.txt"));
}

TEST_P(StageExecutorTest, ContextFileChangedAfterIndexingIsRefused) {
  std::ofstream(context_ / "a.txt") << "first\n";
  std::ofstream(dir_.path() / "Dockerfile") << "FROM busybox\n";
  absl::StatusOr<fs::ContextIndex> index =
      fs::ContextIndex::Build(context_, dir_.path() / "Dockerfile");
  ASSERT_TRUE(index.ok()) << index.status();
  std::ofstream(context_ / "a.txt") << "changed\n";
  absl::Status made = MaterializeContext(context_, *index, {"a.txt"}, dir_.path() / "materialized");
  EXPECT_EQ(made.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(made.message(), HasSubstr("a.txt: changed"));

  std::ofstream(context_ / "a.txt") << "first\n";
  made = MaterializeContext(context_, *index, {"a.txt"}, dir_.path() / "again");
  ASSERT_TRUE(made.ok()) << made;
  EXPECT_EQ(ReadFile(dir_.path() / "again/a.txt"), "first\n");
}

TEST_P(StageExecutorTest, ParallelStagesEachKeepTheirOwnLayers) {
  // Four stages run at once, each sandbox starting while the others' overlays
  // are mounted (a sandbox's mount namespace copies them): every rootfs must
  // still unmount and give exactly its own layer.
  std::string dockerfile;
  for (int i = 1; i <= 4; ++i) {
    dockerfile +=
        absl::StrCat("FROM busybox AS s", i, "\nRUN sleep 0.3 && echo ", i, " > /out", i, "\n");
  }
  dockerfile += "FROM busybox\n";
  for (int i = 1; i <= 4; ++i) {
    dockerfile += absl::StrCat("COPY --from=s", i, " /out", i, " /\n");
  }
  for (int round = 0; round < 3; ++round) {
    absl::StatusOr<BuiltImage> image = Build(dockerfile);
    ASSERT_TRUE(image.ok()) << image.status();
    ASSERT_EQ(image->layers.size(), 5u) << log_;
    const stdfs::path root = Mount(*image);
    for (int i = 1; i <= 4; ++i)
      EXPECT_EQ(ReadFile(root / absl::StrCat("out", i)), absl::StrCat(i, "\n"));
  }
}

TEST_P(StageExecutorTest, CachedStepsAreNotRunAgainUntilTheirInputsChange) {
  std::ofstream(context_ / "a.txt") << "first\n";
  const std::string dockerfile =
      "FROM busybox\n"
      "RUN echo ran >> /runs\n"
      "COPY a.txt /a.txt\n"
      "RUN true\n";
  absl::StatusOr<BuiltImage> first = Build(dockerfile, {}, /*cache=*/true);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(log_.find("CACHED"), std::string::npos) << log_;

  absl::StatusOr<BuiltImage> second = Build(dockerfile, {}, /*cache=*/true);
  ASSERT_TRUE(second.ok()) << second.status();
  // Three filesystem steps, three cache hits; the same layers, and no-change
  // steps stay empty.
  size_t hits = 0;
  for (size_t at = log_.find("CACHED"); at != std::string::npos; at = log_.find("CACHED", at + 1)) {
    ++hits;
  }
  EXPECT_EQ(hits, 3u) << log_;
  EXPECT_EQ(second->layers, first->layers);
  EXPECT_EQ(second->config.diff_ids, first->config.diff_ids);
  ASSERT_EQ(second->config.history.size(), first->config.history.size());
  for (size_t i = 0; i < first->config.history.size(); ++i) {
    EXPECT_EQ(second->config.history[i].empty_layer, first->config.history[i].empty_layer);
  }

  // A changed context file: the RUN before it is still cached, the COPY and
  // what follows run again.
  std::ofstream(context_ / "a.txt") << "second\n";
  absl::StatusOr<BuiltImage> third = Build(dockerfile, {}, /*cache=*/true);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->layers[1], first->layers[1]);
  EXPECT_NE(third->layers[2], first->layers[2]);
  EXPECT_EQ(ReadFile(Mount(*third) / "a.txt"), "second\n");

  // --no-cache runs every step: the RUN appends a second line to a fresh copy
  // of the base, so its layer has the same content, but it did run.
  absl::StatusOr<BuiltImage> uncached = Build(dockerfile, {}, /*cache=*/true, /*use_cache=*/false);
  ASSERT_TRUE(uncached.ok()) << uncached.status();
  EXPECT_EQ(log_.find("CACHED"), std::string::npos) << log_;

  // A cached layer collected from the store is built again, not trusted.
  ASSERT_TRUE(store_->Delete(third->layers[2].digest).ok());
  absl::StatusOr<BuiltImage> rebuilt = Build(dockerfile, {}, /*cache=*/true);
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
  EXPECT_TRUE(*store_->Has(rebuilt->layers[2].digest));
  EXPECT_EQ(ReadFile(Mount(*rebuilt) / "a.txt"), "second\n");
}

// A build whose steps are all cached does not copy the context at all: here a
// file changed after indexing, which a copy would refuse (its digest no longer
// matches), goes unread; once a step needs the context, the copy is made and
// the change is caught.
TEST_P(StageExecutorTest, AFullyCachedBuildDoesNotCopyTheContext) {
  std::ofstream(context_ / "a.txt") << "first\n";
  const std::string dockerfile =
      "FROM busybox\n"
      "COPY a.txt /a.txt\n";
  absl::StatusOr<BuiltImage> first = Build(dockerfile, {}, /*cache=*/true);
  ASSERT_TRUE(first.ok()) << first.status();
  auto change_a = [this] { std::ofstream(context_ / "a.txt") << "FIRST\n"; };
  absl::StatusOr<BuiltImage> cached =
      Build(dockerfile, {}, /*cache=*/true, /*use_cache=*/true, change_a);
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ(cached->layers, first->layers);
  std::ofstream(context_ / "a.txt") << "first\n";
  absl::StatusOr<BuiltImage> uncached =
      Build(dockerfile, {}, /*cache=*/true, /*use_cache=*/false, change_a);
  ASSERT_FALSE(uncached.ok());
  EXPECT_THAT(uncached.status().message(), HasSubstr("a.txt")) << uncached.status();
}

// Without SOURCE_DATE_EPOCH the times are BuildKit's: an entry without a
// layer has none, a layer's entry has its layer's, the config's "created" is
// the last one; the step cache keeps them, so a cached rebuild is the same
// image, and --no-cache dates the layers anew.
TEST_P(StageExecutorTest, WithoutSourceDateEpochACachedRebuildKeepsTheFirstBuildsTimes) {
  epoch_.reset();
  const std::string dockerfile =
      "FROM busybox\nENV A=1\nRUN echo a > /a\nLABEL l=1\nRUN echo b > /b\nENV B=2\n";
  const absl::Time before = absl::Now();
  absl::StatusOr<BuiltImage> first = Build(dockerfile, {}, /*cache=*/true);
  ASSERT_TRUE(first.ok()) << first.status() << "\n" << log_;
  const absl::Time after = absl::Now();
  const std::vector<oci::HistoryEntry>& history = first->config.history;
  ASSERT_EQ(history.size(), 5u);
  for (size_t i : {0, 2, 4}) {
    EXPECT_TRUE(history[i].empty_layer) << i;
    EXPECT_FALSE(history[i].created.has_value()) << i;
  }
  for (size_t i : {1, 3}) {
    ASSERT_TRUE(history[i].created.has_value()) << i;
    EXPECT_GE(*history[i].created, before);
    EXPECT_LE(*history[i].created, after);
  }
  EXPECT_LE(*history[1].created, *history[3].created);
  EXPECT_EQ(first->config.created, history[3].created);

  absl::StatusOr<BuiltImage> cached = Build(dockerfile, {}, /*cache=*/true);
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ(oci::SerializeImageConfig(cached->config), oci::SerializeImageConfig(first->config));
  EXPECT_EQ(cached->layers, first->layers);

  absl::StatusOr<BuiltImage> uncached = Build(dockerfile, {}, /*cache=*/true, /*use_cache=*/false);
  ASSERT_TRUE(uncached.ok()) << uncached.status();
  ASSERT_TRUE(uncached->config.history[1].created.has_value());
  EXPECT_GT(*uncached->config.history[1].created, *history[3].created);
}

INSTANTIATE_TEST_SUITE_P(Rootfs, StageExecutorTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Copy" : "Overlay";
                         });

}  // namespace
}  // namespace stagefarm::worker
