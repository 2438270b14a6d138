// `stagefarm keys ...`: CURVE keys for the nodes and clients of a cluster.
#pragma once

#include <string>
#include <vector>

namespace stagefarm::cli {

// `stagefarm keys generate DIR [--name NAME]`, given the arguments after
// "generate". Writes a fresh keypair to DIR/NAME.key (mode 0600) and
// DIR/NAME.pub (0644), NAME defaulting to "node", making DIR (mode 0700) if
// it is missing, and prints both paths and the Z85 public key, the key on the
// last line. Never overwrites a key: when either file exists it writes
// nothing. Returns the process exit code (0, kExitError, kExitUsage).
int KeysGenerate(const std::vector<std::string>& args);

}  // namespace stagefarm::cli
