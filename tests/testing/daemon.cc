#include "tests/testing/daemon.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"

extern char** environ;

namespace stagefarm::testing {

Daemon::Daemon(const std::string& binary, std::vector<std::string> args) {
  int out[2];
  EXPECT_EQ(::pipe(out), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  args.insert(args.begin(), binary);
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  EXPECT_EQ(posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  stdout_ = ::fdopen(out[0], "r");
}

Daemon::~Daemon() {
  if (pid_ > 0) Stop();
}

std::string Daemon::ReadLine() {
  char buffer[4096];
  if (std::fgets(buffer, sizeof buffer, stdout_) == nullptr) return "";
  return std::string(absl::StripSuffix(buffer, "\n"));
}

std::string Daemon::Await(absl::string_view prefix) {
  for (std::string line = ReadLine(); !line.empty(); line = ReadLine()) {
    if (absl::StartsWith(line, prefix)) return line.substr(prefix.size());
  }
  return "";
}

int Daemon::Stop() {
  ::kill(pid_, SIGTERM);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = 0;
  std::fclose(stdout_);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace stagefarm::testing
