// `stagefarm build`: plans a Dockerfile, builds the stages the target needs
// on this machine, stores the image in the local store, tags it (-t) and
// writes the requested outputs (--output type=oci|docker,dest=PATH).
#pragma once

#include <string>
#include <vector>

namespace stagefarm::cli {

// Given the arguments after "build"; returns the process exit code.
int Build(const std::vector<std::string>& args);

}  // namespace stagefarm::cli
