// The layout of one GRAT attention call: token grid, groups, pattern, text tokens.
//
// Parameters (validated by make_layout, each error names the parameter and its rule):
//   grid        [h, w] or [t, h, w] image/video tokens per axis, every entry >= 1
//   group       one entry per grid axis, 1 <= group[i] <= grid[i]
//   pattern     "full", "B" (surrounding groups within `radius`) or "X" (criss-cross)
//   radius      >= 1, GRAT-B only (ignored, but still validated, for other patterns)
//   text_tokens >= 0 text tokens, placed before (text_first, Flux) or after (HunyuanVideo)
//               the image tokens
//   valid_text  [] = every text token valid; [v] = first v valid for every batch item;
//               [v_0..v_{B-1}] per batch item; 0 <= v <= text_tokens. Padding keys are
//               masked for every query.
//   grouped     the image tokens already arrive in group-major order (see geometry.h)
// Image queries read the valid text and their region; text queries read every image
// token and the valid text.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "grat/geometry.h"
#include "grat/pattern.h"

namespace grat {

struct Layout {
  Geometry geom{};
  int64_t text_tokens = 0;
  bool text_first = true;
  std::vector<int64_t> valid_text;  // as given: empty, one value, or one per batch item
  bool grouped = false;

  int64_t total_tokens() const { return text_tokens + geom.image_tokens(); }
  int64_t text_begin() const { return text_first ? 0 : geom.image_tokens(); }
  int64_t image_begin() const { return text_first ? text_tokens : 0; }
  // Valid text tokens for batch item b.
  int64_t valid_for(int64_t b) const {
    if (valid_text.empty()) return text_tokens;
    return valid_text.size() == 1 ? valid_text[0] : valid_text[static_cast<size_t>(b)];
  }
};

// Parses "full" / "B" / "X" (case-insensitive, pattern.h); TORCH_CHECK error otherwise.
Pattern parse_pattern(const std::string& name);

// Builds and validates a layout; throws c10::Error naming the offending parameter.
Layout make_layout(const std::vector<int64_t>& grid, const std::vector<int64_t>& group,
                   const std::string& pattern, int64_t radius, int64_t text_tokens, bool text_first,
                   const std::vector<int64_t>& valid_text, bool grouped);

// Checks that valid_text fits a batch of `batch` items.
void check_valid_text(const Layout& layout, int64_t batch);

}  // namespace grat
