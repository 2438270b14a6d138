// The version every stagefarm program reports (`stagefarm --version`, the
// daemons' --version): project()'s in CMakeLists.txt.
#pragma once

namespace stagefarm::process {

inline constexpr char kVersion[] = STAGEFARM_VERSION;

}  // namespace stagefarm::process
