// LlamaTokenizer: the Llama 3 tokenizer of HunyuanVideo's text encoder (llava-llama-3-8b) from
// its `tokenizer.json` (the `tokenizers` fast-tokenizer file of a diffusers checkpoint's
// tokenizer/ folder), producing what transformers' PreTrainedTokenizerFast gives:
//  1. added tokens (<|begin_of_text|>, <|eot_id|>, <|start_header_id|>, ..., <pad>) written in
//     the text are those tokens: matched literally, leftmost-longest, before anything else (the
//     `normalized: false` ones first, then the others; there is no normalizer);
//  2. the text between them is split by Llama 3's pattern
//       (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*
//       |\s*[\r\n]+|\s+(?!\S)|\s+
//     (matched by hand over the unicode.h tables, as the `tokenizers` regex engine matches it);
//  3. each piece's bytes become byte-level symbols (no prefix space) and go through the BPE
//     model as `tokenizers` runs it (ignore_merges: a piece found whole in the vocabulary is that
//     token);
//  4. the post-processor's template wraps the ids (Llama 3: <|begin_of_text|> first).
// Encode then truncates the text's tokens so that the whole fits max_length (specials kept) and
// pads on the right with the pad token, as tokenizer(text, max_length=..., truncation=True,
// padding="max_length") does in diffusers' HunyuanVideoPipeline (max_length 256 + 95, the
// template's crop_start). HunyuanVideo's tokenizer_config.json: pad token <pad> (id 128258),
// padding side right.
//
// Only Llama 3's pipeline is implemented: a tokenizer.json with another normalizer,
// pre-tokenizer or model type is refused (TokenizerError kUnsupported naming the key).
// tokenizer.json's own "truncation"/"padding" entries are ignored (transformers overrides them per
// call). Reference: transformers' PreTrainedTokenizerFast (AutoTokenizer), not v5's
// LlamaTokenizerFast class, which swaps in a SentencePiece pre-tokenizer (transformers #45488).
// Immutable after Load: Encode is thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "grat/tokenizer/encoding.h"

namespace grat::tokenizer {

class LlamaTokenizer {
 public:
  struct Options {
    int max_length = 351;           // HunyuanVideo: 256 prompt tokens + its template's 95
    bool truncation = true;         // cut the text's tokens so that everything fits max_length
    bool pad_to_max_length = true;  // padding="max_length": right side, pad token, mask 0
    // Like transformers: added tokens written in the prompt are those tokens. Off: special
    // added tokens are plain text (split_special_tokens=True); non-special ones still match.
    bool parse_special_tokens = true;
    std::string pad_token = "<pad>";  // HunyuanVideo's tokenizer_config.json pad_token
  };

  // Throws TokenizerError: kFileNotFound for a missing file; kCorruptFile for bad JSON, a missing
  // or malformed key (named), a merge outside the vocabulary or a pad token not in the file;
  // kUnsupported for a well-formed file that is not Llama 3's pipeline (the key is named).
  // std::invalid_argument for max_length < 1, or with truncation below the template's special
  // token count.
  static LlamaTokenizer Load(const std::string& tokenizer_json_path, Options options);
  static LlamaTokenizer Load(const std::string& tokenizer_json_path) {
    return Load(tokenizer_json_path, Options());
  }
  static LlamaTokenizer FromJson(std::string_view tokenizer_json, Options options);

  // tokenizer(text, max_length, truncation, padding="max_length"): ids + attention mask. Without
  // truncation a longer text keeps all its tokens (ids longer than max_length, no padding).
  // Throws TokenizerError(kInvalidInput) for invalid UTF-8 (as every Encode* below).
  TokenIds Encode(std::string_view text) const;

  // tokenizer(text).input_ids: the template's tokens (<|begin_of_text|>) around the text's,
  // neither truncated nor padded.
  std::vector<int64_t> EncodeIds(std::string_view text) const;

  // tokenizer(text, add_special_tokens=False).input_ids: the text's tokens only.
  std::vector<int64_t> EncodePieces(std::string_view text) const;

  // len(tokenizer(text).input_ids): the prompt fits Encode without truncation iff <= max_length.
  int64_t CountTokens(std::string_view text) const;

  // Llama 3's split of text without added tokens: the pieces BPE sees (raw UTF-8). Valid UTF-8
  // expected (callers validate).
  static std::vector<std::string> PreTokenize(std::string_view text);

  int64_t TokenId(const std::string& token) const;  // model vocabulary or added token, -1 if none
  int64_t bos_id() const;      // first id the template adds (<|begin_of_text|>), -1 if none
  int64_t pad_id() const;      // id of options().pad_token
  int64_t vocab_size() const;  // largest id + 1 (len(tokenizer) for a gap-free file)
  const Options& options() const { return options_; }

 private:
  struct State;
  static std::shared_ptr<const State> Parse(std::string_view tokenizer_json);
  LlamaTokenizer(std::shared_ptr<const State> state, Options options);
  void EncodeSegment(std::string_view text, std::vector<int64_t>* ids) const;

  Options options_;
  std::shared_ptr<const State> state_;
  int64_t pad_id_ = -1;
};

}  // namespace grat::tokenizer
