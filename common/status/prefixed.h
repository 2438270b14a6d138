// Errors that say where they happened: a status with its message prefixed.
// Header only (absl::status and absl::strings, which its users link).
#pragma once

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace stagefarm {

// `status` with "PREFIX: " before its message, its code kept.
inline absl::Status Prefixed(absl::string_view prefix, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(prefix, ": ", status.message()));
}

}  // namespace stagefarm
