// A test's own directory under the temp dir ($TMPDIR, else /tmp), gone when
// the test is, whether it passed or failed.
#ifndef STAGEFARM_TESTS_TESTING_TEMP_DIR_H_
#define STAGEFARM_TESTS_TESTING_TEMP_DIR_H_

#include <filesystem>
#include <string>

namespace stagefarm::testing {

// A fresh directory named "PREFIX.XXXXXX", so that a leftover says which test
// made it. Throws std::runtime_error if it cannot be made.
//
// The destructor removes it with everything in it: it first detaches any
// mount still below it (one it cannot detach keeps the directory, so that
// nothing is deleted through it), and makes read-only directories writable if
// a first removal fails. What it had to detach or could not remove it names
// on stderr.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace stagefarm::testing

#endif  // STAGEFARM_TESTS_TESTING_TEMP_DIR_H_
