// The worker's unpacked layers and the root filesystems steps run in.
//
// Each image layer is unpacked once, into <data-dir>/snapshots/<chain-id-hex>/,
// and reused by every stage and build whose image has the same layers below
// it. A snapshot holds that ONE layer's changes, not the whole filesystem: it
// is meant to be an overlayfs lower dir, so the layer's ".wh.NAME" whiteouts
// are stored as overlay whiteouts (char device 0/0 named NAME) and its
// ".wh..wh..opq" markers as trusted.overlay.opaque=y on the directory
// (oci::ApplyOptions::Whiteouts::kOverlay). Stacking the chain's snapshots,
// top-most first, gives the image's filesystem.
//
// A step's root filesystem is an overlay mount of the chain's snapshots with a
// fresh upper dir, whose contents are the step's layer (oci::WriteLayerFromUpper).
// When overlayfs cannot be mounted, the snapshots are merged by copying into
// a plain directory (owners, modes, xattrs, hardlinks, devices preserved),
// copied once more for the step to run in, and the layer is the difference
// between the two (oci::WriteLayerFromCopy). Which mode was used, and why,
// is reported with the root filesystem.
//
// Durability: snapshots are a cache of the content store's layers and are
// not synced to disk. Unpacked layers are not fsynced file by file, and a
// step's overlay is mounted "volatile", so that unmounting it does not sync
// the whole file system the upper dir is on (everything any process left
// dirty there: half a second for a step that wrote 500 MB). Within a boot the
// page cache makes them whole; after a crash of the machine they might not
// be. So Open compares the boot id recorded beside the snapshots
// (<data_dir>/snapshots-boot-id, written and synced before any snapshot of
// this boot) with the current one and, when they differ, discards every
// snapshot: after any restart, layers are unpacked again from the store when
// a build needs them.
//
// Snapshot directories are named by chain id, not diff id, as containerd
// names its snapshots: the same layer over different parents is a different
// filesystem in general (a whiteout means nothing without what it hides), and
// naming by chain keeps "this chain is unpacked" one directory check.
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/digest/digest.h"
#include "common/oci/layer_diff.h"
#include "common/oci/layer_unpack.h"

namespace stagefarm::snapshots {

// The OCI chain ids of a stack of layers given bottom first by diff id:
// chain_id(L1) = diff_id(L1), chain_id(Ln) = sha256(chain_id(Ln-1) + " " +
// diff_id(Ln)) over the digests' string forms. One per layer, bottom first.
std::vector<digest::Digest> ChainIds(absl::Span<const digest::Digest> diff_ids);

// One layer of an image, as Ensure needs it.
struct LayerSource {
  digest::Digest diff_id;
  // Opens the layer's bytes (a tar, uncompressed, gzip or zstd); called only
  // when the layer has to be unpacked.
  std::function<absl::StatusOr<oci::LayerReader>()> open;
};

// What Ensure tells of a layer it unpacks: once as it starts (done false),
// once when the snapshot is in place (done true, with what was written and
// how long it took). Not called for a layer that was already unpacked, nor
// when the unpack fails (the error names the layer).
struct UnpackProgress {
  digest::Digest diff_id;
  bool done = false;
  oci::ApplyStats stats{};
  absl::Duration took{};
};
using UnpackListener = std::function<void(const UnpackProgress&)>;

// A layer unpacked as an overlayfs lower dir.
struct Snapshot {
  digest::Digest chain_id;
  std::filesystem::path dir;
  bool unpacked_now = false;  // this Ensure call unpacked it (it was missing)
};

enum class RootfsMode {
  kOverlay,  // an overlay mount; the layer is the upper dir
  kCopy,     // a plain directory; the layer is its difference from a merged copy
};

struct RootfsOptions {
  // Use the copy even when overlayfs would mount (tests, or a host whose
  // overlayfs misbehaves).
  bool force_copy = false;
};

// A step's root filesystem. Unmounts the overlay (if any) when destroyed; the
// scratch directory's contents are the caller's to remove afterwards.
class Rootfs {
 public:
  ~Rootfs();
  Rootfs(const Rootfs&) = delete;
  Rootfs& operator=(const Rootfs&) = delete;

  // Where the step runs.
  const std::filesystem::path& root() const { return root_; }
  RootfsMode mode() const { return mode_; }
  // A line for the build log saying which mode is used and, for the copy, why.
  const std::string& mode_reason() const { return mode_reason_; }

  // Ends the step: unmounts an overlay (root() is empty afterwards) and drops
  // the directories overlayfs copied up only to hold a mount stub that is
  // gone again, so that the upper dir holds exactly the step's changes. Call
  // after the step's processes are gone and before Unchanged / WriteLayer.
  // Nothing to do for the copy.
  absl::Status Finish();

  // Whether the step changed nothing (then it adds no layer). For the copy,
  // this walks both trees.
  absl::StatusOr<bool> Unchanged() const;

  // Writes the step's layer (see oci/layer_diff.h). Call after the step's
  // processes are gone, and only when !Unchanged(): an unchanged step's tar
  // has no entries and is no layer.
  absl::StatusOr<oci::LayerDigests> WriteLayer(const oci::ByteSink& tar_sink,
                                               const oci::ByteSink& blob_sink,
                                               const oci::DiffOptions& options) const;

 private:
  friend class Snapshots;
  Rootfs() = default;

  RootfsMode mode_ = RootfsMode::kOverlay;
  std::string mode_reason_;
  std::filesystem::path root_;
  std::filesystem::path upper_;                // overlay: the upper dir
  std::filesystem::path lower_copy_;           // copy: the merged chain, untouched by the step
  std::vector<std::filesystem::path> lowers_;  // overlay: snapshot dirs, top-most first
  bool mounted_ = false;
  bool finished_ = false;
};

// The snapshot store of one worker. Safe for concurrent use.
class Snapshots {
 public:
  // Uses <data_dir>/snapshots (made if missing) and removes what an
  // interrupted unpack left there, and every snapshot when they were written
  // in another boot (see "Durability" above).
  static absl::StatusOr<std::unique_ptr<Snapshots>> Open(const std::filesystem::path& data_dir);

  // Snapshots Open discarded as written in another boot.
  size_t discarded_at_open() const { return discarded_at_open_; }

  // Makes sure every layer of `chain` (bottom first) is unpacked, unpacking
  // the missing ones; returns their snapshots, bottom first. A layer is
  // unpacked into a temporary directory beside the snapshots and renamed into
  // place when complete, so a snapshot directory is always whole; a failed
  // unpack leaves nothing behind and returns the unpack's error naming the
  // layer. Callers asking for the same chain id at once wait for one unpack
  // (another process racing for it loses the rename and discards its copy).
  // `listener`, when given, hears of each layer this call unpacks.
  absl::StatusOr<std::vector<Snapshot>> Ensure(absl::Span<const LayerSource> chain,
                                               const UnpackListener& listener = nullptr);

  // A root filesystem of `chain` (bottom first, as Ensure returned it; empty
  // for FROM scratch) for one step, using `scratch_dir` (made if missing;
  // not on an overlayfs, which cannot hold an upper dir) for the upper, work
  // and mount directories or the copies; the subdirectories it makes must not
  // exist yet or be empty. Tries an overlay mount unless options.force_copy;
  // falls back to the copy when the mount fails. The overlay's lowerdir list
  // must fit one page of mount options: about 40 snapshots under a data dir
  // of average length (longer chains fall back to the copy).
  absl::StatusOr<std::unique_ptr<Rootfs>> PrepareRootfs(absl::Span<const Snapshot> chain,
                                                        const std::filesystem::path& scratch_dir,
                                                        const RootfsOptions& options);

  // Keeps the upper dir of an overlay `rootfs` as the snapshot `chain_id`:
  // it already holds the step's layer in snapshot form (overlay whiteouts and
  // opaque markers), so the next step can stack it without unpacking the
  // layer just written. Call after WriteLayer, with `chain_id` the chain of the
  // rootfs's snapshots plus that layer. Unmounts the rootfs. When the
  // snapshot exists already (another build made the same layer), the upper
  // dir is discarded and the existing one returned. FailedPrecondition for a
  // copy-mode rootfs, whose layer must be unpacked with Ensure instead.
  absl::StatusOr<Snapshot> CommitUpper(std::unique_ptr<Rootfs> rootfs,
                                       const digest::Digest& chain_id);

  const std::filesystem::path& dir() const { return dir_; }

 private:
  Snapshots(std::filesystem::path dir, size_t discarded)
      : dir_(std::move(dir)), discarded_at_open_(discarded) {}

  // Unpacks `layer` as `chain_id` unless present; true when it unpacked.
  absl::StatusOr<bool> EnsureOne(const digest::Digest& chain_id, const LayerSource& layer,
                                 const UnpackListener& listener);

  std::filesystem::path dir_;
  const size_t discarded_at_open_;
  // Cleared when the kernel refuses a volatile overlay (before Linux 5.10).
  std::atomic<bool> mount_volatile_{true};
  absl::Mutex mu_;
  absl::CondVar done_;
  // Chain ids (hex) being unpacked by a caller in this process.
  absl::flat_hash_set<std::string> in_progress_ ABSL_GUARDED_BY(mu_);
};

// Copies the tree of the snapshot `layer_dir` onto `target_dir` with overlay
// semantics: an overlay whiteout removes what the target has at its name, a
// directory with trusted.overlay.opaque=y is emptied before the layer's
// entries are copied into it, a directory over a directory merges, anything
// else replaces. Owners, modes, xattrs (not trusted.overlay.*), mtimes,
// symlinks, devices, fifos and hardlinks within the layer are kept; sockets
// are skipped. Used for the copy fallback; also copies a plain tree.
absl::Status CopyLayerOnto(const std::filesystem::path& layer_dir,
                           const std::filesystem::path& target_dir);

}  // namespace stagefarm::snapshots
