#include "cli/build_record.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace stagefarm::cli {
namespace {

using Kind = ProgressEvent::Kind;
using ::testing::ElementsAre;

const absl::Time kStart = absl::FromUnixSeconds(1700000000);

ProgressEvent At(double seconds, Kind kind, int stage, const std::string& name,
                 const std::string& worker, const std::string& text = "") {
  ProgressEvent event;
  event.time = kStart + absl::Seconds(seconds);
  event.build = "b1";
  event.kind = kind;
  event.stage = stage;
  event.stage_name = name;
  event.worker = worker;
  event.text = text;
  return event;
}

// Three stages: a and b at once on w1 (two slots), c on w2 after a retry,
// base from the cache; then the build ends.
void Fill(BuildRecord& record) {
  record.AddClientSpan({"read context", kStart - absl::Milliseconds(5), kStart});
  record.Add(At(0, Kind::kCached, 0, "base", ""));
  record.Add(At(0.1, Kind::kStarted, 1, "a", "w1"));
  ProgressEvent step = At(0.2, Kind::kStep, 1, "a", "w1", "run make a");
  step.step = 1;
  step.steps = 1;
  record.Add(step);
  record.Add(At(0.15, Kind::kStarted, 2, "b", "w1"));
  ProgressEvent done = At(1.0, Kind::kStageDone, 1, "a", "w1");
  done.seconds = 0.9;
  done.bytes_fetched = 4096;
  record.Add(done);
  record.Add(At(1.1, Kind::kStageDone, 2, "b", "w1"));
  record.Add(At(1.2, Kind::kStarted, 3, "c", "w2"));
  record.Add(At(1.5, Kind::kRetried, 3, "c", "w2", "worker lost"));
  record.Add(At(1.6, Kind::kStarted, 3, "c", "w1"));
  record.Add(At(2.0, Kind::kStageDone, 3, "c", "w1"));
  ProgressEvent end = At(2.0, Kind::kBuildDone, -1, "", "");
  end.seconds = 2.0;
  record.Add(end);
}

TEST(BuildRecordTest, TraceHasOneTrackPerWorkerAndASecondForOverlappingStages) {
  BuildRecord record;
  Fill(record);
  const nlohmann::json trace = nlohmann::json::parse(record.TraceJson());
  std::map<int, std::string> tracks;
  std::vector<std::string> stage_slices;
  for (const nlohmann::json& event : trace["traceEvents"]) {
    if (event["name"] == "thread_name") tracks[event["tid"]] = event["args"]["name"];
    if (event["ph"] == "X" && event["cat"] == "stage") {
      stage_slices.push_back(absl::StrCat(event["name"].get<std::string>(), "@",
                                          tracks[event["tid"]], ":",
                                          event["args"]["outcome"].get<std::string>()));
    }
  }
  EXPECT_THAT(stage_slices, ElementsAre("a@w1:done", "b@w1 #2:done", "c@w2:retried", "c@w1:done"));
  // Times are microseconds from the first thing recorded (the client's span).
  for (const nlohmann::json& event : trace["traceEvents"]) {
    if (event["ph"] == "X" && event["name"] == "run make a") {
      EXPECT_EQ(event["ts"], 205000);
      EXPECT_EQ(event["dur"], 800000);  // to the stage's end
    }
    if (event["ph"] == "X" && event["name"] == "read context") {
      EXPECT_EQ(event["ts"], 0);
    }
  }
  // Stage a's inputs: from its start to its first step, with the bytes it
  // fetched; stages that ran no step have none.
  std::vector<std::string> fetches;
  for (const nlohmann::json& event : trace["traceEvents"]) {
    if (event["ph"] == "X" && event["cat"] == "transfer") {
      fetches.push_back(absl::StrCat(event["name"].get<std::string>(), "@", tracks[event["tid"]],
                                     ":", event["ts"].get<int64_t>(), "+",
                                     event["dur"].get<int64_t>(), ":",
                                     event["args"]["bytes_fetched"].get<uint64_t>()));
    }
  }
  EXPECT_THAT(fetches, ElementsAre("fetch inputs@w1:105000+100000:4096"));
}

TEST(BuildRecordTest, MetadataNamesTheImageAsBuildxDoesAndEachStageWhereItRan) {
  BuiltImageRecord image;
  image.manifest_digest = "sha256:" + std::string(64, 'a');
  image.config_digest = "sha256:" + std::string(64, 'c');
  image.media_type = "application/vnd.oci.image.manifest.v1+json";
  image.manifest_size = 550;
  image.names = {"docker.io/library/app:1", "registry.local/app:1"};
  BuildRecord record;
  Fill(record);
  const nlohmann::json metadata =
      nlohmann::json::parse(record.MetadataJson(image, {3, 1, 0.5, 26}));
  EXPECT_EQ(metadata["containerimage.digest"], image.manifest_digest);
  EXPECT_EQ(metadata["containerimage.config.digest"], image.config_digest);
  EXPECT_EQ(metadata["containerimage.descriptor"]["size"], 550);
  EXPECT_EQ(metadata["image.name"], "docker.io/library/app:1,registry.local/app:1");
  EXPECT_EQ(metadata["stagefarm.build"]["seconds"], 2.0);
  const nlohmann::json& stages = metadata["stagefarm.stages"];
  ASSERT_EQ(stages.size(), 4u);
  EXPECT_EQ(stages[0]["name"], "base");
  EXPECT_TRUE(stages[0]["cached"].get<bool>());
  EXPECT_EQ(stages[1]["worker"], "w1");
  EXPECT_EQ(stages[1]["bytes_fetched"], 4096);
  EXPECT_EQ(stages[3]["worker"], "w1");
  EXPECT_EQ(stages[3]["attempts"], 2);
  EXPECT_EQ(metadata["stagefarm.client"]["bytes_uploaded"], 26);
}

}  // namespace
}  // namespace stagefarm::cli
