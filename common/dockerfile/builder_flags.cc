#include "common/dockerfile/builder_flags.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/dockerfile/suggestion.h"

namespace stagefarm::dockerfile {

BuilderFlags::BuilderFlags(absl::Span<const std::string> args) : args_(args.begin(), args.end()) {}

BuilderFlag& BuilderFlags::Add(absl::string_view name, FlagKind kind) {
  BuilderFlag& flag = flags_.emplace_back();
  flag.name = std::string(name);
  flag.kind = kind;
  return flag;
}

const BuilderFlag& BuilderFlags::AddBool(absl::string_view name, bool default_value) {
  BuilderFlag& flag = Add(name, FlagKind::kBool);
  flag.bool_value = default_value;
  return flag;
}

const BuilderFlag& BuilderFlags::AddString(absl::string_view name,
                                           absl::string_view default_value) {
  BuilderFlag& flag = Add(name, FlagKind::kString);
  flag.value = std::string(default_value);
  return flag;
}

const BuilderFlag& BuilderFlags::AddStrings(absl::string_view name) {
  return Add(name, FlagKind::kStrings);
}

BuilderFlag* BuilderFlags::Find(absl::string_view name) {
  for (BuilderFlag& flag : flags_) {
    if (flag.name == name) return &flag;
  }
  return nullptr;
}

absl::Status BuilderFlags::Parse() {
  for (const std::string& arg : args_) {
    if (arg == "--") return absl::OkStatus();
    if (!absl::StartsWith(arg, "--")) {
      return absl::InvalidArgumentError(absl::StrCat("arg should start with -- : ", arg));
    }
    const size_t equals = arg.find('=');
    const bool has_value = equals != std::string::npos;
    const absl::string_view flag_name = absl::string_view(arg).substr(0, equals);
    const absl::string_view value =
        has_value ? absl::string_view(arg).substr(equals + 1) : absl::string_view();
    const absl::string_view name = flag_name.substr(2);

    BuilderFlag* flag = Find(name);
    if (flag == nullptr) {
      std::vector<absl::string_view> names;
      for (const BuilderFlag& declared : flags_) names.push_back(declared.name);
      return absl::InvalidArgumentError(WithSuggestion(absl::StrCat("unknown flag: ", flag_name),
                                                       name, names, /*case_sensitive=*/true));
    }
    if (flag->used && flag->kind != FlagKind::kStrings) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate flag specified: ", flag_name));
    }
    if (!flag->used) used_.push_back(flag->name);
    flag->used = true;

    switch (flag->kind) {
      case FlagKind::kBool: {
        if (has_value && value.empty()) {
          return absl::InvalidArgumentError(absl::StrCat("missing a value on flag: ", flag_name));
        }
        const std::string lowered = absl::AsciiStrToLower(value);
        if (lowered == "true" || lowered.empty()) {
          flag->bool_value = true;
        } else if (lowered == "false") {
          flag->bool_value = false;
        } else {
          return absl::InvalidArgumentError(
              absl::StrCat("expecting boolean value for flag ", flag_name, ", not: ", value));
        }
        break;
      }
      case FlagKind::kString:
        if (!has_value) {
          return absl::InvalidArgumentError(absl::StrCat("missing a value on flag: ", flag_name));
        }
        flag->value = std::string(value);
        break;
      case FlagKind::kStrings:
        if (!has_value) {
          return absl::InvalidArgumentError(absl::StrCat("missing a value on flag: ", flag_name));
        }
        flag->values.emplace_back(value);
        break;
    }
  }
  return absl::OkStatus();
}

}  // namespace stagefarm::dockerfile
