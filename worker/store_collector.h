// Keeps a worker's content store under the operator's size cap
// (stagefarm-worker --store-size-cap).
//
// A running stage protects nothing in the store while it runs: the inputs it
// fetched and the layers it is making get their `held/` refs
// (worker/stage_runner.h) only when the stage finishes. So a collection must
// never overlap a stage. The collector runs BlobStore::CollectGarbage only
// when its `idle` callback says no stage runs, and the worker hands every
// assignment to its runner inside Exclusive(), which a collection holds too:
// a stage cannot start between the idle check and the end of the sweep.
//
// What it can free: blobs no ref and no lease names (context files a stage
// copied, what a failed or cancelled stage fetched or made), least recently
// used first. Every result a stage made or fetched stays held, so a store
// whose held results alone exceed the cap stays above it; the cap bounds what
// is collectable, it does not evict results the coordinator counts on.
#ifndef STAGEFARM_WORKER_STORE_COLLECTOR_H_
#define STAGEFARM_WORKER_STORE_COLLECTOR_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/cas/blob_store.h"

namespace stagefarm::worker {

// Parses a byte count: digits with an optional K, M, G or T suffix (powers of
// 1024, either case, an optional trailing "B" or "iB": "512M", "2GiB", "10g").
// InvalidArgument naming `text` otherwise, or when it overflows 64 bits.
absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text);

struct StoreCollectorOptions {
  uint64_t size_cap = 0;  // bytes; 0 means no cap (the collector never runs)
  // How often the store's size is looked at.
  absl::Duration interval = absl::Seconds(10);
  // A line for the worker's log after each collection that ran (or failed).
  std::function<void(const std::string&)> log = nullptr;
};

class StoreCollector {
 public:
  // `store` outlives the collector. `idle` returns whether no stage runs; it
  // is called inside the exclusive section. Start() begins the timer.
  StoreCollector(cas::BlobStore& store, std::function<bool()> idle, StoreCollectorOptions options);
  // Stops the timer thread and joins it (waits for a collection in progress).
  ~StoreCollector();

  StoreCollector(const StoreCollector&) = delete;
  StoreCollector& operator=(const StoreCollector&) = delete;

  // Starts the thread that calls CollectOnce every options.interval. Does
  // nothing when the cap is 0. Call at most once.
  void Start();

  // Runs `fn` while no collection runs (and none starts until it returns).
  // The worker starts assignments through it.
  void Exclusive(const std::function<void()>& fn);

  // One look at the store: when it holds more than the cap and `idle()` is
  // true, collects down to the cap and returns what was deleted; otherwise
  // (no cap, under the cap, a stage running) returns nullopt and deletes
  // nothing. Errors are CollectGarbage's.
  absl::StatusOr<std::optional<cas::GcStats>> CollectOnce();

 private:
  void Loop();

  cas::BlobStore& store_;
  const std::function<bool()> idle_;
  const StoreCollectorOptions options_;
  absl::Mutex exclusive_;  // held by a collection and by Exclusive()
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace stagefarm::worker

#endif  // STAGEFARM_WORKER_STORE_COLLECTOR_H_
