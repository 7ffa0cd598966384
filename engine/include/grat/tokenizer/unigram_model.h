// UnigramModel: sentencepiece's unigram segmentation (unigram_model.cc, EncodeOptimized):
// Viterbi over every vocabulary piece matching at each character, an unknown node of score
// min_score - 10 where no single-character piece exists, consecutive unknowns fused into one
// (as sentencepiece and transformers both do). Immutable after construction: thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "grat/tokenizer/sentencepiece_model.h"

namespace grat::tokenizer {

class UnigramModel {
 public:
  // Throws TokenizerError(kCorruptFile) when the model has no unknown piece.
  explicit UnigramModel(const SentencePieceModel& model) : UnigramModel(model, false, {}) {}

  // like_transformers: the vocabulary as the `tokenizers` Unigram model holds it: every piece
  // (control and unknown ones too) can match, with its own score and no user-defined bonus,
  // plus `added_pieces` (score 0) with ids following the model's pieces (T5's <extra_id_N>).
  UnigramModel(const SentencePieceModel& model, bool like_transformers,
               const std::vector<std::string>& added_pieces);

  // Ids of the segmentation of already-normalized text. Unknown characters become the unk id,
  // or their UTF-8 bytes as <0xXX> pieces when the model has byte_fallback.
  std::vector<int64_t> Encode(std::string_view normalized) const;

  int unk_id() const { return unk_id_; }

 private:
  struct Node {
    int32_t value = -1;  // piece id ending here, -1 if none
  };
  int32_t Child(int32_t node, unsigned char byte) const;

  std::vector<Node> nodes_;
  std::unordered_map<uint64_t, int32_t> edges_;  // (node << 8 | byte) -> child
  std::vector<float> scores_;
  std::vector<SentencePieceModel::PieceType> types_;
  std::vector<int64_t> byte_ids_;  // id of <0xXX>, or -1
  int unk_id_ = -1;
  bool byte_fallback_ = false;
  bool user_defined_bonus_ = true;
  float min_score_ = 0.0f;
  float max_score_ = 0.0f;
};

}  // namespace grat::tokenizer
