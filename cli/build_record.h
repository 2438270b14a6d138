// What `stagefarm build` keeps of a build besides printing it: every progress
// event with its time, for --metadata-file (the image's digests and names as
// buildx writes them, plus each stage's worker and timings and what the
// client sent) and --trace (the timeline in the Chrome trace-event format
// that Perfetto and chrome://tracing open).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cli/progress.h"

namespace stagefarm::cli {

// The image a build produced, as --metadata-file names it.
struct BuiltImageRecord {
  std::string manifest_digest;  // "sha256:..."
  std::string media_type;       // of the manifest
  uint64_t manifest_size = 0;
  std::string config_digest;
  std::vector<std::string> names;  // the -t names, in full
};

// What the client did before and after the stages ran.
struct ClientRecord {
  uint64_t context_files = 0;         // files in the context the build reads
  uint64_t context_files_hashed = 0;  // read and hashed (not known to the hash cache)
  double context_scan_seconds = 0;    // walking and hashing the context directory
  uint64_t bytes_uploaded = 0;        // context files and image layers the cluster lacked
};

// A span of the client's own work, shown on the trace's "client" track.
struct ClientSpan {
  std::string name;
  absl::Time start;
  absl::Time end;
};

class BuildRecord {
 public:
  // Records `event` (thread-safe); log output and notes are not kept.
  void Add(const ProgressEvent& event) ABSL_LOCKS_EXCLUDED(mu_);
  // Records a span of the client's own work.
  void AddClientSpan(ClientSpan span) ABSL_LOCKS_EXCLUDED(mu_);

  // The --metadata-file JSON: buildx's keys ("containerimage.digest",
  // "containerimage.config.digest", "containerimage.descriptor",
  // "image.name") and stagefarm's: "stagefarm.build" (id, seconds),
  // "stagefarm.stages" (per stage: index, name, worker, cached, queued /
  // start / end times as RFC 3339, seconds, bytes fetched) and
  // "stagefarm.client" (the ClientRecord fields).
  std::string MetadataJson(const BuiltImageRecord& image, const ClientRecord& client) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // The --trace JSON: {"traceEvents": [...], "displayTimeUnit": "ms"}. One
  // process, one track (thread) per worker — a worker running two stages at
  // once gets a second track, "w1 #2", so slices nest — plus a "client"
  // track; a complete ("X") slice per stage with its steps nested in it, the
  // bytes it fetched as an argument, and instant events for cache hits and
  // retries. Times are microseconds since the first event.
  std::string TraceJson() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  std::vector<ProgressEvent> events_ ABSL_GUARDED_BY(mu_);
  std::vector<ClientSpan> client_spans_ ABSL_GUARDED_BY(mu_);
};

}  // namespace stagefarm::cli
