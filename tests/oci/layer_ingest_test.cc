#include "common/oci/layer_ingest.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/cas/blob_store.h"
#include "common/oci/media_types.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace stagefarm::oci {
namespace {

// An uncompressed layer is its own diff id.
class LayerIngestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = cas::BlobStore::Open(dir_.path() / "store");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  testing::TempDir dir_{"layer_ingest_test"};
  std::unique_ptr<cas::BlobStore> store_;
  const std::string bytes_ = std::string(10000, 'x');
  const digest::Digest digest_ = digest::Sha256Of(bytes_);
};

TEST_F(LayerIngestTest, StoresABlobThatIsWhatWasExpected) {
  LayerIngest ingest(*store_, {digest_, bytes_.size(), digest_}, "layer",
                     absl::StatusCode::kDataLoss);
  ASSERT_TRUE(ingest.Write(bytes_.substr(0, 4000)).ok());
  ASSERT_TRUE(ingest.Write(bytes_.substr(4000)).ok());
  absl::StatusOr<Descriptor> stored = ingest.Commit();
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->digest, digest_);
  EXPECT_EQ(stored->size, bytes_.size());
  EXPECT_EQ(stored->media_type, LayerMediaType(LayerCompression::kNone));
  EXPECT_TRUE(*store_->Has(digest_));
  EXPECT_TRUE(
      CheckStoredLayer(*store_, digest_, digest_, "layer", absl::StatusCode::kDataLoss).ok());
}

TEST_F(LayerIngestTest, MoreBytesThanTheDescriptorSaysStopAtOnce) {
  LayerIngest ingest(*store_, {digest_, 100, digest_}, "layer x", absl::StatusCode::kDataLoss);
  absl::Status written = ingest.Write(bytes_);
  EXPECT_EQ(written.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(written.message(), "layer x: more than the descriptor's 100 bytes");
}

TEST_F(LayerIngestTest, MismatchesAreTheCallersCodeAndNothingIsStored) {
  const std::string other = bytes_ + "y";
  {
    LayerIngest ingest(*store_, {digest_, std::nullopt, digest_}, "archive: layer",
                       absl::StatusCode::kInvalidArgument);
    ASSERT_TRUE(ingest.Write(other).ok());
    absl::StatusOr<Descriptor> stored = ingest.Commit();
    EXPECT_EQ(stored.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(stored.status().message(),
              absl::StrCat("archive: layer: content has digest ",
                           digest::Sha256Of(other).ToString(), ", not ", digest_.ToString()));
  }
  {
    // No blob digest known: the diff id still has to hold.
    LayerIngest ingest(*store_, {std::nullopt, std::nullopt, digest_}, "layer",
                       absl::StatusCode::kDataLoss);
    ASSERT_TRUE(ingest.Write(other).ok());
    EXPECT_EQ(ingest.Commit().status().code(), absl::StatusCode::kDataLoss);
  }
  EXPECT_FALSE(*store_->Has(digest::Sha256Of(other)));
  // A stored blob named by a config with another diff id is refused.
  LayerIngest ingest(*store_, {std::nullopt, std::nullopt, digest_}, "layer",
                     absl::StatusCode::kDataLoss);
  ASSERT_TRUE(ingest.Write(bytes_).ok());
  ASSERT_TRUE(ingest.Commit().ok());
  EXPECT_EQ(CheckStoredLayer(*store_, digest_, digest::Sha256Of(other), "layer",
                             absl::StatusCode::kDataLoss)
                .code(),
            absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace stagefarm::oci
