#include "cli/progress.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace stagefarm::cli {
namespace {

using Kind = ProgressEvent::Kind;
using ::testing::HasSubstr;
using ::testing::Not;

// A FILE* whose bytes the test can read back.
class MemoryFile {
 public:
  MemoryFile() : file_(open_memstream(&data_, &size_)) {}
  ~MemoryFile() {
    std::fclose(file_);
    std::free(data_);
  }
  FILE* get() { return file_; }
  std::string Contents() {
    std::fflush(file_);
    return std::string(data_, size_);
  }

 private:
  char* data_ = nullptr;
  size_t size_ = 0;
  FILE* file_;
};

const absl::Time kStart = absl::FromUnixSeconds(1700000000);

ProgressEvent Event(Kind kind, int stage, std::string name, std::string worker = "",
                    std::string text = "") {
  ProgressEvent event;
  event.time = kStart + absl::Seconds(stage < 0 ? 10 : stage);
  event.build = "b1";
  event.stage = stage;
  event.stage_name = std::move(name);
  event.worker = std::move(worker);
  event.kind = kind;
  event.text = std::move(text);
  return event;
}

ProgressEvent Step(int stage, std::string name, uint32_t step, uint32_t steps, std::string text) {
  ProgressEvent event = Event(Kind::kStep, stage, std::move(name), "w1", std::move(text));
  event.step = step;
  event.steps = steps;
  return event;
}

ProgressEvent Done(int stage, std::string name, std::string worker, double seconds,
                   uint64_t bytes) {
  ProgressEvent event = Event(Kind::kStageDone, stage, std::move(name), std::move(worker));
  event.seconds = seconds;
  event.bytes_fetched = bytes;
  return event;
}

ProgressEvent BuildDone(double seconds) {
  ProgressEvent event = Event(Kind::kBuildDone, -1, "");
  event.seconds = seconds;
  return event;
}

// One stage built, one cached, one failed then retried: every kind once.
std::vector<ProgressEvent> SampleBuild() {
  return {
      Event(Kind::kQueued, 0, "builder"),
      Event(Kind::kStarted, 0, "builder", "w1", "golang:1.22"),
      Step(0, "builder", 2, 5, "RUN make\n  && make install"),
      Event(Kind::kLog, 0, "builder", "w1", "compiling\r\nlinking\n\n"),
      Event(Kind::kNote, 0, "builder", "w1", "fetching base"),
      Done(0, "builder", "w1", 1.234, 12345),
      Event(Kind::kStarted, 1, ""),
      Event(Kind::kCached, 1, ""),
      Event(Kind::kStageFailed, 2, "test", "w2", "exit code 2"),
      Event(Kind::kRetried, 2, "test", "w2", "worker lost"),
      BuildDone(12.34),
  };
}

TEST(ProgressPrinterTest, PlainMode_PrintsOneLinePerEventWithStageLabels) {
  MemoryFile out;
  {
    ProgressPrinter printer(ProgressMode::kPlain, out.get());
    for (const ProgressEvent& event : SampleBuild()) printer.Handle(event);
  }
  EXPECT_EQ(out.Contents(),
            "[builder] queued\n"
            "[builder] FROM golang:1.22 on w1\n"
            "[builder 2/5] RUN make\n"
            "[builder] | compiling\n"
            "[builder] | linking\n"
            "[builder] fetching base\n"
            "[builder] done in 1.23s on w1 (fetched 12.3 kB)\n"
            "[stage-1] start\n"
            "[stage-1] CACHED\n"
            "[test] failed on w2: exit code 2\n"
            "[test] retrying, the attempt on w2 failed: worker lost\n"
            "built in 12.3s: 3 stages, 1 cached\n");
}

TEST(ProgressPrinterTest, PlainMode_BuildFailureNamesTheReason) {
  MemoryFile out;
  ProgressPrinter printer(ProgressMode::kPlain, out.get());
  printer.Handle(Event(Kind::kStageFailed, 0, "app", "w1", "exit code 1"));
  printer.Handle(Event(Kind::kBuildFailed, -1, "", "", "stage app failed"));
  printer.Finish();
  EXPECT_THAT(
      out.Contents(),
      HasSubstr("build failed after 10.0s (1 stage, 0 cached, 1 failed): stage app failed\n"));
}

TEST(ProgressPrinterTest, JsonMode_EveryLineParsesWithTheCommonFields) {
  MemoryFile out;
  {
    ProgressPrinter printer(ProgressMode::kJson, out.get());
    for (const ProgressEvent& event : SampleBuild()) printer.Handle(event);
  }
  std::vector<nlohmann::json> lines;
  for (absl::string_view line : absl::StrSplit(out.Contents(), '\n', absl::SkipEmpty())) {
    lines.push_back(nlohmann::json::parse(line));
  }
  ASSERT_EQ(lines.size(), SampleBuild().size());
  std::vector<std::string> events;
  for (const nlohmann::json& line : lines) {
    for (const char* key : {"time", "build", "stage", "stage_name", "worker", "event"}) {
      EXPECT_TRUE(line.contains(key)) << key << " missing in " << line.dump();
    }
    events.push_back(line["event"]);
  }
  EXPECT_THAT(events, ::testing::ElementsAre("queued", "start", "step", "log", "note", "done",
                                             "start", "cached", "error", "retry", "build-done"));
  EXPECT_EQ(lines[0]["time"], "2023-11-14T22:13:20.000000Z");
  EXPECT_EQ(lines[0]["build"], "b1");
  EXPECT_EQ(lines[0]["stage"], 0);
  EXPECT_EQ(lines[0]["stage_name"], "builder");
  EXPECT_EQ(lines[1]["base"], "golang:1.22");
  EXPECT_EQ(lines[1]["worker"], "w1");
  EXPECT_EQ(lines[2]["step"], 2);
  EXPECT_EQ(lines[2]["steps"], 5);
  EXPECT_EQ(lines[2]["text"], "RUN make\n  && make install");
  EXPECT_EQ(lines[3]["text"], "compiling\r\nlinking\n\n");
  EXPECT_EQ(lines[5]["seconds"], 1.234);
  EXPECT_EQ(lines[5]["bytes_fetched"], 12345);
  EXPECT_EQ(lines[6]["stage_name"], "");
  EXPECT_EQ(lines[8]["text"], "exit code 2");
  EXPECT_EQ(lines[9]["text"], "worker lost");
  EXPECT_EQ(lines[10]["stage"], -1);
  EXPECT_EQ(lines[10]["seconds"], 12.34);
}

TEST(ProgressPrinterTest, JsonMode_InvalidUtf8InLogBecomesReplacementCharacter) {
  MemoryFile out;
  {
    ProgressPrinter printer(ProgressMode::kJson, out.get());
    printer.Handle(Event(Kind::kLog, 0, "app", "w1", "ok \xff\xfe end\n"));
  }
  const nlohmann::json line = nlohmann::json::parse(out.Contents());
  const std::string text = line["text"];
  EXPECT_TRUE(absl::StartsWith(text, "ok ")) << text;
  EXPECT_THAT(text, HasSubstr("\xEF\xBF\xBD"));
  EXPECT_TRUE(absl::EndsWith(text, " end\n")) << text;
}

TEST(ParseProgressModeTest, AcceptsTheFourValuesAndRejectsOthersByName) {
  MemoryFile out;
  EXPECT_EQ(*ParseProgressMode("plain", out.get()), ProgressMode::kPlain);
  EXPECT_EQ(*ParseProgressMode("tty", out.get()), ProgressMode::kTty);
  EXPECT_EQ(*ParseProgressMode("json", out.get()), ProgressMode::kJson);
  const absl::StatusOr<ProgressMode> bad = ParseProgressMode("fancy", out.get());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("\"fancy\""));
  EXPECT_FALSE(ParseProgressMode("", out.get()).ok());
}

TEST(ParseProgressModeTest, AutoOnAFileOrMemoryStreamIsPlain) {
  MemoryFile memory;
  EXPECT_EQ(*ParseProgressMode("auto", memory.get()), ProgressMode::kPlain);
  FILE* file = std::tmpfile();
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(*ParseProgressMode("auto", file), ProgressMode::kPlain);
  std::fclose(file);
}

// A pseudo-terminal stands in for the user's terminal.
TEST(ParseProgressModeTest, AutoOnATerminalIsTtyUnlessTermIsDumb) {
  const int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
    GTEST_SKIP() << "no pseudo-terminals here";
  }
  FILE* terminal = std::fopen(ptsname(master), "w");
  ASSERT_NE(terminal, nullptr);
  const char* saved = std::getenv("TERM");
  const std::optional<std::string> old_term =
      saved == nullptr ? std::nullopt : std::optional<std::string>(saved);
  setenv("TERM", "xterm-256color", 1);
  EXPECT_EQ(*ParseProgressMode("auto", terminal), ProgressMode::kTty);
  setenv("TERM", "dumb", 1);
  EXPECT_EQ(*ParseProgressMode("auto", terminal), ProgressMode::kPlain);
  unsetenv("TERM");
  EXPECT_EQ(*ParseProgressMode("auto", terminal), ProgressMode::kPlain);
  if (old_term) setenv("TERM", old_term->c_str(), 1);
  std::fclose(terminal);
  close(master);
}

TEST(ProgressPrinterTest, TtyMode_DrawsStagesWorkersWithEscapesAndEndsWithSummary) {
  MemoryFile out;
  ProgressPrinter printer(ProgressMode::kTty, out.get());
  printer.Handle(Event(Kind::kStarted, 0, "base", "", ""));
  printer.Handle(Event(Kind::kCached, 0, "base"));
  printer.Handle(Event(Kind::kStarted, 1, "builder", "worker-7", "golang"));
  printer.Handle(Step(1, "builder", 3, 7, "RUN make all"));
  printer.Handle(Event(Kind::kLog, 1, "builder", "worker-7", "cc -c a.c\ncc -c b.c\n"));
  printer.Handle(Event(Kind::kQueued, 2, ""));
  // Events closer than 100 ms share a redraw: let the timer draw this state.
  absl::SleepFor(absl::Milliseconds(250));
  printer.Handle(Done(1, "builder", "worker-7", 2.5, 0));
  printer.Handle(BuildDone(12.3));
  printer.Finish();
  const std::string text = out.Contents();
  EXPECT_THAT(text, HasSubstr("base"));
  EXPECT_THAT(text, HasSubstr("builder"));
  EXPECT_THAT(text, HasSubstr("stage-2"));
  EXPECT_THAT(text, HasSubstr("worker-7"));
  EXPECT_THAT(text, HasSubstr("3/7 RUN make all"));
  EXPECT_THAT(text, HasSubstr("\x1b[2m    cc -c b.c"));  // log tail, dimmed
  EXPECT_THAT(text, HasSubstr("\x1b[2K"));               // clear line
  EXPECT_THAT(text, HasSubstr("A\x1b[J"));               // cursor up over the last view
  EXPECT_THAT(text, HasSubstr("CACHED"));
  EXPECT_TRUE(absl::EndsWith(text, "\nbuilt in 12.3s: 3 stages, 1 cached\n")) << text;
  // The last view, drawn by Finish, shows the builder done.
  const std::string last_view = text.substr(text.rfind("\x1b[J"));
  EXPECT_THAT(last_view, HasSubstr("builder"));
  EXPECT_THAT(last_view, HasSubstr("2.5s  done"));
}

TEST(ProgressPrinterTest, TtyMode_FailedStagePrintsReasonAndLogTailAboveTheView) {
  MemoryFile out;
  ProgressPrinter printer(ProgressMode::kTty, out.get());
  printer.Handle(Event(Kind::kStarted, 0, "app", "w3"));
  printer.Handle(Event(Kind::kLog, 0, "app", "w3", "make: *** [all] Error 2\n"));
  printer.Handle(Event(Kind::kStageFailed, 0, "app", "w3", "RUN make: exit code 2"));
  printer.Handle(Event(Kind::kBuildFailed, -1, "", "", "stage app failed"));
  printer.Finish();
  const std::string text = out.Contents();
  EXPECT_THAT(text, HasSubstr("\x1b[2K[app] failed on w3: RUN make: exit code 2\n"
                              "\x1b[2K[app] | make: *** [all] Error 2\n"));
  EXPECT_THAT(text, HasSubstr("build failed after"));
  EXPECT_THAT(text, HasSubstr("stage app failed\n"));
}

TEST(ProgressPrinterTest, TtyMode_LongStepIsCutToTheTerminalWidth) {
  MemoryFile out;
  {
    ProgressPrinter printer(ProgressMode::kTty, out.get());
    printer.Handle(Event(Kind::kStarted, 0, "app", "w1"));
    printer.Handle(Step(0, "app", 1, 1, "RUN " + std::string(200, 'x')));
  }
  const std::string text = out.Contents();
  EXPECT_THAT(text, HasSubstr("x..."));
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    // Without escapes, no line reaches the 80 columns a non-terminal is given.
    std::string plain;
    for (size_t i = 0; i < line.size(); ++i) {
      if (line[i] == '\r') continue;
      if (line[i] == '\x1b') {
        while (i < line.size() && !absl::ascii_isalpha(line[i])) ++i;
        continue;
      }
      plain += line[i];
    }
    EXPECT_LT(plain.size(), 80u) << plain;
  }
}

TEST(ProgressPrinterTest, TtyMode_EscapesInLogOutputCannotMoveTheCursor) {
  MemoryFile out;
  {
    ProgressPrinter printer(ProgressMode::kTty, out.get());
    printer.Handle(Event(Kind::kStarted, 0, "app", "w1"));
    printer.Handle(Event(Kind::kLog, 0, "app", "w1", "evil\x1b[2Jline\n"));
  }
  EXPECT_THAT(out.Contents(), Not(HasSubstr("\x1b[2J")));
  EXPECT_THAT(out.Contents(), HasSubstr("evil [2Jline"));
}

TEST(ProgressPrinterTest, Finish_IsIdempotentAndLaterEventsPrintAsPlainLines) {
  MemoryFile out;
  ProgressPrinter printer(ProgressMode::kTty, out.get());
  printer.Handle(Event(Kind::kCached, 0, "base"));
  printer.Handle(BuildDone(1));
  printer.Finish();
  printer.Finish();
  printer.Handle(Event(Kind::kNote, 0, "base", "", "late"));
  const std::string text = out.Contents();
  EXPECT_EQ(text.find("built in"), text.rfind("built in"));
  EXPECT_TRUE(absl::EndsWith(text, "built in 1.0s: 1 stage, 1 cached\n[base] late\n")) << text;
}

class ProgressThreadsTest : public ::testing::TestWithParam<ProgressMode> {};

TEST_P(ProgressThreadsTest, FourThreadsOfTwoHundredEventsDoNotInterleaveLines) {
  constexpr int kThreads = 4, kEvents = 200;
  MemoryFile out;
  {
    ProgressPrinter printer(GetParam(), out.get());
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&printer, t] {
        for (int i = 0; i < kEvents; ++i) {
          printer.Handle(i % 2 == 0 ? Step(t, absl::StrCat("s", t), i, kEvents, "RUN true")
                                    : Event(Kind::kLog, t, absl::StrCat("s", t), "w",
                                            absl::StrCat("line ", i, "\n")));
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
    printer.Handle(BuildDone(1));
  }
  const std::string text = out.Contents();
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  switch (GetParam()) {
    case ProgressMode::kPlain:
      ASSERT_EQ(lines.size(), kThreads * kEvents + 1u);
      for (size_t i = 0; i + 1 < lines.size(); ++i) {
        EXPECT_TRUE(absl::StartsWith(lines[i], "[s")) << lines[i];
      }
      EXPECT_EQ(lines.back(), "built in 1.0s: 4 stages, 0 cached");
      break;
    case ProgressMode::kJson:
      ASSERT_EQ(lines.size(), kThreads * kEvents + 1u);
      for (absl::string_view line : lines) EXPECT_NO_THROW(nlohmann::json::parse(line)) << line;
      break;
    case ProgressMode::kTty:
      EXPECT_EQ(lines.back(), "built in 1.0s: 4 stages, 0 cached");
      break;
  }
}

INSTANTIATE_TEST_SUITE_P(AllModes, ProgressThreadsTest,
                         ::testing::Values(ProgressMode::kPlain, ProgressMode::kJson,
                                           ProgressMode::kTty));

}  // namespace
}  // namespace stagefarm::cli
