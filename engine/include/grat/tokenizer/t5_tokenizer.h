// T5Tokenizer: the T5 / Flux text tokenizer from a sentencepiece `spiece.model`: normalize,
// unigram segmentation, append </s>, truncate to max_length keeping </s>, pad with <pad>.
// Immutable after Load: Encode is thread-safe.
//
// Two references exist and differ on rare text; Options::normalization picks one:
//  - kTransformers (default): transformers v5's T5Tokenizer, diffusers' T5TokenizerFast (both
//    on `tokenizers`, tokenizer.json of google/t5-v1_1-xxl). Its Precompiled normalizer looks
//    the charsmap up per grapheme cluster and keeps only the shortest rule of a cluster under
//    6 bytes ("o\u0302\u0323" -> "ô", the dot below dropped; "ﬁ" + a mark -> "fi"), applies no
//    multi-character rule across clusters (half-width "ｶﾞ" stays two characters), and splits
//    words at every Unicode white space (also U+0085, which nmt_nfkc keeps); its unigram
//    vocabulary also holds the control pieces and sentinels, so text that normalizes into one
//    ("＜pad＞") becomes that token.
//  - kSentencePiece: the sentencepiece library (the Python package; transformers v4's slow
//    T5Tokenizer): longest-match charsmap over the whole text, then its whitespace rules.
// Both take special tokens written in the prompt as transformers does (parse_special_tokens).
// tests/engine/test_t5_tokenizer.cpp checks each mode against its reference.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "grat/tokenizer/encoding.h"
#include "grat/tokenizer/sentencepiece_model.h"
#include "grat/tokenizer/sentencepiece_normalizer.h"
#include "grat/tokenizer/unigram_model.h"

namespace grat::tokenizer {

class T5Tokenizer {
 public:
  struct Options {
    int max_length = 512;  // Flux uses 512 (schnell: 256)
    // Like transformers: "</s>", "<pad>", "<unk>" and "<extra_id_N>" written in the prompt are
    // those tokens. Off: they are plain text (what the sentencepiece package does).
    bool parse_special_tokens = true;
    int extra_ids = 100;  // <extra_id_0> = piece count + extra_ids - 1, as transformers
    enum class Normalization { kTransformers, kSentencePiece };
    Normalization normalization = Normalization::kTransformers;
  };

  // Throws TokenizerError (kFileNotFound / kCorruptFile / kUnsupported), and
  // std::invalid_argument for options out of range (max_length < 1, extra_ids < 0).
  static T5Tokenizer Load(const std::string& spiece_model_path, Options options);
  static T5Tokenizer Load(const std::string& spiece_model_path) {
    return Load(spiece_model_path, Options());
  }
  static T5Tokenizer FromModel(SentencePieceModel model, Options options);

  // Ids padded/truncated to options.max_length. Throws TokenizerError(kInvalidInput) for
  // invalid UTF-8.
  TokenIds Encode(std::string_view text) const;

  // The unpadded ids without </s> (with kSentencePiece and parse_special_tokens off: exactly
  // what sentencepiece's encode returns).
  std::vector<int64_t> EncodePieces(std::string_view text) const;

  int64_t vocab_size() const;  // pieces + extra ids
  int64_t eos_id() const { return eos_id_; }
  int64_t pad_id() const { return pad_id_; }
  const Options& options() const { return options_; }

 private:
  T5Tokenizer(SentencePieceModel model, Options options);
  void EncodeSegment(std::string_view text, std::vector<int64_t>* ids) const;
  // Length of a special token starting at text[pos] and its id, or {0, -1}.
  std::pair<std::size_t, int64_t> MatchSpecial(std::string_view text, std::size_t pos) const;

  Options options_;
  std::shared_ptr<const SentencePieceModel> model_;
  std::shared_ptr<const SentencePieceNormalizer> normalizer_;
  std::shared_ptr<const UnigramModel> unigram_;
  std::vector<std::pair<std::string, int64_t>> specials_;  // control/unknown pieces
  int64_t eos_id_ = 1;
  int64_t pad_id_ = 0;
};

}  // namespace grat::tokenizer
