// TokenIds: the fixed-length output of a text tokenizer (ids + attention mask).
#pragma once

#include <cstdint>
#include <vector>

namespace grat::tokenizer {

struct TokenIds {
  std::vector<int64_t> ids;             // max_length ids: tokens, then padding
  std::vector<int64_t> attention_mask;  // 1 for real tokens (specials included), 0 for padding
  int64_t length = 0;                   // number of real tokens (sum of attention_mask)
};

}  // namespace grat::tokenizer
