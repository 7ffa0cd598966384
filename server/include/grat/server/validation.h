// Turns a grat.v1.GenerateRequest into an engine::Request, checking every field against the
// model's limits first: the first problem comes back as INVALID_ARGUMENT naming the field
// and its limit. Pure function of its inputs; thread-safe.
//
// Video models (manifest kind "video"): frames 0 -> defaults.frames, else 4k+1 in
// [1, max_frames]; frames x width x height <= max_video_pixels; fps 0 (defaults.fps) or in
// [1, 60]; format MP4 (the default). Image models: frames 0 or 1, fps 0, PNG or WEBP.
#pragma once

#include <grpcpp/support/status.h>

#include <cstdint>
#include <functional>
#include <string>

#include "grat/engine/manifest.h"
#include "grat/engine/request.h"

namespace grat::tokenizer {
class LlamaTokenizer;
class T5Tokenizer;
}  // namespace grat::tokenizer
namespace grat::v1 {
class GenerateRequest;
}

namespace grat::server {

// Counts a prompt's tokens with the model's own tokenizer; -1 when it cannot be tokenized.
// Called concurrently from gRPC threads: must be thread-safe.
using TokenCounter = std::function<int64_t(const std::string& text)>;

struct ModelLimits {
  engine::Manifest manifest;
  TokenCounter count_tokens;  // compared with limits.max_prompt_tokens; empty: bytes only
  int64_t max_prompt_bytes = 4096;
};

constexpr int32_t kMinPriority = -100, kMaxPriority = 100;
constexpr int32_t kMinFps = 1, kMaxFps = 60;

// `seed_if_absent` is used when the request has no seed.
grpc::Status to_engine_request(const v1::GenerateRequest& in, const ModelLimits& model,
                               uint64_t seed_if_absent, engine::Request* out);

// Prompt length in T5 tokens (with </s>); -1 when the text cannot be tokenized.
int64_t count_prompt_tokens(const tokenizer::T5Tokenizer& t5, const std::string& text);
// Prompt length in Llama tokens: the prompt's own tokens (no template, no BOS); -1 when the
// text cannot be tokenized.
int64_t count_prompt_tokens(const tokenizer::LlamaTokenizer& llama, const std::string& text);

// The model's prompt-token counter: T5 for image bundles, the Llama tokenizer (files role
// llm_tokenizer) for video bundles. Throws (std::exception) when the tokenizer cannot be
// loaded.
TokenCounter load_token_counter(const engine::Manifest& manifest);

}  // namespace grat::server
