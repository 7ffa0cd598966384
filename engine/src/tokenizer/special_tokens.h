// Shared by the T5 and CLIP tokenizers: special tokens written in a prompt.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace grat::tokenizer {

// Splits `text` at the special tokens `match(text, pos)` recognises (it returns
// {length, id}, length 0 for none): each special becomes its id, the text between them goes
// through `encode(segment, ids)`.
template <typename Match, typename Encode>
void EncodeAroundSpecials(std::string_view text, const Match& match, const Encode& encode,
                          std::vector<int64_t>* ids) {
  std::size_t start = 0;
  for (std::size_t pos = 0; pos < text.size();) {
    const auto [length, id] = match(text, pos);
    if (length == 0) {
      ++pos;
      continue;
    }
    encode(text.substr(start, pos - start), ids);
    ids->push_back(id);
    pos += length;
    start = pos;
  }
  encode(text.substr(start), ids);
}

}  // namespace grat::tokenizer
