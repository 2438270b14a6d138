#include "common/graph/cache_key.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fs/context_index.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

extern char** environ;

namespace stagefarm::graph {
namespace {

using digest::Digest;
using digest::Sha256Of;

// Fixed inputs covering every field. Their key is pinned below.
CacheKeyInputs GoldenInputs() {
  CacheKeyInputs inputs{
      .parent = BaseImageKey("docker.io/library/golang:1.22", Sha256Of("golang manifest")),
      .instruction = "COPY --chown=app:app --link src/ /app/",
      .platform = "linux/amd64",
      .build_args = {{"VERSION", "1.2.3"}, {"GOFLAGS", "-mod=vendor"}},
      .env = {{"PATH", "/usr/local/go/bin:/usr/bin:/bin"}, {"CGO_ENABLED", "0"}},
  };
  inputs.inputs.emplace("context", Sha256Of("context selection"));
  inputs.inputs.emplace("stage:0:/out/app", Sha256Of("artifact"));
  inputs.inputs.emplace("image:docker.io/library/alpine:3.19", Sha256Of("alpine manifest"));
  return inputs;
}

// The key of GoldenInputs() under layout v1, computed once and pasted here
// (and reproduced by an independent implementation of the layout documented
// in cache_key.h, a few lines of Python's hashlib). It proves keys do not
// drift between builds, processes and machines: a key stored by one
// coordinator must be found by another. If this test fails, the key layout (or
// what a field means) changed: that is only allowed together with a new
// kCacheKeyVersion, and then this value is recomputed and replaced.
constexpr absl::string_view kGoldenKey =
    "sha256:ae30c409b9e1bcdf7fb1b6914642b41de702de28aaef4609bec4b4bdc029b6ff";

// BaseImageKey("scratch", nullopt) under v1, pinned for the same reason.
constexpr absl::string_view kGoldenScratchKey =
    "sha256:a5a6ab3a09263d11696c222acbea4099d97820cf37f8bd7115cd320d698e0251";

constexpr absl::string_view kChildMarker = "cache key of golden inputs: ";

TEST(CacheKeyTest, GoldenInputs_KeyIsPinned) {
  EXPECT_EQ(ComputeCacheKey(GoldenInputs()).ToString(), kGoldenKey);
  EXPECT_EQ(BaseImageKey("scratch", std::nullopt).ToString(), kGoldenScratchKey);
}

// Also run on its own, in a second process, by the next test.
TEST(CacheKeyTest, GoldenInputs_PrintKey) {
  std::cout << kChildMarker << ComputeCacheKey(GoldenInputs()).ToString() << std::endl;
}

// A fresh process of this test binary (its own address-space layout and
// Abseil hash seed) computes the same key as this one.
TEST(CacheKeyTest, GoldenInputs_SameKeyInAnotherProcess) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  posix_spawn_file_actions_addclose(&actions, fds[1]);
  std::string program = "/proc/self/exe";
  std::string filter = "--gtest_filter=CacheKeyTest.GoldenInputs_PrintKey";
  char* argv[] = {program.data(), filter.data(), nullptr};
  pid_t child = 0;
  const int spawned = posix_spawn(&child, program.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  ASSERT_EQ(spawned, 0);
  std::string output;
  char buffer[4096];
  for (ssize_t n; (n = read(fds[0], buffer, sizeof(buffer))) > 0;) output.append(buffer, n);
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << output;

  const size_t marker = absl::string_view(output).find(kChildMarker);
  ASSERT_NE(marker, std::string::npos) << output;
  const size_t start = marker + kChildMarker.size();
  const std::string child_key = output.substr(start, output.find('\n', start) - start);
  EXPECT_EQ(child_key, ComputeCacheKey(GoldenInputs()).ToString());
}

TEST(CacheKeyTest, SameInputs_SameKey) {
  EXPECT_EQ(ComputeCacheKey(GoldenInputs()), ComputeCacheKey(GoldenInputs()));
}

// One change to the golden inputs, and what it stands for.
struct Change {
  std::string what;
  std::function<void(CacheKeyInputs&)> apply;
};

TEST(CacheKeyTest, AnySingleChange_ChangesTheKey) {
  const std::vector<Change> changes = {
      {"instruction text", [](CacheKeyInputs& in) { in.instruction = "COPY src/ /srv/"; }},
      {"a flag value",
       [](CacheKeyInputs& in) { in.instruction = "COPY --chown=root:root --link src/ /app/"; }},
      {"a flag added",
       [](CacheKeyInputs& in) {
         in.instruction = "COPY --chown=app:app --chmod=0755 --link src/ /app/";
       }},
      {"a flag removed",
       [](CacheKeyInputs& in) { in.instruction = "COPY --chown=app:app src/ /app/"; }},
      {"platform", [](CacheKeyInputs& in) { in.platform = "linux/arm64"; }},
      {"a visible arg's value", [](CacheKeyInputs& in) { in.build_args["VERSION"] = "1.2.4"; }},
      {"a visible arg added", [](CacheKeyInputs& in) { in.build_args["NEW"] = ""; }},
      {"a visible arg removed", [](CacheKeyInputs& in) { in.build_args.erase("GOFLAGS"); }},
      {"an env value", [](CacheKeyInputs& in) { in.env["CGO_ENABLED"] = "1"; }},
      {"an env variable added", [](CacheKeyInputs& in) { in.env["HOME"] = "/root"; }},
      {"the context selection",
       [](CacheKeyInputs& in) { in.inputs.at("context") = Sha256Of("other selection"); }},
      {"an upstream artifact",
       [](CacheKeyInputs& in) { in.inputs.at("stage:0:/out/app") = Sha256Of("rebuilt"); }},
      {"an input's label",
       [](CacheKeyInputs& in) {
         in.inputs.emplace("stage:0:/out/app2", in.inputs.at("stage:0:/out/app"));
         in.inputs.erase("stage:0:/out/app");
       }},
      {"an external image's digest",
       [](CacheKeyInputs& in) {
         in.inputs.at("image:docker.io/library/alpine:3.19") = Sha256Of("alpine rebuilt");
       }},
      {"an input added",
       [](CacheKeyInputs& in) { in.inputs.emplace("mount:cache:/root/.cache", Sha256Of("c")); }},
      {"the base image's manifest",
       [](CacheKeyInputs& in) {
         in.parent = BaseImageKey("docker.io/library/golang:1.22", Sha256Of("golang patched"));
       }},
      {"the parent key", [](CacheKeyInputs& in) { in.parent = ComputeCacheKey(in); }},
  };
  const Digest golden = ComputeCacheKey(GoldenInputs());
  for (const Change& change : changes) {
    CacheKeyInputs inputs = GoldenInputs();
    change.apply(inputs);
    EXPECT_NE(ComputeCacheKey(inputs), golden) << change.what;
  }
}

// Byte strings that concatenate alike must still give different keys.
TEST(CacheKeyTest, FieldBoundaries_DoNotCollide) {
  const Digest parent = BaseImageKey("scratch", std::nullopt);
  auto key = [&parent](std::map<std::string, std::string> args,
                       std::map<std::string, std::string> env, std::string instruction) {
    return ComputeCacheKey({.parent = parent,
                            .instruction = std::move(instruction),
                            .platform = "linux/amd64",
                            .build_args = std::move(args),
                            .env = std::move(env)});
  };
  EXPECT_NE(key({{"A", "B=C"}}, {}, "RUN x"), key({{"A=B", "C"}}, {}, "RUN x"));
  EXPECT_NE(key({{"AB", "C"}}, {}, "RUN x"), key({{"A", "BC"}}, {}, "RUN x"));
  EXPECT_NE(key({{"A", "1"}}, {}, "RUN x"), key({}, {{"A", "1"}}, "RUN x"));
  EXPECT_NE(key({{"A", "1"}, {"B", "2"}}, {}, "RUN x"), key({{"A", "1"}}, {{"B", "2"}}, "RUN x"));
  EXPECT_NE(key({}, {}, "RUN x"), key({{"", ""}}, {}, "RUN x"));
}

TEST(CacheKeyTest, MapOrder_DoesNotMatter) {
  CacheKeyInputs forward = GoldenInputs();
  CacheKeyInputs backward{
      .parent = forward.parent, .instruction = forward.instruction, .platform = forward.platform};
  for (auto it = forward.build_args.rbegin(); it != forward.build_args.rend(); ++it) {
    backward.build_args.emplace(it->first, it->second);
  }
  for (auto it = forward.env.rbegin(); it != forward.env.rend(); ++it) {
    backward.env.emplace(it->first, it->second);
  }
  for (auto it = forward.inputs.rbegin(); it != forward.inputs.rend(); ++it) {
    backward.inputs.emplace(it->first, it->second);
  }
  EXPECT_EQ(ComputeCacheKey(backward), ComputeCacheKey(forward));
}

TEST(CacheKeyTest, BaseImageKey_FollowsTheManifestWhenKnownElseTheReference) {
  const Digest manifest = Sha256Of("manifest");
  EXPECT_EQ(BaseImageKey("docker.io/library/alpine:3", manifest),
            BaseImageKey("docker.io/library/alpine:3.19", manifest));
  EXPECT_NE(BaseImageKey("docker.io/library/alpine:3", manifest),
            BaseImageKey("docker.io/library/alpine:3", Sha256Of("other manifest")));
  EXPECT_NE(BaseImageKey("docker.io/library/alpine:3", std::nullopt),
            BaseImageKey("docker.io/library/alpine:3.19", std::nullopt));
  EXPECT_NE(BaseImageKey("docker.io/library/alpine:3", std::nullopt),
            BaseImageKey("docker.io/library/alpine:3", manifest));
  EXPECT_NE(BaseImageKey("scratch", std::nullopt),
            BaseImageKey("docker.io/library/alpine:3", std::nullopt));
}

// The keys of a stage's instructions, chained from `base`.
std::vector<Digest> StageKeys(const Digest& base, const std::vector<std::string>& instructions,
                              const std::map<std::string, std::string>& build_args = {}) {
  std::vector<Digest> keys;
  for (const std::string& instruction : instructions) {
    keys.push_back(ComputeCacheKey({.parent = keys.empty() ? base : keys.back(),
                                    .instruction = instruction,
                                    .platform = "linux/amd64",
                                    .build_args = build_args}));
  }
  return keys;
}

TEST(CacheKeyTest, ConfigInstruction_ChangesItsKeyAndEveryLaterOne) {
  const Digest base = BaseImageKey("docker.io/library/debian:12", Sha256Of("debian"));
  const std::vector<std::string> stage = {
      "USER app",
      "HEALTHCHECK --interval=30s CMD [\"curl\", \"-f\", \"http://localhost/\"]",
      "LABEL org.opencontainers.image.version=1.0",
      "RUN make",
  };
  const std::vector<Digest> keys = StageKeys(base, stage);
  for (size_t changed = 0; changed < 3; ++changed) {
    std::vector<std::string> edited = stage;
    edited[changed] = std::vector<std::string>{
        "USER root", "HEALTHCHECK --interval=10s CMD [\"curl\", \"-f\", \"http://localhost/\"]",
        "LABEL org.opencontainers.image.version=1.1"}[changed];
    const std::vector<Digest> edited_keys = StageKeys(base, edited);
    for (size_t i = 0; i < stage.size(); ++i) {
      if (i < changed) {
        EXPECT_EQ(edited_keys[i], keys[i]) << "changed " << changed << ", key " << i;
      } else {
        EXPECT_NE(edited_keys[i], keys[i]) << "changed " << changed << ", key " << i;
      }
    }
  }
}

TEST(CacheKeyTest, BaseImageChange_ChangesEveryKeyOfTheStage) {
  const std::vector<std::string> stage = {"WORKDIR /src", "RUN make"};
  const std::vector<Digest> before =
      StageKeys(BaseImageKey("docker.io/library/debian:12", Sha256Of("debian")), stage);
  const std::vector<Digest> after =
      StageKeys(BaseImageKey("docker.io/library/debian:12", Sha256Of("debian, patched")), stage);
  EXPECT_NE(after[0], before[0]);
  EXPECT_NE(after[1], before[1]);
}

// The args an instruction can see, from all those given on the command line:
// the key is computed from these alone.
std::map<std::string, std::string> Visible(const std::map<std::string, std::string>& all,
                                           const std::vector<std::string>& declared) {
  std::map<std::string, std::string> visible;
  for (const std::string& name : declared) {
    if (auto it = all.find(name); it != all.end()) visible.insert(*it);
  }
  return visible;
}

TEST(CacheKeyTest, ArgTheInstructionCannotSee_DoesNotChangeTheKey) {
  const Digest base = BaseImageKey("scratch", std::nullopt);
  const std::vector<std::string> stage = {"RUN echo $VERSION"};
  const std::vector<Digest> before =
      StageKeys(base, stage, Visible({{"VERSION", "1"}, {"UNUSED", "a"}}, {"VERSION"}));
  const std::vector<Digest> after =
      StageKeys(base, stage, Visible({{"VERSION", "1"}, {"UNUSED", "b"}}, {"VERSION"}));
  EXPECT_EQ(after, before);
  const std::vector<Digest> visible_changed =
      StageKeys(base, stage, Visible({{"VERSION", "2"}, {"UNUSED", "a"}}, {"VERSION"}));
  EXPECT_NE(visible_changed, before);
}

// COPY keys over a real context directory, through fs::ContextIndex.
class CacheKeyContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::path(::testing::TempDir()) / "cache_key_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    Write("Dockerfile", "FROM scratch\nCOPY src/ /app/\n");
    Write(".dockerignore", "src/*.tmp\n");
    Write("src/main.go", "package main\n");
    Write("src/util.go", "package main // util\n");
    Write("README.md", "not copied\n");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Write(const std::string& path, const std::string& content) {
    std::filesystem::create_directories((dir_ / path).parent_path());
    std::ofstream(dir_ / path, std::ios::binary | std::ios::trunc) << content;
  }

  // The key of "COPY src/ /app/" over the context as it is now.
  Digest CopyKey() {
    absl::StatusOr<fs::ContextIndex> index = fs::ContextIndex::Build(dir_, dir_ / "Dockerfile");
    EXPECT_TRUE(index.ok()) << index.status();
    if (!index.ok()) return Sha256Of("error");
    absl::StatusOr<std::vector<const fs::ContextEntry*>> selection =
        index->Select({std::string("src/")});
    EXPECT_TRUE(selection.ok()) << selection.status();
    if (!selection.ok()) return Sha256Of("error");
    CacheKeyInputs inputs{.parent = BaseImageKey("scratch", std::nullopt),
                          .instruction = "COPY src/ /app/",
                          .platform = "linux/amd64"};
    inputs.inputs.emplace("context", fs::SelectionDigest(*selection));
    return ComputeCacheKey(inputs);
  }

  std::filesystem::path dir_;
};

TEST_F(CacheKeyContextTest, ContentChange_ChangesTheKey) {
  const Digest before = CopyKey();
  Write("src/util.go", "package main // util, edited\n");
  EXPECT_NE(CopyKey(), before);
}

TEST_F(CacheKeyContextTest, ModeChange_ChangesTheKey) {
  const Digest before = CopyKey();
  ASSERT_EQ(chmod((dir_ / "src/main.go").c_str(), 0755), 0);
  EXPECT_NE(CopyKey(), before);
}

TEST_F(CacheKeyContextTest, NewFileUnderTheSource_ChangesTheKey) {
  const Digest before = CopyKey();
  Write("src/new.go", "package main\n");
  EXPECT_NE(CopyKey(), before);
}

TEST_F(CacheKeyContextTest, ModificationTime_DoesNotChangeTheKey) {
  const Digest before = CopyKey();
  const timespec times[2] = {{86400, 0}, {86400, 0}};
  for (const char* path : {"src", "src/main.go", "src/util.go"}) {
    ASSERT_EQ(utimensat(AT_FDCWD, (dir_ / path).c_str(), times, 0), 0) << path;
  }
  EXPECT_EQ(CopyKey(), before);
}

TEST_F(CacheKeyContextTest, FilesTheInstructionDoesNotRead_DoNotChangeTheKey) {
  const Digest before = CopyKey();
  Write("README.md", "edited, still not copied\n");
  Write("src/scratch.tmp", "excluded by .dockerignore\n");
  EXPECT_EQ(CopyKey(), before);
}

}  // namespace
}  // namespace stagefarm::graph
