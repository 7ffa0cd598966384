// TokenIds: the fixed-length output of a text tokenizer (ids + attention mask).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace grat::tokenizer {

struct TokenIds {
  std::vector<int64_t> ids;             // max_length ids: tokens, then padding
  std::vector<int64_t> attention_mask;  // 1 for real tokens (specials included), 0 for padding
  int64_t length = 0;                   // number of real tokens (sum of attention_mask)
};

// `tokens` (already cut to fit) padded with pad_id to max_length, with its mask and length.
inline TokenIds PadTokens(std::vector<int64_t> tokens, std::size_t max_length, int64_t pad_id) {
  TokenIds out;
  out.ids = std::move(tokens);
  out.length = static_cast<int64_t>(out.ids.size());
  out.attention_mask.assign(out.ids.size(), 1);
  out.ids.resize(max_length, pad_id);
  out.attention_mask.resize(max_length, 0);
  return out;
}

}  // namespace grat::tokenizer
