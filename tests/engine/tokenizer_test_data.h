// Test helper: where the tokenizer test data lives ($GRAT_TOKENIZER_DIR, set by CMake: the
// tokenizer files and expected.json written by tokenizer_expected.py from the reference
// tokenizers).
#pragma once

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace grat::tokenizer::test_data {

inline std::string TokenizerDir() {
  const char* dir = std::getenv("GRAT_TOKENIZER_DIR");
  return dir == nullptr ? "" : dir;
}

inline nlohmann::json Expected() {
  return nlohmann::json::parse(std::ifstream(TokenizerDir() + "/expected.json"));
}

}  // namespace grat::tokenizer::test_data
