#include "grat/tokenizer/unigram_model.h"

#include <algorithm>
#include <cfloat>
#include <cstdio>

#include "grat/tokenizer/tokenizer_error.h"
#include "grat/tokenizer/utf8.h"

namespace grat::tokenizer {
namespace {

constexpr float kUnkPenalty = 10.0f;
using PieceType = SentencePieceModel::PieceType;

}  // namespace

UnigramModel::UnigramModel(const SentencePieceModel& model, bool like_transformers,
                           const std::vector<std::string>& added_pieces)
    : byte_fallback_(model.byte_fallback), user_defined_bonus_(!like_transformers) {
  if (model.model_type != SentencePieceModel::ModelType::kUnigram) {
    throw TokenizerError(TokenizerError::Code::kUnsupported,
                         "sentencepiece model: only unigram models are supported (model_type " +
                             std::to_string(static_cast<int>(model.model_type)) + ")");
  }
  const int n = static_cast<int>(model.pieces.size());
  const int total = n + static_cast<int>(added_pieces.size());
  scores_.resize(total);
  types_.resize(total);
  byte_ids_.assign(256, -1);
  min_score_ = FLT_MAX;
  max_score_ = FLT_MIN;
  nodes_.emplace_back();
  for (int id = 0; id < total; ++id) {
    const SentencePieceModel::Piece piece =
        id < n ? model.pieces[id] : SentencePieceModel::Piece{added_pieces[id - n]};
    scores_[id] = piece.score;
    types_[id] = piece.type;
    if (piece.type == PieceType::kNormal) {
      min_score_ = std::min(min_score_, piece.score);
      max_score_ = std::max(max_score_, piece.score);
    }
    if (piece.type == PieceType::kUnknown && unk_id_ < 0) unk_id_ = id;
    if (piece.type == PieceType::kByte) {
      unsigned value = 0;
      if (piece.text.size() == 6 && std::sscanf(piece.text.c_str(), "<0x%2X>", &value) == 1) {
        byte_ids_[value & 0xFF] = id;
      }
    }
    const bool in_trie = piece.type == PieceType::kNormal ||
                         piece.type == PieceType::kUserDefined ||
                         piece.type == PieceType::kUnused ||
                         (like_transformers && (piece.type == PieceType::kControl ||
                                                piece.type == PieceType::kUnknown));
    if (!in_trie) continue;
    int32_t node = 0;
    for (char c : piece.text) {
      const uint64_t key = (static_cast<uint64_t>(node) << 8) | static_cast<unsigned char>(c);
      auto it = edges_.find(key);
      if (it == edges_.end()) {
        it = edges_.emplace(key, static_cast<int32_t>(nodes_.size())).first;
        nodes_.emplace_back();
      }
      node = it->second;
    }
    if (nodes_[node].value < 0) nodes_[node].value = id;  // first piece wins, as sentencepiece
  }
  if (unk_id_ < 0) {
    throw TokenizerError(TokenizerError::Code::kCorruptFile,
                         "sentencepiece model: no UNKNOWN piece");
  }
}

int32_t UnigramModel::Child(int32_t node, unsigned char byte) const {
  const auto it = edges_.find((static_cast<uint64_t>(node) << 8) | byte);
  return it == edges_.end() ? -1 : it->second;
}

std::vector<int64_t> UnigramModel::Encode(std::string_view normalized) const {
  struct BestPath {
    int id = -1;
    float score = 0.0f;
    int starts_at = -1;
  };
  const int size = static_cast<int>(normalized.size());
  const float unk_score = min_score_ - kUnkPenalty;
  std::vector<BestPath> best(size + 1);
  int starts_at = 0;
  while (starts_at < size) {
    const float score_here = best[starts_at].score;
    const int char_len = std::min<int>(
        static_cast<int>(Utf8SequenceLength(static_cast<unsigned char>(normalized[starts_at]))),
        size - starts_at);
    bool has_single_node = false;
    int32_t node = 0;
    for (int pos = starts_at; pos < size; ++pos) {
      node = Child(node, static_cast<unsigned char>(normalized[pos]));
      if (node < 0) break;
      const int id = nodes_[node].value;
      if (id < 0 || types_[id] == PieceType::kUnused) continue;
      const int length = pos + 1 - starts_at;
      // User-defined symbols get a bonus so they are always chosen (as sentencepiece).
      const float score = user_defined_bonus_ && types_[id] == PieceType::kUserDefined
                              ? static_cast<float>(length) * max_score_ - 0.1f
                              : scores_[id];
      const float candidate = score + score_here;
      BestPath& target = best[pos + 1];
      if (target.starts_at == -1 || candidate > target.score) {
        target = {id, candidate, starts_at};
      }
      if (length == char_len) has_single_node = true;
    }
    if (!has_single_node) {
      BestPath& target = best[starts_at + char_len];
      const float candidate = unk_score + score_here;
      if (target.starts_at == -1 || candidate > target.score) {
        target = {unk_id_, candidate, starts_at};
      }
    }
    starts_at += char_len;
  }
  // Backtrack; (begin, end, id) in reverse order.
  struct Span {
    int begin, end, id;
  };
  std::vector<Span> spans;
  for (int end = size; end > 0; end = best[end].starts_at) {
    spans.push_back({best[end].starts_at, end, best[end].id});
  }
  std::reverse(spans.begin(), spans.end());
  std::vector<int64_t> ids;
  ids.reserve(spans.size());
  bool prev_unk = false;
  for (std::size_t k = 0; k < spans.size(); ++k) {
    const Span& span = spans[k];
    const bool is_unk = span.id == unk_id_;
    if (is_unk && byte_fallback_) {
      for (int b = span.begin; b < span.end; ++b) {
        const int64_t byte_id = byte_ids_[static_cast<unsigned char>(normalized[b])];
        ids.push_back(byte_id >= 0 ? byte_id : unk_id_);
      }
    } else if (!(is_unk && prev_unk)) {  // consecutive unknowns become one
      ids.push_back(span.id);
    }
    prev_unk = is_unk;
  }
  return ids;
}

}  // namespace grat::tokenizer
