#include "grat/tokenizer/llama_tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "grat/tokenizer/byte_level_bpe.h"
#include "grat/tokenizer/tokenizer_error.h"
#include "tokenizer_test_data.h"

namespace grat::tokenizer {
namespace {

using test_data::TokenizerDir;

// llama_expected.json, written by tokenizer_expected.py from transformers'
// PreTrainedTokenizerFast on the tiny Llama-3-style tokenizer.json.
const nlohmann::json& Expected() {
  static const nlohmann::json* expected = new nlohmann::json(
      nlohmann::json::parse(std::ifstream(TokenizerDir() + "/llama_expected.json")));
  return *expected;
}

std::string TinyFile() { return TokenizerDir() + "/llama/tokenizer.json"; }

LlamaTokenizer Load(int max_length, bool truncation = true, bool pad = true) {
  LlamaTokenizer::Options options;
  options.max_length = max_length;
  options.truncation = truncation;
  options.pad_to_max_length = pad;
  return LlamaTokenizer::Load(TinyFile(), options);
}

std::vector<int64_t> Ids(const nlohmann::json& value) { return value.get<std::vector<int64_t>>(); }

TEST(LlamaTokenizer, LoadsTheTinyFile) {
  ASSERT_FALSE(TokenizerDir().empty()) << "run through ctest (fixture tokenizer_reference_files)";
  const LlamaTokenizer tokenizer = LlamaTokenizer::Load(TinyFile());
  EXPECT_EQ(tokenizer.vocab_size(), Expected()["vocab_size"].get<int64_t>());
  EXPECT_EQ(tokenizer.bos_id(), Expected()["bos_id"].get<int64_t>());
  EXPECT_EQ(tokenizer.pad_id(), Expected()["pad_id"].get<int64_t>());
  EXPECT_EQ(tokenizer.TokenId("<|eot_id|>"), Expected()["eot_id"].get<int64_t>());
  EXPECT_EQ(tokenizer.TokenId("<|begin_of_text|>"), tokenizer.bos_id());
  EXPECT_EQ(tokenizer.TokenId("!"), 0);           // byte symbols first, in GPT-2's order
  EXPECT_EQ(tokenizer.TokenId("\xc4\xa0"), 220);  // "Ġ": the space byte
  EXPECT_EQ(tokenizer.TokenId("no such token"), -1);
  EXPECT_EQ(tokenizer.options().max_length, 351);
  EXPECT_EQ(tokenizer.options().pad_token, "<pad>");
}

TEST(LlamaTokenizer, PreTokenizeMatchesTokenizers) {
  ASSERT_FALSE(TokenizerDir().empty());
  for (const auto& c : Expected()["cases"]) {
    const std::string text = c["text"];
    EXPECT_EQ(LlamaTokenizer::PreTokenize(text), c["words"].get<std::vector<std::string>>())
        << text;
  }
  EXPECT_EQ(LlamaTokenizer::PreTokenize("IT'S  a\r\n b"),
            (std::vector<std::string>{"IT", "'S", " ", " a", "\r\n", " b"}));
}

TEST(LlamaTokenizer, IdsMatchTransformers) {
  ASSERT_FALSE(TokenizerDir().empty());
  const LlamaTokenizer tokenizer = LlamaTokenizer::Load(TinyFile());
  EXPECT_GT(Expected()["ignore_merges_cases"].get<int>(), 0);  // ignore_merges is exercised
  for (const auto& c : Expected()["cases"]) {
    const std::string text = c["text"];
    const std::vector<int64_t> ids = Ids(c["ids"]);
    EXPECT_EQ(tokenizer.EncodeIds(text), ids) << text;
    EXPECT_EQ(tokenizer.EncodePieces(text), Ids(c["pieces"])) << text;
    EXPECT_EQ(tokenizer.CountTokens(text), static_cast<int64_t>(ids.size())) << text;
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids.front(), tokenizer.bos_id());
  }
}

TEST(LlamaTokenizer, SpecialTokensAsTextMatchTransformers) {
  ASSERT_FALSE(TokenizerDir().empty());
  LlamaTokenizer::Options options;
  options.parse_special_tokens = false;
  const LlamaTokenizer tokenizer = LlamaTokenizer::Load(TinyFile(), options);
  for (const auto& c : Expected()["cases"]) {
    const std::string text = c["text"];
    EXPECT_EQ(tokenizer.EncodeIds(text), Ids(c["ids_special_as_text"])) << text;
  }
}

TEST(LlamaTokenizer, PaddingAndTruncationMatchTransformers) {
  ASSERT_FALSE(TokenizerDir().empty());
  for (int max_length : Expected()["max_lengths"].get<std::vector<int>>()) {
    const LlamaTokenizer tokenizer = Load(max_length);
    for (const auto& c : Expected()["cases"]) {
      const std::string text = c["text"];
      const auto& ref = c["padded"][std::to_string(max_length)];
      const TokenIds got = tokenizer.Encode(text);
      EXPECT_EQ(got.ids, Ids(ref["ids"])) << text;
      EXPECT_EQ(got.attention_mask, Ids(ref["mask"])) << text;
      int64_t ones = 0;
      for (int64_t m : got.attention_mask) ones += m;
      EXPECT_EQ(got.length, ones) << text;
    }
  }
  const int n = Expected()["max_lengths"].back().get<int>();
  const LlamaTokenizer not_truncated = Load(n, /*truncation=*/false);
  const LlamaTokenizer not_padded = Load(n, /*truncation=*/true, /*pad=*/false);
  for (const auto& c : Expected()["cases"]) {
    const std::string text = c["text"];
    EXPECT_EQ(not_truncated.Encode(text).ids, Ids(c["not_truncated"])) << text;
    EXPECT_EQ(not_padded.Encode(text).ids, Ids(c["not_padded"])) << text;
  }
}

TEST(LlamaTokenizer, HunyuanVideoPromptTemplateMatchesTransformers) {
  ASSERT_FALSE(TokenizerDir().empty());
  const std::string tmpl = Expected()["template"];
  const std::size_t slot = tmpl.find("{}");
  ASSERT_NE(slot, std::string::npos);
  ASSERT_EQ(tmpl.find("{}", slot + 2), std::string::npos);
  EXPECT_EQ(tmpl.rfind("<|start_header_id|>system<|end_header_id|>\n\n", 0), 0u);
  const int max_length = Expected()["template_max_length"];
  EXPECT_EQ(max_length, 256 + 95);
  const LlamaTokenizer tokenizer = Load(max_length);
  ASSERT_FALSE(Expected()["template_cases"].empty());
  for (const auto& c : Expected()["template_cases"]) {
    const std::string prompt = c["prompt"];
    const std::string text = tmpl.substr(0, slot) + prompt + tmpl.substr(slot + 2);
    const TokenIds got = tokenizer.Encode(text);
    EXPECT_EQ(got.ids, Ids(c["ids"])) << prompt;
    EXPECT_EQ(got.attention_mask, Ids(c["mask"])) << prompt;
    EXPECT_EQ(got.ids.front(), tokenizer.bos_id());
  }
}

TEST(LlamaTokenizer, TruncationKeepsBeginTokenAndPadsRight) {
  ASSERT_FALSE(TokenizerDir().empty());
  const LlamaTokenizer tokenizer = Load(5);
  const TokenIds ids = tokenizer.Encode("one two three four five six seven");
  ASSERT_EQ(ids.ids.size(), 5u);
  EXPECT_EQ(ids.ids.front(), tokenizer.bos_id());
  EXPECT_EQ(ids.attention_mask, (std::vector<int64_t>{1, 1, 1, 1, 1}));
  EXPECT_EQ(ids.length, 5);
  const std::vector<int64_t> full = tokenizer.EncodeIds("one two three four five six seven");
  EXPECT_EQ(ids.ids, std::vector<int64_t>(full.begin(), full.begin() + 5));
  const TokenIds empty = tokenizer.Encode("");
  const int64_t pad = tokenizer.pad_id();
  EXPECT_EQ(empty.ids, (std::vector<int64_t>{tokenizer.bos_id(), pad, pad, pad, pad}));
  EXPECT_EQ(empty.attention_mask, (std::vector<int64_t>{1, 0, 0, 0, 0}));
  EXPECT_EQ(empty.length, 1);
  EXPECT_EQ(Load(1).Encode("anything at all").ids, std::vector<int64_t>{tokenizer.bos_id()});
  const TokenIds long_text = Load(3, /*truncation=*/false).Encode("one two three four");
  EXPECT_EQ(long_text.ids, tokenizer.EncodeIds("one two three four"));
  EXPECT_EQ(long_text.length, static_cast<int64_t>(long_text.ids.size()));
  EXPECT_THROW(Load(0), std::invalid_argument);
}

nlohmann::json List(std::initializer_list<nlohmann::json> items) {
  nlohmann::json list = nlohmann::json::array();
  for (const nlohmann::json& item : items) list.push_back(item);
  return list;
}

// A hand-made tokenizer.json in Llama 3's format over a few tokens, for the BPE details.
nlohmann::json MiniSpec(const nlohmann::json& merges, bool ignore_merges = false) {
  const std::string pattern = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3})"
                              R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  const auto added = [](int id, const char* content) {
    return nlohmann::json{{"id", id},        {"content", content}, {"single_word", false},
                          {"lstrip", false}, {"rstrip", false},    {"normalized", false},
                          {"special", true}};
  };
  nlohmann::json spec = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", {added(9, "<s>"), added(10, "<pad>")}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"Regex", pattern}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"},
           {"add_prefix_space", false},
           {"trim_offsets", true},
           {"use_regex", false}}}}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair", nlohmann::json::array()},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {9}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder", nullptr},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", ignore_merges},
        {"vocab",
         {{"a", 0},
          {"b", 1},
          {"c", 2},
          {"x", 3},
          {"\xc4\xa0", 4},
          {"ab", 5},
          {"aba", 6},
          {"abc", 7},
          {"\xc4\xa0"
           "a",
           8}}},
        {"merges", merges}}}};
  return spec;
}

LlamaTokenizer Mini(const nlohmann::json& spec) {
  return LlamaTokenizer::FromJson(spec.dump(), LlamaTokenizer::Options());
}

// Expected ids below come from `tokenizers` 0.23 on the same files.
TEST(LlamaTokenizer, MergesRunAsInTokenizers) {
  // The (rank, position) queue: "a b" (rank 1) at 0 makes "ab a" (rank 0) before "a b" at 2;
  // GPT-2's merge-everywhere loop would give "ab" "ab".
  EXPECT_EQ(Mini(MiniSpec(List({"ab a", "a b"}))).EncodeIds("abab"),
            (std::vector<int64_t>{9, 6, 1}));
  // Merges as ["left", "right"] pairs; a merge listed twice keeps its last rank.
  const nlohmann::json pairs = nlohmann::json::array(
      {nlohmann::json::array({"a", "b"}), nlohmann::json::array({"ab", "a"})});
  EXPECT_EQ(Mini(MiniSpec(pairs)).EncodeIds("abab"), (std::vector<int64_t>{9, 5, 5}));
  EXPECT_EQ(Mini(MiniSpec(List({"a b", "ab a", "a b"}))).EncodeIds("abab"),
            (std::vector<int64_t>{9, 6, 1}));
  // ignore_merges: a word found whole in the vocabulary is that token.
  EXPECT_EQ(Mini(MiniSpec(List({"a b"}), true)).EncodeIds("abc"), (std::vector<int64_t>{9, 7}));
  EXPECT_EQ(Mini(MiniSpec(List({"a b"}), false)).EncodeIds("abc"), (std::vector<int64_t>{9, 5, 2}));
  // Without unk_token a byte missing from the vocabulary is dropped (its neighbours then merge).
  EXPECT_EQ(Mini(MiniSpec(List({"a b"}))).EncodeIds("azb"), (std::vector<int64_t>{9, 5}));
  nlohmann::json with_unk = MiniSpec(List({"a b"}));
  with_unk["model"]["unk_token"] = "x";
  EXPECT_EQ(Mini(with_unk).EncodeIds("azzb"), (std::vector<int64_t>{9, 0, 3, 3, 1}));
  with_unk["model"]["fuse_unk"] = true;
  EXPECT_EQ(Mini(with_unk).EncodeIds("azzb"), (std::vector<int64_t>{9, 0, 3, 1}));
  // Byte-level spaces ("Ġ") and added tokens in the text.
  const LlamaTokenizer mini = Mini(MiniSpec(List({"\xc4\xa0 a", "a b"})));
  EXPECT_EQ(mini.EncodeIds(" ab a"), (std::vector<int64_t>{9, 8, 1, 8}));
  EXPECT_EQ(mini.EncodeIds("a<s>b<pad>"), (std::vector<int64_t>{9, 0, 9, 1, 10}));
  EXPECT_EQ(mini.vocab_size(), 11);
}

TEST(LlamaTokenizer, ByteLevelBpeFromVocabAndMerges) {
  ByteLevelBpe::Options options;
  options.ignore_merges = true;
  const ByteLevelBpe bpe = ByteLevelBpe::FromVocabAndMerges(
      {{"a", 0}, {"b", 1}, {"ab", 2}, {"aba", 3}, {"abab", 4}}, {{"ab", "a"}, {"a", "b"}}, options);
  EXPECT_EQ(bpe.Split("abab"), (std::vector<std::string>{"abab"}));  // whole word in the vocab
  EXPECT_EQ(bpe.Split("ababa"), (std::vector<std::string>{"aba", "b", "a"}));
  std::vector<int64_t> ids;
  bpe.EncodeWord("abab", -1, &ids);
  bpe.EncodeWord("aab", -1, &ids);
  EXPECT_EQ(ids, (std::vector<int64_t>{4, 0, 2}));
  EXPECT_THROW(ByteLevelBpe::FromVocabAndMerges({{"a", 0}}, {{"a", "a"}}, options), TokenizerError);
  EXPECT_THROW(ByteLevelBpe::FromVocabAndMerges({{"a", -1}}, {}, options), TokenizerError);
}

// The code of the error FromJson throws for `spec`, and that its message names `key`.
void ExpectError(const nlohmann::json& spec, TokenizerError::Code code, const std::string& key,
                 LlamaTokenizer::Options options = LlamaTokenizer::Options()) {
  try {
    LlamaTokenizer::FromJson(spec.dump(), options);
    ADD_FAILURE() << "accepted a file with a bad " << key;
  } catch (const TokenizerError& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
  }
}

TEST(LlamaTokenizer, BadFilesNameTheKey) {
  const auto corrupt = TokenizerError::Code::kCorruptFile;
  const auto unsupported = TokenizerError::Code::kUnsupported;
  const nlohmann::json good = MiniSpec(List({"a b"}));
  try {
    LlamaTokenizer::FromJson("{not json", LlamaTokenizer::Options());
    FAIL();
  } catch (const TokenizerError& e) {
    EXPECT_EQ(e.code(), corrupt);
  }
  const std::vector<std::pair<std::function<void(nlohmann::json&)>, std::string>> corruptions = {
      {[](nlohmann::json& s) { s.erase("model"); }, "'model'"},
      {[](nlohmann::json& s) { s["model"].erase("vocab"); }, "'model.vocab'"},
      {[](nlohmann::json& s) { s["model"]["vocab"]["a"] = "zero"; }, "model.vocab[\"a\"]"},
      {[](nlohmann::json& s) { s["model"]["merges"] = List({"a q"}); }, "merge 0"},
      {[](nlohmann::json& s) { s["model"]["merges"] = List({"ab"}); }, "model.merges[0]"},
      {[](nlohmann::json& s) {
         s["model"]["merges"] = List({List({"a", "b", "c"})});
       },
       "model.merges[0]"},
      {[](nlohmann::json& s) { s["added_tokens"][1].erase("id"); }, "added_tokens[1].id"},
      {[](nlohmann::json& s) { s.erase("post_processor"); }, "'post_processor'"},
      {[](nlohmann::json& s) { s["post_processor"]["special_tokens"].erase("<s>"); },
       "post_processor.special_tokens.<s>"},
      {[](nlohmann::json& s) { s["model"]["unk_token"] = "<nope>"; }, "model.unk_token"},
  };
  for (const auto& [corrupt_it, key] : corruptions) {
    nlohmann::json spec = good;
    corrupt_it(spec);
    ExpectError(spec, corrupt, key);
  }
  const std::vector<std::pair<std::function<void(nlohmann::json&)>, std::string>> unsupported_ = {
      {[](nlohmann::json& s) { s["model"]["type"] = "Unigram"; }, "model.type"},
      {[](nlohmann::json& s) { s["model"]["byte_fallback"] = true; }, "model.byte_fallback"},
      {[](nlohmann::json& s) { s["model"]["dropout"] = 0.1; }, "model.dropout"},
      {[](nlohmann::json& s) {
         s["normalizer"] = {{"type", "NFC"}};
       },
       "normalizer"},
      {[](nlohmann::json& s) {
         s["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\s+";
       },
       "pre_tokenizer.pretokenizers[0].pattern.Regex"},
      {[](nlohmann::json& s) { s["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = true; },
       "pre_tokenizer.pretokenizers[1].add_prefix_space"},
      {[](nlohmann::json& s) {
         s["pre_tokenizer"] = {{"type", "Metaspace"}};
       },
       "pre_tokenizer.type"},
      {[](nlohmann::json& s) { s["added_tokens"][0]["lstrip"] = true; }, "added_tokens[0].lstrip"},
      {[](nlohmann::json& s) { s["post_processor"]["type"] = "RobertaProcessing"; },
       "post_processor.type"},
  };
  for (const auto& [change, key] : unsupported_) {
    nlohmann::json spec = good;
    change(spec);
    ExpectError(spec, unsupported, key);
  }
  LlamaTokenizer::Options no_pad;
  no_pad.pad_token = "<nope>";
  ExpectError(good, corrupt, "<nope>", no_pad);
}

TEST(LlamaTokenizer, Errors) {
  ASSERT_FALSE(TokenizerDir().empty());
  try {
    LlamaTokenizer::Load(TinyFile()).Encode("bad \xe6\x9d utf-8");
    FAIL();
  } catch (const TokenizerError& e) {
    EXPECT_EQ(e.code(), TokenizerError::Code::kInvalidInput);
  }
  try {
    LlamaTokenizer::Load("/nonexistent/tokenizer.json");
    FAIL();
  } catch (const TokenizerError& e) {
    EXPECT_EQ(e.code(), TokenizerError::Code::kFileNotFound);
  }
  const std::string path = testing::TempDir() + std::to_string(getpid()) + "_llama.json";
  std::ofstream(path) << R"({"model": {"type": "BPE"}})";
  try {
    LlamaTokenizer::Load(path);
    FAIL();
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
}

}  // namespace
}  // namespace grat::tokenizer
