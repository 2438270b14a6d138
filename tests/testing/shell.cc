#include "tests/testing/shell.h"

#include <sys/wait.h>

#include <array>
#include <cstdio>

namespace stagefarm::testing {

Invocation RunShell(const std::string& command) {
  Invocation run;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) run.output.append(buf.data(), n);
  const int status = pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

}  // namespace stagefarm::testing
