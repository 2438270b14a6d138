// Running a command line from a test the way a user's shell would.
#ifndef STAGEFARM_TESTS_TESTING_SHELL_H_
#define STAGEFARM_TESTS_TESTING_SHELL_H_

#include <string>

namespace stagefarm::testing {

struct Invocation {
  int exit_code = -1;  // -1 when it could not run or did not exit normally
  std::string output;  // what it printed on stdout
};

// Runs `command` with /bin/sh and waits for it. Callers that want stderr
// too put "2>&1" where it belongs among their own redirections.
Invocation RunShell(const std::string& command);

}  // namespace stagefarm::testing

#endif  // STAGEFARM_TESTS_TESTING_SHELL_H_
