#include "tests/testing/random_blobs.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "rocksdb/db.h"

namespace stagefarm::testing {

void RandomStream::Fill(std::string* buffer, size_t size) {
  buffer->resize(size);
  for (size_t i = 0; i < size; i += 8) {
    uint64_t word = random_();
    for (size_t j = 0; j < 8 && i + j < size; ++j) {
      (*buffer)[i + j] = static_cast<char>(word >> (8 * j));
    }
  }
}

std::string RandomBytes(uint64_t seed, size_t size) {
  std::string out;
  RandomStream(seed).Fill(&out, size);
  return out;
}

absl::StatusOr<digest::Digest> PutRandom(cas::BlobStore& store, uint64_t seed, uint64_t size) {
  RandomStream stream(seed);
  digest::Sha256 hasher;
  std::unique_ptr<cas::BlobWriter> writer = store.NewWriter();
  std::string buffer;
  for (uint64_t done = 0; done < size;) {
    stream.Fill(&buffer, std::min<uint64_t>(size - done, 4 * kMiB));
    hasher.Update(buffer);
    if (absl::Status status = writer->Write(buffer); !status.ok()) return status;
    done += buffer.size();
  }
  digest::Digest blob = hasher.Finish();
  if (absl::Status status = writer->Commit(blob); !status.ok()) return status;
  return blob;
}

absl::StatusOr<std::pair<digest::Digest, uint64_t>> HashStored(cas::BlobStore& store,
                                                               const digest::Digest& blob) {
  absl::StatusOr<std::unique_ptr<cas::BlobReader>> reader = store.Get(blob);
  if (!reader.ok()) return reader.status();
  digest::Sha256 hasher;
  uint64_t size = 0;
  while (true) {
    absl::StatusOr<absl::string_view> piece = (*reader)->Next();
    if (!piece.ok()) return piece.status();
    if (piece->empty()) break;
    hasher.Update(*piece);
    size += piece->size();
  }
  return std::make_pair(hasher.Finish(), size);
}

absl::Status CorruptFirstStoredChunk(const std::filesystem::path& store_dir) {
  const std::string path = store_dir.string();
  std::vector<std::string> names;
  if (!rocksdb::DB::ListColumnFamilies({}, path, &names).ok()) {
    return absl::InternalError("cannot list the column families of " + path);
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  for (const std::string& name : names) families.emplace_back(name, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* opened = nullptr;
  if (!rocksdb::DB::Open({}, path, families, &handles, &opened).ok()) {
    return absl::InternalError("cannot open " + path);
  }
  std::unique_ptr<rocksdb::DB> db(opened);
  absl::Status status = absl::NotFoundError("no chunk in " + path);
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] != "chunks") continue;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator({}, handles[i]));
    it->SeekToFirst();
    if (!it->Valid()) break;
    const std::string key = it->key().ToString();
    std::string value = it->value().ToString();
    it.reset();
    value[value.size() / 2] ^= 0x40;
    status = db->Put({}, handles[i], key, value).ok()
                 ? absl::OkStatus()
                 : absl::InternalError("cannot write the chunk back");
  }
  for (rocksdb::ColumnFamilyHandle* handle : handles) db->DestroyColumnFamilyHandle(handle);
  return status;
}

}  // namespace stagefarm::testing
