// The reference's Node.Dump(): the format of the conformance `result` files.
#include "common/dockerfile/go_text.h"
#include "common/dockerfile/parser.h"

namespace stagefarm::dockerfile {

std::string DumpNode(const Node& node) {
  std::string out = go::ToLower(node.keyword);
  if (!node.flags.empty()) {
    // fmt's %q of a []string: ["a" "b"].
    out += " [";
    for (size_t i = 0; i < node.flags.size(); ++i) {
      if (i > 0) out += ' ';
      go::AppendQuoted(out, node.flags[i]);
    }
    out += ']';
  }
  if (node.onbuild_trigger != nullptr) {
    out += " (";
    out += DumpNode(*node.onbuild_trigger);
    out += ')';
  }
  for (const std::string& arg : node.args) {
    out += ' ';
    go::AppendQuoted(out, arg);
  }
  return std::string(go::TrimSpace(out));
}

std::string Dump(const ParseResult& result) {
  std::string out;
  for (const Node& child : result.children) {
    out += '(';
    out += DumpNode(child);
    out += ")\n";
  }
  return out;
}

}  // namespace stagefarm::dockerfile
