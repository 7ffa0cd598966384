// ClipTokenizer: the CLIP text tokenizer (openai/clip-vit-large-patch14, Flux's first text
// encoder) from vocab.json + merges.txt, producing transformers' CLIPTokenizer ids:
// NFC, every whitespace run -> one space, lowercase, CLIP's word/number/contraction regex,
// byte-level BPE with `</w>`, then <|startoftext|> ... <|endoftext|>, truncated to max_length
// keeping <|endoftext|>, padded with the pad token (<|endoftext|> for this checkpoint).
// Immutable after Load: Encode is thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "grat/tokenizer/byte_level_bpe.h"
#include "grat/tokenizer/encoding.h"

namespace grat::tokenizer {

class ClipTokenizer {
 public:
  struct Options {
    int max_length = 77;
    // Like transformers: "<|startoftext|>" / "<|endoftext|>" written in the prompt are those
    // tokens (matched before normalization). Off: they are plain text.
    bool parse_special_tokens = true;
    std::string bos_token = "<|startoftext|>";
    std::string eos_token = "<|endoftext|>";
    std::string pad_token = "<|endoftext|>";
    std::string unk_token = "<|endoftext|>";
  };

  // Throws TokenizerError (kFileNotFound / kCorruptFile, or kCorruptFile when a special token
  // of `options` is not in the vocabulary), and std::invalid_argument for max_length < 2.
  static ClipTokenizer Load(const std::string& vocab_json_path, const std::string& merges_path,
                            Options options);
  static ClipTokenizer Load(const std::string& vocab_json_path, const std::string& merges_path) {
    return Load(vocab_json_path, merges_path, Options());
  }
  static ClipTokenizer FromBpe(ByteLevelBpe bpe, Options options);

  // Ids padded/truncated to options.max_length. Throws TokenizerError(kInvalidInput) for
  // invalid UTF-8.
  TokenIds Encode(std::string_view text) const;

  // The unpadded ids without <|startoftext|> / <|endoftext|>.
  std::vector<int64_t> EncodePieces(std::string_view text) const;

  // CLIP's normalization + pre-tokenization of text without special tokens: the words BPE sees.
  static std::vector<std::string> PreTokenize(std::string_view text);

  int64_t bos_id() const { return bos_id_; }
  int64_t eos_id() const { return eos_id_; }
  int64_t pad_id() const { return pad_id_; }
  const Options& options() const { return options_; }

 private:
  ClipTokenizer(ByteLevelBpe bpe, Options options);
  void EncodeSegment(std::string_view text, std::vector<int64_t>* ids) const;

  Options options_;
  std::shared_ptr<const ByteLevelBpe> bpe_;
  int64_t bos_id_ = -1;
  int64_t eos_id_ = -1;
  int64_t pad_id_ = -1;
  int64_t unk_id_ = -1;
};

}  // namespace grat::tokenizer
