#include "grat/tokenizer/t5_tokenizer.h"
#include "special_tokens.h"

#include <stdexcept>

#include "grat/tokenizer/tokenizer_error.h"
#include "grat/tokenizer/unicode.h"
#include "grat/tokenizer/utf8.h"

namespace grat::tokenizer {
namespace {

using PieceType = SentencePieceModel::PieceType;
constexpr std::string_view kExtraIdPrefix = "<extra_id_";
constexpr std::string_view kSpaceSymbol = "\xe2\x96\x81";  // U+2581

}  // namespace

T5Tokenizer T5Tokenizer::Load(const std::string& spiece_model_path, Options options) {
  SentencePieceModel model = LoadSentencePieceModel(spiece_model_path);
  try {
    return T5Tokenizer(std::move(model), options);
  } catch (const TokenizerError& e) {
    throw TokenizerError(e.code(), std::string(e.what()) + " (file " + spiece_model_path + ")");
  }
}

T5Tokenizer T5Tokenizer::FromModel(SentencePieceModel model, Options options) {
  return T5Tokenizer(std::move(model), options);
}

T5Tokenizer::T5Tokenizer(SentencePieceModel model, Options options) : options_(options) {
  if (options_.max_length < 1) throw std::invalid_argument("T5Tokenizer: max_length must be >= 1");
  if (options_.extra_ids < 0) throw std::invalid_argument("T5Tokenizer: extra_ids must be >= 0");
  if (model.eos_id < 0) {
    throw TokenizerError(TokenizerError::Code::kUnsupported,
                         "sentencepiece model: no eos piece (T5 appends </s>)");
  }
  eos_id_ = model.eos_id;
  pad_id_ = model.pad_id >= 0 ? model.pad_id : 0;
  for (std::size_t id = 0; id < model.pieces.size(); ++id) {
    const auto& piece = model.pieces[id];
    if (piece.type == PieceType::kControl || piece.type == PieceType::kUnknown) {
      specials_.emplace_back(piece.text, static_cast<int64_t>(id));
    }
  }
  normalizer_ = std::make_shared<const SentencePieceNormalizer>(model);
  if (options_.normalization == Options::Normalization::kTransformers) {
    // tokenizer.json's vocabulary: the pieces, then <extra_id_99> ... <extra_id_0>.
    std::vector<std::string> extra;
    for (int k = options_.extra_ids - 1; k >= 0; --k) {
      extra.push_back(std::string(kExtraIdPrefix) + std::to_string(k) + ">");
    }
    unigram_ = std::make_shared<const UnigramModel>(model, true, extra);
  } else {
    unigram_ = std::make_shared<const UnigramModel>(model);
  }
  model_ = std::make_shared<const SentencePieceModel>(std::move(model));
}

int64_t T5Tokenizer::vocab_size() const {
  return static_cast<int64_t>(model_->pieces.size()) + options_.extra_ids;
}

std::pair<std::size_t, int64_t> T5Tokenizer::MatchSpecial(std::string_view text,
                                                          std::size_t pos) const {
  if (text[pos] != '<') return {0, -1};
  const std::string_view rest = text.substr(pos);
  std::pair<std::size_t, int64_t> best{0, -1};
  for (const auto& [token, id] : specials_) {
    if (token.size() > best.first && rest.substr(0, token.size()) == token)
      best = {token.size(), id};
  }
  if (rest.substr(0, kExtraIdPrefix.size()) == kExtraIdPrefix) {
    std::size_t end = kExtraIdPrefix.size();
    int64_t number = 0;
    while (end < rest.size() && end < kExtraIdPrefix.size() + 9 && rest[end] >= '0' &&
           rest[end] <= '9') {
      number = number * 10 + (rest[end] - '0');
      ++end;
    }
    const bool digits = end > kExtraIdPrefix.size() &&
                        (rest[kExtraIdPrefix.size()] != '0' || end == kExtraIdPrefix.size() + 1);
    if (digits && end < rest.size() && rest[end] == '>' && number < options_.extra_ids &&
        end + 1 > best.first) {
      best = {end + 1,
              static_cast<int64_t>(model_->pieces.size()) + options_.extra_ids - 1 - number};
    }
  }
  return best;
}

void T5Tokenizer::EncodeSegment(std::string_view text, std::vector<int64_t>* ids) const {
  if (text.empty()) return;
  if (options_.normalization == Options::Normalization::kSentencePiece) {
    const std::vector<int64_t> segment = unigram_->Encode(normalizer_->Normalize(text));
    ids->insert(ids->end(), segment.begin(), segment.end());
    return;
  }
  // tokenizers: Precompiled, WhitespaceSplit, Metaspace("▁", prepend always, split), Unigram.
  const std::string normalized = normalizer_->NormalizeLikeTransformers(text);
  const std::vector<char32_t> cps = DecodeUtf8(normalized);
  std::string word;
  const auto flush_word = [&] {
    if (word.empty()) return;
    if (word.compare(0, kSpaceSymbol.size(), kSpaceSymbol) != 0) word.insert(0, kSpaceSymbol);
    // Split before every "▁" (merged with the text that follows it).
    std::size_t start = 0;
    while (start < word.size()) {
      std::size_t next = word.find(kSpaceSymbol, start + kSpaceSymbol.size());
      if (next == std::string::npos) next = word.size();
      const std::vector<int64_t> piece =
          unigram_->Encode(std::string_view(word).substr(start, next - start));
      ids->insert(ids->end(), piece.begin(), piece.end());
      start = next;
    }
    word.clear();
  };
  for (char32_t cp : cps) {
    if (unicode::IsWhitespace(cp)) {
      flush_word();
    } else {
      AppendUtf8(cp, &word);
    }
  }
  flush_word();
}

std::vector<int64_t> T5Tokenizer::EncodePieces(std::string_view text) const {
  ValidateUtf8(text);
  std::vector<int64_t> ids;
  if (!options_.parse_special_tokens) {
    EncodeSegment(text, &ids);
    return ids;
  }
  EncodeAroundSpecials(
      text, [this](std::string_view t, std::size_t pos) { return MatchSpecial(t, pos); },
      [this](std::string_view segment, std::vector<int64_t>* out) { EncodeSegment(segment, out); },
      &ids);
  return ids;
}

TokenIds T5Tokenizer::Encode(std::string_view text) const {
  std::vector<int64_t> pieces = EncodePieces(text);
  const auto max_length = static_cast<std::size_t>(options_.max_length);
  if (pieces.size() > max_length - 1) pieces.resize(max_length - 1);
  pieces.push_back(eos_id_);
  return PadTokens(std::move(pieces), max_length, pad_id_);
}

}  // namespace grat::tokenizer
