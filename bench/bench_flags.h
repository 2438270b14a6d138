// The command lines of the hand-written benchmarks (those not on Google
// Benchmark): --name value, --name=value, and --flag alone for "true".
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace stagefarm::bench {

// The flags in argv[first...]; an error names an argument that is not a flag.
absl::StatusOr<std::map<std::string, std::string>> ParseBenchFlags(int argc, char** argv,
                                                                   int first = 1);

}  // namespace stagefarm::bench
