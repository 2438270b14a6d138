#include "common/build/build_definition.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "capnp/message.h"
#include "capnp/serialize.h"
#include "zstd.h"

namespace stagefarm::build {
namespace {

using ::testing::HasSubstr;

BuildDefinition Sample() {
  BuildDefinition definition;
  definition.dockerfile = "FROM scratch AS a\nENV A=1\nFROM a\nCOPY --from=a /x /y\n";
  definition.dockerfile_name = "build/Dockerfile.ci";
  definition.build_args = {"VERSION=1.2", "EMPTY="};
  definition.target = "a";
  definition.platform = "linux/arm64";
  definition.source_date_epoch = 1700000000;
  definition.no_cache = true;
  return definition;
}

std::string Frame(const BuildDefinition& definition) {
  capnp::MallocMessageBuilder message;
  ToSchema(definition, message.initRoot<schema::BuildDefinition>());
  return SerializeDefinition(message.getRoot<schema::BuildDefinition>().asReader());
}

TEST(BuildDefinitionFrame, ADefinitionReadsBackAsSent) {
  const BuildDefinition sent = Sample();
  absl::StatusOr<BuildDefinition> read = ParseDefinition(Frame(sent), "worker w1");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->dockerfile, sent.dockerfile);
  EXPECT_EQ(read->dockerfile_name, sent.dockerfile_name);
  EXPECT_EQ(read->build_args, sent.build_args);
  EXPECT_EQ(read->target, sent.target);
  EXPECT_EQ(read->platform, sent.platform);
  EXPECT_EQ(read->source_date_epoch, sent.source_date_epoch);
  EXPECT_TRUE(read->no_cache);
  // And plans like the original.
  absl::StatusOr<PlannedBuild> plan = PlanBuild(*read);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->graph.stages.size(), 2u);
}

// Named contexts travel with the definition, and every node plans them the
// same way: the image swapped in, the directory read by COPY --from and
// keyed by its content.
TEST(BuildDefinitionFrame, NamedContextsReadBackAndPlanAsSent) {
  BuildDefinition sent = Sample();
  sent.dockerfile = "FROM base\nCOPY --from=src app.txt /app.txt\n";
  sent.target = "";
  fs::ContextEntry file;
  file.path = "app.txt";
  file.mode = 0644;
  file.size = 5;
  file.content = digest::Sha256Of("hello");
  absl::StatusOr<fs::ContextIndex> index = fs::ContextIndex::FromEntries({file});
  ASSERT_TRUE(index.ok()) << index.status();
  sent.named_contexts.push_back({"base", *oci::ParseImageRef("busybox:1.36"), {}, "/not/sent"});
  sent.named_contexts.push_back({"src", std::nullopt, *index, "/not/sent"});
  absl::StatusOr<BuildDefinition> read = ParseDefinition(Frame(sent), "worker w1");
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->named_contexts.size(), 2u);
  EXPECT_EQ(read->named_contexts[0].image->String(), "docker.io/library/busybox:1.36");
  EXPECT_EQ(read->named_contexts[1].context.entries(), index->entries());
  EXPECT_TRUE(read->named_contexts[1].dir.empty());
  absl::StatusOr<PlannedBuild> plan = PlanBuild(*read);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->graph.stages[0].base.image.String(), "docker.io/library/busybox:1.36");
  ASSERT_TRUE(plan->keys_error.ok()) << plan->keys_error;
  ASSERT_EQ(plan->keys.size(), 1u);

  BuildDefinition bad = Sample();
  bad.named_contexts.push_back({"Upper", std::nullopt, {}, ""});
  EXPECT_THAT(ParseDefinition(Frame(bad), "w").status().message(), HasSubstr("not a context name"));
  bad.named_contexts = {{"src", std::nullopt, {}, ""}, {"src", std::nullopt, {}, ""}};
  EXPECT_THAT(ParseDefinition(Frame(bad), "w").status().message(), HasSubstr("given twice"));
}

TEST(BuildDefinitionFrame, ATruncatedFrameIsRefusedNamingItsSender) {
  const std::string frame = Frame(Sample());
  absl::StatusOr<BuildDefinition> read =
      ParseDefinition(absl::string_view(frame).substr(0, frame.size() - 16), "build b1");
  ASSERT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(read.status().message(), HasSubstr("build b1"));
}

TEST(BuildDefinitionFrame, BytesThatAreNotAFrameAreRefused) {
  absl::StatusOr<BuildDefinition> read = ParseDefinition("not a message", "build b1");
  ASSERT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(read.status().message(), HasSubstr("not zstd"));
  EXPECT_EQ(ParseDefinition("", "build b1").status().code(), absl::StatusCode::kInvalidArgument);
}

// A zstd frame of `bytes`, as a hostile peer could send.
std::string Zstd(const std::string& bytes) {
  std::string frame(ZSTD_compressBound(bytes.size()), '\0');
  frame.resize(ZSTD_compress(frame.data(), frame.size(), bytes.data(), bytes.size(), 1));
  return frame;
}

TEST(BuildDefinitionFrame, TrailingBytesAfterTheMessageAreRefused) {
  capnp::MallocMessageBuilder message;
  ToSchema(Sample(), message.initRoot<schema::BuildDefinition>());
  const kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  const std::string flat(reinterpret_cast<const char*>(words.asBytes().begin()),
                         words.asBytes().size());
  absl::StatusOr<BuildDefinition> read = ParseDefinition(Zstd(flat + std::string(8, '\0')), "b1");
  ASSERT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(read.status().message(), HasSubstr("8 trailing bytes"));
}

TEST(BuildDefinitionFrame, GarbageWordsAndOddSizesAreRefusedNotThrown) {
  EXPECT_EQ(ParseDefinition(Zstd(std::string(64, '\xff')), "b1").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseDefinition(Zstd(std::string(13, 'x')), "b1").status().code(),
            absl::StatusCode::kInvalidArgument);
  // A frame that claims more than the limit is refused before it is inflated.
  EXPECT_EQ(ParseDefinition(Zstd(std::string(kMaxDefinitionBytes + 8, '\0')), "b1").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace stagefarm::build
