#include "cli/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"

namespace stagefarm::cli {
namespace {

using Kind = ProgressEvent::Kind;

constexpr absl::Duration kRedrawInterval = absl::Milliseconds(100);
constexpr size_t kLogTailKept = 10;  // printed when a stage fails
constexpr size_t kLogTailShown = 3;  // under a running stage in the view
constexpr size_t kMaxNameColumns = 24;
constexpr size_t kMaxWorkerColumns = 12;

const char* EventName(Kind kind) {
  switch (kind) {
    case Kind::kQueued:
      return "queued";
    case Kind::kStarted:
      return "start";
    case Kind::kStep:
      return "step";
    case Kind::kLog:
      return "log";
    case Kind::kNote:
      return "note";
    case Kind::kCached:
      return "cached";
    case Kind::kStageDone:
      return "done";
    case Kind::kStageFailed:
      return "error";
    case Kind::kRetried:
      return "retry";
    case Kind::kBuildDone:
      return "build-done";
    case Kind::kBuildFailed:
      return "build-failed";
  }
  return "unknown";
}

std::string Label(const ProgressEvent& event) {
  if (event.stage < 0) return "build";
  return event.stage_name.empty() ? absl::StrCat("stage-", event.stage) : event.stage_name;
}

absl::string_view FirstLine(absl::string_view text) { return text.substr(0, text.find('\n')); }

// The lines of RUN output as a terminal would leave them: a line redrawn
// after '\r' (a progress bar) keeps only its last version; blank lines go.
std::vector<absl::string_view> OutputLines(absl::string_view output) {
  std::vector<absl::string_view> lines;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    while (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (size_t cr = line.rfind('\r'); cr != absl::string_view::npos) line.remove_prefix(cr + 1);
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

absl::string_view Plural(size_t n, const char* one, const char* many) {
  return n == 1 ? one : many;
}

std::string JsonLine(const ProgressEvent& event) {
  nlohmann::ordered_json line = {
      {"time", absl::FormatTime("%Y-%m-%d%ET%H:%M:%E6SZ", event.time, absl::UTCTimeZone())},
      {"build", event.build},
      {"stage", event.stage},
      {"stage_name", event.stage_name},
      {"worker", event.worker},
      {"event", EventName(event.kind)}};
  switch (event.kind) {
    case Kind::kStarted:
      if (!event.text.empty()) line["base"] = event.text;
      break;
    case Kind::kStep:
      line["step"] = event.step;
      line["steps"] = event.steps;
      line["text"] = event.text;
      break;
    case Kind::kLog:
    case Kind::kNote:
    case Kind::kStageFailed:
    case Kind::kRetried:
    case Kind::kBuildFailed:
      line["text"] = event.text;
      break;
    case Kind::kStageDone:
      line["seconds"] = event.seconds;
      line["bytes_fetched"] = event.bytes_fetched;
      break;
    case Kind::kBuildDone:
      line["seconds"] = event.seconds;
      break;
    case Kind::kQueued:
    case Kind::kCached:
      break;
  }
  return absl::StrCat(line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "\n");
}

// Text for one line of the view: control characters (tabs, escapes a RUN
// printed) become spaces so they cannot move the cursor.
std::string Printable(absl::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return out;
}

// Characters a terminal shows for `text`: UTF-8 continuation bytes take none.
size_t Columns(absl::string_view text) {
  return std::count_if(text.begin(), text.end(),
                       [](char c) { return (static_cast<unsigned char>(c) & 0xc0) != 0x80; });
}

// `text` cut to `columns` on a character boundary, ending in "..." when cut.
std::string Fit(absl::string_view text, size_t columns) {
  if (Columns(text) <= columns) return std::string(text);
  const size_t keep = columns > 3 ? columns - 3 : 0;
  size_t seen = 0, end = 0;
  for (; end < text.size(); ++end) {
    if ((static_cast<unsigned char>(text[end]) & 0xc0) != 0x80 && seen++ == keep) break;
  }
  return absl::StrCat(text.substr(0, end), std::string(std::min<size_t>(columns, 3), '.'));
}

std::string Pad(absl::string_view text, size_t columns) {
  std::string out = Fit(text, columns);
  out.append(columns - std::min(columns, Columns(out)), ' ');
  return out;
}

struct TerminalSize {
  size_t columns = 80;
  size_t rows = 24;
};

TerminalSize SizeOf(FILE* out) {
  TerminalSize size;
  struct winsize ws {};
  const int fd = fileno(out);
  if (fd >= 0 && ioctl(fd, TIOCGWINSZ, &ws) == 0) {
    if (ws.ws_col > 0) size.columns = ws.ws_col;
    if (ws.ws_row > 0) size.rows = ws.ws_row;
  }
  return size;
}

void Write(FILE* out, absl::string_view text) {
  std::fwrite(text.data(), 1, text.size(), out);
  std::fflush(out);
}

}  // namespace

absl::StatusOr<ProgressMode> ParseProgressMode(absl::string_view flag, FILE* out) {
  if (flag == "plain") return ProgressMode::kPlain;
  if (flag == "tty") return ProgressMode::kTty;
  if (flag == "json") return ProgressMode::kJson;
  if (flag == "auto") {
    const int fd = fileno(out);
    const char* term = std::getenv("TERM");
    const bool terminal = fd >= 0 && isatty(fd) && term != nullptr && *term != '\0' &&
                          absl::string_view(term) != "dumb";
    return terminal ? ProgressMode::kTty : ProgressMode::kPlain;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--progress must be auto, plain, tty or json, not \"", flag, "\""));
}

ProgressPrinter::ProgressPrinter(ProgressMode mode, FILE* out) : mode_(mode), out_(out) {
  if (mode_ == ProgressMode::kTty) redraw_thread_ = std::thread([this] { RedrawUntilStopped(); });
}

ProgressPrinter::~ProgressPrinter() { Finish(); }

void ProgressPrinter::Handle(const ProgressEvent& event) {
  absl::MutexLock lock(&mu_);
  Record(event);
  switch (mode_) {
    case ProgressMode::kPlain:
      Write(out_, PlainLines(event));
      return;
    case ProgressMode::kJson:
      Write(out_, JsonLine(event));
      return;
    case ProgressMode::kTty:
      break;
  }
  if (finished_) {
    Write(out_, PlainLines(event));
    return;
  }
  std::string above;
  if (event.kind == Kind::kStageFailed || event.kind == Kind::kRetried) {
    above = PlainLines(event);
    if (event.kind == Kind::kStageFailed && event.stage >= 0) {
      for (const std::string& line : stages_[event.stage].log_tail) {
        absl::StrAppend(&above, "[", Label(event), "] | ", line, "\n");
      }
    }
  }
  if (!above.empty() || absl::Now() - last_draw_ >= kRedrawInterval) {
    Draw(above);
  } else {
    dirty_ = true;
  }
}

void ProgressPrinter::Finish() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (redraw_thread_.joinable()) redraw_thread_.join();
  absl::MutexLock lock(&mu_);
  if (mode_ == ProgressMode::kTty) {
    Draw("");
    Write(out_, absl::StrCat(Summary(), "\n"));
    lines_drawn_ = 0;
    finished_ = true;
  }
  std::fflush(out_);
}

void ProgressPrinter::Record(const ProgressEvent& event) {
  first_event_ = std::min(first_event_, event.time);
  last_event_ = std::max(last_event_, event.time);
  if (event.kind == Kind::kBuildDone || event.kind == Kind::kBuildFailed) {
    build_ended_ = true;
    build_failed_ = event.kind == Kind::kBuildFailed;
    build_seconds_ =
        event.seconds > 0 ? event.seconds : absl::ToDoubleSeconds(last_event_ - first_event_);
    build_reason_ = event.text;
    return;
  }
  if (event.stage < 0) return;
  StageView& stage = stages_[event.stage];
  stage.label = Label(event);
  if (!event.worker.empty()) stage.worker = event.worker;
  auto start = [&stage, &event] {
    if (stage.state == StageState::kQueued) stage.state = StageState::kRunning;
    if (stage.started == absl::InfinitePast()) stage.started = event.time;
  };
  switch (event.kind) {
    case Kind::kQueued:
      break;
    case Kind::kStarted:
      start();
      stage.started = event.time;
      stage.step = event.text.empty() ? "" : absl::StrCat("FROM ", event.text);
      break;
    case Kind::kStep:
      start();
      stage.step = absl::StrCat(event.step, "/", event.steps, " ", FirstLine(event.text));
      break;
    case Kind::kLog:
    case Kind::kNote:
      for (absl::string_view line : OutputLines(event.text)) {
        stage.log_tail.emplace_back(line);
        if (stage.log_tail.size() > kLogTailKept) stage.log_tail.pop_front();
      }
      break;
    case Kind::kCached:
      stage.state = StageState::kCached;
      break;
    case Kind::kStageDone:
      if (stage.state != StageState::kCached) stage.state = StageState::kDone;
      stage.seconds = event.seconds;
      stage.bytes_fetched = event.bytes_fetched;
      break;
    case Kind::kStageFailed:
      stage.state = StageState::kFailed;
      stage.reason = event.text;
      if (stage.started != absl::InfinitePast()) {
        stage.seconds = absl::ToDoubleSeconds(event.time - stage.started);
      }
      break;
    case Kind::kRetried:
      // Back in the queue: the failed attempt's worker, timing and output go.
      stage = StageView();
      stage.label = Label(event);
      stage.step = absl::StrCat("retry: ", FirstLine(event.text));
      break;
    case Kind::kBuildDone:
    case Kind::kBuildFailed:
      break;
  }
}

std::string ProgressPrinter::PlainLines(const ProgressEvent& event) const {
  const std::string label = Label(event);
  const std::string on = event.worker.empty() ? "" : absl::StrCat(" on ", event.worker);
  switch (event.kind) {
    case Kind::kQueued:
      return absl::StrCat("[", label, "] queued\n");
    case Kind::kStarted:
      return event.text.empty() ? absl::StrCat("[", label, "] start", on, "\n")
                                : absl::StrCat("[", label, "] FROM ", event.text, on, "\n");
    case Kind::kStep:
      return absl::StrCat("[", label, " ", event.step, "/", event.steps, "] ",
                          FirstLine(event.text), "\n");
    case Kind::kLog: {
      std::string out;
      for (absl::string_view line : OutputLines(event.text)) {
        absl::StrAppend(&out, "[", label, "] | ", line, "\n");
      }
      return out;
    }
    case Kind::kNote:
      return absl::StrCat("[", label, "] ", event.text, "\n");
    case Kind::kCached:
      return absl::StrCat("[", label, "] CACHED\n");
    case Kind::kStageDone:
      return absl::StrCat("[", label, "] done in ", absl::StrFormat("%.2fs", event.seconds), on,
                          event.bytes_fetched == 0
                              ? ""
                              : absl::StrCat(" (fetched ", FormatBytes(event.bytes_fetched), ")"),
                          "\n");
    case Kind::kStageFailed:
      return absl::StrCat("[", label, "] failed", on, ": ", event.text, "\n");
    case Kind::kRetried:
      return absl::StrCat("[", label, "] retrying, the attempt", on, " failed: ", event.text, "\n");
    case Kind::kBuildDone:
    case Kind::kBuildFailed:
      return absl::StrCat(Summary(), "\n");
  }
  return "";
}

std::string ProgressPrinter::Summary() const {
  size_t cached = 0, failed = 0;
  for (const auto& [index, stage] : stages_) {
    cached += stage.state == StageState::kCached;
    failed += stage.state == StageState::kFailed;
  }
  const double seconds = build_ended_ ? build_seconds_
                         : first_event_ <= last_event_
                             ? absl::ToDoubleSeconds(last_event_ - first_event_)
                             : 0;
  const std::string counts = absl::StrCat(
      stages_.size(), Plural(stages_.size(), " stage", " stages"), ", ", cached, " cached");
  if (build_failed_) {
    return absl::StrFormat("build failed after %.1fs (%s, %d failed): %s", seconds, counts, failed,
                           build_reason_);
  }
  return absl::StrFormat("%s %.1fs: %s", build_ended_ ? "built in" : "stopped after", seconds,
                         counts);
}

void ProgressPrinter::Draw(absl::string_view above) {
  const absl::Time now = absl::Now();
  const TerminalSize size = SizeOf(out_);
  const size_t width = size.columns > 1 ? size.columns - 1 : 1;  // the last column wraps
  const size_t max_lines = std::max<size_t>(size.rows > 2 ? size.rows - 2 : 1, 3);

  size_t name_columns = 0, worker_columns = 1;
  for (const auto& [index, stage] : stages_) {
    name_columns = std::max(name_columns, std::min(Columns(stage.label), kMaxNameColumns));
    worker_columns = std::max(worker_columns, std::min(Columns(stage.worker), kMaxWorkerColumns));
  }
  // Too many stages for the screen: finished ones fold into one line first.
  const bool fold_finished = stages_.size() > max_lines;
  size_t folded = 0;

  struct Line {
    std::string text;
    const char* style;  // SGR for the mark, or for the whole line if it is a log line
    bool log;
  };
  std::vector<Line> lines;
  for (const auto& [index, stage] : stages_) {
    const bool finished = stage.state == StageState::kDone || stage.state == StageState::kCached;
    if (fold_finished && finished) {
      ++folded;
      continue;
    }
    char mark = '-';
    const char* style = "\x1b[2m";
    std::string detail;
    double seconds = stage.seconds;
    switch (stage.state) {
      case StageState::kQueued:
        detail = stage.step.empty() ? "queued" : stage.step;
        seconds = -1;
        break;
      case StageState::kRunning:
        mark = '>';
        style = "\x1b[36m";
        detail = stage.step.empty() ? "starting" : stage.step;
        if (stage.started != absl::InfinitePast()) {
          seconds = std::max(0.0, absl::ToDoubleSeconds(now - stage.started));
        }
        break;
      case StageState::kCached:
        mark = '=';
        style = "\x1b[34m";
        detail = "CACHED";
        break;
      case StageState::kDone:
        mark = '+';
        style = "\x1b[32m";
        detail = stage.bytes_fetched == 0
                     ? "done"
                     : absl::StrCat("done, fetched ", FormatBytes(stage.bytes_fetched));
        break;
      case StageState::kFailed:
        mark = 'x';
        style = "\x1b[31m";
        detail = absl::StrCat("failed: ", FirstLine(stage.reason));
        break;
    }
    const std::string elapsed = seconds < 0 ? "" : absl::StrFormat("%.1fs", seconds);
    lines.push_back({Fit(absl::StrCat(std::string(1, mark), " ", Pad(stage.label, name_columns),
                                      " ", Pad(stage.worker, worker_columns), " ",
                                      absl::StrFormat("%7s", elapsed), "  ", Printable(detail)),
                         width),
                     style, false});
    if (stage.state == StageState::kRunning) {
      const size_t shown = std::min(stage.log_tail.size(), kLogTailShown);
      for (size_t i = stage.log_tail.size() - shown; i < stage.log_tail.size(); ++i) {
        lines.push_back(
            {Fit(absl::StrCat("    ", Printable(stage.log_tail[i])), width), "\x1b[2m", true});
      }
    }
  }
  // Log lines go first, then the oldest stages, until the view fits.
  if (lines.size() + (folded > 0) > max_lines) {
    lines.erase(
        std::remove_if(lines.begin(), lines.end(), [](const Line& line) { return line.log; }),
        lines.end());
  }
  if (lines.size() + (folded > 0) > max_lines) {
    const size_t drop = lines.size() + (folded > 0) - max_lines;
    lines.erase(lines.begin(), lines.begin() + std::min(drop, lines.size()));
  }

  std::string frame;
  if (lines_drawn_ > 0) absl::StrAppend(&frame, "\r\x1b[", lines_drawn_, "A");
  frame += "\x1b[J";
  for (absl::string_view line : absl::StrSplit(above, '\n', absl::SkipEmpty())) {
    absl::StrAppend(&frame, "\x1b[2K", Printable(line), "\n");
  }
  if (folded > 0) {
    absl::StrAppend(&frame, "\x1b[2K\x1b[2m", Fit(absl::StrCat(folded, " finished stages"), width),
                    "\x1b[0m\n");
  }
  for (const Line& line : lines) {
    if (line.log) {
      absl::StrAppend(&frame, "\x1b[2K", line.style, line.text, "\x1b[0m\n");
    } else {
      absl::StrAppend(&frame, "\x1b[2K", line.style, line.text.substr(0, 1), "\x1b[0m",
                      line.text.substr(1), "\n");
    }
  }
  Write(out_, frame);
  lines_drawn_ = lines.size() + (folded > 0);
  last_draw_ = now;
  dirty_ = false;
}

void ProgressPrinter::RedrawUntilStopped() {
  absl::MutexLock lock(&mu_);
  while (!mu_.AwaitWithTimeout(absl::Condition(&stopping_), kRedrawInterval)) {
    const bool running = std::any_of(stages_.begin(), stages_.end(), [](const auto& entry) {
      return entry.second.state == StageState::kRunning;
    });
    if (dirty_ || running) Draw("");
  }
}

std::string FormatBytes(uint64_t bytes, absl::string_view separator) {
  constexpr const char* kUnits[] = {"B", "kB", "MB", "GB", "TB"};
  double size = static_cast<double>(bytes);
  size_t unit = 0;
  while (size >= 1000 && unit + 1 < std::size(kUnits)) {
    size /= 1000;
    ++unit;
  }
  return unit == 0 ? absl::StrCat(bytes, separator, "B")
                   : absl::StrCat(absl::StrFormat("%.3g", size), separator, kUnits[unit]);
}

}  // namespace stagefarm::cli
