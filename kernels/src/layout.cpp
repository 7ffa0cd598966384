#include "grat/layout.h"

#include "message.h"

#include <c10/util/Exception.h>

namespace grat {

using detail::num;

Pattern parse_pattern(const std::string& name) {
  const std::optional<Pattern> p = find_pattern(name);
  TORCH_CHECK(p.has_value(), "grat: pattern must be one of \"full\", \"B\", \"X\"; got \"", name,
              "\"");
  return *p;
}

Layout make_layout(const std::vector<int64_t>& grid, const std::vector<int64_t>& group,
                   const std::string& pattern, int64_t radius, int64_t text_tokens, bool text_first,
                   const std::vector<int64_t>& valid_text, bool grouped) {
  TORCH_CHECK(grid.size() == 2 || grid.size() == 3,
              "grat: grid must have 2 entries (h, w) or 3 (t, h, w); got ", num(grid.size()));
  TORCH_CHECK(group.size() == grid.size(), "grat: group must have one entry per grid axis (",
              num(grid.size()), "); got ", num(group.size()));
  Layout l;
  l.geom.dims = static_cast<int32_t>(grid.size());
  const int off = 3 - static_cast<int>(grid.size());
  for (int a = 0; a < 3; ++a) {
    const bool real = a >= off;
    const int64_t n = real ? grid[a - off] : 1, g = real ? group[a - off] : 1;
    TORCH_CHECK(n >= 1, "grat: grid[", num(a - off), "] must be >= 1; got ", num(n));
    TORCH_CHECK(g >= 1, "grat: group[", num(a - off), "] must be >= 1; got ", num(g));
    TORCH_CHECK(g <= n, "grat: group[", num(a - off), "] = ", num(g), " is larger than grid[",
                num(a - off), "] = ", num(n));
    l.geom.grid[a] = n;
    l.geom.group[a] = g;
    l.geom.ngroups[a] = (n + g - 1) / g;
  }
  TORCH_CHECK(l.geom.image_tokens() <= (int64_t{1} << 31), "grat: grid has ",
              num(l.geom.image_tokens()), " tokens; the limit is 2^31");
  l.geom.pattern = parse_pattern(pattern);
  TORCH_CHECK(radius >= 1, "grat: radius must be >= 1; got ", num(radius));
  TORCH_CHECK(radius <= (int64_t{1} << 20), "grat: radius must be <= 2^20; got ", num(radius));
  l.geom.radius = static_cast<int32_t>(radius);
  TORCH_CHECK(text_tokens >= 0, "grat: text_tokens must be >= 0; got ", num(text_tokens));
  l.text_tokens = text_tokens;
  l.text_first = text_first;
  for (size_t i = 0; i < valid_text.size(); ++i) {
    TORCH_CHECK(valid_text[i] >= 0 && valid_text[i] <= text_tokens, "grat: valid_text[", num(i),
                "] must be in [0, text_tokens = ", num(text_tokens), "]; got ", num(valid_text[i]));
  }
  l.valid_text = valid_text;
  l.grouped = grouped;
  return l;
}

void check_valid_text(const Layout& layout, int64_t batch) {
  const auto n = static_cast<int64_t>(layout.valid_text.size());
  TORCH_CHECK(n <= 1 || n == batch, "grat: valid_text must have 0, 1 or batch (", num(batch),
              ") entries; got ", num(n));
}

}  // namespace grat
