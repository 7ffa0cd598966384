#include "grat/engine/attention_policy.h"

#include "grat/pattern.h"

#include <algorithm>
#include <cctype>
#include <sstream>
#include <stdexcept>

namespace grat::engine {

std::optional<AttentionMode> parse_attention_mode(const std::string& name) {
  std::string s(name);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "auto" || s.empty()) return AttentionMode::kAuto;
  const std::optional<Pattern> p = find_pattern(name);
  if (!p) return std::nullopt;
  switch (*p) {
    case Pattern::kFull:
      return AttentionMode::kFull;
    case Pattern::kB:
      return AttentionMode::kB;
    case Pattern::kX:
      return AttentionMode::kX;
  }
  return std::nullopt;
}

const char* attention_mode_name(AttentionMode mode) {
  switch (mode) {
    case AttentionMode::kAuto:
      return "auto";
    case AttentionMode::kFull:
      return pattern_name(Pattern::kFull);
    case AttentionMode::kB:
      return pattern_name(Pattern::kB);
    case AttentionMode::kX:
      return pattern_name(Pattern::kX);
  }
  return "?";
}

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk:
      return "ok";
    case ErrorCode::kInvalidArgument:
      return "invalid_argument";
    case ErrorCode::kOutOfMemory:
      return "out_of_memory";
    case ErrorCode::kResourceExhausted:
      return "resource_exhausted";
    case ErrorCode::kDeviceFailed:
      return "device_failed";
    case ErrorCode::kBadBundle:
      return "bad_bundle";
    case ErrorCode::kTokenizer:
      return "tokenizer";
    case ErrorCode::kCancelled:
      return "cancelled";
    case ErrorCode::kDeadlineExceeded:
      return "deadline_exceeded";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "?";
}

AttentionPolicy::AttentionPolicy(const AttentionSettings& req, std::vector<int64_t> grid,
                                 const std::string& default_pattern,
                                 std::vector<int64_t> default_group, int64_t default_radius,
                                 AutoTable table)
    : full_steps_(req.full_steps), grid_(std::move(grid)) {
  if (req.full_steps < 0) throw std::invalid_argument("attention.full_steps must be >= 0");
  std::vector<int64_t> group = req.group.empty() ? default_group : req.group;
  if (group.size() != grid_.size()) {
    throw std::invalid_argument("attention.group must have " + std::to_string(grid_.size()) +
                                " entries (one per token-grid axis); got " +
                                std::to_string(group.size()));
  }
  for (size_t a = 0; a < group.size(); ++a) {
    if (group[a] < 1 || group[a] > 1024) {
      throw std::invalid_argument("attention.group[" + std::to_string(a) +
                                  "] must be in [1, 1024]; got " + std::to_string(group[a]));
    }
    group[a] = std::min(group[a], grid_[a]);  // a group larger than the grid is the grid
  }
  const int64_t radius = req.radius == 0 ? default_radius : req.radius;
  if (radius < 1 || radius > kMaxRequestRadius) {
    throw std::invalid_argument("attention.radius must be in [1, " +
                                std::to_string(kMaxRequestRadius) + "]; got " +
                                std::to_string(radius));
  }
  std::string pattern;
  switch (req.mode) {
    case AttentionMode::kFull:
      pattern = "full";
      break;
    case AttentionMode::kB:
      pattern = "B";
      break;
    case AttentionMode::kX:
      pattern = "X";
      break;
    case AttentionMode::kAuto: {
      int64_t tokens = 1;
      bool enough_groups = true;
      for (size_t a = 0; a < grid_.size(); ++a) {
        tokens *= grid_[a];
        const int64_t groups = (grid_[a] + group[a] - 1) / group[a];
        // A 3-D grid's time axis may have few groups; require it on the spatial axes.
        if (a + 2 >= grid_.size() && groups < table.min_groups_per_axis) enough_groups = false;
      }
      pattern = tokens >= table.min_tokens_for_grat && enough_groups ? default_pattern : "full";
      break;
    }
  }
  sparse_ = StepAttention{pattern, group, radius};
}

StepAttention AttentionPolicy::at_step(int64_t i) const {
  if (i < full_steps_ && sparse_.pattern != "full") {
    return StepAttention{"full", sparse_.group, sparse_.radius};
  }
  return sparse_;
}

std::string AttentionPolicy::describe() const {
  std::ostringstream o;
  o << sparse_.pattern;
  if (sparse_.pattern != "full") {
    o << " group=";
    for (size_t i = 0; i < sparse_.group.size(); ++i) o << (i ? "x" : "") << sparse_.group[i];
    if (sparse_.pattern == "B") o << " radius=" << sparse_.radius;
    if (full_steps_ > 0) o << " full_steps=" << full_steps_;
  }
  return o.str();
}

}  // namespace grat::engine
