// The `--name[=value]` flags of one instruction, checked against the flags the
// instruction accepts, as BuildKit's BFlags checks them.
#pragma once

#include <deque>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace stagefarm::dockerfile {

enum class FlagKind {
  kBool,     // `--link`, `--link=true`, `--link=false` (value case-insensitive)
  kString,   // `--from=x`; the `=` is required, the value may be empty
  kStrings,  // `--mount=a --mount=b`: repeatable, values kept in order
};

// One declared flag. Its fields are final once BuilderFlags::Parse succeeded.
struct BuilderFlag {
  std::string name;  // without the leading `--`
  FlagKind kind;
  bool used = false;                // given at least once
  bool bool_value = false;          // kBool: the value, else the default
  std::string value;                // kString: the value, else the default
  std::vector<std::string> values;  // kStrings: every value given
};

class BuilderFlags {
 public:
  // `args` are the instruction's flag words (Node::flags), e.g. "--from=build".
  explicit BuilderFlags(absl::Span<const std::string> args);

  BuilderFlags(const BuilderFlags&) = delete;
  BuilderFlags& operator=(const BuilderFlags&) = delete;

  // Declare the accepted flags before Parse(). The returned reference stays
  // valid for the lifetime of this object and is filled in by Parse().
  const BuilderFlag& AddBool(absl::string_view name, bool default_value);
  const BuilderFlag& AddString(absl::string_view name, absl::string_view default_value);
  const BuilderFlag& AddStrings(absl::string_view name);

  // Matches the args against the declared flags. A bare `--` ends the flags.
  // InvalidArgument, worded as the reference words it, for a word not starting
  // with `--`, an undeclared flag ("unknown flag: --boo", with a "did you mean"
  // hint), a non-repeatable flag given twice ("duplicate flag specified:
  // --from"), a string flag without `=value` or a bool flag with `=` and no
  // value ("missing a value on flag: --from"), or a bool value other than
  // true/false ("expecting boolean value for flag --link, not: yes").
  absl::Status Parse();

  // Names of the flags given, in order of first use.
  const std::vector<std::string>& used() const { return used_; }

 private:
  BuilderFlag& Add(absl::string_view name, FlagKind kind);
  BuilderFlag* Find(absl::string_view name);

  std::vector<std::string> args_;
  std::deque<BuilderFlag> flags_;  // deque: references handed out stay valid
  std::vector<std::string> used_;
};

}  // namespace stagefarm::dockerfile
