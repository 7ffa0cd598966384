// SentencePieceNormalizer: sentencepiece's normalizer (normalizer.cc): the precompiled
// charsmap (a darts-clone double-array trie over UTF-8 prefixes + a blob of replacement
// strings, longest match wins), then whitespace handling: strip leading/trailing, collapse runs,
// add the dummy prefix and escape ' ' as U+2581. Immutable after construction: thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "grat/tokenizer/sentencepiece_model.h"

namespace grat::tokenizer {

class SentencePieceNormalizer {
 public:
  // Throws TokenizerError(kCorruptFile) when the charsmap blob is malformed.
  explicit SentencePieceNormalizer(const SentencePieceModel& model);

  // Normalizes valid UTF-8 text (callers validate first).
  std::string Normalize(std::string_view input) const;

  // The replacement for the longest charsmap rule matching a prefix of `input` and the number
  // of input bytes it consumes (no rule: the first character itself).
  std::pair<std::string_view, std::size_t> NormalizePrefix(std::string_view input) const;

  // The charsmap applied as transformers' `tokenizers` Precompiled normalizer applies it (no
  // whitespace handling): per extended grapheme cluster, a cluster shorter than 6 bytes with a
  // rule on some prefix becomes the replacement of the *shortest* such rule (the rest of the
  // cluster is dropped); otherwise each character is replaced by its own rule, if any.
  std::string NormalizeLikeTransformers(std::string_view input) const;

 private:
  // Replacement of the shortest charsmap rule on a prefix of `key`, or nullptr.
  const char* ShortestRule(std::string_view key) const;

  std::vector<uint32_t> trie_;
  std::string replacements_;
  bool add_dummy_prefix_;
  bool remove_extra_whitespaces_;
  bool escape_whitespaces_;
  bool treat_whitespace_as_suffix_;
};

}  // namespace grat::tokenizer
