#include "worker/store_collector.h"

#include <atomic>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/cas/blob_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/random_blobs.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm::worker {
namespace {

using testing::kMiB;
using testing::PutRandom;
using testing::TempDir;
using ::testing::HasSubstr;

TEST(ParseByteSize, AcceptsPlainNumbersAndBinarySuffixes) {
  EXPECT_EQ(*ParseByteSize("0"), 0u);
  EXPECT_EQ(*ParseByteSize("12345"), 12345u);
  EXPECT_EQ(*ParseByteSize("4K"), 4096u);
  EXPECT_EQ(*ParseByteSize("500m"), 500u << 20);
  EXPECT_EQ(*ParseByteSize("20G"), 20ull << 30);
  EXPECT_EQ(*ParseByteSize("2GiB"), 2ull << 30);
  EXPECT_EQ(*ParseByteSize("3MB"), 3u << 20);
  EXPECT_EQ(*ParseByteSize("1T"), 1ull << 40);
  EXPECT_EQ(*ParseByteSize("7b"), 7u);
}

TEST(ParseByteSize, RefusesWhatIsNotAByteCount) {
  for (const char* bad : {"", "G", "-1", "1.5G", "12X", "ten", "1 G", "99999999999999999999",
                          "17179869184G"}) {
    absl::StatusOr<uint64_t> parsed = ParseByteSize(bad);
    EXPECT_FALSE(parsed.ok()) << bad;
    EXPECT_THAT(parsed.status().message(), HasSubstr(absl::StrCat("\"", bad, "\""))) << bad;
  }
}

class StoreCollectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cas::BlobStoreOptions options;
    // Access times one second apart, in the order of the puts.
    options.now = [this] { return absl::FromUnixSeconds(1700000000 + ticks_++); };
    absl::StatusOr<std::unique_ptr<cas::BlobStore>> store =
        cas::BlobStore::Open(dir_.path() / "cas", options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  digest::Digest Put(uint64_t seed, uint64_t size) {
    absl::StatusOr<digest::Digest> blob = PutRandom(*store_, seed, size);
    EXPECT_TRUE(blob.ok()) << blob.status();
    return *blob;
  }

  bool Has(const digest::Digest& blob) { return *store_->Has(blob); }

  TempDir dir_{"store_collector_test"};
  std::atomic<int64_t> ticks_{0};
  std::unique_ptr<cas::BlobStore> store_;
};

TEST_F(StoreCollectorTest, OverTheCapWhileIdle_DeletesUnheldBlobsOldestFirstDownToTheCap) {
  const digest::Digest held = Put(1, 2 * kMiB);
  ASSERT_TRUE(store_->SetRef("held/result", held).ok());
  const digest::Digest oldest = Put(2, 2 * kMiB);
  const digest::Digest newer = Put(3, 2 * kMiB);
  const digest::Digest newest = Put(4, 2 * kMiB);
  StoreCollector collector(*store_, [] { return true; }, {.size_cap = 5 * kMiB});

  absl::StatusOr<std::optional<cas::GcStats>> collected = collector.CollectOnce();
  ASSERT_TRUE(collected.ok()) << collected.status();
  ASSERT_TRUE(collected->has_value());
  EXPECT_EQ((*collected)->blobs_deleted, 2u);
  EXPECT_LE(store_->StoredBytes(), 5 * kMiB);
  EXPECT_TRUE(Has(held));
  EXPECT_FALSE(Has(oldest));
  EXPECT_FALSE(Has(newer));
  EXPECT_TRUE(Has(newest));
}

TEST_F(StoreCollectorTest, WhileAStageRuns_DeletesNothing) {
  const digest::Digest fetched = Put(1, 2 * kMiB);
  StoreCollector collector(*store_, [] { return false; }, {.size_cap = 1 * kMiB});
  absl::StatusOr<std::optional<cas::GcStats>> collected = collector.CollectOnce();
  ASSERT_TRUE(collected.ok()) << collected.status();
  EXPECT_FALSE(collected->has_value());
  EXPECT_TRUE(Has(fetched));
}

TEST_F(StoreCollectorTest, UnderTheCapOrWithoutOne_DeletesNothing) {
  const digest::Digest blob = Put(1, 2 * kMiB);
  for (uint64_t cap : {uint64_t{0}, 4 * kMiB}) {
    StoreCollector collector(*store_, [] { return true; }, {.size_cap = cap});
    absl::StatusOr<std::optional<cas::GcStats>> collected = collector.CollectOnce();
    ASSERT_TRUE(collected.ok()) << collected.status();
    EXPECT_FALSE(collected->has_value()) << cap;
    EXPECT_TRUE(Has(blob)) << cap;
  }
}

// A stage that starts while a collection is due: the collection waits for the
// start to finish and then sees the stage running, so the blob the stage just
// found in the store stays.
TEST_F(StoreCollectorTest, AStageStartingInsideExclusive_HoldsTheCollectionOffUntilItRuns) {
  const digest::Digest input = Put(1, 2 * kMiB);
  std::atomic<int> running{0};
  StoreCollector collector(*store_, [&running] { return running.load() == 0; },
                           {.size_cap = 1 * kMiB});
  absl::Notification inside;
  absl::Notification release;
  std::thread start([&] {
    collector.Exclusive([&] {
      inside.Notify();
      release.WaitForNotification();
      running.store(1);  // the runner now counts the assignment
    });
  });
  inside.WaitForNotification();
  std::atomic<bool> collected_done{false};
  absl::StatusOr<std::optional<cas::GcStats>> collected;
  std::thread collect([&] {
    collected = collector.CollectOnce();
    collected_done.store(true);
  });
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_FALSE(collected_done.load()) << "the collection did not wait for the stage's start";
  release.Notify();
  start.join();
  collect.join();
  ASSERT_TRUE(collected.ok()) << collected.status();
  EXPECT_FALSE(collected->has_value());
  EXPECT_TRUE(Has(input));
}

TEST_F(StoreCollectorTest, Started_CollectsOnItsTimer) {
  const digest::Digest blob = Put(1, 2 * kMiB);
  StoreCollector collector(*store_, [] { return true; },
                           {.size_cap = 1 * kMiB, .interval = absl::Milliseconds(20)});
  collector.Start();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Has(blob) && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_FALSE(Has(blob));
  EXPECT_LE(store_->StoredBytes(), 1 * kMiB);
}

}  // namespace
}  // namespace stagefarm::worker
