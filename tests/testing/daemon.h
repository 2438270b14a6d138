// A daemon (stagefarm-worker, stagefarm-coordinator) started as a process
// for a test: its stdout read line by line, SIGTERM on Stop.
#ifndef STAGEFARM_TESTS_TESTING_DAEMON_H_
#define STAGEFARM_TESTS_TESTING_DAEMON_H_

#include <sys/types.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace stagefarm::testing {

class Daemon {
 public:
  // Starts `binary` with `args`; its stdout is a pipe this object reads.
  Daemon(const std::string& binary, std::vector<std::string> args);
  // Stop(), unless it was called.
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // The next line of stdout ("" at the end).
  std::string ReadLine();
  // Reads lines until one starts with `prefix`; returns the rest of it ("" at
  // the end of stdout).
  std::string Await(absl::string_view prefix);
  pid_t pid() const { return pid_; }
  // SIGTERM, then the exit code (-1 when it did not exit normally).
  int Stop();

 private:
  pid_t pid_ = 0;
  FILE* stdout_ = nullptr;
};

}  // namespace stagefarm::testing

#endif  // STAGEFARM_TESTS_TESTING_DAEMON_H_
