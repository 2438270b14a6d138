// `stagefarm cluster status|drain`: what the coordinator knows about its
// workers, and taking a worker out of scheduling. Talks to the coordinator's
// control socket (schemas/cluster.capnp) with CURVE, or plainly with an
// explicit --insecure.
#pragma once

#include <string>
#include <vector>

namespace stagefarm::cli {

// Given the arguments after "cluster"; returns the process exit code.
int ClusterCommand(const std::vector<std::string>& args);

}  // namespace stagefarm::cli
