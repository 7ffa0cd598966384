// The one home of the attention pattern names and of the request limits on their settings,
// shared by the kernels (layout.cpp), the engine (its request plan and attention policy) and the
// bundle manifest. Plain C++17, header-only: the engine's core (no LibTorch) includes it too.
// models/bundle.py spells the same names (tests/models/test_bundle.py checks it); Python passes
// them to the kernels as strings.
#pragma once

#include <cctype>
#include <cstdint>
#include <optional>
#include <string_view>

#include "grat/geometry.h"

namespace grat {

// "full", "B", "X": how model.yaml, the TorchScript argument and results spell them.
inline const char* pattern_name(Pattern p) {
  switch (p) {
    case Pattern::kFull:
      return "full";
    case Pattern::kB:
      return "B";
    case Pattern::kX:
      return "X";
  }
  return "?";
}

// A pattern from its name, case-insensitive ("b" is B); nullopt for anything else.
inline std::optional<Pattern> find_pattern(std::string_view name) {
  for (Pattern p : {Pattern::kFull, Pattern::kB, Pattern::kX}) {
    const std::string_view n = pattern_name(p);
    bool same = n.size() == name.size();
    for (size_t i = 0; same && i < n.size(); ++i) {
      same = std::tolower(static_cast<unsigned char>(n[i])) ==
             std::tolower(static_cast<unsigned char>(name[i]));
    }
    if (same) return p;
  }
  return std::nullopt;
}

// Limits a request may ask for (the kernels accept more): GRAT-B radius in groups (0 in a
// request: the bundle's default), and a group per axis within [1, that axis's token count].
constexpr int64_t kMaxRequestRadius = 64;

}  // namespace grat
