#include "cli/command_line.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "common/dockerfile/suggestion.h"

namespace stagefarm::cli {

std::string ParsedArgs::Get(const std::string& name, const std::string& fallback) const {
  auto it = values.find(name);
  return it == values.end() || it->second.empty() ? fallback : it->second.back();
}

const std::vector<std::string>& ParsedArgs::All(const std::string& name) const {
  static const std::vector<std::string> kNone;
  auto it = values.find(name);
  return it == values.end() ? kNone : it->second;
}

absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                                     const std::vector<FlagSpec>& specs) {
  ParsedArgs parsed;
  auto find = [&](absl::string_view name, bool is_short) -> const FlagSpec* {
    for (const FlagSpec& spec : specs) {
      if (is_short ? spec.short_name == name : spec.name == name) return &spec;
    }
    return nullptr;
  };
  bool flags_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (flags_done || arg.size() < 2 || arg[0] != '-') {
      parsed.positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    const bool is_short = arg[1] != '-';
    absl::string_view body = absl::string_view(arg).substr(is_short ? 1 : 2);
    std::optional<std::string> inline_value;
    if (const size_t eq = body.find('='); eq != absl::string_view::npos) {
      inline_value = std::string(body.substr(eq + 1));
      body = body.substr(0, eq);
    }
    const FlagSpec* spec = find(body, is_short);
    if (spec == nullptr) {
      std::vector<absl::string_view> names;
      names.reserve(specs.size());
      for (const FlagSpec& s : specs) names.push_back(s.name);
      std::string message = absl::StrCat("unknown flag: ", arg.substr(0, arg.find('=')));
      message = dockerfile::WithSuggestion(message, body, names, /*case_sensitive=*/true);
      // WithSuggestion words it "(did you mean x?)"; point at the flag form.
      absl::StrReplaceAll({{"(did you mean ", "(did you mean --"}}, &message);
      return absl::InvalidArgumentError(message);
    }
    std::string value;
    if (!spec->takes_value) {
      value = inline_value.value_or("true");
      if (value != "true" && value != "false") {
        return absl::InvalidArgumentError(
            absl::StrCat("flag --", spec->name, " takes true or false, not \"", value, "\""));
      }
    } else if (inline_value) {
      value = *inline_value;
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("flag --", spec->name, " needs a value"));
    }
    std::vector<std::string>& slot = parsed.values[spec->name];
    if (!slot.empty() && !spec->repeated) {
      return absl::InvalidArgumentError(absl::StrCat("flag --", spec->name, " given twice"));
    }
    slot.push_back(std::move(value));
  }
  return parsed;
}

std::string FlagHelp(const std::vector<FlagSpec>& specs) {
  std::string out;
  for (const FlagSpec& spec : specs) {
    const std::string names = spec.short_name.empty()
                                  ? absl::StrCat("    --", spec.name)
                                  : absl::StrCat("-", spec.short_name, ", --", spec.name);
    absl::StrAppendFormat(&out, "  %-24s %s\n", names, spec.help);
  }
  return out;
}

}  // namespace stagefarm::cli
