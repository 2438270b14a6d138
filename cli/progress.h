// What `stagefarm build --progress=...` prints while a build runs: one line
// per event (plain), one JSON object per event (json), or a live view of the
// stages redrawn in place on a terminal (tty).
#pragma once

#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace stagefarm::cli {

// One thing that happened to a stage of a build, or to the build as a whole.
struct ProgressEvent {
  enum class Kind {
    kQueued,       // waits for its dependencies or a worker
    kStarted,      // text: the base image ("scratch", "busybox:1.36"), may be empty
    kStep,         // step of steps; text: the instruction
    kLog,          // text: output of a RUN, may hold several lines
    kNote,         // text: a line from the builder itself
    kCached,       // the stage's result came from the cache
    kStageDone,    // seconds, bytes_fetched
    kStageFailed,  // text: the reason
    kRetried,      // worker: the worker whose attempt failed; text: why
    kBuildDone,    // stage -1; seconds
    kBuildFailed,  // stage -1; text: the reason
  };
  absl::Time time;
  std::string build;       // build id
  int stage = -1;          // index in the plan; -1 for the build as a whole
  std::string stage_name;  // may be empty: then shown as "stage-<index>"
  std::string worker;      // worker id, may be empty
  Kind kind = Kind::kNote;
  uint32_t step = 0, steps = 0;
  std::string text;
  double seconds = 0;
  uint64_t bytes_fetched = 0;
};

enum class ProgressMode { kPlain, kTty, kJson };

// The --progress flag: "plain", "tty", "json", or "auto", which is tty when
// `out` is a terminal and $TERM is set and not "dumb", else plain. Anything
// else is InvalidArgument naming the value.
absl::StatusOr<ProgressMode> ParseProgressMode(absl::string_view flag, FILE* out);

// "512 B", "12.3 kB", "1.5 GB": decimal units, as docker prints sizes;
// `docker image ls` writes them with no space ("4.26MB").
std::string FormatBytes(uint64_t bytes, absl::string_view separator = " ");

// Prints the events of one build to `out` (normally stderr) in one mode.
// Does not own `out`; it must outlive the printer.
//
// plain: "[builder 2/5] RUN make", "[builder] | <output line>",
//   "[builder] CACHED", "[builder] done in 1.23s on w1 (fetched 12.3 kB)".
// json: one object a line: time (RFC 3339 UTC, microseconds), build, stage,
//   stage_name, worker, event ("queued", "start", "step", "log", "note",
//   "cached", "done", "error", "retry", "build-done", "build-failed") and the
//   fields of that event (step, steps, text, base, seconds, bytes_fetched).
//   Bytes that are not UTF-8 become U+FFFD.
// tty: one line per stage seen so far (state, name, worker, elapsed time,
//   current step), with the last log lines of running stages under it,
//   redrawn at most 10 times a second; a failed stage's reason and log tail
//   are printed above the view when it fails.
class ProgressPrinter {
 public:
  ProgressPrinter(ProgressMode mode, FILE* out);
  // Calls Finish().
  ~ProgressPrinter();
  ProgressPrinter(const ProgressPrinter&) = delete;
  ProgressPrinter& operator=(const ProgressPrinter&) = delete;

  // Prints or records `event`. Safe to call from several threads.
  void Handle(const ProgressEvent& event) ABSL_LOCKS_EXCLUDED(mu_);

  // tty: stops the redraw timer, draws the view a last time, leaves the
  // cursor below it and prints a summary ("built in 12.3s: 5 stages, 2
  // cached"); later events are printed as plain lines. Other modes: flushes.
  // Calling it again does nothing.
  void Finish() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  enum class StageState { kQueued, kRunning, kCached, kDone, kFailed };
  struct StageView {
    std::string label;
    std::string worker;
    StageState state = StageState::kQueued;
    absl::Time started = absl::InfinitePast();
    double seconds = -1;  // once done or failed
    std::string step;     // "3/7 RUN make"
    std::string reason;
    uint64_t bytes_fetched = 0;
    std::deque<std::string> log_tail;
  };

  // Updates the stages and the build's totals (all modes: they feed Summary).
  void Record(const ProgressEvent& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The plain-mode text of `event`, newline-terminated lines, maybe none.
  std::string PlainLines(const ProgressEvent& event) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Redraws the view over the last one; `above` is printed first, outside it.
  void Draw(absl::string_view above) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // "built in 12.3s: 5 stages, 2 cached", or how the build failed.
  std::string Summary() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The tty timer: redraws pending changes and running stages' elapsed times.
  void RedrawUntilStopped() ABSL_LOCKS_EXCLUDED(mu_);

  const ProgressMode mode_;
  FILE* const out_;
  absl::Mutex mu_;
  std::map<int, StageView> stages_ ABSL_GUARDED_BY(mu_);  // by plan index
  absl::Time first_event_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  absl::Time last_event_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool build_ended_ ABSL_GUARDED_BY(mu_) = false;
  bool build_failed_ ABSL_GUARDED_BY(mu_) = false;
  double build_seconds_ ABSL_GUARDED_BY(mu_) = 0;
  std::string build_reason_ ABSL_GUARDED_BY(mu_);
  // tty view.
  size_t lines_drawn_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_draw_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;  // Finish has begun
  bool finished_ ABSL_GUARDED_BY(mu_) = false;  // the view is final
  std::thread redraw_thread_;
};

}  // namespace stagefarm::cli
